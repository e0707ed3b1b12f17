// GlueberryClient and Session against the scripted fake gateway (test/fake-gateway.ts): auth,
// signing, open + handshake, encrypted messages, errors and codes, token refresh, closing.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { GlueberryClient, type GlueberryClientOptions } from '../src/client.js';
import { CloseCode } from '../src/codes.js';
import { b64urlEncode } from '../src/codec.js';
import {
  DecryptionError,
  GatewayError,
  InvalidArgumentError,
  InvalidStateError,
  KeyMismatchError,
  LimitExceededError,
  ProtocolError,
  TimeoutError,
} from '../src/errors.js';
import { Identity, fingerprint } from '../src/identity.js';
import type { WebSocketConstructor } from '../src/transport.js';
import type { SessionMessage } from '../src/session.js';
import {
  FakeBackend,
  FakeGateway,
  type FakeSocket,
  ORIGIN,
  closeClients,
  connectClient,
  openChat,
} from './fake-gateway.js';

afterEach(closeClients);

async function connected(
  gateway: FakeGateway,
  options: Partial<GlueberryClientOptions> = {},
): Promise<{ client: GlueberryClient; socket: FakeSocket }> {
  const pending = connectClient(gateway, options);
  const socket = await gateway.connect();
  return { client: await pending, socket };
}

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('GlueberryClient: connect and auth (§3)', () => {
  it('signs the domain-separated auth message and resolves on ready', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const identity = Identity.generate();
    const states: string[] = [];
    const pending = connectClient(gateway, { identity, token: 'jwt.token.here' });
    const socket = await gateway.accept();
    assert.equal(socket.options?.origin, ORIGIN); // the Origin header `ws` will send
    const auth = await gateway.authenticate(socket); // verifies the signature over the auth message
    assert.deepEqual(auth.public_key, identity.publicKey);
    assert.equal(auth.token, 'jwt.token.here');
    assert.equal(auth.resume, undefined);
    assert.equal(auth.batch, true); // it takes batch messages (§5.6)
    const client = await pending;
    client.on('state', ({ state }) => states.push(state));
    assert.equal(client.state, 'connected');
    assert.equal(client.peerId, identity.peerId);
    assert.equal(client.fingerprint, fingerprint(identity.peerId));
    assert.equal(client.gatewayPeerId, gateway.peerId);
    assert.deepEqual(client.backends, [{ name: 'chat', peerId: backend.peerId }]);
    assert.deepEqual(client.sessions, []);
    client.close();
    assert.equal(client.state, 'closed');
    assert.deepEqual(states, ['closed']);
    assert.deepEqual(await socket.whenClosed(), { code: 1000, reason: 'client closed' });
  });

  it('rejects with the gateway code when auth fails (error, then close)', async () => {
    const gateway = new FakeGateway();
    const pending = connectClient(gateway);
    const socket = await gateway.accept();
    socket.sendJson({
      type: 'challenge',
      version: 1,
      nonce: b64urlEncode(new Uint8Array(32)),
      gateway: gateway.peerId,
      expires_in: 10,
    });
    await socket.nextControl('auth');
    socket.sendJson({ type: 'error', code: 4002, message: 'the signature does not verify' });
    socket.drop(4002, 'the signature does not verify');
    const err = await pending.then(
      () => assert.fail('connect must reject'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, CloseCode.AuthFailed);
    assert.equal(err.message, 'the signature does not verify');
  });

  it('rejects when the gateway is unreachable or refuses glueberry.v1', async () => {
    const gateway = new FakeGateway();
    const unreachable = connectClient(gateway);
    (await gateway.nextSocket()).refuse();
    await assert.rejects(unreachable, (e) => e instanceof GatewayError && e.code === 1006);
    const wrongProtocol = connectClient(gateway);
    (await gateway.nextSocket()).accept('');
    await assert.rejects(wrongProtocol, (e) => e instanceof GatewayError && e.code === CloseCode.UnsupportedVersion);
  });

  it('closes with a ProtocolError when the gateway breaks the protocol', async () => {
    const gateway = new FakeGateway();
    const pending = connectClient(gateway);
    const socket = await gateway.accept();
    socket.sendJson({ type: 'ready' }); // before a challenge
    await assert.rejects(pending, (e) => e instanceof ProtocolError && e.code === CloseCode.ProtocolError);
    assert.equal((await socket.whenClosed()).code, CloseCode.ProtocolError);
  });

  it('takes the browser WebSocket class as it is typed', () => {
    // compile-time checks: the DOM's WebSocket class and the fake fit the option's type
    const dom: typeof WebSocket extends WebSocketConstructor ? true : false = true;
    const fake: FakeGateway['WebSocket'] extends NonNullable<GlueberryClientOptions['WebSocket']> ? true : false = true;
    assert.ok(dom && fake);
  });

  it('checks its options', async () => {
    const gateway = new FakeGateway();
    const identity = Identity.generate();
    await assert.rejects(
      GlueberryClient.connect('ws://x', { identity, WebSocket: gateway.WebSocket }),
      InvalidArgumentError,
    ); // no origin in Node
    await assert.rejects(GlueberryClient.connect('ws://x', { identity, origin: ORIGIN }), InvalidArgumentError); // no WebSocket in Node 20
    await assert.rejects(connectClient(gateway, { streams: ['handshake'] }), InvalidArgumentError);
    await assert.rejects(connectClient(gateway, { streams: ['bad name'] }), InvalidArgumentError);
    await assert.rejects(connectClient(gateway, { handshakeName: 'x'.repeat(65) }), InvalidArgumentError);
  });
});

