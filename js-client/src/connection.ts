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

import { CloseCode } from './codes.js';
import {
  type BackendInfo,
  type ClientMessage,
  DEFAULT_LIMITS,
  type DataFrame,
  type GatewayLimits,
  MAX_ID,
  PROTOCOL_VERSION,
  type ResumeOutcome,
  type ServerMessage,
  authMessage,
  decodeDataFrame,
  decodeServerMessage,
  encodeClientMessage,
} from './codec.js';
import { OVERHEAD } from './crypto.js';
import { GatewayError, GlueberryError, InvalidArgumentError, LimitExceededError, ProtocolError } from './errors.js';
import { Emitter } from './events.js';
import type { Identity } from './identity.js';
import type { Session, SessionBounds } from './session.js';
import { Transport, type WebSocketConstructor } from './transport.js';

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
  /** The name sent in Hello (default ''). */
  handshakeName?: string;
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

/** Closes after which trying again cannot help (our key, origin, token or protocol is refused). */
const FATAL = new Set<number>([
  CloseCode.ProtocolError,
  CloseCode.UnsupportedVersion,
  CloseCode.AuthFailed,
  CloseCode.TokenInvalid,
  CloseCode.OriginNotAllowed,
  CloseCode.MessageTooBig,
]);
const MAX_REQUESTS = 256;
/** A default Go sender's largest encrypted frame with the data header and a 64-byte name. */
const MAX_RECEIVE_BYTES = (1 << 20) + OVERHEAD + 4 + 64;

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
  /** @internal */ protected readonly _identity: Identity;
  /** @internal */ protected readonly _options: GlueberryClientOptions;
  /** @internal */ protected readonly _requests = new Map<number, Request>();
  /** @internal */ protected _limits: GatewayLimits = DEFAULT_LIMITS;
  readonly #url: string;
  readonly #origin: string;
  readonly #WebSocket: WebSocketConstructor;
  #token: string | undefined;
  #state: ClientState = 'connecting';
  #phase: 'socket' | 'challenge' | 'auth' | 'ready' = 'socket';
  #draining = false;
  #gatewayPeerId = '';
  #backends: BackendInfo[] = [];
  #link: Transport | undefined;
  #resumeSent = false;
  #resumeToken: string | undefined;
  #nextId = 1;
  #attempt = 0;
  #drainMs: number | undefined;
  #freshToken = false;
  #lastError: GatewayError | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #attemptTimer: ReturnType<typeof setTimeout> | undefined;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #silent = 0;
  #connected: { resolve: () => void; reject: (error: Error) => void } | undefined;
  readonly #online = (): void => {
    if (this.#state === 'offline' && this.#link === undefined) this.#reconnectIn(0);
  };

  /** @internal */
  protected constructor(url: string, options: GlueberryClientOptions) {
    super();
    const { identity } = options;
    if (typeof identity?.sign !== 'function') throw new InvalidArgumentError('options.identity is required');
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocket === undefined)
      throw new InvalidArgumentError('no WebSocket: pass options.WebSocket (Node: the ws package)');
    const origin = options.origin ?? (globalThis as { location?: { origin?: string } }).location?.origin;
    if (typeof origin !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(origin)) {
      throw new InvalidArgumentError('origin must be 1–255 ASCII characters (options.origin outside browsers)');
    }
    this.#url = url;
    this.#origin = origin;
    this.#WebSocket = WebSocket;
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
  protected _usable(): boolean {
    return this.#phase === 'ready' && !this.#draining;
  }

  /** @internal */
  protected _send(message: ClientMessage | Uint8Array): void {
    this.#link?.send(message instanceof Uint8Array ? message : encodeClientMessage(message));
  }

  /** @internal */
  protected _bufferedAmount(): number {
    return this.#link?.bufferedAmount ?? 0;
  }

  /** @internal A new request id (LimitExceededError when too many wait). */
  protected _request(request: Request): number {
    if (this._requests.size >= MAX_REQUESTS) throw new LimitExceededError('too many requests waiting for the gateway');
    while (this._requests.has(this.#nextId)) this.#nextId = (this.#nextId % MAX_ID) + 1;
    const id = this.#nextId;
    this.#nextId = (id % MAX_ID) + 1;
    this._requests.set(id, request);
    return id;
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
    let transport: Transport;
    try {
      transport = new Transport(this.#url, this.#WebSocket, this._options.origin, {
        open: () => {
          if (this.#link === transport) this.#phase = 'challenge';
        },
        text: (text) => this.#link === transport && this.#received(text),
        binary: (data) => this.#link === transport && this.#received(data),
        close: (code, reason) => this.#link === transport && this.#dropped(code, reason),
      });
    } catch (cause) {
      const message = `cannot open a WebSocket to ${this.#url}`;
      return this.#dropped(1006, message, new GatewayError(1006, message, { cause }));
    }
    this.#link = transport;
    this.#attemptTimer = setTimeout(
      () => this.#abandon('no ready from the gateway in time'),
      this._options.connectTimeout ?? 15000,
    );
  }

  /** Give the socket up as if it dropped: not with 1000, so the gateway keeps the sessions. */
  #abandon(reason: string): void {
    this.#link?.close(CloseCode.IdleTimeout, reason);
    this.#dropped(1006, reason);
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
      else if (this.#phase !== 'ready') throw new ProtocolError('data frame before ready');
      else this._frame(decodeDataFrame(data, MAX_RECEIVE_BYTES));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.#link?.close(err.code, err.message);
      this.#dropped(err.code, err.message, err);
    }
  }

  #dispatch(message: ServerMessage): void {
    const { type } = message;
    if (type === 'error') {
      const error = new GatewayError(
        message.code,
        message.message,
        message.session === undefined ? undefined : { session: message.session },
      );
      const request = message.id === undefined ? undefined : this._requests.get(message.id);
      if (request?.kind === 'refresh' || request?.kind === 'ping') {
        this._requests.delete(message.id!);
        if (request.kind === 'refresh') this.emit('error', { error });
      } else if (!this._sessionError(message, error)) this.#lastError = error; // the close follows
    } else if (type === 'drain') {
      this.#drainMs = message.reconnectAfterMs;
      this.emit('drain', { reconnectAfterMs: message.reconnectAfterMs });
      this.#draining = true; // the gateway stops reading: sends wait for the sessions to come back
      this.#setState('resuming', CloseCode.GoingAway);
      this._suspend();
    } else if (this.#phase === 'challenge' || this.#phase === 'socket') {
      if (type !== 'challenge') throw new ProtocolError(`expected a challenge, got ${type}`);
      this.#gatewayPeerId = message.gateway;
      const sessions = this._resumeCounts();
      this.#resumeSent = this.#resumeToken !== undefined && Object.keys(sessions).length > 0;
      this._send({
        type: 'auth',
        version: PROTOCOL_VERSION,
        public_key: this._identity.publicKey,
        signature: this._identity.sign(authMessage(message.gateway, this.#origin, message.nonce)),
        token: this.#token,
        resume: this.#resumeSent ? { token: this.#resumeToken!, sessions } : undefined,
      });
      this.#phase = 'auth';
    } else if (this.#phase === 'auth') {
      if (type !== 'ready') throw new ProtocolError(`expected ready, got ${type}`);
      if (message.peerId !== this.peerId) throw new ProtocolError(`ready names ${message.peerId}, not ${this.peerId}`);
      clearTimeout(this.#attemptTimer);
      this.#backends = message.backends;
      this._limits = message.limits;
      this.#resumeToken = message.resumeToken;
      this.#phase = 'ready';
      this.#attempt = 0;
      this.#drainMs = this.#lastError = undefined;
      this.#setState('connected');
      this.#startKeepalive();
      this._reattach(this.#resumeSent ? message.resumed : undefined);
      const connected = this.#connected;
      this.#connected = undefined;
      connected?.resolve();
    } else if (type === 'pong' || type === 'refreshed') this._requests.delete(message.id);
    else if (type === 'token_expiring') this.#refresh(false);
    else this._control(message);
  }

  #refresh(reconnect: boolean): void {
    const refreshToken = this._options.refreshToken;
    if (refreshToken === undefined) return;
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

  #startKeepalive(): void {
    clearInterval(this.#keepalive);
    const interval = this._options.pingInterval ?? 25000;
    if (interval <= 0) return;
    this.#silent = 0;
    this.#keepalive = setInterval(() => {
      if (this.#phase !== 'ready') return;
      if (++this.#silent >= 3) return this.#abandon('no answer from the gateway');
      if (this._requests.size < MAX_REQUESTS) this._send({ type: 'ping', id: this._request({ kind: 'ping' }) });
    }, interval);
    (this.#keepalive as { unref?: () => void }).unref?.(); // Node: do not keep the process alive
  }

  // ---- drops, reconnects, the end -------------------------------------------------------------

  #dropped(code: number, reason: string, error?: GlueberryError): void {
    if (this.#state === 'closed') return;
    const reached = this.#phase !== 'socket'; // the WebSocket had opened
    this.#link = undefined;
    this.#phase = 'socket';
    clearTimeout(this.#attemptTimer);
    clearInterval(this.#keepalive);
    for (const request of this._requests.values()) if (request.kind === 'close') request.done();
    this._requests.clear();
    reason ||= this.#lastError?.message || 'the gateway socket closed';
    const failure = error ?? this.#lastError ?? new GatewayError(code, reason);
    this.#lastError = undefined;
    const canRefresh = this._options.refreshToken !== undefined;
    const fatal = FATAL.has(code) || (code === CloseCode.TokenExpired && !canRefresh);
    if (this.#connected !== undefined || this._options.reconnect === false || fatal)
      return this.#finish(code, reason, failure);
    if (code === CloseCode.ResumeFailed) this.#resumeToken = undefined; // come back without resume
    this.#freshToken = code === CloseCode.TokenExpired;
    this.#setState(reached ? 'resuming' : 'offline', code);
    this._suspend();
    const drain = this.#drainMs;
    this.#drainMs = undefined;
    const options = this._options;
    const base = Math.min(
      options.maxReconnectDelay ?? 10000,
      (options.reconnectDelay ?? 250) * 2 ** Math.min(this.#attempt++, 30),
    );
    this.#reconnectIn(drain ?? base * (0.5 + Math.random() / 2));
  }

  #reconnectIn(ms: number): void {
    clearTimeout(this.#timer);
    global.addEventListener?.('online', this.#online); // browsers: try at once when back online
    this.#timer = setTimeout(() => {
      if (this.#state === 'closed' || this.#link !== undefined) return;
      if (this.#freshToken) this.#refresh(true);
      else this.#open();
    }, ms);
  }

  #finish(code: number, reason: string, error?: GlueberryError): void {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timer);
    clearTimeout(this.#attemptTimer);
    clearInterval(this.#keepalive);
    global.removeEventListener?.('online', this.#online);
    this.#link?.close(CloseCode.Normal, reason);
    this.#link = undefined;
    this.#phase = 'socket';
    this._requests.clear();
    this._endAll(code, reason || 'the client closed', error);
    this.#setState('closed', code);
    if (error !== undefined) this.emit('error', { error });
    this.emit('closed', { code, reason });
    const connected = this.#connected;
    this.#connected = undefined;
    connected?.reject(error ?? new GatewayError(code, reason));
  }
}
