"""Sans-I/O core of one browser socket at the gateway: the server side of ``glueberry.v1``
(docs/gateway-protocol.md), the mirror of :class:`glueberry_gateway.client.core.ClientProtocol`.

:class:`ServerProtocol` is fed the WebSocket messages of one socket (:meth:`~ServerProtocol.receive_text`,
:meth:`~ServerProtocol.receive_binary`, :meth:`~ServerProtocol.connection_lost`) and the outcomes of
what its driver did for it (:meth:`~ServerProtocol.accept`, :meth:`~ServerProtocol.session_opened`,
…); it produces messages for the browser (:meth:`~ServerProtocol.data_to_send`: ``str`` a text
frame, :class:`CloseSocket` close once everything before it is written) and events for the
driver (:meth:`~ServerProtocol.events_received`: dial a backend, relay a frame, resume, …). It
holds no socket, task, timer or backend connection: the asyncio driver is
:mod:`glueberry_gateway.server.socket`; data frames *to* the browser go from the sessions
straight to the driver's outbound queue.

Theory of operation
-------------------
States (:data:`TRANSITIONS`)::

    AWAIT_AUTH --auth verified--> AUTHENTICATED --accept()--> READY
         \\_________________________\\_______________________\\--fail/drain/lost--> CLOSING

In AUTHENTICATED the driver decides about the resume (§6) with the gateway's resume store; the
core queues ``ready`` only when told the outcome, so nothing is read meanwhile.

Invariants:

1. Every message for the browser is produced here, in the order the events that caused it
   happened; at most one :class:`CloseSocket`, always last.
2. A session number is in at most one of ``opening`` and ``sessions``; their sum is at most
   ``max_sessions``.
3. An exception becomes a code only through :func:`~glueberry_gateway.protocol.errors.error_of`:
   a socket-level code (4000-4099) closes the socket, a session-level one (4100+) answers the
   request and the socket goes on.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Final, Generic, Protocol, TypeVar

from glueberry.p2p.keys import PeerID

from ..protocol import control
from ..protocol.auth import Challenge, verify_auth
from ..protocol.codes import CloseSocket, Code, is_socket_level
from ..protocol.control import ClientMessage, GatewayLimits, ResumeOutcome
from ..protocol.errors import ProtocolViolation, error_of
from ..protocol.frames import BATCH_KIND, decode_batch, decode_data_frame
from .admission import SocketRates
from .events import (
    AuthAccepted,
    AuthRefused,
    CloseRequested,
    DataReceived,
    OpenRequested,
    ServerEvent,
    SignatureAnswered,
    TokenChanged,
)
from .metrics import Metrics
from .settings import Backend, Limits
from .tokens import TokenClaims

__all__ = [
    "AuthAccepted",
    "AuthRefused",
    "CloseRequested",
    "CloseSocket",
    "DataReceived",
    "OpenRequested",
    "Policy",
    "ServerEvent",
    "ServerProtocol",
    "ServerState",
    "SignatureAnswered",
    "TokenChanged",
]

RESUME_TOKEN_SIZE: Final = 24
_BATCH: Final = bytes((BATCH_KIND,))

S = TypeVar("S")  # what the driver keeps per session (the core never looks inside)


class ServerState(Enum):
    AWAIT_AUTH = "await_auth"  # the challenge is out
    AUTHENTICATED = "authenticated"  # auth verified; waiting for accept() (the resume decision)
    READY = "ready"
    CLOSING = "closing"  # a close is queued, or the socket is gone


TRANSITIONS: Final[dict[ServerState, frozenset[ServerState]]] = {
    ServerState.AWAIT_AUTH: frozenset({ServerState.AUTHENTICATED, ServerState.CLOSING}),
    ServerState.AUTHENTICATED: frozenset({ServerState.READY, ServerState.CLOSING}),
    ServerState.READY: frozenset({ServerState.CLOSING}),
    ServerState.CLOSING: frozenset({ServerState.CLOSING}),
}


class Policy(Protocol):
    """What the core asks of the gateway it serves: who may come in, and to what."""

    @property
    def backends(self) -> tuple[Backend, ...]: ...

    def backend(self, name_or_peer: str) -> Backend | None: ...

    def origin_allowed(self, origin: str) -> bool: ...

    def check_token(self, token: str | None, peer_id: PeerID) -> TokenClaims | None:
        """The token's claims (None: no token, allowed). Raises ProtocolViolation (4005, 4006)."""
        ...


