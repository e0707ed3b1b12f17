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

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

import orjson

from glueberry.p2p.keys import PeerID

from .codes import Code
from .errors import ProtocolViolation
from .fields import (
    Check,
    b64d,
    b64e,
    boolean,
    bytes_,
    encode_json,
    integer,
    load,
    number,
    object_,
    peer_id,
    session_key,
    string,
    violation,
    wire,
)
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


_ID = integer(1, MAX_ID)
_OPTIONAL_ID = integer(1, MAX_ID, optional=True)
_SESSION = integer(1, MAX_SESSION)
_CODE = integer(1000, 4999)
_TEXT = string(MAX_MESSAGE_CHARS, min_chars=0, default="")


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
    resume = object_(value, what)
    token = b64d(resume.get("token"), f"{what}.token", size=24)
    raw = resume.get("sessions", {})
    if not isinstance(raw, dict) or len(raw) > MAX_SESSION:
        raise violation(f"'{what}.sessions' must map session numbers to counts")
    sessions: dict[int, int] = {}
    for key, count in raw.items():
        number = session_key(key)
        if number is None or type(count) is not int or count < 0:
            raise violation(f"'{what}.sessions' maps session numbers to counts")
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
        raise violation(f"'{what}' must be a list of at most {MAX_BACKENDS}")
    name = string(MAX_NAME_CHARS, min_chars=0)
    return tuple(
        BackendInfo(name(item.get("name"), f"{what}.name"), peer_id(item.get("peer_id"), f"{what}.peer_id"))
        for item in (object_(raw, what) for raw in value)
    )


def _limits(value: Any, what: str) -> GatewayLimits:
    raw = object_(value, what) if value is not None else {}
    size = integer(1, MAX_ID, optional=True)
    given = {f.name: size(raw.get(f.name), f"{what}.{f.name}") for f in dataclasses.fields(GatewayLimits)}
    return GatewayLimits(**{k: v for k, v in given.items() if v is not None})


def _resumed(value: Any, what: str) -> dict[int, ResumeOutcome] | None:
    """Entries that are not a recovery read as not recovered; one that is needs its count."""
    if value is None:
        return None
    raw = object_(value, what)
    if len(raw) > MAX_SESSION:
        raise violation(f"'{what}' names more than {MAX_SESSION} sessions")
    outcomes: dict[int, ResumeOutcome] = {}
    for key, entry in raw.items():
        number = session_key(key)
        if number is None:
            continue
        if not isinstance(entry, dict) or entry.get("recovered") is not True:
            outcomes[number] = ResumeOutcome(False)
            continue
        received = entry.get("received")
        if type(received) is not int or received < 0:
            raise violation(f"'{what}': a recovered session needs a 'received' count")
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
            ("public_key", bytes_(32)),
            ("signature", bytes_(64)),
            ("token", _token),
            ("resume", _resume_request),
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
