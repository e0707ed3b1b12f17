// The gateway protocol codec (src/codec.ts): every message shape both ways, bounds, bad input.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  authMessage,
  b64urlDecode,
  b64urlEncode,
  decodeClientMessage,
  decodeDataFrame,
  decodeServerMessage,
  encodeClientMessage,
  encodeDataFrame,
  isNoisePayload,
  isStreamName,
  splitBatch,
} from '../src/codec.js';
import { CloseCode } from '../src/codes.js';
import { InvalidArgumentError, ProtocolError } from '../src/errors.js';
import { Identity } from '../src/identity.js';
import { encodeBatch } from './fake-gateway.js';
import { hex } from './helpers.js';

const PEER = Identity.fromSeed(new Uint8Array(32).fill(1)).peerId;
const OTHER = Identity.fromSeed(new Uint8Array(32).fill(2)).peerId;
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');
const bytes = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill);

/** Assert that `fn` throws a ProtocolError with `code`. */
function violates(fn: () => unknown, code: number = CloseCode.ProtocolError, what?: string): void {
  assert.throws(fn, (e: unknown) => e instanceof ProtocolError && e.code === code, what);
}

describe('base64url', () => {
  it('matches Node for every length, without padding', () => {
    for (let n = 0; n < 70; n++) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
      assert.equal(b64urlEncode(data), b64(data));
      assert.deepEqual(b64urlDecode(b64(data), 'x', n), data);
    }
    assert.equal(b64urlEncode(Uint8Array.of(0xfb, 0xff)), '-_8');
  });
  it('rejects padding, the standard alphabet, bad lengths and sizes', () => {
    for (const bad of ['AA==', 'A+8', 'A/8', 'A', 'AAAAA', 'A A', 'é', 42, null, undefined, {}])
      violates(() => b64urlDecode(bad, 'x'), 4000, String(bad));
    violates(() => b64urlDecode('AAAA', 'x', 4)); // 3 bytes, 4 expected
    violates(() => b64urlDecode('A'.repeat(6000), 'x')); // over the default 4096 bytes
    assert.equal(b64urlDecode('A'.repeat(6000), 'x', undefined, 8192).length, 4500);
  });
});

describe('batches (§5.6)', () => {
  const a = encodeDataFrame(1, 'chat', Uint8Array.of(1));
  const b = encodeDataFrame(2, 'files', bytes(300));
  const entry = (frame: Uint8Array): number[] => [frame.length >> 8, frame.length & 255, ...frame];
  it('splits a batch into its data frames, in order, and passes a data frame through', () => {
    const batch = encodeBatch([a, b, a]);
    assert.equal(hex(batch.subarray(0, 3)), '02' + '0009');
    assert.deepEqual(
      splitBatch(batch).map((f) => decodeDataFrame(f, 1000).stream),
      ['chat', 'files', 'chat'],
    );
    assert.deepEqual(splitBatch(a), [a]);
  });
  it('rejects malformed batches with 4000', () => {
    const bad = (batch: Uint8Array): void => violates(() => splitBatch(batch).map((f) => decodeDataFrame(f, 100)));
    bad(Uint8Array.of(2)); // empty
    bad(Uint8Array.of(2, 0)); // length cut short
    bad(Uint8Array.of(2, 0, 99, ...a)); // entry past the end
    bad(Uint8Array.of(2, 0, 0)); // empty entry
    bad(Uint8Array.from([2, ...entry(encodeBatch([a]))])); // nested
    bad(Uint8Array.from([2, ...entry(a), 0])); // a stray byte
  });
  it('the gateway takes a boolean batch flag in auth', () => {
    const auth = { type: 'auth', version: 1, public_key: b64(bytes(32)), signature: b64(bytes(64)) };
    assert.equal((decodeClientMessage(JSON.stringify({ ...auth, batch: true })) as { batch: boolean }).batch, true);
    violates(() => decodeClientMessage(JSON.stringify({ ...auth, batch: 'yes' })));
  });
});

