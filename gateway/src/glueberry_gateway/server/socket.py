"""The asyncio driver of one browser WebSocket: feeds its messages to the socket's
:class:`~.core.ServerProtocol`, writes what the core produces through the :class:`~.outbound.Outbound`
queue, and does what the core's events ask (resume, dial a backend, relay a frame).

Two tasks per socket and none per session: this reader handles one incoming message at a time (so
a data frame is handed to its backend stream before the next is read — back-pressure), and the
outbound writer drains the one bounded queue. Opening a session runs in its own short task,
because the browser's answer to the ``sign`` request arrives through the reader. Timers live here:
the auth timeout, the token notice and expiry; idle sockets and slow consumers are caught by the
gateway's watchdog (:meth:`BrowserSocket.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from opentelemetry.trace import Tracer
from starlette.websockets import WebSocket, WebSocketDisconnect

from glueberry.p2p.asyncio import Connection, Host
from glueberry.p2p.keys import PeerID

from ..protocol import control
from ..protocol.codes import Code
from ..protocol.control import ResumeOutcome, ResumeRequest
from ..protocol.errors import (
    BackendClosed,
    ProtocolViolation,
    SessionFault,
    SignatureInvalid,
    SignTimeout,
    TooManyStreams,
    error_of,
)
from .core import Policy, ServerProtocol
from .dial import RemoteSigner, dial_backend
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
from .outbound import Outbound
from .session import Ack, BackendSession
from .settings import Limits

__all__ = ["BrowserSocket", "SocketOwner"]

_log = logging.getLogger("glueberry_gateway")
_audit = logging.getLogger("glueberry_gateway.audit")


class SocketOwner(Protocol):
    """What a socket needs from the gateway that serves it (a narrow view of :class:`~.gateway.Gateway`)."""

    @property
    def policy(self) -> Policy: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def host(self) -> Host: ...

    async def resume(
        self, socket: BrowserSocket, request: ResumeRequest
    ) -> tuple[dict[int, BackendSession], dict[int, ResumeOutcome]]: ...

    async def forget_detached(self, peer_id: PeerID) -> None: ...

    def add_session(
        self, socket: BrowserSocket, number: int, backend: str, conn: Connection
    ) -> BackendSession: ...

    def end_session(self, session: BackendSession, code: Code, socket: BrowserSocket | None) -> None: ...

    async def socket_ended(self, socket: BrowserSocket, *, resumable: bool) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class BrowserSocket:
    """One browser socket (module docstring); ``core`` holds its protocol state."""

    def __init__(self, owner: SocketOwner, websocket: WebSocket, client_ip: str) -> None:
        self.owner = owner
        self.ws = websocket
        self.client_ip = client_ip
        self.limits = limits = owner.limits
        self._traffic = owner.metrics.traffic
        self.core: ServerProtocol[BackendSession] = ServerProtocol(
            owner.policy,
            limits,
            owner.metrics,
            gateway_peer_id=str(owner.host.peer_id),
            origin=websocket.headers.get("origin", ""),
            now=time.monotonic(),
        )
        self.outbound = Outbound(websocket, self._close_ws, limits, self._slow_consumer, self._traffic)
        # BrowserLink.send_frames: the sessions' frames go straight to the outbound queue
        self.send_frames: Callable[[list[bytes], Ack | None], None] = self.outbound.send_frames
        self._loop = asyncio.get_running_loop()
        self._last_read = time.monotonic()
        self._signs: dict[int, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[object] | None = None
        self._abandoned = False  # a slow consumer: the reader was stopped, the writer is not awaited
        self._token_timers: tuple[asyncio.TimerHandle, ...] = ()  # the notice and the expiry
        self._ws_closed = False

    @property
    def peer_id(self) -> PeerID | None:
        return self.core.peer_id

    @property
    def sessions(self) -> dict[int, BackendSession]:
        return self.core.sessions

    # The socket's life.

    async def run(self) -> None:
        ws = self.ws
        if control.SUBPROTOCOL not in ws.scope.get("subprotocols", []):
            await ws.accept()
            await ws.close(Code.UNSUPPORTED_VERSION, f"the {control.SUBPROTOCOL} subprotocol is required")
            self.owner.metrics.closes.labels(Code.UNSUPPORTED_VERSION.name).inc()
            return
        await ws.accept(subprotocol=control.SUBPROTOCOL)
        self._reader = asyncio.current_task()
        self._flush()  # the challenge
        writer = asyncio.ensure_future(self.outbound.run())
        try:
            await self._authenticate()
            core, outbound = self.core, self.outbound
            while core.close_code is None:
                message = await self._receive()
                if isinstance(message, bytes):
                    core.receive_binary(message, self._last_read)
                else:
                    core.receive_text(message, self._last_read)
                for event in core.events_received():
                    if type(event) is DataReceived:  # by far the most frequent: no call in between
                        session = event.session
                        try:
                            if not session.try_send(event.stream, event.payload):
                                await session.send(event.stream, event.payload)
                        except (TooManyStreams, BackendClosed) as exc:
                            self._relay_failed(event, exc)
                            continue
                        traffic = self._traffic
                        traffic.frames_to_backend += 1
                        traffic.bytes_to_backend += len(event.payload)
                    else:
                        await self._act_on(event)
                for item in core.data_to_send():
                    outbound.push(item)
        except WebSocketDisconnect:
            pass
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            task = asyncio.current_task()  # _give_up stopped us: the socket ends normally below
            assert task is not None
            task.uncancel()
        except Exception:
            _log.exception("socket from %s failed", self.client_ip)
            self.core.fail(Code.INTERNAL_ERROR, "internal error")
            self._flush()
        finally:
            await self._finish(writer)

    async def _authenticate(self) -> None:
        try:
            text = await self._receive(self.limits.auth_timeout)
        except TimeoutError:
            self.owner.metrics.auth_failures.labels(Code.AUTH_TIMEOUT.name).inc()
            self.core.fail(Code.AUTH_TIMEOUT, "no auth message in time")
            self._flush()
            return
        with self.owner.tracer.start_as_current_span("gateway.auth"):
            if isinstance(text, bytes):
                self.core.receive_binary(text, self._last_read)
            else:
                self.core.receive_text(text, self._last_read)
        await self._act()

    async def _receive(self, timeout: float | None = None) -> str | bytes:
        if timeout is None:  # the gateway's watchdog enforces idle_timeout, not a timer per message
            message = await self.ws.receive()
        else:
            async with asyncio.timeout(timeout):
                message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1006)
            self.core.connection_lost(code)
            raise WebSocketDisconnect(code)
        self._last_read = time.monotonic()
        text = message.get("text")
        if text is not None:
            assert isinstance(text, str)
            return text
        data = message.get("bytes")
        assert isinstance(data, bytes)
        return data

    async def _act(self) -> None:
        """Before the socket is ready (no data frames yet): do what the core's events ask, in
        order; then write what it produced. The data path is :meth:`run`'s loop."""
        for event in self.core.events_received():
            await self._act_on(event)
        self._flush()

    async def _act_on(self, event: ServerEvent[BackendSession]) -> None:
        """What any event but a data frame asks."""
        if isinstance(event, AuthAccepted):
            await self._accepted(event)
        elif isinstance(event, AuthRefused):
            self.owner.metrics.auth_failures.labels(event.code.name).inc()
            _audit.info(
                "auth failed",
                extra={"event": "auth", "ok": False, "ip": self.client_ip, "code": event.code.name},
            )
        elif isinstance(event, OpenRequested):
            self.owner.spawn(self._open(event))
        elif isinstance(event, SignatureAnswered):
            future = self._signs.pop(event.id, None)
            if future is not None and not future.done():
                if event.signature is None:
                    future.set_exception(SignatureInvalid("the browser refused to sign"))
                else:
                    future.set_result(event.signature)
        elif isinstance(event, CloseRequested):
            self.owner.end_session(event.session, Code.NORMAL, self)
        elif isinstance(event, TokenChanged):
            self._schedule_token_expiry(event.expires_at)

    def _flush(self) -> None:
        for item in self.core.data_to_send():
            self.outbound.push(item)

    def _relay_failed(self, event: DataReceived[BackendSession], exc: TooManyStreams | BackendClosed) -> None:
        reason = "too_many_streams" if isinstance(exc, TooManyStreams) else "backend_stream"
        self.owner.metrics.drops.labels(reason).inc()
        _log.info("session %d: send on %s failed: %s", event.number, event.stream, exc)
        self.core.data_failed(event.number, exc)

    async def _accepted(self, event: AuthAccepted) -> None:
        owner = self.owner
        owner.metrics.auth_successes.inc()
        _audit.info(
            "auth", extra={"event": "auth", "ok": True, "ip": self.client_ip, "peer": str(event.peer_id)}
        )
        self.outbound.batch = self.core.batch
        if event.resume is None:
            await owner.forget_detached(event.peer_id)
            self.core.accept({}, None)
            return
        try:
            sessions, outcomes = await owner.resume(self, event.resume)
        except ProtocolViolation as exc:
            self.core.fail(exc.code, exc.message)
            return
        self.core.accept(sessions, outcomes)
        self._flush()  # ready goes before the frames the sessions send again
        for number, session in sessions.items():
            session.replay(event.resume.sessions[number])

    async def _finish(self, writer: asyncio.Future[None]) -> None:
        code, message = self.core.finish()
        self._flush()
        self.outbound.close(code, message)
        if self._abandoned:  # a slow consumer: its writer may wait forever
            writer.cancel()
        else:
            try:
                await asyncio.wait_for(writer, self.limits.slow_consumer_timeout)
            except TimeoutError:
                writer.cancel()
        code, message = self.core.close_code or (code, message)
        self.owner.metrics.closes.labels(code.name).inc()
        self.outbound.drop()
        for future in self._signs.values():
            if not future.done():
                future.cancel()
        for timer in self._token_timers:
            timer.cancel()
        await self.owner.socket_ended(self, resumable=self.core.lost)
        await self._close_ws(code, message)

    async def _close_ws(self, code: Code, message: str) -> None:
        if self._ws_closed:
            return
        self._ws_closed = True
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.ws.close(int(code), message[:120])

    # Sessions.

    async def _open(self, request: OpenRequested) -> None:
        owner, core = self.owner, self.core
        backend = request.backend
        assert core.public_key is not None
        start = time.monotonic()
        try:
            with owner.tracer.start_as_current_span("gateway.session_open") as span:
                span.set_attribute("glueberry.backend", backend.name)
                with owner.tracer.start_as_current_span("gateway.dial") as dial_span:
                    dial_span.set_attribute("glueberry.backend", backend.name)
                    conn = await dial_backend(
                        owner.host,
                        backend,
                        RemoteSigner(
                            self, core.public_key, request.session, owner.tracer
                        ),  # a fresh static key
                        timeout=self.limits.handshake_timeout + self.limits.sign_timeout,
                    )
        except Exception as exc:  # a SessionFault; anything else is a bug, and ends the socket (4013)
            if not isinstance(exc, SessionFault):
                _log.exception("opening session %d failed", request.session)
            owner.metrics.dial_latency.labels("error").observe(time.monotonic() - start)
            core.open_failed(request.id, request.session, exc)
            self._flush()
            _audit.info(
                "session refused",
                extra={
                    "event": "session_open",
                    "peer": str(core.peer_id),
                    "backend": backend.name,
                    "code": error_of(exc).code.name,
                },
            )
            return
        if core.closing:  # the socket ended meanwhile
            core.cancel_open(request.session)
            conn.close()
            owner.metrics.dial_latency.labels("error").observe(time.monotonic() - start)
            return
        session = owner.add_session(self, request.session, backend.name, conn)
        core.session_opened(request.id, request.session, backend, session)
        self._flush()
        owner.metrics.dial_latency.labels("ok").observe(time.monotonic() - start)
        _audit.info(
            "session opened",
            extra={
                "event": "session_open",
                "peer": str(core.peer_id),
                "backend": backend.name,
                "session": request.session,
            },
        )

    async def request_signature(self, session: int, payload: bytes) -> bytes:
        """Ask the browser to sign a Noise payload for the dial of ``session`` (§5.1)."""
        sign_id = self.core.request_signature(session, payload)
        self._flush()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._signs[sign_id] = future
        try:
            return await asyncio.wait_for(future, self.limits.sign_timeout)
        except TimeoutError:
            raise SignTimeout("no signature in time") from None
        finally:
            self._signs.pop(sign_id, None)

    # BrowserLink (called by sessions).

    def stream_closed(self, session: BackendSession, name: str) -> None:
        self.core.stream_closed(session.number, name)
        self._flush()

    def session_closed(self, session: BackendSession, code: Code, message: str) -> None:
        if self.core.sessions.get(session.number) is session:
            self.core.session_ended(session.number, code, message)
            self.owner.end_session(session, code, self)
            self._flush()

    # Watchdog, tokens, drain.

    def watchdog(self, now: float) -> None:
        """Called about once a second by the gateway: idle sockets and slow consumers."""
        core = self.core
        if core.closing:
            return
        if (
            core.peer_id is not None
            and now - max(self._last_read, self.outbound.last_write) > self.limits.idle_timeout
        ):
            core.fail(Code.IDLE_TIMEOUT, "idle for too long")
            self._flush()
        else:
            self.outbound.check(now)

    def _schedule_token_expiry(self, expires_at: float) -> None:
        for timer in self._token_timers:
            timer.cancel()
        expire = max(0.0, expires_at - time.time())
        notice = max(0.0, expire - self.limits.token_refresh_notice)
        self._token_timers = (
            self._loop.call_later(notice, self._token_timer, self.core.token_notice, expires_at),
            self._loop.call_later(expire, self._token_timer, self.core.token_expired, expires_at),
        )

    def _token_timer(self, fire: Callable[[float], None], expires_at: float) -> None:
        fire(expires_at)
        self._flush()

    def drain(self, reconnect_after_ms: int) -> None:
        """Tell the browser to come back later, then close with 1001 (going away)."""
        self.core.drain(reconnect_after_ms)
        self._flush()

    # Slow consumers.

    def _slow_consumer(self) -> None:
        message = "the browser does not read its data"
        self.core.abort(Code.SLOW_CONSUMER, message)
        self.owner.metrics.drops.labels("slow_consumer").inc(self.outbound.drop())
        self.owner.spawn(self._close_ws(Code.SLOW_CONSUMER, message))
        self.owner.spawn(self._give_up())

    async def _give_up(self) -> None:
        """The close frame waits behind the data the browser does not read, and until it is out
        nothing wakes the reader. Give the browser one more ``slow_consumer_timeout``, then stop
        the reader: that ends the sessions and the socket (§7); the server drops the connection."""
        await asyncio.sleep(self.limits.slow_consumer_timeout)
        reader = self._reader
        if reader is not None and not reader.done():
            self._abandoned = True
            reader.cancel()
