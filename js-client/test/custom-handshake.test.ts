// The application handshake interface (src/handshake.ts: Handshake, HandshakeAction) run by a
// Session against the scripted fake gateway: a handshake of the test's own ("knock") that
// prepares streams of its choosing, app data out, and every error path — a malformed message, a
// wrong key, completion before prepare, completion that never comes (timeout), an exception of
// the application's — plus Go's rule (valid traffic completes), reopen with a fresh handshake,
// and frames that arrive before the key.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { GlueberryClient, GlueberryClientOptions } from '../src/client.js';
import { concatBytes } from '../src/bytes.js';
import {
  GatewayError,
  HandshakeError,
  HandshakeTimeoutError,
  InvalidArgumentError,
  KeyMismatchError,
  TimeoutError,
} from '../src/errors.js';
import type { Handshake, HandshakeAction, HandshakeContext, HandshakeFactory } from '../src/handshake.js';
import { Identity } from '../src/identity.js';
import type { Session } from '../src/session.js';
import { FakeBackend, FakeGateway, type FakeSocket, closeClients, connectClient } from './fake-gateway.js';

afterEach(closeClients);

const KNOCK = 0x10;
const KEY = 0x11;
const MINE = 0x12;
const OK = 0x13;
const STREAMS = ['x', 'y'];
const TOKEN = Uint8Array.from({ length: 24 }, (_, i) => i + 1);

/**
 * The test's handshake: we knock, the backend answers with its key and a version, we prepare
 * streams x and y and send our key, the backend says OK: complete. `made` counts instances.
 */
function knock(made: HandshakeContext[] = [], opts: { completeEarly?: boolean; throwOn?: number } = {}): HandshakeFactory {
  return (context) => {
    made.push(context);
    const handshake: Handshake = {
      start: () => [{ type: 'send', data: Uint8Array.of(KNOCK) }],
      receive(message): HandshakeAction[] {
        if (message[0] === opts.throwOn) throw new RangeError('the application broke');
        if (message[0] === KEY && message.length === 34) {
          return [
            { type: 'info', info: { version: message[33] } },
            ...(opts.completeEarly ? [{ type: 'complete' } as const] : []),
            { type: 'prepare', publicKey: message.slice(1, 33), streams: STREAMS },
            { type: 'send', data: concatBytes(Uint8Array.of(MINE), context.identity.publicKey) },
          ];
        }
        if (message[0] === OK) return [{ type: 'complete' }];
        throw new HandshakeError(`knock: unexpected ${message[0]}`);
      },
    };
    return handshake;
  };
}

interface Opened {
  gateway: FakeGateway;
  backend: FakeBackend;
  client: GlueberryClient;
  socket: FakeSocket;
  session: number;
  opening: Promise<Session>;
}

/** A client with the knock handshake, and a session the gateway opened (the handshake not served yet). */
async function opened(
  options: Partial<GlueberryClientOptions> = {},
  openOptions: { timeout?: number; handshake?: HandshakeFactory } = {},
): Promise<Opened> {
  const backend = new FakeBackend('svc');
  const gateway = new FakeGateway(backend);
  const connecting = connectClient(gateway, { handshake: knock(), ...options });
  const socket = await gateway.connect({ resumeToken: TOKEN });
  const client = await connecting;
  const opening = client.open('svc', openOptions);
  opening.catch(() => undefined); // the tests await it when they expect a rejection
  const session = await gateway.acceptOpen(socket, backend, client.peerId);
  return { gateway, backend, client, socket, session, opening };
}

/** The backend's side of knock up to OK; `key` may be someone else's. Returns our cipher's twin. */
async function serveKnock(o: Opened, key = o.backend.identity, ok = true): Promise<void> {
  const knocked = await o.socket.nextData();
  assert.deepEqual([knocked.stream, [...knocked.payload]], ['handshake', [KNOCK]]);
  o.socket.sendData(o.session, 'handshake', concatBytes(Uint8Array.of(KEY), key.publicKey, Uint8Array.of(7)));
  const mine = await o.socket.nextData();
  assert.equal(mine.payload[0], MINE);
  o.backend.cipher = o.backend.identity.streamCipher(mine.payload.slice(1));
  if (ok) o.socket.sendData(o.session, 'handshake', Uint8Array.of(OK));
}

