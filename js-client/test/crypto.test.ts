import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { utf8Decode } from '../src/bytes.js';
import {
  HKDF_INFO,
  OVERHEAD,
  StreamCipher,
  deriveStreamKey,
  edPrivateToX25519,
  edPublicToX25519,
  seedFromPrivateKey,
  sharedKey,
  x25519SharedSecret,
} from '../src/crypto.js';
import { DecryptionError, InvalidArgumentError, InvalidKeyError, InvalidStateError } from '../src/errors.js';
import { FrameDecoder, encodeFrame } from '../src/framing.js';
import { h, hex, vectors } from './helpers.js';

const A = vectors.peer_a;
const B = vectors.peer_b;
const KEY = h(vectors.stream_key.key);

/** One payload from a complete wire transcript. */
function unframe(wire: string): Uint8Array {
  const decoder = new FrameDecoder(1 << 20);
  const payloads = decoder.push(h(wire));
  decoder.end();
  assert.equal(payloads.length, 1);
  return payloads[0]!;
}

describe('PROTOCOL.md §8.1 Ed25519 → X25519 (vectors peer_a, peer_b)', () => {
  for (const peer of [A, B]) {
    it(`converts the keys of seed ${peer.ed25519_seed.slice(0, 2)}×32`, () => {
      assert.equal(hex(edPrivateToX25519(h(peer.ed25519_seed))), peer.x25519_private_key);
      assert.equal(hex(edPrivateToX25519(h(peer.ed25519_private_key_go))), peer.x25519_private_key);
      assert.equal(hex(edPublicToX25519(h(peer.ed25519_public_key))), peer.x25519_public_key);
      assert.equal(hex(x25519.getPublicKey(h(peer.x25519_private_key))), peer.x25519_public_key); // X25519(priv, 9)
    });
  }
  it('accepts the 64-byte Go private key and the 96-byte libp2p form, checking the public half', () => {
    const go = h(A.ed25519_private_key_go);
    assert.equal(hex(seedFromPrivateKey(go)), A.ed25519_seed);
    assert.equal(hex(seedFromPrivateKey(h(A.ed25519_private_key_go + A.ed25519_public_key))), A.ed25519_seed);
    const wrong = go.slice();
    wrong[63]! ^= 1;
    assert.throws(() => seedFromPrivateKey(wrong), InvalidKeyError);
    assert.throws(() => seedFromPrivateKey(h(A.ed25519_private_key_go + B.ed25519_public_key)), InvalidKeyError);
    assert.throws(() => edPrivateToX25519(new Uint8Array(31)), InvalidKeyError);
  });
  it('ignores the sign bit, as Go does', () => {
    const flipped = h(A.ed25519_public_key);
    flipped[31]! ^= 0x80;
    assert.equal(hex(edPublicToX25519(flipped)), A.x25519_public_key);
  });
  it('agrees with @noble/curves on canonical keys', () => {
    for (let i = 0; i < 32; i++) {
      const { secretKey, publicKey } = ed25519.keygen();
      assert.deepEqual(edPublicToX25519(publicKey), ed25519.utils.toMontgomery(publicKey));
      assert.deepEqual(edPrivateToX25519(secretKey), ed25519.utils.toMontgomerySecret(secretKey));
    }
  });
  // Expected values from python-sdk glueberry.wire.cipher (ed25519_public_to_x25519, and shared_key
  // with seed A), which mirrors filippo.io/edwards25519: y is the low 255 bits reduced mod p.
  const nonCanonical: [string, string, string, string][] = [
    ['y = p ≡ 0 (order 4)', 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', '01' + '00'.repeat(31), 'low-order'],
    ['y = p + 1 ≡ 1 (identity)', 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', '00'.repeat(32), 'low-order'],
    ['y = p + 3 ≡ 3', 'f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'eb' + 'ff'.repeat(30) + '7f', 'ca3c0c5cf6ff713c71d1b0f3ace6adfd14dd06dc9e9e5a4ffea5873c0c319e33'],
    ['y = p + 4 ≡ 4', 'f1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', '47' + '55'.repeat(31), '4a122a94e3cb61fd4c344e72c46946697c458b9162a9dd52f04db09fc4a6658e'],
    ['y = p + 18 ≡ 18', 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', '3f' + '4b'.repeat(31), 'b586a29ca53a21d999d2471709101a52e62876115772d23cb4d00ccdf2982289'],
  ];
  for (const [name, ed, u, key] of nonCanonical) {
    it(`accepts the non-reduced encoding ${name}`, () => {
      assert.equal(hex(edPublicToX25519(h(ed))), u);
      if (key === 'low-order') assert.throws(() => sharedKey(h(A.ed25519_seed), h(ed)), InvalidKeyError);
      else assert.equal(hex(sharedKey(h(A.ed25519_seed), h(ed))), key);
    });
  }
  it('rejects the non-reduced y = p + 2 ≡ 2, not on the curve', () => {
    assert.throws(() => edPublicToX25519(h('efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')), InvalidKeyError);
  });
  it('takes x = 0 with the sign bit set (which RFC 8032 decoders refuse), as Go does', () => {
    assert.equal(hex(edPublicToX25519(h('01' + '00'.repeat(30) + '80'))), '00'.repeat(32));
    assert.equal(hex(edPublicToX25519(h('00'.repeat(31) + '80'))), '01' + '00'.repeat(31));
  });
});

describe('rejected_remote_keys', () => {
  for (const c of vectors.rejected_remote_keys.cases) {
    it(c.reason, () => {
      const key = h(c.ed25519_public_key);
      if (c.x25519_public_key !== undefined) assert.equal(hex(edPublicToX25519(key)), c.x25519_public_key);
      else assert.throws(() => edPublicToX25519(key), InvalidKeyError);
      assert.throws(() => sharedKey(h(A.ed25519_seed), key), InvalidKeyError);
    });
  }
});

describe('PROTOCOL.md §8.2–8.3 ECDH and the stream key', () => {
  it('computes the raw shared secret from both sides', () => {
    const ab = x25519SharedSecret(h(A.x25519_private_key), h(B.x25519_public_key));
    const ba = x25519SharedSecret(h(B.x25519_private_key), h(A.x25519_public_key));
    assert.equal(hex(ab), vectors.ecdh.shared_secret);
    assert.deepEqual(ba, ab);
  });
  it('derives the stream key with HKDF-SHA256, empty salt, info glueberry-v1-stream-key', () => {
    assert.equal(HKDF_INFO, vectors.stream_key.hkdf_info_ascii);
    assert.equal(hex(deriveStreamKey(h(vectors.ecdh.shared_secret))), vectors.stream_key.key);
  });
  it('gives both peers the same key, from seeds or Go private keys', () => {
    assert.equal(hex(sharedKey(h(A.ed25519_seed), h(B.ed25519_public_key))), vectors.stream_key.key);
    assert.equal(hex(sharedKey(h(B.ed25519_private_key_go), h(A.ed25519_public_key))), vectors.stream_key.key);
  });
  it('rejects low-order X25519 inputs and wrong lengths', () => {
    assert.throws(() => x25519SharedSecret(h(A.x25519_private_key), new Uint8Array(32)), InvalidKeyError);
    assert.throws(() => x25519SharedSecret(h(A.x25519_private_key), new Uint8Array(31)), InvalidKeyError);
    assert.throws(() => sharedKey(h(A.ed25519_seed), new Uint8Array(33)), InvalidKeyError);
  });
});

describe('PROTOCOL.md §8.4–8.5 StreamCipher', () => {
  const f = vectors.encrypted_frame;
  it('produces the encrypted_frame vector with the fixed nonce', () => {
    const frame = new StreamCipher(KEY).encrypt(h(f.plaintext), h(f.nonce));
    assert.equal(hex(frame), f.frame);
    assert.equal(frame.length, f.frame_length);
    assert.equal(hex(frame.subarray(12)), f.ciphertext_and_tag);
    assert.equal(hex(encodeFrame(frame)), f.wire);
  });
  it('decrypts the encrypted_frame wire bytes', () => {
    assert.equal(utf8Decode(new StreamCipher(KEY).decrypt(unframe(f.wire))), 'hello glueberry');
  });
  it('handles the empty plaintext (a 28-byte frame)', () => {
    const e = vectors.encrypted_frame_empty_plaintext;
    const cipher = new StreamCipher(KEY);
    assert.equal(hex(cipher.encrypt(new Uint8Array(), h(f.nonce))), e.frame);
    assert.equal(hex(encodeFrame(h(e.frame))), e.wire);
    assert.deepEqual(cipher.decrypt(unframe(e.wire)), new Uint8Array());
  });
  it('rejects the tampered frame with DecryptionError and keeps working', () => {
    const cipher = new StreamCipher(KEY);
    assert.throws(() => cipher.decrypt(unframe(vectors.encrypted_frame_tampered.wire)), DecryptionError);
    assert.equal(utf8Decode(cipher.decrypt(h(f.frame))), 'hello glueberry');
  });
  it('rejects frames shorter than 28 bytes and any flipped bit', () => {
    const cipher = new StreamCipher(KEY);
    assert.equal(OVERHEAD, 28);
    for (const len of [0, 1, 12, 27]) assert.throws(() => cipher.decrypt(new Uint8Array(len)), DecryptionError);
    const frame = h(f.frame);
    for (let i = 0; i < frame.length; i++) {
      const bad = frame.slice();
      bad[i]! ^= 0x01;
      assert.throws(() => cipher.decrypt(bad), DecryptionError, `byte ${i}`);
    }
  });
  it('uses a fresh random nonce per message and round-trips', () => {
    const a = new StreamCipher(sharedKey(h(A.ed25519_seed), h(B.ed25519_public_key)));
    const b = new StreamCipher(sharedKey(h(B.ed25519_seed), h(A.ed25519_public_key)));
    const msg = globalThis.crypto.getRandomValues(new Uint8Array(1000));
    const one = a.encrypt(msg);
    const two = a.encrypt(msg);
    assert.equal(one.length, msg.length + OVERHEAD);
    assert.notDeepEqual(one.subarray(0, 12), two.subarray(0, 12));
    assert.deepEqual(b.decrypt(one), msg);
    assert.deepEqual(b.decrypt(two), msg);
  });
  it('validates key and nonce lengths, copies the key, and refuses use after close()', () => {
    assert.throws(() => new StreamCipher(new Uint8Array(31)), InvalidKeyError);
    const key = KEY.slice();
    const cipher = new StreamCipher(key);
    key.fill(0); // the caller's copy does not matter any more
    assert.equal(hex(cipher.encrypt(h(f.plaintext), h(f.nonce))), f.frame);
    assert.throws(() => cipher.encrypt(h('00'), new Uint8Array(11)), InvalidArgumentError);
    assert.equal(cipher.closed, false);
    cipher.close();
    cipher.close();
    assert.equal(cipher.closed, true);
    assert.throws(() => cipher.encrypt(h('00')), InvalidStateError);
    assert.throws(() => cipher.decrypt(h(f.frame)), InvalidStateError);
  });
});
