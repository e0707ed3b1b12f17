/**
 * Node-only entry, `@glueberry/client/node`: everything from the main entry plus
 * {@link FileIdentityStore}. Kept separate so the browser bundle never imports `node:fs`.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IdentityStoreError } from './errors.js';
import { Identity } from './identity.js';
import type { IdentityStore } from './store.js';

export * from './index.js';

/** File content: `{"version": 1, "peerId": "12D3KooW…", "seed": "<64 hex>"}`. */
interface IdentityFile {
  version: 1;
  peerId: string;
  seed: string;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/**
 * Keeps the identity in a JSON file readable only by its owner (mode 0600, directory 0700 when
 * created). Writes go to a temporary file renamed over the old one, so a crash never leaves a
 * half-written key. The seed never leaves this machine.
 */
export class FileIdentityStore implements IdentityStore {
  constructor(readonly path: string) {}

  async load(): Promise<Identity | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new IdentityStoreError(`cannot read identity file ${this.path}`, { cause: err });
    }
    let identity: Identity;
    let data: Partial<IdentityFile>;
    try {
      data = JSON.parse(text) as Partial<IdentityFile>;
      identity = Identity.fromExport({ seed: String(data.seed) });
    } catch (cause) {
      throw new IdentityStoreError(`identity file ${this.path} is malformed`, { cause });
    }
    if (data.version !== 1 || data.peerId !== identity.peerId) {
      throw new IdentityStoreError(`identity file ${this.path}: unknown version or seed/peer ID mismatch`);
    }
    return identity;
  }

  async save(identity: Identity): Promise<void> {
    const data: IdentityFile = { version: 1, peerId: identity.peerId, seed: identity.export().seed };
    const tmp = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      await writeFile(tmp, JSON.stringify(data) + '\n', { mode: 0o600, flag: 'wx' });
      await rename(tmp, this.path);
    } catch (cause) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new IdentityStoreError(`cannot write identity file ${this.path}`, { cause });
    }
  }

  async clear(): Promise<void> {
    try {
      await rm(this.path, { force: true });
    } catch (cause) {
      throw new IdentityStoreError(`cannot remove identity file ${this.path}`, { cause });
    }
  }
}
