/**
 * A scripted fake gateway for GlueberryClient tests.
 *
 * What it fakes: the WebSocket class, injected through the client's `WebSocket` option
 * (`gateway.WebSocket`). Each socket the client constructs is a {@link FakeSocket} registered with
 * its {@link FakeGateway}; nothing touches the network. The test plays the gateway's side:
 *
 *   const socket = await gateway.accept();            // next socket the client made, opened
 *   socket.sendJson({ type: 'challenge', ... });      // gateway → client (delivered as a task)
 *   const auth = await socket.nextControl('auth');    // client → gateway, parsed and checked with
 *                                                     // the gateway's own rules (decodeClientMessage)
 *   const frame = await socket.nextData();            // a binary data frame from the client
 *   socket.drop(1006);                                // the connection is lost
 *
 * Higher-level steps: {@link FakeGateway.authenticate} (challenge → auth, whose signature it
 * verifies over the auth message it builds itself → ready), {@link FakeGateway.openSession} (open →
 * sign with a real Noise payload → opened → the Hello/PubKey/Complete handshake run by a
 * {@link FakeBackend}, a real `HelloHandshake` responder with its own key and stream cipher).
 * The client side: {@link connectClient} (test defaults, closed by {@link closeClients}) and
 * {@link openChat} (a connected client with one open session).
 *
 * To extend it, script new server messages with `socket.sendJson(...)` in the test, or add a
 * helper here that combines them; keep each helper asserting what a real gateway would check.
 */

import assert from 'node:assert/strict';
import { concatBytes, utf8Encode } from '../src/bytes.js';
import { GlueberryClient, type GlueberryClientOptions } from '../src/client.js';
import {
  type ClientMessage,
  type DataFrame,
  SUBPROTOCOL,
  b64urlEncode,
  decodeClientMessage,
  decodeDataFrame,
  encodeDataFrame,
} from '../src/codec.js';
import type { StreamCipher } from '../src/crypto.js';
import { HelloHandshake } from '../src/handshake.js';
import { Identity, peerIdFromPublicKey, publicKeyFromPeerId, verifySignature } from '../src/identity.js';
import type { Session } from '../src/session.js';
import type { WebSocketConstructor } from '../src/transport.js';

export const ORIGIN = 'http://app.test';

type Sent = string | Uint8Array;
type Handler<T> = ((event: T) => void) | null;

/** Resolve the next item pushed, in order. */
class Queue<T> {
  readonly #items: T[] = [];
  readonly #waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  next(timeoutMs = 2000, what = 'message'): Promise<T> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (value: T): void => {
        clearTimeout(timer);
        resolve(value);
      };
      this.#waiters.push(waiter);
    });
  }

  get length(): number {
    return this.#items.length;
  }
}

/** `02 ‖ (u16 BE length ‖ frame)+`: the gateway's batch message (§5.6). */
export function encodeBatch(frames: Uint8Array[]): Uint8Array {
  const parts = frames.map((f) => concatBytes(Uint8Array.of(f.length >> 8, f.length & 0xff), f));
  return concatBytes(Uint8Array.of(0x02), ...parts);
}

/** Run `fn` as a later task, as a browser dispatches WebSocket events. */
const later = (fn: () => void): void => void setTimeout(fn, 0);

export class FakeSocket {
  binaryType = 'blob';
  protocol = '';
  bufferedAmount = 0;
  readyState = 0;
  onopen: Handler<void> = null;
  onmessage: Handler<{ data: unknown }> = null;
  onclose: Handler<{ code: number; reason: string }> = null;
  onerror: Handler<void> = null;
  /** How the client closed it, once it did. */
  closedBy: { code: number; reason: string } | undefined;
  readonly sent = new Queue<Sent>();
  readonly #closed = new Queue<{ code: number; reason: string }>();

  constructor(
    readonly url: string,
    readonly protocols: string[],
    readonly options: { origin?: string } | undefined,
  ) {}

