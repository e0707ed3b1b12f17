/**
 * `GlueberryClient` (docs/js-client.md): the browser side of the gateway protocol `glueberry.v1`
 * (docs/gateway-protocol.md), as the Python client gateway/src/glueberry_gateway/client/core.py
 * does it. connection.ts runs the socket (auth, reconnects, drain, tokens); this file adds the
 * sessions: `open` by number, the gateway's `sign` requests answered only for libp2p Noise static
 * keys (§5.1), and the resume of §6 — recovered sessions continue (the outbox re-sends what the
 * gateway did not get), the others (and all of them after a gateway restart, whose resume token is
 * unknown) are opened again with a new handshake. Each session runs the Glueberry handshake and
 * encryption itself (session.ts), so the gateway sees ciphertext only.
 */

import { CloseCode } from './codes.js';
import {
  type DataFrame,
  MAX_NAME_CHARS,
  MAX_SESSION,
  type ResumeOutcome,
  type ServerMessage,
  isNoisePayload,
} from './codec.js';
import { Connection, DEFAULT_STREAMS, type GlueberryClientOptions } from './connection.js';
import {
  GatewayError,
  type GlueberryError,
  InvalidArgumentError,
  InvalidStateError,
  LimitExceededError,
  ProtocolError,
} from './errors.js';
import { type HandshakeFactory, helloHandshake } from './handshake.js';
import { isPeerId } from './identity.js';
import { Session, type SessionBounds, type SessionHost } from './session.js';

export type { ClientEvents, ClientState, GlueberryClientOptions } from './connection.js';

export interface OpenOptions {
  /**
   * ms until `open()` rejects with a TimeoutError (default 30000; a HandshakeTimeoutError once
   * the handshake began); it spans reconnects.
   */
  timeout?: number;
  /** This session's application handshake (default: the client's `handshake`). */
  handshake?: HandshakeFactory;
}

const DEFAULT_BOUNDS: SessionBounds = {
  outboxFrames: 1024,
  outboxBytes: 4 << 20,
  pendingSends: 1024,
  pendingBytes: 4 << 20,
  inbox: 1024,
  heldFrames: 256,
};
/** ms to wait for the gateway's `closed` after `session.close()`. */
const CLOSE_TIMEOUT = 5000;
/** `send()` resolves once the socket buffers at most this much. */
const HIGH_WATER = 1 << 20;

export class GlueberryClient extends Connection implements SessionHost {
  /** @internal */ readonly _streams: ReadonlySet<string>;
  /** @internal */ readonly _handshake: HandshakeFactory;
  /** @internal */ readonly _bounds: SessionBounds;
  readonly #sessions = new Map<number, Session>();
  /** Sessions ended here whose end the gateway has not confirmed: what still comes for them is dropped. */
  readonly #ghosts = new Set<number>();
  #nextSession = 1;

  /**
   * Open the WebSocket (subprotocol `glueberry.v1`), authenticate and resolve on `ready`.
   * Rejects with a {@link GatewayError} (`code`: e.g. 4002 auth failed, 4007 origin not allowed,
   * 1006 unreachable) when this first attempt fails; later drops are resumed (`reconnect`).
   */
  static async connect(url: string, options: GlueberryClientOptions): Promise<GlueberryClient> {
    const client = new GlueberryClient(url, options);
    await client._start();
    return client;
  }

  private constructor(url: string, options: GlueberryClientOptions) {
    super(url, options); // checks the options
    this._streams = new Set(options.streams ?? DEFAULT_STREAMS);
    this._handshake = options.handshake ?? helloHandshake(options.handshakeName);
    this._bounds = { ...DEFAULT_BOUNDS, ...options.bounds };
  }

  /** The sessions that are open or resuming. */
  get sessions(): Session[] {
    return [...this.#sessions.values()].filter((s) => s._visible);
  }

  /**
   * A session to `backend` (a name from {@link backends} or a peer ID), resolved once the
   * handshake is done. Rejects with a GatewayError (4100 unknown, 4101 not allowed, 4102
   * unavailable, …), a KeyMismatchError, or a TimeoutError. While resuming, the open waits.
   */
  async open(backend: string, options: OpenOptions = {}): Promise<Session> {
    if (this.state === 'closed') throw new InvalidStateError('client closed');
    if (typeof backend !== 'string' || !backend || backend.length > MAX_NAME_CHARS) {
      throw new InvalidArgumentError('bad backend name');
    }
    const number = this.#allocate();
    if (number === undefined) throw new LimitExceededError('too many sessions');
    const listed = this.backends.find((b) => b.name === backend || b.peerId === backend);
    const expected = listed?.peerId ?? (isPeerId(backend) ? backend : undefined);
    return new Promise((resolve, reject) => {
      const timeout = options.timeout ?? 30000;
      const session = new Session(this, number, backend, expected, timeout, resolve, reject, options.handshake);
      this.#sessions.set(number, session);
      if (this._usable()) this.#sendOpen(session);
    });
  }

  // ---- requests -----------------------------------------------------------------------------

  #allocate(): number | undefined {
    for (let i = 0; i < MAX_SESSION; i++) {
      const number = this.#nextSession;
      this.#nextSession = (number % MAX_SESSION) + 1;
      if (!this.#sessions.has(number) && !this.#ghosts.has(number)) return number;
    }
    return undefined;
  }

  #sendOpen(session: Session): void {
    try {
      this._send({
        type: 'open',
        id: this._request({ kind: 'open', session }),
        session: session.id,
        backend: session.backend,
      });
    } catch (err) {
      session._end(CloseCode.TooManySessions, 'cannot open', err as GlueberryError);
    }
  }