describe('GlueberryClient: sessions (§5)', () => {
  it('signs only Noise static key payloads (§5.1)', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const { client, socket } = await connected(gateway);
    const opening = client.open('chat');
    const open = await socket.nextControl('open');
    assert.deepEqual([open.session, open.backend], [1, 'chat']);
    const prefix = [...'noise-libp2p-static-key:'].map((c) => c.charCodeAt(0));
    const bad = [
      new Uint8Array(56), // no prefix
      Uint8Array.from([...prefix, ...new Uint8Array(31)]), // key too short
      Uint8Array.from([...prefix, ...new Uint8Array(33)]), // too long
      Uint8Array.from([...'glueberry-gateway-auth-v1'].map((c) => c.charCodeAt(0))), // anything else
    ];
    for (const [i, payload] of bad.entries()) {
      socket.sendJson({ type: 'sign', id: 10 + i, session: 1, payload: b64urlEncode(payload) });
      assert.deepEqual(await socket.nextControl('sign_refused'), { type: 'sign_refused', id: 10 + i });
    }
    const good = b64urlEncode(Uint8Array.from([...prefix, ...new Uint8Array(32).fill(7)]));
    socket.sendJson({ type: 'sign', id: 20, session: 2, payload: good }); // a session we are not opening
    assert.deepEqual(await socket.nextControl('sign_refused'), { type: 'sign_refused', id: 20 });
    socket.sendJson({ type: 'sign', id: 21, session: 1, payload: good });
    assert.equal((await socket.nextControl('signature')).id, 21);
    socket.sendJson({ type: 'error', id: open.id, session: 1, code: 4103, message: 'the browser refused to sign' });
    await assert.rejects(
      opening,
      (e) => e instanceof GatewayError && e.code === CloseCode.SignatureInvalid && e.session === 1,
    );
  });

  it('opens, runs the handshake and exchanges encrypted messages', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const { client, socket } = await connected(gateway, { handshakeName: 'alice', streams: ['chat', 'files'] });
    const opening = client.open('chat');
    assert.equal(await gateway.openSession(socket, backend, client.peerId), 1);
    const session = await opening;
    assert.equal(session.id, 1);
    assert.equal(session.backend, 'chat');
    assert.equal(session.peerId, backend.peerId);
    assert.equal(session.fingerprint, fingerprint(backend.peerId));
    assert.equal(session.peerName, 'chat-backend');
    assert.equal(session.state, 'open');
    assert.deepEqual(client.sessions, [session]);

    await session.send('chat', 'hello');
    assert.equal(await backend.receive(socket, 1), 'hello');
    await session.send('files', Uint8Array.of(1, 2, 3));
    const frame = await socket.nextData();
    assert.equal(frame.stream, 'files');
    assert.deepEqual(backend.cipher!.decrypt(frame.payload), Uint8Array.of(1, 2, 3));
    assert.equal(frame.payload.length, 3 + 28); // nonce ‖ ciphertext ‖ tag: never the plaintext

    const messages: SessionMessage[] = [];
    session.on('message', (m) => messages.push(m));
    backend.send(socket, 1, 'chat', 'echo:hello');
    backend.send(socket, 1, 'files', Uint8Array.of(0xff, 0x41));
    backend.send(socket, 1, 'other', 'not prepared: dropped');
    await tick();
    assert.deepEqual(
      messages.map((m) => [m.stream, m.text]),
      [
        ['chat', 'echo:hello'],
        ['files', '\ufffdA'],
      ],
    );
    assert.deepEqual(messages[1]!.data, Uint8Array.of(0xff, 0x41));

    await assert.rejects(session.send('other', 'x'), InvalidArgumentError);
    await assert.rejects(session.send('handshake', 'x'), InvalidArgumentError);
    await assert.rejects(session.send('chat', new Uint8Array((1 << 20) + 1)), InvalidArgumentError);
  });

  it('asks for batches in auth and takes each frame of a batch in order (§5.6)', async () => {
    const { socket, session, backend } = await openChat();
    const messages: string[] = [];
    session.on('message', (m) => messages.push(m.text));
    backend.sendBatch(socket, 1, 'chat', ['one', 'two', 'three']);
    backend.send(socket, 1, 'chat', 'four');
    await tick();
    assert.deepEqual(messages, ['one', 'two', 'three', 'four']);
    socket.sendBinary(Uint8Array.of(2, 0, 9, 1)); // an entry longer than the batch
    assert.equal((await socket.whenClosed()).code, CloseCode.ProtocolError);
  });

  it('yields messages to async iteration, also those that came before', async () => {
    const { socket, session, backend } = await openChat();
    backend.send(socket, 1, 'chat', 'one');
    backend.send(socket, 1, 'chat', 'two');
    await tick();
    const seen: string[] = [];
    const iterating = (async () => {
      for await (const message of session) seen.push(message.text);
    })();
    backend.send(socket, 1, 'chat', 'three');
    await tick();
    socket.sendJson({ type: 'closed', session: 1, code: 4109, message: 'backend closed the connection' });
    await iterating;
    assert.deepEqual(seen, ['one', 'two', 'three']);
    assert.equal(session.state, 'closed');
  });

  it('holds messages for the first listener, bounded by the inbox', async () => {
    const { socket, session, backend } = await openChat({ bounds: { inbox: 2 } });
    const errors: unknown[] = [];
    session.on('error', ({ error }) => errors.push(error));
    for (const text of ['a', 'b', 'c']) backend.send(socket, 1, 'chat', text);
    await tick();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof LimitExceededError);
    const texts: string[] = [];
    session.on('message', ({ text }) => texts.push(text));
    await tick(1);
    assert.deepEqual(texts, ['b', 'c']); // the held ones (the oldest was dropped), then live ones
    backend.send(socket, 1, 'chat', 'd');
    await tick();
    assert.deepEqual(texts, ['b', 'c', 'd']);
  });

  it('drops frames that fail authentication, with an error event', async () => {
    const { socket, session, backend } = await openChat();
    const errors: unknown[] = [];
    const texts: string[] = [];
    session.on('error', ({ error }) => errors.push(error));
    session.on('message', ({ text }) => texts.push(text));
    const frame = backend.cipher!.encrypt(new TextEncoder().encode('tampered'));
    frame[frame.length - 1]! ^= 1;
    socket.sendData(1, 'chat', frame);
    backend.send(socket, 1, 'chat', 'fine');
    await tick();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof DecryptionError);
    assert.deepEqual(texts, ['fine']);
  });

  it('refuses a backend whose key is not its peer ID (KeyMismatchError) and closes the session', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const { client, socket } = await connected(gateway);
    const opening = client.open('chat');
    await gateway.openSession(socket, backend, client.peerId, Identity.generate());
    await assert.rejects(opening, KeyMismatchError);
    assert.equal((await socket.nextControl('close')).session, 1);
    assert.deepEqual(client.sessions, []);
  });

  it('refuses an opened that names another peer than ready.backends', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const { client, socket } = await connected(gateway);
    const opening = client.open('chat');
    const open = await socket.nextControl('open');
    socket.sendJson({ type: 'opened', id: open.id, session: 1, backend: 'chat', peer_id: Identity.generate().peerId });
    await assert.rejects(opening, (e) => e instanceof GatewayError && e.code === CloseCode.BackendUnknown);
    assert.equal((await socket.nextControl('close')).session, 1);
  });

  it('maps open errors to GatewayError codes, and times out', async () => {
    const gateway = new FakeGateway(new FakeBackend('chat'));
    const { client, socket } = await connected(gateway);
    for (const code of [
      CloseCode.BackendUnknown,
      CloseCode.BackendNotAllowed,
      CloseCode.BackendUnavailable,
      CloseCode.TooManySessions,
    ]) {
      const opening = client.open('nope');
      const open = await socket.nextControl('open');
      socket.sendJson({ type: 'error', id: open.id, session: open.session, code, message: `refused ${code}` });
      const err = await opening.then(
        () => assert.fail('must reject'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof GatewayError);
      assert.deepEqual([err.code, err.message, err.session], [code, `refused ${code}`, open.session]);
    }
    const slow = client.open('chat', { timeout: 30 });
    const open = await socket.nextControl('open');
    await assert.rejects(slow, TimeoutError);
    // a late opened is closed again
    socket.sendJson({
      type: 'opened',
      id: open.id,
      session: open.session,
      backend: 'chat',
      peer_id: gateway.backends[0]!.peerId,
    });
    assert.equal((await socket.nextControl('close')).session, open.session);
  });

  it('ends a session on closed, rejecting its sends with the code', async () => {
    const { client, socket, session, backend } = await openChat();
    const events: string[] = [];
    session.on('state', ({ state }) => events.push(state));
    session.on('closed', ({ code, reason }) => events.push(`${code} ${reason}`));
    socket.sendJson({ type: 'closed', session: 1, code: 4109, message: 'backend closed the connection' });
    await tick();
    assert.deepEqual(events, ['closed', '4109 backend closed the connection']);
    await assert.rejects(session.send('chat', 'x'), InvalidStateError);
    assert.deepEqual(client.sessions, []);
  });

  it('reports session error notices that leave it open', async () => {
    const { socket, session } = await openChat();
    const errors: GatewayError[] = [];
    session.on('error', ({ error }) => errors.push(error as GatewayError));
    socket.sendJson({ type: 'error', session: 1, code: 4105, message: 'max_streams reached' });
    await tick();
    assert.deepEqual([errors[0]?.code, session.state], [CloseCode.TooManyStreams, 'open']);
  });

  it('closes a session (§5.4) and the client', async () => {
    const { client, socket, session, backend, gateway } = await openChat();
    const closed: unknown[] = [];
    session.on('closed', (event) => closed.push(event));
    const closing = session.close();
    const close = await socket.nextControl('close');
    socket.sendJson({ type: 'closed', id: close.id, session: 1, code: 1000 });
    await closing;
    assert.deepEqual(closed, [{ code: 1000, reason: 'closed' }]);
    assert.equal(session.state, 'closed');
    await session.close(); // idempotent

    const second = client.open('chat');
    await gateway.openSession(socket, backend, client.peerId);
    const other = await second;
    const clientEvents: unknown[] = [];
    client.on('closed', (event) => clientEvents.push(event));
    other.on('closed', (event) => clientEvents.push(event));
    client.close();
    assert.deepEqual(clientEvents, [
      { code: 1000, reason: 'client closed' },
      { code: 1000, reason: 'client closed' },
    ]);
    assert.equal((await socket.whenClosed()).code, 1000);
    await assert.rejects(client.open('chat'), InvalidStateError);
  });

  it('ends with the code of a fatal socket error (e.g. 4005 token invalid)', async () => {
    const gateway = new FakeGateway();
    const { client, socket } = await connected(gateway);
    const events: unknown[] = [];
    client.on('error', ({ error }) => events.push((error as GatewayError).code));
    client.on('closed', (event) => events.push(event));
    socket.sendJson({ type: 'error', code: 4005, message: 'token rejected' });
    socket.drop(4005, 'token rejected');
    await tick(20);
    assert.equal(client.state, 'closed');
    assert.deepEqual(events, [4005, { code: 4005, reason: 'token rejected' }]);
    assert.equal(gateway.sockets.length, 1); // no reconnect
  });
});

