/**
 * The ready-made application handshake (PROTOCOL.md §10), byte-compatible with our Python and Go
 * test peers. Glueberry itself only carries opaque messages on the `handshake` stream; these are
 * the messages (each is one framed payload, §6/§7):
 *
 *     Hello    = 01 ‖ name      name: UTF-8, 0–64 bytes (may be empty)
 *     PubKey   = 02 ‖ key       key: the sender's raw 32-byte Ed25519 public key
 *     Complete = 03
 *
 * Flow: the dialler (initiator) sends Hello and PubKey. A side that receives Hello answers with
 * its own Hello and PubKey if it has not sent its PubKey yet. A side that receives PubKey checks
 * the key against the peer ID it expects, derives the stream key (Go's `PrepareStreams`) and sends
 * Complete once. A side that has both prepared and received Complete is established (Go's
 * `FinalizeHandshake`). Because Go may send encrypted data right after its PrepareStreams, a peer
 * that never sends Complete but sends a valid encrypted frame counts as established too
 * ({@link HelloHandshake.markEstablishedByTraffic}).
 */

import { utf8Encode } from './bytes.js';
import type { StreamCipher } from './crypto.js';
import { HandshakeError, InvalidArgumentError, InvalidStateError, KeyMismatchError } from './errors.js';
import { type Identity, peerIdFromPublicKey, publicKeyFromPeerId } from './identity.js';

export const HELLO = 0x01;
export const PUBKEY = 0x02;
export const COMPLETE = 0x03;
/** Longest name a Hello may carry, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 64;

const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

export type HandshakeMessage =
  | { type: 'hello'; name: string }
  | { type: 'pubkey'; publicKey: Uint8Array }
  | { type: 'complete' };

function checkName(name: string): Uint8Array {
  const bytes = utf8Encode(name);
  if (bytes.length > MAX_NAME_BYTES) throw new InvalidArgumentError('handshake name over 64 bytes');
  return bytes;
}

/** `01 ‖ UTF-8 name` (at most 64 bytes; {@link InvalidArgumentError} otherwise). */
export function encodeHello(name = ''): Uint8Array {
  return Uint8Array.of(HELLO, ...checkName(name));
}

/** `02 ‖ 32-byte Ed25519 public key`. */
export function encodePubKey(publicKey: Uint8Array): Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new InvalidArgumentError('Ed25519 public key must be 32 bytes');
  }
  return Uint8Array.of(PUBKEY, ...publicKey);
}

/** `03`. */
export function encodeComplete(): Uint8Array {
  return Uint8Array.of(COMPLETE);
}

/**
 * Parse one handshake payload, with the Go test peer's rules. Throws {@link HandshakeError} for
 * an empty message, an unknown type byte, a name longer than 64 bytes, a key that is not 32 bytes,
 * or bytes after Complete. A name that is not valid UTF-8 is decoded with U+FFFD replacements.
 */
export function decodeHandshakeMessage(message: Uint8Array): HandshakeMessage {
  const type = message[0];
  const body = message.subarray(1);
  const n = body.length;
  // Lenient like Go (which never checks the bytes): a malformed UTF-8 name gets U+FFFD, not an error.
  if (type === HELLO && n <= MAX_NAME_BYTES) return { type: 'hello', name: lenientUtf8.decode(body) };
  if (type === PUBKEY && n === 32) return { type: 'pubkey', publicKey: body.slice() };
  if (type === COMPLETE && !n) return { type: 'complete' };
  throw new HandshakeError(`bad handshake message of type ${type}`);
}

export type HandshakeEvent =
  /** The peer's first Hello; later Hellos are ignored. */
  | { type: 'peerName'; name: string }
  /** The peer's key checked and the stream key derived (Go's PrepareStreams): encrypted traffic may flow. */
  | { type: 'prepared'; cipher: StreamCipher; publicKey: Uint8Array }
  /** Both prepared and Complete received (or encrypted traffic seen): Go's FinalizeHandshake. */
  | { type: 'established' };

/** What one received message caused: payloads to send (in order) and what happened. */
export interface HandshakeStep {
  send: Uint8Array[];
  events: HandshakeEvent[];
}

export interface HelloHandshakeOptions {
  identity: Identity;
  /** The peer ID we mean to talk to; its embedded key must equal the PubKey the peer sends. */
  expectedPeerId: string;
  /** Our name in Hello (UTF-8, at most 64 bytes). Default empty. */
  name?: string;
  /** True on the side that dialled: it speaks first ({@link HelloHandshake.start}). */
  initiator: boolean;
}

export type HandshakeState = 'handshaking' | 'prepared' | 'established' | 'failed';

