import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeUvarint } from '../src/bytes.js';
import { FrameTooLargeError, FramingError, InvalidArgumentError, InvalidStateError } from '../src/errors.js';
import { FrameDecoder, GO_MAX_FRAME_SIZE, encodeFrame, frameHeader, outerLength } from '../src/framing.js';
import { h, hex, vectors } from './helpers.js';

type Outcome = { result: 'accept' | 'eof' | 'error'; payloads: string[] };

/** Feed `wire` in the given chunks then end the stream; report like the reader_acceptance vectors. */
function read(wire: Uint8Array, cuts: number[] = [], max = GO_MAX_FRAME_SIZE): Outcome {
  const decoder = new FrameDecoder(max);
  const payloads: string[] = [];
  let start = 0;
  try {
    for (const cut of [...cuts, wire.length]) {
      payloads.push(...decoder.push(wire.subarray(start, cut)).map(hex));
      start = cut;
    }
    decoder.end();
  } catch (err) {
    if (!(err instanceof FramingError)) throw err;
    payloads.push(...err.payloads.map(hex));
    return { result: 'error', payloads };
  }
  return { result: payloads.length > 0 ? 'accept' : 'eof', payloads };
}

describe('PROTOCOL.md §6.1 writer (framing_examples)', () => {
  for (const c of vectors.framing_examples.cases) {
    it(c.note, () => {
      if (c.payload !== undefined) {
        assert.equal(hex(encodeFrame(h(c.payload))), c.wire);
        return;
      }
      const payload = new Uint8Array(c.payload_len!).fill(parseInt(c.payload_byte!, 16));
      const wire = encodeFrame(payload);
      const prefix = h(c.wire_prefix!);
      assert.equal(hex(wire.subarray(0, prefix.length)), c.wire_prefix);
      assert.equal(wire.length, prefix.length + payload.length);
      assert.deepEqual(wire.subarray(prefix.length), payload);
      assert.deepEqual(frameHeader(payload.length), prefix);
      assert.deepEqual(read(wire).payloads, [hex(payload)]);
    });
  }
  it('handshake_message: 01 02 03 → 04 03 01 02 03', () => {
    assert.equal(hex(encodeFrame(h(vectors.handshake_message.payload))), vectors.handshake_message.wire);
    assert.deepEqual(read(h(vectors.handshake_message.wire)).payloads, [vectors.handshake_message.payload]);
  });
  it('encrypted_frame: the 43-byte frame as 2c 2b ‖ frame', () => {
    assert.equal(hex(encodeFrame(h(vectors.encrypted_frame.frame))), vectors.encrypted_frame.wire);
  });
  it('outerLength is the outer length field', () => {
    for (const n of [0, 1, 126, 127, 128, 200, 16383, 16384, 1 << 20]) {
      const wire = frameHeader(n);
      assert.deepEqual(wire.subarray(0, encodeUvarint(outerLength(n)).length), encodeUvarint(outerLength(n)));
    }
    assert.equal(outerLength(1048576 + 28), 1048607);
    assert.throws(() => outerLength(-1), InvalidArgumentError);
  });
});

describe('PROTOCOL.md §6.2 reader (reader_acceptance)', () => {
  for (const c of vectors.reader_acceptance.cases) {
    it(`${c.wire || '(empty)'}: ${c.result} — ${c.note}`, () => {
      const wire = h(c.wire);
      assert.deepEqual(read(wire), { result: c.result, payloads: c.payloads });
      for (let cut = 1; cut < wire.length; cut++) {
        assert.deepEqual(read(wire, [cut]), { result: c.result, payloads: c.payloads }, `split at ${cut}`);
      }
      assert.deepEqual(read(wire, [...wire.keys()]), { result: c.result, payloads: c.payloads }, 'byte by byte');
    });
  }
});

describe('FrameDecoder', () => {
  const messages = ['', '68656c6c6f', 'aa'.repeat(127), 'bb'.repeat(200), vectors.encrypted_frame.frame];
  const transcript = Uint8Array.from(messages.flatMap((m) => [...encodeFrame(h(m))]));

  it('decodes a transcript split at every byte', () => {
    assert.deepEqual(read(transcript), { result: 'accept', payloads: messages });
    for (let cut = 1; cut < transcript.length; cut++) {
      assert.deepEqual(read(transcript, [cut]).payloads, messages, `split at ${cut}`);
    }
    assert.deepEqual(read(transcript, [...transcript.keys()]).payloads, messages);
  });

  it('returns copies: the caller may reuse its buffer', () => {
    const decoder = new FrameDecoder(100);
    const buf = encodeFrame(h('010203'));
    const [payload] = decoder.push(buf.subarray(0, 3)).concat(decoder.push(buf.subarray(3)));
    buf.fill(0xee);
    assert.equal(hex(payload!), '010203');
    const part = encodeFrame(h('0405'));
    assert.deepEqual(decoder.push(part.subarray(0, 3)), []);
    part.fill(0xee, 0, 3); // the first chunk was buffered: it must have been copied
    assert.deepEqual(decoder.push(encodeFrame(h('0405')).subarray(3)).map(hex), ['0405']);
  });

  it('accepts a frame of exactly maxFrameSize and rejects one byte more before buffering it', () => {
    const payload = new Uint8Array(98);
    assert.equal(outerLength(98), 99);
    assert.deepEqual(read(encodeFrame(payload), [], 99).payloads, [hex(payload)]);
    const decoder = new FrameDecoder(98);
    // only the header has arrived: the error comes now, not after 99 bytes were buffered
    assert.throws(() => decoder.push(frameHeader(98).subarray(0, 1)), FrameTooLargeError);
    assert.equal(decoder.bufferedBytes, 0);
    assert.throws(() => new FrameDecoder(GO_MAX_FRAME_SIZE).push(h('81808020')), FrameTooLargeError);
    // 2^64 − 1, beyond exact JS numbers: still "too large", as Go's ErrMaxSizeExceeded
    assert.throws(() => new FrameDecoder(GO_MAX_FRAME_SIZE).push(h('ffffffffffffffffff01')), FrameTooLargeError);
  });

  it('hands over the frames decoded before an error, then refuses further use', () => {
    const decoder = new FrameDecoder(100);
    const err = (() => {
      try {
        decoder.push(h('0403010203' + '0100' + '00'));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof FramingError);
    assert.equal(err.code, 'malformed_frame');
    assert.deepEqual(err.payloads.map(hex), ['010203', '']);
    assert.equal(decoder.done, true);
    assert.throws(() => decoder.push(h('0100')), InvalidStateError);
    assert.throws(() => decoder.end(), InvalidStateError);
  });

  it('refuses data after end()', () => {
    const decoder = new FrameDecoder(100);
    decoder.end();
    assert.throws(() => decoder.push(h('0100')), InvalidStateError);
    assert.deepEqual(new FrameDecoder(1).push(new Uint8Array()), []);
  });

  it('rejects an inner varint truncated by the frame end and an overflowing inner varint', () => {
    assert.equal(read(h('0180')).result, 'error');
    assert.equal(read(h('0affffffffffffffffff02')).result, 'error');
  });

  it('keeps at most one frame buffered and reports it', () => {
    const decoder = new FrameDecoder(1000);
    decoder.push(frameHeader(500));
    decoder.push(new Uint8Array(200));
    assert.equal(decoder.bufferedBytes, 204); // 4-byte header + 200
    assert.equal(decoder.push(new Uint8Array(300)).length, 1);
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('validates maxFrameSize', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new FrameDecoder(bad), InvalidArgumentError);
  });
});