describe('data frames (§5.2)', () => {
  it('encodes kind ‖ session (u16 BE) ‖ name length ‖ name ‖ payload, and back', () => {
    const frame = encodeDataFrame(0x0102, 'chat', Uint8Array.of(9, 8));
    assert.equal(hex(frame), '01' + '0102' + '04' + hex(new TextEncoder().encode('chat')) + '0908');
    const decoded = decodeDataFrame(frame, 100);
    assert.deepEqual([decoded.session, decoded.stream, [...decoded.payload]], [0x0102, 'chat', [9, 8]]);
    assert.equal(
      decodeDataFrame(encodeDataFrame(65535, 'a-B_9'.padEnd(64, 'x'), new Uint8Array()), 100).session,
      65535,
    );
  });
  it('rejects bad frames with the gateway codes', () => {
    const ok = encodeDataFrame(1, 'chat', bytes(10));
    violates(() => decodeDataFrame(ok, ok.length - 1), CloseCode.MessageTooBig);
    violates(() => decodeDataFrame(Uint8Array.of(1, 0, 1), 100)); // shorter than the header
    violates(() => decodeDataFrame(Uint8Array.of(2, 0, 1, 1, 0x61), 100)); // unknown kind
    violates(() => decodeDataFrame(Uint8Array.of(1, 0, 0, 1, 0x61), 100)); // session 0
    violates(() => decodeDataFrame(Uint8Array.of(1, 0, 1, 0), 100)); // empty name
    violates(() => decodeDataFrame(Uint8Array.of(1, 0, 1, 5, 0x61), 100)); // truncated name
    for (const name of ['a b', 'é', 'a.b', 'x'.repeat(65)]) {
      const raw = new TextEncoder().encode(name);
      violates(
        () => decodeDataFrame(Uint8Array.from([1, 0, 1, raw.length, ...raw]), 1000),
        CloseCode.InvalidStream,
        name,
      );
    }
    violates(() => encodeDataFrame(0, 'chat', bytes(1)));
    violates(() => encodeDataFrame(65536, 'chat', bytes(1)));
    violates(() => encodeDataFrame(1, 'no way', bytes(1)), CloseCode.InvalidStream);
    assert.ok(isStreamName('handshake') && !isStreamName('') && !isStreamName(7));
  });
});

