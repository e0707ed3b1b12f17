"""A Python client of the gateway (docs/gateway-protocol.md): the browser side, over asyncio.

A thin driver of :class:`~glueberry_gateway.client_core.ClientProtocol` over a ``websockets``
connection. It plays the browser: it holds the Ed25519 identity, answers the challenge, signs
only Noise payloads, runs the Glueberry handshake with the backend and encrypts and decrypts
itself — the gateway sees ciphertext only::

    client = await GatewayClient.connect("ws://127.0.0.1:8080/ws", identity=key, origin="http://127.0.0.1:8080")
    session = await client.open("chat")
    await session.handshake(streams=["chat"], name="alice")
    await session.send("chat", b"hello")
    async for message in session:  # Message(stream, data), decrypted
        ...
    await client.close()

Back-pressure, both ways: :meth:`Session.send` returns once the frame was written to the socket
(the gateway reads a browser frame only after the backend took the previous one, §7); each
session's inbox holds at most ``inbox_size`` messages, and while one is full the client stops
reading the socket (the gateway then stalls the backend, or ends a very slow reader with 4010).

Resume (§6): when the socket drops (not a normal or fatal close), the sessions wait at the
gateway for ``resume_grace`` seconds. :meth:`GatewayClient.resume` (or ``auto_resume=True``, with
jittered exponential backoff) opens a new socket, re-attaches them, re-sends the frames the gateway
did not get (from a per-session outbox of the last ``outbox_frames`` frames / ``outbox_bytes``
bytes, default 1024 / 4 MiB; a session whose missing frames fell out of it is closed) and receives
the frames the gateway kept, in order, before new ones.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from glueberry.exceptions import GlueberryError, HandshakeTimeout, InvalidState
from glueberry.p2p.keys import PeerID
from glueberry.wire.cipher import StreamCipher

from .client_core import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECEIVE_BYTES,
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_FRAMES,
    Authenticated,
    BackendInfo,
    ClientEvent,
    ClientProtocol,
    CloseInfo,
    CloseSocket,
    ConnectionEnded,
    DrainRequested,
    FrameDropped,
    FrameUndecryptable,
    GatewayClosed,
    GatewayError,
    GatewayErrorReceived,
    GatewayLimits,
    GatewayProtocolError,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    PeerHelloReceived,
    Pong,
    RequestFailed,
    ResumeState,
    SessionClosed,
    SessionEnded,
    SessionErrorReceived,
    SessionOpened,
    SessionOpenFailed,
    SessionPhase,
    SessionRecord,
    TokenExpiring,
    TokenRefreshed,
)
from .codec import SUBPROTOCOL
from .codes import Code

__all__ = [
    "BackendInfo",
    "CloseInfo",
    "ConnectionState",
    "GatewayClient",
    "GatewayClosed",
    "GatewayError",
    "GatewayLimits",
    "GatewayProtocolError",
    "Message",
    "Session",
    "SessionClosed",
]

DEFAULT_INBOX_SIZE: Final = 1024
# HTTP refusals of the upgrade (§2, §7) as the close code a gateway would otherwise use.
_HTTP_REFUSALS: Final = {
    400: Code.UNSUPPORTED_VERSION,
    403: Code.ORIGIN_NOT_ALLOWED,
    429: Code.RATE_LIMITED,
    503: Code.TOO_MANY_CONNECTIONS,
}
_CLOSE_TIMEOUT: Final = 10.0

Callback = Callable[..., object]


class ConnectionState(Enum):
    CONNECTED = "connected"
    RESUMING = "resuming"  # a resume is under way; sends wait for it
    DISCONNECTED = "disconnected"  # dropped, resumable: call resume() within resume_grace
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted message received on a named stream."""

    stream: str
    data: bytes


