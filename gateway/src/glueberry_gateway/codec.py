"""Encoding and validation of gateway protocol messages (docs/gateway-protocol.md), both ways.

Control messages are JSON text frames (orjson); data is a binary frame with a 4+n byte header, or
a batch of such frames in one binary message (kind 0x02, §5.6).
Every decoder bounds its input and raises :class:`ProtocolViolation` with the close code to use;
nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from glueberry.config import validate_stream_name
from glueberry.exceptions import InvalidStreamName

from .codes import Code

__all__ = [
    "BATCH_KIND",
    "DATA_KIND",
    "MAX_BATCH_ENTRY",
    "MAX_BATCH_FRAMES",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "Auth",
    "Close",
    "ClientMessage",
    "DataFrame",
    "Open",
    "Ping",
    "ProtocolViolation",
    "Refresh",
    "Signature",
    "SignRefused",
    "b64d",
    "b64e",
    "decode_client_message",
    "decode_batch",
    "decode_data_frame",
    "decode_server_message",
    "encode",
    "encode_batch",
    "encode_data_frame",
    "pack_batches",
]

SUBPROTOCOL: Final = "glueberry.v1"
PROTOCOL_VERSION: Final = 1
DATA_KIND: Final = 0x01
BATCH_KIND: Final = 0x02
MAX_ID: Final = 2**31 - 1
MAX_SESSION: Final = 65535
MAX_TOKEN_CHARS: Final = 8192
MAX_NAME_CHARS: Final = 128
_HEADER = struct.Struct(">BHB")
_ENTRY = struct.Struct(">H")
MAX_BATCH_ENTRY: Final = 0xFFFF  # a larger data frame travels alone
MAX_BATCH_FRAMES: Final = 1024


class ProtocolViolation(Exception):
    """A message that breaks the protocol; ``code`` is the close or error code to answer with."""

    def __init__(
        self, code: Code, message: str, *, id: int | None = None, session: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # for a session-level code (4100+): what the error message names (§8)
        self.fields = {k: v for k, v in (("id", id), ("session", session)) if v is not None}


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(value: object, what: str, *, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, str) or len(value) > max_size * 4 // 3 + 4:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"{what}: expected a base64url string")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"{what}: not base64url") from exc
    if size is not None and len(data) != size:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"{what}: expected {size} bytes, got {len(data)}")
    return data


# --- messages from the browser --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth:
    public_key: bytes
    signature: bytes
    token: str | None = None
    resume_token: bytes | None = None
    resume_sessions: dict[int, int] = field(default_factory=dict)  # session -> frames received
    batch: bool = False  # the browser takes batch messages (§5.6)


@dataclass(frozen=True, slots=True)
class Open:
    id: int
    session: int
    backend: str


@dataclass(frozen=True, slots=True)
class Signature:
    id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignRefused:
    id: int


@dataclass(frozen=True, slots=True)
class Close:
    id: int
    session: int


@dataclass(frozen=True, slots=True)
class Refresh:
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


ClientMessage: TypeAlias = Auth | Open | Signature | SignRefused | Close | Refresh | Ping


def _int(obj: dict[str, Any], key: str, low: int, high: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"'{key}' must be an integer in {low}..{high}")
    return value


def _str(obj: dict[str, Any], key: str, max_chars: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise ProtocolViolation(
            Code.PROTOCOL_ERROR, f"'{key}' must be a non-empty string of at most {max_chars} chars"
        )
    return value


def _bool(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if type(value) is not bool:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, f"'{key}' must be true or false")
    return value


def _load(text: str | bytes, max_bytes: int) -> dict[str, Any]:
    # a str counts UTF-8 bytes (up to 4 per character; encode only when it could matter)
    if len(text) > max_bytes or (
        isinstance(text, str) and len(text) * 4 > max_bytes and len(text.encode()) > max_bytes
    ):
        raise ProtocolViolation(Code.MESSAGE_TOO_BIG, f"control message over {max_bytes} bytes")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "control message is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolViolation(Code.PROTOCOL_ERROR, "control message must be an object with a 'type'")
    return obj


def _version(obj: dict[str, Any]) -> None:
    if obj.get("version") != PROTOCOL_VERSION:
        raise ProtocolViolation(Code.UNSUPPORTED_VERSION, f"version must be {PROTOCOL_VERSION}")


def decode_client_message(
    text: str | bytes, *, max_bytes: int = 16384, max_sessions: int = 64
) -> ClientMessage:
    """Parse one control message from a browser.

    Raises:
        ProtocolViolation: malformed, unknown type, out-of-range values, or too big.
    """
    obj = _load(text, max_bytes)
    kind = obj["type"]
    if kind == "auth":
        _version(obj)
        token = obj.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
            raise ProtocolViolation(
                Code.TOKEN_INVALID, f"token must be a string of at most {MAX_TOKEN_CHARS} chars"
            )
        resume_token = None
        sessions: dict[int, int] = {}
        resume = obj.get("resume")
        if resume is not None:
            if not isinstance(resume, dict):
                raise ProtocolViolation(Code.PROTOCOL_ERROR, "'resume' must be an object")
            resume_token = b64d(resume.get("token"), "resume.token", size=24)
            raw = resume.get("sessions", {})
            if not isinstance(raw, dict) or len(raw) > max_sessions:
                raise ProtocolViolation(
                    Code.PROTOCOL_ERROR, f"'resume.sessions' must map at most {max_sessions} sessions"
                )
            for key, count in raw.items():
                if (
                    not key.isdigit()
                    or not 1 <= int(key) <= MAX_SESSION
                    or type(count) is not int
                    or count < 0
                ):
                    raise ProtocolViolation(
                        Code.PROTOCOL_ERROR, "'resume.sessions' maps session numbers to counts"
                    )
                sessions[int(key)] = count
        return Auth(
            public_key=b64d(obj.get("public_key"), "public_key", size=32),
            signature=b64d(obj.get("signature"), "signature", size=64),
            token=token,
            resume_token=resume_token,
            resume_sessions=sessions,
            batch=_bool(obj, "batch"),
        )
    if kind == "open":
        request = Open(
            _int(obj, "id", 1, MAX_ID),
            _int(obj, "session", 1, MAX_SESSION),
            _str(obj, "backend", MAX_NAME_CHARS),
        )
        if "addrs" in obj or "addr" in obj or "multiaddrs" in obj:
            raise ProtocolViolation(
                Code.BACKEND_UNKNOWN,
                "the gateway dials configured backends only, never addresses",
                id=request.id,
                session=request.session,
            )
        return request
    if kind == "signature":
        return Signature(_int(obj, "id", 1, MAX_ID), b64d(obj.get("signature"), "signature", size=64))
    if kind == "sign_refused":
        return SignRefused(_int(obj, "id", 1, MAX_ID))
    if kind == "close":
        return Close(_int(obj, "id", 1, MAX_ID), _int(obj, "session", 1, MAX_SESSION))
    if kind == "refresh":
        return Refresh(_int(obj, "id", 1, MAX_ID), _str(obj, "token", MAX_TOKEN_CHARS))
    if kind == "ping":
        return Ping(_int(obj, "id", 1, MAX_ID))
    raise ProtocolViolation(Code.PROTOCOL_ERROR, f"unknown message type {kind[:40]!r}")


def decode_server_message(text: str | bytes, *, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """Parse a control message from a gateway (for clients): checked JSON object with a type."""
    return _load(text, max_bytes)


def encode(kind: str, **fields: Any) -> str:
    """A control message; bytes values are written as base64url, None values are left out."""
    obj: dict[str, Any] = {"type": kind}
    for key, value in fields.items():
        if value is None:
            continue
        obj[key] = b64e(value) if isinstance(value, bytes) else value
    return orjson.dumps(obj).decode()


# --- data frames -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFrame:
    session: int
    stream: str
    payload: memoryview | bytes


def encode_data_frame(session: int, stream: str, payload: bytes | memoryview) -> bytes:
    return data_header(session, stream) + payload


def data_header(session: int, stream: str) -> bytes:
    """The header alone, to be sent with the payload without joining them."""
    name = stream.encode("ascii")
    return _HEADER.pack(DATA_KIND, session, len(name)) + name


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
