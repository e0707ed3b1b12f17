/**
 * One error tree for the whole client. Every error this library throws on purpose is a
 * {@link GlueberryError}; branch on `instanceof` or on the stable `code` string.
 *
 * | class                 | code                | meaning                                              |
 * |-----------------------|---------------------|------------------------------------------------------|
 * | InvalidArgumentError  | `invalid_argument`  | the caller passed something malformed                |
 * | InvalidStateError     | `invalid_state`     | the object cannot do that now (closed, failed, ...)  |
 * | InvalidKeyError       | `invalid_key`       | a key of the wrong length, not a curve point, low-order |
 * | InvalidPeerIdError    | `invalid_peer_id`   | not a `12D3KooW...` (Ed25519 identity) peer ID       |
 * | DecryptionError       | `decryption_failed` | an encrypted frame is too short or fails its tag     |
 * | FramingError          | `malformed_frame`   | bytes Go's frame reader also rejects (PROTOCOL.md §6.2) |
 * | FrameTooLargeError    | `frame_too_large`   | a frame longer than the decoder's bound              |
 * | HandshakeError        | `handshake`         | a malformed or unexpected handshake message, or an application handshake's failure |
 * | KeyMismatchError      | `key_mismatch`      | the peer's key does not belong to the expected peer ID |
 * | IdentityStoreError    | `identity_store`    | an identity could not be loaded or saved             |
 * | TimeoutError          | `timeout`           | an operation (e.g. `open`) did not finish in time    |
 * | HandshakeTimeoutError | `handshake_timeout` | the session's handshake did not complete in time (a TimeoutError) |
 * | LimitExceededError    | `limit_exceeded`    | a bounded queue (outbox, pending sends, inbox) is full |
 * | GatewayError          | a number (§8 code)  | the gateway refused or ended something; `CloseCode`  |
 * | ProtocolError         | a number (4000, …)  | the gateway broke `glueberry.v1` (a GatewayError)    |
 *
 * `code` is a string for the client's own errors and the numeric close/error code of
 * docs/gateway-protocol.md §8 for {@link GatewayError} (compare it with `CloseCode` members).
 */

/** Constructor options shared by every error class (`cause` as in ES2022 `Error`). */
export interface GlueberryErrorOptions {
  cause?: unknown;
}

export class GlueberryError extends Error {
  /** Stable machine-readable reason (a number for {@link GatewayError}); the message is for people. */
  readonly code: string | number;

  constructor(message: string, code: string | number = 'glueberry', options?: GlueberryErrorOptions) {
    super(message, options); // Error takes `cause` from it
    // Set explicitly in every class: minifiers rename classes, so `new.target.name` is unreliable.
    this.name = 'GlueberryError';
    this.code = code;
  }
}

export class InvalidArgumentError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'invalid_argument', options);
    this.name = 'InvalidArgumentError';
  }
}

export class InvalidStateError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'invalid_state', options);
    this.name = 'InvalidStateError';
  }
}

export class InvalidKeyError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'invalid_key', options);
    this.name = 'InvalidKeyError';
  }
}

export class InvalidPeerIdError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'invalid_peer_id', options);
    this.name = 'InvalidPeerIdError';
  }
}

/** An encrypted frame was dropped. Go drops such a frame and keeps reading the stream (§8.5). */
export class DecryptionError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'decryption_failed', options);
    this.name = 'DecryptionError';
  }
}

/** Options of {@link FramingError}. */
export interface FramingErrorOptions extends GlueberryErrorOptions {
  /** Payloads of the frames that were complete before the malformed bytes (Go delivers them). */
  payloads?: Uint8Array[];
}

/**
 * Malformed framing (PROTOCOL.md §6.2). Go ends its reader for the stream on the same input.
 * `payloads` holds the messages decoded in the same `push` before the error, to be delivered.
 */
export class FramingError extends GlueberryError {
  readonly payloads: readonly Uint8Array[];

  constructor(message: string, options?: FramingErrorOptions, code = 'malformed_frame') {
    super(message, code, options);
    this.name = 'FramingError';
    this.payloads = options?.payloads ?? [];
  }
}

/** A frame announced a length above the decoder's bound; nothing of it was buffered. */
export class FrameTooLargeError extends FramingError {
  constructor(message: string, options?: FramingErrorOptions) {
    super(message, options, 'frame_too_large');
    this.name = 'FrameTooLargeError';
  }
}

/** The application handshake (Hello / PubKey / Complete) received something it cannot accept. */
export class HandshakeError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions, code = 'handshake') {
    super(message, code, options);
    this.name = 'HandshakeError';
  }
}

/** The Ed25519 key the peer sent does not belong to the peer ID we expected to talk to. */
export class KeyMismatchError extends HandshakeError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, options, 'key_mismatch');
    this.name = 'KeyMismatchError';
  }
}

export class IdentityStoreError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'identity_store', options);
    this.name = 'IdentityStoreError';
  }
}

export class TimeoutError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions, code = 'timeout') {
    super(message, code, options);
    this.name = 'TimeoutError';
  }
}

/** The application handshake did not complete in time (`open()`'s timeout, once it began). */
export class HandshakeTimeoutError extends TimeoutError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, options, 'handshake_timeout');
    this.name = 'HandshakeTimeoutError';
  }
}

export class LimitExceededError extends GlueberryError {
  constructor(message: string, options?: GlueberryErrorOptions) {
    super(message, 'limit_exceeded', options);
    this.name = 'LimitExceededError';
  }
}

/** Options of {@link GatewayError}. */
export interface GatewayErrorOptions extends GlueberryErrorOptions {
  /** The session the error is about, if any. */
  session?: number | undefined;
}

/**
 * The gateway refused a request or ended the socket or a session. `code` is the number of
 * docs/gateway-protocol.md §8 (`CloseCode`), or a plain WebSocket close code such as 1006.
 */
export class GatewayError extends GlueberryError {
  declare readonly code: number;
  readonly session: number | undefined;

  constructor(code: number, message: string, options?: GatewayErrorOptions) {
    super(message || `gateway code ${code}`, code, options);
    this.name = 'GatewayError';
    this.session = options?.session;
  }
}

/** The gateway broke the protocol (`code`: the close code the client used, e.g. 4000). */
export class ProtocolError extends GatewayError {
  constructor(message: string, code = 4000) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}
