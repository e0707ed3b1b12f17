/**
 * Close and error codes of the gateway protocol (docs/gateway-protocol.md §8): one list for
 * WebSocket close codes and the `code` of `error` / `closed` messages. 4000–4099 end the socket,
 * 4100–4199 refuse or end one session or request. The same list as
 * gateway/src/glueberry_gateway/protocol/codes.py (tests/gateway/test_js_client.py checks they agree).
 *
 * A plain `as const` object rather than a TypeScript `enum` (smaller: no reverse mapping):
 * `CloseCode.AuthFailed` is the number 4002, and `CloseCode` is also the type of any member.
 */

export const CloseCode = {
  Normal: 1000, // normal close
  GoingAway: 1001, // the gateway is draining: reconnect after the drain message's delay
  ProtocolError: 4000, // malformed frame or JSON, unknown type, message out of order
  UnsupportedVersion: 4001, // subprotocol or version not supported
  AuthFailed: 4002, // the auth signature does not verify
  AuthTimeout: 4003, // no valid auth in time
  ChallengeExpired: 4004, // the challenge expired or was already used
  TokenInvalid: 4005, // token missing (when required), malformed, forged, or sub mismatch
  TokenExpired: 4006, // the token expired
  OriginNotAllowed: 4007, // the Origin is not allowed or differs from the one signed
  RateLimited: 4008, // too many messages, bytes or connections
  MessageTooBig: 4009, // a frame over max_frame_bytes / max_control_bytes
  SlowConsumer: 4010, // the browser did not read its data in time
  IdleTimeout: 4011, // nothing happened for idle_timeout
  TooManyConnections: 4012, // socket limits (node or per IP)
  InternalError: 4013, // a gateway bug; see its logs
  ResumeFailed: 4014, // the resume token is wrong or was used
  BackendUnknown: 4100, // no configured backend by that name or peer ID (or an address was given)
  BackendNotAllowed: 4101, // the token does not allow this backend
  BackendUnavailable: 4102, // the dial or the libp2p upgrade failed
  SignatureInvalid: 4103, // the Noise signature does not verify, or the client refused to sign
  TooManySessions: 4104, // max_sessions reached
  TooManyStreams: 4105, // max_streams reached on this session
  SessionNotFound: 4106, // no such session on this socket
  SessionExists: 4107, // the session number is in use
  InvalidStream: 4108, // bad stream name in a data frame
  BackendClosed: 4109, // the backend closed the connection
  SessionExpired: 4110, // the resume grace period ended
  SignTimeout: 4111, // the browser did not answer a sign request in time
} as const;
/** Any of the codes above. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Codes below 4100 (and 1000/1001) end the socket; 4100 and above concern one session or request. */
export function isSocketLevel(code: number): boolean {
  return code < 4100;
}
