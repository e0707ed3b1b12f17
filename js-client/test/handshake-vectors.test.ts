// tests/vectors/hello_handshake.json, shared with the Python SDK (tests/sdk/test_handshake.py):
// every transcript replayed through the TypeScript HelloHandshake, step by step, plus the Hello
// name decoding and the malformed messages. Names are mapped as the file's `_about` says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { GlueberryError, HandshakeError } from '../src/errors.js';
import {
  type HandshakeEvent,
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

/** TS events as the vector file writes them: peerName → peer_hello, prepared → prepare, established → finalize. */
function asVector(events: HandshakeEvent[]): VectorEvent[] {
  return events.map((e): VectorEvent => {
    switch (e.type) {
      case 'peerName':
        return { type: 'peer_hello', name: e.name };
      case 'prepared':
        return { type: 'prepare', public_key: hex(e.publicKey) };
      case 'established':
        return { type: 'finalize' };
    }
  });
}

function call(hs: HelloHandshake, step: Step): { send: Uint8Array[]; events: HandshakeEvent[] } {
  switch (step.call) {
    case 'start':
      return { send: hs.start(), events: [] };
    case 'receive':
      assert.equal(typeof step.message, 'string', 'a receive step has a message');
      return hs.receive(h(step.message!));
    case 'established_by_traffic':
      return { send: [], events: hs.markEstablishedByTraffic() };
    default:
      throw new Error(`unknown call ${String(step.call)}`);
  }
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
        const hs = new HelloHandshake({
          identity: identity(t.local),
          expectedPeerId: peer(t.remote).peer_id,
          name: t.hello_name,
          initiator: t.initiator,
        });
        assert.equal(hs.initiator, t.initiator);
        t.steps.forEach((step, index) => {
          const where = `${t.name} step ${index} (${step.call}${step.message === undefined ? '' : ' ' + step.message})`;
          assert.ok(step.state in STATES, `${where}: known state ${step.state}`);
          if (step.error !== undefined) {
            // a step with an error returns nothing
            assert.equal(step.send, undefined, where);
            assert.equal(step.events, undefined, where);
            throwsCode(() => call(hs, step), step.error, where);
          } else {
            const { send, events } = call(hs, step);
            assert.deepEqual(send.map(hex), step.send, `${where}: send`);
            assert.deepEqual(asVector(events), step.events, `${where}: events`);
            for (const e of events) {
              if (e.type === 'prepared') assert.equal(e.cipher, hs.cipher, `${where}: prepared carries the cipher`);
            }
          }
          assert.equal(hs.state, STATES[step.state], `${where}: state`);
          // (the vectors say nothing of the cipher once failed: a failed machine keeps one it had)
          if (step.state === 'started' || step.state === 'hello_sent') assert.equal(hs.cipher, undefined, `${where}: no cipher`);
          if (step.state === 'prepared' || step.state === 'established') assert.ok(hs.cipher, `${where}: a cipher`);
        });
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
          assert.deepEqual(asVector(hs.receive(message).events), [{ type: 'peer_hello', name: c.name }]);
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
