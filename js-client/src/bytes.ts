/**
 * Byte helpers: hex, UTF-8, concatenation, comparison, base58btc, base32, base64url-style
 * encoding and unsigned varints. Hex, concatenation and comparison are @noble's (already in the
 * bundle for the crypto); the rest is dependency-free.
 */

import { equalBytes as nobleEqualBytes } from '@noble/ciphers/utils.js';
import { bytesToHex, concatBytes as nobleConcatBytes, hexToBytes } from '@noble/hashes/utils.js';
import { FramingError, InvalidArgumentError } from './errors.js';

// ------------------------------------------------------------------------------------------
// hex

/** Lowercase hex of `bytes`. */
export const toHex: (bytes: Uint8Array) => string = bytesToHex;

/** Bytes of a hex string (either case, even length, no prefix or separators). */
export function fromHex(hex: string): Uint8Array {
  try {
    return hexToBytes(hex);
  } catch (cause) {
    throw new InvalidArgumentError('not hex', { cause });
  }
}

// ------------------------------------------------------------------------------------------
// UTF-8

const encoder = new TextEncoder();
const strictDecoder = /* @__PURE__ */ new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decode UTF-8; malformed input throws {@link InvalidArgumentError} (never U+FFFD). */
export function utf8Decode(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch (cause) {
    throw new InvalidArgumentError('invalid UTF-8', { cause });
  }
}

// ------------------------------------------------------------------------------------------
// concat / equal

export const concatBytes: (...parts: Uint8Array[]) => Uint8Array = nobleConcatBytes;

/** Equality in time that depends only on the lengths (safe for comparing secrets and tags). */
export const equalBytes: (a: Uint8Array, b: Uint8Array) => boolean = nobleEqualBytes;

// ------------------------------------------------------------------------------------------
// base58btc (Bitcoin alphabet), as in libp2p peer IDs and multibase 'z'

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
/** Longest input the decoder accepts; peer IDs are 46–52 characters. */
export const BASE58_MAX_LENGTH = 1024;

/** Big-endian `digits` in base `from` as big-endian digits in base `to`, without leading zeros. */
function rebase(digits: ArrayLike<number>, from: number, to: number): number[] {
  const out: number[] = []; // least significant first while converting
  for (let i = 0; i < digits.length; i++) {
    let carry = digits[i]!;
    for (let j = 0; j < out.length; j++) {
      carry += out[j]! * from;
      out[j] = carry % to;
      carry = Math.floor(carry / to);
    }
    for (; carry > 0; carry = Math.floor(carry / to)) out.push(carry % to);
  }
  return out.reverse();
}

/** base58btc: each leading zero byte becomes '1', the rest is the big-endian number in base 58. */
export function base58Encode(bytes: Uint8Array): string {
  let zeros = 0;
  while (bytes[zeros] === 0) zeros++;
  return '1'.repeat(zeros) + rebase(bytes, 256, 58).map((d) => B58[d]).join('');
}

/** Inverse of {@link base58Encode}; throws {@link InvalidArgumentError} on other characters. */
export function base58Decode(text: string): Uint8Array {
  const ok = typeof text === 'string' && text.length <= BASE58_MAX_LENGTH;
  const digits = ok ? [...text].map((c) => B58.indexOf(c)) : [-1];
  if (digits.includes(-1)) throw new InvalidArgumentError('not base58btc');
  let zeros = 0;
  while (digits[zeros] === 0) zeros++;
  return Uint8Array.from([...digits.slice(0, zeros), ...rebase(digits, 58, 256)]);
}

// ------------------------------------------------------------------------------------------
// RFC 4648 without padding: base32 here, base64url in codec.ts

/**
 * `bytes` as characters of `alphabet`, `bits` (5 for base32, 6 for base64) per character, most
 * significant bits first, the last character zero-padded, no '=' (RFC 4648 without padding).
 */
export function radixEncode(bytes: Uint8Array, alphabet: string, bits: number): string {
  const mask = (1 << bits) - 1;
  let out = '';
  let acc = 0;
  let pending = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff; // at most bits − 1 + 8 bits are ever pending
    pending += 8;
    while (pending >= bits) out += alphabet[(acc >> (pending -= bits)) & mask];
  }
  if (pending > 0) out += alphabet[(acc << (bits - pending)) & mask];
  return out;
}

/** RFC 4648 base32 (uppercase) without '=' padding (5 bytes → 8 characters). */
export function base32Encode(bytes: Uint8Array): string {
  return radixEncode(bytes, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 5);
}

// ------------------------------------------------------------------------------------------
// unsigned LEB128 varints (multiformats unsigned-varint, protobuf, cramberry)

/** Go's `binary.MaxVarintLen64`: a uvarint is at most 10 bytes. */
export const MAX_UVARINT_BYTES = 10;

/** Minimal encoding of an integer 0 ≤ value ≤ 2^53 − 1. */
export function encodeUvarint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`uvarint value must be an integer in [0, 2^53), got ${value}`);
  }
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return Uint8Array.from(out);
}

/** Length of {@link encodeUvarint}(value) without allocating. */
export function uvarintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n++;
  }
  return n;
}

/** A decoded varint: its value and the offset just after it. */
export interface Uvarint {
  value: number;
  next: number;
}

/**
 * Decode one uvarint from `buf[offset:end]` the way Go's `binary.ReadUvarint` / cramberry's
 * reader do: non-minimal encodings are accepted, at most 10 bytes, a 10th byte above 1 overflows.
 *
 * Returns `undefined` when `end` comes first (the caller decides whether that is an error).
 * Throws {@link FramingError} on overflow and when the value exceeds `max` (default 2^53 − 1,
 * the largest integer a JS number holds exactly; Go rejects any larger length too, §6.2).
 */
export function decodeUvarint(
  buf: Uint8Array,
  offset = 0,
  end = buf.length,
  max = Number.MAX_SAFE_INTEGER,
): Uvarint | undefined {
  let value = 0;
  let scale = 1;
  const stop = Math.min(end, buf.length, offset + MAX_UVARINT_BYTES);
  for (let i = offset; i < stop; i++) {
    const b = buf[i]!;
    if (i - offset === MAX_UVARINT_BYTES - 1 && b > 1) {
      throw new FramingError('varint overflows 64 bits');
    }
    value += (b & 0x7f) * scale; // exact up to 2^53; beyond, only "too large" matters
    if (b < 0x80) {
      if (value > max) throw new FramingError(`varint value ${value} exceeds the limit ${max}`);
      return { value, next: i + 1 };
    }
    scale *= 0x80;
  }
  return undefined;
}
