"""Control messages of the gateway protocol (docs/gateway-protocol.md §2–§6, §8), both ways.

A control message is one JSON text frame (orjson) with a ``"type"``. Each type is a frozen
dataclass here, and one table per direction lists its wire fields with the check that decodes
each (:data:`CLIENT_MESSAGES`, :data:`SERVER_MESSAGES`): the gateway decodes what browsers send
and encodes what it answers; the Python client does the opposite with the same table.
``js-client/src/codec.ts`` holds the same table in TypeScript.

Every decoder bounds its input and raises :class:`~.errors.ProtocolViolation` with the code to
answer with (4000 malformed, 4001 version, 4005 token, 4009 too big, 4100 an address instead of
a backend). Unknown fields are ignored (§2); unknown types are refused. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Final, TypeAlias

import orjson

from glueberry.exceptions import InvalidPeerID
from glueberry.p2p.keys import PeerID

from .codes import Code
from .errors import ProtocolViolation
from .frames import MAX_SESSION

__all__ = [
    "CLIENT_MESSAGES",
    "MAX_ID",
    "MAX_NAME_CHARS",
    "MAX_TOKEN_CHARS",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "SUBPROTOCOL",
    "Auth",
    "BackendInfo",
    "Challenge",
    "ClientMessage",
    "Close",
    "Closed",
    "Drain",
    "ErrorMessage",
    "GatewayLimits",
    "Open",
    "Opened",
    "Ping",
    "Pong",
    "Ready",
    "Refresh",
    "Refreshed",
    "ResumeOutcome",
    "ServerMessage",
    "Sign",
    "SignRefused",
    "Signature",
    "StreamClosed",
    "TokenExpiring",
    "b64d",
    "b64e",
    "decode_client_message",
    "decode_server_message",
    "encode",
    "encode_json",
]

SUBPROTOCOL: Final = "glueberry.v1"
PROTOCOL_VERSION: Final = 1
MAX_ID: Final = 2**31 - 1
MAX_TOKEN_CHARS: Final = 8192
MAX_NAME_CHARS: Final = 128
MAX_BACKENDS: Final = 1024
MAX_MESSAGE_CHARS: Final = 4096


def _violation(message: str, code: Code = Code.PROTOCOL_ERROR) -> ProtocolViolation:
    return ProtocolViolation(code, message)


# --- base64url (RFC 4648 §5), no padding -----------------------------------------------------------


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(value: object, what: str, *, size: int | None = None, max_size: int = 4096) -> bytes:
    if not isinstance(value, str) or len(value) > max_size * 4 // 3 + 4:
        raise _violation(f"{what}: expected a base64url string")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _violation(f"{what}: not base64url") from exc
    if size is not None and len(data) != size:
        raise _violation(f"{what}: expected {size} bytes, got {len(data)}")
    return data


# --- field checks: each takes a field's value (None when absent) and its name, returns the decoded value

Check: TypeAlias = Callable[[Any, str], Any]


def _integer(low: int, high: int, *, optional: bool = False) -> Check:
    def check(value: Any, what: str) -> int | None:
        if value is None and optional:
            return None
        if type(value) is not int or not low <= value <= high:
            raise _violation(f"'{what}' must be an integer in {low}..{high}")
        return value

    return check


def _number(*, default: float | None = None, optional: bool = False) -> Check:
    def check(value: Any, what: str) -> float | None:
        if value is None and (optional or default is not None):
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise _violation(f"'{what}' must be a non-negative number")
        return float(value)

    return check


def _string(max_chars: int, *, min_chars: int = 1, default: str | None = None) -> Check:
    def check(value: Any, what: str) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
            raise _violation(f"'{what}' must be a string of {min_chars}..{max_chars} chars")
        return value

    return check


def _bytes(size: int | None = None, max_size: int = 4096) -> Check:
    def check(value: Any, what: str) -> bytes:
        return b64d(value, what, size=size, max_size=max_size)

    return check


def _boolean(value: Any, what: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise _violation(f"'{what}' must be true or false")
    return value


def _peer_id(value: Any, what: str) -> PeerID:
    if not isinstance(value, str):
        raise _violation(f"'{what}' must be a peer ID string")
    try:
        return PeerID.from_string(value)
    except InvalidPeerID as exc:
        raise _violation(f"'{what}' is not a peer ID") from exc


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _violation(f"'{what}' must be an object")
    return value


def _session_key(key: str) -> int | None:
    """A session number written as a JSON object key, or None."""
    if not (key.isascii() and key.isdigit()) or len(key) > 5 or not 1 <= int(key) <= MAX_SESSION:
        return None
    return int(key)


_ID = _integer(1, MAX_ID)
_OPTIONAL_ID = _integer(1, MAX_ID, optional=True)
_SESSION = _integer(1, MAX_SESSION)
_CODE = _integer(1000, 4999)
_TEXT = _string(MAX_MESSAGE_CHARS, min_chars=0, default="")


# --- browser -> gateway ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """``auth.resume`` (§6): the single-use token and the data frames received per session."""

    token: bytes
    sessions: dict[int, int]


def _token(value: Any, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS):
        raise ProtocolViolation(
            Code.TOKEN_INVALID, f"token must be a string of at most {MAX_TOKEN_CHARS} chars"
        )
    return value


def _resume_request(value: Any, what: str) -> ResumeRequest | None:
    if value is None:
        return None
    resume = _object(value, what)
    token = b64d(resume.get("token"), f"{what}.token", size=24)
    raw = resume.get("sessions", {})
    if not isinstance(raw, dict) or len(raw) > MAX_SESSION:
        raise _violation(f"'{what}.sessions' must map session numbers to counts")
    sessions: dict[int, int] = {}
    for key, count in raw.items():
        number = _session_key(key)
        if number is None or type(count) is not int or count < 0:
            raise _violation(f"'{what}.sessions' maps session numbers to counts")
        sessions[number] = count
    return ResumeRequest(token, sessions)


@dataclass(frozen=True, slots=True)
class Auth:
    TYPE: ClassVar = "auth"
    public_key: bytes
    signature: bytes
    token: str | None = None
    resume: ResumeRequest | None = None
    batch: bool = False  # the browser takes batch messages (§5.6)
    version: int = PROTOCOL_VERSION

    @property
    def resume_token(self) -> bytes | None:
        return self.resume.token if self.resume is not None else None

    @property
    def resume_sessions(self) -> dict[int, int]:
        """Session number -> data frames the browser received; empty without a resume."""
        return self.resume.sessions if self.resume is not None else {}


@dataclass(frozen=True, slots=True)
class Open:
    TYPE: ClassVar = "open"
    id: int
    session: int
    backend: str


@dataclass(frozen=True, slots=True)
class Signature:
    TYPE: ClassVar = "signature"
    id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignRefused:
    TYPE: ClassVar = "sign_refused"
    id: int


@dataclass(frozen=True, slots=True)
class Close:
    TYPE: ClassVar = "close"
    id: int
    session: int


@dataclass(frozen=True, slots=True)
class Refresh:
    TYPE: ClassVar = "refresh"
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    TYPE: ClassVar = "ping"
    id: int


ClientMessage: TypeAlias = Auth | Open | Signature | SignRefused | Close | Refresh | Ping


# --- gateway -> browser ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend this browser may open (``ready.backends``)."""

    name: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """``ready.limits``: what the gateway accepts from a browser (§7); absent ones are these."""

    max_sessions: int = 16
    max_streams: int = 16
    max_frame_bytes: int = (1 << 20) + 64
    max_control_bytes: int = 16384