  // ---- the WebSocket API the client uses ----

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) return; // a closing socket drops what is sent, as browsers do
    this.sent.push(typeof data === 'string' ? data : data.slice());
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.closedBy = { code: code ?? 1005, reason: reason ?? '' };
    this.#closed.push(this.closedBy);
    later(() => {
      this.readyState = 3;
      this.onclose?.({ code: code ?? 1005, reason: reason ?? '' });
    });
  }

  // ---- the gateway's side ----

  /** Complete the upgrade with `protocol` (the subprotocol the gateway picked). */
  accept(protocol = SUBPROTOCOL): this {
    this.readyState = 1;
    this.protocol = protocol;
    later(() => this.onopen?.());
    return this;
  }

  /** The upgrade failed (unreachable, HTTP 403, ...): error, then close 1006. */
  refuse(): void {
    this.readyState = 3;
    later(() => {
      this.onerror?.();
      this.onclose?.({ code: 1006, reason: '' });
    });
  }

  sendJson(message: object | string): void {
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    later(() => this.readyState === 1 && this.onmessage?.({ data: text }));
  }

  sendBinary(data: Uint8Array): void {
    const copy = data.slice().buffer;
    later(() => this.readyState === 1 && this.onmessage?.({ data: copy }));
  }

  sendData(session: number, stream: string, payload: Uint8Array): void {
    this.sendBinary(encodeDataFrame(session, stream, payload));
  }

  /** Several data frames in one batch message (§5.6). */
  sendBatch(frames: Uint8Array[]): void {
    this.sendBinary(encodeBatch(frames));
  }

  /** The gateway closes the socket (or the connection is lost: 1006). */
  drop(code = 1006, reason = ''): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    later(() => this.onclose?.({ code, reason }));
  }

  /** The next thing the client sent, raw. */
  next(timeoutMs?: number): Promise<Sent> {
    return this.sent.next(timeoutMs, 'message from the client');
  }

  /** The next control message, checked as the gateway checks it; `type` asserted when given. */
  async nextControl<T extends ClientMessage['type']>(
    type?: T,
    timeoutMs?: number,
  ): Promise<Extract<ClientMessage, { type: T }>> {
    const sent = await this.next(timeoutMs);
    assert.equal(typeof sent, 'string', 'expected a text (control) message, got a binary frame');
    const message = decodeClientMessage(sent as string);
    if (type !== undefined) assert.equal(message.type, type, `expected ${type}, got ${sent as string}`);
    return message as Extract<ClientMessage, { type: T }>;
  }

  /** The next binary data frame. */
  async nextData(timeoutMs?: number): Promise<DataFrame> {
    const sent = await this.next(timeoutMs);
    assert.ok(sent instanceof Uint8Array, `expected a data frame, got ${String(sent)}`);
    return decodeDataFrame(sent, 1 << 21);
  }

  /** Resolves when the client closes the socket. */
  whenClosed(timeoutMs?: number): Promise<{ code: number; reason: string }> {
    return this.#closed.next(timeoutMs, 'close by the client');
  }
}

/** A backend peer: a real HelloHandshake responder with its own identity and stream cipher. */
export class FakeBackend {
  readonly identity: Identity;
  cipher: StreamCipher | undefined;

  constructor(
    readonly name = 'chat',
    identity = Identity.generate(),
  ) {
    this.identity = identity;
  }

  get peerId(): string {
    return this.identity.peerId;
  }

  /**
   * Answer the client's Hello and PubKey on `session` (Hello, PubKey, then Complete) and take its
   * Complete. `sendAs` may replace the PubKey this backend sends (to test a key mismatch).
   */
  async handshake(socket: FakeSocket, session: number, clientPeerId: string, sendAs?: Identity): Promise<void> {
    const responder = new HelloHandshake({
      identity: this.identity,
      expectedPeerId: clientPeerId,
      name: `${this.name}-backend`,
      initiator: false,
    });
    for (let i = 0; i < 3; i++) {
      const frame = await socket.nextData();
      assert.deepEqual([frame.session, frame.stream], [session, 'handshake']);
      for (const action of responder.receive(frame.payload)) {
        if (action.type === 'prepare') this.cipher = this.identity.streamCipher(action.publicKey);
        if (action.type !== 'send') continue;
        let reply = action.data;
        if (sendAs !== undefined && reply[0] === 0x02) reply = Uint8Array.of(0x02, ...sendAs.publicKey);
        socket.sendData(session, 'handshake', reply);
      }
      if (sendAs !== undefined && i === 1) return; // the client gives up after the bad PubKey
    }
    assert.equal(responder.state, 'established');
  }

