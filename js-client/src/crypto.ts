/**
 * Encryption of Glueberry named streams, bit-for-bit as Go (PROTOCOL.md §8).
 *
 * * §8.1 key conversion: {@link edPrivateToX25519}, {@link edPublicToX25519} (Go
 *   `pkg/crypto/keys.go` with `filippo.io/edwards25519` decoding rules, mirrored exactly).
 * * §8.2–8.3 key agreement: {@link sharedKey} = HKDF-SHA256(X25519(local, remote)): one static
 *   key per peer pair, for both directions, every stream name and every session.
 * * §8.4–8.5 frames: {@link StreamCipher}, `nonce(12) || ChaCha20-Poly1305 ciphertext || tag(16)`,
 *   no associated data.
 *
 * Interop requires keeping Go's weaknesses (§8.6): no forward secrecy, random nonces, no AAD, so
 * frames can be replayed or moved between streams of the same peer pair. Do not "fix" them here.
 *
 * Why not `ed25519.utils.toMontgomery` from @noble/curves: it decodes the point strictly (RFC 8032):
 * it rejects a non-reduced y (y ≥ p) and x = 0 with the sign bit set, which Go accepts, and it
 * throws on the identity (1/0) where Go returns u = 0. The conversion below follows Go instead.
 */

// @noble in the order that gzips best in the browser bundle (the bundle follows import order)
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { mod, pow } from '@noble/curves/abstract/modular.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { concatBytes, equalBytes, utf8Encode } from './bytes.js';
import { DecryptionError, InvalidArgumentError, InvalidKeyError, InvalidStateError } from './errors.js';

export const KEY_SIZE = 32;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;
/** Bytes an encrypted frame adds to its plaintext; also the smallest valid frame. */
export const OVERHEAD = NONCE_SIZE + TAG_SIZE;
/** Go's default `MaxMessageSize`: the largest plaintext a default Go node sends (§8.5). */
export const MAX_MESSAGE_SIZE = 1 << 20;
export const HKDF_INFO = 'glueberry-v1-stream-key';

const P = 2n ** 255n - 19n;
/** The edwards25519 constant d = −121665 / 121666 mod p. */
const D = mod(-121665n * pow(121666n, P - 2n, P), P);

/** @internal Throws {@link InvalidKeyError} unless `bytes` is a Uint8Array of `length` bytes. */
export function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new InvalidKeyError(`${what} must be ${length} bytes`);
  }
}

// ------------------------------------------------------------------------------------------
// Ed25519 keys

/** The Ed25519 public key of a 32-byte seed (RFC 8032). */
export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  checkLength(seed, 32, 'Ed25519 seed');
  return ed25519.getPublicKey(seed);
}

/**
 * The 32-byte seed of a private key given as a seed, a 64-byte Go `ed25519.PrivateKey`
 * (seed ‖ public) or the 96-byte libp2p form with a redundant trailing copy of the public key.
 * Throws {@link InvalidKeyError} for other lengths or when the public half does not match.
 */
export function seedFromPrivateKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || ![32, 64, 96].includes(key.length)) {
    throw new InvalidKeyError('bad Ed25519 private key'); // not 32, 64 or 96 bytes
  }
  const seed = key.slice(0, 32);
  if (key.length > 32) {
    const pub = publicKeyFromSeed(seed);
    const ok = equalBytes(pub, key.subarray(32, 64)) && (key.length === 64 || equalBytes(pub, key.subarray(64)));
    if (!ok) throw new InvalidKeyError('bad Ed25519 private key'); // a wrong public half
  }
  return seed;
}

// ------------------------------------------------------------------------------------------
// §8.1 Ed25519 → X25519

/** `clamp(SHA-512(seed)[0:32])`, Go's `Ed25519PrivateToX25519` (seed, or 64/96-byte Go form). */
export function edPrivateToX25519(privateKey: Uint8Array): Uint8Array {
  const scalar = sha512(seedFromPrivateKey(privateKey)).slice(0, 32);
  scalar[0]! &= 0xf8;
  scalar[31]! &= 0x7f;
  scalar[31]! |= 0x40;
  return scalar;
}

/**
 * The Montgomery `u = (1 + y) / (1 − y)` of an Ed25519 public key, Go's `Ed25519PublicToX25519`.
 *
 * Decoding follows `edwards25519.Point.SetBytes`: y is the low 255 bits, reduced mod p
 * (non-canonical encodings are accepted); the sign bit does not affect u; the key is rejected
 * only when `(y² − 1) / (d·y² + 1)` is not a square mod p. `1/0` is taken as 0, so the identity
 * (y = 1) converts to u = 0, which {@link x25519SharedSecret} then rejects as low-order.
 *
 * Throws {@link InvalidKeyError}: not 32 bytes, or not the encoding of a curve point.
 */
