"""Glueberry message framing: cramberry ``WriteDelimited`` of a Go ``[]byte`` (PROTOCOL.md §6).

Every message on every Glueberry stream, handshake and encrypted alike, carries **two** uvarint
length prefixes::

    wire = uvarint(len(inner)) || inner          inner = uvarint(len(payload)) || payload

The writer (:func:`encode_frame`, :func:`frame_header`) produces exactly the bytes Go writes
(§6.1, minimal varints). The reader (:class:`FrameDecoder`) accepts what Go's
``MessageIterator`` accepts (§6.2) — non-minimal varints, ignored bytes after the inner string,
Go's end-of-stream rules — but enforces the caller's own bound on the outer length instead of
Go's 64 MiB, before buffering anything for the frame.

The decoder parses with offsets over one ``bytes`` object per call rather than a generator over
:class:`glueberry._reader.StreamReader`: it sits on the per-message hot path, and a plain loop
with inlined one- and two-byte varints is several times faster. Input split at any byte is still
handled: an incomplete frame's bytes are kept as chunks and joined once enough has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from .._varint import encode_uvarint
from ..exceptions import (
    FrameTooLarge,
    InvalidArgument,
    InvalidState,
    MalformedFrame,
    RemoteProtocolError,
    TruncatedFrame,
)

__all__ = [
    "GO_MAX_FRAME_SIZE",
    "EndOfStream",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "encode_frame",
    "frame_header",
    "outer_length",
]

#: cramberry ``DefaultLimits.MaxMessageSize``: the largest outer length a Go reader accepts (§6.2).
GO_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024

_MAX_PAYLOAD: Final = (1 << 64) - 11  # keeps the outer length below 2**64

Buffer: TypeAlias = bytes | bytearray | memoryview


# --------------------------------------------------------------------------------------------
# Writer (PROTOCOL.md §6.1)


def outer_length(payload_len: int) -> int:
    """The outer length field (``len(inner)``) of the frame for a ``payload_len``-byte payload.

    Use it to size a :class:`FrameDecoder` from a payload limit: a receiver of encrypted frames
    of up to 1 MiB of plaintext needs ``FrameDecoder(outer_length(1024 * 1024 + 28))``.
    """
    if payload_len < 0:
        raise InvalidArgument("payload length cannot be negative")
    return payload_len + len(encode_uvarint(payload_len))


def frame_header(payload_len: int) -> bytes:
    """The two length prefixes that precede a ``payload_len``-byte payload on the wire.

    ``frame_header(len(p)) + p == encode_frame(p)``; write the header and the payload separately
    (e.g. ``transport.writelines((frame_header(len(p)), p))``) to avoid copying a large payload.
    """
    if payload_len < 0x7F:  # both prefixes are one byte
        if payload_len < 0:
            raise InvalidArgument("payload length cannot be negative")
        return bytes((payload_len + 1, payload_len))
    if payload_len > _MAX_PAYLOAD:
        raise InvalidArgument("payload too large to frame")
    inner = encode_uvarint(payload_len)
    return encode_uvarint(payload_len + len(inner)) + inner


def encode_frame(payload: Buffer) -> bytes:
    """The exact bytes Go's ``StreamWriter.WriteDelimited(&payload)`` writes (§6.1).

    An empty payload encodes as ``01 00``; ``b"hello"`` as ``06 05 68 65 6c 6c 6f``.
    """
    n = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    return b"".join((frame_header(n), payload))


# --------------------------------------------------------------------------------------------
# Reader (PROTOCOL.md §6.2)


@dataclass(frozen=True, slots=True)
class Frame:
    """One message: the payload of a complete frame (handshake data or an encrypted frame)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The stream ended cleanly between frames (or where Go also treats the end as clean)."""


FrameEvent: TypeAlias = Frame | EndOfStream

_OPEN: Final = 0
_CLOSED: Final = 1  # clean end of stream seen
_FAILED: Final = 2


class FrameDecoder:
    """Sans-I/O reader of a Glueberry frame stream, as tolerant as Go's and bounded by us.

    Feed bytes with :meth:`receive_data` and the end of the stream with :meth:`receive_eof`,
    then drain :meth:`events_received`: a :class:`Frame` per message and, after a clean end,
    one :class:`EndOfStream`.

    ``max_frame_size`` bounds the outer length field (the frame's size after its first prefix,
    see :func:`outer_length`); a larger announced length raises :class:`FrameTooLarge` before
    any of the frame is buffered. The decoder never holds more than ``max_frame_size + 10``
    bytes. Go's own bound is :data:`GO_MAX_FRAME_SIZE`.

    Malformed input raises a :class:`RemoteProtocolError` out of :meth:`receive_data` or
    :meth:`receive_eof`. Frames decoded before the error stay available from
    :meth:`events_received` (Go delivers them too); any other further use raises
    :class:`InvalidState`. Go ends its reader on the same errors without resetting the stream
    (§4.4).
    """

    __slots__ = ("_chunks", "_events", "_max", "_need", "_pending", "_state")

    def __init__(self, max_frame_size: int) -> None:
        if max_frame_size < 1:
            raise InvalidArgument("max_frame_size must be at least 1")
        self._max = max_frame_size
        self._chunks: list[bytes] = []  # unparsed input, in order
        self._pending = 0  # total length of _chunks
        self._need = 1  # parsing cannot progress before _pending reaches this
        self._events: list[FrameEvent] = []
        self._state = _OPEN

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return self._pending

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes read from the stream. After calling this method: call events_received().

        Raises:
            FrameTooLarge: an outer length above ``max_frame_size``.
            RemoteProtocolError: a malformed frame (§6.2).
            InvalidState: after an error or after :meth:`receive_eof`.
        """
        if self._state != _OPEN:
            raise InvalidState("frame decoder: data received after end of stream or error")
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if not size:
            return
        if type(data) is not bytes:
            data = bytes(data)  # never keep a reference to a buffer the caller may change
        if self._pending + size < self._need:
            self._chunks.append(data)
            self._pending += size
            return
        if self._chunks:
            self._chunks.append(data)
            data = b"".join(self._chunks)
            self._chunks = []
        self._pending = 0
        try:
            self._parse(data)
        except RemoteProtocolError:
            self._fail()
            raise

    def receive_eof(self) -> None:
        """The stream ended. After calling this method: call events_received().

        Go's rules (§6.2 point 5): the end is clean before a frame, inside its outer length
        or right after it; after at least one byte of the frame body it is an error.

        Raises:
            RemoteProtocolError: the stream ended inside a frame body.
            InvalidState: after an error or a previous :meth:`receive_eof`.
        """
        if self._state != _OPEN:
            raise InvalidState("frame decoder: end of stream after end of stream or error")
        if self._pending:
            data = b"".join(self._chunks)
            value, body = _read_uvarint(data, 0, len(data))
            if value >= 0 and body < len(data):
                self._fail()
                raise TruncatedFrame(f"stream ended inside a frame ({len(data) - body} body bytes)")
        self._chunks = []
        self._pending = 0
        self._state = _CLOSED
        self._events.append(EndOfStream())

    def events_received(self) -> list[FrameEvent]:
        """Drain the frames (and end of stream) decoded so far; the list is cleared."""
        events = self._events
        self._events = []
        return events

    def _fail(self) -> None:
        self._state = _FAILED
        self._chunks = []
        self._pending = 0

    def _parse(self, buf: bytes) -> None:
        """Decode every complete frame in ``buf``; keep the incomplete rest."""
        end = len(buf)
        pos = 0
        limit = self._max
        append = self._events.append
        while pos < end:
            # Outer length: one- and two-byte varints inline (payloads below 16 KiB).
            b = buf[pos]
            if b < 0x80:
                length = b
                p = pos + 1
            elif pos + 1 < end and buf[pos + 1] < 0x80:
                length = (b & 0x7F) | (buf[pos + 1] << 7)
                p = pos + 2
            else:
                length, p = _read_uvarint(buf, pos, end)
                if length < 0:  # the outer varint is incomplete
                    self._need = end - pos + 1
                    break
            if length > limit:
                raise FrameTooLarge(f"frame of {length} bytes announced, limit is {limit}")
            if length == 0:
                raise MalformedFrame("frame of length 0: the inner length is missing")
            fend = p + length
            if fend > end:
                self._need = fend - pos
                break
            # Inner length: must fit in the frame; bytes after the inner string are ignored.
            b = buf[p]
            if b < 0x80:
                n = b
                q = p + 1
            else:
                n, q = _read_uvarint(buf, p, fend)
                if n < 0:
                    raise MalformedFrame("inner length truncated by the end of the frame")
            if n > fend - q:
                raise MalformedFrame(f"inner length {n} exceeds the {fend - q} bytes left in the frame")
            append(Frame(buf[q : q + n]))
            pos = fend
        else:
            self._need = 1
            return
        rest = buf[pos:] if pos else buf
        self._chunks = [rest]
        self._pending = len(rest)


def _read_uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Go's ``StreamReader.ReadUvarint`` over ``buf[pos:end]``: ``(value, next_pos)``.

    Non-minimal encodings are accepted; a 10th byte above 1 overflows. Returns ``(-1, -1)``
    when ``end`` comes first (the caller decides whether that is an error).
    """
    value = 0
    shift = 0
    for i in range(pos, min(pos + 10, end)):
        b = buf[i]
        if i - pos == 9 and b > 1:
            raise MalformedFrame("varint overflows 64 bits")
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    return -1, -1