  /** Encrypt and send `text` to the client on `stream`. */
  send(socket: FakeSocket, session: number, stream: string, text: string | Uint8Array): void {
    socket.sendData(session, stream, this.cipher!.encrypt(typeof text === 'string' ? utf8Encode(text) : text));
  }

  /** Encrypt each of `texts` and send them to the client on `stream` in one batch message. */
  sendBatch(socket: FakeSocket, session: number, stream: string, texts: string[]): void {
    socket.sendBatch(texts.map((t) => encodeDataFrame(session, stream, this.cipher!.encrypt(utf8Encode(t)))));
  }

  /** Decrypt the next data frame from the client (asserting session and stream). */
  async receive(socket: FakeSocket, session: number, stream = 'chat'): Promise<string> {
    const frame = await socket.nextData();
    assert.deepEqual([frame.session, frame.stream], [session, stream]);
    return new TextDecoder().decode(this.cipher!.decrypt(frame.payload));
  }
}

export interface ReadyOptions {
  backends?: FakeBackend[];
  /** `ready.resumed`, as sent. */
  resumed?: Record<string, { recovered: boolean; received?: number }>;
  resumeToken?: Uint8Array;
  limits?: Record<string, number>;
}

export class FakeGateway {
  readonly identity = Identity.generate();
  readonly sockets: FakeSocket[] = [];
  readonly #new = new Queue<FakeSocket>();
  readonly WebSocket: WebSocketConstructor;
  backends: FakeBackend[];
  origin = ORIGIN;