export function edPublicToX25519(publicKey: Uint8Array): Uint8Array {
  checkLength(publicKey, 32, 'Ed25519 public key');
  const y = mod(bytesToNumberLE(publicKey) & ((1n << 255n) - 1n), P);
  const y2 = (y * y) % P;
  // x² = (y² − 1) / (d·y² + 1); the denominator is never 0 because −1/d is not a square.
  const x2 = mod((y2 - 1n) * pow(mod(D * y2 + 1n, P), P - 2n, P), P);
  if (x2 !== 0n && pow(x2, (P - 1n) / 2n, P) !== 1n) {
    // Euler's criterion: x² is not a square, so no x exists
    throw new InvalidKeyError('bad Ed25519 public key'); // not a curve point
  }
  const u = mod((1n + y) * pow(mod(1n - y, P), P - 2n, P), P); // 0^(p−2) = 0, as Go's Invert(0)
  return numberToBytesLE(u, 32);
}

// ------------------------------------------------------------------------------------------
// §8.2–8.3 key agreement

/**
 * Raw `X25519(private, public)` (RFC 7748); never use it directly as a key.
 *
 * Throws {@link InvalidKeyError} for a key of the wrong length or a low-order public key (the
 * result would be all zero; Go's `crypto/ecdh` and Glueberry reject it). @noble/curves refuses
 * the low-order inputs before the ladder, which for clamped scalars is the same set.
 */
export function x25519SharedSecret(x25519Private: Uint8Array, x25519Public: Uint8Array): Uint8Array {
  checkLength(x25519Private, 32, 'X25519 private key');
  checkLength(x25519Public, 32, 'X25519 public key');
  let shared: Uint8Array | undefined;
  let cause: unknown;
  try {
    shared = x25519.getSharedSecret(x25519Private, x25519Public);
  } catch (err) {
    cause = err;
  }
  if (!shared || shared.every((b) => b === 0)) throw new InvalidKeyError('low-order X25519 public key', { cause });
  return shared;
}

/** HKDF-SHA256(IKM = shared secret, salt = none (32 zero bytes), info = {@link HKDF_INFO}, L = 32). */
export function deriveStreamKey(sharedSecret: Uint8Array): Uint8Array {
  return hkdf(sha256, sharedSecret, undefined, utf8Encode(HKDF_INFO), KEY_SIZE);
}

/**
 * The stream key Go's `PrepareStreams` derives for this peer pair (§8.2–8.3). `localPrivate` as
 * for {@link edPrivateToX25519}; `remotePublic` is the remote's raw 32-byte Ed25519 public key.
 * Both peers get the same key.
 *
 * Throws {@link InvalidKeyError}: the remote key is not 32 bytes, not a curve point, or low-order.
 */
export function sharedKey(localPrivate: Uint8Array, remotePublic: Uint8Array): Uint8Array {
  const u = edPublicToX25519(remotePublic);
  const scalar = edPrivateToX25519(localPrivate);
  try {
    return deriveStreamKey(x25519SharedSecret(scalar, u));
  } finally {
    scalar.fill(0);
  }
}

// ------------------------------------------------------------------------------------------
// §8.4–8.5 frames

/** `randomBytes(n)`: n bytes from the platform CSPRNG (`crypto.getRandomValues`), as Go's `crypto/rand`. */
export { randomBytes };

/**
 * ChaCha20-Poly1305 with Glueberry's frame layout (§8.4): `nonce || ciphertext || tag`, no AAD.
 * One instance serves both directions and every stream of a peer pair (the key is shared).
 *
 * `close()` overwrites this object's copy of the key; the caller's array is not touched.
 */
export class StreamCipher {
  #key: Uint8Array | undefined;

  constructor(key: Uint8Array) {
    checkLength(key, KEY_SIZE, 'stream key');
    this.#key = key.slice();
  }

  get closed(): boolean {
    return this.#key === undefined;
  }

  #liveKey(): Uint8Array {
    if (this.#key === undefined) throw new InvalidStateError('stream cipher closed');
    return this.#key;
  }

  /**
   * Encrypt one message into a frame (the payload to hand to `encodeFrame`). `nonce` defaults to
   * 12 fresh random bytes, as Go does; pass one only in tests: reusing a nonce with this static
   * key destroys confidentiality.
   */
  encrypt(plaintext: Uint8Array, nonce?: Uint8Array): Uint8Array {
    const key = this.#liveKey();
    nonce ??= randomBytes(NONCE_SIZE);
    if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_SIZE) {
      throw new InvalidArgumentError('nonce must be 12 bytes');
    }
    return concatBytes(nonce, chacha20poly1305(key, nonce).encrypt(plaintext));
  }

  /**
   * Authenticate and decrypt one frame. Go drops a frame that fails here and keeps reading the
   * stream (§8.5); do the same. Throws {@link DecryptionError}: shorter than 28 bytes, or the tag
   * does not verify.
   */
  decrypt(frame: Uint8Array): Uint8Array {
    const key = this.#liveKey();
    if (!(frame instanceof Uint8Array) || frame.length < OVERHEAD) {
      throw new DecryptionError('bad encrypted frame'); // too short
    }
    try {
      return chacha20poly1305(key, frame.subarray(0, NONCE_SIZE)).decrypt(frame.subarray(NONCE_SIZE));
    } catch (cause) {
      throw new DecryptionError('bad encrypted frame', { cause }); // not authentic
    }
  }

  /** Wipe this object's copy of the key and refuse further use (idempotent). */
  close(): void {
    this.#key?.fill(0);
    this.#key = undefined;
  }
}
