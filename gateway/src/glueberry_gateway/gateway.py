"""The gateway: admission of browser sockets, the libp2p host that dials backends, the sessions,
the resume registry, drain. One per process; :func:`glueberry_gateway.app.create_app` mounts it."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from starlette.websockets import WebSocket

from glueberry._streams import stream_name_of
from glueberry.config import validate_stream_name
from glueberry.exceptions import InvalidStreamName
from glueberry.limits import SlidingWindow
from glueberry.p2p.asyncio import Connection, Host, HostConfig, Stream
from glueberry.p2p.keys import PeerID
from glueberry.p2p.signer import LocalSigner
from glueberry.p2p.yamux import YamuxConfig

from . import __version__, codec
from .auth import TokenClaims, TokenVerifier
from .browser import BrowserSocket
from .codec import ProtocolViolation
from .codes import Code
from .metrics import Metrics
from .relay import BackendSession, Tap
from .settings import Settings

__all__ = ["Gateway"]

_log = logging.getLogger("glueberry_gateway")
_audit = logging.getLogger("glueberry_gateway.audit")
_MAX_TRACKED_IPS = 100_000


def _is_glueberry_protocol(protocol: str) -> bool:
    name = stream_name_of(protocol)
    # Go allows Unicode letters in names; data frames to the browser carry ASCII ones only.
    if name is None or not name.isascii():
        return False
    try:
        validate_stream_name(name)
    except InvalidStreamName:
        return False
    return True


@dataclass(slots=True)
class _Detached:
    token: bytes
    sessions: dict[int, BackendSession]
    timer: asyncio.TimerHandle


class Gateway:
    def __init__(self, settings: Settings, *, tap: Tap | None = None) -> None:
        """Args:
        settings: validated here.
        tap: sees every relayed payload (audits, tests); see :data:`relay.Tap`.
        """
        settings.validate()
        self.settings = settings
        self.tap = tap
        self.metrics = Metrics()
        self.tracer = trace.get_tracer("glueberry_gateway", __version__)
        limits = settings.limits
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
        self.tokens = (
            TokenVerifier(
                settings.tokens.key,
                settings.tokens.algorithms,
                issuer=settings.tokens.issuer,
                audience=settings.tokens.audience,
            )
            if settings.tokens.key is not None
            else None
        )
        self.sockets: set[BrowserSocket] = set()
        self.draining = False
        self._per_ip: dict[str, int] = {}
        self._rates: dict[str, SlidingWindow] = {}
        self._sessions: dict[Connection, BackendSession] = {}
        self._detached: dict[PeerID, _Detached] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._all_closed = asyncio.Event()  # set whenever the last socket goes

    # Browser sockets.

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one WebSocket until it closes, after the admission limits."""
        ip = websocket.client.host if websocket.client else "unknown"
        refusal = self._admit(ip)
        if refusal is not None:
            code, message = refusal
            self.metrics.closes.labels(code.name).inc()
            await websocket.accept(
                subprotocol=codec.SUBPROTOCOL
                if codec.SUBPROTOCOL in websocket.scope.get("subprotocols", [])
                else None
            )
            await websocket.send_text(codec.encode("error", code=int(code), message=message))
            await websocket.close(int(code), message)
            return
        socket = BrowserSocket(self, websocket, ip)
        self.sockets.add(socket)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.metrics.sockets.inc()
        try:
            await socket.run()
        finally:
            self.sockets.discard(socket)
            self.metrics.sockets.dec()
            if not self.sockets:
                self._all_closed.set()
            left = self._per_ip.get(ip, 1) - 1
            if left:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)

    def _admit(self, ip: str) -> tuple[Code, str] | None:
        limits = self.settings.limits
        if self.draining:
            return Code.GOING_AWAY, "the gateway is restarting"
        if len(self.sockets) >= limits.max_sockets:
            return Code.TOO_MANY_CONNECTIONS, "the gateway is full"
        if self._per_ip.get(ip, 0) >= limits.max_sockets_per_ip:
            return Code.TOO_MANY_CONNECTIONS, "too many sockets from your address"
        now = time.monotonic()
        window = self._rates.get(ip)
        if window is None:
            if len(self._rates) >= _MAX_TRACKED_IPS:
                self._rates = {k: w for k, w in self._rates.items() if not w.idle(now)}
            window = self._rates[ip] = SlidingWindow(limits.connection_rate_per_ip, 60.0)
        if not window.allow(now):
            return Code.RATE_LIMITED, "too many connections from your address"
        return None

    def origin_allowed(self, origin: str) -> bool:
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    def check_token(self, token: str | None, peer_id: PeerID) -> TokenClaims | None:
        if token is None:
            if self.settings.tokens.required:
                raise ProtocolViolation(Code.TOKEN_INVALID, "this gateway requires a token")
            return None
        if self.tokens is None:
            raise ProtocolViolation(Code.TOKEN_INVALID, "this gateway does not accept tokens")
        return self.tokens.verify(token, peer_id, time.time())

    # Sessions.

    def add_session(
        self, socket: BrowserSocket, number: int, backend: str, conn: Connection
    ) -> BackendSession:
        limits = self.settings.limits
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

    def _backend_stream_session(self, stream: Stream) -> BackendSession | None:
        return self._sessions.get(stream.connection)

    async def _backend_stream(self, stream: Stream) -> None:
        session = self._backend_stream_session(stream)
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

    # Resume.

    def socket_ended(self, socket: BrowserSocket, *, resumable: bool) -> None:
        sessions = socket.sessions
        socket.sessions = {}
        grace = self.settings.limits.resume_grace
        if not sessions:
            return
        if not resumable or self.draining or socket.peer_id is None:
            for session in sessions.values():
                self.end_session(session, Code.NORMAL, socket)
            return
        for session in sessions.values():
            session.detach()
        self.forget_detached(socket.peer_id)
        timer = asyncio.get_running_loop().call_later(grace, self.forget_detached, socket.peer_id)
        self._detached[socket.peer_id] = _Detached(socket.resume_token, sessions, timer)
        self.metrics.detached_sessions.inc(len(sessions))

    def forget_detached(self, peer_id: PeerID) -> None:
        """The sessions that waited for a resume are over: a new socket came without one, or
        the grace period ended."""
        detached = self._take_detached(peer_id)
        if detached is not None:
            for session in detached.sessions.values():
                self.end_session(session, Code.SESSION_EXPIRED, None)

    def _take_detached(self, peer_id: PeerID) -> _Detached | None:
        """The sessions waiting for ``peer_id`` to resume, no longer waiting (timer stopped)."""
        detached = self._detached.pop(peer_id, None)
        if detached is not None:
            detached.timer.cancel()
            self.metrics.detached_sessions.dec(len(detached.sessions))
        return detached

    def resume(self, socket: BrowserSocket, auth: codec.Auth) -> dict[str, dict[str, Any]]:
        """Attach the waiting sessions ``auth`` asks for to ``socket``; report each outcome."""
        assert socket.peer_id is not None
        assert auth.resume_token is not None
        detached = self._detached.get(socket.peer_id)
        outcomes: dict[str, dict[str, Any]] = {}
        if detached is not None and not hmac.compare_digest(detached.token, auth.resume_token):
            self.metrics.resumes.labels("bad_token").inc()
            raise ProtocolViolation(Code.RESUME_FAILED, "wrong resume token")
        if detached is not None:
            self._take_detached(socket.peer_id)
        waiting = detached.sessions if detached is not None else {}
        for number, received in auth.resume_sessions.items():
            session = waiting.pop(number, None)
            if session is not None and session.reattach(socket, received):
                socket.sessions[number] = session
                outcomes[str(number)] = {"recovered": True, "received": session.frames_in}
                self.metrics.resumes.labels("recovered").inc()
            else:
                if session is not None:
                    self.end_session(session, Code.SESSION_EXPIRED, socket)
                outcomes[str(number)] = {"recovered": False}
                self.metrics.resumes.labels("lost").inc()
        for session in waiting.values():  # waiting sessions the browser did not ask for
            self.end_session(session, Code.SESSION_EXPIRED, socket)
        return outcomes

    # Lifecycle.

    async def _watchdog(self) -> None:
        """One timer for all sockets (idle, slow consumers) instead of one per message."""
        while True:
            await asyncio.sleep(self._watch_interval)
            now = time.monotonic()
            for socket in list(self.sockets):
                socket.watchdog(now)

    async def start(self) -> None:
        limits = self.settings.limits
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
        limits = self.settings.limits
        _log.info("draining %d socket(s)", len(self.sockets))
        for socket in list(self.sockets):
            socket.drain(random.randint(limits.drain_reconnect_ms // 4, limits.drain_reconnect_ms))
        if self.sockets:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), limits.drain_timeout)
        await self.close()

    async def close(self) -> None:
        for peer in list(self._detached):
            self.forget_detached(peer)
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
