import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { utf8Encode } from '../src/bytes.js';
import {
  HandshakeError,
  InvalidArgumentError,
  InvalidKeyError,
  InvalidPeerIdError,
  InvalidStateError,
  KeyMismatchError,
} from '../src/errors.js';
import {
  type HandshakeAction,
  HelloHandshake,
  helloHandshake,
  decodeHandshakeMessage,
  encodeComplete,
  encodeHello,
  encodePubKey,
} from '../src/handshake.js';
import { FrameDecoder, encodeFrame } from '../src/framing.js';
import { Identity, peerIdFromPublicKey } from '../src/identity.js';
import { h, hex, vectors } from './helpers.js';

const alice = Identity.fromSeed(h(vectors.peer_a.ed25519_seed));
const bob = Identity.fromSeed(h(vectors.peer_b.ed25519_seed));

describe('handshake messages', () => {
  it('encodes Hello / PubKey / Complete', () => {
    assert.equal(hex(encodeHello()), '01');
    assert.equal(hex(encodeHello('bob')), '01626f62');
    assert.equal(hex(encodePubKey(alice.publicKey)), '02' + vectors.peer_a.ed25519_public_key);
    assert.equal(hex(encodeComplete()), '03');
    assert.equal(hex(encodeFrame(encodeComplete())), '020103');
    assert.equal(encodeHello('é'.repeat(32)).length, 65);
    assert.throws(() => encodeHello('é'.repeat(33)), InvalidArgumentError);
    assert.throws(() => encodePubKey(new Uint8Array(31)), InvalidArgumentError);
  });
  it('decodes them', () => {
    assert.deepEqual(decodeHandshakeMessage(h('01')), { type: 'hello', name: '' });
    assert.deepEqual(decodeHandshakeMessage(encodeHello('🍓 berry')), { type: 'hello', name: '🍓 berry' });
    assert.deepEqual(decodeHandshakeMessage(encodePubKey(bob.publicKey)), { type: 'pubkey', publicKey: bob.publicKey });
    assert.deepEqual(decodeHandshakeMessage(h('03')), { type: 'complete' });
    // Go never checks the name bytes: malformed UTF-8 is shown with U+FFFD, not refused
    assert.deepEqual(decodeHandshakeMessage(h('01ff41')), { type: 'hello', name: '\ufffdA' });
    assert.deepEqual(decodeHandshakeMessage(h('01' + '41'.repeat(64))), { type: 'hello', name: 'A'.repeat(64) });
    // the handshake_message vector payload 01 02 03 reads as a Hello with the name "\x02\x03"
    assert.deepEqual(decodeHandshakeMessage(h(vectors.handshake_message.payload)), { type: 'hello', name: '\x02\x03' });
  });
  it('rejects malformed and unknown messages with HandshakeError', () => {
    const bad = ['', '00', '04', 'ff', '01' + '41'.repeat(65), '02' + '00'.repeat(31), '02' + '00'.repeat(33), '0300'];
    for (const m of bad) assert.throws(() => decodeHandshakeMessage(h(m)), HandshakeError, m);
  });
});

type Kind = HandshakeAction['type'];
const sent = (actions: HandshakeAction[]) => actions.flatMap((a) => (a.type === 'send' ? [a.data] : []));
const kinds = (actions: HandshakeAction[]): Kind[] => actions.filter((a) => a.type !== 'send').map((a) => a.type);

/** Deliver messages between two machines until nobody has anything left to send. */
function run(a: HelloHandshake, b: HelloHandshake): { a: HandshakeAction[]; b: HandshakeAction[]; wire: string[] } {
  const out = { a: [] as HandshakeAction[], b: [] as HandshakeAction[], wire: [] as string[] };
  let toB = sent(a.start());
  let toA = sent(b.start());
  while (toA.length > 0 || toB.length > 0) {
    const nextA: Uint8Array[] = [];
    const nextB: Uint8Array[] = [];
    for (const m of toB) {
      out.wire.push('a>' + hex(m).slice(0, 2));
      const actions = b.receive(m);
      nextA.push(...sent(actions));
      out.b.push(...actions);
    }
    for (const m of toA) {
      out.wire.push('b>' + hex(m).slice(0, 2));
      const actions = a.receive(m);
      nextB.push(...sent(actions));
      out.a.push(...actions);
    }
    [toA, toB] = [nextA, nextB];
  }
  return out;
}

