// tests/vectors/hello_handshake.json, shared with the Python SDK (tests/sdk/test_handshake.py):
// every transcript replayed through the TypeScript HelloHandshake, step by step, plus the Hello
// name decoding and the malformed messages. Names are mapped as the file's `_about` says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { GlueberryError, HandshakeError } from '../src/errors.js';
import {
  type HandshakeAction,
  type HandshakeState,
  HelloHandshake,
  decodeHandshakeMessage,
} from '../src/handshake.js';
import { Identity, peerIdFromPublicKey } from '../src/identity.js';
import { h, hex, vectors, vectorsPath } from './helpers.js';

type VectorState = 'started' | 'hello_sent' | 'prepared' | 'established' | 'failed';
type VectorError = 'handshake' | 'key_mismatch' | 'invalid_key' | 'invalid_state';
type VectorEvent =
  | { type: 'peer_hello'; name: string }
  | { type: 'prepare'; public_key: string }
  | { type: 'finalize' };

interface Step {
  call: 'start' | 'receive' | 'established_by_traffic';
  message?: string;
  send?: string[];
  events?: VectorEvent[];
  state: VectorState;
  error?: VectorError;
}

interface Transcript {
  name: string;
  note: string;
  local: string;
  remote: string;
  hello_name: string;
  initiator: boolean;
  steps: Step[];
  peer_name: string | null;
}

interface Peer {
  ed25519_seed: string | null;
  ed25519_public_key: string;
  peer_id: string;
}

interface HelloVectors {
  _about: string;
  peers: Record<string, Peer>;
  transcripts: Transcript[];
  hello_names: { cases: { message: string; name: string }[] };
  malformed_messages: { cases: { message: string; reason: string }[] };
}

const file = JSON.parse(readFileSync(vectorsPath('hello_handshake.json'), 'utf8')) as HelloVectors;

/** Python's started / hello_sent are both TS 'handshaking'; the other states are the same word. */
const STATES: Record<VectorState, HandshakeState> = {
  started: 'handshaking',
  hello_sent: 'handshaking',
  prepared: 'prepared',
  established: 'established',
  failed: 'failed',
};
const ERROR_CODES: readonly VectorError[] = ['handshake', 'key_mismatch', 'invalid_key', 'invalid_state'];

function peer(name: string): Peer {
  const p = file.peers[name];
  assert.ok(p, `peer ${name} in the vector file`);
  return p;
}

function identity(name: string): Identity {
  const seed = peer(name).ed25519_seed;
  assert.ok(seed !== null, `peer ${name} has a seed (it is a local identity)`);
  return Identity.fromSeed(h(seed));
}

/** TS actions as the vector file writes its events: info → peer_hello, prepare → prepare, complete → finalize. */
function asVector(actions: HandshakeAction[]): VectorEvent[] {
  return actions.flatMap((a): VectorEvent[] => {
    switch (a.type) {
      case 'info':
        return [{ type: 'peer_hello', name: a.info.name as string }];
      case 'prepare':
        return [{ type: 'prepare', public_key: hex(a.publicKey) }];
      case 'complete':
        return [{ type: 'finalize' }];
      default:
        return [];
    }
  });
}

/**
 * One step, as a session runs it: the handshake's actions, and on `prepare` the stream key
 * derived from the key (where an unusable key, low-order or not a curve point, throws
 * InvalidKeyError: the Python machine raises it inside the handshake, the TypeScript session when
 * it prepares; either way that step fails).
 */
function call(hs: HelloHandshake, step: Step, local: Identity): { send: Uint8Array[]; events: HandshakeAction[] } {
  let actions: HandshakeAction[];
  switch (step.call) {
    case 'start':
      actions = hs.start();
      break;
    case 'receive':
      assert.equal(typeof step.message, 'string', 'a receive step has a message');
      actions = hs.receive(h(step.message!));
      break;
    case 'established_by_traffic':
      actions = hs.markEstablishedByTraffic();
      break;
    default:
      throw new Error(`unknown call ${String(step.call)}`);
  }
  for (const a of actions) if (a.type === 'prepare') local.streamCipher(a.publicKey);
  return { send: actions.flatMap((a) => (a.type === 'send' ? [a.data] : [])), events: actions };
}

/** Assert `fn` throws the client error with `code`; for `handshake`, HandshakeError itself (no subclass). */
function throwsCode(fn: () => unknown, code: VectorError, where: string): void {
  assert.ok(ERROR_CODES.includes(code), `${where}: known error code ${code}`);
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof GlueberryError, `${where}: a GlueberryError, got ${String(err)}`);
      assert.equal(err.code, code, where);
      if (code === 'handshake') assert.equal(err.constructor, HandshakeError, `${where}: HandshakeError itself`);
      return true;
    },
    where,
  );
}

