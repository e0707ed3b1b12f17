// Resume (gateway-protocol.md §6), drain, reconnect and keepalive against the scripted fake
// gateway: frame counts, outbox re-send after `received`, reopen when not recovered.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { GlueberryClientOptions } from '../src/client.js';
import { CloseCode } from '../src/codes.js';
import { b64urlEncode } from '../src/codec.js';
import { LimitExceededError } from '../src/errors.js';
import { FakeBackend, FakeGateway, type OpenChat, closeClients, connectClient, openChat } from './fake-gateway.js';

afterEach(closeClients);

const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const TOKEN = Uint8Array.from({ length: 24 }, (_, i) => i + 1);

/** A client with one open session; `log` records client and session state events. */
async function setup(options: Partial<GlueberryClientOptions> = {}): Promise<OpenChat & { log: string[] }> {
  const opened = await openChat(options, { resumeToken: TOKEN });
  const log: string[] = [];
  opened.client.on('state', ({ state, code }) => log.push(`client ${state}${code === undefined ? '' : ` ${code}`}`));
  opened.session.on('state', ({ state, reopened }) => log.push(`session ${state}${reopened ? ' reopened' : ''}`));
  return { ...opened, log };
}

describe('resume (§6)', () => {
  it('counts frames, re-sends what the gateway did not get, then the sends made meanwhile', async () => {
    const { client, socket, session, backend, gateway, log } = await setup();
    // handshake: 3 frames each way (Hello, PubKey, Complete); then 3 messages out, 2 in
    const frames: Uint8Array[] = [];
    for (const text of ['m1', 'm2', 'm3']) {
      await session.send('chat', text);
      const frame = await socket.next();
      frames.push(frame as Uint8Array);
    }
    const received: string[] = [];
    session.on('message', ({ text }) => received.push(text));
    backend.send(socket, 1, 'chat', 'r1');
    backend.send(socket, 1, 'chat', 'r2');
    await tick();
    socket.drop(1006);
    await tick(1);
    assert.equal(client.state, 'resuming');
    assert.equal(session.state, 'resuming');
    const m4 = session.send('chat', 'm4'); // waits for the resume

    const next = await gateway.accept();
    // the gateway got frames 0..3 (the handshake and m1): m2 and m3 are re-sent, then m4
    const auth = await gateway.authenticate(next, { resumed: { '1': { recovered: true, received: 4 } } });
    assert.deepEqual(auth.resume, { token: b64urlEncode(TOKEN), sessions: { '1': 5 } });
    assert.deepEqual(await next.next(), frames[1]); // byte for byte: the outbox copy
    assert.deepEqual(await next.next(), frames[2]);
    assert.equal(await backend.receive(next, 1), 'm4');
    await m4;
    // frames the gateway kept come first, then new ones; all counted
    backend.send(next, 1, 'chat', 'r3');
    await tick();
    assert.deepEqual(received, ['r1', 'r2', 'r3']);
    assert.deepEqual(log, ['client resuming 1006', 'session resuming', 'client connected', 'session open']);
    assert.equal(client.state, 'connected');

    next.drop(1006);
    const third = await gateway.accept();
    const again = await gateway.authenticate(third, { resumed: { '1': { recovered: true, received: 7 } } });
    assert.deepEqual(again.resume?.sessions, { '1': 6 });
    await session.send('chat', 'm5');
    assert.equal(await backend.receive(third, 1), 'm5'); // nothing to re-send: 7 of 7 arrived
  });

  it('opens the session again when it was not recovered, then sends what waited', async () => {
    const { socket, session, backend, gateway, log, client } = await setup();
    socket.drop(1006);
    await tick(1);
    const queued = [session.send('chat', 'q1'), session.send('chat', 'q2')];
    const next = await gateway.accept();
    await gateway.authenticate(next, { resumed: { '1': { recovered: false } } });
    assert.equal(await gateway.openSession(next, backend, client.peerId), 1); // same number, new handshake
    assert.equal(await backend.receive(next, 1), 'q1');
    assert.equal(await backend.receive(next, 1), 'q2');
    await Promise.all(queued);
    assert.deepEqual(log, ['client resuming 1006', 'session resuming', 'client connected', 'session open reopened']);
    assert.equal(session.state, 'open');
  });

  it('reopens after a gateway restart (resume token unknown) and without resume after 4014', async () => {
    const { socket, session, backend, gateway, client } = await setup();
    socket.drop(1012); // service restart
    const next = await gateway.accept();
    const auth = await gateway.authenticate(next, { resumed: { '1': { recovered: false } } }); // what a new gateway answers
    assert.ok(auth.resume !== undefined);
    await gateway.openSession(next, backend, client.peerId);
    await tick();
    assert.equal(session.state, 'open');

    next.drop(1006);
    const refused = await gateway.accept();
    assert.ok((await gateway.challenge(refused)).resume !== undefined);
    refused.sendJson({ type: 'error', code: CloseCode.ResumeFailed, message: 'wrong resume token' });
    refused.drop(CloseCode.ResumeFailed, 'wrong resume token');
    const fresh = await gateway.accept();
    const plain = await gateway.authenticate(fresh);
    assert.equal(plain.resume, undefined);
    await gateway.openSession(fresh, backend, client.peerId);
    await session.send('chat', 'after');
    assert.equal(await backend.receive(fresh, 1), 'after');
  });

  it('starts over when the missing frames fell out of the bounded outbox', async () => {
    const { socket, session, backend, gateway, client } = await setup({ bounds: { outboxFrames: 2 } });
    for (const text of ['a', 'b', 'c']) {
      await session.send('chat', text);
      await socket.next();
    }
    socket.drop(1006);
    const next = await gateway.accept();
    await gateway.authenticate(next, { resumed: { '1': { recovered: true, received: 3 } } }); // frames 3.. needed, 4.. kept
    assert.equal((await next.nextControl('close')).session, 1);
    next.sendJson({ type: 'closed', id: 2, session: 1, code: 1000 });
    await gateway.openSession(next, backend, client.peerId);
    await tick();
    assert.equal(session.state, 'open');
  });

  it('closes a session the gateway recovered but the client no longer has', async () => {
    const { socket, session, gateway, backend, client } = await setup();
    const second = client.open('chat');
    await gateway.openSession(socket, backend, client.peerId);
    const other = await second;
    socket.drop(1006);
    await tick(1);
    await other.close(); // while resuming: forgotten locally, left out of the resume
    const next = await gateway.accept();
    const auth = await gateway.authenticate(next, {
      resumed: { '1': { recovered: true, received: 3 }, '2': { recovered: true, received: 3 } },
    });
    assert.deepEqual(auth.resume?.sessions, { '1': 3 });
    assert.equal((await next.nextControl('close')).session, 2);
    assert.equal(session.state, 'open');
  });

  it('re-sends an open that was under way when the socket dropped', async () => {
    const backend = new FakeBackend('chat');
    const gateway = new FakeGateway(backend);
    const pending = connectClient(gateway);
    const socket = await gateway.connect();
    const client = await pending;
    const opening = client.open('chat');
    await socket.nextControl('open');
    socket.drop(1006);
    const next = await gateway.connect();
    await gateway.openSession(next, backend, client.peerId);
    assert.equal((await opening).state, 'open');
  });

  it('bounds the sends waiting for a resume', async () => {
    const { socket, session } = await setup({ bounds: { pendingSends: 2 } });
    socket.drop(1006);
    await tick(1);
    const waiting = [session.send('chat', '1'), session.send('chat', '2')];
    await assert.rejects(session.send('chat', '3'), LimitExceededError);
    for (const p of waiting) p.catch(() => undefined);
  });
});

