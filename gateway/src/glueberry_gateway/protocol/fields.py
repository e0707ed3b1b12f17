"""JSON fields of control messages (docs/gateway-protocol.md §2): the checks that decode each
field, base64url for bytes, and the bounded parse and the encoding of a message as JSON text.

A check takes a field's value (None when absent) and its name for the error, and returns the
decoded value or raises :class:`~.errors.ProtocolViolation` (4000). :mod:`.control` builds its
tables of messages from these.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final, TypeAlias

import orjson

from glueberry.exceptions import InvalidPeerID
from glueberry.p2p.keys import PeerID

from .codes import Code
from .errors import ProtocolViolation
from .frames import MAX_SESSION

__all__ = [
    "MAX_ID",
    "Check",
    "b64d",
    "b64e",
    "boolean",
    "bytes_",
    "encode_json",
    "integer",
    "load",
    "number",
    "object_",
    "peer_id",
    "session_key",
    "string",
    "violation",
    "wire",
]


#: The largest request id, and the largest size or count a field may name.
MAX_ID: Final = 2**31 - 1


def violation(message: str, code: Code = Code.PROTOCOL_ERROR) -> ProtocolViolation:
    return ProtocolViolation(code, message)


# --- base64url (RFC 4648 §5), no padding -----------------------------------------------------------


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(value: object, what: str, *, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, str) or len(value) > max_size * 4 // 3 + 4:
        raise violation(f"{what}: expected a base64url string")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise violation(f"{what}: not base64url") from exc
    if size is not None and len(data) != size:
        raise violation(f"{what}: expected {size} bytes, got {len(data)}")
    return data


# --- field checks

Check: TypeAlias = Callable[[Any, str], Any]


def integer(low: int, high: int, *, optional: bool = False) -> Check:
    def check(value: Any, what: str) -> int | None:
        if value is None and optional:
            return None
        if type(value) is not int or not low <= value <= high:
            raise violation(f"'{what}' must be an integer in {low}..{high}")
        return value

    return check


def number(*, default: float | None = None, optional: bool = False) -> Check:
    def check(value: Any, what: str) -> float | None:
        if value is None and (optional or default is not None):
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise violation(f"'{what}' must be a non-negative number")
        return float(value)

    return check


def string(max_chars: int, *, min_chars: int = 1, default: str | None = None) -> Check:
    def check(value: Any, what: str) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
            raise violation(f"'{what}' must be a string of {min_chars}..{max_chars} chars")
        return value

    return check


def bytes_(size: int | None = None, max_size: int = 4096) -> Check:
    def check(value: Any, what: str) -> bytes:
        return b64d(value, what, size=size, max_size=max_size)

    return check


def boolean(value: Any, what: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise violation(f"'{what}' must be true or false")
    return value


def peer_id(value: Any, what: str) -> PeerID:
    if not isinstance(value, str):
        raise violation(f"'{what}' must be a peer ID string")
    try:
        return _parse_peer_id(value)
    except InvalidPeerID as exc:
        raise violation(f"'{what}' is not a peer ID") from exc


# Parsing a peer ID (base58) costs ~20 us, and the same few come again and again: the gateway's,
# the browser's, its backends'. PeerIDs are immutable; a failed parse is not cached.
_parse_peer_id = functools.lru_cache(maxsize=256)(PeerID.from_string)


def object_(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise violation(f"'{what}' must be an object")
    return value


def session_key(key: str) -> int | None:
    """A session number written as a JSON object key, or None."""
    if not (key.isascii() and key.isdigit()) or len(key) > 5 or not 1 <= int(key) <= MAX_SESSION:
        return None
    return int(key)


def load(text: str | bytes, max_bytes: int) -> dict[str, Any]:
    # a str counts UTF-8 bytes (up to 4 per character; encode only when it could matter)
    if len(text) > max_bytes or (
        isinstance(text, str) and len(text) * 4 > max_bytes and len(text.encode()) > max_bytes
    ):
        raise ProtocolViolation(Code.MESSAGE_TOO_BIG, f"control message over {max_bytes} bytes")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise violation("control message is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise violation("control message must be an object with a 'type'")
    return obj


_AS_IS = frozenset((int, str, bool, float))


def wire(value: Any) -> Any:
    """A field's JSON form: bytes as base64url, peer IDs as strings, small records as objects."""
    if type(value) in _AS_IS:  # most fields: numbers and names
        return value
    if isinstance(value, bytes):
        return b64e(value)
    if isinstance(value, PeerID):
        return str(value)
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, tuple | list):
        return [wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): wire(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: wire(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not None
        }
    return value


def encode_json(kind: str, **fields: Any) -> str:
    """A control message of any shape (tests and fakes that misbehave on purpose); bytes values
    are written as base64url, None values are left out."""
    obj: dict[str, Any] = {"type": kind}
    for key, value in fields.items():
        if value is not None:
            obj[key] = wire(value)
    return orjson.dumps(obj).decode()
