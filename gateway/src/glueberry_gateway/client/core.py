"""Sans-I/O core of the gateway client: the browser side of ``glueberry.v1`` (docs/gateway-protocol.md),
the mirror of :class:`glueberry_gateway.server.core.ServerProtocol`.

:class:`ClientProtocol` is fed the WebSocket messages of one socket (:meth:`~ClientProtocol.receive_text`,
:meth:`~ClientProtocol.receive_binary`, :meth:`~ClientProtocol.connection_closed`) and produces
typed events (:meth:`~ClientProtocol.events_received`) and messages to send
(:meth:`~ClientProtocol.data_to_send`: ``str`` = text frame, ``bytes`` = binary frame,
:class:`~glueberry_gateway.protocol.codes.CloseSocket` = close the socket). It plays the browser
of §1: it holds the Ed25519 identity, answers the challenge (§3), signs only genuine Noise
payloads (§5.1), and its sessions (:class:`~.record.SessionRecord`) run the application's
handshake (:mod:`.handshake`; Hello/PubKey/Complete by default) as initiator and do the Glueberry
encryption themselves, so the gateway never sees a key or a plaintext.

Socket states (:data:`TRANSITIONS`)::

    AWAIT_CHALLENGE --challenge--> AWAIT_READY --ready--> READY
           \\________________________\\____________________\\--close/failure--> CLOSED

Resume (§6) is :mod:`.resume`'s: a dropped socket's open sessions pass to a new core with
:meth:`ClientProtocol.resume_state`. The sessions themselves are :class:`~.sessions.SessionTable`'s.
Everything is bounded. The asyncio driver is :mod:`glueberry_gateway.client.asyncio`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import InvalidArgument, InvalidState
from glueberry.p2p.keys import PeerID, public_key_bytes

from ..protocol import control
from ..protocol.auth import auth_message
from ..protocol.codes import CloseSocket
from ..protocol.control import BackendInfo, GatewayLimits
from ..protocol.errors import ProtocolViolation
from ..protocol.fields import violation
from ..protocol.frames import decode_batch, is_batch, pack_runs
from .errors import GatewayClosed, GatewayError, GatewayProtocolError
from .events import (
    Authenticated,
    ClientEvent,
    CloseInfo,
    ConnectionEnded,
    DrainRequested,
    GatewayErrorReceived,
    Pong,
    RequestFailed,
    SessionErrorReceived,
    StreamEnded,
    TokenExpiring,
    TokenRefreshed,
)
from .handshake import HandshakeFactory
from .record import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_FRAMES,
    DEFAULT_PENDING_FRAMES,
    SessionBounds,
    SessionPhase,
    SessionRecord,
)
from .requests import Requests
from .resume import ResumeState, resumable
from .sessions import SessionTable
from .state import (
    DEFAULT_MAX_CONTROL_BYTES,
    DEFAULT_MAX_RECEIVE_BYTES,
    EXPECTED,
    TRANSITIONS,
    ClientState,
    Outgoing,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_RECEIVE_BYTES",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_OUTBOX_FRAMES",
    "ClientProtocol",
    "ClientState",
    "Outgoing",
]


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
        bounds = (max_receive_bytes, max_control_bytes, max_message_size, outbox_frames, outbox_bytes)
        if min(*bounds, pending_frames) < 1:
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
        self._limits = GatewayLimits()
        self._table = SessionTable(
            self,
            identity,
            self._public_key,
            SessionBounds(self._limits.max_frame_bytes, outbox_frames, outbox_bytes, pending_frames),
            max_message_size,
            records=resume.sessions if resume else {},
            next_number=resume.next_session if resume else 1,
        )
        self._state = ClientState.AWAIT_CHALLENGE
        self._events: list[ClientEvent] = []
        self._output: list[Outgoing] = []
        self._gateway_peer_id: PeerID | None = None
        self._gateway_batches = False  # ready said the gateway takes batch messages (§5.6)
        self._resume_token: bytes | None = None
        self._resume_grace = resume.resume_grace if resume else 30.0
        self._resume = resume
        self._requests = Requests()
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
        return self._table.backends

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
        return self._table.get(number)

    @property
    def sessions(self) -> dict[int, SessionRecord]:
        """A copy of the live sessions by number."""
        return dict(self._table.records)

    # ---- sans-I/O plumbing ---------------------------------------------------------------------

    def events_received(self) -> list[ClientEvent]:
        """What happened since the last call (clears the list)."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[Outgoing]:
        """Messages for the socket, in order (clears the list): ``str`` as a text frame, ``bytes``
        as a binary frame, :class:`CloseSocket`: close the socket (nothing follows it)."""
        out, self._output = self._output, []
        if self._gateway_batches and len(out) > 1:
            out = pack_runs(out, self._limits.max_frame_bytes)
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
                raise violation("data frame before ready")
            frames = decode_batch(data, max_bytes=self._max_receive_bytes) if is_batch(data) else (data,)
            for frame in frames:
                self._table.on_data(frame, self._max_receive_bytes)
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
        ready = was is ClientState.READY
        chosen = self._closing_locally or (ready and self._draining)
        self._resumable = resumable(
            code, was_ready=ready, resuming=self._resume is not None, failed=self._failed, chosen=chosen
        ) and (not ready or self._resume_token is not None)
        if self._resumable and self._resume is not None and was is not ClientState.READY:
            self._resume_token = self._resume.token
        if not reason and self._last_error is not None:
            reason = self._last_error.message
        self._table.socket_closed(code, reason, resumable=self._resumable)
        for request_id in self._requests.end():
            self.emit(RequestFailed(request_id, GatewayClosed(code, reason, resumable=self._resumable)))
        self.emit(ConnectionEnded(CloseInfo(code, reason, self._resumable)))

    def resume_state(self) -> ResumeState:
        """Hand the open sessions to a new core (``ClientProtocol(..., resume=state)``).

        Raises:
            InvalidState: the socket is not closed, or its close is not resumable.
        """
        if not self._socket_closed or not self._resumable or self._resume_token is None:
            raise InvalidState("this socket did not end in a resumable way")
        table = self._table
        sessions = {n: rec for n, rec in table.records.items() if rec.phase is SessionPhase.OPEN}
        return ResumeState(self._resume_token, sessions, table.next_number, self._resume_grace)

    def discard_session(self, number: int) -> None:
        """Forget a session locally without telling the gateway (e.g. while disconnected: it is
        then not resumed, and the gateway drops it when the resume leaves it out or the grace ends)."""
        if number in self._table.records:
            self._table.drop(number)

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
        return self._table.open(backend)

    def close_session(self, number: int) -> int:
        """Ask the gateway to close an open session (§5.4); :class:`SessionEnded` follows.

        Raises:
            InvalidState: not ready, or the session is not open.
        """
        self._check_ready()
        return self._table.close(number)

    def start_handshake(
        self,
        number: int,
        *,
        streams: list[str] | None = None,
        name: str = "",
        handshake: HandshakeFactory | None = None,
    ) -> None:
        """Run the session's application handshake as initiator: ``handshake`` (see
        :mod:`.handshake`), by default Hello/PubKey/Complete with our Hello ``name``. The key it
        prepares must be the key of the peer ID in ``opened`` (:class:`HandshakeCompleted`, or
        :class:`HandshakeFailed`). ``streams``: the named streams to use unless the handshake
        prepares others (frames on the rest are dropped, as Go does); None: any.

        Raises:
            InvalidState: not ready, the session is not open, or the handshake was started already.
            InvalidStreamName, InvalidArgument, InvalidPeerID: bad names, or a non-Ed25519 backend ID.
        """
        self._check_ready()
        self._table.start_handshake(number, streams, name, handshake)

    def send_data(self, number: int, stream: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and queue it as a data frame on the named ``stream`` (PROTOCOL.md §8.4).

        Raises:
            InvalidState: not ready, the session is not open, or no stream key yet (handshake).
            InvalidStreamName: a bad name, "handshake", or a name outside the handshake's streams.
            MessageTooLarge: over ``max_message_size`` or the gateway's ``max_frame_bytes``.
        """
        self._check_ready()
        self._table.send_data(number, stream, data)

    def send_raw(self, number: int, stream: str, payload: bytes | bytearray | memoryview) -> None:
        """Queue ``payload`` as is (an already built Glueberry payload; the handshake stream's
        messages, or tests' tampered frames). Raises as :meth:`send_data`, without the key check."""
        self._check_ready()
        self._table.send_raw(number, stream, payload)

    def ping(self) -> int:
        """Queue an application-level ``ping`` (§5.5); :class:`Pong` with the returned id follows."""
        self._check_ready()
        request_id = self._requests.new("ping")
        self.send_control(control.Ping(request_id))
        return request_id

    def refresh_token(self, token: str) -> int:
        """Queue a ``refresh`` (§4); :class:`TokenRefreshed` or :class:`RequestFailed` follows.
        The token is also used for the ``auth`` of a later resume."""
        self._check_ready()
        if not isinstance(token, str) or not token:
            raise InvalidArgument("token must be a non-empty string")
        request_id = self._requests.new("refresh", token=token)
        self.send_control(control.Refresh(request_id, token))
        return request_id

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket on purpose: the sessions are not resumed. Queues a :class:`CloseSocket`."""
        if self._socket_closed or self._closing_locally:
            return
        self._closing_locally = True
        self._output.append(CloseSocket(code, reason))

    # ---- the session table's host (sessions.TableHost) -----------------------------------------

    def emit(self, event: ClientEvent) -> None:
        self._events.append(event)

    def send(self, frame: bytes) -> None:
        self._output.append(frame)

    def send_control(self, message: control.ClientMessage) -> None:
        self._output.append(control.encode(message))

    @property
    def may_tell_gateway(self) -> bool:
        return self._state is ClientState.READY and not self._closing_locally

    def request(self, kind: str, session: int) -> int:
        return self._requests.new(kind, session)

    def request_room(self) -> bool:
        return self._requests.room()

    # ---- internals ------------------------------------------------------------------------------

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

    def _dispatch(self, message: control.ServerMessage) -> None:
        if isinstance(message, control.ErrorMessage):
            self._on_error(message)
            return
        if isinstance(message, control.Drain):
            self._draining = True
            self.emit(DrainRequested(message.reconnect_after_ms))
            return
        expected = EXPECTED.get(self._state)
        if expected is not None and not isinstance(message, expected):
            raise violation(f"expected {expected.TYPE}, got {message.TYPE!r}")
        table = self._table
        if isinstance(message, control.Challenge) and expected is not None:
            self._on_challenge(message)
        elif isinstance(message, control.Ready) and expected is not None:
            self._on_ready(message)
        elif isinstance(message, control.Opened):
            table.on_opened(message, self._requests.is_open_of(message.id, message.session))
            self._requests.pop(message.id)
        elif isinstance(message, control.Sign):
            table.on_sign(message)
        elif isinstance(message, control.Closed):
            self._requests.pop(message.id)
            if table.on_closed(message):  # it was being opened: that open is void
                self._requests.forget_opens(message.session)
        elif isinstance(message, control.StreamClosed):
            if message.session in table.records:
                self.emit(StreamEnded(message.session, message.stream))
        elif isinstance(message, control.Pong):
            if self._requests.answered(message.id, "ping"):
                self.emit(Pong(message.id))
        elif isinstance(message, control.Refreshed):
            if self._requests.answered(message.id, "refresh"):
                self._token = self._requests.token(message.id) or self._token
                self.emit(TokenRefreshed(message.id, message.expires_at))
        elif isinstance(message, control.TokenExpiring):
            self.emit(TokenExpiring(message.expires_at))
        else:  # challenge/ready again (§2: protocol error)
            raise violation(f"unexpected message type {message.TYPE!r}")

    def _on_challenge(self, message: control.Challenge) -> None:
        gateway = message.gateway
        if self._expected_gateway is not None and gateway != self._expected_gateway:
            raise violation(f"challenge from gateway {gateway}, expected {self._expected_gateway}")
        self._gateway_peer_id = gateway
        signature = self._identity.sign(auth_message(str(gateway), self._origin, message.nonce))
        resume = None
        if self._resume is not None:
            counts = {n: rec.received for n, rec in self._table.records.items()}
            resume = control.ResumeRequest(self._resume.token, counts)
        # batch: we take batch messages (§5.6)
        self.send_control(
            control.Auth(self._public_key, signature, token=self._token, resume=resume, batch=True)
        )
        self._advance(ClientState.AWAIT_READY)

    def _on_ready(self, message: control.Ready) -> None:
        if message.peer_id != self._peer_id:
            raise violation(f"ready names peer {message.peer_id}, but our key is {self._peer_id}")
        self._gateway_batches = message.batch
        self._limits = message.limits
        table = self._table
        table.backends = message.backends
        bounds = table.bounds
        table.bounds = SessionBounds(
            message.limits.max_frame_bytes, bounds.outbox_frames, bounds.outbox_bytes, bounds.pending_frames
        )
        self._resume_token = message.resume_token
        self._resume_grace = message.resume_grace
        self._advance(ClientState.READY)
        token, grace = message.resume_token, message.resume_grace
        self.emit(Authenticated(message.peer_id, message.backends, message.limits, token, grace))
        if self._resume is not None:
            table.resumed(message.resumed or {})
            self._resume = None

    def _on_error(self, message: control.ErrorMessage) -> None:
        code, text, request_id, number = message.code, message.message, message.id, message.session
        error = GatewayError(code, text, request_id=request_id, session=number)
        request = self._requests.pop(request_id)
        if request is not None:
            kind, session = request
            if kind in ("open", "close"):
                self._table.on_request_error(kind, session, error)
            else:  # ping, refresh
                self.emit(RequestFailed(request_id or 0, error))
            return
        if number is not None and number in self._table.records and code >= 4100:
            self.emit(SessionErrorReceived(number, error))
            return
        self._last_error = error
        self.emit(GatewayErrorReceived(error))
