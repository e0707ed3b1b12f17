import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  base32Encode,
  base58Decode,
  base58Encode,
  concatBytes,
  decodeUvarint,
  encodeUvarint,
  equalBytes,
  fromHex,
  toHex,
  utf8Decode,
  utf8Encode,
  uvarintLength,
} from '../src/bytes.js';
import { FramingError, InvalidArgumentError } from '../src/errors.js';
import { h, vectors } from './helpers.js';

describe('hex', () => {
  it('round-trips every byte value, lowercase out, either case in', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.equal(toHex(all).length, 512);
    assert.deepEqual(fromHex(toHex(all)), all);
    assert.deepEqual(fromHex('ABcd'), Uint8Array.of(0xab, 0xcd));
    assert.equal(toHex(new Uint8Array()), '');
  });
  it('rejects odd length and non-hex characters', () => {
    for (const bad of ['a', 'zz', '0x00', ' 00', '0g']) assert.throws(() => fromHex(bad), InvalidArgumentError);
  });
});

describe('utf8', () => {
  it('round-trips, and rejects malformed input instead of substituting U+FFFD', () => {
    assert.equal(utf8Decode(utf8Encode('héllo 🍓')), 'héllo 🍓');
    assert.throws(() => utf8Decode(Uint8Array.of(0xc3)), InvalidArgumentError);
    assert.throws(() => utf8Decode(Uint8Array.of(0xff, 0x41)), InvalidArgumentError);
  });
  it('keeps a leading BOM (no silent stripping)', () => {
    assert.equal(utf8Decode(Uint8Array.of(0xef, 0xbb, 0xbf, 0x41)), '\ufeffA');
  });
});

describe('concat / equal', () => {
  it('concatenates in order', () => {
    assert.deepEqual(concatBytes(h('01'), new Uint8Array(), h('0203')), h('010203'));
    assert.deepEqual(concatBytes(), new Uint8Array());
  });
  it('compares content and length', () => {
    assert.ok(equalBytes(h('0102'), h('0102')));
    assert.ok(!equalBytes(h('0102'), h('0103')));
    assert.ok(!equalBytes(h('0102'), h('010200')));
    assert.ok(equalBytes(new Uint8Array(), new Uint8Array()));
  });
});

describe('base58btc', () => {
  it('encodes the peer ID multihashes of the vectors', () => {
    for (const peer of [vectors.peer_a, vectors.peer_b]) {
      assert.equal(base58Encode(h(peer.peer_id_multihash)), peer.peer_id);
      assert.deepEqual(base58Decode(peer.peer_id), h(peer.peer_id_multihash));
    }
  });
  it('matches known values (leading zeros become "1")', () => {
    assert.equal(base58Encode(new Uint8Array()), '');
    assert.equal(base58Encode(h('00')), '1');
    assert.equal(base58Encode(h('0000ff')), '115Q');
    assert.equal(base58Encode(utf8Encode('Hello World!')), '2NEpo7TZRRrLZSi2U');
    assert.deepEqual(base58Decode('115Q'), h('0000ff'));
  });
  it('round-trips random and zero-prefixed inputs', () => {
    for (let len = 0; len < 70; len++) {
      const data = globalThis.crypto.getRandomValues(new Uint8Array(len));
      if (len > 3) data.fill(0, 0, len % 4);
      assert.deepEqual(base58Decode(base58Encode(data)), data);
    }
  });
  it('rejects characters outside the alphabet and over-long input', () => {
    for (const bad of ['0', 'O', 'I', 'l', '12D3KooW+', ' 1']) assert.throws(() => base58Decode(bad), InvalidArgumentError);
    assert.throws(() => base58Decode('2'.repeat(1025)), InvalidArgumentError);
  });
});

describe('base32 (RFC 4648 §10 test vectors, without padding)', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ];
  for (const [input, output] of cases) {
    it(`"${input}" → "${output}"`, () => assert.equal(base32Encode(utf8Encode(input)), output));
  }
});

describe('uvarint', () => {
  it('encodes minimally', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [1, '01'],
      [127, '7f'],
      [128, '8001'],
      [202, 'ca01'],
      [300, 'ac02'],
      [16384, '808001'],
      [1048579, '838040'],
      [2 ** 53 - 1, 'ffffffffffffff0f'],
    ];
    for (const [value, encoded] of cases) {
      assert.equal(toHex(encodeUvarint(value)), encoded, `${value}`);
      assert.equal(uvarintLength(value), encoded.length / 2);
      assert.deepEqual(decodeUvarint(h(encoded)), { value, next: encoded.length / 2 });
    }
  });
  it('refuses values it cannot encode exactly', () => {
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN, Infinity]) assert.throws(() => encodeUvarint(bad), InvalidArgumentError);
  });
  it('decodes at an offset and stops at end', () => {
    assert.deepEqual(decodeUvarint(h('ff8001ff'), 1), { value: 128, next: 3 });
    assert.equal(decodeUvarint(h('8001'), 0, 1), undefined);
    assert.equal(decodeUvarint(h('80')), undefined);
    assert.equal(decodeUvarint(new Uint8Array()), undefined);
  });
  it('accepts non-minimal encodings, as Go does', () => {
    assert.deepEqual(decodeUvarint(h('8400')), { value: 4, next: 2 });
    assert.deepEqual(decodeUvarint(h('80808080808080808000')), { value: 0, next: 10 });
  });
  it('rejects a 10th byte above 1 (overflow) and values above the limit', () => {
    assert.throws(() => decodeUvarint(h('ffffffffffffffffff02')), FramingError);
    assert.throws(() => decodeUvarint(h('ffffffffffffffffff01')), FramingError); // 2^64 − 1 > 2^53 − 1
    assert.throws(() => decodeUvarint(h('8001'), 0, 2, 127), FramingError);
    assert.deepEqual(decodeUvarint(h('7f'), 0, 1, 127), { value: 127, next: 1 });
  });
  it('reads at most 10 bytes', () => {
    assert.equal(decodeUvarint(h('ffffffffffffffffff')), undefined); // 9 continuation bytes: incomplete
  });
});
