"""Data frames and batches of the gateway protocol (docs/gateway-protocol.md §5.2, §5.6), both ways.

A data frame is one binary WebSocket message: ``01 ‖ session (u16 BE) ‖ n (u8) ‖ stream name (n)
‖ payload``; the payload is the Glueberry payload as the backend receives it (handshake bytes or
``nonce ‖ ciphertext ‖ tag``), which the gateway never opens. A batch carries several data frames
in one message: ``02 ‖ (u16 BE length ‖ data frame)+``.

Decoders bound their input and raise :class:`~.errors.ProtocolViolation` with the code to use;
nothing here does I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeVar

from glueberry.config import validate_stream_name
from glueberry.exceptions import InvalidStreamName

from .codes import Code
from .errors import ProtocolViolation

__all__ = [
    "BATCH_KIND",
    "DATA_KIND",
    "MAX_BATCH_ENTRY",
    "MAX_BATCH_FRAMES",
    "MAX_SESSION",
    "DataFrame",
    "check_stream_name",
    "data_header",
    "decode_batch",
    "decode_data_frame",
    "encode_batch",
    "encode_data_frame",
    "is_batch",
    "pack_batches",
    "pack_runs",
]

DATA_KIND: Final = 0x01
BATCH_KIND: Final = 0x02
MAX_SESSION: Final = 65535
MAX_BATCH_ENTRY: Final = 0xFFFF  # a larger data frame travels alone
MAX_BATCH_FRAMES: Final = 1024
_HEADER = struct.Struct(">BHB")
T = TypeVar("T")
_ENTRY = struct.Struct(">H")


def check_stream_name(name: str) -> str:
    """A stream name the gateway relays: Glueberry's rule (PROTOCOL.md §4.1) in ASCII only, since
    the data-frame header carries it as ASCII (Go also allows other Unicode letters).

    Raises:
        InvalidStreamName.
    """
    if not isinstance(name, str) or not name.isascii():
        raise InvalidStreamName("gateway stream names are ASCII letters, digits, '-' and '_'")
    validate_stream_name(name)
    return name


@dataclass(slots=True)  # not frozen: one per relayed frame, and a frozen one costs 3x to make
class DataFrame:
    session: int
    stream: str
    payload: memoryview | bytes


def data_header(session: int, stream: str) -> bytes:
    """The header alone, to be sent with the payload without joining them."""
    name = stream.encode("ascii")
    return _HEADER.pack(DATA_KIND, session, len(name)) + name


def encode_data_frame(session: int, stream: str, payload: bytes | memoryview) -> bytes:
    return data_header(session, stream) + payload


def decode_data_frame(data: bytes | memoryview, *, max_bytes: int) -> DataFrame:
    """Parse a binary frame. The payload is a zero-copy view into ``data``.

    Raises:
        ProtocolViolation: too big (4009), truncated or unknown kind (4000), bad stream name (4108).
    """
    if len(data) > max_bytes:
        raise ProtocolViolation(Code.MESSAGE_TOO_BIG, f"data frame over {max_bytes} bytes")
    if len(data) < _HEADER.size:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "data frame shorter than its header")
    kind, session, name_len = _HEADER.unpack_from(data)
    if kind != DATA_KIND:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"unknown binary frame kind {kind}")
    if session == 0:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "session 0 does not exist")
    end = _HEADER.size + name_len
    if name_len == 0 or len(data) < end:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "data frame truncated inside the stream name")
    try:
        name = bytes(data[_HEADER.size : end]).decode("ascii")
        validate_stream_name(name)
    except (UnicodeDecodeError, InvalidStreamName) as exc:
        raise ProtocolViolation(
            Code.INVALID_STREAM, "invalid stream name in a data frame", session=session
        ) from exc
    return DataFrame(session, name, memoryview(data)[end:])


def is_batch(data: bytes) -> bool:
    """Whether a binary message is a batch (§5.6) rather than a single data frame."""
    return data[:1] == b"\x02"


def encode_batch(frames: list[bytes]) -> bytes:
    """One binary message carrying ``frames`` (at most ``MAX_BATCH_FRAMES``, each a whole data
    frame of at most ``MAX_BATCH_ENTRY`` bytes) in order (§5.6)."""
    if len(frames) > MAX_BATCH_FRAMES:
        raise ValueError(f"a batch carries at most {MAX_BATCH_FRAMES} frames, not {len(frames)}")
    parts = [bytes((BATCH_KIND,))]
    for frame in frames:
        if len(frame) > MAX_BATCH_ENTRY:
            raise ValueError(f"a {len(frame)}-byte frame cannot be in a batch; send it alone")
        parts.append(_ENTRY.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def pack_batches(frames: list[bytes], max_bytes: int) -> list[bytes]:
    """``frames`` as few binary messages as can carry them in order: batches of at most
    ``max_bytes`` and ``MAX_BATCH_FRAMES`` frames, and a frame alone where it fits in no batch
    (or has no company)."""
    if len(frames) == 1:  # one message at a time: nothing to pack
        return frames[:]
    messages: list[bytes] = []
    run: list[bytes] = []
    size = 1

    def end_run() -> None:
        if run:
            messages.append(run[0] if len(run) == 1 else encode_batch(run))
            run.clear()

    for frame in frames:
        if len(frame) > MAX_BATCH_ENTRY or len(frame) + 3 > max_bytes:
            end_run()
            messages.append(frame)
            size = 1
            continue
        if size + 2 + len(frame) > max_bytes or len(run) == MAX_BATCH_FRAMES:
            end_run()
            size = 1
        run.append(frame)
        size += 2 + len(frame)
    end_run()
    return messages


def pack_runs(items: list[T], max_bytes: int) -> list[T | bytes]:
    """``items`` in order, each run of data frames (``bytes``) among them packed by
    :func:`pack_batches`; the other items (text messages, a close) stay where they are."""
    out: list[T | bytes] = []
    run: list[bytes] = []
    for item in items:
        if isinstance(item, bytes):
            run.append(item)
            continue
        out += pack_batches(run, max_bytes)
        run.clear()
        out.append(item)
    out += pack_batches(run, max_bytes)
    return out


def decode_batch(data: bytes, *, max_bytes: int) -> list[memoryview]:
    """Split a batch message into its data frames (zero-copy views; each still to be decoded
    with :func:`decode_data_frame`).

    Raises:
        ProtocolViolation: over ``max_bytes`` (4009); not a batch, empty, more than
        ``MAX_BATCH_FRAMES`` entries, an entry cut short or one that is not a data frame (4000).
    """
    if len(data) > max_bytes:
        raise ProtocolViolation(Code.MESSAGE_TOO_BIG, f"batch over {max_bytes} bytes")
    if not data or data[0] != BATCH_KIND:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "not a batch")
    view = memoryview(data)
    frames: list[memoryview] = []
    offset, end = 1, len(data)
    while offset < end:
        if end - offset < _ENTRY.size:
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "batch entry cut short in its length")
        (size,) = _ENTRY.unpack_from(data, offset)
        offset += _ENTRY.size
        if size > end - offset:
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "batch entry longer than the batch")
        if size == 0 or data[offset] != DATA_KIND:
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "a batch carries data frames only")
        if len(frames) == MAX_BATCH_FRAMES:  # tiny entries must not cost a view per 3 bytes
            raise ProtocolViolation(Code.PROTOCOL_ERROR, f"more than {MAX_BATCH_FRAMES} frames in a batch")
        frames.append(view[offset : offset + size])
        offset += size
    if not frames:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "empty batch")
    return frames