/**
 * Sans-I/O state machine of the Hello / PubKey / Complete handshake. It sends nothing itself:
 * every call returns the payloads to frame and write to the handshake stream, in order.
 * After it throws (malformed message, {@link KeyMismatchError}, an invalid key) it is failed and
 * every further call throws {@link InvalidStateError}.
 *
 * Same rules as the Go test peer (tests/interop/cmd/glueberry-peer, `--handshake auto`), plus:
 * * every PubKey, duplicates included, must carry the expected peer's key (Go checks nothing and
 *   ignores duplicates; a different key here is an attack or a bug, so it is an error);
 * * a PubKey that arrives before we sent ours (only a peer that skips Hello can cause it) is
 *   answered with our Hello and PubKey before Complete, so that peer can prepare too.
 * For conforming peers the bytes are identical.
 */
export class HelloHandshake {
  readonly initiator: boolean;
  readonly expectedPeerId: string;
  readonly #identity: Identity;
  readonly #name: string;
  /** Our Hello and PubKey went out. */
  #introduced = false;
  #completeReceived = false;
  #peerName: string | undefined;
  #cipher: StreamCipher | undefined;
  #established = false;
  #failed = false;

  constructor(options: HelloHandshakeOptions) {
    publicKeyFromPeerId(options.expectedPeerId); // InvalidPeerIdError unless a 12D3KooW… ID
    this.#name = options.name ?? '';
    checkName(this.#name);
    this.#identity = options.identity;
    this.expectedPeerId = options.expectedPeerId;
    this.initiator = options.initiator;
  }

  get state(): HandshakeState {
    if (this.#failed) return 'failed';
    if (this.#established) return 'established';
    return this.#cipher === undefined ? 'handshaking' : 'prepared';
  }

  /** The stream cipher once prepared. */
  get cipher(): StreamCipher | undefined {
    return this.#cipher;
  }

  /** The name from the peer's first Hello, once received. */
  get peerName(): string | undefined {
    return this.#peerName;
  }

  /**
   * The messages to send first. Initiator: `[Hello, PubKey]` (those not sent yet); responder: `[]`
   * — it waits for the peer's Hello (the Go listener only learns of a connection from it, §5).
   */
  start(): Uint8Array[] {
    this.#checkUsable();
    return this.initiator ? this.#introduce() : [];
  }

  /** Process one received handshake payload (already unframed). */
  receive(message: Uint8Array): HandshakeStep {
    this.#checkUsable();
    try {
      return this.#receive(decodeHandshakeMessage(message));
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  /**
   * The peer sent an encrypted frame that decrypted with our cipher but never sent Complete:
   * treat it as established. Returns `[{type: 'established'}]` the first time, `[]` after.
   * Throws {@link InvalidStateError} before the key is prepared.
   */
  markEstablishedByTraffic(): HandshakeEvent[] {
    this.#checkUsable();
    if (!this.#cipher) throw new InvalidStateError('handshake: no key yet');
    return this.#establish();
  }

  #checkUsable(): void {
    if (this.#failed) throw new InvalidStateError('handshake failed');
  }

  /** Our Hello and PubKey, unless sent already. */
  #introduce(): Uint8Array[] {
    if (this.#introduced) return [];
    this.#introduced = true;
    return [encodeHello(this.#name), encodePubKey(this.#identity.publicKey)];
  }

  #establish(): HandshakeEvent[] {
    if (this.#established) return [];
    this.#established = true;
    return [{ type: 'established' }];
  }

  #receive(msg: HandshakeMessage): HandshakeStep {
    const events: HandshakeEvent[] = [];
    let send: Uint8Array[] = [];
    if (msg.type === 'hello') {
      if (this.#peerName === undefined) events.push({ type: 'peerName', name: (this.#peerName = msg.name) });
      send = this.#introduce();
    } else if (msg.type === 'complete') {
      this.#completeReceived = true;
    } else {
      const { publicKey } = msg;
      const peerId = peerIdFromPublicKey(publicKey);
      if (peerId !== this.expectedPeerId) {
        throw new KeyMismatchError(`key of ${peerId}, expected ${this.expectedPeerId}`);
      }
      // a duplicate PubKey (the same key, checked above) changes nothing
      if (!this.#cipher) {
        const cipher = this.#identity.streamCipher(publicKey); // InvalidKeyError: low-order key
        this.#cipher = cipher;
        // A peer that sent PubKey before our Hello/PubKey still needs ours, before Complete (sent once).
        send = [...this.#introduce(), encodeComplete()];
        events.push({ type: 'prepared', cipher, publicKey });
      }
    }
    if (this.#cipher && this.#completeReceived) events.push(...this.#establish()); // once
    return { send, events };
  }
}
