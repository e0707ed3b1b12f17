"""A Python client of the gateway (docs/gateway-protocol.md): the browser side, over asyncio.

A thin driver of :class:`~glueberry_gateway.client.core.ClientProtocol` over a ``websockets``
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
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from glueberry.exceptions import InvalidState
from glueberry.p2p.keys import PeerID

from ..protocol.codes import CloseSocket, Code
from ..protocol.control import SUBPROTOCOL, BackendInfo, GatewayLimits
from .core import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECEIVE_BYTES,
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_FRAMES,
    ClientProtocol,
)
from .errors import GatewayClosed, GatewayError, GatewayProtocolError, SessionClosed
from .events import (
    Authenticated,
    ClientEvent,
    CloseInfo,
    ConnectionEnded,
    DrainRequested,
    FrameDropped,
    FrameUndecryptable,
    GatewayErrorReceived,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    PeerHelloReceived,
    Pong,
    RequestFailed,
    SessionEnded,
    SessionErrorReceived,
    SessionOpened,
    SessionOpenFailed,
    TokenExpiring,
    TokenRefreshed,
)
from .record import ResumeState
from .session import CLOSE_TIMEOUT, ConnectionState, Link, Message, Session

__all__ = ["GatewayClient"]

DEFAULT_INBOX_SIZE: Final = 1024
# HTTP refusals of the upgrade (§2, §7) as the close code a gateway would otherwise use.
_HTTP_REFUSALS: Final = {
    400: Code.UNSUPPORTED_VERSION,
    403: Code.ORIGIN_NOT_ALLOWED,
    429: Code.RATE_LIMITED,
    503: Code.TOO_MANY_CONNECTIONS,
}
Callback = Callable[..., object]


def _attempt_info(exc: BaseException) -> CloseInfo:
    """How a failed connect or resume attempt ended; ``resumable``: another attempt may work."""
    if isinstance(exc, GatewayClosed):
        return CloseInfo(int(exc.code), exc.message, exc.resumable)
    if isinstance(exc, GatewayProtocolError):
        return CloseInfo(int(exc.close_code), exc.message, False)
    if isinstance(exc, TimeoutError | OSError | asyncio.CancelledError):
        return CloseInfo(1006, str(exc) or "no ready in time", True)
    return CloseInfo(Code.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", False)


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
        self._link: Link | None = None
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
                :class:`~glueberry_gateway.client.core.ClientProtocol`.

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
                async with asyncio.timeout(CLOSE_TIMEOUT):
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
            link = Link(ws, core)
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

    async def _ready_link(self) -> Link:
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

    async def _request(self, link: Link, request_id: int, timeout: float | None) -> float | None:
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        link.requests[request_id] = future
        link.wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            link.requests.pop(request_id, None)

    async def _flush(self, link: Link) -> None:
        """Wait until everything the core queued so far was written (or the socket is gone)."""
        if not link.writer_done:
            link.idle.clear()
            link.wake.set()
            await link.idle.wait()
        if link.ended.is_set() and self._state is ConnectionState.CLOSED:
            self._check_alive()

    async def _stop_tasks(self, link: Link) -> None:
        current = asyncio.current_task()
        tasks = [t for t in link.tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not link.ended.is_set():
            await link.ws.close()
            self._socket_gone(link)

    # ---- reader and writer --------------------------------------------------------------------

    async def _read_loop(self, link: Link) -> None:
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

    async def _wait_for_room(self, link: Link) -> bool:
        """Back-pressure: wait until no session inbox is full; False if the socket closed meanwhile."""
        room = asyncio.ensure_future(self._room.wait())
        closed = asyncio.ensure_future(link.ws.wait_closed())
        try:
            done, _ = await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            closed.cancel()
        return room in done

    async def _write_loop(self, link: Link) -> None:
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

    def _socket_gone(self, link: Link) -> None:
        if link.ended.is_set():
            return
        ws = link.ws
        code = ws.close_code if ws.close_code is not None else 1006
        link.core.connection_closed(code, ws.close_reason or "")
        self._dispatch(link)
        link.idle.set()

    # ---- events -----------------------------------------------------------------------------

    def _dispatch(self, link: Link) -> None:
        for event in link.core.events_received():
            self._on_event(link, event)

    def _on_event(self, link: Link, event: ClientEvent) -> None:
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

    def _on_connection_ended(self, link: Link, info: CloseInfo) -> None:
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
