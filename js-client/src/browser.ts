/**
 * The browser bundle dist/browser/glueberry-client.js: the public API of docs/js-client.md —
 * identities and their stores, the gateway client (`GlueberryClient`, `Session`), `CloseCode`,
 * `GlueberryError` and `GatewayError` (every error is a GlueberryError with a stable `code`), and
 * what an application's own handshake needs (the interface, `helloHandshake`, the handshake
 * errors, `verifySignature`) — and nothing else, so the bundle stays small. The package entry (index.ts) exports all of this plus
 * the building blocks (codec, crypto, handshake, bytes, framing, every error class) for Node and
 * for bundler users.
 *
 * Order matters for size: Identity comes first and identity.ts imports crypto.ts first, so the
 * bundle holds all of @noble ahead of our code, which then gzips as one piece (~400 bytes less).
 */

export { Identity, type IdentityExport } from './identity.js';
export {
  MemoryIdentityStore,
  IndexedDbIdentityStore,
  loadOrCreateIdentity,
  type IdentityStore,
  type IndexedDbIdentityStoreOptions,
} from './store.js';
export { Session, type SessionState, type SessionMessage, type SessionEvents, type SessionBounds } from './session.js';
export {
  GlueberryClient,
  type ClientState,
  type ClientEvents,
  type GlueberryClientOptions,
  type OpenOptions,
} from './client.js';
export { CloseCode } from './codes.js';
export type { Listener } from './events.js';
export type { WebSocketConstructor } from './transport.js';
export type { BackendInfo } from './codec.js';
export {
  GlueberryError,
  GatewayError,
  HandshakeError,
  KeyMismatchError,
  TimeoutError,
  HandshakeTimeoutError,
  type GlueberryErrorOptions,
  type GatewayErrorOptions,
} from './errors.js';
// for an application's own handshake (docs/js-client.md, "Write your own handshake")
export {
  helloHandshake,
  type Handshake,
  type HandshakeAction,
  type HandshakeContext,
  type HandshakeFactory,
} from './handshake.js';
export { verifySignature } from './identity.js';
