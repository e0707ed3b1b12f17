/**
 * Byte helpers: hex, UTF-8, concatenation, comparison, base58btc, base32 and unsigned varints.
 * Dependency-free so the browser bundle stays small.
 */

import { FramingError, InvalidArgumentError } from './errors.js';

// ------------------------------------------------------------------------------------------
// hex

const HEX = '0123456789abcdef';

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += HEX[b >> 4]! + HEX[b & 15]!;
  return out;
}

/** Bytes of a hex string (either case, even length, no prefix or separators). */
export function fromHex(hex: string): Uint8Array {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new InvalidArgumentError('not an even-length hex string');
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// ------------------------------------------------------------------------------------------
// UTF-8

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Equality in time that depends only on the lengths (safe for comparing secrets and tags). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

// ------------------------------------------------------------------------------------------
// base58btc (Bitcoin alphabet), as in libp2p peer IDs and multibase 'z'

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const B58_INDEX = new Map<string, number>([...B58].map((c, i) => [c, i]));
/** Longest input the decoder accepts; peer IDs are 46–52 characters. */
export const BASE58_MAX_LENGTH = 1024;

/** base58btc: each leading zero byte becomes '1', the rest is the big-endian number in base 58. */
export function base58Encode(bytes: Uint8Array): string {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  const digits: number[] = []; // base-58 digits, least significant first
  for (let i = zeros; i < bytes.length; i++) {
    let carry = bytes[i]!;
    for (let j = 0; j < digits.length; j++) {
      carry += digits[j]! * 256;
      digits[j] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = Math.floor(carry / 58);
    }
  }
  let out = '1'.repeat(zeros);
  for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]!]!;
  return out;
}

/** Inverse of {@link base58Encode}; throws {@link InvalidArgumentError} on other characters. */
export function base58Decode(text: string): Uint8Array {
  if (typeof text !== 'string' || text.length > BASE58_MAX_LENGTH) {
    throw new InvalidArgumentError('not a base58btc string (or longer than 1024 characters)');
  }
  let zeros = 0;
  while (zeros < text.length && text[zeros] === '1') zeros++;
  const bytes: number[] = []; // base-256 digits, least significant first
  for (let i = zeros; i < text.length; i++) {
    const value = B58_INDEX.get(text[i]!);
    if (value === undefined) throw new InvalidArgumentError(`invalid base58btc character at ${i}`);
    let carry = value;
    for (let j = 0; j < bytes.length; j++) {
      carry += bytes[j]! * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes.push(carry & 0xff);
      carry >>= 8;
    }
  }
  const out = new Uint8Array(zeros + bytes.length);
  for (let i = 0; i < bytes.length; i++) out[out.length - 1 - i] = bytes[i]!;
  return out;
}

// ------------------------------------------------------------------------------------------
// base32 (RFC 4648 §6 alphabet, uppercase, no padding)

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without '=' padding (5 bytes → 8 characters). */
export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff; // at most 12 bits are ever pending
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >> bits) & 31]!;
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31]!;
  return out;
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
