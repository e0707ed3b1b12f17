/**
 * Glueberry message framing: cramberry `WriteDelimited` of a Go `[]byte` (PROTOCOL.md §6).
 *
 * Every message on every Glueberry stream, handshake and encrypted alike, carries **two** uvarint
 * length prefixes:
 *
 *     wire = uvarint(len(inner)) || inner          inner = uvarint(len(payload)) || payload
 *
 * The writer ({@link encodeFrame}) produces exactly the bytes Go writes (§6.1, minimal varints).
 * The reader ({@link FrameDecoder}) accepts what Go's `MessageIterator` accepts (§6.2) —
 * non-minimal varints, ignored bytes after the inner string, Go's end-of-stream rules — but
 * enforces the caller's own bound on the outer length instead of Go's 64 MiB, before buffering
 * anything of the frame. Same behaviour as python-sdk `glueberry.wire.framing`.
 */

import { concatBytes, decodeUvarint, encodeUvarint, uvarintLength } from './bytes.js';
import { FrameTooLargeError, FramingError, InvalidArgumentError, InvalidStateError } from './errors.js';

/** cramberry `DefaultLimits.MaxMessageSize`: the largest outer length a Go reader accepts (§6.2). */
export const GO_MAX_FRAME_SIZE = 64 * 1024 * 1024;

/**
 * The outer length field (`len(inner)`) of the frame carrying a `payloadLength`-byte payload.
 * Size a {@link FrameDecoder} from a payload limit with it: a receiver of encrypted frames of up
 * to 1 MiB of plaintext needs `new FrameDecoder(outerLength(MAX_MESSAGE_SIZE + OVERHEAD))`.
 */
export function outerLength(payloadLength: number): number {
  if (!Number.isSafeInteger(payloadLength) || payloadLength < 0) {
    throw new InvalidArgumentError('payload length must be a non-negative integer');
  }
  return payloadLength + uvarintLength(payloadLength);
}

/** The two length prefixes that precede a `payloadLength`-byte payload on the wire. */
export function frameHeader(payloadLength: number): Uint8Array {
  const inner = encodeUvarint(payloadLength);
  return concatBytes(encodeUvarint(payloadLength + inner.length), inner);
}

/**
 * The exact bytes Go's `StreamWriter.WriteDelimited(&payload)` writes (§6.1). An empty payload
 * encodes as `01 00`; "hello" as `06 05 68 65 6c 6c 6f`.
 */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  return concatBytes(frameHeader(payload.length), payload);
}

const OPEN = 0;
const ENDED = 1; // clean end of stream seen
const FAILED = 2;

/**
 * Sans-I/O reader of a Glueberry frame stream, as tolerant as Go's and bounded by us.
 *
 * `push(bytes)` returns the payloads of the frames completed by those bytes (input may be split
 * anywhere); `end()` tells it the stream ended. `maxFrameSize` bounds the outer length field (the
 * frame's size after its first prefix, see {@link outerLength}); a larger announced length throws
 * {@link FrameTooLargeError} before any of the frame is buffered, so the decoder never holds more
 * than `maxFrameSize + 10` bytes. Go's own bound is {@link GO_MAX_FRAME_SIZE}.
 *
 * Malformed input throws a {@link FramingError}; the payloads completed earlier in the same
 * `push` are in its `payloads` (Go delivers them too). After an error or `end()` the decoder
 * refuses further use with {@link InvalidStateError}. Go ends its reader on the same errors
 * without resetting the stream (§4.4).
 */
export class FrameDecoder {
  readonly maxFrameSize: number;
  #chunks: Uint8Array[] = []; // unparsed input, in order (private copies)
  #pending = 0; // total length of #chunks
  #need = 1; // parsing cannot progress before #pending reaches this
  #state: number = OPEN;

  constructor(maxFrameSize: number) {
    if (!Number.isSafeInteger(maxFrameSize) || maxFrameSize < 1) {
      throw new InvalidArgumentError('maxFrameSize must be a positive integer');
    }
    this.maxFrameSize = maxFrameSize;
  }

