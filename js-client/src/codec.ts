/**
 * Encoding and validation of gateway protocol messages (docs/gateway-protocol.md), both ways,
 * as gateway/src/glueberry_gateway/codec.py.
 *
 * Control messages are JSON text frames; bytes inside them are base64url without padding.
 * Data is a binary frame: `01 ‖ session (u16 BE) ‖ n (u8) ‖ stream name (n) ‖ payload` (§5.2).
 * Every decoder bounds its input and throws {@link ProtocolError} with the close code to use
 * (4000 malformed, 4001 version, 4009 too big, 4108 bad stream name). Nothing here does I/O.
 */

import { CloseCode } from './codes.js';
import { InvalidArgumentError, ProtocolError } from './errors.js';
import { isPeerId } from './identity.js';

export const SUBPROTOCOL = 'glueberry.v1';
export const PROTOCOL_VERSION = 1;
export const DATA_KIND = 0x01;
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

// ------------------------------------------------------------------------------------------
// base64url (RFC 4648 §5), no padding

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_INDEX = new Map<string, number>([...B64].map((c, i) => [c, i]));

export function b64urlEncode(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest > 0) {
    const n = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + (rest === 2 ? B64[(n >> 6) & 63]! : '');
  }
  return out;
}

/**
 * Bytes of a base64url string (no padding, no other characters). `size`: the exact length
 * required; `maxSize`: a bound on the decoded length. Throws {@link ProtocolError} (4000).
 */
export function b64urlDecode(value: unknown, what: string, size?: number, maxSize = 4096): Uint8Array {
  if (typeof value !== 'string' || value.length > Math.ceil((maxSize * 4) / 3) || value.length % 4 === 1) {
    throw violation(`${what}: expected a base64url string`);
  }
  const out = new Uint8Array((value.length * 3) >> 2);
  let acc = 0;
  let bits = 0;
  let pos = 0;
  for (const c of value) {
    const v = B64_INDEX.get(c);
    if (v === undefined) throw violation(`${what}: not base64url`);
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[pos++] = (acc >> bits) & 0xff;
    }
  }
  if (size !== undefined && out.length !== size) {
    throw violation(`${what}: expected ${size} bytes, got ${out.length}`);
  }
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
  if (!Number.isInteger(session) || session < 1 || session > MAX_SESSION) throw violation(`bad session ${session}`);
  if (!isStreamName(stream)) throw violation('bad stream name', CloseCode.InvalidStream);
  const n = stream.length;
  const frame = new Uint8Array(DATA_HEADER + n + payload.length);
  frame[0] = DATA_KIND;
  frame[1] = session >> 8;
  frame[2] = session & 0xff;
  frame[3] = n;
  for (let i = 0; i < n; i++) frame[DATA_HEADER + i] = stream.charCodeAt(i);
  frame.set(payload, DATA_HEADER + n);
  return frame;
}

/** Parse a binary frame; the payload is a view into `data`. */
export function decodeDataFrame(data: Uint8Array, maxBytes: number): DataFrame {
  if (data.length > maxBytes) throw violation(`data frame over ${maxBytes} bytes`, CloseCode.MessageTooBig);
  if (data.length < DATA_HEADER) throw violation('data frame shorter than its header');
  if (data[0] !== DATA_KIND) throw violation(`unknown binary frame kind ${data[0]}`);
  const session = (data[1]! << 8) | data[2]!;
  if (session === 0) throw violation('session 0 does not exist');
  const end = DATA_HEADER + data[3]!;
  if (end === DATA_HEADER || data.length < end) throw violation('data frame truncated inside the stream name');
  const stream = String.fromCharCode(...data.subarray(DATA_HEADER, end));
  if (!isStreamName(stream)) throw violation('invalid stream name in a data frame', CloseCode.InvalidStream);
  return { session, stream, payload: data.subarray(end) };
}

// ------------------------------------------------------------------------------------------
// field checks

function parse(text: string, maxBytes: number): Json {
  if (typeof text !== 'string') throw violation('control message must be text');
  if (text.length > maxBytes) throw violation(`control message over ${maxBytes} bytes`, CloseCode.MessageTooBig);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw violation('control message is not JSON');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || typeof (obj as Json).type !== 'string') {
    throw violation("control message must be an object with a 'type'");
  }
  return obj as Json;
}

function int(obj: Json, key: string, low: number, high: number): number;
function int(obj: Json, key: string, low: number, high: number, optional: true): number | undefined;
function int(obj: Json, key: string, low: number, high: number, optional?: true): number | undefined {
  const value = obj[key];
  if (value === undefined && optional) return undefined;
  if (!Number.isInteger(value) || (value as number) < low || (value as number) > high) {
    throw violation(`${String(obj.type)}: '${key}' must be an integer in ${low}..${high}`);
  }
  return value as number;
}

function num(obj: Json, key: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
    throw violation(`${String(obj.type)}: '${key}' must be a non-negative number`);
  }
  return value;
}

