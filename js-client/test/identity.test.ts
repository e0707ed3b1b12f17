import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { base58Encode, utf8Encode } from '../src/bytes.js';
import { IdentityStoreError, InvalidArgumentError, InvalidKeyError, InvalidPeerIdError } from '../src/errors.js';
import {
  Identity,
  fingerprint,
  isPeerId,
  peerIdFromPublicKey,
  peerIdMultihash,
  publicKeyFromPeerId,
  publicKeyToProtobuf,
  verifySignature,
} from '../src/identity.js';
import { FileIdentityStore } from '../src/node.js';
import { IndexedDbIdentityStore, MemoryIdentityStore, loadOrCreateIdentity, type IdentityStore } from '../src/store.js';
import { FakeIndexedDb } from './fake-indexeddb.js';
import { h, hex, vectors } from './helpers.js';

const A = vectors.peer_a;
const B = vectors.peer_b;

describe('PROTOCOL.md §2.1 peer IDs (vectors peer_a, peer_b)', () => {
  for (const peer of [A, B]) {
    it(peer.peer_id, () => {
      const pub = h(peer.ed25519_public_key);
      assert.equal(hex(publicKeyToProtobuf(pub)), peer.libp2p_public_key_protobuf);
      assert.equal(hex(peerIdMultihash(pub)), peer.peer_id_multihash);
      assert.equal(peerIdFromPublicKey(pub), peer.peer_id);
      assert.ok(peer.peer_id.startsWith('12D3KooW'));
      assert.deepEqual(publicKeyFromPeerId(peer.peer_id), pub);
      assert.ok(isPeerId(peer.peer_id));
      const identity = Identity.fromSeed(h(peer.ed25519_seed));
      assert.equal(identity.peerId, peer.peer_id);
      assert.deepEqual(identity.publicKey, pub);
      assert.equal(Identity.fromPrivateKey(h(peer.ed25519_private_key_go)).peerId, peer.peer_id);
    });
  }
  it('every generated identity has a 12D3KooW… ID that round-trips', () => {
    for (let i = 0; i < 20; i++) {
      const id = Identity.generate();
      assert.match(id.peerId, /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/);
      assert.deepEqual(publicKeyFromPeerId(id.peerId), id.publicKey);
    }
  });
  it('refuses anything that is not an Ed25519 identity peer ID', () => {
    const sha256Id = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'; // sha2-256 multihash (RSA-era)
    const secp = base58Encode(h('002508021221' + '02'.repeat(33))); // secp256k1 key type
    const short = base58Encode(h(A.peer_id_multihash).subarray(0, 37));
    const long = base58Encode(h(A.peer_id_multihash + '00'));
    for (const bad of [sha256Id, secp, short, long, '', '12D3KooW', '12D3KooW0OIl', 'x'.repeat(200)]) {
      assert.throws(() => publicKeyFromPeerId(bad), InvalidPeerIdError, bad);
      assert.equal(isPeerId(bad), false);
    }
    assert.throws(() => publicKeyFromPeerId(42 as unknown as string), InvalidPeerIdError);
    assert.throws(() => peerIdFromPublicKey(new Uint8Array(31)), InvalidKeyError);
  });
});

describe('fingerprint', () => {
  it('is base32 of SHA-256(multihash)[0:10], grouped 4-4-4-4 (values computed with Python hashlib/base64)', () => {
    assert.equal(fingerprint(A.peer_id), 'F2UZ-4BFX-EJXL-WCMF');
    assert.equal(fingerprint(B.peer_id), 'OX24-Q4ND-2UOA-BTQU');
    assert.equal(Identity.fromSeed(h(A.ed25519_seed)).fingerprint, 'F2UZ-4BFX-EJXL-WCMF');
  });
  it('has a fixed shape and rejects non-Ed25519 IDs', () => {
    assert.match(fingerprint(Identity.generate().peerId), /^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/);
    assert.throws(() => fingerprint('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'), InvalidPeerIdError);
  });
});

