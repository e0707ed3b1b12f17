/**
 * Application handshakes. Glueberry itself only carries opaque messages on the `handshake`
 * stream; each application defines its own. A session runs any {@link Handshake} (the interface
 * below: actions out, messages in); {@link HelloHandshake} is the ready-made one and the default
 * (PROTOCOL.md §10), byte-compatible with our Python and Go test peers. Its messages (each is one
 * framed payload, §6/§7):
 *
 *     Hello    = 01 ‖ name      name: UTF-8, 0–64 bytes (may be empty)
 *     PubKey   = 02 ‖ key       key: the sender's raw 32-byte Ed25519 public key
 *     Complete = 03
 *
 * Flow: the dialler (initiator) sends Hello and PubKey. A side that receives Hello answers with
 * its own Hello and PubKey if it has not sent its PubKey yet. A side that receives PubKey checks
 * the key against the peer ID it expects, prepares (the session derives the stream key: Go's
 * `PrepareStreams`) and sends Complete once. A side that has both prepared and received Complete is established (Go's
 * `FinalizeHandshake`). Because Go may send encrypted data right after its PrepareStreams, a peer
 * that never sends Complete but sends a valid encrypted frame counts as established too
 * ({@link HelloHandshake.markEstablishedByTraffic}).
 */

import { utf8Encode } from './bytes.js';
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

/**
 * What a handshake asks of its session, in order (the application handshake interface,
 * docs/js-client.md "Write your own handshake"):
 *
 * * `send`: frame `data` and send it on the `handshake` stream;
 * * `prepare`: the peer's Ed25519 key (Go's `PrepareStreams`): the session checks that it is the
 *   key of the backend's peer ID ({@link KeyMismatchError} otherwise), derives the stream key and
 *   from then on encrypts and decrypts on `streams` (default: the client's `streams`);
 * * `complete`: the handshake is done (Go's `FinalizeHandshake`): `open()` resolves. A valid
 *   encrypted frame from the backend after `prepare` completes it too (Go's rule);
 * * `info`: application data for `session.handshakeInfo` (e.g. the peer's name, a version).
 */
export type HandshakeAction =
  | { type: 'send'; data: Uint8Array }
  | { type: 'prepare'; publicKey: Uint8Array; streams?: readonly string[] }
  | { type: 'complete' }
  | { type: 'info'; info: Readonly<Record<string, unknown>> };

/**
 * An application handshake on a session's `handshake` stream, sans I/O: it never sends, it
 * returns actions. Throw a {@link HandshakeError} (or any error: it is wrapped in one) to fail
 * the session; `open()` rejects with it.
 */
export interface Handshake {
  /** The actions to take once the gateway opened the session (the browser dialled: it may speak first). */
  start(): HandshakeAction[];
  /** One message received on the `handshake` stream (already unframed). */
  receive(message: Uint8Array): HandshakeAction[];
}

/** What a handshake is made with, for each session and each reopen. */
export interface HandshakeContext {
  /** The page's identity: its `publicKey`, `peerId` and `sign()` (Ed25519). */
  readonly identity: Identity;
  /** The backend's peer ID, as the gateway reported it: `prepare` must give its key. */
  readonly peerId: string;
  /** The backend name or peer ID the session was opened with. */
  readonly backend: string;
  /** The client's `streams`. */
  readonly streams: readonly string[];
}

export type HandshakeFactory = (context: HandshakeContext) => Handshake;

export interface HelloHandshakeOptions {
  /** Our identity (only its public key is sent). */
  identity: Pick<Identity, 'publicKey'>;
  /** The peer ID we mean to talk to; its embedded key must equal the PubKey the peer sends. */
  expectedPeerId: string;
  /** Our name in Hello (UTF-8, at most 64 bytes). Default empty. */
  name?: string;
  /** True on the side that dialled: it speaks first ({@link HelloHandshake.start}). */
  initiator: boolean;
}

export type HandshakeState = 'handshaking' | 'prepared' | 'established' | 'failed';