function str(obj: Json, key: string, maxChars: number, fallback?: string): string {
  const value = obj[key] ?? fallback;
  if (typeof value !== 'string' || value.length > maxChars) {
    throw violation(`${String(obj.type)}: '${key}' must be a string of at most ${maxChars} chars`);
  }
  return value;
}

function peer(value: unknown, what: string): string {
  if (!isPeerId(value)) throw violation(`${what} is not an Ed25519 peer ID`);
  return value;
}

const id = (obj: Json): number => int(obj, 'id', 1, MAX_ID);
const session = (obj: Json): number => int(obj, 'session', 1, MAX_SESSION);

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

export const DEFAULT_LIMITS: Readonly<GatewayLimits> = {
  maxSessions: 16,
  maxStreams: 16,
  maxFrameBytes: (1 << 20) + 96,
  maxControlBytes: 16384,
};

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

/** Parse and check one control message from the gateway. Unknown types are a protocol error (§2). */
export function decodeServerMessage(text: string, maxBytes = 1 << 20): ServerMessage {
  const obj = parse(text, maxBytes);
  const type = obj.type as string;
  switch (type) {
    case 'challenge':
      if (obj.version !== PROTOCOL_VERSION)
        throw violation('challenge version must be 1', CloseCode.UnsupportedVersion);
      return {
        type,
        nonce: b64urlDecode(obj.nonce, 'nonce', 32),
        gateway: nonEmpty(obj, 'gateway', 255),
        expiresIn: num(obj, 'expires_in'),
      };
    case 'ready':
      return decodeReady(obj);
    case 'opened':
      return {
        type,
        id: id(obj),
        session: session(obj),
        backend: str(obj, 'backend', MAX_NAME_CHARS, ''),
        peerId: peer(obj.peer_id, 'opened.peer_id'),
      };
    case 'sign':
      return {
        type,
        id: id(obj),
        session: session(obj),
        payload: b64urlDecode(obj.payload, 'sign.payload', undefined, 1024),
      };
    case 'closed':
      return {
        type,
        session: session(obj),
        code: int(obj, 'code', 1000, 4999),
        message: str(obj, 'message', 4096, ''),
        id: int(obj, 'id', 1, MAX_ID, true),
      };
    case 'stream_closed':
      return { type, session: session(obj), stream: str(obj, 'stream', MAX_STREAM_NAME) };
    case 'error':
      return {
        type,
        code: int(obj, 'code', 1000, 4999),
        message: str(obj, 'message', 4096, ''),
        id: int(obj, 'id', 1, MAX_ID, true),
        session: int(obj, 'session', 1, MAX_SESSION, true),
      };
    case 'pong':
      return { type, id: id(obj) };
    case 'refreshed':
      return { type, id: id(obj), expiresAt: num(obj, 'expires_at') };
    case 'token_expiring':
      return { type, expiresAt: num(obj, 'expires_at') };
    case 'drain':
      return { type, reconnectAfterMs: int(obj, 'reconnect_after_ms', 0, MAX_ID) };
    default:
      throw violation(`unknown message type ${JSON.stringify(type.slice(0, 40))}`);
  }
}

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw violation(`${what} must be an object`);
  return value as Json;
}