describe('GlueberryClient: tokens (§4)', () => {
  it('refreshes the token on token_expiring and uses it for the next auth', async () => {
    const gateway = new FakeGateway();
    let n = 0;
    const { client, socket } = await connected(gateway, { token: 'token-0', refreshToken: async () => `token-${++n}` });
    socket.sendJson({ type: 'token_expiring', expires_at: 1795612800 });
    const refresh = await socket.nextControl('refresh');
    assert.equal(refresh.token, 'token-1');
    socket.sendJson({ type: 'refreshed', id: refresh.id, expires_at: 1795612900 });
    socket.drop(1006);
    const next = await gateway.accept();
    const auth = await gateway.authenticate(next);
    assert.equal(auth.token, 'token-1');
    await tick();
    assert.equal(client.state, 'connected');
  });

  it('reconnects with a fresh token after 4006 when it can get one', async () => {
    const gateway = new FakeGateway();
    const { client, socket } = await connected(gateway, { token: 'old', refreshToken: async () => 'fresh' });
    socket.sendJson({ type: 'error', code: 4006, message: 'the token expired' });
    socket.drop(4006, 'the token expired');
    const auth = await gateway.authenticate(await gateway.accept());
    assert.equal(auth.token, 'fresh');
    await tick();
    assert.equal(client.state, 'connected');
  });
});