  /** Bytes received but not yet part of a complete frame. */
  get bufferedBytes(): number {
    return this.#pending;
  }

  /** True once `end()` was called or an error occurred. */
  get done(): boolean {
    return this.#state !== OPEN;
  }

  /**
   * Feed bytes read from the stream; returns the payloads of the frames they complete (copies,
   * safe to keep). Throws {@link FrameTooLargeError} / {@link FramingError} (§6.2).
   */
  push(data: Uint8Array): Uint8Array[] {
    if (this.#state !== OPEN) {
      throw new InvalidStateError('frame decoder: data received after end of stream or error');
    }
    if (data.length === 0) return [];
    if (this.#pending + data.length < this.#need) {
      this.#chunks.push(data.slice()); // never keep a view of a buffer the caller may reuse
      this.#pending += data.length;
      return [];
    }
    let buf = data;
    if (this.#chunks.length > 0) {
      this.#chunks.push(data);
      buf = concatBytes(...this.#chunks);
    }
    this.#chunks = [];
    this.#pending = 0;
    const out: Uint8Array[] = [];
    try {
      this.#parse(buf, out);
    } catch (err) {
      this.#fail();
      if (err instanceof FrameTooLargeError) throw new FrameTooLargeError(err.message, { payloads: out });
      if (err instanceof FramingError) throw new FramingError(err.message, { payloads: out });
      throw err;
    }
    return out;
  }

  /**
   * The stream ended. Go's rules (§6.2 point 5): the end is clean before a frame, inside its outer
   * length or right after it; after at least one byte of the frame body it is an error, thrown
   * here as a {@link FramingError}.
   */
  end(): void {
    if (this.#state !== OPEN) {
      throw new InvalidStateError('frame decoder: end of stream after end of stream or error');
    }
    if (this.#pending > 0) {
      const data = concatBytes(...this.#chunks);
      const outer = decodeUvarint(data, 0, data.length, Number.MAX_SAFE_INTEGER);
      if (outer !== undefined && outer.next < data.length) {
        this.#fail();
        throw new FramingError(`stream ended inside a frame (${data.length - outer.next} body bytes)`);
      }
    }
    this.#chunks = [];
    this.#pending = 0;
    this.#state = ENDED;
  }

  #fail(): void {
    this.#state = FAILED;
    this.#chunks = [];
    this.#pending = 0;
  }

  /** Decode every complete frame in `buf` into `out`; keep the incomplete rest. */
  #parse(buf: Uint8Array, out: Uint8Array[]): void {
    const end = buf.length;
    const limit = this.maxFrameSize;
    let pos = 0;
    while (pos < end) {
      // No value cap here: a huge length must fail as "too large" (as in Go and Python), not as malformed.
      const outer = decodeUvarint(buf, pos, end, Infinity);
      if (outer === undefined) {
        this.#need = end - pos + 1; // the outer varint is incomplete
        return this.#keep(buf, pos);
      }
      const length = outer.value;
      if (length > limit) {
        throw new FrameTooLargeError(`frame of ${length} bytes announced, limit is ${limit}`);
      }
      if (length === 0) throw new FramingError('frame of length 0: the inner length is missing');
      const frameEnd = outer.next + length;
      if (frameEnd > end) {
        this.#need = frameEnd - pos;
        return this.#keep(buf, pos);
      }
      // Inner length: must fit in the frame; bytes after the inner string are ignored (§6.2).
      const inner = decodeUvarint(buf, outer.next, frameEnd);
      if (inner === undefined) throw new FramingError('inner length truncated by the end of the frame');
      if (inner.value > frameEnd - inner.next) {
        throw new FramingError(
          `inner length ${inner.value} exceeds the ${frameEnd - inner.next} bytes left in the frame`,
        );
      }
      out.push(buf.slice(inner.next, inner.next + inner.value));
      pos = frameEnd;
    }
    this.#need = 1;
  }

  #keep(buf: Uint8Array, pos: number): void {
    const rest = buf.slice(pos);
    this.#chunks = [rest];
    this.#pending = rest.length;
  }
}
