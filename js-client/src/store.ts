/**
 * Where a client keeps its identity between sessions.
 *
 * The private key never leaves the client: stores keep the 32-byte Ed25519 seed locally (memory,
 * the browser's IndexedDB, or a file with the Node entry `@glueberry/client/node`), and nothing in
 * this library sends it anywhere — the gateway and peers only ever see the public key / peer ID.
 *
 * Browser caveat, stated plainly: the seed is stored as raw bytes. WebCrypto could keep an Ed25519
 * key non-extractable, but Glueberry needs the seed itself for the Ed25519→X25519 conversion
 * (PROTOCOL.md §8.1), which WebCrypto cannot do on an opaque key. IndexedDB data is scoped to the
 * page's origin, so any script running in that origin (e.g. through XSS) can read it.
 */

import { IdentityStoreError } from './errors.js';
import { Identity } from './identity.js';

export interface IdentityStore {
  /** The stored identity, or `undefined` when there is none. */
  load(): Promise<Identity | undefined>;
  /** Store `identity`, replacing any previous one. */
  save(identity: Identity): Promise<void>;
  /** Forget the stored identity (no error when there is none). */
  clear(): Promise<void>;
}

/** The stored identity, or a new one that is saved first. */
export async function loadOrCreateIdentity(store: IdentityStore): Promise<Identity> {
  const existing = await store.load();
  if (existing !== undefined) return existing;
  const identity = Identity.generate();
  await store.save(identity);
  return identity;
}

/** Keeps the identity for the lifetime of the object (tests, ephemeral sessions). */
export class MemoryIdentityStore implements IdentityStore {
  #seed: Uint8Array | undefined;

  async load(): Promise<Identity | undefined> {
    return this.#seed === undefined ? undefined : Identity.fromSeed(this.#seed);
  }

  async save(identity: Identity): Promise<void> {
    this.#seed?.fill(0);
    this.#seed = identity.exportSeed();
  }

  async clear(): Promise<void> {
    this.#seed?.fill(0);
    this.#seed = undefined;
  }
}

export interface IndexedDbIdentityStoreOptions {
  /** Key of the identity inside the store, so an origin can hold several. Default `"default"`. */
  name?: string;
  /** IndexedDB database name. Default `"glueberry"`. */
  database?: string;
  /** The IndexedDB factory; default `globalThis.indexedDB` (tests may pass another). */
  indexedDB?: IDBFactory;
}

/** The record stored under the identity's name. */
interface StoredIdentity {
  seed: Uint8Array;
  peerId: string;
  createdAt: number;
}

const OBJECT_STORE = 'identities';

/** The result of an IndexedDB request, or its error. */
function settle<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/**
 * Browser store: the seed as a `Uint8Array` in IndexedDB (database `glueberry`, object store
 * `identities`, key = `name`), together with the peer ID, checked on load.
 */
export class IndexedDbIdentityStore implements IdentityStore {
  readonly name: string;
  readonly database: string;
  readonly #factory: IDBFactory | undefined;

  constructor(options: IndexedDbIdentityStoreOptions = {}) {
    this.name = options.name ?? 'default';
    this.database = options.database ?? 'glueberry';
    this.#factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  }

  /** Run one request in a transaction of its own; its result once the transaction is complete. */
  async #run<T>(mode: IDBTransactionMode, request: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    let db: IDBDatabase | undefined;
    try {
      const open = this.#factory!.open(this.database, 1); // TypeError without IndexedDB
      // only for a new database (version 1 is the only one): give it the object store
      open.onupgradeneeded = () => open.result.createObjectStore(OBJECT_STORE);
      db = await settle(open);
      const tx = db.transaction(OBJECT_STORE, mode);
      const req = request(tx.objectStore(OBJECT_STORE));
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        // the request's error (bubbled up to the transaction), or the transaction's on abort
        tx.onerror = tx.onabort = (event) => reject((event.target as IDBRequest | IDBTransaction).error);
      });
      return req.result;
    } catch (cause) {
      throw new IdentityStoreError(`IndexedDB ${mode} failed`, { cause });
    } finally {
      db?.close(); // do not hold the connection: it would block upgrades from other tabs
    }
  }

  async load(): Promise<Identity | undefined> {
    const record: Partial<StoredIdentity> | undefined = await this.#run('readonly', (store) => store.get(this.name));
    if (record === undefined) return undefined;
    const { seed } = record;
    const identity = seed instanceof Uint8Array && seed.length === 32 ? Identity.fromSeed(seed) : undefined;
    if (!identity || identity.peerId !== record.peerId) throw new IdentityStoreError('bad stored identity');
    return identity;
  }

  async save(identity: Identity): Promise<void> {
    const record: StoredIdentity = { seed: identity.exportSeed(), peerId: identity.peerId, createdAt: Date.now() };
    await this.#run('readwrite', (store) => store.put(record, this.name));
  }

  async clear(): Promise<void> {
    await this.#run('readwrite', (store) => store.delete(this.name));
  }
}