describe('a handshake of the application\'s own', () => {
  it('runs: app data out, the streams it prepared, messages both ways', async () => {
    const made: HandshakeContext[] = [];
    const o = await opened({ handshake: knock(made), streams: ['chat'] });
    await serveKnock(o);
    const session = await o.opening;
    assert.equal(made.length, 1);
    assert.equal(made[0]!.peerId, o.backend.peerId);
    assert.equal(made[0]!.backend, 'svc');
    assert.deepEqual(made[0]!.streams, ['chat']);
    assert.deepEqual(session.handshakeInfo, { version: 7 });
    assert.equal(session.peerName, undefined);
    await session.send('x', 'to x');
    await session.send('y', 'to y');
    assert.equal(await o.backend.receive(o.socket, o.session, 'x'), 'to x');
    assert.equal(await o.backend.receive(o.socket, o.session, 'y'), 'to y');
    await assert.rejects(session.send('chat', 'not prepared'), InvalidArgumentError);
    o.backend.send(o.socket, o.session, 'y', 'from y');
    o.backend.send(o.socket, o.session, 'chat', 'dropped: not prepared');
    o.backend.send(o.socket, o.session, 'x', 'from x');
    const got: string[] = [];
    for await (const m of session) {
      got.push(`${m.stream}:${m.text}`);
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ['y:from y', 'x:from x']);
  });

  it('a per-open handshake replaces the client\'s', async () => {
    const made: HandshakeContext[] = [];
    const o = await opened({ handshake: () => assert.fail('not this one') }, { handshake: knock(made) });
    await serveKnock(o);
    await o.opening;
    assert.equal(made.length, 1);
  });

  it('holds frames that come before the key, and delivers those of prepared streams', async () => {
    const o = await opened();
    const knocked = await o.socket.nextData();
    assert.equal(knocked.payload[0], KNOCK);
    // the backend prepared first (Go may send right after PrepareStreams): its frames wait
    const twin = o.backend.identity.streamCipher(o.client._identity.publicKey);
    o.socket.sendData(o.session, 'x', twin.encrypt(new TextEncoder().encode('early x')));
    o.socket.sendData(o.session, 'zzz', twin.encrypt(new TextEncoder().encode('early, not prepared')));
    const keyMsg = concatBytes(Uint8Array.of(KEY), o.backend.identity.publicKey, Uint8Array.of(1));
    o.socket.sendData(o.session, 'handshake', keyMsg);
    // the held x frame decrypts once prepared, and Go's rule completes the handshake with it
    const session = await o.opening;
    const first = await session[Symbol.asyncIterator]().next();
    assert.equal(first.done, false);
    assert.deepEqual([first.value.stream, first.value.text], ['x', 'early x']);
  });

  it('completes on valid traffic when completion never comes (Go\'s rule)', async () => {
    const o = await opened();
    await serveKnock(o, o.backend.identity, false);
    o.backend.send(o.socket, o.session, 'x', 'hello');
    const session = await o.opening;
    assert.equal(session.state, 'open');
  });

  it('runs a fresh handshake when the session is reopened after a resume that failed', async () => {
    const made: HandshakeContext[] = [];
    const o = await opened({ handshake: knock(made) });
    await serveKnock(o);
    const session = await o.opening;
    o.socket.drop(1006);
    const next = await o.gateway.accept();
    await o.gateway.authenticate(next, { resumed: { '1': { recovered: false } } });
    const again = await o.gateway.acceptOpen(next, o.backend, o.client.peerId);
    assert.equal(again, o.session);
    await serveKnock({ ...o, socket: next });
    await new Promise<void>((resolve) => session.on('state', ({ reopened }) => reopened && resolve()));
    assert.equal(made.length, 2);
    await session.send('y', 'after');
    assert.equal(await o.backend.receive(next, o.session, 'y'), 'after');
  });
});

describe('its errors end the open, typed', () => {
  it('a malformed message: the HandshakeError it throws, and the gateway is told to close', async () => {
    const o = await opened();
    await o.socket.nextData();
    o.socket.sendData(o.session, 'handshake', Uint8Array.of(0x66));
    await assert.rejects(o.opening, (err: unknown) => err instanceof HandshakeError && err.code === 'handshake');
    const close = await o.socket.nextControl('close');
    assert.equal(close.session, o.session);
  });

  it('prepare with a key that is not the backend\'s: KeyMismatchError', async () => {
    const o = await opened();
    await serveKnock(o, Identity.generate(), false).catch(() => undefined);
    await assert.rejects(o.opening, KeyMismatchError);
  });

  it('complete before prepare: HandshakeError', async () => {
    const o = await opened({ handshake: knock([], { completeEarly: true }) });
    await o.socket.nextData();
    o.socket.sendData(o.session, 'handshake', concatBytes(Uint8Array.of(KEY), o.backend.identity.publicKey, Uint8Array.of(1)));
    await assert.rejects(o.opening, /complete before prepare/);
  });

  it('an exception of the application\'s: wrapped in a HandshakeError with its cause', async () => {
    const o = await opened({ handshake: knock([], { throwOn: KEY }) });
    await o.socket.nextData();
    o.socket.sendData(o.session, 'handshake', concatBytes(Uint8Array.of(KEY), o.backend.identity.publicKey, Uint8Array.of(1)));
    await assert.rejects(o.opening, (err: unknown) => {
      assert.ok(err instanceof HandshakeError);
      assert.ok(err.cause instanceof RangeError);
      return true;
    });
  });

  it('completion that never comes: HandshakeTimeoutError (a TimeoutError), once the handshake began', async () => {
    const o = await opened({}, { timeout: 150 });
    await serveKnock(o, o.backend.identity, false); // prepared, but no OK and no traffic
    await assert.rejects(o.opening, (err: unknown) => {
      assert.ok(err instanceof HandshakeTimeoutError);
      assert.ok(err instanceof TimeoutError);
      assert.equal(err.code, 'handshake_timeout');
      return true;
    });
  });

  it('before the gateway opened the session, the timeout is the open\'s', async () => {
    const backend = new FakeBackend('svc');
    const gateway = new FakeGateway(backend);
    const connecting = connectClient(gateway, { handshake: knock() });
    const socket = await gateway.connect();
    const client = await connecting;
    const opening = client.open('svc', { timeout: 100 });
    await socket.nextControl('open'); // never answered
    await assert.rejects(opening, (err: unknown) => err instanceof TimeoutError && !(err instanceof HandshakeTimeoutError));
  });

  it('a handshake option that is not a function is refused', async () => {
    const gateway = new FakeGateway();
    await assert.rejects(connectClient(gateway, { handshake: 'hello' as unknown as HandshakeFactory }), InvalidArgumentError);
  });

  it('the gateway\'s errors still come through as GatewayError', async () => {
    const o = await opened();
    o.socket.sendJson({ type: 'closed', session: o.session, code: 4109, message: 'backend closed' });
    await assert.rejects(o.opening, GatewayError);
  });
});