def _attempt_info(exc: BaseException) -> CloseInfo:
    """How a failed connect or resume attempt ended; ``resumable``: another attempt may work."""
    if isinstance(exc, GatewayClosed):
        return CloseInfo(int(exc.code), exc.message, exc.resumable)
    if isinstance(exc, GatewayProtocolError):
        return CloseInfo(int(exc.close_code), exc.message, False)
    if isinstance(exc, TimeoutError | OSError | asyncio.CancelledError):
        return CloseInfo(1006, str(exc) or "no ready in time", True)
    return CloseInfo(Code.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", False)


class _Link:
    """One WebSocket and its core, with the reader and writer tasks serving them."""

    def __init__(self, ws: ClientConnection, core: ClientProtocol) -> None:
        self.ws = ws
        self.core = core
        self.wake = asyncio.Event()  # output queued in the core
        self.idle = asyncio.Event()  # the core's output was written (or the socket is gone)
        self.idle.set()
        self.ended = asyncio.Event()  # core.connection_closed() was processed
        self.auth: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.auth.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark retrieved
        self.requests: dict[int, asyncio.Future[float | None]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.writer_done = False


class Session:
    """A session to one backend (§5), made by :meth:`GatewayClient.open`.

    Attributes:
        number: the session number on the socket.
        backend: the name or peer ID it was opened with.
        backend_peer_id: the backend's peer ID as the gateway reported in ``opened``; the
            handshake checks the backend's key against it.
        peer_name: the name from the backend's Hello, once received.
        errors: the last (up to 16) ``error`` notices about this session that left it open.
    """

    def __init__(self, client: GatewayClient, record: SessionRecord, peer_id: PeerID) -> None:
        self._client = client
        self._record = record
        self.number = record.number
        self.backend = record.backend
        self.backend_peer_id = peer_id
        self.peer_name: str | None = None
        self.errors: deque[GatewayError] = deque(maxlen=16)
        self._inbox: deque[Message] = deque()
        self._changed = asyncio.Event()
        self._end: SessionClosed | None = None
        self._handshake_error: GlueberryError | None = None

    def __repr__(self) -> str:
        return f"<Session {self.number} {self.backend} {'closed' if self._end else 'open'}>"

    # ---- state ------------------------------------------------------------------------------

    @property
    def cipher(self) -> StreamCipher | None:
        """The stream cipher, once the handshake derived the key (wiped when the session ends)."""
        return self._record.cipher

    @property
    def handshake_complete(self) -> bool:
        return self._record.established

    @property
    def peer_public_key(self) -> bytes | None:
        """The backend's Ed25519 key from its PubKey, once accepted."""
        return self._record.peer_public_key

    @property
    def decryption_errors(self) -> int:
        """Frames dropped because they did not decrypt (PROTOCOL.md §8.5)."""
        return self._record.decryption_errors

    @property
    def dropped_frames(self) -> int:
        """Frames dropped otherwise (unprepared stream, too many before the key, session closing)."""
        return self._record.dropped_frames

    @property
    def frames_received(self) -> int:
        """Data frames received from the gateway since the session opened (the resume count, §6)."""
        return self._record.received

    @property
    def frames_sent(self) -> int:
        return self._record.sent

    @property
    def outbox_size(self) -> int:
        """Sent frames kept for a resume (not yet known to have reached the gateway)."""
        return len(self._record.outbox)

    @property
    def closed(self) -> bool:
        return self._end is not None

    @property
    def close_error(self) -> SessionClosed | None:
        """Why the session ended (code and message), once it has."""
        return self._end

    # ---- operations -------------------------------------------------------------------------

    async def handshake(
        self, streams: Iterable[str] | None = None, *, name: str = "", timeout: float = 10.0
    ) -> None:
        """Run the Hello/PubKey/Complete handshake as initiator (PROTOCOL.md §10).

        The backend's PubKey must be the key of :attr:`backend_peer_id`; then the stream key is
        derived (:attr:`cipher`). ``streams``: the named streams to use (others are dropped);
        None accepts every name.

        Raises:
            KeyMismatch, HandshakeError, InvalidKey: the backend's handshake was wrong (the
                session is closed).
            HandshakeTimeout: not done within ``timeout`` seconds.
            SessionClosed, GatewayClosed: the session or the socket ended first.
        """
        link = await self._client._ready_link()
        self._check_open()
        link.core.start_handshake(
            self.number, streams=list(streams) if streams is not None else None, name=name
        )
        self._client._dispatch(link)  # held frames may have been processed
        try:
            async with asyncio.timeout(timeout):
                await self._client._flush(link)
                while True:
                    if self._handshake_error is not None:
                        raise self._handshake_error
                    if self._record.established:
                        return
                    self._check_open()
                    self._client._check_alive()
                    await self._wait()
        except TimeoutError:
            raise HandshakeTimeout(
                f"no handshake with {self.backend} within {timeout} s", peer_id=str(self.backend_peer_id)
            ) from None

    async def send(self, stream: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it on the named ``stream``.

        Returns once the frame was written to the socket (or, if the socket dropped in a
        resumable way, once it is in the outbox: a resume re-sends it). While a resume is under
        way it waits for it.

        Raises:
            InvalidState: no stream key yet (run :meth:`handshake` first).
            InvalidStreamName, MessageTooLarge: see :meth:`ClientProtocol.send_data`.
            SessionClosed, GatewayClosed: the session or the socket is gone.
        """
        link = await self._client._ready_link()
        self._check_open()
        link.core.send_data(self.number, stream, data)
        await self._client._flush(link)

    async def send_raw(self, stream: str, payload: bytes | bytearray | memoryview) -> None:
        """Send an already-built Glueberry payload as is (handshake messages; tampered frames in
        tests). Same contract as :meth:`send`, without encryption."""
        link = await self._client._ready_link()
        self._check_open()
        link.core.send_raw(self.number, stream, payload)
        await self._client._flush(link)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next decrypted message, in arrival order; frames that fail to decrypt are counted
        (:attr:`decryption_errors`) and dropped.

        Raises:
            SessionClosed: the session ended and every message before the end was received.
            GatewayClosed: the socket is gone (not being resumed) and the inbox is empty.
            TimeoutError: nothing within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._inbox:
                    message = self._inbox.popleft()
                    self._client._inbox_taken(self)
                    return message
                self._check_open()
                self._client._check_alive()
                await self._wait()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """Messages until the session ends (a closed socket raises :class:`GatewayClosed`)."""
        try:
            return await self.receive()
        except SessionClosed:
            raise StopAsyncIteration from None

    async def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close the session (§5.4) and wait for the gateway's ``closed``; idempotent.
        Messages already received stay readable."""
        client = self._client
        if self._end is not None:
            return
        if client.state is not ConnectionState.CONNECTED:
            client._forget_session(self.number)
            self._finish(SessionClosed(Code.NORMAL, "closed while disconnected", session=self.number))
            return
        link = client._link
        assert link is not None
        if self._record.phase is SessionPhase.OPEN:
            link.core.close_session(self.number)
        try:
            async with asyncio.timeout(timeout):
                await client._flush(link)
                while self._end is None and client.state is ConnectionState.CONNECTED:
                    await self._wait()
        except TimeoutError:
            link.core.discard_session(self.number)
            self._finish(SessionClosed(Code.NORMAL, "no answer to close; forgotten", session=self.number))
        if self._end is None:
            self._finish(SessionClosed(Code.NORMAL, "closed", session=self.number))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- driver side --------------------------------------------------------------------------

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()

    def _check_open(self) -> None:
        if self._end is not None:
            raise SessionClosed(self._end.code, self._end.message, session=self.number)

    def _deliver(self, message: Message) -> int:
        self._inbox.append(message)
        self._wake()
        return len(self._inbox)

    def _finish(self, end: SessionClosed) -> None:
        if self._end is None:
            self._end = end
        self._client._inbox_taken(self)
        self._wake()


class GatewayClient:
    """A browser-like client of one gateway (module docstring). Make one with :meth:`connect`.

    Attributes:
        on_close: called with a :class:`CloseInfo` each time a socket closes (also before an
            automatic resume); may return an awaitable.
        on_token_expiring: called with ``expires_at`` on ``token_expiring`` (§4); e.g.
            ``lambda _: client.refresh_token(new_token())``.
        on_drain: called with the delay in seconds on ``drain`` (§8).
        drain_delay: the last ``drain`` message's delay in seconds, if any.
        last_error: the last socket-level ``error`` message, if any.
    """

    def __init__(
        self,
        url: str,
        *,
        identity: Ed25519PrivateKey,
        origin: str,
        token: str | None,
        open_timeout: float,
        auto_resume: bool,
        inbox_size: int,
        resume_delay: float,
        resume_max_delay: float,
        core_options: dict[str, Any],
    ) -> None:
        self._url = url
        self._identity = identity
        self._origin = origin
        self._token = token
        self._open_timeout = open_timeout
        self._auto_resume = auto_resume
        self._inbox_size = inbox_size
        self._resume_delay = resume_delay
        self._resume_max_delay = resume_max_delay
        self._core_options = core_options
        self._state = ConnectionState.DISCONNECTED
        self._state_event = asyncio.Event()
        self._link: _Link | None = None
        self._resume_state: ResumeState | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._last_close: CloseInfo | None = None
        self._closed: asyncio.Future[CloseInfo] = asyncio.get_running_loop().create_future()
        self._sessions: dict[int, Session] = {}
        self._opening: dict[int, asyncio.Future[Session]] = {}
        self._full: set[int] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._ready: Authenticated | None = None
        self.on_close: Callback | None = None
        self.on_token_expiring: Callback | None = None
        self.on_drain: Callback | None = None
        self.drain_delay: float | None = None
        self.last_error: GatewayError | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        identity: Ed25519PrivateKey,
        origin: str,
        token: str | None = None,
        open_timeout: float = 10.0,
        auto_resume: bool = False,
        gateway_peer_id: PeerID | str | None = None,
        inbox_size: int = DEFAULT_INBOX_SIZE,
        resume_delay: float = 0.2,
        resume_max_delay: float = 5.0,
        max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        outbox_frames: int = DEFAULT_OUTBOX_FRAMES,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
    ) -> GatewayClient:
        """Open the WebSocket (subprotocol ``glueberry.v1``, ``Origin: origin``), answer the
        challenge and wait for ``ready`` (§2–§3).

        Args:
            url: the gateway endpoint, e.g. ``ws://127.0.0.1:8080/ws``.
            identity: the browser's Ed25519 key (its peer ID is the identity).
            origin: the page origin; sent as the ``Origin`` header and signed.
            token: a JWT when the gateway wants one (§4).
            open_timeout: seconds for the whole of connect → ready.
            auto_resume: resume automatically after a drop, with backoff (``resume_delay`` doubling
                up to ``resume_max_delay``, jittered) until ``resume_grace`` runs out.
            gateway_peer_id: refuse a gateway with another identity.
            inbox_size: messages held per session before the client stops reading the socket.
            max_receive_bytes, max_message_size, outbox_frames, outbox_bytes: see
                :class:`~glueberry_gateway.client_core.ClientProtocol`.

        Raises:
            GatewayClosed: the upgrade was refused or the gateway closed the socket (``code``:
                e.g. 4002 auth failed, 4005 token invalid, 4007 origin not allowed).
            GatewayProtocolError: the gateway broke the protocol.
            TimeoutError: no ``ready`` within ``open_timeout``.
        """
        options: dict[str, Any] = {
            "gateway_peer_id": gateway_peer_id,
            "max_receive_bytes": max_receive_bytes,
            "max_message_size": max_message_size,
            "outbox_frames": outbox_frames,
            "outbox_bytes": outbox_bytes,
        }
        client = cls(
            url,
            identity=identity,
            origin=origin,
            token=token,
            open_timeout=open_timeout,
            auto_resume=auto_resume,
            inbox_size=inbox_size,
            resume_delay=resume_delay,
            resume_max_delay=resume_max_delay,
            core_options=options,
        )
        try:
            await client._establish(None)
        except BaseException:
            client._set_state(ConnectionState.CLOSED)
            raise
        return client

    # ---- properties -------------------------------------------------------------------------

    def _info(self) -> Authenticated:
        if self._ready is None:
            raise InvalidState("not authenticated yet")
        return self._ready

    @property
    def peer_id(self) -> PeerID:
        """The browser's peer ID, as the gateway confirmed in ``ready``."""
        return self._info().peer_id

    @property
    def gateway_peer_id(self) -> PeerID | None:
        return self._link.core.gateway_peer_id if self._link else None

    @property
    def backends(self) -> tuple[BackendInfo, ...]:
        """The backends this browser may open (``ready.backends``)."""
        return self._info().backends

    @property
    def limits(self) -> GatewayLimits:
        return self._info().limits

    @property
    def resume_token(self) -> bytes:
        """The current single-use resume token (a new one after each resume)."""
        return self._info().resume_token

    @property
    def resume_grace(self) -> float:
        return self._info().resume_grace

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def sessions(self) -> dict[int, Session]:
        """The open sessions by number (a copy)."""
        return dict(self._sessions)

    @property
    def closed(self) -> asyncio.Future[CloseInfo]:
        """Resolves with a :class:`CloseInfo` when the client stops by itself: a normal or fatal
        close, :meth:`close`, a drop without ``auto_resume`` (``resumable`` is then True and
        :meth:`resume` may follow), or an automatic resume that gave up. After a successful
        :meth:`resume` this is a new future."""
        return self._closed

    # ---- operations -------------------------------------------------------------------------

    async def open(self, backend: str | PeerID, *, timeout: float | None = 30.0) -> Session:
        """Open a session to a configured backend (name or peer ID, §5.1).

        Raises:
            GatewayError: the gateway refused (``code``: 4100 unknown, 4101 not allowed,
                4102 unavailable, 4104 too many sessions, …), or opened another peer than
                ``ready.backends`` (or the peer ID given) names.
            GatewayClosed: the socket closed first. TimeoutError: no answer in time (a late
                ``opened`` is then closed again).
        """
        link = await self._ready_link()
        number = link.core.open(backend)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._opening[number] = future
        link.wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            future.cancel()
            raise

    async def ping(self, *, timeout: float | None = 10.0) -> float:
        """An application-level ``ping`` (§5.5); returns the round trip in seconds."""
        link = await self._ready_link()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._request(link, link.core.ping(), timeout)
        return loop.time() - start

    async def refresh_token(self, token: str, *, timeout: float | None = 10.0) -> float:
        """Replace the token on the open socket (§4); returns the new ``expires_at``. Later
        resumes authenticate with it.

        Raises:
            GatewayError: refused (4005 invalid, 4006 expired). GatewayClosed, TimeoutError.
        """
        link = await self._ready_link()
        expires_at = await self._request(link, link.core.refresh_token(token), timeout)
        assert expires_at is not None
        self._token = token
        return expires_at

    async def resume(self) -> None:
        """Re-attach the sessions after a drop (§6): new socket, challenge, ``auth`` with ``resume``.

        Sessions the gateway recovered continue (frames it missed are re-sent, frames it kept
        arrive first); the others end with :class:`SessionClosed` (code 4110, or 4014 when
        their frames are no longer in the outbox).

        Raises:
            InvalidState: connected, closed, not resumable, or an automatic resume is under way.
            GatewayClosed: the attempt failed (``resumable`` says whether another may succeed;
                4014: the token was refused and the sessions are gone). TimeoutError.
        """
        if self._state is not ConnectionState.DISCONNECTED or self._resume_state is None:
            raise InvalidState(f"nothing to resume ({self._state.value})")
        self._set_state(ConnectionState.RESUMING)
        try:
            await self._establish(self._resume_state)
        except BaseException as exc:
            self._attempt_failed(_attempt_info(exc))
            raise

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket normally; every session ends and nothing is resumed. Idempotent."""
        task, self._resume_task = self._resume_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link = self._link
        if self._state is ConnectionState.CLOSED and (link is None or link.ended.is_set()):
            return
        self._set_state(ConnectionState.CLOSED)
        if link is not None and not link.ended.is_set():
            link.core.close(code, reason)
            link.wake.set()
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await link.ended.wait()
            except TimeoutError:
                pass
        if link is not None:
            await self._stop_tasks(link)
        self._finish(CloseInfo(code, reason, False), SessionClosed(code, reason or "client closed"))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- connection management --------------------------------------------------------------

    async def _establish(self, resume: ResumeState | None) -> None:
        """Open a socket and authenticate (resuming ``resume``'s sessions); CONNECTED on success."""
        core = ClientProtocol(
            self._identity, self._origin, token=self._token, resume=resume, **self._core_options
        )
        max_size = max(int(self._core_options["max_receive_bytes"]), 1 << 20)
        async with asyncio.timeout(self._open_timeout):
            try:
                ws = await ws_connect(
                    self._url,
                    subprotocols=[Subprotocol(SUBPROTOCOL)],
                    origin=Origin(self._origin),
                    compression=None,
                    max_size=max_size,
                    open_timeout=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                code = _HTTP_REFUSALS.get(status, 1006)
                transient = status >= 500 or status == 429
                raise GatewayClosed(code, f"upgrade refused: HTTP {status}", resumable=transient) from exc
            except (OSError, InvalidHandshake) as exc:
                raise GatewayClosed(1006, f"cannot connect to {self._url}: {exc}", resumable=True) from exc
            if ws.subprotocol != SUBPROTOCOL:
                await ws.close(Code.UNSUPPORTED_VERSION, "glueberry.v1 not negotiated")
                raise GatewayClosed(Code.UNSUPPORTED_VERSION, "the gateway did not accept glueberry.v1")
            link = _Link(ws, core)
            self._link = link
            link.tasks = [
                asyncio.create_task(self._read_loop(link), name="gateway-client-reader"),
                asyncio.create_task(self._write_loop(link), name="gateway-client-writer"),
            ]
            try:
                await asyncio.shield(link.auth)
            except BaseException:
                if not link.ended.is_set():
                    core.close(1000, "client gave up")
                    link.wake.set()
                    await asyncio.sleep(0)
                await self._stop_tasks(link)
                raise

    def _attempt_failed(self, info: CloseInfo) -> None:
        if info.resumable and self._resume_state is not None:
            self._set_state(ConnectionState.DISCONNECTED)
        else:
            self._set_state(ConnectionState.CLOSED)
            self._finish(info, SessionClosed(info.code, info.reason or "resume failed"))

    async def _resume_loop(self) -> None:
        loop = asyncio.get_running_loop()
        grace = self._ready.resume_grace if self._ready else 30.0
        deadline = loop.time() + grace
        delay = self._resume_delay
        info = self._last_close or CloseInfo(1006, "", True)
        while True:
            wait = random.uniform(0.5, 1.0) * delay  # jitter: clients dropped together spread out
            if loop.time() + wait > deadline:
                break
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._resume_max_delay)
            try:
                await self._establish(self._resume_state)
            except Exception as exc:
                info = _attempt_info(exc)
                if not info.resumable or self._resume_state is None:
                    break
            else:
                self._resume_task = None
                return
        self._resume_task = None
        self._set_state(ConnectionState.CLOSED)
        reason = info.reason or "could not resume within the grace period"
        self._finish(CloseInfo(info.code, reason, False), SessionClosed(Code.SESSION_EXPIRED, reason))

    def _finish(self, info: CloseInfo, end: SessionClosed) -> None:
        """The client is over: end every session and resolve :attr:`closed`."""
        self._resume_state = None
        for session in list(self._sessions.values()):
            session._finish(SessionClosed(end.code, end.message, session=session.number))
        self._sessions.clear()
        for future in self._opening.values():
            if not future.done():
                future.set_exception(GatewayClosed(info.code, info.reason))
        self._opening.clear()
        if not self._closed.done():
            self._closed.set_result(info)

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state
        event, self._state_event = self._state_event, asyncio.Event()
        event.set()
        for session in self._sessions.values():
            session._wake()

    async def _ready_link(self) -> _Link:
        while True:
            if self._state is ConnectionState.CONNECTED and self._link is not None:
                return self._link
            if self._state is not ConnectionState.RESUMING:
                self._check_alive()
                raise InvalidState("not connected")  # pragma: no cover - _check_alive raised
            await self._state_event.wait()

    def _check_alive(self) -> None:
        """Raise :class:`GatewayClosed` unless connected or resuming."""
        if self._state in (ConnectionState.CONNECTED, ConnectionState.RESUMING):
            return
        info = self._last_close or CloseInfo(1006, "not connected")
        resumable = self._state is ConnectionState.DISCONNECTED
        raise GatewayClosed(info.code, info.reason or "the gateway socket is closed", resumable=resumable)

    def _forget_session(self, number: int) -> None:
        self._sessions.pop(number, None)
        if self._resume_state is not None:
            self._resume_state.sessions.pop(number, None)
        if self._link is not None:
            self._link.core.discard_session(number)

    async def _request(self, link: _Link, request_id: int, timeout: float | None) -> float | None:
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        link.requests[request_id] = future
        link.wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            link.requests.pop(request_id, None)

    async def _flush(self, link: _Link) -> None:
        """Wait until everything the core queued so far was written (or the socket is gone)."""
        if not link.writer_done:
            link.idle.clear()
            link.wake.set()
            await link.idle.wait()
        if link.ended.is_set() and self._state is ConnectionState.CLOSED:
            self._check_alive()

    async def _stop_tasks(self, link: _Link) -> None:
        current = asyncio.current_task()
        tasks = [t for t in link.tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not link.ended.is_set():
            await link.ws.close()
            self._socket_gone(link)

    # ---- reader and writer --------------------------------------------------------------------

    async def _read_loop(self, link: _Link) -> None:
        ws, core = link.ws, link.core
        try:
            while True:
                if not self._room.is_set() and not await self._wait_for_room(link):
                    break
                message = await ws.recv()
                try:
                    if isinstance(message, str):
                        core.receive_text(message)
                    else:
                        core.receive_binary(message)
                except GatewayProtocolError as exc:
                    if not link.auth.done():
                        link.auth.set_exception(exc)
                    self._dispatch(link)
                    link.wake.set()
                    await ws.wait_closed()
                    break
                self._dispatch(link)
                link.wake.set()
        except ConnectionClosed:
            pass
        finally:
            self._socket_gone(link)

    async def _wait_for_room(self, link: _Link) -> bool:
        """Back-pressure: wait until no session inbox is full; False if the socket closed meanwhile."""
        room = asyncio.ensure_future(self._room.wait())
        closed = asyncio.ensure_future(link.ws.wait_closed())
        try:
            done, _ = await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            closed.cancel()
        return room in done

    async def _write_loop(self, link: _Link) -> None:
        ws, core = link.ws, link.core
        try:
            while True:
                await link.wake.wait()
                link.wake.clear()
                while items := core.data_to_send():
                    for item in items:
                        if isinstance(item, CloseSocket):
                            await ws.close(item.code, item.reason)
                            return
                        await ws.send(item)
                link.idle.set()
        except ConnectionClosed:
            pass
        finally:
            link.writer_done = True
            link.idle.set()

    def _socket_gone(self, link: _Link) -> None:
        if link.ended.is_set():
            return
        ws = link.ws
        code = ws.close_code if ws.close_code is not None else 1006
        link.core.connection_closed(code, ws.close_reason or "")
        self._dispatch(link)
        link.idle.set()

    # ---- events -----------------------------------------------------------------------------

    def _dispatch(self, link: _Link) -> None:
        for event in link.core.events_received():
            self._on_event(link, event)

    def _on_event(self, link: _Link, event: ClientEvent) -> None:
        session = self._sessions.get(getattr(event, "session", 0))
        if isinstance(event, MessageReceived):
            if (
                session is not None
                and session._deliver(Message(event.stream, event.data)) >= self._inbox_size
            ):
                self._full.add(session.number)
                self._room.clear()
        elif isinstance(event, Authenticated):
            self._ready = event
            self._resume_state = None
            if self._closed.done():
                self._closed = asyncio.get_running_loop().create_future()
            self._set_state(ConnectionState.CONNECTED)
            if not link.auth.done():
                link.auth.set_result(None)
        elif isinstance(event, SessionOpened):
            future = self._opening.pop(event.session, None)
            if future is None or future.done():  # the caller gave up waiting
                link.core.close_session(event.session)
                link.wake.set()
                return
            session = Session(self, link.core.session(event.session), event.peer_id)
            self._sessions[event.session] = session
            future.set_result(session)
        elif isinstance(event, SessionOpenFailed):
            future = self._opening.pop(event.session, None)
            if future is not None and not future.done():
                future.set_exception(event.error)
        elif isinstance(event, SessionEnded):
            if session is not None:
                del self._sessions[event.session]
                session._finish(SessionClosed(event.code, event.message, session=event.session))
        elif isinstance(event, HandshakeCompleted):
            if session is not None:
                session._wake()  # handshake() sees it on the record
        elif isinstance(event, HandshakeFailed):
            if session is not None:
                session._handshake_error = event.error
                session._wake()
        elif isinstance(event, PeerHelloReceived):
            if session is not None:
                session.peer_name = event.name
        elif isinstance(event, SessionErrorReceived):
            if session is not None:
                session.errors.append(event.error)
        elif isinstance(event, Pong | TokenRefreshed):
            future_r = link.requests.get(event.request_id)
            if future_r is not None and not future_r.done():
                future_r.set_result(event.expires_at if isinstance(event, TokenRefreshed) else None)
        elif isinstance(event, RequestFailed):
            future_r = link.requests.get(event.request_id)
            if future_r is not None and not future_r.done():
                future_r.set_exception(event.error)
        elif isinstance(event, TokenExpiring):
            self._callback(self.on_token_expiring, event.expires_at)
        elif isinstance(event, DrainRequested):
            self.drain_delay = event.reconnect_after_ms / 1000
            self._callback(self.on_drain, self.drain_delay)
        elif isinstance(event, GatewayErrorReceived):
            self.last_error = event.error
        elif isinstance(event, ConnectionEnded):
            self._on_connection_ended(link, event.info)
        elif isinstance(event, FrameUndecryptable | FrameDropped):
            pass  # counted in the session record

    def _on_connection_ended(self, link: _Link, info: CloseInfo) -> None:
        link.ended.set()
        for future in link.requests.values():
            if not future.done():
                future.set_exception(GatewayClosed(info.code, info.reason, resumable=info.resumable))
        if not link.auth.done():  # the caller of _establish decides what follows
            link.auth.set_exception(GatewayClosed(info.code, info.reason, resumable=info.resumable))
            return
        if link is not self._link:
            return
        self._last_close = info
        self._callback(self.on_close, info)
        if self._state is ConnectionState.CLOSED:
            return  # close() finishes
        if info.resumable:
            self._resume_state = link.core.resume_state()
            if self._auto_resume:
                self._set_state(ConnectionState.RESUMING)
                self._resume_task = asyncio.create_task(self._resume_loop(), name="gateway-client-resume")
            else:
                self._set_state(ConnectionState.DISCONNECTED)
                if not self._closed.done():
                    self._closed.set_result(info)
            return
        self._set_state(ConnectionState.CLOSED)
        self._finish(info, SessionClosed(info.code, info.reason or "socket closed"))

    def _inbox_taken(self, session: Session) -> None:
        if session.number in self._full and (len(session._inbox) < self._inbox_size or session.closed):
            self._full.discard(session.number)
            if not self._full:
                self._room.set()

    def _callback(self, callback: Callback | None, *args: object) -> None:
        if callback is None:
            return
        result = callback(*args)
        if inspect.isawaitable(result):

            async def run() -> None:
                await result

            task = asyncio.create_task(run())
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
