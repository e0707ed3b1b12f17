/**
 * The socket side of `GlueberryClient` (client.ts adds the sessions): one WebSocket at a time,
 * challenge → auth → ready (docs/gateway-protocol.md §3), requests by id, tokens (§4), drain,
 * keepalive pings (§5.5), and the reconnect loop of §6 with exponential backoff and jitter.
 *
 * States: `connecting` → `connected`; a dropped socket → `resuming` (a new socket whose `auth`
 * carries `resume`) → `connected`, or `offline` while the gateway cannot be reached (it keeps
 * trying); `closed` at the end: by `close()`, a close that retrying cannot help (4000, 4001, 4002,
 * 4005, 4007, 4009, and 4006 without `refreshToken`), or any failure of the first connect.
 */

import { utf8Encode } from './bytes.js';
import { CloseCode } from './codes.js';
import {
  type BackendInfo,
  type ClientMessage,
  DEFAULT_LIMITS,
  type DataFrame,
  type GatewayLimits,
  HANDSHAKE_STREAM,
  MAX_ID,
  PROTOCOL_VERSION,
  type ResumeOutcome,
  SUBPROTOCOL,
  type ServerMessage,
  authMessage,
  decodeDataFrame,
  decodeServerMessage,
  encodeClientMessage,
  isStreamName,
  splitBatch,
} from './codec.js';
import { OVERHEAD } from './crypto.js';
import { GatewayError, GlueberryError, InvalidArgumentError, LimitExceededError, ProtocolError } from './errors.js';
import { Emitter } from './events.js';
import { type HandshakeFactory, MAX_NAME_BYTES } from './handshake.js';
import type { Identity } from './identity.js';
import type { Session, SessionBounds } from './session.js';
import { type Socket, type WebSocketConstructor, closeSocket, messageData, openSocket } from './transport.js';

export type ClientState = 'connecting' | 'connected' | 'resuming' | 'offline' | 'closed';

export interface ClientEvents {
  state: { state: ClientState; previous: ClientState; code?: number };
  error: { error: GlueberryError };
  drain: { reconnectAfterMs: number };
  closed: { code: number; reason: string };
}

export interface GlueberryClientOptions {
  /** The page's Ed25519 identity; its private key never leaves the client. */
  identity: Identity;
  /** An application token (JWT) for gateways that want one. */
  token?: string;
  /** Called on `token_expiring` (and after a 4006 close); its result is sent with `refresh`. */
  refreshToken?: () => Promise<string>;
  /** The WebSocket class (Node: the `ws` package). Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Node only: the Origin header and the origin signed (browsers: `location.origin`). */
  origin?: string;
  /** Resume after a dropped socket (default true). */
  reconnect?: boolean;
  /** First backoff delay in ms (default 250), doubled per failed attempt up to ... */
  reconnectDelay?: number;
  /** ... this many ms (default 10000); each wait is jittered to 50–100 %. */
  maxReconnectDelay?: number;
  /** The name sent in Hello by the default handshake (default ''). */
  handshakeName?: string;
  /**
   * The application handshake of each session (default: Hello / PubKey / Complete with
   * `handshakeName`); `open()` may name another. docs/js-client.md "Write your own handshake".
   */
  handshake?: HandshakeFactory;
  /** Stream names used in each session (default ['chat']). */
  streams?: string[];
  /** ms for the WebSocket, challenge and ready of one attempt (default 15000). */
  connectTimeout?: number;
  /** A `ping` every this many ms; 3 periods without any message drop the socket (default 25000, 0 = off). */
  pingInterval?: number;
  /** Bounds of each session's queues (defaults: outbox 1024 frames / 4 MiB, waiting sends 1024 / 4 MiB, inbox 1024, held 256). */
  bounds?: Partial<SessionBounds>;
}

/** @internal A request waiting for its answer (by id). */
export type Request =
  | { kind: 'open'; session: Session }
  | { kind: 'close'; session: number; done: () => void }
  | { kind: 'refresh' | 'ping' };

/**
 * Closes after which trying again cannot help (our key, origin, token or protocol is refused):
 * ProtocolError, UnsupportedVersion, AuthFailed, TokenInvalid, OriginNotAllowed, MessageTooBig.
 */
const FATAL = [4000, 4001, 4002, 4005, 4007, 4009];
const MAX_REQUESTS = 256;
/** `options.streams` by default. */
export const DEFAULT_STREAMS = ['chat'];
/** A default Go sender's largest encrypted frame with the data header and a 64-byte name. */
const MAX_RECEIVE_BYTES = (1 << 20) + OVERHEAD + 4 + 64;

/** Defined only in the browser bundle: see src/transport.ts. */
declare const GLUEBERRY_BROWSER_BUNDLE: true;

