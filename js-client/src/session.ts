/**
 * One end-to-end encrypted session to a backend through the gateway (docs/js-client.md).
 *
 * A {@link Session} is made by `GlueberryClient.open()`, which resolves once the application
 * handshake (a {@link Handshake}; Hello / PubKey / Complete by default) is done on the session's
 * `handshake` stream: the backend's key was checked against the peer ID the gateway reported in
 * `opened` ({@link KeyMismatchError} otherwise) and the stream key derived. Named-stream payloads are `nonce ‖ ciphertext ‖ tag` (PROTOCOL.md §8);
 * the gateway only relays them.
 *
 * Resume bookkeeping (gateway-protocol.md §6): the session counts the data frames it received and
 * sent since the gateway opened it and keeps the newest sent frames in a bounded outbox, so a
 * resumed socket re-sends exactly what the gateway did not get. Sends made while the socket is
 * resuming wait in a bounded queue and go out in order once the session is usable again.
 */

import { utf8Encode } from './bytes.js';
import { CloseCode } from './codes.js';
import { type GatewayLimits, HANDSHAKE_STREAM, encodeDataFrame, isStreamName } from './codec.js';
import { MAX_MESSAGE_SIZE, type StreamCipher } from './crypto.js';
import {
  GatewayError,
  GlueberryError,
  HandshakeError,
  HandshakeTimeoutError,
  InvalidArgumentError,
  InvalidStateError,
  KeyMismatchError,
  LimitExceededError,
  TimeoutError,
} from './errors.js';
import { Emitter, type Listener } from './events.js';
import { Inbox } from './inbox.js';
import type { Handshake, HandshakeAction, HandshakeFactory } from './handshake.js';
import { type Identity, fingerprint, peerIdFromPublicKey } from './identity.js';

export type SessionState = 'open' | 'resuming' | 'closed';

/** A decrypted message; `text` is its UTF-8 decoding (malformed bytes become U+FFFD). */
export interface SessionMessage {
  readonly stream: string;
  readonly data: Uint8Array;
  readonly text: string;
}

export interface SessionEvents {
  message: SessionMessage;
  /** `reopened: true` when the session had to be opened again (new handshake) after a resume failed. */
  state: { state: SessionState; reopened?: boolean };
  error: { error: GlueberryError };
  closed: { code: number; reason: string };
}

/** Bounds of one session's queues. */
export interface SessionBounds {
  /** Sent frames kept for a resume: at most this many ... */
  outboxFrames: number;
  /** ... and this many bytes (the newest frame is always kept). */
  outboxBytes: number;
  /** Sends waiting while resuming: at most this many ... */
  pendingSends: number;
  /** ... and this many bytes of plaintext. */
  pendingBytes: number;
  /** Messages held for async iteration (or until the first `message` listener). */
  inbox: number;
  /** Encrypted frames held before the stream key is known. */
  heldFrames: number;
}

/** @internal What a session needs from its client (GlueberryClient's internal members). */
export interface SessionHost {
  readonly _identity: Identity;
  readonly _streams: ReadonlySet<string>;
  readonly _handshake: HandshakeFactory;
  readonly _bounds: SessionBounds;
  /** `maxFrameBytes`: the largest data frame the gateway takes. */
  readonly _limits: GatewayLimits;
  /** The socket is authenticated (and not draining): frames can go out. */
  _usable(): boolean;
  _send(frame: Uint8Array): void;
  /** Resolves once the socket's send buffer is low again (back-pressure for `send`). */
  _drained(): Promise<void>;
  /** Ask the gateway to close the session (§5.4); resolves on its answer or when it cannot come. */
  _requestClose(session: Session): Promise<void>;
  /** The session is over: forget it; with `atGateway`, make sure the gateway closes it too. */
  _ended(session: Session, atGateway: boolean): void;
}

type Phase = 'opening' | 'handshaking' | 'open' | 'closed';