@dataclass(frozen=True, slots=True)
class ResumeOutcome:
    """``ready.resumed`` for one session (§6): re-attached after ``received`` browser frames, or not."""

    recovered: bool
    received: int | None = None


def _backends(value: Any, what: str) -> tuple[BackendInfo, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_BACKENDS:
        raise _violation(f"'{what}' must be a list of at most {MAX_BACKENDS}")
    name = _string(MAX_NAME_CHARS, min_chars=0)
    return tuple(
        BackendInfo(name(item.get("name"), f"{what}.name"), _peer_id(item.get("peer_id"), f"{what}.peer_id"))
        for item in (_object(raw, what) for raw in value)
    )


def _limits(value: Any, what: str) -> GatewayLimits:
    raw = _object(value, what) if value is not None else {}
    size = _integer(1, MAX_ID, optional=True)
    given = {f.name: size(raw.get(f.name), f"{what}.{f.name}") for f in dataclasses.fields(GatewayLimits)}
    return GatewayLimits(**{k: v for k, v in given.items() if v is not None})


def _resumed(value: Any, what: str) -> dict[int, ResumeOutcome] | None:
    """Entries that are not a recovery read as not recovered; one that is needs its count."""
    if value is None:
        return None
    raw = _object(value, what)
    if len(raw) > MAX_SESSION:
        raise _violation(f"'{what}' names more than {MAX_SESSION} sessions")
    outcomes: dict[int, ResumeOutcome] = {}
    for key, entry in raw.items():
        number = _session_key(key)
        if number is None:
            continue
        if not isinstance(entry, dict) or entry.get("recovered") is not True:
            outcomes[number] = ResumeOutcome(False)
            continue
        received = entry.get("received")
        if type(received) is not int or received < 0:
            raise _violation(f"'{what}': a recovered session needs a 'received' count")
        outcomes[number] = ResumeOutcome(True, received)
    return outcomes


@dataclass(frozen=True, slots=True)
class Challenge:
    TYPE: ClassVar = "challenge"
    nonce: bytes
    gateway: PeerID
    expires_in: float | None = None
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Ready:
    TYPE: ClassVar = "ready"
    peer_id: PeerID  # the browser's
    resume_token: bytes
    resume_grace: float = 30.0
    backends: tuple[BackendInfo, ...] = ()
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    resumed: dict[int, ResumeOutcome] | None = None  # only when resuming (§6)
    batch: bool = False  # the gateway takes batch messages (§5.6)


@dataclass(frozen=True, slots=True)
class Opened:
    TYPE: ClassVar = "opened"
    id: int
    session: int
    backend: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class Sign:
    TYPE: ClassVar = "sign"
    id: int
    session: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    TYPE: ClassVar = "closed"
    session: int
    code: int
    message: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class StreamClosed:
    TYPE: ClassVar = "stream_closed"
    session: int
    stream: str


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    TYPE: ClassVar = "error"
    code: int
    message: str = ""
    id: int | None = None
    session: int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    TYPE: ClassVar = "pong"
    id: int


@dataclass(frozen=True, slots=True)
class Refreshed:
    TYPE: ClassVar = "refreshed"
    id: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenExpiring:
    TYPE: ClassVar = "token_expiring"
    expires_at: float


@dataclass(frozen=True, slots=True)
class Drain:
    TYPE: ClassVar = "drain"
    reconnect_after_ms: int


ServerMessage: TypeAlias = (
    Challenge
    | Ready
    | Opened
    | Sign
    | Closed
    | StreamClosed
    | ErrorMessage
    | Pong
    | Refreshed
    | TokenExpiring
    | Drain
)


# --- the tables: type -> (class, its wire fields in order, each with its check) ----------------------

Fields: TypeAlias = tuple[tuple[str, Check], ...]


def _version(value: Any, what: str) -> int:
    if value != PROTOCOL_VERSION:
        raise ProtocolViolation(Code.UNSUPPORTED_VERSION, f"version must be {PROTOCOL_VERSION}")
    return PROTOCOL_VERSION


CLIENT_MESSAGES: Final[dict[str, tuple[type[ClientMessage], Fields]]] = {
    "auth": (
        Auth,
        (
            ("version", _version),
            ("public_key", _bytes(32)),
            ("signature", _bytes(64)),
            ("token", _token),
            ("resume", _resume_request),
            ("batch", _boolean),
        ),
    ),
    "open": (Open, (("id", _ID), ("session", _SESSION), ("backend", _string(MAX_NAME_CHARS)))),
    "signature": (Signature, (("id", _ID), ("signature", _bytes(64)))),
    "sign_refused": (SignRefused, (("id", _ID),)),
    "close": (Close, (("id", _ID), ("session", _SESSION))),
    "refresh": (Refresh, (("id", _ID), ("token", _string(MAX_TOKEN_CHARS)))),
    "ping": (Ping, (("id", _ID),)),
}

SERVER_MESSAGES: Final[dict[str, tuple[type[ServerMessage], Fields]]] = {
    "challenge": (
        Challenge,
        (
            ("version", _version),
            ("nonce", _bytes(32)),
            ("gateway", _peer_id),
            ("expires_in", _number(optional=True)),
        ),
    ),
    "ready": (
        Ready,
        (
            ("peer_id", _peer_id),
            ("resume_token", _bytes(24)),
            ("resume_grace", _number(default=30.0)),
            ("backends", _backends),
            ("limits", _limits),
            ("resumed", _resumed),
            # anything but true is false: a gateway that does not know batches says nothing
            ("batch", lambda value, what: value is True),
        ),
    ),
    "opened": (
        Opened,
        (
            ("id", _ID),
            ("session", _SESSION),
            ("backend", _string(MAX_NAME_CHARS, min_chars=0, default="")),
            ("peer_id", _peer_id),
        ),
    ),
    "sign": (Sign, (("id", _ID), ("session", _SESSION), ("payload", _bytes(max_size=1024)))),
    "closed": (Closed, (("session", _SESSION), ("code", _CODE), ("message", _TEXT), ("id", _OPTIONAL_ID))),
    "stream_closed": (StreamClosed, (("session", _SESSION), ("stream", _string(64, min_chars=0)))),
    "error": (
        ErrorMessage,
        (
            ("code", _CODE),
            ("message", _TEXT),
            ("id", _OPTIONAL_ID),
            ("session", _integer(1, MAX_SESSION, optional=True)),
        ),
    ),
    "pong": (Pong, (("id", _ID),)),
    "refreshed": (Refreshed, (("id", _ID), ("expires_at", _number()))),
    "token_expiring": (TokenExpiring, (("expires_at", _number()),)),
    "drain": (Drain, (("reconnect_after_ms", _integer(0, MAX_ID)),)),
}

_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    cls: tuple(name for name, _ in fields)
    for cls, fields in (*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values())
}