describe('HelloHandshake', () => {
  it('runs between an initiator and a responder: each prepares with the other\'s key', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, name: 'alice', initiator: true });
    const b = new HelloHandshake({ identity: bob, expectedPeerId: alice.peerId, name: 'bob', initiator: false });
    assert.equal(a.state, 'handshaking');
    const { a: ea, b: eb, wire } = run(a, b);
    assert.deepEqual(wire, ['a>01', 'a>02', 'b>01', 'b>02', 'b>03', 'a>03']);
    assert.deepEqual(kinds(ea), ['info', 'prepare', 'complete']);
    assert.deepEqual(kinds(eb), ['info', 'prepare', 'complete']);
    assert.equal(a.peerName, 'bob');
    assert.equal(b.peerName, 'alice');
    assert.deepEqual(ea[0], { type: 'info', info: { name: 'bob' } });
    assert.equal(a.state, 'established');
    assert.equal(b.state, 'established');
    const prepare = ea.find((e) => e.type === 'prepare');
    assert.ok(prepare?.type === 'prepare');
    assert.deepEqual(prepare.publicKey, bob.publicKey);
    assert.equal(prepare.streams, undefined); // the session's own streams
    // what a session does with it: the same key on both sides
    const cipherA = alice.streamCipher(prepare.publicKey);
    const frame = cipherA.encrypt(utf8Encode('hello glueberry'), h(vectors.encrypted_frame.nonce));
    assert.equal(hex(frame), vectors.encrypted_frame.frame);
    assert.equal(new TextDecoder().decode(bob.streamCipher(alice.publicKey).decrypt(frame)), 'hello glueberry');
  });

  it('prepares before it sends Complete (Go sends data right after its PrepareStreams)', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: true });
    a.start();
    a.receive(encodeHello('bob'));
    const actions = a.receive(encodePubKey(bob.publicKey));
    assert.deepEqual(actions.map((x) => x.type), ['prepare', 'send']);
    assert.deepEqual(sent(actions).map(hex), ['03']);
  });

  it('works through framing, and when both sides start as initiators', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: true });
    const b = new HelloHandshake({ identity: bob, expectedPeerId: alice.peerId, initiator: true });
    const decoder = new FrameDecoder(1000);
    const wire = Uint8Array.from(sent(a.start()).flatMap((m) => [...encodeFrame(m)]));
    const fromA = decoder.push(wire);
    assert.equal(hex(wire), '0201' + '01' + '2221' + '02' + vectors.peer_a.ed25519_public_key);
    const toA = sent(b.start()).concat(...fromA.map((m) => sent(b.receive(m))));
    assert.deepEqual(toA.map((m) => hex(m).slice(0, 2)), ['01', '02', '03']); // no second Hello/PubKey
    const actionsA = toA.flatMap((m) => {
      const actions = a.receive(m);
      sent(actions).forEach((s) => b.receive(s));
      return actions;
    });
    assert.deepEqual(kinds(actionsA), ['info', 'prepare', 'complete']);
    assert.equal(b.state, 'established');
  });

  it('throws KeyMismatchError when the key is not the expected peer\'s, and is failed after', () => {
    const mallory = Identity.generate();
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: true });
    a.start();
    a.receive(encodeHello('bob'));
    assert.throws(() => a.receive(encodePubKey(mallory.publicKey)), KeyMismatchError);
    assert.equal(a.state, 'failed');
    assert.throws(() => a.receive(encodePubKey(bob.publicKey)), InvalidStateError);
    assert.throws(() => a.start(), InvalidStateError);
    const err = new KeyMismatchError('x');
    assert.ok(err instanceof HandshakeError);
    assert.equal(err.code, 'key_mismatch');
  });

  it('becomes established after preparing when Complete arrived first, and ignores duplicates', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: false });
    assert.deepEqual(a.start(), []);
    const hello = a.receive(encodeHello('bob'));
    assert.deepEqual(sent(hello).map(hex), ['01', '02' + vectors.peer_a.ed25519_public_key]);
    assert.deepEqual(a.receive(encodeHello('again')), []);
    assert.deepEqual(a.receive(encodeComplete()), []);
    assert.equal(a.state, 'handshaking');
    const step = a.receive(encodePubKey(bob.publicKey));
    assert.deepEqual(sent(step).map(hex), ['03']);
    assert.deepEqual(kinds(step), ['prepare', 'complete']);
    assert.deepEqual(a.receive(encodePubKey(bob.publicKey)), []);
    assert.deepEqual(a.receive(encodeComplete()), []);
    assert.equal(a.peerName, 'bob');
  });

  it('sends its Hello and PubKey before Complete to a peer that sent only its PubKey', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, name: 'a', initiator: false });
    const step = a.receive(encodePubKey(bob.publicKey));
    assert.deepEqual(sent(step).map((m) => hex(m).slice(0, 2)), ['01', '02', '03']);
    assert.deepEqual(kinds(step), ['prepare']);
    assert.equal(a.state, 'prepared');
    assert.equal(a.peerName, undefined);
  });

  it('markEstablishedByTraffic: for a peer that never sends Complete', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: true });
    a.start();
    assert.throws(() => a.markEstablishedByTraffic(), InvalidStateError);
    a.receive(encodePubKey(bob.publicKey));
    assert.equal(a.state, 'prepared');
    assert.deepEqual(a.markEstablishedByTraffic(), [{ type: 'complete' }]);
    assert.deepEqual(a.markEstablishedByTraffic(), []);
    assert.deepEqual(a.receive(encodeComplete()), []);
    assert.equal(a.state, 'established');
  });

  it('fails on unknown message types', () => {
    const a = new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, initiator: true });
    assert.throws(() => a.receive(h('07')), HandshakeError);
    assert.equal(a.state, 'failed');
  });

  it('prepares a low-order key that matches the expected peer ID: the session refuses it (InvalidKeyError)', () => {
    const identityPoint = h('01' + '00'.repeat(31));
    const a = new HelloHandshake({ identity: alice, expectedPeerId: peerIdFromPublicKey(identityPoint), initiator: true });
    const prepare = a.receive(encodePubKey(identityPoint)).find((x) => x.type === 'prepare');
    assert.ok(prepare?.type === 'prepare');
    assert.throws(() => alice.streamCipher(prepare.publicKey), InvalidKeyError);
  });

  it('validates its options', () => {
    assert.throws(
      () => new HelloHandshake({ identity: alice, expectedPeerId: 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', initiator: true }),
      InvalidPeerIdError,
    );
    assert.throws(
      () => new HelloHandshake({ identity: alice, expectedPeerId: bob.peerId, name: 'x'.repeat(65), initiator: true }),
      InvalidArgumentError,
    );
    assert.throws(() => helloHandshake('x'.repeat(65)), InvalidArgumentError);
  });

  it('helloHandshake(name) makes the default: an initiator that expects the backend\'s peer ID', () => {
    const make = helloHandshake('alice');
    const hs = make({ identity: alice, peerId: bob.peerId, backend: 'chat', streams: ['chat'] });
    assert.ok(hs instanceof HelloHandshake);
    assert.equal(hs.initiator, true);
    assert.equal(hs.expectedPeerId, bob.peerId);
    assert.deepEqual(sent(hs.start()).map(hex), [hex(encodeHello('alice')), hex(encodePubKey(alice.publicKey))]);
  });
});