interface PendingSend {
  stream: string;
  data: Uint8Array;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface OpenWaiter {
  resolve: (session: Session) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const lenientUtf8 = new TextDecoder();
const MAX_SIGNATURES_PER_OPEN = 4;

function message(stream: string, data: Uint8Array): SessionMessage {
  return {
    stream,
    data,
    get text() {
      return lenientUtf8.decode(data);
    },
  };
}

export class Session extends Emitter<SessionEvents> implements AsyncIterable<SessionMessage> {
  /** The session number on the gateway socket (kept across resumes and reopens). */
  readonly id: number;
  /** The backend name or peer ID it was opened with. */
  readonly backend: string;
  readonly #host: SessionHost;
  /**
   * @internal The backend's peer ID: the one `opened` must name (the listed backend's, or the one
   * of a first open), then the one it named.
   */
  _peerId: string | undefined;
  /** What the handshake told of the backend (`info` actions, merged). */
  #info: Record<string, unknown> = {};
  #state: SessionState = 'resuming';
  /** @internal */
  _phase: Phase = 'opening';
  /** @internal The gateway holds this session (opened, not known to be closed). */
  _attached = false;
  readonly #factory: HandshakeFactory;
  #handshake: Handshake | undefined;
  #cipher: StreamCipher | undefined;
  /** The streams that are encrypted: the client's, or those the handshake prepared. */
  #streams: ReadonlySet<string>;
  /** @internal The resume count (§6): data frames received since the gateway opened the session. */
  _received = 0;
  #sent = 0;
  #outbox: Uint8Array[] = [];
  #outboxBytes = 0;
  #held: [string, Uint8Array][] = [];
  #pending: PendingSend[] = [];
  #pendingBytes = 0;
  readonly #inbox: Inbox<SessionMessage>;
  #signatures = 0;
  #open: OpenWaiter | undefined;
  #closing: Promise<void> | undefined;

  /** @internal Made by `GlueberryClient.open()`. */
  constructor(
    host: SessionHost,
    id: number,
    backend: string,
    expectedPeer: string | undefined,
    timeoutMs: number,
    resolve: (session: Session) => void,
    reject: (error: Error) => void,
    handshake?: HandshakeFactory,
  ) {
    super();
    this.#factory = handshake ?? host._handshake;
    this.#host = host;
    this.id = id;
    this.backend = backend;
    this._peerId = expectedPeer;
    this.#streams = host._streams;
    const timer = setTimeout(
      () =>
        this._fail(
          this._phase === 'handshaking' ? new HandshakeTimeoutError('handshake timed out') : new TimeoutError('open timed out'),
        ),
      timeoutMs,
    );
    this.#open = { resolve, reject, timer };
    this.#inbox = new Inbox(host._bounds.inbox);
  }

  /** The backend's peer ID (as the gateway reported it and the handshake proved). */
  get peerId(): string {
    return this._peerId ?? '';
  }

  /** The backend's fingerprint, for people to compare (`XXXX-XXXX-XXXX-XXXX`). */
  get fingerprint(): string {
    return fingerprint(this.peerId);
  }

  /** What the handshake told of the backend (its `info` actions, merged): e.g. `name`, a version. */
  get handshakeInfo(): Readonly<Record<string, unknown>> {
    return this.#info;
  }

  /** The backend's name from the handshake (`handshakeInfo.name`: Hello's name by default). */
  get peerName(): string | undefined {
    const { name } = this.#info;
    return typeof name === 'string' ? name : undefined;
  }

  get state(): SessionState {
    return this.#state;
  }

  /**
   * Encrypt `data` (a string is sent as UTF-8) and send it on `stream`, one of the client's
   * `streams`. Resolves once handed to the socket; while the socket is resuming the send waits
   * in a bounded queue ({@link LimitExceededError} when full) and goes out in order after.
   */
  async send(stream: string, data: Uint8Array | string): Promise<void> {
    if (this._phase === 'closed') throw new InvalidStateError('session closed');
    const bytes = typeof data === 'string' ? utf8Encode(data) : data;
    if (!this.#streams.has(stream) || !(bytes instanceof Uint8Array) || bytes.length > MAX_MESSAGE_SIZE) {
      // a stream not in options.streams, or not a string or Uint8Array of at most 1 MiB
      throw new InvalidArgumentError('bad stream or data');
    }
    if (this.#sendable() && !this.#pending.length) {
      this.#sendFrame(stream, this.#cipher!.encrypt(bytes));
      return this.#host._drained();
    }
    const bounds = this.#host._bounds;
    if (this.#pending.length >= bounds.pendingSends || this.#pendingBytes + bytes.length > bounds.pendingBytes) {
      throw new LimitExceededError('too many sends waiting');
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ stream, data: bytes.slice(), resolve, reject }); // a copy: the caller may reuse its array
      this.#pendingBytes += bytes.length;
    });
  }

  /** Close the session (the gateway closes the backend connection); idempotent. */
  async close(): Promise<void> {
    if (this._phase !== 'closed') {
      await (this.#closing ??= this.#host._requestClose(this).then(() => this._end(CloseCode.Normal, 'closed')));
    }
  }

  /** Messages until the session closes (several iterators share them). */
  [Symbol.asyncIterator](): AsyncIterator<SessionMessage> {
    return this.#inbox._iterator();
  }

  /** As {@link Emitter.on}; a first `message` listener also gets the messages held so far. */
  override on<K extends keyof SessionEvents>(name: K, listener: Listener<SessionEvents[K]>): () => void {
    const off = super.on(name, listener);
    if (name === 'message' && !this.#inbox._iterators && this.#inbox._length) {
      queueMicrotask(() => {
        if (this.#inbox._iterators === 0) for (const item of this.#inbox._take()) this.emit('message', item);
      });
    }
    return off;
  }

  // ---- client side (internal) ---------------------------------------------------------------

  /** @internal Listed in `client.sessions`: `open()` resolved and not closed. */
  get _visible(): boolean {
    return this.#open === undefined && this._phase !== 'closed';
  }

  /** @internal An `error` notice about this session that leaves it open (e.g. 4105). */
  _error(error: GlueberryError): void {
    this.emit('error', { error });
  }

  /** @internal A `sign` request for this session may be answered (while opening, a few times). */
  _maySign(): boolean {
    return this._phase === 'opening' && ++this.#signatures <= MAX_SIGNATURES_PER_OPEN;
  }

  /** @internal `opened`: the counts start at 0 and the handshake begins (initiator). */
  _opened(peerId: string): void {
    // the counts and the outbox are empty: new, or after _reset()
    this._phase = 'handshaking';
    this._attached = true;
    this._peerId = peerId;
    const host = this.#host;
    this.#act(() => {
      const context = { identity: host._identity, peerId, backend: this.backend, streams: [...host._streams] };
      return (this.#handshake = this.#factory(context)).start();
    });
  }

  /** @internal A data frame for this session. */
  _data(stream: string, payload: Uint8Array): void {
    if (!this._attached) return; // a late frame of an incarnation already given up
    this._received++;
    if (stream === HANDSHAKE_STREAM) this.#act(() => this.#handshake!.receive(payload));
    else if (!this.#cipher) {
      // before the key: kept (bounded) until the handshake says which streams it prepared
      if (this.#held.length < this.#host._bounds.heldFrames) this.#held.push([stream, payload]);
    } else if (this.#streams.has(stream)) this.#decrypt(stream, payload);
    // else: a stream not prepared: dropped, as Go drops it
  }

  /** @internal The socket is gone; the session waits for a resume. */
  _suspend(): void {
    this.#signatures = 0;
    if (this._visible) this.#setState('resuming'); // not before open() resolved
  }

  /**
   * @internal `resumed: {recovered: true, received}`: drop what the gateway confirmed, re-send the
   * rest. False when that is impossible (the frames fell out of the outbox, or the count is wrong).
   */
  _recover(received: number): boolean {
    const base = this.#sent - this.#outbox.length;
    if (received > this.#sent || received < base) return false;
    for (const frame of this.#outbox.splice(0, received - base)) this.#outboxBytes -= frame.length;
    for (const frame of this.#outbox) this.#host._send(frame);
    if (this._phase === 'open') {
      this.#setState('open');
      this.#flush();
    }
    return true;
  }

  /** @internal Not recovered: back to the start (a new `open` and handshake follow). */
  _reset(): void {
    this._phase = 'opening';
    this._attached = false;
    this.#handshake = undefined;
    this.#cipher?.close();
    this.#cipher = undefined;
    this.#streams = this.#host._streams;
    this.#held = [];
    this.#outbox = [];
    this._received = this.#sent = this.#outboxBytes = this.#signatures = 0;
  }

  /**
   * @internal The session is over. `error` rejects a pending `open()` and waiting sends (a
   * {@link GatewayError} with `code` otherwise); `atGateway`: the gateway may still hold it.
   */
  _end(code: number, reason: string, error?: GlueberryError, atGateway = false): void {
    if (this._phase === 'closed') return;
    this.#host._ended(this, atGateway);
    this._reset();
    this._phase = 'closed';
    const failure = error ?? new GatewayError(code, reason, { session: this.id });
    for (const item of this.#pending.splice(0)) item.reject(failure);
    this.#pendingBytes = 0;
    const open = this.#takeOpen();
    if (open) open.reject(failure);
    else {
      this.#setState('closed');
      if (error !== undefined) this.emit('error', { error });
      this.emit('closed', { code, reason });
    }
    this.#inbox._end();
  }

  // ---- internals -----------------------------------------------------------------------------

  /** The pending `open()`, taken for the caller to settle (its timer stopped); none after the first. */
  #takeOpen(): OpenWaiter | undefined {
    const open = this.#open;
    this.#open = undefined;
    clearTimeout(open?.timer);
    return open;
  }

  /** @internal End the session with `error` (its code, if a GatewayError), at the gateway too. */
  _fail(error: GlueberryError): void {
    this._end(error instanceof GatewayError ? error.code : CloseCode.Normal, error.message, error, true);
  }

  #sendable(): boolean {
    return this._phase === 'open' && this.#state === 'open' && this.#host._usable();
  }

  #setState(state: SessionState, reopened = false): void {
    if (state === this.#state && !reopened) return;
    this.#state = state;
    this.emit('state', reopened ? { state, reopened } : { state });
  }

  #sendFrame(stream: string, payload: Uint8Array): void {
    const frame = encodeDataFrame(this.id, stream, payload);
    const max = this.#host._limits.maxFrameBytes;
    if (frame.length > max)
      throw new InvalidArgumentError('frame too big for the gateway');
    const bounds = this.#host._bounds;
    this.#sent++;
    this.#outbox.push(frame);
    this.#outboxBytes += frame.length;
    while (
      this.#outbox.length > bounds.outboxFrames ||
      (this.#outboxBytes > bounds.outboxBytes && this.#outbox.length > 1)
    ) {
      this.#outboxBytes -= this.#outbox.shift()!.length;
    }
    this.#host._send(frame);
  }

  /** Run a handshake call and carry out its actions in order; an error fails the session. */
  #act(call: () => HandshakeAction[]): void {
    try {
      for (const action of call()) {
        if (action.type === 'send') this.#sendFrame(HANDSHAKE_STREAM, action.data);
        else if (action.type === 'prepare') this.#prepare(action.publicKey, action.streams);
        else if (action.type === 'info') Object.assign(this.#info, action.info);
        else if (!this.#cipher) throw new HandshakeError('handshake complete before prepare');
        else this.#established();
      }
    } catch (err) {
      // HandshakeError, KeyMismatchError, InvalidKeyError, or the application handshake's own
      this._fail(err instanceof GlueberryError ? err : new HandshakeError(String(err), { cause: err }));
      return;
    }
    if (this.#cipher) {
      for (const [stream, held] of this.#held.splice(0)) if (this.#streams.has(stream)) this.#decrypt(stream, held);
    }
  }

  /** The backend's key (Go's PrepareStreams): it must be the key of its peer ID. */
  #prepare(publicKey: Uint8Array, streams?: readonly string[]): void {
    const peerId = peerIdFromPublicKey(publicKey); // InvalidKeyError: not 32 bytes
    if (peerId !== this._peerId) throw new KeyMismatchError(`key of ${peerId}, expected ${this._peerId}`);
    if (this.#cipher) return; // prepared already, with this same key
    if (streams && !streams.every((s) => isStreamName(s) && s !== HANDSHAKE_STREAM)) {
      throw new HandshakeError('bad stream names to prepare');
    }
    this.#cipher = this.#host._identity.streamCipher(publicKey); // InvalidKeyError: low-order
    if (streams) this.#streams = new Set(streams);
  }

  #decrypt(stream: string, payload: Uint8Array): void {
    let data: Uint8Array;
    try {
      data = this.#cipher!.decrypt(payload);
    } catch (err) {
      this.emit('error', { error: err as GlueberryError }); // DecryptionError: dropped, as Go does
      return;
    }
    if (this._phase === 'handshaking') this.#established(); // the first valid frame: established (Go's rule)
    this.#deliver(message(stream, data));
  }

  #established(): void {
    if (this._phase !== 'handshaking') return;
    this._phase = 'open';
    const open = this.#takeOpen();
    if (open) {
      this.#state = 'open';
      open.resolve(this);
    } else this.#setState('open', true);
    this.#flush();
  }

  #flush(): void {
    while (this.#pending.length && this.#sendable()) {
      const item = this.#pending.shift()!;
      this.#pendingBytes -= item.data.length;
      try {
        this.#sendFrame(item.stream, this.#cipher!.encrypt(item.data));
        item.resolve();
      } catch (err) {
        item.reject(err as Error);
      }
    }
  }

  #deliver(item: SessionMessage): void {
    const listening = this.listenerCount('message') > 0;
    if ((this.#inbox._iterators > 0 || !listening) && !this.#inbox._push(item)) {
      const error = new LimitExceededError('inbox full: oldest message dropped');
      this.emit('error', { error });
    }
    if (listening) this.emit('message', item);
  }
}