type Global = {
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: Global['addEventListener'];
};
const global = globalThis as Global;

export abstract class Connection extends Emitter<ClientEvents> {
  /** The page's peer ID. */
  readonly peerId: string;
  /** The page's fingerprint, for people to compare. */
  readonly fingerprint: string;
  /** @internal */ readonly _identity: Identity;
  /** @internal */ protected readonly _options: GlueberryClientOptions;
  /** @internal */ protected readonly _requests = new Map<number, Request>();
  /** @internal */ _limits: GatewayLimits = DEFAULT_LIMITS;
  readonly #origin: string;
  /** A new socket to the gateway. */
  readonly #socket: () => Socket;
  #token: string | undefined;
  #state: ClientState = 'connecting';
  #phase: 'socket' | 'challenge' | 'auth' | 'ready' = 'socket';
  #draining = false;
  #gatewayPeerId = '';
  #backends: BackendInfo[] = [];
  #ws: Socket | undefined;
  #resumeSent = false;
  #resumeToken: string | undefined;
  #nextId = 1;
  #attempt = 0;
  #drainMs: number | undefined;
  #freshToken = false;
  #lastError: GatewayError | undefined;
  /** The reconnect delay. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The socket's: the deadline for `ready`, then the keepalive interval. */
  #socketTimer: ReturnType<typeof setTimeout> | undefined;
  #silent = 0;
  #connected: { resolve: () => void; reject: (error: Error) => void } | undefined;
  readonly #online = (): void => {
    if (this.#state === 'offline' && !this.#ws) this.#reconnectIn(0);
  };

  /** @internal */
  protected constructor(url: string, options: GlueberryClientOptions) {
    super();
    const { identity } = options;
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const origin = options.origin ?? (globalThis as { location?: { origin?: string } }).location?.origin;
    const streams = options.streams ?? DEFAULT_STREAMS;
    const valid: Record<string, boolean> = {
      identity: typeof identity?.sign === 'function',
      WebSocket: !!WebSocket, // outside browsers: the ws package
      origin: typeof origin === 'string' && /^[\x21-\x7e]{1,255}$/.test(origin), // 1–255 ASCII, no spaces
      // stream names (1–64 of A–Z a–z 0–9 - _), not the handshake's
      streams: Array.isArray(streams) && streams.every((s) => isStreamName(s) && s !== HANDSHAKE_STREAM),
      handshakeName: utf8Encode(options.handshakeName ?? '').length <= MAX_NAME_BYTES,
      handshake: options.handshake === undefined || typeof options.handshake === 'function',
    };
    const bad = Object.keys(valid).find((key) => !valid[key]);
    if (bad) throw new InvalidArgumentError(`options.${bad} is missing or invalid`);
    this.#origin = origin!;
    this.#socket = () => openSocket(url, WebSocket!, options.origin);
    this.#token = options.token;
    this._identity = identity;
    this._options = options;
    this.peerId = identity.peerId;
    this.fingerprint = identity.fingerprint;
  }

  /** The gateway's peer ID (from its challenge). */
  get gatewayPeerId(): string {
    return this.#gatewayPeerId;
  }