/**
 * The Hello / PubKey / Complete handshake as a {@link Handshake}. After it throws (malformed
 * message, {@link KeyMismatchError}) it is failed and every further call throws
 * {@link InvalidStateError}. The session derives the stream key on `prepare` (an unusable key
 * throws {@link InvalidKeyError} there).
 *
 * Same rules as the Go test peer (tests/interop/cmd/glueberry-peer, `--handshake auto`), plus:
 * * every PubKey, duplicates included, must carry the expected peer's key (Go checks nothing and
 *   ignores duplicates; a different key here is an attack or a bug, so it is an error);
 * * a PubKey that arrives before we sent ours (only a peer that skips Hello can cause it) is
 *   answered with our Hello and PubKey before Complete, so that peer can prepare too.
 * For conforming peers the bytes are identical.
 */
export class HelloHandshake implements Handshake {
  readonly initiator: boolean;
  readonly expectedPeerId: string;
  readonly #publicKey: Uint8Array;
  readonly #name: string;
  /** Our Hello and PubKey went out. */
  #introduced = false;
  #completeReceived = false;
  #peerName: string | undefined;
  #prepared = false;
  #established = false;
  #failed = false;

  constructor(options: HelloHandshakeOptions) {
    publicKeyFromPeerId(options.expectedPeerId); // InvalidPeerIdError unless a 12D3KooW… ID
    this.#name = options.name ?? '';
    checkName(this.#name);
    this.#publicKey = options.identity.publicKey;
    this.expectedPeerId = options.expectedPeerId;
    this.initiator = options.initiator;
  }

  get state(): HandshakeState {
    if (this.#failed) return 'failed';
    if (this.#established) return 'established';
    return this.#prepared ? 'prepared' : 'handshaking';
  }

  /** The name from the peer's first Hello, once received. */
  get peerName(): string | undefined {
    return this.#peerName;
  }

  /**
   * Initiator: send `[Hello, PubKey]` (those not sent yet); responder: nothing — it waits for
   * the peer's Hello (the Go listener only learns of a connection from it, §5).
   */
  start(): HandshakeAction[] {
    this.#checkUsable();
    return this.initiator ? this.#introduce() : [];
  }

  receive(message: Uint8Array): HandshakeAction[] {
    this.#checkUsable();
    try {
      return this.#receive(decodeHandshakeMessage(message));
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  /**
   * The peer sent an encrypted frame that decrypted with our key but never sent Complete:
   * treat it as established. `[{type: 'complete'}]` the first time, `[]` after. Throws
   * {@link InvalidStateError} before the key is prepared. (A session does this by itself.)
   */
  markEstablishedByTraffic(): HandshakeAction[] {
    this.#checkUsable();
    if (!this.#prepared) throw new InvalidStateError('handshake: no key yet');
    return this.#establish();
  }

  #checkUsable(): void {
    if (this.#failed) throw new InvalidStateError('handshake failed');
  }

  /** Send our Hello and PubKey, unless sent already. */
  #introduce(): HandshakeAction[] {
    if (this.#introduced) return [];
    this.#introduced = true;
    return [encodeHello(this.#name), encodePubKey(this.#publicKey)].map((data) => ({ type: 'send', data }));
  }

  #establish(): HandshakeAction[] {
    if (this.#established) return [];
    this.#established = true;
    return [{ type: 'complete' }];
  }

  #receive(msg: HandshakeMessage): HandshakeAction[] {
    const out: HandshakeAction[] = [];
    if (msg.type === 'hello') {
      if (this.#peerName === undefined) out.push({ type: 'info', info: { name: (this.#peerName = msg.name) } });
      out.push(...this.#introduce());
    } else if (msg.type === 'complete') {
      this.#completeReceived = true;
    } else {
      const { publicKey } = msg;
      const peerId = peerIdFromPublicKey(publicKey);
      if (peerId !== this.expectedPeerId) {
        throw new KeyMismatchError(`key of ${peerId}, expected ${this.expectedPeerId}`);
      }
      // a duplicate PubKey (the same key, checked above) changes nothing
      if (!this.#prepared) {
        this.#prepared = true;
        // prepared before our Complete; a peer that sent PubKey before our Hello/PubKey still needs ours
        out.push({ type: 'prepare', publicKey }, ...this.#introduce(), { type: 'send', data: encodeComplete() });
      }
    }
    if (this.#prepared && this.#completeReceived) out.push(...this.#establish()); // once
    return out;
  }
}

/** The default handshake of a session: {@link HelloHandshake} as initiator, with our Hello `name`. */
export function helloHandshake(name = ''): HandshakeFactory {
  checkName(name);
  return ({ identity, peerId }) => new HelloHandshake({ identity, expectedPeerId: peerId, name, initiator: true });
}
