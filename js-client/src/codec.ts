/**
 * Encoding and validation of gateway protocol messages (docs/gateway-protocol.md), both ways, as
 * gateway/src/glueberry_gateway/protocol/ does it: control.py (control messages), frames.py (data).
 *
 * Control messages are JSON text frames; bytes inside them are base64url without padding.
 * Data is a binary frame: `01 ‖ session (u16 BE) ‖ n (u8) ‖ stream name (n) ‖ payload` (§5.2).
 * Every decoder bounds its input and throws {@link ProtocolError} with the close code to use
 * (4000 malformed, 4001 version, 4009 too big, 4108 bad stream name). Nothing here does I/O.
 *
 * Server messages are checked against a table: one {@link Field} check per wire field, and the
 * decoded message carries the camelCase names (`expires_in` → `expiresIn`).
 */

import { concatBytes, radixEncode, utf8Encode } from './bytes.js';
import { CloseCode } from './codes.js';
import { InvalidArgumentError, ProtocolError } from './errors.js';
import { isPeerId } from './identity.js';

export const SUBPROTOCOL = 'glueberry.v1';
export const PROTOCOL_VERSION = 1;
export const DATA_KIND = 0x01;
export const BATCH_KIND = 0x02;
export const MAX_ID = 0x7fffffff;
export const MAX_SESSION = 0xffff;
export const MAX_STREAM_NAME = 64;
export const HANDSHAKE_STREAM = 'handshake';
export const MAX_TOKEN_CHARS = 8192;
export const MAX_NAME_CHARS = 128;
/** Data frame header without the name: kind, session, name length. */
export const DATA_HEADER = 4;

type Json = Record<string, unknown>;

const violation = (message: string, code: number = CloseCode.ProtocolError): ProtocolError =>
  new ProtocolError(message, code);

/** Throw the ProtocolError (4000) for a field or part that is malformed: `bad <what>`. */
function fail(what: string): never {
  throw violation(`bad ${what}`);
}

// ------------------------------------------------------------------------------------------
// base64url (RFC 4648 §5), no padding

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function b64urlEncode(bytes: Uint8Array): string {
  return radixEncode(bytes, B64, 6);
}

/**
 * Bytes of a base64url string (no padding, no other characters). `size`: the exact length
 * required; `maxSize`: a bound on the decoded length. Throws {@link ProtocolError} (4000).
 */