  /** The backends this page may open (`ready.backends`). */
  get backends(): readonly BackendInfo[] {
    return this.#backends;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** Close the socket normally: every session ends, nothing is resumed. */
  close(): void {
    this.#finish(CloseCode.Normal, 'client closed');
  }

  // ---- for the session layer ----------------------------------------------------------------

  /** @internal The first connect: resolves on `ready`, rejects when that attempt fails. */
  protected _start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#connected = { resolve, reject };
      this.#open();
    });
  }

  /** @internal Authenticated and not draining: requests and frames may go out. */
  _usable(): boolean {
    return this.#phase === 'ready' && !this.#draining;
  }

  /** @internal */
  _send(message: ClientMessage | Uint8Array): void {
    try {
      this.#ws?.send(message instanceof Uint8Array ? message : encodeClientMessage(message));
    } catch {
      this.#drop(1006, 'send failed');
    }
  }

  /** @internal */
  protected _bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  /** @internal A new request id (LimitExceededError when too many wait). */
  protected _request(request: Request): number {
    if (this._requests.size >= MAX_REQUESTS) throw new LimitExceededError('too many requests waiting');
    let id;
    do {
      id = this.#nextId;
      this.#nextId = (id % MAX_ID) + 1;
    } while (this._requests.has(id));
    this._requests.set(id, request);
    return id;
  }

  /** @internal The request `id` (if any), removed, when it is of one of `kinds`. */
  protected _take<K extends Request['kind']>(
    id: number | undefined,
    ...kinds: K[]
  ): Extract<Request, { kind: K }> | undefined {
    const request = this._requests.get(id!);
    if (!request || !kinds.includes(request.kind as K)) return undefined;
    this._requests.delete(id!);
    return request as Extract<Request, { kind: K }>;
  }

  /** @internal `resume.sessions` for the next auth: frames received per session the gateway holds. */
  protected abstract _resumeCounts(): Record<string, number>;
  /** @internal After `ready`: continue or reopen the sessions (`resumed` only when resume was sent). */
  protected abstract _reattach(resumed: Map<number, ResumeOutcome> | undefined): void;
  /** @internal `opened`, `sign`, `closed`, `stream_closed`. */
  protected abstract _control(message: ServerMessage): void;
  /** @internal An `error` about a request or session; false when it is about the socket. */
  protected abstract _sessionError(message: Extract<ServerMessage, { type: 'error' }>, error: GatewayError): boolean;
  /** @internal */
  protected abstract _frame(frame: DataFrame): void;
  /** @internal The socket is gone or draining: sessions wait. */
  protected abstract _suspend(): void;
  /** @internal The client is over: end every session. */
  protected abstract _endAll(code: number, reason: string, error?: GlueberryError): void;

  // ---- the socket ---------------------------------------------------------------------------

  #open(): void {
    if (this.#state === 'closed') return;
    this.#phase = 'socket';
    this.#draining = false;
    this.#resumeSent = false;
    let ws: Socket;
    try {
      ws = this.#socket();
    } catch (cause) {
      const error = new GatewayError(1006, 'cannot open a WebSocket', { cause });
      return this.#dropped(1006, error.message, error);
    }
    // events of a socket given up (closed here, or replaced) are ignored
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      if (ws.protocol === SUBPROTOCOL) this.#phase = 'challenge';
      else this.#drop(CloseCode.UnsupportedVersion, 'subprotocol refused');
    };
    ws.onmessage = ({ data }) => {
      const received = messageData(data);
      if (this.#ws === ws && received !== undefined) this.#received(received);
    };
    ws.onclose = ({ code, reason }) => this.#ws === ws && this.#drop(code || 1006, reason || '');
    this.#ws = ws;
    this.#socketTimer = setTimeout(
      () => this.#abandon('no ready in time'),
      this._options.connectTimeout ?? 15000,
    );
  }

  /** Give the socket up as if it dropped: not with 1000, so the gateway keeps the sessions. */
  #abandon(reason: string): void {
    this.#drop(1006, reason, undefined, CloseCode.IdleTimeout);
  }

  /** Close the socket (with `sent`, default `code`) and carry on as after a drop with `code`. */
  #drop(code: number, reason: string, error?: GlueberryError, sent = code): void {
    closeSocket(this.#ws, sent, reason);
    this.#dropped(code, reason, error);
  }

  /** Settle the first connect (`connect()`), if it is still waiting. */
  #settle(error?: Error): void {
    const connected = this.#connected;
    this.#connected = undefined;
    if (error) connected?.reject(error);
    else connected?.resolve();
  }

  #setState(state: ClientState, code?: number): void {
    const previous = this.#state;
    if (state === previous) return;
    this.#state = state;
    this.emit('state', code === undefined ? { state, previous } : { state, previous, code });
  }

  #received(data: string | Uint8Array): void {
    this.#silent = 0;
    try {
      if (typeof data === 'string') this.#dispatch(decodeServerMessage(data));
      else if (this.#phase !== 'ready') throw new ProtocolError('data before ready');
      else for (const frame of splitBatch(data)) this._frame(decodeDataFrame(frame, MAX_RECEIVE_BYTES));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.#drop(err.code, err.message, err);
    }
  }

  #dispatch(message: ServerMessage): void {
    const { type } = message;
    if (type === 'error') {
      const error = new GatewayError(message.code, message.message, message); // with its session, if any
      const request = this._take(message.id, 'refresh', 'ping');
      if (request) {
        if (request.kind === 'refresh') this.emit('error', { error });
      } else if (!this._sessionError(message, error)) this.#lastError = error; // the close follows
    } else if (type === 'drain') {
      this.emit('drain', { reconnectAfterMs: (this.#drainMs = message.reconnectAfterMs) });
      this.#draining = true; // the gateway stops reading: sends wait for the sessions to come back
      this.#setState('resuming', CloseCode.GoingAway);
      this._suspend();
    } else if (this.#phase === 'challenge' || this.#phase === 'socket') {
      if (type !== 'challenge') throw new ProtocolError(`unexpected ${type}`);
      this.#gatewayPeerId = message.gateway;
      const sessions = this._resumeCounts();
      this.#resumeSent = !!this.#resumeToken && Object.keys(sessions).length > 0;
      this._send({
        type: 'auth',
        version: PROTOCOL_VERSION,
        public_key: this._identity.publicKey,
        signature: this._identity.sign(authMessage(message.gateway, this.#origin, message.nonce)),
        token: this.#token,
        resume: this.#resumeSent ? { token: this.#resumeToken!, sessions } : undefined,
        batch: true,
      });
      this.#phase = 'auth';
    } else if (this.#phase === 'auth') {
      if (type !== 'ready' || message.peerId !== this.peerId) throw new ProtocolError(`unexpected ${type}`);
      this.#backends = message.backends;
      this._limits = message.limits;
      this.#resumeToken = message.resumeToken;
      this.#phase = 'ready';
      this.#attempt = 0;
      this.#drainMs = this.#lastError = undefined;
      clearTimeout(this.#socketTimer); // the deadline for ready
      const interval = this._options.pingInterval ?? 25000;
      if (interval > 0) {
        this.#silent = 0;
        // runs while the socket is ready (#detach stops it)
        this.#socketTimer = setInterval(() => {
          if (++this.#silent >= 3) return this.#abandon('no answer');
          if (this._requests.size < MAX_REQUESTS) this._send({ type: 'ping', id: this._request({ kind: 'ping' }) });
        }, interval);
        if (typeof GLUEBERRY_BROWSER_BUNDLE === 'undefined') {
          (this.#socketTimer as { unref?: () => void }).unref?.(); // Node: do not keep the process alive
        }
      }
      this.#setState('connected');
      this._reattach(this.#resumeSent ? message.resumed : undefined);
      this.#settle();
    } else if (type === 'pong' || type === 'refreshed') this._requests.delete(message.id);
    else if (type === 'token_expiring') this.#refresh(false);
    else this._control(message);
  }

  #refresh(reconnect: boolean): void {
    const refreshToken = this._options.refreshToken;
    if (!refreshToken) return;
    refreshToken().then(
      (token) => {
        this.#token = token;
        if (reconnect) this.#open();
        else if (this._usable() && this._requests.size < MAX_REQUESTS) {
          this._send({ type: 'refresh', id: this._request({ kind: 'refresh' }), token });
        }
      },
      (cause: unknown) => {
        const error = new GlueberryError('refreshToken() failed', 'token_refresh', { cause });
        if (reconnect) this.#finish(CloseCode.TokenExpired, error.message, error);
        else this.emit('error', { error });
      },
    );
  }

  // ---- drops, reconnects, the end -------------------------------------------------------------

  #dropped(code: number, reason: string, error?: GlueberryError): void {
    if (this.#state === 'closed') return;
    const reached = this.#phase !== 'socket'; // the WebSocket had opened
    const last = this.#lastError; // an `error` the close came after
    this.#lastError = undefined;
    this.#detach();
    reason ||= last?.message || 'the gateway socket closed';
    const options = this._options;
    const fatal = FATAL.includes(code) || (code === CloseCode.TokenExpired && !options.refreshToken);
    if (this.#connected || options.reconnect === false || fatal) {
      return this.#finish(code, reason, error ?? last ?? new GatewayError(code, reason));
    }
    if (code === CloseCode.ResumeFailed) this.#resumeToken = undefined; // come back without resume
    this.#freshToken = code === CloseCode.TokenExpired;
    this.#setState(reached ? 'resuming' : 'offline', code);
    this._suspend();
    // doubling up to the maximum (2 ** a large count is Infinity, and the minimum is the maximum)
    const delay = Math.min(options.maxReconnectDelay ?? 10000, (options.reconnectDelay ?? 250) * 2 ** this.#attempt++);
    this.#reconnectIn(this.#drainMs ?? delay * (0.5 + Math.random() / 2)); // jittered to 50–100 %
    this.#drainMs = undefined;
  }

  /** Forget the socket, its timers and the requests on it (a `close` one is done: no answer comes). */
  #detach(): void {
    this.#ws = undefined;
    this.#phase = 'socket';
    clearInterval(this.#socketTimer); // either kind: timeouts and intervals share their ids
    for (const request of this._requests.values()) if (request.kind === 'close') request.done();
    this._requests.clear();
  }

  #reconnectIn(ms: number): void {
    clearTimeout(this.#timer);
    global.addEventListener?.('online', this.#online); // browsers: try at once when back online
    this.#timer = setTimeout(() => {
      if (this.#state === 'closed' || this.#ws !== undefined) return;
      if (this.#freshToken) this.#refresh(true);
      else this.#open();
    }, ms);
  }

  #finish(code: number, reason: string, error?: GlueberryError): void {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timer);
    global.removeEventListener?.('online', this.#online);
    closeSocket(this.#ws, CloseCode.Normal, reason);
    this.#detach();
    this._endAll(code, reason, error);
    this.#setState('closed', code);
    if (error !== undefined) this.emit('error', { error });
    this.emit('closed', { code, reason });
    this.#settle(error ?? new GatewayError(code, reason));
  }
}