# --- decoding -------------------------------------------------------------------------------------


def _load(text: str | bytes, max_bytes: int) -> dict[str, Any]:
    # a str counts UTF-8 bytes (up to 4 per character; encode only when it could matter)
    if len(text) > max_bytes or (
        isinstance(text, str) and len(text) * 4 > max_bytes and len(text.encode()) > max_bytes
    ):
        raise ProtocolViolation(Code.MESSAGE_TOO_BIG, f"control message over {max_bytes} bytes")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _violation("control message is not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise _violation("control message must be an object with a 'type'")
    return obj


def _decode(table: dict[str, tuple[type[Any], Fields]], obj: dict[str, Any]) -> Any:
    kind: str = obj["type"]
    entry = table.get(kind)
    if entry is None:
        raise _violation(f"unknown message type {kind[:40]!r}")
    cls, fields = entry
    return cls(**{name: check(obj.get(name), f"{kind}.{name}") for name, check in fields})


def decode_client_message(
    text: str | bytes, *, max_bytes: int = 16384, max_sessions: int = 64
) -> ClientMessage:
    """Parse one control message from a browser (the gateway's side).

    Raises:
        ProtocolViolation: malformed, unknown type, out-of-range values, or too big.
    """
    obj = _load(text, max_bytes)
    if obj["type"] == "open" and ("addrs" in obj or "addr" in obj or "multiaddrs" in obj):
        request = _decode(CLIENT_MESSAGES, obj)
        raise ProtocolViolation(
            Code.BACKEND_UNKNOWN,
            "the gateway dials configured backends only, never addresses",
            id=request.id,
            session=request.session,
        )
    message: ClientMessage = _decode(CLIENT_MESSAGES, obj)
    if isinstance(message, Auth) and len(message.resume_sessions) > max_sessions:
        raise _violation(f"'auth.resume.sessions' must map at most {max_sessions} sessions")
    return message


def decode_server_message(text: str | bytes, *, max_bytes: int = 1 << 20) -> ServerMessage:
    """Parse one control message from a gateway (a client's side).

    Raises:
        ProtocolViolation: malformed, unknown type, out-of-range values, or too big.
    """
    message: ServerMessage = _decode(SERVER_MESSAGES, _load(text, max_bytes))
    return message


# --- encoding -------------------------------------------------------------------------------------


def _wire(value: Any) -> Any:
    """A field's JSON form: bytes as base64url, peer IDs as strings, small records as objects."""
    if isinstance(value, bytes):
        return b64e(value)
    if isinstance(value, PeerID):
        return str(value)
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, tuple | list):
        return [_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _wire(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _wire(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not None
        }
    return value


def encode(message: ClientMessage | ServerMessage) -> str:
    """One control message as JSON text; None fields are left out (absent on the wire)."""
    obj: dict[str, Any] = {"type": message.TYPE}
    for name in _FIELDS[type(message)]:
        value = getattr(message, name)
        if value is not None:
            obj[name] = _wire(value)
    return orjson.dumps(obj).decode()


def encode_json(kind: str, **fields: Any) -> str:
    """A control message of any shape (tests and fakes that misbehave on purpose); bytes values
    are written as base64url, None values are left out."""
    obj: dict[str, Any] = {"type": kind}
    for key, value in fields.items():
        if value is not None:
            obj[key] = _wire(value)
    return orjson.dumps(obj).decode()