  constructor(...backends: FakeBackend[]) {
    this.backends = backends;
    const gateway = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string, protocols: string[], options?: { origin?: string }) {
        super(url, protocols, options);
        gateway.sockets.push(this);
        gateway.#new.push(this);
      }
    };
  }

  get peerId(): string {
    return this.identity.peerId;
  }

  /** The next socket the client opens (not accepted yet). */
  nextSocket(timeoutMs = 2000): Promise<FakeSocket> {
    return this.#new.next(timeoutMs, 'new socket');
  }

  /** The next socket, with the upgrade accepted. */
  async accept(timeoutMs?: number): Promise<FakeSocket> {
    const socket = await this.nextSocket(timeoutMs);
    assert.deepEqual(socket.protocols, [SUBPROTOCOL]);
    return socket.accept();
  }

  /**
   * Challenge → auth → ready. Verifies the signature over the auth message built here from its
   * definition (label, u8-prefixed gateway peer ID and origin, nonce). Returns the auth message.
   */
  async authenticate(
    socket: FakeSocket,
    options: ReadyOptions = {},
  ): Promise<Extract<ClientMessage, { type: 'auth' }>> {
    const auth = await this.challenge(socket);
    this.ready(socket, auth, options);
    return auth;
  }

  /** Challenge → auth, whose signature is verified; no answer yet. */
  async challenge(socket: FakeSocket): Promise<Extract<ClientMessage, { type: 'auth' }>> {
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    socket.sendJson({
      type: 'challenge',
      version: 1,
      nonce: b64urlEncode(nonce),
      gateway: this.peerId,
      expires_in: 10,
    });
    const auth = await socket.nextControl('auth');
    const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
    const signed = Uint8Array.from([
      ...ascii('glueberry-gateway-auth-v1'),
      0,
      this.peerId.length,
      ...ascii(this.peerId),
      this.origin.length,
      ...ascii(this.origin),
      ...nonce,
    ]);
    assert.ok(verifySignature(auth.public_key, auth.signature, signed), 'the auth signature must verify');
    return auth;
  }

  /** Answer `auth` with `ready`. */
  ready(socket: FakeSocket, auth: Extract<ClientMessage, { type: 'auth' }>, options: ReadyOptions = {}): void {
    const backends = options.backends ?? this.backends;
    socket.sendJson({
      type: 'ready',
      peer_id: peerIdFromPublicKey(auth.public_key),
      resume_token: b64urlEncode(options.resumeToken ?? crypto.getRandomValues(new Uint8Array(24))),
      resume_grace: 30,
      backends: backends.map((b) => ({ name: b.name, peer_id: b.peerId })),
      limits: {
        max_sessions: 16,
        max_streams: 16,
        max_frame_bytes: (1 << 20) + 96,
        max_control_bytes: 16384,
        ...options.limits,
      },
      ...(options.resumed ? { resumed: options.resumed } : {}),
    });
  }

  /** A new socket, accepted and authenticated. */
  async connect(options: ReadyOptions = {}): Promise<FakeSocket> {
    const socket = await this.accept();
    await this.authenticate(socket, options);
    return socket;
  }

  /**
   * Serve the client's `open` for `backend`: sign (a real Noise payload, the signature checked),
   * opened, then the backend's handshake. Returns the session number.
   */
  async openSession(
    socket: FakeSocket,
    backend: FakeBackend,
    clientPeerId: string,
    sendAs?: Identity,
  ): Promise<number> {
    const session = await this.acceptOpen(socket, backend, clientPeerId);
    await backend.handshake(socket, session, clientPeerId, sendAs);
    return session;
  }

  /** {@link openSession} without the handshake: sign, then `opened`. Returns the session number. */
  async acceptOpen(socket: FakeSocket, backend: FakeBackend, clientPeerId: string): Promise<number> {
    const open = await socket.nextControl('open');
    const payload = Uint8Array.from([
      ...utf8Encode('noise-libp2p-static-key:'),
      ...crypto.getRandomValues(new Uint8Array(32)),
    ]);
    socket.sendJson({ type: 'sign', id: 900001, session: open.session, payload: b64urlEncode(payload) });
    const signature = await socket.nextControl('signature');
    assert.equal(signature.id, 900001);
    assert.ok(
      verifySignature(publicKeyFromPeerId(clientPeerId), signature.signature, payload),
      'the Noise signature must verify',
    );
    socket.sendJson({
      type: 'opened',
      id: open.id,
      session: open.session,
      backend: backend.name,
      peer_id: backend.peerId,
    });
    return open.session;
  }
}

const clients: GlueberryClient[] = [];

/**
 * `GlueberryClient.connect` through `gateway` with test defaults (no pings, reconnects after
 * 5–20 ms); the test serves the socket. {@link closeClients} closes the client.
 */
export async function connectClient(
  gateway: FakeGateway,
  options: Partial<GlueberryClientOptions> = {},
): Promise<GlueberryClient> {
  const client = await GlueberryClient.connect('ws://gw.test/ws', {
    identity: Identity.generate(),
    WebSocket: gateway.WebSocket,
    origin: ORIGIN,
    pingInterval: 0,
    reconnectDelay: 5,
    maxReconnectDelay: 20,
    ...options,
  });
  clients.push(client);
  return client;
}

/** Close every client {@link connectClient} made (run it after each test). */
export function closeClients(): void {
  for (const client of clients.splice(0)) client.close();
}

export interface OpenChat {
  backend: FakeBackend;
  gateway: FakeGateway;
  client: GlueberryClient;
  socket: FakeSocket;
  session: Session;
}

/** A client connected through a new gateway (answered with `ready`) and its open session 1 to backend `chat`. */
export async function openChat(
  options: Partial<GlueberryClientOptions> = {},
  ready: ReadyOptions = {},
): Promise<OpenChat> {
  const backend = new FakeBackend('chat');
  const gateway = new FakeGateway(backend);
  const connecting = connectClient(gateway, options);
  const socket = await gateway.connect(ready);
  const client = await connecting;
  const opening = client.open('chat');
  await gateway.openSession(socket, backend, client.peerId);
  return { backend, gateway, client, socket, session: await opening };
}
