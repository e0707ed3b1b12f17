"""Sans-I/O core of the gateway client: the browser side of ``glueberry.v1`` (docs/gateway-protocol.md).

:class:`ClientProtocol` is fed the WebSocket messages of one socket (:meth:`~ClientProtocol.receive_text`,
:meth:`~ClientProtocol.receive_binary`, :meth:`~ClientProtocol.connection_closed`) and produces
typed events (:meth:`~ClientProtocol.events_received`) and messages to send
(:meth:`~ClientProtocol.data_to_send`: ``str`` = text frame, ``bytes`` = binary frame,
:class:`CloseSocket` = close the socket). It plays the browser of §1: it holds the Ed25519
identity, answers the challenge (§3), signs only genuine Noise payloads (§5.1), runs the
Hello/PubKey/Complete handshake (PROTOCOL.md §10) as initiator and does the Glueberry encryption
(PROTOCOL.md §8) itself, so the gateway never sees a key or a plaintext.

Socket states (:data:`_TRANSITIONS`)::

    AWAIT_CHALLENGE --challenge--> AWAIT_READY --ready--> READY
           \\________________________\\____________________\\--close/failure--> CLOSED

Resume (§6): each :class:`SessionRecord` counts the data frames received and sent and keeps the
last sent frames in a bounded outbox. When a socket drops, :meth:`ClientProtocol.resume_state`
hands the open sessions to a new core, which asks the gateway to re-attach them, re-sends what
the gateway says it did not get, and ends the sessions it cannot recover.

Everything is bounded: control messages, frames, pending requests, frames held before the
handshake key, the outbox. The asyncio driver is :mod:`glueberry_gateway.client`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, Final, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.config import HANDSHAKE_STREAM, validate_stream_name
from glueberry.exceptions import (
    DecryptionFailed,
    GlueberryError,
    InvalidArgument,
    InvalidPeerID,
    InvalidState,
    InvalidStreamName,
    LimitExceeded,
    MessageTooLarge,
    RemoteProtocolError,
)
from glueberry.handshake import FinalizeRequested, HelloHandshake, PeerHello, PrepareRequested, SendMessage
from glueberry.p2p.keys import PeerID, public_key_bytes
from glueberry.wire.cipher import OVERHEAD, StreamCipher, shared_key

from .auth import auth_message, is_noise_payload
from .codec import (
    BATCH_KIND,
    MAX_ID,
    MAX_NAME_CHARS,
    MAX_SESSION,
    PROTOCOL_VERSION,
    ProtocolViolation,
    b64d,
    b64e,
    decode_batch,
    decode_data_frame,
    decode_server_message,
    encode,
    encode_data_frame,
    pack_batches,
)
from .codes import Code

_BATCH = bytes((BATCH_KIND,))

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_RECEIVE_BYTES",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_OUTBOX_FRAMES",
    "RESUMABLE_CODES",
    "Authenticated",
    "BackendInfo",
    "ClientEvent",
    "ClientProtocol",
    "ClientState",
    "CloseInfo",
    "CloseSocket",
    "ConnectionEnded",
    "DrainRequested",
    "FrameDropped",
    "FrameUndecryptable",
    "GatewayClosed",
    "GatewayError",
    "GatewayErrorReceived",
    "GatewayLimits",
    "GatewayProtocolError",
    "HandshakeCompleted",
    "HandshakeFailed",
    "MessageReceived",
    "Outgoing",
    "PeerHelloReceived",
    "Pong",
    "RequestFailed",
    "ResumeState",
    "SessionClosed",
    "SessionEnded",
    "SessionErrorReceived",
    "SessionOpenFailed",
    "SessionOpened",
    "SessionPhase",
    "SessionRecord",
    "SessionResumed",
    "SignatureRefused",
    "SignatureSent",
    "StreamEnded",
    "TokenExpiring",
    "TokenRefreshed",
]

#: Largest plaintext :meth:`ClientProtocol.send_data` accepts: Go's default ``MaxMessageSize`` (PROTOCOL.md §8.5).
DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20
#: Largest binary frame accepted from the gateway: a default Go sender's largest encrypted frame
#: (1 MiB + 28) plus the data-frame header with a 64-byte stream name (§5.2).
DEFAULT_MAX_RECEIVE_BYTES: Final = (1 << 20) + OVERHEAD + 4 + 64
#: Largest control message accepted from the gateway (a ``ready`` may list many backends).
DEFAULT_MAX_CONTROL_BYTES: Final = 1 << 20
#: Outbox bound per session, kept for resume: the newest frames, at most this many ...
DEFAULT_OUTBOX_FRAMES: Final = 1024
#: ... and at most this many bytes (the newest frame is always kept).
DEFAULT_OUTBOX_BYTES: Final = 4 << 20
#: Frames held per session before they can be used (handshake frames before :meth:`start_handshake`,
#: encrypted frames before the peer's key is known); further ones are dropped, as Go drops frames
#: for streams it has not prepared.
DEFAULT_PENDING_FRAMES: Final = 256
MAX_PENDING_REQUESTS: Final = 256
MAX_BACKENDS: Final = 1024
#: Sign requests answered per session open (the gateway needs one; a few tolerate retries).
MAX_SIGNATURES_PER_OPEN: Final = 4
#: Closes of a ready socket after which its sessions wait at the gateway for ``resume_grace``
#: seconds (§6): the socket was lost rather than closed on purpose — no close frame (1005, 1006),
#: a keepalive timeout or server error (1011), a restart (1012–1014). A close the gateway chose
#: (4xxx: a protocol or auth error, rate limit, slow consumer, idle, internal error) or a normal
#: close or drain (1000, 1001) ends the sessions.
RESUMABLE_CODES: Final = frozenset({1005, 1006, 1011, 1012, 1013, 1014})
# Closes of a resume attempt (before ready) after which a later attempt may still succeed.
_RETRY_ATTEMPT_CODES: Final = RESUMABLE_CODES | {4003, 4004, 4008, 4010, 4011, 4012, 4013}


# --------------------------------------------------------------------------------------------
# Errors


def _as_code(code: int) -> Code | int:
    try:
        return Code(code)
    except ValueError:
        return code


class GatewayError(Exception):
    """The gateway refused a request or ended something (§8). ``code`` is a :class:`Code` when
    the number is one of §8's, else the plain int (e.g. WebSocket close code 1006)."""

    def __init__(
        self, code: int, message: str = "", *, request_id: int | None = None, session: int | None = None
    ) -> None:
        super().__init__(message)
        self.code: Code | int = _as_code(code)
        self.message = message
        self.request_id = request_id
        self.session = session

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, Code) else "close"
        where = f" (session {self.session})" if self.session is not None else ""
        return f"{name} {int(self.code)}: {self.message}{where}"