function decodeReady(obj: Json): ServerMessage {
  const token = b64urlDecode(obj.resume_token, 'resume_token', 24);
  const rawBackends = obj.backends ?? [];
  if (!Array.isArray(rawBackends) || rawBackends.length > MAX_BACKENDS) {
    throw violation(`ready.backends must be a list of at most ${MAX_BACKENDS}`);
  }
  const backends = rawBackends.map((raw: unknown) => {
    const item: Json = { ...object(raw, 'ready.backends[]'), type: 'ready.backends' };
    return { name: str(item, 'name', MAX_NAME_CHARS), peerId: peer(item.peer_id, 'ready.backends[].peer_id') };
  });
  const rawLimits: Json = { ...object(obj.limits ?? {}, 'ready.limits'), type: 'ready.limits' };
  const limit = (key: string, fallback: number): number => int(rawLimits, key, 1, MAX_ID, true) ?? fallback;
  const limits: GatewayLimits = {
    maxSessions: limit('max_sessions', DEFAULT_LIMITS.maxSessions),
    maxStreams: limit('max_streams', DEFAULT_LIMITS.maxStreams),
    maxFrameBytes: limit('max_frame_bytes', DEFAULT_LIMITS.maxFrameBytes),
    maxControlBytes: limit('max_control_bytes', DEFAULT_LIMITS.maxControlBytes),
  };
  let resumed: Map<number, ResumeOutcome> | undefined;
  if (obj.resumed !== undefined && obj.resumed !== null) {
    resumed = new Map();
    const entries = Object.entries(object(obj.resumed, 'ready.resumed'));
    if (entries.length > MAX_SESSION) throw violation('ready.resumed is too long');
    for (const [key, raw] of entries) {
      const number = Number(key);
      const entry: Json = { ...object(raw, 'ready.resumed entry'), type: 'ready.resumed' };
      if (!/^\d{1,5}$/.test(key) || number < 1 || number > MAX_SESSION || typeof entry.recovered !== 'boolean') {
        throw violation('ready.resumed maps session numbers to {recovered, received}');
      }
      resumed.set(
        number,
        entry.recovered
          ? { recovered: true, received: int(entry, 'received', 0, Number.MAX_SAFE_INTEGER) }
          : { recovered: false },
      );
    }
  }
  return {
    type: 'ready',
    peerId: peer(obj.peer_id, 'ready.peer_id'),
    resumeToken: b64urlEncode(token),
    resumeGrace: obj.resume_grace === undefined ? 30 : num(obj, 'resume_grace'),
    backends,
    limits,
    resumed,
  };
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
 * The gateway's parser of client messages (codec.py `decode_client_message`), for tests and
 * fake gateways: the same checks and codes.
 */
export function decodeClientMessage(text: string, maxBytes = 16384, maxSessions = 64): ClientMessage {
  const obj = parse(text, maxBytes);
  const type = obj.type as string;
  switch (type) {
    case 'auth': {
      if (obj.version !== PROTOCOL_VERSION) throw violation('version must be 1', CloseCode.UnsupportedVersion);
      const token = obj.token ?? undefined;
      if (token !== undefined && (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS)) {
        throw violation(`token must be a string of at most ${MAX_TOKEN_CHARS} chars`, CloseCode.TokenInvalid);
      }
      let resume: ResumeRequest | undefined;
      if (obj.resume !== undefined && obj.resume !== null) {
        const raw = object(obj.resume, "'resume'");
        b64urlDecode(raw.token, 'resume.token', 24);
        const sessions = object(raw.sessions ?? {}, "'resume.sessions'");
        const entries = Object.entries(sessions);
        const ok = entries.every(
          ([k, v]) =>
            /^\d{1,5}$/.test(k) &&
            Number(k) >= 1 &&
            Number(k) <= MAX_SESSION &&
            Number.isSafeInteger(v) &&
            (v as number) >= 0,
        );
        if (entries.length > maxSessions || !ok) throw violation("'resume.sessions' maps session numbers to counts");
        resume = { token: raw.token as string, sessions: sessions as Record<string, number> };
      }
      return {
        type,
        version: PROTOCOL_VERSION,
        public_key: b64urlDecode(obj.public_key, 'public_key', 32),
        signature: b64urlDecode(obj.signature, 'signature', 64),
        token,
        resume,
      };
    }
    case 'open':
      if ('addrs' in obj || 'addr' in obj || 'multiaddrs' in obj) {
        throw violation('the gateway dials configured backends only, never addresses', CloseCode.BackendUnknown);
      }
      return { type, id: id(obj), session: session(obj), backend: nonEmpty(obj, 'backend', MAX_NAME_CHARS) };
    case 'signature':
      return { type, id: id(obj), signature: b64urlDecode(obj.signature, 'signature', 64) };
    case 'sign_refused':
      return { type, id: id(obj) };
    case 'close':
      return { type, id: id(obj), session: session(obj) };
    case 'refresh':
      return { type, id: id(obj), token: nonEmpty(obj, 'token', MAX_TOKEN_CHARS) };
    case 'ping':
      return { type, id: id(obj) };
    default:
      throw violation(`unknown message type ${JSON.stringify(type.slice(0, 40))}`);
  }
}

function nonEmpty(obj: Json, key: string, maxChars: number): string {
  const value = str(obj, key, maxChars);
  if (value === '') throw violation(`'${key}' must be a non-empty string`);
  return value;
}

// ------------------------------------------------------------------------------------------
// what the client signs (§3, §5.1)

export const AUTH_LABEL = 'glueberry-gateway-auth-v1\0';
export const NOISE_PREFIX = 'noise-libp2p-static-key:';

function ascii(text: string, what: string): number[] {
  const codes = [...text].map((c) => c.charCodeAt(0));
  if (codes.length > 255 || codes.some((c) => c > 127))
    throw new InvalidArgumentError(`${what} must be at most 255 ASCII characters`);
  return codes;
}

/** `"glueberry-gateway-auth-v1" 0x00 ‖ u8 len ‖ gateway peer ID ‖ u8 len ‖ origin ‖ nonce`. */
export function authMessage(gatewayPeerId: string, origin: string, nonce: Uint8Array): Uint8Array {
  const gateway = ascii(gatewayPeerId, 'gateway peer ID');
  const page = ascii(origin, 'origin');
  return Uint8Array.from([...ascii(AUTH_LABEL, 'label'), gateway.length, ...gateway, page.length, ...page, ...nonce]);
}

/** The only thing a client signs for the gateway: `"noise-libp2p-static-key:"` ‖ a 32-byte key. */
export function isNoisePayload(payload: Uint8Array): boolean {
  return (
    payload.length === NOISE_PREFIX.length + 32 && [...NOISE_PREFIX].every((c, i) => payload[i] === c.charCodeAt(0))
  );
}