describe('drain, offline, keepalive', () => {
  it('comes back after the drain delay and reopens the sessions', async () => {
    const { socket, session, backend, gateway, client, log } = await setup();
    const drains: number[] = [];
    client.on('drain', ({ reconnectAfterMs }) => drains.push(reconnectAfterMs));
    socket.sendJson({ type: 'drain', reconnect_after_ms: 60 });
    await tick();
    assert.deepEqual(drains, [60]);
    assert.equal(client.state, 'resuming');
    const queued = session.send('chat', 'during the drain');
    await tick();
    assert.equal(socket.sent.length, 0); // held: the draining gateway no longer reads
    socket.drop(1001, 'the gateway is restarting');
    const started = Date.now();
    const next = await gateway.accept();
    assert.ok(Date.now() - started >= 40, 'waited for reconnect_after_ms');
    await gateway.authenticate(next, { resumed: { '1': { recovered: false } } });
    await gateway.openSession(next, backend, client.peerId);
    assert.equal(await backend.receive(next, 1), 'during the drain');
    await queued;
    assert.deepEqual(log, ['client resuming 1001', 'session resuming', 'client connected', 'session open reopened']);
  });

  it('is offline while the gateway cannot be reached, and keeps trying', async () => {
    const { socket, gateway, client, log } = await setup();
    socket.drop(1006);
    (await gateway.nextSocket()).refuse();
    (await gateway.nextSocket()).refuse();
    const next = await gateway.accept();
    assert.equal(client.state, 'offline');
    await gateway.authenticate(next, { resumed: { '1': { recovered: true, received: 3 } } });
    await tick();
    assert.deepEqual(log, [
      'client resuming 1006',
      'session resuming',
      'client offline 1006',
      'client connected',
      'session open',
    ]);
  });

  it('pings when quiet and gives the socket up when nothing answers', async () => {
    const { socket, gateway, client } = await setup({ pingInterval: 15 });
    const ping = await socket.nextControl('ping');
    socket.sendJson({ type: 'pong', id: ping.id });
    const closed = await socket.whenClosed(1000);
    assert.equal(closed.code, CloseCode.IdleTimeout); // not 1000: the gateway keeps the sessions
    await gateway.accept();
    assert.equal(client.state, 'resuming');
  });

  it('does not reconnect when asked not to', async () => {
    const { socket, client, session } = await setup({ reconnect: false });
    const closed: unknown[] = [];
    session.on('closed', (event) => closed.push(event));
    socket.drop(1006);
    await tick(20);
    assert.equal(client.state, 'closed');
    assert.deepEqual(closed, [{ code: 1006, reason: 'the gateway socket closed' }]);
  });
});