class GatewayClosed(GatewayError):
    """The WebSocket closed, dropped or could not be opened. ``resumable``: the sessions wait
    at the gateway and :meth:`GatewayClient.resume <glueberry_gateway.client.GatewayClient.resume>`
    may re-attach them."""

    def __init__(self, code: int, message: str = "", *, resumable: bool = False) -> None:
        super().__init__(code, message)
        self.resumable = resumable


class SessionClosed(GatewayError):
    """The session is over: closed by us, by the gateway or backend, or not recovered on resume."""


class GatewayProtocolError(RemoteProtocolError):
    """The gateway broke ``glueberry.v1``; the core queued a close with ``close_code``."""

    def __init__(self, message: str, close_code: Code = Code.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend this browser may open (``ready.backends``)."""

    name: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """``ready.limits``: what the gateway accepts from us (§7)."""

    max_sessions: int = 16
    max_streams: int = 16
    max_frame_bytes: int = (1 << 20) + 64
    max_control_bytes: int = 16384


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a socket ended. ``resumable``: its sessions can be re-attached (§6)."""

    code: int
    reason: str = ""
    resumable: bool = False


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Output item: close the WebSocket with this code and reason (sent after everything before it)."""

    code: int
    reason: str = ""


Outgoing: TypeAlias = str | bytes | CloseSocket


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Authenticated:
    """``ready`` arrived: the socket is usable (after a resume, :class:`SessionResumed` /
    :class:`SessionEnded` for each carried session follow)."""

    peer_id: PeerID
    backends: tuple[BackendInfo, ...]
    limits: GatewayLimits
    resume_token: bytes
    resume_grace: float


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: int
    backend: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class SessionOpenFailed:
    session: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """The session was re-attached; ``resent`` frames from the outbox were queued again."""

    session: int
    resent: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over (``closed``, a failed close, no recovery, a failed handshake, …)."""

    session: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class SignatureSent:
    session: int
    request_id: int


@dataclass(frozen=True, slots=True)
class SignatureRefused:
    session: int
    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decrypted message on a named stream."""

    session: int
    stream: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FrameUndecryptable:
    """A frame on a named stream failed authentication and was dropped (PROTOCOL.md §8.5)."""

    session: int
    stream: str


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A frame that could not be used: a stream not prepared, too many frames held, session closing."""

    session: int
    stream: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeerHelloReceived:
    session: int
    name: str


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The backend's key checked out and both sides prepared; ``peer_public_key`` is its Ed25519 key."""

    session: int
    peer_public_key: bytes


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake failed (``error``: a HandshakeError such as KeyMismatch, or InvalidKey);
    the session is closed (a :class:`SessionEnded` follows)."""

    session: int
    error: GlueberryError


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """``stream_closed``: the backend ended its side of the stream (§5.3)."""

    session: int
    stream: str


@dataclass(frozen=True, slots=True)
class SessionErrorReceived:
    """An ``error`` about a session that leaves it open (e.g. 4105, the frame was dropped)."""

    session: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: int


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    request_id: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A ``ping`` or ``refresh`` got an ``error`` or was cut off by the socket closing."""

    request_id: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class TokenExpiring:
    expires_at: float


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """The gateway is shutting down: sessions will be closed, then the socket (1001)."""

    reconnect_after_ms: int


@dataclass(frozen=True, slots=True)
class GatewayErrorReceived:
    """A socket-level ``error`` (a close with the same code follows), or one naming nothing we know."""

    error: GatewayError


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The socket is gone (always the last event of a core)."""

    info: CloseInfo


ClientEvent: TypeAlias = (
    Authenticated
    | SessionOpened
    | SessionOpenFailed
    | SessionResumed
    | SessionEnded
    | SignatureSent
    | SignatureRefused
    | MessageReceived
    | FrameUndecryptable
    | FrameDropped
    | PeerHelloReceived
    | HandshakeCompleted
    | HandshakeFailed
    | StreamEnded
    | SessionErrorReceived
    | Pong
    | TokenRefreshed
    | RequestFailed
    | TokenExpiring
    | DrainRequested
    | GatewayErrorReceived
    | ConnectionEnded
)


# --------------------------------------------------------------------------------------------
# Per-session bookkeeping


class SessionPhase(Enum):
    OPENING = "opening"  # open sent, no opened yet
    OPEN = "open"
    CLOSING = "closing"  # close sent; frames still arriving are dropped


@dataclass(slots=True, eq=False)
class SessionRecord:
    """One session's state; it outlives a socket when the session is resumed (§6).

    ``received``/``sent`` count data frames from/to the gateway since the session opened. The
    outbox holds the last sent frames (encoded, header included): frame number ``i`` (0-based)
    is ``outbox[i - outbox_base]`` for ``outbox_base <= i < sent``.
    """

    number: int
    backend: str
    expected_peer: PeerID | None = None
    phase: SessionPhase = SessionPhase.OPENING
    peer_id: PeerID | None = None
    received: int = 0
    sent: int = 0
    outbox: deque[bytes] = field(default_factory=deque)
    outbox_bytes: int = 0
    handshake: HelloHandshake | None = None
    streams: frozenset[str] | None = None  # None: every name accepted
    cipher: StreamCipher | None = None
    peer_public_key: bytes | None = None
    established: bool = False
    pending_handshake: deque[bytes] = field(default_factory=deque)
    pending_named: deque[tuple[str, bytes]] = field(default_factory=deque)
    decryption_errors: int = 0
    dropped_frames: int = 0
    signatures: int = 0

    @property
    def outbox_base(self) -> int:
        return self.sent - len(self.outbox)


@dataclass(slots=True)
class ResumeState:
    """What a new socket needs to resume (§6): the single-use token and the open sessions."""

    token: bytes
    sessions: dict[int, SessionRecord]
    next_session: int = 1
    resume_grace: float = 30.0


# --------------------------------------------------------------------------------------------
# The state machine


class ClientState(Enum):
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_READY = "await_ready"
    READY = "ready"
    CLOSED = "closed"


class _Trigger(Enum):
    CHALLENGE = auto()
    READY = auto()
    CLOSE = auto()


_C = ClientState
_TRANSITIONS: Final[dict[ClientState, dict[_Trigger, ClientState]]] = {
    _C.AWAIT_CHALLENGE: {_Trigger.CHALLENGE: _C.AWAIT_READY, _Trigger.CLOSE: _C.CLOSED},
    _C.AWAIT_READY: {_Trigger.READY: _C.READY, _Trigger.CLOSE: _C.CLOSED},
    _C.READY: {_Trigger.CLOSE: _C.CLOSED},
    _C.CLOSED: {_Trigger.CLOSE: _C.CLOSED},
}


def _violation(message: str, code: Code = Code.PROTOCOL_ERROR) -> ProtocolViolation:
    return ProtocolViolation(code, message)


def _get_int(obj: dict[str, Any], key: str, low: int, high: int, *, required: bool = True) -> int | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if type(value) is not int or not low <= value <= high:
        raise _violation(f"{obj['type']}: '{key}' must be an integer in {low}..{high}")
    return value


def _req_int(obj: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _get_int(obj, key, low, high)
    assert value is not None
    return value


def _get_number(obj: dict[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _violation(f"{obj['type']}: '{key}' must be a non-negative number")
    return float(value)


def _get_str(obj: dict[str, Any], key: str, max_chars: int, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or len(value) > max_chars:
        raise _violation(f"{obj['type']}: '{key}' must be a string of at most {max_chars} chars")
    return value


def _get_peer_id(value: object, what: str) -> PeerID:
    if not isinstance(value, str):
        raise _violation(f"{what} must be a peer ID string")
    try:
        return PeerID.from_string(value)
    except InvalidPeerID as exc:
        raise _violation(f"{what} is not a peer ID") from exc


def _check_stream_name(stream: str) -> None:
    if not isinstance(stream, str) or not stream.isascii():
        raise InvalidStreamName("gateway stream names are ASCII letters, digits, '-' and '_'")
    validate_stream_name(stream)


class ClientProtocol:
    """The browser side of one gateway socket, sans I/O (module docstring).

    Args:
        identity: the browser's Ed25519 key; its peer ID is the browser's identity (§1).
        origin: the page origin sent in the upgrade's ``Origin`` header; it is signed (§3).
        token: a JWT for ``auth`` (§4), or None.
        resume: the :meth:`resume_state` of the previous socket, to resume its sessions (§6).
        gateway_peer_id: if given, a challenge from another gateway identity is refused.
        max_receive_bytes, max_control_bytes: bounds on received binary and text messages.
        max_message_size: the largest plaintext :meth:`send_data` accepts.
        outbox_frames, outbox_bytes: the per-session outbox bound (see :class:`SessionRecord`).
        pending_frames: frames held per session before the handshake can use them.

    Raises:
        InvalidArgument: origin not ASCII or over 255 bytes, or a bound below 1.
    """

    def __init__(
        self,
        identity: Ed25519PrivateKey,
        origin: str,
        *,
        token: str | None = None,
        resume: ResumeState | None = None,
        gateway_peer_id: PeerID | str | None = None,
        max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
        max_control_bytes: int = DEFAULT_MAX_CONTROL_BYTES,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        outbox_frames: int = DEFAULT_OUTBOX_FRAMES,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
        pending_frames: int = DEFAULT_PENDING_FRAMES,
    ) -> None:
        if not isinstance(origin, str) or not origin.isascii() or not 0 < len(origin) <= 255:
            raise InvalidArgument("origin must be 1-255 ASCII characters, e.g. 'https://app.example'")
        if (
            min(
                max_receive_bytes,
                max_control_bytes,
                max_message_size,
                outbox_frames,
                outbox_bytes,
                pending_frames,
            )
            < 1
        ):
            raise InvalidArgument("client bounds must be positive")
        self._identity = identity
        self._public_key = public_key_bytes(identity)
        self._peer_id = PeerID.from_public_key(self._public_key)
        self._origin = origin
        self._token = token
        self._expected_gateway = (
            PeerID.from_string(gateway_peer_id) if isinstance(gateway_peer_id, str) else gateway_peer_id
        )
        self._max_receive_bytes = max_receive_bytes
        self._max_control_bytes = max_control_bytes
        self._max_message_size = max_message_size
        self._outbox_frames = outbox_frames
        self._outbox_bytes = outbox_bytes
        self._pending_frames = pending_frames

        self._state = ClientState.AWAIT_CHALLENGE
        self._events: list[ClientEvent] = []
        self._output: list[Outgoing] = []
        self._gateway_peer_id: PeerID | None = None
        self._backends: tuple[BackendInfo, ...] = ()
        self._limits = GatewayLimits()
        self._gateway_batches = False  # ready said the gateway takes batch messages (§5.6)
        self._resume_token: bytes | None = None
        self._resume_grace = resume.resume_grace if resume else 30.0
        self._resume = resume
        self._sessions: dict[int, SessionRecord] = dict(resume.sessions) if resume else {}
        self._ghosts: set[int] = set()  # sessions we ended locally whose close is not confirmed
        self._next_session = resume.next_session if resume else 1
        self._next_id = 1
        self._requests: dict[int, tuple[str, int]] = {}  # id -> (kind, session or 0)
        self._new_tokens: dict[int, str] = {}  # refresh id -> token, adopted once refreshed
        self._failed = False
        self._closing_locally = False
        self._draining = False
        self._socket_closed = False
        self._resumable = False
        self._last_error: GatewayError | None = None

    # ---- properties -----------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def peer_id(self) -> PeerID:
        """The browser's peer ID (derived from the identity)."""
        return self._peer_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def gateway_peer_id(self) -> PeerID | None:
        """The gateway's peer ID from the challenge."""
        return self._gateway_peer_id

    @property
    def backends(self) -> tuple[BackendInfo, ...]:
        return self._backends

    @property
    def limits(self) -> GatewayLimits:
        return self._limits

    @property
    def resume_token(self) -> bytes | None:
        return self._resume_token

    @property
    def resume_grace(self) -> float:
        return self._resume_grace

    @property
    def resumable(self) -> bool:
        """After the socket closed: whether :meth:`resume_state` is available."""
        return self._resumable

    def session(self, number: int) -> SessionRecord:
        """The live session ``number``. Raises :class:`InvalidState` if there is none."""
        rec = self._sessions.get(number)
        if rec is None:
            raise InvalidState(f"no open session {number}")
        return rec

    @property
    def sessions(self) -> dict[int, SessionRecord]:
        """A copy of the live sessions by number."""
        return dict(self._sessions)

    # ---- sans-I/O plumbing -----------------------------------------------------------------

    def events_received(self) -> list[ClientEvent]:
        """What happened since the last call (clears the list)."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[Outgoing]:
        """Messages for the socket, in order (clears the list): ``str`` as a text frame, ``bytes``
        as a binary frame, :class:`CloseSocket`: close the socket (nothing follows it)."""
        out, self._output = self._output, []
        if self._gateway_batches and len(out) > 1:
            out = self._batched(out)
        return out

    def _batched(self, items: list[Outgoing]) -> list[Outgoing]:
        """Runs of data frames as batch messages, each within the gateway's max_frame_bytes."""
        out: list[Outgoing] = []
        run: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                run.append(item)
                continue
            out += pack_batches(run, self._limits.max_frame_bytes)
            run.clear()
            out.append(item)
        out += pack_batches(run, self._limits.max_frame_bytes)
        return out

    def receive_text(self, text: str | bytes) -> None:
        """Feed one text message from the gateway.

        After calling this method: call :meth:`events_received` and :meth:`data_to_send`.

        Raises:
            GatewayProtocolError: the gateway broke the protocol; a :class:`CloseSocket` is queued.
            InvalidState: the core is closed.
        """
        self._check_usable()
        try:
            obj = decode_server_message(text, max_bytes=self._max_control_bytes)
            self._dispatch(obj)
        except ProtocolViolation as exc:
            raise self._fail(exc) from exc

    def receive_binary(self, data: bytes) -> None:
        """Feed one binary message (a data frame, §5.2). Contract as :meth:`receive_text`."""
        self._check_usable()
        try:
            if self._state is not ClientState.READY:
                raise _violation("data frame before ready")
            if data[:1] == _BATCH:
                for frame in decode_batch(data, max_bytes=self._max_receive_bytes):
                    self._on_data(frame)
            else:
                self._on_data(data)
        except ProtocolViolation as exc:
            raise self._fail(exc) from exc

    def connection_closed(self, code: int, reason: str = "") -> None:
        """The socket is gone (close frame received or sent, or the connection dropped: 1006).

        Ends what cannot survive (opens in progress, closing sessions, requests) and, when the
        drop is resumable, keeps the open sessions for :meth:`resume_state`. Idempotent.

        After calling this method: call :meth:`events_received` (the last is :class:`ConnectionEnded`).
        """
        if self._socket_closed:
            return
        self._socket_closed = True
        was = self._state
        self._advance(_Trigger.CLOSE)
        if was is ClientState.READY:
            fatal = self._failed or self._closing_locally or self._draining or code not in RESUMABLE_CODES
            self._resumable = not fatal and self._resume_token is not None
        else:  # a resume attempt that ended before ready keeps its sessions for the next attempt,
            # unless the gateway refused it; giving up on it ourselves (a timeout) harms nothing
            retry = self._closing_locally or code in _RETRY_ATTEMPT_CODES
            self._resumable = self._resume is not None and not self._failed and retry
        if self._resumable and self._resume is not None and was is not ClientState.READY:
            self._resume_token = self._resume.token
        if not reason and self._last_error is not None:
            reason = self._last_error.message
        for number, rec in list(self._sessions.items()):
            if rec.phase is SessionPhase.OPENING:
                self._drop_session(number)
                self._events.append(SessionOpenFailed(number, GatewayClosed(code, reason or "socket closed")))
            elif rec.phase is SessionPhase.CLOSING or not self._resumable:
                self._drop_session(number)
                self._events.append(SessionEnded(number, code, reason or "socket closed"))
        for request_id, (kind, _) in self._requests.items():
            if kind in ("ping", "refresh"):
                self._events.append(
                    RequestFailed(request_id, GatewayClosed(code, reason, resumable=self._resumable))
                )
        self._requests.clear()
        self._new_tokens.clear()
        self._events.append(ConnectionEnded(CloseInfo(code, reason, self._resumable)))

    def resume_state(self) -> ResumeState:
        """Hand the open sessions to a new core (``ClientProtocol(..., resume=state)``).

        Raises:
            InvalidState: the socket is not closed, or its close is not resumable.
        """
        if not self._socket_closed or not self._resumable or self._resume_token is None:
            raise InvalidState("this socket did not end in a resumable way")
        sessions = {n: rec for n, rec in self._sessions.items() if rec.phase is SessionPhase.OPEN}
        return ResumeState(self._resume_token, sessions, self._next_session, self._resume_grace)

    def discard_session(self, number: int) -> None:
        """Forget a session locally without telling the gateway (e.g. while disconnected: it is
        then not resumed, and the gateway drops it when the resume leaves it out or the grace ends)."""
        if number in self._sessions:
            self._drop_session(number)

    # ---- actions ----------------------------------------------------------------------------

    def open(self, backend: str | PeerID) -> int:
        """Ask for a session to ``backend`` (a configured name or peer ID, §5.1); returns its number.

        Later: :class:`SessionOpened` or :class:`SessionOpenFailed` for that number.
        After calling this method: call :meth:`data_to_send` and send the messages.

        Raises:
            InvalidState: not ready. InvalidArgument: empty or over-long name.
            LimitExceeded: no free session number or too many pending requests.
        """
        self._check_ready()
        name = str(backend)
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidArgument(f"backend must be a name or peer ID of 1-{MAX_NAME_CHARS} chars")
        number = self._allocate_session()
        request_id = self._request("open", number)
        self._sessions[number] = SessionRecord(number, name, expected_peer=self._expected_backend_peer(name))
        self._output.append(encode("open", id=request_id, session=number, backend=name))
        return number

    def close_session(self, number: int) -> int:
        """Ask the gateway to close an open session (§5.4); :class:`SessionEnded` follows.

        Raises:
            InvalidState: not ready, or the session is not open.
        """
        self._check_ready()
        rec = self.session(number)
        if rec.phase is not SessionPhase.OPEN:
            raise InvalidState(f"session {number} is {rec.phase.value}, not open")
        rec.phase = SessionPhase.CLOSING
        request_id = self._request("close", number)
        self._output.append(encode("close", id=request_id, session=number))
        return request_id

    def start_handshake(self, number: int, *, streams: list[str] | None = None, name: str = "") -> None:
        """Run the Hello/PubKey/Complete handshake (PROTOCOL.md §10) as initiator on the session.

        The backend's PubKey must be the key of the peer ID in ``opened``; on it the stream key
        is derived (:class:`HandshakeCompleted` when done, :class:`HandshakeFailed` otherwise).
        ``streams``: the named streams to accept and send on (frames on others are dropped, as
        Go does for unprepared names); None accepts every name.

        Raises:
            InvalidState: not ready, the session is not open, or the handshake was started already.
            InvalidStreamName, InvalidArgument, InvalidPeerID: bad names, or a non-Ed25519 backend ID.
        """
        self._check_ready()
        rec = self.session(number)
        if rec.phase is not SessionPhase.OPEN or rec.peer_id is None:
            raise InvalidState(f"session {number} is not open")
        if rec.handshake is not None:
            raise InvalidState(f"the handshake of session {number} was started already")
        if streams is not None:
            for stream in streams:
                _check_stream_name(stream)
                if stream == HANDSHAKE_STREAM:
                    raise InvalidStreamName("'handshake' is reserved for the handshake stream", stream=stream)
        handshake = HelloHandshake(
            local_public_key=self._public_key, remote_peer_id=rec.peer_id, name=name, initiator=True
        )
        rec.streams = frozenset(streams) if streams is not None else None
        rec.handshake = handshake
        for message in handshake.start():
            self._send_frame(rec, HANDSHAKE_STREAM, message)
        while rec.pending_handshake and self._sessions.get(number) is rec:
            self._on_handshake_frame(rec, rec.pending_handshake.popleft())

    def send_data(self, number: int, stream: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and queue it as a data frame on the named ``stream`` (PROTOCOL.md §8.4).

        Raises:
            InvalidState: not ready, the session is not open, or no stream key yet (handshake).
            InvalidStreamName: a bad name, "handshake", or a name outside the handshake's streams.
            MessageTooLarge: over ``max_message_size`` or the gateway's ``max_frame_bytes``.
        """
        self._check_ready()
        rec = self._open_session(number)
        _check_stream_name(stream)
        if stream == HANDSHAKE_STREAM or (rec.streams is not None and stream not in rec.streams):
            raise InvalidStreamName(f"stream {stream!r} was not prepared on session {number}", stream=stream)
        if rec.cipher is None:
            raise InvalidState(f"session {number} has no stream key yet: run the handshake first")
        size = memoryview(data).nbytes
        if size > self._max_message_size:
            raise MessageTooLarge(f"message of {size} bytes is over {self._max_message_size}", stream=stream)
        self._send_frame(rec, stream, rec.cipher.encrypt(data))

    def send_raw(self, number: int, stream: str, payload: bytes | bytearray | memoryview) -> None:
        """Queue ``payload`` as is (an already built Glueberry payload; the handshake stream's
        messages, or tests' tampered frames). Raises as :meth:`send_data`, without the key check."""
        self._check_ready()
        rec = self._open_session(number)
        _check_stream_name(stream)
        self._send_frame(rec, stream, bytes(payload))

    def ping(self) -> int:
        """Queue an application-level ``ping`` (§5.5); :class:`Pong` with the returned id follows."""
        self._check_ready()
        request_id = self._request("ping", 0)
        self._output.append(encode("ping", id=request_id))
        return request_id

    def refresh_token(self, token: str) -> int:
        """Queue a ``refresh`` (§4); :class:`TokenRefreshed` or :class:`RequestFailed` follows.
        The token is also used for the ``auth`` of a later resume."""
        self._check_ready()
        if not isinstance(token, str) or not token:
            raise InvalidArgument("token must be a non-empty string")
        request_id = self._request("refresh", 0)
        self._output.append(encode("refresh", id=request_id, token=token))
        self._new_tokens[request_id] = token
        return request_id

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket on purpose: the sessions are not resumed. Queues a :class:`CloseSocket`."""
        if self._socket_closed or self._closing_locally:
            return
        self._closing_locally = True
        self._output.append(CloseSocket(code, reason))

    @property
    def token(self) -> str | None:
        """The token sent in ``auth`` (the latest refreshed one)."""
        return self._token

    # ---- internals: state ---------------------------------------------------------------------

    def _advance(self, trigger: _Trigger) -> None:
        self._state = _TRANSITIONS[self._state][trigger]

    def _check_usable(self) -> None:
        if self._failed or self._socket_closed:
            raise InvalidState("the gateway socket is closed")

    def _check_ready(self) -> None:
        if self._state is not ClientState.READY or self._failed or self._closing_locally:
            raise InvalidState(f"the gateway socket is not ready ({self._state.value})")

    def _fail(self, exc: ProtocolViolation) -> GatewayProtocolError:
        self._failed = True
        self._advance(_Trigger.CLOSE)
        self._output.append(CloseSocket(int(exc.code), exc.message[:120]))
        return GatewayProtocolError(exc.message, exc.code)

    def _request(self, kind: str, session: int) -> int:
        if len(self._requests) >= MAX_PENDING_REQUESTS:
            raise LimitExceeded("too many requests waiting for the gateway", limit="pending_requests")
        while self._next_id in self._requests:
            self._next_id = self._next_id % MAX_ID + 1
        request_id = self._next_id
        self._next_id = self._next_id % MAX_ID + 1
        self._requests[request_id] = (kind, session)
        return request_id

    def _allocate_session(self) -> int:
        for _ in range(MAX_SESSION):
            number = self._next_session
            self._next_session = number % MAX_SESSION + 1
            if number not in self._sessions and number not in self._ghosts:
                return number
        raise LimitExceeded("every session number is in use", limit="sessions")

    def _expected_backend_peer(self, name: str) -> PeerID | None:
        for backend in self._backends:
            if name in (backend.name, str(backend.peer_id)):
                return backend.peer_id
        try:  # a peer ID not listed: opened must still name that peer
            return PeerID.from_string(name)
        except InvalidPeerID:
            return None

    def _open_session(self, number: int) -> SessionRecord:
        rec = self.session(number)
        if rec.phase is not SessionPhase.OPEN:
            raise InvalidState(f"session {number} is {rec.phase.value}, not open")
        return rec

    def _drop_session(self, number: int) -> None:
        rec = self._sessions.pop(number)
        if rec.cipher is not None:
            rec.cipher.close()

    def _end_session(
        self, rec: SessionRecord, code: int, message: str, *, tell_gateway: bool, report: bool = True
    ) -> None:
        """End a session we cannot use any more; with ``tell_gateway``, close it at the gateway too."""
        self._drop_session(rec.number)
        if tell_gateway and self._state is ClientState.READY and not self._closing_locally:
            request_id = (
                self._request("close", rec.number) if len(self._requests) < MAX_PENDING_REQUESTS else 0
            )
            if request_id:
                self._output.append(encode("close", id=request_id, session=rec.number))
                self._ghosts.add(rec.number)
        if report:
            self._events.append(SessionEnded(rec.number, code, message))

    # ---- internals: sending -------------------------------------------------------------------

    def _send_frame(self, rec: SessionRecord, stream: str, payload: bytes) -> None:
        frame = encode_data_frame(rec.number, stream, payload)
        if len(frame) > self._limits.max_frame_bytes:
            raise MessageTooLarge(
                f"data frame of {len(frame)} bytes is over the gateway's max_frame_bytes "
                f"({self._limits.max_frame_bytes})",
                stream=stream,
            )
        rec.sent += 1
        rec.outbox.append(frame)
        rec.outbox_bytes += len(frame)
        while len(rec.outbox) > self._outbox_frames or (
            rec.outbox_bytes > self._outbox_bytes and len(rec.outbox) > 1
        ):
            rec.outbox_bytes -= len(rec.outbox.popleft())
        self._output.append(frame)

    # ---- internals: receiving -----------------------------------------------------------------

    def _dispatch(self, obj: dict[str, Any]) -> None:
        kind = obj["type"]
        if kind == "error":
            self._on_error(obj)
        elif kind == "drain":
            self._draining = True
            self._events.append(DrainRequested(_req_int(obj, "reconnect_after_ms", 0, 2**31 - 1)))
        elif self._state is ClientState.AWAIT_CHALLENGE:
            if kind != "challenge":
                raise _violation(f"expected a challenge, got {kind[:40]!r}")
            self._on_challenge(obj)
        elif self._state is ClientState.AWAIT_READY:
            if kind != "ready":
                raise _violation(f"expected ready, got {kind[:40]!r}")
            self._on_ready(obj)
        elif kind == "opened":
            self._on_opened(obj)
        elif kind == "sign":
            self._on_sign(obj)
        elif kind == "closed":
            self._on_closed(obj)
        elif kind == "stream_closed":
            number = _req_int(obj, "session", 1, MAX_SESSION)
            stream = _get_str(obj, "stream", 64)
            if number in self._sessions:
                self._events.append(StreamEnded(number, stream))
        elif kind == "pong":
            request_id = _req_int(obj, "id", 1, MAX_ID)
            if self._requests.get(request_id, ("", 0))[0] == "ping":
                del self._requests[request_id]
                self._events.append(Pong(request_id))
        elif kind == "refreshed":
            request_id = _req_int(obj, "id", 1, MAX_ID)
            expires_at = _get_number(obj, "expires_at")
            if self._requests.get(request_id, ("", 0))[0] == "refresh":
                del self._requests[request_id]
                self._token = self._new_tokens.pop(request_id, self._token)
                self._events.append(TokenRefreshed(request_id, expires_at))
        elif kind == "token_expiring":
            self._events.append(TokenExpiring(_get_number(obj, "expires_at")))
        else:  # challenge/ready again, or a type v1 does not define (§2: protocol error)
            raise _violation(f"unexpected message type {kind[:40]!r}")

    def _on_challenge(self, obj: dict[str, Any]) -> None:
        if obj.get("version") != PROTOCOL_VERSION:
            raise _violation(f"challenge version must be {PROTOCOL_VERSION}", Code.UNSUPPORTED_VERSION)
        nonce = b64d(obj.get("nonce"), "nonce", size=32)
        gateway = _get_peer_id(obj.get("gateway"), "challenge.gateway")
        if self._expected_gateway is not None and gateway != self._expected_gateway:
            raise _violation(f"challenge from gateway {gateway}, expected {self._expected_gateway}")
        self._gateway_peer_id = gateway
        signature = self._identity.sign(auth_message(str(gateway), self._origin, nonce))
        resume = None
        if self._resume is not None:
            counts = {str(n): rec.received for n, rec in self._sessions.items()}
            resume = {"token": b64e(self._resume.token), "sessions": counts}
        self._output.append(
            encode(
                "auth",
                version=PROTOCOL_VERSION,
                public_key=self._public_key,
                signature=signature,
                token=self._token,
                resume=resume,
                batch=True,  # we take batch messages (§5.6)
            )
        )
        self._advance(_Trigger.CHALLENGE)

    def _on_ready(self, obj: dict[str, Any]) -> None:
        peer = _get_peer_id(obj.get("peer_id"), "ready.peer_id")
        if peer != self._peer_id:
            raise _violation(f"ready names peer {peer}, but our key is {self._peer_id}")
        token = b64d(obj.get("resume_token"), "resume_token", size=24)
        grace = _get_number(obj, "resume_grace", 30.0)
        self._gateway_batches = obj.get("batch") is True
        raw_backends = obj.get("backends") or []
        if not isinstance(raw_backends, list) or len(raw_backends) > MAX_BACKENDS:
            raise _violation(f"ready.backends must be a list of at most {MAX_BACKENDS}")
        backends = []
        for raw in raw_backends:
            if not isinstance(raw, dict):
                raise _violation("ready.backends holds objects")
            item = {"type": "ready.backends", **raw}
            name = _get_str(item, "name", MAX_NAME_CHARS)
            backends.append(BackendInfo(name, _get_peer_id(item.get("peer_id"), "backend peer_id")))
        raw_limits = obj.get("limits") or {}
        if not isinstance(raw_limits, dict):
            raise _violation("ready.limits must be an object")
        raw_limits = {"type": "ready.limits", **raw_limits}
        defaults = GatewayLimits()
        limits = GatewayLimits(
            *(
                _get_int(raw_limits, key, 1, 2**31 - 1, required=False) or getattr(defaults, key)
                for key in ("max_sessions", "max_streams", "max_frame_bytes", "max_control_bytes")
            )
        )
        resumed = obj.get("resumed") or {}
        if not isinstance(resumed, dict):
            raise _violation("ready.resumed must be an object")
        self._backends = tuple(backends)
        self._limits = limits
        self._resume_token = token
        self._resume_grace = grace
        self._advance(_Trigger.READY)
        self._events.append(Authenticated(peer, self._backends, limits, token, grace))
        if self._resume is not None:
            self._apply_resumed(resumed)

    def _apply_resumed(self, resumed: dict[str, Any]) -> None:
        """§6: re-attach each carried session or end it; re-send what the gateway did not get."""
        for number, rec in list(self._sessions.items()):
            entry = resumed.get(str(number))
            if not isinstance(entry, dict) or entry.get("recovered") is not True:
                self._drop_session(number)
                self._events.append(
                    SessionEnded(number, Code.SESSION_EXPIRED, "the gateway did not recover this session")
                )
                continue
            got = entry.get("received")
            if type(got) is not int or got < 0:
                raise _violation("ready.resumed: a recovered session needs a 'received' count")
            if got > rec.sent:
                self._end_session(
                    rec,
                    Code.RESUME_FAILED,
                    f"gateway claims {got} frames, we sent {rec.sent}",
                    tell_gateway=True,
                )
                continue
            if got < rec.outbox_base:
                self._end_session(
                    rec,
                    Code.RESUME_FAILED,
                    f"frames {got}..{rec.outbox_base - 1} are no longer in the outbox; cannot re-send them",
                    tell_gateway=True,
                )
                continue
            for _ in range(got - rec.outbox_base):  # confirmed: no longer needed
                rec.outbox_bytes -= len(rec.outbox.popleft())
            self._output.extend(rec.outbox)
            self._events.append(SessionResumed(number, len(rec.outbox)))
        self._resume = None

    def _on_opened(self, obj: dict[str, Any]) -> None:
        request_id = _req_int(obj, "id", 1, MAX_ID)
        number = _req_int(obj, "session", 1, MAX_SESSION)
        peer = _get_peer_id(obj.get("peer_id"), "opened.peer_id")
        rec = self._sessions.get(number)
        if (
            self._requests.get(request_id) != ("open", number)
            or rec is None
            or rec.phase is not SessionPhase.OPENING
        ):
            raise _violation(f"opened for session {number} that we are not opening")
        del self._requests[request_id]
        rec.peer_id = peer
        rec.phase = SessionPhase.OPEN
        if rec.expected_peer is not None and peer != rec.expected_peer:
            message = f"gateway opened {peer}, but {rec.backend!r} is {rec.expected_peer}"
            self._end_session(rec, Code.BACKEND_UNKNOWN, message, tell_gateway=True, report=False)
            self._events.append(
                SessionOpenFailed(number, GatewayError(Code.BACKEND_UNKNOWN, message, session=number))
            )
            return
        self._events.append(SessionOpened(number, rec.backend, peer))

    def _on_sign(self, obj: dict[str, Any]) -> None:
        request_id = _req_int(obj, "id", 1, MAX_ID)
        number = _req_int(obj, "session", 1, MAX_SESSION)
        payload = b64d(obj.get("payload"), "sign.payload", max_size=1024)
        rec = self._sessions.get(number)
        reason = ""
        if rec is None or rec.phase is not SessionPhase.OPENING:
            reason = "no session is being opened under that number"
        elif not is_noise_payload(payload):
            reason = "not a libp2p Noise static key payload"
        elif rec.signatures >= MAX_SIGNATURES_PER_OPEN:
            reason = "too many sign requests for one open"
        if reason:  # §5.1: the browser's key only ever vouches for a Noise static key
            self._output.append(encode("sign_refused", id=request_id))
            self._events.append(SignatureRefused(number, request_id, reason))
            return
        assert rec is not None
        rec.signatures += 1
        self._output.append(encode("signature", id=request_id, signature=self._identity.sign(payload)))
        self._events.append(SignatureSent(number, request_id))

    def _on_closed(self, obj: dict[str, Any]) -> None:
        number = _req_int(obj, "session", 1, MAX_SESSION)
        code = _req_int(obj, "code", 1000, 4999)
        message = _get_str(obj, "message", 4096, "")
        request_id = _get_int(obj, "id", 1, MAX_ID, required=False)
        if request_id is not None:
            self._requests.pop(request_id, None)
        self._ghosts.discard(number)
        rec = self._sessions.get(number)
        if rec is None:
            return  # already ended here (a race with our own close)
        self._drop_session(number)
        if rec.phase is SessionPhase.OPENING:
            for rid, (kind, n) in list(self._requests.items()):
                if kind == "open" and n == number:
                    del self._requests[rid]
            self._events.append(SessionOpenFailed(number, SessionClosed(code, message, session=number)))
        else:
            self._events.append(SessionEnded(number, code, message))

    def _on_error(self, obj: dict[str, Any]) -> None:
        code = _req_int(obj, "code", 1000, 4999)
        message = _get_str(obj, "message", 4096, "")
        request_id = _get_int(obj, "id", 1, MAX_ID, required=False)
        number = _get_int(obj, "session", 1, MAX_SESSION, required=False)
        error = GatewayError(code, message, request_id=request_id, session=number)
        request = self._requests.pop(request_id, None) if request_id is not None else None
        if request is not None:
            kind, session = request
            rec = self._sessions.get(session)
            if kind == "open" and rec is not None:
                self._drop_session(session)
                self._events.append(SessionOpenFailed(session, error))
            elif kind == "close":
                self._ghosts.discard(session)
                if rec is not None:
                    self._drop_session(session)
                    self._events.append(SessionEnded(session, code, message))
            elif kind in ("ping", "refresh"):
                self._new_tokens.pop(request_id or 0, None)
                self._events.append(RequestFailed(request_id or 0, error))
            return
        if number is not None and number in self._sessions and code >= 4100:
            self._events.append(SessionErrorReceived(number, error))
            return
        self._last_error = error
        self._events.append(GatewayErrorReceived(error))

    def _on_data(self, data: bytes | memoryview) -> None:
        frame = decode_data_frame(data, max_bytes=self._max_receive_bytes)
        rec = self._sessions.get(frame.session)
        if rec is None:
            if frame.session in self._ghosts:
                return
            raise _violation(f"data frame for session {frame.session}, which is not open")
        if rec.phase is SessionPhase.OPENING:
            raise _violation(f"data frame for session {frame.session} before opened")
        rec.received += 1
        if rec.phase is SessionPhase.CLOSING:
            self._dropped(rec, frame.stream, "the session is closing")
        elif frame.stream == HANDSHAKE_STREAM:
            self._on_handshake_frame(rec, bytes(frame.payload))
        else:
            self._on_named_frame(rec, frame.stream, frame.payload)  # decrypted from the view

    def _dropped(self, rec: SessionRecord, stream: str, reason: str) -> None:
        rec.dropped_frames += 1
        self._events.append(FrameDropped(rec.number, stream, reason))

    def _on_handshake_frame(self, rec: SessionRecord, payload: bytes) -> None:
        handshake = rec.handshake
        if handshake is None:  # the handshake was not started yet: keep it for start_handshake()
            if self._may_hold(rec, HANDSHAKE_STREAM, "too many frames held before the handshake"):
                rec.pending_handshake.append(payload)
            return
        try:
            step = handshake.receive(payload)
            for action in step.actions:
                if isinstance(action, PeerHello):
                    self._events.append(PeerHelloReceived(rec.number, action.name))
                elif isinstance(action, PrepareRequested):
                    rec.cipher = StreamCipher(shared_key(self._identity, action.public_key))
                    rec.peer_public_key = action.public_key
                elif isinstance(action, SendMessage):
                    self._send_frame(rec, HANDSHAKE_STREAM, action.data)
                elif isinstance(action, FinalizeRequested):
                    self._established(rec)
        except GlueberryError as exc:  # HandshakeError family, InvalidKey, InvalidState
            self._events.append(HandshakeFailed(rec.number, exc))
            self._end_session(rec, Code.NORMAL, f"handshake failed: {exc}", tell_gateway=True)
            return
        if rec.cipher is not None:
            while rec.pending_named and self._sessions.get(rec.number) is rec:
                self._decrypt(rec, *rec.pending_named.popleft())

    def _established(self, rec: SessionRecord) -> None:
        if not rec.established:
            rec.established = True
            assert rec.peer_public_key is not None
            self._events.append(HandshakeCompleted(rec.number, rec.peer_public_key))

    def _may_hold(self, rec: SessionRecord, stream: str, reason: str) -> bool:
        """Whether one more frame may wait for the handshake (the bound is shared by both
        queues); if not, it is counted as dropped for ``reason``."""
        if len(rec.pending_handshake) + len(rec.pending_named) < self._pending_frames:
            return True
        self._dropped(rec, stream, reason)
        return False

    def _on_named_frame(self, rec: SessionRecord, stream: str, payload: bytes | memoryview) -> None:
        if rec.streams is not None and stream not in rec.streams:
            self._dropped(rec, stream, "stream not prepared")
        elif rec.cipher is None or rec.pending_named:
            if self._may_hold(rec, stream, "too many frames held before the stream key"):
                rec.pending_named.append((stream, bytes(payload)))  # not a view pinning a batch
        else:
            self._decrypt(rec, stream, payload)

    def _decrypt(self, rec: SessionRecord, stream: str, payload: bytes | memoryview) -> None:
        assert rec.cipher is not None
        try:
            plaintext = rec.cipher.decrypt(payload)
        except DecryptionFailed:
            rec.decryption_errors += 1
            self._events.append(FrameUndecryptable(rec.number, stream))
            return
        handshake = rec.handshake
        if not rec.established and handshake is not None:
            # A frame under our key proves the peer prepared, even if its Complete never comes.
            for _ in handshake.established_by_traffic():
                self._established(rec)
        self._events.append(MessageReceived(rec.number, stream, plaintext))