describe('gateway → client messages', () => {
  const decode = (obj: object): ReturnType<typeof decodeServerMessage> => decodeServerMessage(JSON.stringify(obj));
  it('decodes every type', () => {
    const nonce = bytes(32);
    assert.deepEqual(
      decode({ type: 'challenge', version: 1, nonce: b64(nonce), gateway: PEER, expires_in: 10, extra: 1 }),
      {
        type: 'challenge',
        nonce,
        gateway: PEER,
        expiresIn: 10,
      },
    );
    const token = bytes(24, 3);
    const ready = decode({
      type: 'ready',
      peer_id: PEER,
      resume_token: b64(token),
      resume_grace: 30,
      backends: [{ name: 'chat', peer_id: OTHER }],
      limits: { max_sessions: 4, max_streams: 2, max_frame_bytes: 1000, max_control_bytes: 500 },
      resumed: { '1': { recovered: true, received: 130 }, '2': { recovered: false } },
    });
    assert.deepEqual(ready, {
      type: 'ready',
      peerId: PEER,
      resumeToken: b64(token),
      resumeGrace: 30,
      backends: [{ name: 'chat', peerId: OTHER }],
      limits: { maxSessions: 4, maxStreams: 2, maxFrameBytes: 1000, maxControlBytes: 500 },
      resumed: new Map([
        [1, { recovered: true, received: 130 }],
        [2, { recovered: false }],
      ]),
    });
    const minimal = decode({ type: 'ready', peer_id: PEER, resume_token: b64(token) });
    assert.deepEqual(
      minimal.type === 'ready' && [
        minimal.backends,
        minimal.limits.maxFrameBytes,
        minimal.resumed,
        minimal.resumeGrace,
      ],
      [[], (1 << 20) + 96, undefined, 30],
    );
    assert.deepEqual(decode({ type: 'opened', id: 1, session: 1, backend: 'chat', peer_id: OTHER }), {
      type: 'opened',
      id: 1,
      session: 1,
      backend: 'chat',
      peerId: OTHER,
    });
    assert.deepEqual(decode({ type: 'sign', id: 900001, session: 1, payload: b64(bytes(56)) }), {
      type: 'sign',
      id: 900001,
      session: 1,
      payload: bytes(56),
    });
    assert.deepEqual(decode({ type: 'closed', session: 1, code: 4109, message: 'gone' }), {
      type: 'closed',
      session: 1,
      code: 4109,
      message: 'gone',
      id: undefined,
    });
    assert.deepEqual(decode({ type: 'closed', id: 3, session: 1, code: 1000 }), {
      type: 'closed',
      session: 1,
      code: 1000,
      message: '',
      id: 3,
    });
    assert.deepEqual(decode({ type: 'stream_closed', session: 1, stream: 'handshake' }), {
      type: 'stream_closed',
      session: 1,
      stream: 'handshake',
    });
    assert.deepEqual(decode({ type: 'error', code: 4104, message: 'max', id: 2, session: 3 }), {
      type: 'error',
      code: 4104,
      message: 'max',
      id: 2,
      session: 3,
    });
    assert.deepEqual(decode({ type: 'error', code: 4000 }), {
      type: 'error',
      code: 4000,
      message: '',
      id: undefined,
      session: undefined,
    });
    assert.deepEqual(decode({ type: 'pong', id: 5 }), { type: 'pong', id: 5 });
    assert.deepEqual(decode({ type: 'refreshed', id: 7, expires_at: 1795612800 }), {
      type: 'refreshed',
      id: 7,
      expiresAt: 1795612800,
    });
    assert.deepEqual(decode({ type: 'token_expiring', expires_at: 1.5 }), { type: 'token_expiring', expiresAt: 1.5 });
    assert.deepEqual(decode({ type: 'drain', reconnect_after_ms: 1834 }), { type: 'drain', reconnectAfterMs: 1834 });
  });
  it('rejects malformed messages', () => {
    const token = b64(bytes(24));
    violates(() => decodeServerMessage('not json'));
    violates(() => decodeServerMessage('[1]'));
    violates(() => decodeServerMessage('{"kind": "pong"}'));
    violates(() => decodeServerMessage('{"type": 5}'));
    violates(() => decode({ type: 'surprise' }));
    violates(
      () => decodeServerMessage(JSON.stringify({ type: 'pong', id: 1, pad: 'x'.repeat(100) }), 50),
      CloseCode.MessageTooBig,
    );
    violates(
      () => decode({ type: 'challenge', version: 2, nonce: b64(bytes(32)), gateway: PEER, expires_in: 10 }),
      CloseCode.UnsupportedVersion,
    );
    violates(() => decode({ type: 'challenge', version: 1, nonce: b64(bytes(31)), gateway: PEER, expires_in: 10 }));
    violates(() => decode({ type: 'challenge', version: 1, nonce: b64(bytes(32)), gateway: '', expires_in: 10 }));
    violates(() => decode({ type: 'challenge', version: 1, nonce: b64(bytes(32)), gateway: PEER, expires_in: -1 }));
    for (const id of [0, 2 ** 31, 1.5, '1', true, null]) violates(() => decode({ type: 'pong', id }), 4000, String(id));
    for (const session of [0, 65536]) violates(() => decode({ type: 'stream_closed', session, stream: 'chat' }));
    violates(() => decode({ type: 'error', code: 999 }));
    violates(() => decode({ type: 'error', code: 5000 }));
    violates(() => decode({ type: 'error', code: 4000, message: 'x'.repeat(4097) }));
    violates(() => decode({ type: 'opened', id: 1, session: 1, peer_id: 'QmNotEd25519' }));
    violates(() => decode({ type: 'sign', id: 1, session: 1, payload: b64(bytes(1025)) }));
    violates(() => decode({ type: 'drain', reconnect_after_ms: -5 }));
    violates(() => decode({ type: 'ready', peer_id: PEER, resume_token: b64(bytes(23)) }));
    violates(() => decode({ type: 'ready', peer_id: 'nope', resume_token: token }));
    violates(() => decode({ type: 'ready', peer_id: PEER, resume_token: token, backends: {} }));
    violates(() => decode({ type: 'ready', peer_id: PEER, resume_token: token, backends: [{ name: 'x' }] }));
    violates(() =>
      decode({
        type: 'ready',
        peer_id: PEER,
        resume_token: token,
        backends: Array(1025).fill({ name: 'x', peer_id: PEER }),
      }),
    );
    violates(() => decode({ type: 'ready', peer_id: PEER, resume_token: token, limits: { max_sessions: 0 } }));
    violates(() => decode({ type: 'ready', peer_id: PEER, resume_token: token, limits: [] }));
    for (const resumed of [
      [],
      { '0': { recovered: false } },
      { x: { recovered: false } },
      { '1': { recovered: 'yes' } },
      { '1': { recovered: true } },
      { '1': 5 },
    ]) {
      violates(
        () => decode({ type: 'ready', peer_id: PEER, resume_token: token, resumed }),
        4000,
        JSON.stringify(resumed),
      );
    }
  });
});

