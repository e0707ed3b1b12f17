"""The gateway: one per process. It admits browser sockets, owns the libp2p host that dials the
backends, keeps the table of sessions by backend connection, hands dropped sockets' sessions to
the resume store, and drains. :func:`glueberry_gateway.server.app.create_app` mounts it.

Two seams hold the state that outlives a socket: :class:`~.admission.Admission` (who may come
in) and :class:`~.resume.ResumeStore` (sessions waiting for a resume). Both default to this
process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from opentelemetry import trace
from starlette.websockets import WebSocket

from glueberry.exceptions import InvalidStreamName
from glueberry.p2p.asyncio import Connection, Host, HostConfig, Stream
from glueberry.p2p.keys import PeerID
from glueberry.p2p.signer import LocalSigner
from glueberry.p2p.yamux import YamuxConfig
from glueberry.streams import stream_name_of

from .. import __version__
from ..protocol import control
from ..protocol.codes import Code
from ..protocol.control import ResumeOutcome, ResumeRequest
from ..protocol.errors import ProtocolViolation
from ..protocol.frames import check_stream_name
from .admission import Admission, LocalAdmission, Refusal
from .metrics import Metrics
from .policy import SettingsPolicy
from .resume import MemoryResumeStore, ResumeStore, reattach
from .session import BackendSession, Tap
from .settings import Settings
from .socket import BrowserSocket

__all__ = ["Gateway"]

_log = logging.getLogger("glueberry_gateway")
_audit = logging.getLogger("glueberry_gateway.audit")


def _is_glueberry_protocol(protocol: str) -> bool:
    name = stream_name_of(protocol)
    if name is None:
        return False
    try:
        check_stream_name(name)  # data frames to the browser carry ASCII names only
    except InvalidStreamName:
        return False
    return True


class Gateway:
    """The gateway of this process.

    Args:
        settings: validated here.
        tap: sees every relayed payload (audits, tests); see :data:`~.session.Tap`.
        admission: who may open a socket; default: :class:`~.admission.LocalAdmission`.
        resume_store: where dropped sockets' sessions wait; default: :class:`~.resume.MemoryResumeStore`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tap: Tap | None = None,
        admission: Admission | None = None,
        resume_store: ResumeStore[BackendSession] | None = None,
    ) -> None:
        settings.validate()
        self.settings = settings
        self.limits = limits = settings.limits
        self.tap = tap
        self.metrics = Metrics()
        self.tracer = trace.get_tracer("glueberry_gateway", __version__)
        self.host = Host(
            LocalSigner(settings.identity),
            HostConfig(
                agent_version=f"glueberry-gateway/{__version__}",
                dial_timeout=limits.handshake_timeout,
                max_connections=limits.max_sockets * limits.max_sessions,
                identify_timeout=min(5.0, limits.handshake_timeout),
                yamux=YamuxConfig(receive_window=limits.backend_window, max_streams=limits.max_streams + 4),
            ),
        )
        self.host.set_stream_matcher(_is_glueberry_protocol, self._backend_stream)
        self.host.on_disconnected.append(self._backend_lost)
        self.policy = SettingsPolicy(settings)
        self.admission: Admission = admission or LocalAdmission(limits)
        self.resume_store: ResumeStore[BackendSession] = resume_store or MemoryResumeStore(
            limits.resume_grace, self._expire
        )
        self.metrics.detached_sessions.set_function(lambda: self.resume_store.waiting)
        self.sockets: set[BrowserSocket] = set()
        self.draining = False
        self._sessions: dict[Connection, BackendSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._all_closed = asyncio.Event()  # set whenever the last socket goes

    # Browser sockets.

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one WebSocket until it closes, after the admission limits."""
        ip = websocket.client.host if websocket.client else "unknown"
        refusal = (
            Refusal(Code.GOING_AWAY, "the gateway is restarting")
            if self.draining
            else await self.admission.admit(ip)
        )
        if refusal is not None:
            self.metrics.closes.labels(refusal.code.name).inc()
            await websocket.accept(
                subprotocol=control.SUBPROTOCOL
                if control.SUBPROTOCOL in websocket.scope.get("subprotocols", [])
                else None
            )
            await websocket.send_text(
                control.encode(control.ErrorMessage(int(refusal.code), refusal.message))
            )
            await websocket.close(int(refusal.code), refusal.message)
            return
        try:
            socket = BrowserSocket(self, websocket, ip)
        except BaseException:
            await self.admission.release(ip)  # what admit() counted in
            raise
        self.sockets.add(socket)
        self.metrics.sockets.inc()
        try:
            await socket.run()
        finally:
            self.sockets.discard(socket)
            self.metrics.sockets.dec()
            if not self.sockets:
                self._all_closed.set()
            await self.admission.release(ip)

    # Sessions.

    def add_session(
        self, socket: BrowserSocket, number: int, backend: str, conn: Connection
    ) -> BackendSession:
        limits = self.limits
        session = BackendSession(
            number,
            backend,
            conn,
            socket,
            max_streams=limits.max_streams,
            max_frame=limits.max_frame_bytes,
            resume_buffer_bytes=limits.resume_buffer_bytes,
            tap=self.tap,
        )
        self._sessions[conn] = session
        self.metrics.sessions.inc()
        return session

    def end_session(self, session: BackendSession, code: Code, socket: BrowserSocket | None) -> None:
        if self._sessions.pop(session.conn, None) is None:
            return
        self.metrics.sessions.dec()
        self.metrics.session_closes.labels(code.name).inc()
        session.close()
        _audit.info(
            "session closed",
            extra={
                "event": "session_close",
                "peer": str(socket.peer_id) if socket is not None else None,
                "backend": session.backend_name,
                "session": session.number,
                "code": code.name,
                "frames_in": session.frames_in,
                "frames_out": session.frames_out,
            },
        )

    async def _backend_stream(self, stream: Stream) -> None:
        session = self._sessions.get(stream.connection)
        if session is None:
            stream.reset()
            return
        session.accept(stream)

    def _backend_lost(self, conn: Connection) -> None:
        session = self._sessions.get(conn)
        if session is None:
            return
        if session.link is None:  # detached: nobody to tell; the resume will find it closed
            self.end_session(session, Code.BACKEND_CLOSED, None)
            return
        session.backend_lost()

    # Resume (§6).

    async def socket_ended(self, socket: BrowserSocket, *, resumable: bool) -> None:
        """A socket is over: its sessions end, or wait for a resume if it was lost."""
        sessions = dict(socket.sessions)
        socket.sessions.clear()
        if not sessions:
            return
        if not resumable or self.draining or socket.peer_id is None:
            for session in sessions.values():
                self.end_session(session, Code.NORMAL, socket)
            return
        for session in sessions.values():
            session.detach()
        await self.resume_store.keep(socket.peer_id, socket.core.resume_token, sessions)

    async def forget_detached(self, peer_id: PeerID) -> None:
        """A socket of ``peer_id`` came without a resume: what waited for one is over."""
        await self.resume_store.forget(peer_id)

    async def resume(
        self, socket: BrowserSocket, request: ResumeRequest
    ) -> tuple[dict[int, BackendSession], dict[int, ResumeOutcome]]:
        """Attach the waiting sessions ``request`` asks for to ``socket``; report each outcome.

        Raises:
            ProtocolViolation: 4014, the resume token is not the one of the sessions that wait.
        """
        assert socket.peer_id is not None
        try:
            kept = await self.resume_store.claim(socket.peer_id, request.token)
        except ProtocolViolation:
            self.metrics.resumes.labels("bad_token").inc()
            raise
        attached, outcomes, ended = reattach(kept, request.sessions)
        for session in attached.values():
            session.attach(socket)
        for session in ended:
            self.end_session(session, Code.SESSION_EXPIRED, socket)
        for outcome in outcomes.values():
            self.metrics.resumes.labels("recovered" if outcome.recovered else "lost").inc()
        return attached, outcomes

    def _expire(self, session: BackendSession) -> None:
        self.end_session(session, Code.SESSION_EXPIRED, None)

    # Lifecycle.

    async def _watchdog(self) -> None:
        """One timer for all sockets (idle, slow consumers) instead of one per message."""
        while True:
            await asyncio.sleep(self._watch_interval)
            now = time.monotonic()
            for socket in list(self.sockets):
                socket.watchdog(now)

    async def start(self) -> None:
        limits = self.limits
        self._watch_interval = max(0.05, min(1.0, limits.slow_consumer_timeout / 4, limits.idle_timeout / 4))
        self.spawn(self._watchdog())
        _log.info(
            "gateway %s ready: %d backend(s): %s",
            self.settings.peer_id,
            len(self.settings.backends),
            ", ".join(f"{b.name}={b.peer_id}" for b in self.settings.backends),
        )

    async def drain(self) -> None:
        """Stop accepting, tell browsers to come back after a jittered delay, close the
        backend legs, and return within ``drain_timeout``."""
        if self.draining:
            return
        self.draining = True
        limits = self.limits
        _log.info("draining %d socket(s)", len(self.sockets))
        for socket in list(self.sockets):
            socket.drain(random.randint(limits.drain_reconnect_ms // 4, limits.drain_reconnect_ms))
        if self.sockets:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), limits.drain_timeout)
        await self.close()

    async def close(self) -> None:
        await self.resume_store.close()
        for session in list(self._sessions.values()):
            self.end_session(session, Code.GOING_AWAY, None)
        for task in list(self._tasks):
            task.cancel()
        await self.host.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("gateway task failed: %s", exc, exc_info=exc)
