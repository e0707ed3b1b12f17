/**
 * @glueberry/client — browser (and Node) side of Glueberry Bridge: the gateway client
 * (`GlueberryClient`, `Session`; docs/js-client.md), identities, the Glueberry stream
 * cryptography, framing and the application handshake, byte-compatible with Go Glueberry
 * (docs/spec/PROTOCOL.md). Node-only extras (a file identity store) are in `@glueberry/client/node`.
 *
 * The public API of the browser bundle (browser.ts) plus the building blocks: the gateway codec
 * and codes, the Glueberry stream cryptography, the application handshake, byte helpers and the
 * libp2p stream framing (PROTOCOL.md §6).
 */

export * from './browser.js';

export { isSocketLevel } from './codes.js';

export {
  SUBPROTOCOL,
  PROTOCOL_VERSION,
  authMessage,
  isNoisePayload,
  b64urlEncode,
  b64urlDecode,
  encodeDataFrame,
  decodeDataFrame,
  decodeServerMessage,
  encodeClientMessage,
  type GatewayLimits,
  type DataFrame,
  type ServerMessage,
  type ClientMessage,
  type ResumeOutcome,
  type ResumeRequest,
} from './codec.js';

export { Emitter } from './events.js';

export {
  InvalidArgumentError,
  InvalidStateError,
  InvalidKeyError,
  InvalidPeerIdError,
  DecryptionError,
  FramingError,
  FrameTooLargeError,
  HandshakeError,
  KeyMismatchError,
  IdentityStoreError,
  TimeoutError,
  HandshakeTimeoutError,
  LimitExceededError,
  ProtocolError,
  type FramingErrorOptions,
} from './errors.js';

export {
  toHex,
  fromHex,
  utf8Encode,
  utf8Decode,
  concatBytes,
  equalBytes,
  base58Encode,
  base58Decode,
  base32Encode,
} from './bytes.js';

export {
  KEY_SIZE,
  NONCE_SIZE,
  TAG_SIZE,
  OVERHEAD,
  MAX_MESSAGE_SIZE,
  HKDF_INFO,
  publicKeyFromSeed,
  seedFromPrivateKey,
  edPrivateToX25519,
  edPublicToX25519,
  x25519SharedSecret,
  deriveStreamKey,
  sharedKey,
  randomBytes,
  StreamCipher,
} from './crypto.js';

export {
  publicKeyToProtobuf,
  peerIdMultihash,
  peerIdFromPublicKey,
  publicKeyFromPeerId,
  isPeerId,
  fingerprint,
  verifySignature,
} from './identity.js';

export {
  HELLO,
  PUBKEY,
  COMPLETE,
  MAX_NAME_BYTES,
  encodeHello,
  encodePubKey,
  encodeComplete,
  decodeHandshakeMessage,
  HelloHandshake,
  helloHandshake,
  type Handshake,
  type HandshakeAction,
  type HandshakeContext,
  type HandshakeFactory,
  type HandshakeMessage,
  type HandshakeState,
  type HelloHandshakeOptions,
} from './handshake.js';

export { encodeUvarint, decodeUvarint, uvarintLength, MAX_UVARINT_BYTES, type Uvarint } from './bytes.js';
export { GO_MAX_FRAME_SIZE, outerLength, frameHeader, encodeFrame, FrameDecoder } from './framing.js';