describe('client → gateway messages', () => {
  it('encodes snake_case JSON with base64url bytes, leaving out undefined fields', () => {
    const auth = encodeClientMessage({
      type: 'auth',
      version: 1,
      public_key: bytes(32, 1),
      signature: bytes(64, 2),
      token: undefined,
      resume: undefined,
    });
    assert.deepEqual(JSON.parse(auth), {
      type: 'auth',
      version: 1,
      public_key: b64(bytes(32, 1)),
      signature: b64(bytes(64, 2)),
    });
    const resume = { token: b64(bytes(24)), sessions: { '1': 42 } };
    const full = encodeClientMessage({
      type: 'auth',
      version: 1,
      public_key: bytes(32, 1),
      signature: bytes(64, 2),
      token: 'jwt',
      resume,
      batch: true,
    });
    assert.deepEqual(decodeClientMessage(full), {
      type: 'auth',
      version: 1,
      public_key: bytes(32, 1),
      signature: bytes(64, 2),
      token: 'jwt',
      resume,
      batch: true,
    });
    const shapes = [
      { type: 'open', id: 1, session: 1, backend: 'chat' },
      { type: 'signature', id: 900001, signature: bytes(64) },
      { type: 'sign_refused', id: 900001 },
      { type: 'close', id: 3, session: 1 },
      { type: 'refresh', id: 7, token: 'jwt' },
      { type: 'ping', id: 9 },
    ] as const;
    for (const shape of shapes) assert.deepEqual(decodeClientMessage(encodeClientMessage(shape)), shape);
    assert.equal(
      encodeClientMessage({ type: 'signature', id: 1, signature: Uint8Array.of(0xfb, 0xff) }),
      '{"type":"signature","id":1,"signature":"-_8"}',
    );
  });
  it('checks them as the gateway does', () => {
    const auth = { type: 'auth', version: 1, public_key: b64(bytes(32)), signature: b64(bytes(64)) };
    const check = (obj: object): unknown => decodeClientMessage(JSON.stringify(obj));
    violates(() => check({ ...auth, version: 2 }), CloseCode.UnsupportedVersion);
    violates(() => check({ ...auth, public_key: b64(bytes(31)) }));
    violates(() => check({ ...auth, token: 'x'.repeat(8193) }), CloseCode.TokenInvalid);
    violates(() => check({ ...auth, resume: { token: b64(bytes(23)) } }));
    violates(() => check({ ...auth, resume: { token: b64(bytes(24)), sessions: { '0': 1 } } }));
    violates(() => check({ ...auth, resume: { token: b64(bytes(24)), sessions: { '1': -1 } } }));
    violates(
      () => check({ type: 'open', id: 1, session: 1, backend: 'chat', addrs: ['/ip4/10.0.0.1/tcp/1'] }),
      CloseCode.BackendUnknown,
    );
    violates(() => check({ type: 'open', id: 1, session: 1, backend: '' }));
    violates(() => check({ type: 'refresh', id: 1, token: '' }));
    violates(() => check({ type: 'hello' }));
    violates(() => decodeClientMessage('x'.repeat(16385)), CloseCode.MessageTooBig);
  });
});

describe('what the client signs', () => {
  it('builds the auth message of §3', () => {
    const message = authMessage('12D3KooWgw', 'https://app.example', bytes(32, 0xaa));
    const text = (s: string): string => hex(new TextEncoder().encode(s));
    assert.equal(
      hex(message),
      text('glueberry-gateway-auth-v1') +
        '00' +
        '0a' +
        text('12D3KooWgw') +
        '13' +
        text('https://app.example') +
        'aa'.repeat(32),
    );
    assert.throws(() => authMessage(PEER, 'https://é.example', bytes(32)), InvalidArgumentError);
    assert.throws(() => authMessage(PEER, 'x'.repeat(256), bytes(32)), InvalidArgumentError);
  });
  it('recognises only Noise static key payloads', () => {
    const prefix = new TextEncoder().encode('noise-libp2p-static-key:');
    assert.ok(isNoisePayload(Uint8Array.from([...prefix, ...bytes(32)])));
    assert.ok(!isNoisePayload(Uint8Array.from([...prefix, ...bytes(31)])));
    assert.ok(!isNoisePayload(Uint8Array.from([...prefix, ...bytes(33)])));
    assert.ok(!isNoisePayload(bytes(56)));
    assert.ok(!isNoisePayload(new Uint8Array()));
  });
});
