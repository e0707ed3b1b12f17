/**
 * @glueberry/client — browser (and Node) side of Glueberry Bridge: identities, the Glueberry
 * stream cryptography, framing and the application handshake, byte-compatible with Go Glueberry
 * (docs/spec/PROTOCOL.md). Node-only extras (a file identity store) are in `@glueberry/client/node`.
 */

export {
  GlueberryError,
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
  type GlueberryErrorOptions,
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
  encodeUvarint,
  decodeUvarint,
  uvarintLength,
  MAX_UVARINT_BYTES,
  type Uvarint,
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

export { GO_MAX_FRAME_SIZE, outerLength, frameHeader, encodeFrame, FrameDecoder } from './framing.js';

export {
  Identity,
  publicKeyToProtobuf,
  peerIdMultihash,
  peerIdFromPublicKey,
  publicKeyFromPeerId,
  isPeerId,
  fingerprint,
  verifySignature,
  type IdentityExport,
} from './identity.js';

export {
  MemoryIdentityStore,
  IndexedDbIdentityStore,
  loadOrCreateIdentity,
  type IdentityStore,
  type IndexedDbIdentityStoreOptions,
} from './store.js';

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
  type HandshakeMessage,
  type HandshakeEvent,
  type HandshakeStep,
  type HandshakeState,
  type HelloHandshakeOptions,
} from './handshake.js';