describe('Identity', () => {
  it('signs and verifies (RFC 8032 test 1 key)', () => {
    const id = Identity.fromSeed(h('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    assert.equal(hex(id.publicKey), 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = id.sign(new Uint8Array());
    assert.equal(
      hex(sig),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    assert.ok(id.verify(sig, new Uint8Array()));
    assert.ok(verifySignature(id.publicKey, sig, new Uint8Array()));
    assert.ok(!id.verify(sig, utf8Encode('x')));
    assert.ok(!verifySignature(h(A.ed25519_public_key), sig, new Uint8Array()));
    assert.ok(!verifySignature(new Uint8Array(5), sig, new Uint8Array())); // malformed: false, no throw
    assert.ok(!verifySignature(id.publicKey, sig.subarray(1), new Uint8Array()));
  });
  it('exports the seed only on request; JSON and strings show public data', () => {
    const id = Identity.fromSeed(h(A.ed25519_seed));
    assert.deepEqual(id.export(), { seed: A.ed25519_seed });
    assert.equal(hex(id.exportSeed()), A.ed25519_seed);
    assert.equal(Identity.fromExport(JSON.parse(JSON.stringify(id.export()))).peerId, A.peer_id);
    const json = JSON.stringify(id);
    assert.deepEqual(JSON.parse(json), { peerId: A.peer_id, publicKey: A.ed25519_public_key });
    assert.ok(!json.includes(A.ed25519_seed));
    assert.equal(String(id), `Identity(${A.peer_id})`);
    assert.ok(!JSON.stringify({ id }).includes('0101010101'));
  });
  it('copies keys in and out', () => {
    const seed = h(A.ed25519_seed);
    const id = Identity.fromSeed(seed);
    seed.fill(0);
    id.exportSeed().fill(0);
    id.publicKey.fill(0);
    assert.equal(id.export().seed, A.ed25519_seed);
    assert.equal(hex(id.publicKey), A.ed25519_public_key);
  });
  it('validates its inputs', () => {
    assert.throws(() => Identity.fromSeed(new Uint8Array(31)), InvalidKeyError);
    assert.throws(() => Identity.fromSeed(h(A.ed25519_private_key_go)), InvalidKeyError);
    assert.throws(() => Identity.fromExport({ seed: 'zz'.repeat(32) }), InvalidArgumentError);
    assert.throws(() => Identity.fromExport({ seed: '01' }), InvalidArgumentError);
    assert.throws(() => Identity.fromExport(null as unknown as { seed: string }), InvalidArgumentError);
  });
  it('derives the Glueberry stream key and cipher with a peer', () => {
    const a = Identity.fromSeed(h(A.ed25519_seed));
    const b = Identity.fromSeed(h(B.ed25519_seed));
    assert.equal(hex(a.sharedKey(b.publicKey)), vectors.stream_key.key);
    const frame = a.streamCipher(b.publicKey).encrypt(utf8Encode('hi'));
    assert.equal(new TextDecoder().decode(b.streamCipher(a.publicKey).decrypt(frame)), 'hi');
  });
});

async function exerciseStore(store: IdentityStore): Promise<void> {
  assert.equal(await store.load(), undefined);
  await store.clear(); // nothing stored: no error
  const created = await loadOrCreateIdentity(store);
  assert.equal((await store.load())?.peerId, created.peerId);
  assert.equal((await loadOrCreateIdentity(store)).peerId, created.peerId);
  const other = Identity.fromSeed(h(B.ed25519_seed));
  await store.save(other);
  assert.equal((await store.load())?.peerId, B.peer_id);
  await store.clear();
  assert.equal(await store.load(), undefined);
}

describe('identity stores', () => {
  it('MemoryIdentityStore', () => exerciseStore(new MemoryIdentityStore()));

  it('IndexedDbIdentityStore (on a fake IndexedDB)', async () => {
    const idb = new FakeIndexedDb();
    const store = new IndexedDbIdentityStore({ indexedDB: idb as unknown as IDBFactory, name: 'alice' });
    await exerciseStore(store);
    await store.save(Identity.fromSeed(h(A.ed25519_seed)));
    const record = idb.databases.get('glueberry')!.get('identities')!.get('alice') as Record<string, unknown>;
    assert.ok(record.seed instanceof Uint8Array);
    assert.equal(hex(record.seed), A.ed25519_seed);
    assert.equal(record.peerId, A.peer_id);
    assert.equal(idb.openConnections, 0, 'connections are closed after each operation');
    const other = new IndexedDbIdentityStore({ indexedDB: idb as unknown as IDBFactory, name: 'bob' });
    assert.equal(await other.load(), undefined);
    record.peerId = B.peer_id; // tampered record
    await assert.rejects(store.load(), IdentityStoreError);
    record.seed = new Uint8Array(3);
    await assert.rejects(store.load(), IdentityStoreError);
  });

  it('IndexedDbIdentityStore without IndexedDB fails with IdentityStoreError', async () => {
    const store = new IndexedDbIdentityStore();
    await assert.rejects(store.load(), IdentityStoreError);
  });

  describe('FileIdentityStore', () => {
    let dir: string | undefined;
    after(async () => {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    it('stores the seed in an owner-only JSON file', async () => {
      dir = await mkdtemp(join(tmpdir(), 'glueberry-js-'));
      const path = join(dir, 'sub', 'identity.json');
      await exerciseStore(new FileIdentityStore(path));
      const store = new FileIdentityStore(path);
      await store.save(Identity.fromSeed(h(A.ed25519_seed)));
      assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { version: 1, peerId: A.peer_id, seed: A.ed25519_seed });
      if (process.platform !== 'win32') assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await store.load())?.peerId, A.peer_id);
    });

    it('refuses malformed or inconsistent files', async () => {
      dir ??= await mkdtemp(join(tmpdir(), 'glueberry-js-'));
      const path = join(dir, 'bad.json');
      const store = new FileIdentityStore(path);
      for (const content of [
        'not json',
        '{}',
        JSON.stringify({ version: 1, peerId: B.peer_id, seed: A.ed25519_seed }),
        JSON.stringify({ version: 2, peerId: A.peer_id, seed: A.ed25519_seed }),
      ]) {
        await writeFile(path, content);
        await assert.rejects(store.load(), IdentityStoreError, content);
      }
      await assert.rejects(new FileIdentityStore(dir).load(), IdentityStoreError); // a directory
    });
  });
});
