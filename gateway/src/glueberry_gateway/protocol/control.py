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

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

import orjson

from glueberry.p2p.keys import PeerID

from .codes import Code
from .errors import ProtocolViolation
from .fields import (
    MAX_ID,
    Check,
    b64d,
    b64e,
    boolean,
    bytes_,
    encode_json,
    integer,
    load,
    number,
    peer_id,
    string,
    violation,
    wire,
)
from .frames import MAX_SESSION
from .records import (
    MAX_NAME_CHARS,
    BackendInfo,
    GatewayLimits,
    ResumeOutcome,
    ResumeRequest,
    backends,
    limits,
    resume_request,
    resumed,
)

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
    "ResumeRequest",
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
MAX_TOKEN_CHARS: Final = 8192
MAX_MESSAGE_CHARS: Final = 4096


_ID = integer(1, MAX_ID)
_OPTIONAL_ID = integer(1, MAX_ID, optional=True)
_SESSION = integer(1, MAX_SESSION)
_CODE = integer(1000, 4999)
_TEXT = string(MAX_MESSAGE_CHARS, min_chars=0, default="")


# --- browser -> gateway ------------------------------------------------------------------------------


def _token(value: Any, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS):
        raise ProtocolViolation(
            Code.TOKEN_INVALID, f"token must be a string of at most {MAX_TOKEN_CHARS} chars"
        )
    return value


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
            ("public_key", bytes_(32)),
            ("signature", bytes_(64)),
            ("token", _token),
            ("resume", resume_request),
            ("batch", boolean),
        ),
    ),
    "open": (Open, (("id", _ID), ("session", _SESSION), ("backend", string(MAX_NAME_CHARS)))),
    "signature": (Signature, (("id", _ID), ("signature", bytes_(64)))),
    "sign_refused": (SignRefused, (("id", _ID),)),
    "close": (Close, (("id", _ID), ("session", _SESSION))),
    "refresh": (Refresh, (("id", _ID), ("token", string(MAX_TOKEN_CHARS)))),
    "ping": (Ping, (("id", _ID),)),
}

SERVER_MESSAGES: Final[dict[str, tuple[type[ServerMessage], Fields]]] = {
    "challenge": (
        Challenge,
        (
            ("version", _version),
            ("nonce", bytes_(32)),
            ("gateway", peer_id),
            ("expires_in", number(optional=True)),
        ),
    ),
    "ready": (
        Ready,
        (
            ("peer_id", peer_id),
            ("resume_token", bytes_(24)),
            ("resume_grace", number(default=30.0)),
            ("backends", backends),
            ("limits", limits),
            ("resumed", resumed),
            # anything but true is false: a gateway that does not know batches says nothing
            ("batch", lambda value, what: value is True),
        ),
    ),
    "opened": (
        Opened,
        (
            ("id", _ID),
            ("session", _SESSION),
            ("backend", string(MAX_NAME_CHARS, min_chars=0, default="")),
            ("peer_id", peer_id),
        ),
    ),
    "sign": (Sign, (("id", _ID), ("session", _SESSION), ("payload", bytes_(max_size=1024)))),
    "closed": (Closed, (("session", _SESSION), ("code", _CODE), ("message", _TEXT), ("id", _OPTIONAL_ID))),
    "stream_closed": (StreamClosed, (("session", _SESSION), ("stream", string(64, min_chars=0)))),
    "error": (
        ErrorMessage,
        (
            ("code", _CODE),
            ("message", _TEXT),
            ("id", _OPTIONAL_ID),
            ("session", integer(1, MAX_SESSION, optional=True)),
        ),
    ),
    "pong": (Pong, (("id", _ID),)),
    "refreshed": (Refreshed, (("id", _ID), ("expires_at", number()))),
    "token_expiring": (TokenExpiring, (("expires_at", number()),)),
    "drain": (Drain, (("reconnect_after_ms", integer(0, MAX_ID)),)),
}

_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    cls: tuple(name for name, _ in fields)
    for cls, fields in (*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values())
}


# --- decoding -------------------------------------------------------------------------------------


def _decode(table: dict[str, tuple[type[Any], Fields]], obj: dict[str, Any]) -> Any:
    kind: str = obj["type"]
    entry = table.get(kind)
    if entry is None:
        raise violation(f"unknown message type {kind[:40]!r}")
    cls, fields = entry
    return cls(**{name: check(obj.get(name), f"{kind}.{name}") for name, check in fields})


def decode_client_message(
    text: str | bytes, *, max_bytes: int = 16384, max_sessions: int = 64
) -> ClientMessage:
    """Parse one control message from a browser (the gateway's side).

    Raises:
        ProtocolViolation: malformed, unknown type, out-of-range values, or too big.
    """
    obj = load(text, max_bytes)
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
        raise violation(f"'auth.resume.sessions' must map at most {max_sessions} sessions")
    return message


def decode_server_message(text: str | bytes, *, max_bytes: int = 1 << 20) -> ServerMessage:
    """Parse one control message from a gateway (a client's side).

    Raises:
        ProtocolViolation: malformed, unknown type, out-of-range values, or too big.
    """
    message: ServerMessage = _decode(SERVER_MESSAGES, load(text, max_bytes))
    return message


# --- encoding -------------------------------------------------------------------------------------


def encode(message: ClientMessage | ServerMessage) -> str:
    """One control message as JSON text; None fields are left out (absent on the wire)."""
    obj: dict[str, Any] = {"type": message.TYPE}
    for name in _FIELDS[type(message)]:
        value = getattr(message, name)
        if value is not None:
            obj[name] = wire(value)
    return orjson.dumps(obj).decode()