class ServerProtocol(Generic[S]):
    """One browser socket at the gateway, sans I/O (module docstring).

    Args:
        policy: the gateway's rules (backends, origins, tokens).
        limits: the gateway's limits (§7).
        metrics: where frames refused for naming no session are counted.
        gateway_peer_id: the gateway's identity, named in the challenge and signed by the browser.
        origin: the upgrade request's ``Origin`` header (the browser signs it, §3).
        now: a monotonic clock reading, for the challenge's expiry and the rate limits.

    After creating it: call :meth:`data_to_send` (the challenge is queued).
    """

    def __init__(
        self,
        policy: Policy,
        limits: Limits,
        metrics: Metrics,
        *,
        gateway_peer_id: str,
        origin: str,
        now: float,
    ) -> None:
        self.policy = policy
        self._drops = metrics.drops
        self.limits = limits
        self.gateway_peer_id = gateway_peer_id
        self.origin = origin
        self.state = ServerState.AWAIT_AUTH
        self.peer_id: PeerID | None = None
        self.public_key: bytes | None = None
        self.claims: TokenClaims | None = None
        self.batch = False  # the browser takes batch messages (said so in auth)
        self.resume_token = os.urandom(RESUME_TOKEN_SIZE)
        self.sessions: dict[int, S] = {}
        self.opening: set[int] = set()
        self.close_code: tuple[Code, str] | None = None  # how the socket ends, once decided
        self.lost = False  # dropped without a close: its sessions wait for a resume (§6)
        self._rates = SocketRates(limits, now)
        self._next_sign = 1
        self._events: list[ServerEvent[S]] = []
        self._output: list[str | CloseSocket] = []
        self._challenge = Challenge.new(now, limits.challenge_ttl)
        self._send(
            control.Challenge(
                self._challenge.nonce, PeerID.from_string(gateway_peer_id), expires_in=limits.challenge_ttl
            )
        )

    # ---- sans-I/O plumbing ------------------------------------------------------------------

    def events_received(self) -> list[ServerEvent[S]]:
        """What the driver must act on, in order (clears the list)."""
        events = self._events
        if events:
            self._events = []
        return events

    def data_to_send(self) -> list[str | CloseSocket]:
        """Messages for the browser, in order (clears the list); a :class:`CloseSocket` is last."""
        out = self._output
        if out:
            self._output = []
        return out

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    # ---- input: the browser -------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> None:
        """Feed one text message. After calling this method: call :meth:`events_received` and
        :meth:`data_to_send`."""
        if self.close_code is not None:
            return
        try:
            if self.state is ServerState.AWAIT_AUTH:
                self._authenticate(text, now)
            elif self.state is ServerState.READY:
                if not self._rates.allow(now, 1, len(text)):
                    raise ProtocolViolation(Code.RATE_LIMITED, "too many messages or bytes per second")
                self._on_control(control.decode_client_message(text, max_bytes=self.limits.max_control_bytes))
            else:
                raise ProtocolViolation(Code.PROTOCOL_ERROR, "message before ready")
        except ProtocolViolation as exc:
            self._refuse(exc)

    def receive_binary(self, data: bytes, now: float) -> None:
        """Feed one binary message (a data frame or a batch, §5.2, §5.6): each frame becomes a
        :class:`DataReceived`, or an ``error`` about it. Contract as :meth:`receive_text`."""
        if self.close_code is not None:
            return
        try:
            if self.state is not ServerState.READY:
                self.fail(Code.PROTOCOL_ERROR, "binary frame before auth")
                return
            max_bytes = self.limits.max_frame_bytes
            frames = decode_batch(data, max_bytes=max_bytes) if data[:1] == _BATCH else None
            # each frame of a batch counts (§7)
            if not self._rates.allow(now, 1 if frames is None else len(frames), len(data)):
                raise ProtocolViolation(Code.RATE_LIMITED, "too many messages or bytes per second")
            if frames is None:
                self._on_data(data, max_bytes)
            else:
                for frame in frames:
                    self._on_data(frame, max_bytes)
        except ProtocolViolation as exc:
            self._refuse(exc)

    def connection_lost(self, code: int) -> None:
        """The WebSocket is gone (``code``: its close code, 1006 without one)."""
        if self.close_code is None:
            if code == 1009:  # the server refused a frame over ws_max_size: §7's 4009
                self.close_code = (Code.MESSAGE_TOO_BIG, "frame over the size limit")
            else:
                # the browser went away without closing: its sessions wait for a resume
                self.lost = code not in (1000, 1001)
                self.close_code = (Code.NORMAL, "")
        self.state = ServerState.CLOSING

    # ---- input: the driver --------------------------------------------------------------------

    def accept(self, sessions: dict[int, S], resumed: dict[int, ResumeOutcome] | None) -> None:
        """After :class:`AuthAccepted`: the sessions the resume re-attached (``resumed`` says what
        became of each one asked for; None without a resume). Queues ``ready``."""
        if self.state is not ServerState.AUTHENTICATED:
            return
        assert self.peer_id is not None
        self._advance(ServerState.READY)
        self.sessions.update(sessions)
        limits = self.limits
        self._send(
            control.Ready(
                self.peer_id,
                self.resume_token,
                resume_grace=limits.resume_grace,
                backends=tuple(
                    control.BackendInfo(b.name, b.peer_id) for b in self.policy.backends if self.may_open(b)
                ),
                limits=GatewayLimits(
                    limits.max_sessions, limits.max_streams, limits.max_frame_bytes, limits.max_control_bytes
                ),
                resumed=resumed,
                batch=True,  # batches from the browser are welcome (§5.6)
            )
        )

    def request_signature(self, session: int, payload: bytes) -> int:
        """Queue a ``sign`` request (§5.1); returns its id, which :class:`SignatureAnswered` repeats."""
        sign_id = self._next_sign
        self._next_sign += 1
        self._send(control.Sign(sign_id, session, payload))
        return sign_id

    def session_opened(self, request_id: int, number: int, backend: Backend, session: S) -> None:
        """The dial of :class:`OpenRequested` succeeded (and the socket is not :attr:`closing`):
        the session is open; queue ``opened``."""
        self.opening.discard(number)
        self.sessions[number] = session
        self._send(control.Opened(request_id, number, backend.name, backend.peer_id))

    def cancel_open(self, number: int) -> None:
        """The dial of :class:`OpenRequested` ended after the socket started closing: forget it."""
        self.opening.discard(number)

    def open_failed(self, request_id: int, number: int, exc: Exception) -> None:
        """The dial of :class:`OpenRequested` failed with ``exc`` (a SessionFault)."""
        self.opening.discard(number)
        self._error(exc, id=request_id, session=number)

    def data_failed(self, number: int, exc: Exception) -> None:
        """Relaying a :class:`DataReceived` to its backend failed with ``exc`` (a SessionFault)."""
        self._error(exc, session=number)

    def session_ended(self, number: int, code: Code, message: str) -> S | None:
        """The gateway ended session ``number`` (its backend went away): queue ``closed``; returns
        what the driver kept for it, or None if it was not open here."""
        session = self.sessions.pop(number, None)
        if session is not None:
            self._send(control.Closed(number, int(code), message))
        return session

    def stream_closed(self, number: int, stream: str) -> None:
        """The backend ended its side of ``stream`` (§5.3)."""
        self._send(control.StreamClosed(number, stream))

    def token_notice(self, expires_at: float) -> None:
        """The notice timer of :class:`TokenChanged` fired."""
        if self.claims is not None and self.claims.expires_at == expires_at and not self.closing:
            self._send(control.TokenExpiring(int(expires_at)))

    def token_expired(self, expires_at: float) -> None:
        """The expiry timer of :class:`TokenChanged` fired (unless a refresh replaced the token)."""
        if self.claims is not None and self.claims.expires_at == expires_at:
            self.fail(Code.TOKEN_EXPIRED, "the token expired; refresh it before it does")

    def fail(self, code: Code, message: str) -> None:
        """Tell the browser why (an ``error``), then close with ``code``."""
        if self.close_code is None:
            self.close_code = (code, message)
            self.state = ServerState.CLOSING
            self._send(control.ErrorMessage(int(code), message))
            self._output.append(CloseSocket(code, message))

    def drain(self, reconnect_after_ms: int) -> None:
        """The gateway is going away: tell the browser when to come back, then close with 1001."""
        if self.close_code is None:
            self.close_code = (Code.GOING_AWAY, "the gateway is restarting")
            self.state = ServerState.CLOSING
            self._send(control.Drain(reconnect_after_ms))
            self._output.append(CloseSocket(Code.GOING_AWAY, "the gateway is restarting"))

    def abort(self, code: Code, message: str) -> None:
        """The driver gave up on the socket without telling the browser (a slow consumer, §7):
        nothing more is sent."""
        self.close_code = (code, message)
        self.state = ServerState.CLOSING
        self._output.clear()

    def finish(self) -> tuple[Code, str]:
        """The socket is over: how it ends (a normal close unless something else was decided)."""
        if self.close_code is None:
            self.close_code = (Code.NORMAL, "")
        self.state = ServerState.CLOSING
        return self.close_code

    def may_open(self, backend: Backend) -> bool:
        """Whether the token (if any) allows ``backend`` (§4)."""
        allowed = self.claims.backends if self.claims is not None else None
        return allowed is None or backend.name in allowed or str(backend.peer_id) in allowed

    # ---- internals -----------------------------------------------------------------------------

    def _advance(self, state: ServerState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise ProtocolViolation(Code.INTERNAL_ERROR, f"no transition {self.state.value} -> {state.value}")
        self.state = state

    def _send(self, message: control.ServerMessage) -> None:
        self._output.append(control.encode(message))

    def _refuse(self, exc: ProtocolViolation) -> None:
        if is_socket_level(exc.code):
            if self.state is ServerState.AWAIT_AUTH:
                self._events.append(AuthRefused(exc.code))
            self.fail(exc.code, exc.message)
        else:
            self._error(exc)  # 4100+: this request only (§8)

    def _error(self, exc: Exception, *, id: int | None = None, session: int | None = None) -> None:
        wire = error_of(exc, id=id, session=session)
        if is_socket_level(wire.code):
            self.fail(wire.code, wire.message)
        else:
            self._send(control.ErrorMessage(int(wire.code), wire.message, **wire.fields))

    def _authenticate(self, text: str, now: float) -> None:
        limits = self.limits
        message = control.decode_client_message(
            text, max_bytes=limits.max_control_bytes, max_sessions=limits.max_sessions
        )
        if not isinstance(message, control.Auth):
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "the first message must be auth")
        self._challenge.take(now)
        if not self.policy.origin_allowed(self.origin):
            raise ProtocolViolation(Code.ORIGIN_NOT_ALLOWED, "this page's origin is not allowed")
        peer_id = verify_auth(
            public_key=message.public_key,
            signature=message.signature,
            gateway_peer_id=self.gateway_peer_id,
            origin=self.origin,
            nonce=self._challenge.nonce,
        )
        claims = self.policy.check_token(message.token, peer_id)
        self.peer_id, self.public_key, self.batch = peer_id, message.public_key, message.batch
        self._set_claims(claims)
        self._advance(ServerState.AUTHENTICATED)
        self._events.append(AuthAccepted(peer_id, message.resume))

    def _set_claims(self, claims: TokenClaims | None) -> None:
        self.claims = claims
        if claims is not None:
            self._events.append(TokenChanged(claims.expires_at))

    def _on_control(self, message: ClientMessage) -> None:
        if isinstance(message, control.Open):
            self._open(message)
        elif isinstance(message, control.Signature | control.SignRefused):
            if not 0 < message.id < self._next_sign:
                raise ProtocolViolation(Code.PROTOCOL_ERROR, f"no sign request with id {message.id}")
            # an answer to a request that timed out is ignored by the driver: that open failed already
            signature = message.signature if isinstance(message, control.Signature) else None
            self._events.append(SignatureAnswered(message.id, signature))
        elif isinstance(message, control.Close):
            session = self.sessions.pop(message.session, None)
            if session is None:
                raise ProtocolViolation(
                    Code.SESSION_NOT_FOUND, "no such session", id=message.id, session=message.session
                )
            self._events.append(CloseRequested(session))
            self._send(control.Closed(message.session, int(Code.NORMAL), id=message.id))
        elif isinstance(message, control.Refresh):
            assert self.peer_id is not None
            claims = self.policy.check_token(message.token, self.peer_id)
            if claims is None:
                raise ProtocolViolation(Code.TOKEN_INVALID, "refresh needs a token")
            self._set_claims(claims)
            self._send(control.Refreshed(message.id, int(claims.expires_at)))
        elif isinstance(message, control.Ping):
            self._send(control.Pong(message.id))
        else:  # auth again
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "already authenticated")

    def _open(self, message: control.Open) -> None:
        number, request_id = message.session, message.id
        if number in self.sessions or number in self.opening:
            raise ProtocolViolation(
                Code.SESSION_EXISTS, "session number in use", id=request_id, session=number
            )
        if len(self.sessions) + len(self.opening) >= self.limits.max_sessions:
            raise ProtocolViolation(
                Code.TOO_MANY_SESSIONS, "max_sessions reached", id=request_id, session=number
            )
        backend = self.policy.backend(message.backend)
        if backend is None:
            raise ProtocolViolation(Code.BACKEND_UNKNOWN, "no such backend", id=request_id, session=number)
        if not self.may_open(backend):
            raise ProtocolViolation(
                Code.BACKEND_NOT_ALLOWED,
                "your token does not allow this backend",
                id=request_id,
                session=number,
            )
        self.opening.add(number)
        self._events.append(OpenRequested(request_id, number, backend))

    def _on_data(self, raw: bytes | memoryview, max_bytes: int) -> None:
        try:
            frame = decode_data_frame(raw, max_bytes=max_bytes)
            session = self.sessions.get(frame.session)
            if session is None:
                self._drops.labels("unknown_session").inc()
                raise ProtocolViolation(Code.SESSION_NOT_FOUND, "no such session", session=frame.session)
        except ProtocolViolation as exc:
            if is_socket_level(exc.code):
                raise
            self._error(exc)  # an error about one frame does not stop the frames after it (§5.6)
            return
        self._events.append(DataReceived(session, frame.session, frame.stream, frame.payload))