describe('hello_handshake.json vectors', () => {
  it('uses the peers of glueberry.json and the seed 03*32 for mallory', () => {
    for (const [name, expected] of [['a', vectors.peer_a], ['b', vectors.peer_b]] as const) {
      assert.equal(peer(name).ed25519_seed, expected.ed25519_seed);
      assert.equal(peer(name).ed25519_public_key, expected.ed25519_public_key);
      assert.equal(peer(name).peer_id, expected.peer_id);
    }
    assert.equal(peer('mallory').ed25519_seed, '03'.repeat(32));
    for (const [name, p] of Object.entries(file.peers)) {
      assert.equal(peerIdFromPublicKey(h(p.ed25519_public_key)), p.peer_id, name);
      if (p.ed25519_seed !== null) {
        const id = identity(name);
        assert.equal(hex(id.publicKey), p.ed25519_public_key, name);
        assert.equal(id.peerId, p.peer_id, name);
      }
    }
  });

  it('lists every transcript this file replays', () => {
    assert.deepEqual(
      file.transcripts.map((t) => t.name),
      [
        'initiator',
        'responder',
        'both_initiators',
        'complete_first_and_duplicates',
        'pubkey_before_hello',
        'established_by_traffic',
        'late_hello_after_established',
        'key_mismatch',
        'duplicate_pubkey_with_another_key',
        'unknown_type',
        'low_order_key',
        'key_not_on_curve',
      ],
    );
  });

  describe('transcripts', () => {
    for (const t of file.transcripts) {
      it(`${t.name}: ${t.note}`, () => {
        const local = identity(t.local);
        const hs = new HelloHandshake({
          identity: local,
          expectedPeerId: peer(t.remote).peer_id,
          name: t.hello_name,
          initiator: t.initiator,
        });
        assert.equal(hs.initiator, t.initiator);
        for (const [index, step] of t.steps.entries()) {
          const where = `${t.name} step ${index} (${step.call}${step.message === undefined ? '' : ' ' + step.message})`;
          assert.ok(step.state in STATES, `${where}: known state ${step.state}`);
          if (step.error !== undefined) {
            // a step with an error returns nothing
            assert.equal(step.send, undefined, where);
            assert.equal(step.events, undefined, where);
            throwsCode(() => call(hs, step, local), step.error, where);
            // an unusable key fails the session that prepares it; the machine itself had prepared
            if (step.error === 'invalid_key') continue;
          } else {
            const { send, events } = call(hs, step, local);
            assert.deepEqual(send.map(hex), step.send, `${where}: send`);
            assert.deepEqual(asVector(events), step.events, `${where}: events`);
          }
          assert.equal(hs.state, STATES[step.state], `${where}: state`);
        }
        assert.equal(hs.peerName, t.peer_name ?? undefined, `${t.name}: peer name`);
      });
    }
  });

  describe('Hello names', () => {
    for (const c of file.hello_names.cases) {
      it(`${c.message.slice(0, 24)} reads as ${JSON.stringify(c.name)}`, () => {
        const message = h(c.message);
        assert.deepEqual(decodeHandshakeMessage(message), { type: 'hello', name: c.name });
        for (const initiator of [false, true]) {
          const hs = new HelloHandshake({ identity: identity('a'), expectedPeerId: peer('b').peer_id, initiator });
          hs.start();
          assert.deepEqual(asVector(hs.receive(message)), [{ type: 'peer_hello', name: c.name }]);
          assert.equal(hs.peerName, c.name);
          assert.equal(hs.state, 'handshaking');
        }
      });
    }
  });

  describe('malformed messages', () => {
    for (const c of file.malformed_messages.cases) {
      it(`${c.reason} (${c.message || 'empty'}): HandshakeError, in either role`, () => {
        const message = h(c.message);
        throwsCode(() => decodeHandshakeMessage(message), 'handshake', `decode ${c.reason}`);
        for (const initiator of [true, false]) {
          const where = `${c.reason}, ${initiator ? 'initiator' : 'responder'}`;
          const hs = new HelloHandshake({ identity: identity('a'), expectedPeerId: peer('b').peer_id, initiator });
          hs.start();
          throwsCode(() => hs.receive(message), 'handshake', where);
          assert.equal(hs.state, 'failed', where);
          throwsCode(() => hs.receive(h('01')), 'invalid_state', `${where}, after`);
        }
      });
    }
  });
});
