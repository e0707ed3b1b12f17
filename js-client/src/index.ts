/**
 * @glueberry/client — browser (and Node) side of Glueberry Bridge: the gateway client
 * (`GlueberryClient`, `Session`; docs/js-client.md), identities, the Glueberry stream
 * cryptography, framing and the application handshake, byte-compatible with Go Glueberry
 * (docs/spec/PROTOCOL.md). Node-only extras (a file identity store) are in `@glueberry/client/node`.
 *
 * Everything of the browser bundle (browser.ts), plus the libp2p stream framing (PROTOCOL.md §6).
 */

export * from './browser.js';

export { encodeUvarint, decodeUvarint, uvarintLength, MAX_UVARINT_BYTES, type Uvarint } from './bytes.js';
export { GO_MAX_FRAME_SIZE, outerLength, frameHeader, encodeFrame, FrameDecoder } from './framing.js';