  /** Ask the gateway to close session `number`; `done` runs on its answer or when none can come. */
  #sendClose(number: number, done: () => void = () => undefined): void {
    try {
      this._send({ type: 'close', id: this._request({ kind: 'close', session: number, done }), session: number });
    } catch {
      done();
    }
  }

  /** The id of the `open` request of `session` that waits for its answer, if any (ids are ≥ 1). */
  #openRequest(session: Session | undefined): number | undefined {
    for (const [id, request] of this._requests) if (request.kind === 'open' && request.session === session) return id;
    return undefined;
  }

  /** Close a session the gateway has but nobody here wants. */
  #closeGhost(number: number, done?: () => void): void {
    this.#ghosts.add(number);
    this.#sendClose(number, done);
  }

  // ---- from the gateway ---------------------------------------------------------------------

  /** @internal */
  protected _control(message: ServerMessage): void {
    if (message.type === 'opened') {
      const session = this._take(message.id, 'open')?.session;
      if (
        session?.id !== message.session ||
        this.#sessions.get(session.id) !== session ||
        session._phase !== 'opening'
      ) {
        return this.#closeGhost(message.session); // given up meanwhile
      }
      const expected = session._peerId;
      if (expected !== undefined && expected !== message.peerId) {
        this.#closeGhost(session.id); // not the backend asked for
        const error = new GatewayError(CloseCode.BackendUnknown, `opened ${message.peerId}`, { session: session.id });
        return session._fail(error);
      }
      session._opened(message.peerId);
    } else if (message.type === 'sign') {
      const session = this.#sessions.get(message.session);
      // §5.1: the page's key only ever vouches for a libp2p Noise static key, of a session being opened
      const ok = this.#openRequest(session) && isNoisePayload(message.payload) && session!._maySign();
      this._send(
        ok
          ? { type: 'signature', id: message.id, signature: this._identity.sign(message.payload) }
          : { type: 'sign_refused', id: message.id },
      );
    } else if (message.type === 'closed') {
      const request = this._take(message.id, 'close');
      if (!this.#ghosts.delete(message.session) && !request) {
        this.#sessions.get(message.session)?._end(message.code, message.message);
      }
      request?.done();
    } else if (message.type !== 'stream_closed') {
      // stream_closed: the backend ended its side; a later frame opens a new stream (§5.3)
      throw new ProtocolError(`unexpected ${message.type}`);
    }
  }

  /** @internal */
  protected _sessionError(message: Extract<ServerMessage, { type: 'error' }>, error: GatewayError): boolean {
    const request = this._take(message.id, 'open', 'close');
    if (request?.kind === 'close') request.done();
    else if (request && this.#sessions.get(request.session.id) === request.session) request.session._fail(error);
    if (request) return true;
    if (message.session === undefined || message.code < 4100) return false;
    if (!this.#ghosts.delete(message.session)) this.#sessions.get(message.session)?._error(error);
    return true;
  }

  /** @internal */
  protected _frame(frame: DataFrame): void {
    this.#sessions.get(frame.session)?._data(frame.stream, frame.payload);
  }

  // ---- resume -------------------------------------------------------------------------------

  /** @internal */
  protected _resumeCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const session of this.#sessions.values()) {
      if (session._attached) counts[session.id] = session._received;
    }
    return counts;
  }

  /** @internal §6: continue the recovered sessions, open the others again. */
  protected _reattach(resumed: Map<number, ResumeOutcome> | undefined): void {
    for (const session of [...this.#sessions.values()]) {
      if (session._attached) {
        const outcome = resumed?.get(session.id);
        if (outcome?.recovered && session._recover(outcome.received)) continue;
        if (outcome?.recovered) this.#sendClose(session.id); // its missing frames are gone: start over
        session._reset();
      }
      this.#sendOpen(session);
    }
    for (const [number, outcome] of resumed ?? [])
      if (outcome.recovered && !this.#sessions.has(number)) this.#closeGhost(number);
  }

  /** @internal */
  protected _suspend(): void {
    this.#ghosts.clear(); // on a new socket the gateway ends what is not resumed
    for (const session of this.#sessions.values()) session._suspend();
  }

  /** @internal */
  protected _endAll(code: number, reason: string, error?: GlueberryError): void {
    for (const session of [...this.#sessions.values()]) session._end(code, reason, error);
  }

  // ---- session host -------------------------------------------------------------------------

  /** @internal */
  _drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this._usable() || this._bufferedAmount() <= HIGH_WATER) resolve();
        else setTimeout(check, 20);
      };
      check();
    });
  }

  /** @internal */
  async _requestClose(session: Session): Promise<void> {
    if (this._usable() && session._attached) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_TIMEOUT);
        // whatever comes for it now is not for the session
        this.#closeGhost(session.id, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** @internal */
  _ended(session: Session, atGateway: boolean): void {
    if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
    if (!atGateway || !this._usable()) return;
    const id = this.#openRequest(session);
    if (id) {
      this._requests.delete(id); // its opened or error is then for a ghost
      this.#ghosts.add(session.id);
    }
    if (session._attached && !this.#ghosts.has(session.id)) this.#closeGhost(session.id);
  }
}
