/**
 * Ed25519 identities, libp2p peer IDs and human fingerprints (PROTOCOL.md §2.1).
 *
 * A peer ID is the multihash of the protobuf-encoded public key. For Ed25519 the 36-byte protobuf
 * `08 01 12 20 ‖ key` fits the identity hash, so the multihash is `00 24 08 01 12 20 ‖ key`, the
 * string is its base58btc form (always `12D3KooW…`) and the key can be read back out of the ID.
 * The same key drives the Glueberry stream encryption (§8), so a peer ID pins the stream key.
 * Spec: libp2p/specs `peer-ids/peer-ids.md`.
 */

// crypto.js first: the browser bundle (browser.ts) then holds all of @noble ahead of our code
import { StreamCipher, checkLength, publicKeyFromSeed, randomBytes, seedFromPrivateKey, sharedKey } from './crypto.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { base32Encode, base58Decode, base58Encode, concatBytes, fromHex, toHex } from './bytes.js';
import { InvalidArgumentError, InvalidPeerIdError } from './errors.js';

/** Multihash identity (0x00), length 36 (0x24), protobuf `Type: Ed25519 (08 01)`, `Data: 32 bytes (12 20)`. */
const ED25519_MULTIHASH_PREFIX = Uint8Array.of(0x00, 0x24, 0x08, 0x01, 0x12, 0x20);
const PEER_ID_BYTES = ED25519_MULTIHASH_PREFIX.length + 32;
/** base58btc of a 38-byte multihash is at most 52 characters; anything longer is not one of ours. */
const MAX_PEER_ID_LENGTH = 64;

const checkPublicKey = (publicKey: Uint8Array): void => checkLength(publicKey, 32, 'Ed25519 public key');

/** libp2p `PublicKey{Type: Ed25519, Data: key}`: `08 01 12 20 ‖ key`. */
export function publicKeyToProtobuf(publicKey: Uint8Array): Uint8Array {
  checkPublicKey(publicKey);
  return concatBytes(ED25519_MULTIHASH_PREFIX.subarray(2), publicKey);
}

/** The peer ID multihash bytes, `00 24 08 01 12 20 ‖ key`. */
export function peerIdMultihash(publicKey: Uint8Array): Uint8Array {
  checkPublicKey(publicKey);
  return concatBytes(ED25519_MULTIHASH_PREFIX, publicKey);
}

/** The libp2p peer ID string (`12D3KooW…`) of a raw 32-byte Ed25519 public key. */
export function peerIdFromPublicKey(publicKey: Uint8Array): string {
  return base58Encode(peerIdMultihash(publicKey));
}

function multihashFromPeerId(peerId: string): Uint8Array {
  let raw: Uint8Array | undefined;
  try {
    if (peerId.length <= MAX_PEER_ID_LENGTH) raw = base58Decode(peerId);
  } catch {
    // not base58btc (or not a string): refused below
  }
  // e.g. "Qm…" (sha2-256 of an RSA key) or another key type: the key cannot be read from it
  if (raw?.length !== PEER_ID_BYTES || !ED25519_MULTIHASH_PREFIX.every((b, i) => raw[i] === b)) {
    throw new InvalidPeerIdError(`not an Ed25519 peer ID: ${String(peerId).slice(0, 80)}`);
  }
  return raw;
}

/**
 * The raw Ed25519 public key inside an identity-multihash peer ID (`12D3KooW…`).
 * Throws {@link InvalidPeerIdError} for anything else (other key types, sha2-256 IDs, garbage).
 */
export function publicKeyFromPeerId(peerId: string): Uint8Array {
  return multihashFromPeerId(peerId).slice(ED25519_MULTIHASH_PREFIX.length);
}

/** True for a well-formed Ed25519 peer ID string. */
export function isPeerId(peerId: unknown): peerId is string {
  try {
    multihashFromPeerId(peerId as string);
    return true;
  } catch {
    return false;
  }
}

/**
 * A short fingerprint of a peer ID for people to compare (out of band, aloud, side by side).
 *
 * Definition (mirror it exactly in other implementations):
 *
 *     multihash = base58btc-decode(peerId)         // 38 bytes: 00 24 08 01 12 20 ‖ Ed25519 key
 *     digest    = SHA-256(multihash)[0:10]          // 80 bits
 *     text      = RFC 4648 base32 of digest         // alphabet A–Z 2–7, uppercase, 16 chars, no '='
 *     result    = text[0:4] "-" text[4:8] "-" text[8:12] "-" text[12:16]
 *
 * e.g. "ABCD-EFGH-IJKL-MNOP". Python: `s = base64.b32encode(hashlib.sha256(mh).digest()[:10])
 * .decode(); "-".join(s[i:i + 4] for i in range(0, 16, 4))`. Only Ed25519 peer IDs are accepted
 * ({@link InvalidPeerIdError} otherwise). 80 bits is far beyond what a person can be tricked into
 * matching by a brute-forced look-alike key.
 */
