"""Sans-I/O core of the gateway client: the browser side of ``glueberry.v1`` (docs/gateway-protocol.md),
the mirror of :class:`glueberry_gateway.server.core.ServerProtocol`.

:class:`ClientProtocol` is fed the WebSocket messages of one socket (:meth:`~ClientProtocol.receive_text`,
:meth:`~ClientProtocol.receive_binary`, :meth:`~ClientProtocol.connection_closed`) and produces
typed events (:meth:`~ClientProtocol.events_received`) and messages to send
(:meth:`~ClientProtocol.data_to_send`: ``str`` = text frame, ``bytes`` = binary frame,
:class:`~glueberry_gateway.protocol.codes.CloseSocket` = close the socket). It plays the browser
of §1: it holds the Ed25519 identity, answers the challenge (§3), signs only genuine Noise
payloads (§5.1), and its sessions (:class:`~.record.SessionRecord`) run the Hello/PubKey/Complete
handshake (PROTOCOL.md §10) as initiator and do the Glueberry encryption themselves, so the
gateway never sees a key or a plaintext.

Socket states (:data:`TRANSITIONS`)::

    AWAIT_CHALLENGE --challenge--> AWAIT_READY --ready--> READY
           \\________________________\\____________________\\--close/failure--> CLOSED

Resume (§6): each session counts the data frames received and sent and keeps the last sent frames
in a bounded outbox. When a socket drops, :meth:`ClientProtocol.resume_state` hands the open
sessions to a new core, which asks the gateway to re-attach them, re-sends what the gateway says
it did not get, and ends the sessions it cannot recover.

Everything is bounded: control messages, frames, pending requests, frames held before the
handshake key, the outbox. The asyncio driver is :mod:`glueberry_gateway.client.asyncio`.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.config import HANDSHAKE_STREAM
from glueberry.exceptions import (
    InvalidArgument,
    InvalidPeerID,
    InvalidState,
    InvalidStreamName,
    LimitExceeded,
    MessageTooLarge,
)
from glueberry.handshake import HelloHandshake
from glueberry.p2p.keys import PeerID, public_key_bytes
from glueberry.wire.cipher import OVERHEAD

from ..protocol import control
from ..protocol.auth import auth_message, is_noise_payload
from ..protocol.codes import CloseSocket, Code
from ..protocol.control import MAX_ID, MAX_NAME_CHARS, BackendInfo, GatewayLimits
from ..protocol.errors import ProtocolViolation
from ..protocol.frames import (
    MAX_SESSION,
    check_stream_name,
    decode_batch,
    decode_data_frame,
    is_batch,
    pack_batches,
)
from .errors import GatewayClosed, GatewayError, GatewayProtocolError, SessionClosed
from .events import (
    Authenticated,
    ClientEvent,
    CloseInfo,
    ConnectionEnded,
    DrainRequested,
    GatewayErrorReceived,
    HandshakeFailed,
    Pong,
    RequestFailed,
    SessionEnded,
    SessionErrorReceived,
    SessionOpened,
    SessionOpenFailed,
    SessionResumed,
    SignatureRefused,
    SignatureSent,
    StreamEnded,
    TokenExpiring,
    TokenRefreshed,
)
from .record import ResumeState, SessionBounds, SessionPhase, SessionRecord

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_RECEIVE_BYTES",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_OUTBOX_FRAMES",
    "RESUMABLE_CODES",
    "ClientProtocol",
    "ClientState",
    "Outgoing",
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

Outgoing: TypeAlias = str | bytes | CloseSocket


class ClientState(Enum):
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_READY = "await_ready"
    READY = "ready"
    CLOSED = "closed"


TRANSITIONS: Final[dict[ClientState, frozenset[ClientState]]] = {
    ClientState.AWAIT_CHALLENGE: frozenset({ClientState.AWAIT_READY, ClientState.CLOSED}),
    ClientState.AWAIT_READY: frozenset({ClientState.READY, ClientState.CLOSED}),
    ClientState.READY: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset({ClientState.CLOSED}),
}
# The one message each state before READY waits for; error and drain come at any time.
_EXPECTED: Final[dict[ClientState, type[control.Challenge] | type[control.Ready]]] = {
    ClientState.AWAIT_CHALLENGE: control.Challenge,
    ClientState.AWAIT_READY: control.Ready,
}


def _violation(message: str, code: Code = Code.PROTOCOL_ERROR) -> ProtocolViolation:
    return ProtocolViolation(code, message)


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
        bounds = (
            max_receive_bytes,
            max_control_bytes,
            max_message_size,
            outbox_frames,
            outbox_bytes,
            pending_frames,
        )
        if min(bounds) < 1:
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
        self._limits = GatewayLimits()
        self._bounds = SessionBounds(
            self._limits.max_frame_bytes, outbox_frames, outbox_bytes, pending_frames
        )

        self._state = ClientState.AWAIT_CHALLENGE
        self._events: list[ClientEvent] = []
        self._output: list[Outgoing] = []
        self._gateway_peer_id: PeerID | None = None
        self._backends: tuple[BackendInfo, ...] = ()
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

    @property
    def token(self) -> str | None:
        """The token sent in ``auth`` (the latest refreshed one)."""
        return self._token

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

    # ---- sans-I/O plumbing (and the RecordHost the sessions use) ------------------------------

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

    def emit(self, event: ClientEvent) -> None:
        self._events.append(event)

    def send(self, frame: bytes) -> None:
        self._output.append(frame)

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
            self._dispatch(control.decode_server_message(text, max_bytes=self._max_control_bytes))
        except ProtocolViolation as exc:
            raise self._fail(exc) from exc

    def receive_binary(self, data: bytes) -> None:
        """Feed one binary message (a data frame, §5.2). Contract as :meth:`receive_text`."""
        self._check_usable()
        try:
            if self._state is not ClientState.READY:
                raise _violation("data frame before ready")
            if is_batch(data):
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
        self._advance(ClientState.CLOSED)
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
                self.emit(SessionOpenFailed(number, GatewayClosed(code, reason or "socket closed")))
            elif rec.phase is SessionPhase.CLOSING or not self._resumable:
                self._drop_session(number)
                self.emit(SessionEnded(number, code, reason or "socket closed"))
        for request_id, (kind, _) in self._requests.items():
            if kind in ("ping", "refresh"):
                self.emit(RequestFailed(request_id, GatewayClosed(code, reason, resumable=self._resumable)))
        self._requests.clear()
        self._new_tokens.clear()
        self.emit(ConnectionEnded(CloseInfo(code, reason, self._resumable)))

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
        self._output.append(control.encode(control.Open(request_id, number, name)))
        return number

    def close_session(self, number: int) -> int:
        """Ask the gateway to close an open session (§5.4); :class:`SessionEnded` follows.

        Raises:
            InvalidState: not ready, or the session is not open.
        """
        self._check_ready()
        rec = self._open_session(number)
        rec.phase = SessionPhase.CLOSING
        request_id = self._request("close", number)
        self._output.append(control.encode(control.Close(request_id, number)))
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
        for stream in streams or ():
            check_stream_name(stream)
            if stream == HANDSHAKE_STREAM:
                raise InvalidStreamName("'handshake' is reserved for the handshake stream", stream=stream)
        handshake = HelloHandshake(
            local_public_key=self._public_key, remote_peer_id=rec.peer_id, name=name, initiator=True
        )
        chosen = frozenset(streams) if streams is not None else None
        self._check_handshake(rec, rec.start_handshake(handshake, chosen, self, self._identity, self._bounds))

    def send_data(self, number: int, stream: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and queue it as a data frame on the named ``stream`` (PROTOCOL.md §8.4).

        Raises:
            InvalidState: not ready, the session is not open, or no stream key yet (handshake).
            InvalidStreamName: a bad name, "handshake", or a name outside the handshake's streams.
            MessageTooLarge: over ``max_message_size`` or the gateway's ``max_frame_bytes``.
        """
        self._check_ready()
        rec = self._open_session(number)
        check_stream_name(stream)
        if stream == HANDSHAKE_STREAM or (rec.streams is not None and stream not in rec.streams):
            raise InvalidStreamName(f"stream {stream!r} was not prepared on session {number}", stream=stream)
        if rec.cipher is None:
            raise InvalidState(f"session {number} has no stream key yet: run the handshake first")
        size = memoryview(data).nbytes
        if size > self._max_message_size:
            raise MessageTooLarge(f"message of {size} bytes is over {self._max_message_size}", stream=stream)
        self.send(rec.frame(stream, rec.cipher.encrypt(data), self._bounds))

    def send_raw(self, number: int, stream: str, payload: bytes | bytearray | memoryview) -> None:
        """Queue ``payload`` as is (an already built Glueberry payload; the handshake stream's
        messages, or tests' tampered frames). Raises as :meth:`send_data`, without the key check."""
        self._check_ready()
        rec = self._open_session(number)
        check_stream_name(stream)
        self.send(rec.frame(stream, bytes(payload), self._bounds))

    def ping(self) -> int:
        """Queue an application-level ``ping`` (§5.5); :class:`Pong` with the returned id follows."""
        self._check_ready()
        request_id = self._request("ping", 0)
        self._output.append(control.encode(control.Ping(request_id)))
        return request_id

    def refresh_token(self, token: str) -> int:
        """Queue a ``refresh`` (§4); :class:`TokenRefreshed` or :class:`RequestFailed` follows.
        The token is also used for the ``auth`` of a later resume."""
        self._check_ready()
        if not isinstance(token, str) or not token:
            raise InvalidArgument("token must be a non-empty string")
        request_id = self._request("refresh", 0)
        self._output.append(control.encode(control.Refresh(request_id, token)))
        self._new_tokens[request_id] = token
        return request_id

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket on purpose: the sessions are not resumed. Queues a :class:`CloseSocket`."""
        if self._socket_closed or self._closing_locally:
            return
        self._closing_locally = True
        self._output.append(CloseSocket(code, reason))

    # ---- internals: state -------------------------------------------------------------------

    def _advance(self, state: ClientState) -> None:
        assert state in TRANSITIONS[self._state], (self._state, state)
        self._state = state

    def _check_usable(self) -> None:
        if self._failed or self._socket_closed:
            raise InvalidState("the gateway socket is closed")

    def _check_ready(self) -> None:
        if self._state is not ClientState.READY or self._failed or self._closing_locally:
            raise InvalidState(f"the gateway socket is not ready ({self._state.value})")

    def _fail(self, exc: ProtocolViolation) -> GatewayProtocolError:
        self._failed = True
        self._advance(ClientState.CLOSED)
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
                self._output.append(control.encode(control.Close(request_id, rec.number)))
                self._ghosts.add(rec.number)
        if report:
            self.emit(SessionEnded(rec.number, code, message))

    def _check_handshake(self, rec: SessionRecord, error: Exception | None) -> None:
        """A session whose handshake failed is ended (and closed at the gateway)."""
        if error is not None:
            self.emit(HandshakeFailed(rec.number, error))  # type: ignore[arg-type]
            self._end_session(rec, Code.NORMAL, f"handshake failed: {error}", tell_gateway=True)

    # ---- internals: receiving -----------------------------------------------------------------

    def _dispatch(self, message: control.ServerMessage) -> None:
        if isinstance(message, control.ErrorMessage):
            self._on_error(message)
            return
        if isinstance(message, control.Drain):
            self._draining = True
            self.emit(DrainRequested(message.reconnect_after_ms))
            return
        expected = _EXPECTED.get(self._state)
        if expected is not None and not isinstance(message, expected):
            raise _violation(f"expected {expected.TYPE}, got {message.TYPE!r}")
        if isinstance(message, control.Challenge) and expected is not None:
            self._on_challenge(message)
        elif isinstance(message, control.Ready) and expected is not None:
            self._on_ready(message)
        elif isinstance(message, control.Opened):
            self._on_opened(message)
        elif isinstance(message, control.Sign):
            self._on_sign(message)
        elif isinstance(message, control.Closed):
            self._on_closed(message)
        elif isinstance(message, control.StreamClosed):
            if message.session in self._sessions:
                self.emit(StreamEnded(message.session, message.stream))
        elif isinstance(message, control.Pong):
            if self._requests.get(message.id, ("", 0))[0] == "ping":
                del self._requests[message.id]
                self.emit(Pong(message.id))
        elif isinstance(message, control.Refreshed):
            if self._requests.get(message.id, ("", 0))[0] == "refresh":
                del self._requests[message.id]
                self._token = self._new_tokens.pop(message.id, self._token)
                self.emit(TokenRefreshed(message.id, message.expires_at))
        elif isinstance(message, control.TokenExpiring):
            self.emit(TokenExpiring(message.expires_at))
        else:  # challenge/ready again (§2: protocol error)
            raise _violation(f"unexpected message type {message.TYPE!r}")

    def _on_challenge(self, message: control.Challenge) -> None:
        gateway = message.gateway
        if self._expected_gateway is not None and gateway != self._expected_gateway:
            raise _violation(f"challenge from gateway {gateway}, expected {self._expected_gateway}")
        self._gateway_peer_id = gateway
        signature = self._identity.sign(auth_message(str(gateway), self._origin, message.nonce))
        resume = None
        if self._resume is not None:
            counts = {n: rec.received for n, rec in self._sessions.items()}
            resume = control.ResumeRequest(self._resume.token, counts)
        # batch: we take batch messages (§5.6)
        auth = control.Auth(self._public_key, signature, token=self._token, resume=resume, batch=True)
        self._output.append(control.encode(auth))
        self._advance(ClientState.AWAIT_READY)

    def _on_ready(self, message: control.Ready) -> None:
        if message.peer_id != self._peer_id:
            raise _violation(f"ready names peer {message.peer_id}, but our key is {self._peer_id}")
        self._gateway_batches = message.batch
        self._backends = message.backends
        self._limits = message.limits
        self._bounds = SessionBounds(
            message.limits.max_frame_bytes,
            self._bounds.outbox_frames,
            self._bounds.outbox_bytes,
            self._bounds.pending_frames,
        )
        self._resume_token = message.resume_token
        self._resume_grace = message.resume_grace
        self._advance(ClientState.READY)
        self.emit(
            Authenticated(
                message.peer_id, message.backends, message.limits, message.resume_token, message.resume_grace
            )
        )
        if self._resume is not None:
            self._apply_resumed(message.resumed or {})

    def _apply_resumed(self, resumed: dict[int, control.ResumeOutcome]) -> None:
        """§6: re-attach each carried session or end it; re-send what the gateway did not get."""
        for number, rec in list(self._sessions.items()):
            outcome = resumed.get(number)
            if outcome is None or not outcome.recovered or outcome.received is None:
                self._drop_session(number)
                self.emit(
                    SessionEnded(number, Code.SESSION_EXPIRED, "the gateway did not recover this session")
                )
                continue
            got = outcome.received
            if got > rec.sent:
                message = f"gateway claims {got} frames, we sent {rec.sent}"
                self._end_session(rec, Code.RESUME_FAILED, message, tell_gateway=True)
                continue
            if got < rec.outbox_base:
                message = (
                    f"frames {got}..{rec.outbox_base - 1} are no longer in the outbox; cannot re-send them"
                )
                self._end_session(rec, Code.RESUME_FAILED, message, tell_gateway=True)
                continue
            rec.confirm(got)
            self._output.extend(rec.outbox)
            self.emit(SessionResumed(number, len(rec.outbox)))
        self._resume = None

    def _on_opened(self, message: control.Opened) -> None:
        number, peer = message.session, message.peer_id
        rec = self._sessions.get(number)
        if (
            self._requests.get(message.id) != ("open", number)
            or rec is None
            or rec.phase is not SessionPhase.OPENING
        ):
            raise _violation(f"opened for session {number} that we are not opening")
        del self._requests[message.id]
        rec.peer_id = peer
        rec.phase = SessionPhase.OPEN
        if rec.expected_peer is not None and peer != rec.expected_peer:
            text = f"gateway opened {peer}, but {rec.backend!r} is {rec.expected_peer}"
            self._end_session(rec, Code.BACKEND_UNKNOWN, text, tell_gateway=True, report=False)
            self.emit(SessionOpenFailed(number, GatewayError(Code.BACKEND_UNKNOWN, text, session=number)))
            return
        self.emit(SessionOpened(number, rec.backend, peer))

    def _on_sign(self, message: control.Sign) -> None:
        number, request_id = message.session, message.id
        rec = self._sessions.get(number)
        reason = ""
        if rec is None or rec.phase is not SessionPhase.OPENING:
            reason = "no session is being opened under that number"
        elif not is_noise_payload(message.payload):
            reason = "not a libp2p Noise static key payload"
        elif rec.signatures >= MAX_SIGNATURES_PER_OPEN:
            reason = "too many sign requests for one open"
        if reason:  # §5.1: the browser's key only ever vouches for a Noise static key
            self._output.append(control.encode(control.SignRefused(request_id)))
            self.emit(SignatureRefused(number, request_id, reason))
            return
        assert rec is not None
        rec.signatures += 1
        signature = self._identity.sign(message.payload)
        self._output.append(control.encode(control.Signature(request_id, signature)))
        self.emit(SignatureSent(number, request_id))

    def _on_closed(self, message: control.Closed) -> None:
        number = message.session
        if message.id is not None:
            self._requests.pop(message.id, None)
        self._ghosts.discard(number)
        rec = self._sessions.get(number)
        if rec is None:
            return  # already ended here (a race with our own close)
        self._drop_session(number)
        if rec.phase is SessionPhase.OPENING:
            for rid, (kind, n) in list(self._requests.items()):
                if kind == "open" and n == number:
                    del self._requests[rid]
            self.emit(SessionOpenFailed(number, SessionClosed(message.code, message.message, session=number)))
        else:
            self.emit(SessionEnded(number, message.code, message.message))

    def _on_error(self, message: control.ErrorMessage) -> None:
        code, text, request_id, number = message.code, message.message, message.id, message.session
        error = GatewayError(code, text, request_id=request_id, session=number)
        request = self._requests.pop(request_id, None) if request_id is not None else None
        if request is not None:
            kind, session = request
            rec = self._sessions.get(session)
            if kind == "open" and rec is not None:
                self._drop_session(session)
                self.emit(SessionOpenFailed(session, error))
            elif kind == "close":
                self._ghosts.discard(session)
                if rec is not None:
                    self._drop_session(session)
                    self.emit(SessionEnded(session, code, text))
            elif kind in ("ping", "refresh"):
                self._new_tokens.pop(request_id or 0, None)
                self.emit(RequestFailed(request_id or 0, error))
            return
        if number is not None and number in self._sessions and code >= 4100:
            self.emit(SessionErrorReceived(number, error))
            return
        self._last_error = error
        self.emit(GatewayErrorReceived(error))

    def _on_data(self, data: bytes | memoryview) -> None:
        frame = decode_data_frame(data, max_bytes=self._max_receive_bytes)
        rec = self._sessions.get(frame.session)
        if rec is None:
            if frame.session in self._ghosts:
                return
            raise _violation(f"data frame for session {frame.session}, which is not open")
        if rec.phase is SessionPhase.OPENING:
            raise _violation(f"data frame for session {frame.session} before opened")
        self._check_handshake(
            rec, rec.receive(frame.stream, frame.payload, self, self._identity, self._bounds)
        )
