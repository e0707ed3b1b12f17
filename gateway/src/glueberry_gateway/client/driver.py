"""The machinery of the Python gateway client (asyncio): its sockets (:class:`~.link.Link`),
the resume after a drop (§6) with backoff, and what the core's events mean for the sessions and
the waiting callers. :class:`~.asyncio.GatewayClient` is its public face."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import InvalidState

from ..protocol.codes import Code
from .core import ClientProtocol
from .errors import GatewayClosed, GatewayError, GatewayProtocolError, SessionClosed
from .events import (
    Authenticated,
    ClientEvent,
    CloseInfo,
    ConnectionEnded,
    DrainRequested,
    GatewayErrorReceived,
    Pong,
    RequestFailed,
    SessionEnded,
    SessionEvent,
    SessionOpened,
    SessionOpenFailed,
    TokenExpiring,
    TokenRefreshed,
)
from .link import Link, open_websocket
from .resume import ResumeState
from .session import ConnectionState, Session

__all__ = ["Driver"]

Callback = Callable[..., object]


def attempt_info(exc: BaseException) -> CloseInfo:
    """How a failed connect or resume attempt ended; ``resumable``: another attempt may work."""
    if isinstance(exc, GatewayClosed):
        return CloseInfo(int(exc.code), exc.message, exc.resumable)
    if isinstance(exc, GatewayProtocolError):
        return CloseInfo(int(exc.close_code), exc.message, False)
    if isinstance(exc, TimeoutError | OSError | asyncio.CancelledError):
        return CloseInfo(1006, str(exc) or "no ready in time", True)
    return CloseInfo(Code.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", False)


class Driver:
    """The state and the machinery of a gateway client (module docstring)."""

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

    @property
    def state(self) -> ConnectionState:
        return self._state

    async def _establish(self, resume: ResumeState | None) -> None:
        """Open a socket and authenticate (resuming ``resume``'s sessions); CONNECTED on success."""
        core = ClientProtocol(
            self._identity, self._origin, token=self._token, resume=resume, **self._core_options
        )
        max_size = max(int(self._core_options["max_receive_bytes"]), 1 << 20)
        async with asyncio.timeout(self._open_timeout):
            ws = await open_websocket(self._url, self._origin, max_size)
            link = self._link = Link(ws, core, self._dispatch, self._room)
            try:
                await asyncio.shield(link.auth)
            except BaseException:
                if not link.ended.is_set():
                    core.close(1000, "client gave up")
                    link.wake.set()
                    await asyncio.sleep(0)
                await link.stop()
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
                info = attempt_info(exc)
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
        await link.written()
        if link.ended.is_set() and self._state is ConnectionState.CLOSED:
            self._check_alive()

    # ---- events -----------------------------------------------------------------------------

    def _dispatch(self, link: Link) -> None:
        for event in link.core.events_received():
            self._on_event(link, event)

    def _on_event(self, link: Link, event: ClientEvent) -> None:
        if isinstance(event, SessionEvent):  # MessageReceived first: by far the most frequent
            session = self._sessions.get(event.session)
            if session is None:
                return
            if isinstance(event, SessionEnded):
                del self._sessions[event.session]
            if session._on_event(event) >= self._inbox_size:
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
        elif isinstance(event, Pong | TokenRefreshed | RequestFailed):
            waiting = link.requests.get(event.request_id)
            if waiting is not None and not waiting.done():
                if isinstance(event, RequestFailed):
                    waiting.set_exception(event.error)
                else:
                    waiting.set_result(event.expires_at if isinstance(event, TokenRefreshed) else None)
        elif isinstance(event, TokenExpiring):
            self._callback(self.on_token_expiring, event.expires_at)
        elif isinstance(event, DrainRequested):
            self.drain_delay = event.reconnect_after_ms / 1000
            self._callback(self.on_drain, self.drain_delay)
        elif isinstance(event, GatewayErrorReceived):
            self.last_error = event.error
        elif isinstance(event, ConnectionEnded):
            self._on_connection_ended(link, event.info)

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