export function fingerprint(peerId: string): string {
  return base32Encode(sha256(multihashFromPeerId(peerId)).subarray(0, 10)).match(/.{4}/g)!.join('-');
}

/** Verify an Ed25519 signature (RFC 8032 strict decoding, as Go's `crypto/ed25519`); never throws. */
export function verifySignature(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** The JSON-safe export of an identity: its 32-byte Ed25519 seed in hex. Keep it secret. */
export interface IdentityExport {
  seed: string;
}

/**
 * An Ed25519 key pair: the client's libp2p identity and its Glueberry encryption key.
 *
 * The seed lives in a private field and only leaves the object through {@link export} or
 * {@link exportSeed}; `toJSON()` and `toString()` deliberately show only public data, so logging
 * or `JSON.stringify` of an identity never leaks the key.
 */
export class Identity {
  readonly #seed: Uint8Array;
  readonly #publicKey: Uint8Array;
  /** The libp2p peer ID (`12D3KooW…`). */
  readonly peerId: string;

  private constructor(seed: Uint8Array) {
    this.#seed = seed;
    this.#publicKey = publicKeyFromSeed(seed);
    this.peerId = peerIdFromPublicKey(this.#publicKey);
  }

  /** A fresh identity from the platform CSPRNG. */
  static generate(): Identity {
    return new Identity(randomBytes(32));
  }

  /** The identity of a 32-byte Ed25519 seed (RFC 8032 private key). The bytes are copied. */
  static fromSeed(seed: Uint8Array): Identity {
    checkLength(seed, 32, 'Ed25519 seed');
    return new Identity(seed.slice());
  }

  /** From a seed, a 64-byte Go `ed25519.PrivateKey` (seed ‖ public) or its 96-byte libp2p form. */
  static fromPrivateKey(privateKey: Uint8Array): Identity {
    return new Identity(seedFromPrivateKey(privateKey));
  }

  /** Inverse of {@link export}. */
  static fromExport(data: IdentityExport): Identity {
    if (typeof data?.seed !== 'string' || data.seed.length !== 64) {
      throw new InvalidArgumentError('bad identity export');
    }
    return new Identity(fromHex(data.seed));
  }

  /** The raw 32-byte Ed25519 public key (a copy). */
  get publicKey(): Uint8Array {
    return this.#publicKey.slice();
  }

  /** {@link fingerprint} of this identity's peer ID. */
  get fingerprint(): string {
    return fingerprint(this.peerId);
  }

  /** The secret seed, hex-encoded, for backup or storage. Keep it on the client. */
  export(): IdentityExport {
    return { seed: toHex(this.#seed) };
  }

  /** The secret 32-byte seed (a copy). Keep it on the client. */
  exportSeed(): Uint8Array {
    return this.#seed.slice();
  }

  /** Public data only: `{ peerId, publicKey }` (hex). Use {@link export} for the secret. */
  toJSON(): { peerId: string; publicKey: string } {
    return { peerId: this.peerId, publicKey: toHex(this.#publicKey) };
  }

  toString(): string {
    return `Identity(${this.peerId})`;
  }

  /** Ed25519 signature (64 bytes) of `message`. */
  sign(message: Uint8Array): Uint8Array {
    return ed25519.sign(message, this.#seed);
  }

  /** Whether `signature` is this identity's signature of `message`. */
  verify(signature: Uint8Array, message: Uint8Array): boolean {
    return verifySignature(this.#publicKey, signature, message);
  }

  /** The Glueberry stream key shared with the holder of `remotePublicKey` (§8.2–8.3). */
  sharedKey(remotePublicKey: Uint8Array): Uint8Array {
    return sharedKey(this.#seed, remotePublicKey);
  }

  /** A {@link StreamCipher} keyed with {@link sharedKey}; the intermediate key copy is wiped. */
  streamCipher(remotePublicKey: Uint8Array): StreamCipher {
    const key = this.sharedKey(remotePublicKey);
    try {
      return new StreamCipher(key);
    } finally {
      key.fill(0);
    }
  }
}