export function b64urlDecode(value: unknown, what: string, size?: number, maxSize = 4096): Uint8Array {
  const ok = typeof value === 'string' && value.length <= Math.ceil((maxSize * 4) / 3) && value.length % 4 !== 1;
  if (!ok || !/^[\w-]*$/.test(value)) fail(what);
  // atob (forgiving-base64) takes the standard alphabet, and no padding is fine
  const out = Uint8Array.from(atob(value.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  if (size !== undefined && out.length !== size) fail(what);
  return out;
}

// ------------------------------------------------------------------------------------------
// data frames (§5.2)

const STREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A gateway stream name: 1–64 ASCII letters, digits, '-' and '_'. */
export function isStreamName(name: unknown): name is string {
  return typeof name === 'string' && STREAM_NAME.test(name);
}

export interface DataFrame {
  session: number;
  stream: string;
  /** A view into the received bytes. */
  payload: Uint8Array;
}

/** `01 ‖ session ‖ len ‖ name ‖ payload`. Throws {@link ProtocolError} for a bad session or name. */
export function encodeDataFrame(session: number, stream: string, payload: Uint8Array): Uint8Array {
  if (!Number.isInteger(session) || session < 1 || session > MAX_SESSION) fail('session');
  if (!isStreamName(stream)) throw violation('bad stream name', CloseCode.InvalidStream);
  const header = Uint8Array.of(DATA_KIND, session >> 8, session & 0xff, stream.length, ...utf8Encode(stream));
  return concatBytes(header, payload);
}

/** Parse a binary frame; the payload is a view into `data`. */
export function decodeDataFrame(data: Uint8Array, maxBytes: number): DataFrame {
  if (data.length > maxBytes) throw violation('message too big', CloseCode.MessageTooBig);
  const session = (data[1]! << 8) | data[2]!;
  const end = DATA_HEADER + data[3]!; // NaN when the header is cut short
  // another kind, session 0, no name, or shorter than its header and name
  if (data[0] !== DATA_KIND || !session || end === DATA_HEADER || !(data.length >= end)) fail('data frame');
  const stream = String.fromCharCode(...data.subarray(DATA_HEADER, end));
  if (!isStreamName(stream)) throw violation('bad stream name', CloseCode.InvalidStream);
  return { session, stream, payload: data.subarray(end) };
}

/**
 * The data frames of a binary message: the message itself, or the entries of a batch
 * (`02 ‖ (u16 BE length ‖ data frame)+`, §5.6) as views, each still to be checked by
 * {@link decodeDataFrame} (which refuses an empty entry or a nested batch). Throws
 * {@link ProtocolError} (4000) for an empty batch or an entry that runs past the end.
 */
export function splitBatch(data: Uint8Array): Uint8Array[] {
  if (data[0] !== BATCH_KIND) return [data];
  const frames = [];
  let i = 1;
  // bytes past the end read as 0: a length cut short, or none at all, runs past the end
  do frames.push(data.subarray(i + 2, (i += 2 + ((data[i]! << 8) | data[i + 1]!))));
  while (i < data.length);
  if (i > data.length) fail('data frame');
  return frames;
}

// ------------------------------------------------------------------------------------------
// field checks: each takes the field's value and its name for the error, and returns the value

/** Checks one field (`what` names it in the error) and returns its decoded value. */
type Field = (value: unknown, what: string) => unknown;
type Fields = Record<string, Field>;

function parse(text: string, maxBytes: number): Json {
  if (typeof text === 'string' && text.length > maxBytes) {
    throw violation('message too big', CloseCode.MessageTooBig);
  }
  let obj: unknown;
  try {
    obj = typeof text === 'string' && JSON.parse(text);
  } catch {
    // not JSON: refused below, as anything but an object
  }
  return object(obj, 'control message', true);
}

/** A JSON object (with a string `type` when `typed`). */
function object(value: unknown, what: string, typed?: boolean): Json {
  const ok = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!ok || (typed && typeof (value as Json).type !== 'string')) fail(what);
  return value as Json;
}

/** A field that is valid when `ok(value)`, as it is. */
const field =
  (ok: (value: unknown) => boolean): Field =>
  (value, what) =>
    ok(value) ? value : fail(what);

const int = (low: number, high: number): Field =>
  field((value) => Number.isInteger(value) && (value as number) >= low && (value as number) <= high);

/** A non-negative finite number. */
const num = field((value) => typeof value === 'number' && value >= 0 && value < Infinity);

/** A string of `min`..`max` chars; null or absent is `fallback` when one is given. */
const str = (min: number, max: number, fallback?: string): Field => {
  const check = field((value) => typeof value === 'string' && value.length >= min && value.length <= max);
  return (value, what) => check(value ?? fallback, what);
};

/** Absent (undefined) is `fallback`; anything else must pass `check`. */
const opt =
  (check: Field, fallback?: unknown): Field =>
  (value, what) =>
    value === undefined ? fallback : check(value, what);

const bytes =
  (size?: number, maxSize?: number): Field =>
  (value, what) =>
    b64urlDecode(value, what, size, maxSize);

const peer = field(isPeerId);

const camel = (key: string): string => key.replace(/_(.)/g, (_, c: string) => c.toUpperCase());

/** Check every field of `spec` in `obj`; the result has the keys renamed by `name`. */
function fields(obj: Json, spec: Fields, what: string, name = camel): Json {
  const out: Json = {};
  for (const key in spec) out[name(key)] = spec[key]!(obj[key], `${what}.${key}`);
  return out;
}

/** The decoder of `type` in `table`, or a ProtocolError for an unknown type (§2). */
function lookup<T>(table: Record<string, T>, type: string): T {
  if (!Object.hasOwn(table, type)) fail(`type ${JSON.stringify(type.slice(0, 40))}`);
  return table[type]!;
}

const ID = int(1, MAX_ID);
const SESSION = int(1, MAX_SESSION);
const CODE = int(1000, 4999);
const MESSAGE = str(0, 4096, '');
const EXPIRES_AT = { expires_at: num };

// ------------------------------------------------------------------------------------------
// gateway → client

export interface BackendInfo {
  name: string;
  peerId: string;
}

/** `ready.limits`: what the gateway accepts from us (§7). */
export interface GatewayLimits {
  maxSessions: number;
  maxStreams: number;
  maxFrameBytes: number;
  maxControlBytes: number;
}

const limit = (fallback: number): Field => opt(int(1, MAX_ID), fallback);
/** `ready.limits`, each with its default (§7) when left out. */
const LIMITS: Fields = {
  max_sessions: limit(16),
  max_streams: limit(16),
  max_frame_bytes: limit((1 << 20) + 96),
  max_control_bytes: limit(16384),
};
export const DEFAULT_LIMITS = fields({}, LIMITS, 'limits') as unknown as Readonly<GatewayLimits>;

export type ResumeOutcome = { recovered: true; received: number } | { recovered: false };

export type ServerMessage =
  | { type: 'challenge'; nonce: Uint8Array; gateway: string; expiresIn: number }
  | {
      type: 'ready';
      peerId: string;
      resumeToken: string;
      resumeGrace: number;
      backends: BackendInfo[];
      limits: GatewayLimits;
      resumed: Map<number, ResumeOutcome> | undefined;
    }
  | { type: 'opened'; id: number; session: number; backend: string; peerId: string }
  | { type: 'sign'; id: number; session: number; payload: Uint8Array }
  | { type: 'closed'; session: number; code: number; message: string; id: number | undefined }
  | { type: 'stream_closed'; session: number; stream: string }
  | { type: 'error'; code: number; message: string; id: number | undefined; session: number | undefined }
  | { type: 'pong'; id: number }
  | { type: 'refreshed'; id: number; expiresAt: number }
  | { type: 'token_expiring'; expiresAt: number }
  | { type: 'drain'; reconnectAfterMs: number };

const MAX_BACKENDS = 1024;
/** A session number as a JSON object key. */
const SESSION_KEY = /^\d{1,5}$/;
const isSessionKey = (key: string): boolean => SESSION_KEY.test(key) && +key >= 1 && +key <= MAX_SESSION;

const BACKEND: Fields = { name: str(0, MAX_NAME_CHARS), peer_id: peer };

const RECEIVED = int(0, Number.MAX_SAFE_INTEGER);

/** `ready.resumed`: `{"<session>": {recovered: true, received} | {recovered: false}}`, or null. */
const resumed: Field = (value, what) => {
  if (value === undefined || value === null) return undefined;
  const entries = Object.entries(object(value, what));
  if (entries.length > MAX_SESSION) fail(what);
  return new Map(
    entries.map(([key, raw]) => {
      const { recovered, received } = object(raw, what);
      if (!isSessionKey(key) || typeof recovered !== 'boolean') fail(what);
      return [+key, recovered ? { recovered, received: RECEIVED(received, what) } : { recovered }];
    }),
  );
};

const SERVER: Record<string, Fields> = {
  challenge: { nonce: bytes(32), gateway: str(1, 255), expires_in: num },
  ready: {
    peer_id: peer,
    // returned as sent: 24 bytes are exactly 32 characters, so the string is canonical
    resume_token: (value, what) => (bytes(24)(value, what), value),
    resume_grace: opt(num, 30),
    backends: (value, what) => {
      value ??= [];
      if (!Array.isArray(value) || value.length > MAX_BACKENDS) fail(what);
      return (value as unknown[]).map((raw) => fields(object(raw, what), BACKEND, what));
    },
    limits: (value, what) => fields(object(value ?? {}, what), LIMITS, what),
    resumed,
  },
  opened: { id: ID, session: SESSION, backend: str(0, MAX_NAME_CHARS, ''), peer_id: peer },
  sign: { id: ID, session: SESSION, payload: bytes(undefined, 1024) },
  closed: { session: SESSION, code: CODE, message: MESSAGE, id: opt(ID) },
  stream_closed: { session: SESSION, stream: str(0, MAX_STREAM_NAME) },
  error: { code: CODE, message: MESSAGE, id: opt(ID), session: opt(SESSION) },
  pong: { id: ID },
  refreshed: { id: ID, ...EXPIRES_AT },
  token_expiring: EXPIRES_AT,
  drain: { reconnect_after_ms: int(0, MAX_ID) },
};

/** Parse and check one control message from the gateway. Unknown types are a protocol error (§2). */
export function decodeServerMessage(text: string, maxBytes = 1 << 20): ServerMessage {
  const obj = parse(text, maxBytes);
  const type = obj.type as string;
  const spec = lookup(SERVER, type);
  if (type === 'challenge' && obj.version !== PROTOCOL_VERSION) {
    throw violation('bad version', CloseCode.UnsupportedVersion);
  }
  return { type, ...fields(obj, spec, type) } as ServerMessage;
}

// ------------------------------------------------------------------------------------------
// client → gateway (wire field names; Uint8Array values are sent as base64url)

/** `auth.resume`: the resume token (base64url, as `ready` gave it) and frames received per session. */
export interface ResumeRequest {
  token: string;
  sessions: Record<string, number>;
}

export type ClientMessage =
  | {
      type: 'auth';
      version: number;
      public_key: Uint8Array;
      signature: Uint8Array;
      token?: string | undefined;
      resume?: ResumeRequest | undefined;
      /** We take batch messages (§5.6). */
      batch?: boolean | undefined;
    }
  | { type: 'open'; id: number; session: number; backend: string }
  | { type: 'signature'; id: number; signature: Uint8Array }
  | { type: 'sign_refused'; id: number }
  | { type: 'close'; id: number; session: number }
  | { type: 'refresh'; id: number; token: string }
  | { type: 'ping'; id: number };

/** One JSON text frame; `undefined` fields are left out, bytes become base64url. */
export function encodeClientMessage(message: ClientMessage): string {
  return JSON.stringify(message, (_key, value: unknown) => (value instanceof Uint8Array ? b64urlEncode(value) : value));
}

/**
 * The gateway's parser of client messages (protocol/control.py `decode_client_message`), for tests and
 * fake gateways: the same checks and codes.
 */
export function decodeClientMessage(text: string, maxBytes = 16384, maxSessions = 64): ClientMessage {
  const obj = parse(text, maxBytes);
  const type = obj.type as string;
  const signature = bytes(64);
  // built here, not at the top, so that the browser bundle (which never decodes these) drops it
  const spec = lookup<Fields>(
    {
      auth: { public_key: bytes(32), signature },
      open: { id: ID, session: SESSION, backend: str(1, MAX_NAME_CHARS) },
      signature: { id: ID, signature },
      sign_refused: { id: ID },
      close: { id: ID, session: SESSION },
      refresh: { id: ID, token: str(1, MAX_TOKEN_CHARS) },
      ping: { id: ID },
    },
    type,
  );
  let extra: Json = {};
  if (type === 'auth') {
    if (obj.version !== PROTOCOL_VERSION) throw violation('bad version', CloseCode.UnsupportedVersion);
    const token = obj.token ?? undefined;
    if (token !== undefined && (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS)) {
      throw violation(`token must be a string of at most ${MAX_TOKEN_CHARS} chars`, CloseCode.TokenInvalid);
    }
    let resume: ResumeRequest | undefined;
    if (obj.resume !== undefined && obj.resume !== null) {
      const raw = object(obj.resume, 'auth.resume');
      b64urlDecode(raw.token, 'auth.resume.token', 24);
      const sessions = object(raw.sessions ?? {}, 'auth.resume.sessions');
      const entries = Object.entries(sessions);
      const ok = entries.every(([k, v]) => isSessionKey(k) && Number.isSafeInteger(v) && (v as number) >= 0);
      if (entries.length > maxSessions || !ok) fail('auth.resume.sessions');
      resume = { token: raw.token as string, sessions: sessions as Record<string, number> };
    }
    const batch = obj.batch ?? false;
    if (typeof batch !== 'boolean') fail('auth.batch');
    extra = { version: PROTOCOL_VERSION, token, resume, batch };
  }
  if (type === 'open' && ('addrs' in obj || 'addr' in obj || 'multiaddrs' in obj)) {
    throw violation('the gateway dials configured backends only, never addresses', CloseCode.BackendUnknown);
  }
  return { type, ...fields(obj, spec, type, (key) => key), ...extra } as ClientMessage;
}

// ------------------------------------------------------------------------------------------
// what the client signs (§3, §5.1)

export const AUTH_LABEL = 'glueberry-gateway-auth-v1\0';
export const NOISE_PREFIX = 'noise-libp2p-static-key:';

/** `u8 len ‖ text` of at most 255 ASCII characters (InvalidArgumentError otherwise). */
function lengthPrefixed(text: string): number[] {
  const bytes = utf8Encode(text); // as long as the text only when it is ASCII
  if (bytes.length > 255 || bytes.length !== text.length) {
    throw new InvalidArgumentError('not 0-255 ASCII characters');
  }
  return [bytes.length, ...bytes];
}

/** `"glueberry-gateway-auth-v1" 0x00 ‖ u8 len ‖ gateway peer ID ‖ u8 len ‖ origin ‖ nonce`. */
export function authMessage(gatewayPeerId: string, origin: string, nonce: Uint8Array): Uint8Array {
  return Uint8Array.from([
    ...utf8Encode(AUTH_LABEL),
    ...lengthPrefixed(gatewayPeerId),
    ...lengthPrefixed(origin),
    ...nonce,
  ]);
}

/** The only thing a client signs for the gateway: `"noise-libp2p-static-key:"` ‖ a 32-byte key. */
export function isNoisePayload(payload: Uint8Array): boolean {
  return (
    payload.length === NOISE_PREFIX.length + 32 && String.fromCharCode(...payload.subarray(0, 24)) === NOISE_PREFIX
  );
}
