/**
 * An application handshake of one's own, for js-client (docs/js-client.md "Write your own
 * handshake"): the browser's end of the "proof" handshake that the Go service
 * tests/interop/cmd/proof-peer speaks. In an application, import from '@glueberry/client'.
 *
 *     INTRO  = 0x21 ‖ version (1 byte) ‖ nonce (16) ‖ Ed25519 public key (32) ‖ name length (1) ‖ name (≤ 32)
 *     PROOF  = 0x22 ‖ Ed25519 signature (64) over
 *              "glueberry-proof-v2" ‖ sender nonce ‖ receiver nonce ‖ sender key ‖ receiver key
 *     READY  = 0x23 ‖ the stream names the sender prepared, comma-separated
 *     REFUSE = 0x2f ‖ reason (UTF-8)
 *
 * The browser dialled, so it speaks first: INTRO. The service answers INTRO and PROOF; the
 * browser checks the version and the signature, prepares the streams with the service's key
 * (the session checks the key against the backend's peer ID), answers PROOF and READY, and is
 * complete once the service's READY names every stream it prepared.
 */

import {
  type Handshake,
  type HandshakeAction,
  type HandshakeContext,
  type HandshakeFactory,
  HandshakeError,
  concatBytes,
  randomBytes,
  utf8Decode,
  utf8Encode,
  verifySignature,
} from '../src/index.js';

export const PROOF_VERSION = 2;
export const INTRO = 0x21;
export const PROOF = 0x22;
export const READY = 0x23;
export const REFUSE = 0x2f;
const NONCE_BYTES = 16;
const MAX_NAME = 32;
const DOMAIN = utf8Encode('glueberry-proof-v2');

export function encodeIntro(version: number, nonce: Uint8Array, publicKey: Uint8Array, name: string): Uint8Array {
  const nameBytes = utf8Encode(name);
  if (nameBytes.length > MAX_NAME) throw new HandshakeError('name over 32 bytes');
  return concatBytes(Uint8Array.of(INTRO, version), nonce, publicKey, Uint8Array.of(nameBytes.length), nameBytes);
}

export interface Intro {
  version: number;
  nonce: Uint8Array;
  publicKey: Uint8Array;
  name: string;
}

export function decodeIntro(message: Uint8Array): Intro {
  const head = 2 + NONCE_BYTES + 32 + 1;
  const n = message[head - 1] ?? 0;
  if (message.length < head || n > MAX_NAME || message.length !== head + n) {
    throw new HandshakeError('malformed INTRO');
  }
  return {
    version: message[1]!,
    nonce: message.slice(2, 2 + NONCE_BYTES),
    publicKey: message.slice(2 + NONCE_BYTES, head - 1),
    name: utf8Decode(message.subarray(head)),
  };
}

/** What a PROOF signs. */
export function proofMessage(
  senderNonce: Uint8Array,
  receiverNonce: Uint8Array,
  senderKey: Uint8Array,
  receiverKey: Uint8Array,
): Uint8Array {
  return concatBytes(DOMAIN, senderNonce, receiverNonce, senderKey, receiverKey);
}

export interface ProofOptions {
  /** Our name in INTRO (at most 32 bytes). */
  name?: string;
  /** The streams to prepare (default: the client's `streams`). */
  streams?: string[];
}

class ProofHandshake implements Handshake {
  readonly #context: HandshakeContext;
  readonly #name: string;
  readonly #streams: readonly string[];
  readonly #nonce = randomBytes(NONCE_BYTES);
  #peer: Intro | undefined;
  #prepared = false;

  constructor(context: HandshakeContext, options: ProofOptions) {
    this.#context = context;
    this.#name = options.name ?? '';
    this.#streams = options.streams ?? context.streams;
  }

  start(): HandshakeAction[] {
    const data = encodeIntro(PROOF_VERSION, this.#nonce, this.#context.identity.publicKey, this.#name);
    return [{ type: 'send', data }];
  }

  receive(message: Uint8Array): HandshakeAction[] {
    const type = message[0];
    if (type === INTRO && !this.#peer) {
      const peer = decodeIntro(message);
      if (peer.version !== PROOF_VERSION) throw new HandshakeError(`version ${peer.version}, not ${PROOF_VERSION}`);
      this.#peer = peer;
      return [{ type: 'info', info: { name: peer.name, version: peer.version } }];
    }
    if (type === PROOF && this.#peer && !this.#prepared && message.length === 65) {
      const peer = this.#peer;
      const ours = this.#context.identity.publicKey;
      const signed = proofMessage(peer.nonce, this.#nonce, peer.publicKey, ours);
      if (!verifySignature(peer.publicKey, message.subarray(1), signed)) throw new HandshakeError('bad PROOF signature');
      this.#prepared = true;
      const proof = this.#context.identity.sign(proofMessage(this.#nonce, peer.nonce, ours, peer.publicKey));
      return [
        // the session checks that this is the key of the backend's peer ID (KeyMismatchError)
        { type: 'prepare', publicKey: peer.publicKey, streams: this.#streams },
        { type: 'send', data: concatBytes(Uint8Array.of(PROOF), proof) },
        { type: 'send', data: concatBytes(Uint8Array.of(READY), utf8Encode(this.#streams.join(','))) },
      ];
    }
    if (type === READY && this.#prepared) {
      const theirs = utf8Decode(message.subarray(1)).split(',');
      const missing = this.#streams.filter((s) => !theirs.includes(s));
      if (missing.length) throw new HandshakeError(`the service did not prepare ${missing.join(', ')}`);
      return [{ type: 'complete' }];
    }
    if (type === REFUSE) throw new HandshakeError(`refused: ${utf8Decode(message.subarray(1))}`);
    throw new HandshakeError(`unexpected handshake message ${type}`);
  }
}

/** The `handshake` option of `GlueberryClient.connect()` or `client.open()`. */
export function proofHandshake(options: ProofOptions = {}): HandshakeFactory {
  return (context) => new ProofHandshake(context, options);
}
