// The built client (dist/) in Node, through a REAL gateway to a real echo backend.
// Run by tests/gateway/test_js_client.py, which starts both and sets:
//   GLUEBERRY_GATEWAY_URL  ws://127.0.0.1:<port>/ws
//   GLUEBERRY_ORIGIN       an origin the gateway allows (sent as the Origin header and signed)
//   GLUEBERRY_BACKEND      the backend's name (its echo answers "echo:" + message)
// It connects, opens the backend (sign, handshake), sends messages and checks the echoes, cuts the
// socket to check that the session resumes, checks a refused open, and exits 0. The last line is
// `RESULT <json>` for the test to read.
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { CloseCode, GatewayError, GlueberryClient, Identity } from '../dist/index.js';

const url = process.env.GLUEBERRY_GATEWAY_URL;
const origin = process.env.GLUEBERRY_ORIGIN;
const backend = process.env.GLUEBERRY_BACKEND ?? 'py';
assert.ok(url && origin, 'set GLUEBERRY_GATEWAY_URL and GLUEBERRY_ORIGIN');

/** The `ws` class, remembering its sockets so the test can cut one like a network failure. */
const sockets = [];
class TrackedWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}

const within = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms))]);

const identity = Identity.generate();
const states = [];
const client = await within(
  GlueberryClient.connect(url, {
    identity,
    WebSocket: TrackedWebSocket,
    origin,
    streams: ['chat', 'files'],
    handshakeName: 'node-client',
    reconnectDelay: 50,
  }),
  10_000,
  'connect',
);
client.on('state', ({ state, code }) => states.push(code === undefined ? state : `${state} ${code}`));
console.log(`connected as ${client.peerId} (${client.fingerprint}) to gateway ${client.gatewayPeerId}`);
assert.equal(client.state, 'connected');
assert.ok(
  client.backends.some((b) => b.name === backend),
  `backend ${backend} in ${JSON.stringify(client.backends)}`,
);

const session = await within(client.open(backend), 10_000, 'open');
console.log(`session ${session.id} with ${session.peerId} "${session.peerName}", fingerprint ${session.fingerprint}`);
assert.equal(session.peerId, client.backends.find((b) => b.name === backend).peerId);
const sessionStates = [];
session.on('state', (event) => sessionStates.push(event));
const inbox = session[Symbol.asyncIterator]();
const next = async () => (await within(inbox.next(), 10_000, 'echo')).value;

// 1. messages both ways, in order, UTF-8 and binary
const texts = ['hello', 'héllo wörld 🍓', ...Array.from({ length: 50 }, (_, i) => `message ${i}`)];
for (const text of texts) await session.send('chat', text);
for (const text of texts) {
  const message = await next();
  assert.deepEqual([message.stream, message.text], ['chat', `echo:${text}`]);
  console.log(message.text);
}
const blob = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 31) & 255);
await session.send('files', blob);
const echoed = await next();
assert.equal(echoed.stream, 'files');
assert.deepEqual(echoed.data, Uint8Array.from([...new TextEncoder().encode('echo:'), ...blob]));

// 2. a dropped socket (no close frame): the session resumes, sends made meanwhile go out after
sockets.at(-1).terminate();
const during = ['after the cut 1', 'after the cut 2'];
const sends = during.map((text) => session.send('chat', text));
await within(Promise.all(sends), 10_000, 'sends after the cut');
for (const text of during) assert.equal((await next()).text, `echo:${text}`);
assert.equal(client.state, 'connected');
assert.equal(sockets.length, 2);
assert.deepEqual(states, ['resuming 1006', 'connected']);
assert.ok(!sessionStates.some((s) => s.reopened), 'recovered, not reopened');
console.log(`resumed: ${JSON.stringify(states)} ${JSON.stringify(sessionStates)}`);

// 3. a backend that is not configured: a typed error, the socket and the session go on
const refused = await client.open('no-such-backend').then(
  () => assert.fail('open must fail'),
  (error) => error,
);
assert.ok(refused instanceof GatewayError && refused.code === CloseCode.BackendUnknown, String(refused));
await session.send('chat', 'still here');
assert.equal((await next()).text, 'echo:still here');

await session.close();
assert.equal(session.state, 'closed');
client.close();
console.log(`RESULT ${JSON.stringify({ peerId: client.peerId, echoes: texts.length + during.length + 2, states })}`);
process.exit(0);
