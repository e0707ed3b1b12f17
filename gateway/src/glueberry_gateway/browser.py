"""One browser WebSocket: authenticate, open sessions, relay frames (docs/gateway-protocol.md).

Two tasks per socket and none per session: the reader handles one incoming message at a time (so
a data frame is handed to its backend stream before the next is read — back-pressure), and the
writer drains the one bounded outbound queue. Opening a session runs in its own short task,
because the browser's answer to the ``sign`` request arrives through the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Tracer
from starlette.websockets import WebSocket, WebSocketDisconnect

from glueberry.exceptions import GlueberryError, PeerIDMismatch
from glueberry.limits import TokenBucket
from glueberry.p2p.keys import PeerID, verify_signature

from . import codec
from .auth import Challenge, TokenClaims, is_noise_payload, verify_auth
from .codec import ProtocolViolation
from .codes import Code, is_socket_level
from .relay import Ack, BackendSession, TooManyStreams
from .settings import Backend

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["BrowserSocket"]

_log = logging.getLogger("glueberry_gateway")
_BATCH = bytes((codec.BATCH_KIND,))
# The largest batch the gateway sends (§5.6): bigger bursts go as several.
BATCH_BYTES = 64 * 1024
_audit = logging.getLogger("glueberry_gateway.audit")


class _SessionError(Exception):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


class RemoteSigner:
    """A :class:`~glueberry.p2p.signer.Signer` that asks the browser to sign (§5.1)."""

    def __init__(self, socket: BrowserSocket, session: int, tracer: Tracer) -> None:
        self._socket = socket
        self._session = session
        self._tracer = tracer

    @property
    def public_key(self) -> bytes:
        assert self._socket.public_key is not None
        return self._socket.public_key

    @property
    def peer_id(self) -> PeerID:
        assert self._socket.peer_id is not None
        return self._socket.peer_id

    async def sign(self, message: bytes) -> bytes:
        if not is_noise_payload(message):  # never ask the browser to sign anything else
            raise _SessionError(Code.SIGNATURE_INVALID, "refusing to request a non-Noise signature")
        with self._tracer.start_as_current_span("gateway.sign_request"):  # the browser signs
            signature = await self._socket.request_signature(self._session, message)
        if not verify_signature(self.public_key, signature, message):
            raise _SessionError(Code.SIGNATURE_INVALID, "the browser's Noise signature does not verify")
        return signature


class BrowserSocket:
    def __init__(self, gateway: Gateway, websocket: WebSocket, client_ip: str) -> None:
        self.gateway = gateway
        self.ws = websocket
        self._loop = asyncio.get_running_loop()  # asking for it costs a getpid() each time (3.11)
        self.client_ip = client_ip
        self.limits = limits = gateway.settings.limits
        self._traffic = gateway.metrics.traffic
        self.origin = websocket.headers.get("origin", "")
        self.public_key: bytes | None = None
        self.peer_id: PeerID | None = None
        self.claims: TokenClaims | None = None
        self.sessions: dict[int, BackendSession] = {}
        self.opening: set[int] = set()
        self.resume_token = os.urandom(24)
        self._queue: deque[tuple[bytes | str, Ack | None]] = deque()
        self._queued = 0
        self._work: asyncio.Future[None] | None = None  # the idle writer waits on it (made lazily)
        self._full_since: float | None = None
        self._signs: dict[int, asyncio.Future[bytes]] = {}
        self._next_sign = 1
        self._closing: tuple[Code, str] | None = None
        self._reader: asyncio.Task[object] | None = None
        self._abandoned = False  # a slow consumer: the reader was stopped, the writer is not awaited
        self._last_activity = time.monotonic()
        self._sending_since: float | None = None
        self._writer_idle = False  # the writer waits for work: _enqueue may send directly
        self._inflight: tuple[asyncio.Future[None], int, Ack | None] | None = None
        now = time.monotonic()
        self._messages = TokenBucket(limits.messages_per_second, limits.messages_per_second, now)
        self._bytes = TokenBucket(limits.bytes_per_second, limits.bytes_per_second, now)
        self._token_timers: tuple[asyncio.TimerHandle, ...] = ()  # the notice and the expiry
        self._ws_closed = False
        self._lost = False  # the socket dropped without a close: sessions may be resumed
        self.batch = False  # the browser takes batch messages (said so in auth)
        self._held: list[bytes] = []  # data frames for the batch sent at the end of this loop turn
        self._held_acks: list[Ack] = []
        self._held_flush: asyncio.Handle | None = None

    # The socket's life.

    async def run(self) -> None:
        ws = self.ws
        if codec.SUBPROTOCOL not in ws.scope.get("subprotocols", []):
            await ws.accept()
            await ws.close(Code.UNSUPPORTED_VERSION, f"the {codec.SUBPROTOCOL} subprotocol is required")
            self.gateway.metrics.closes.labels(Code.UNSUPPORTED_VERSION.name).inc()
            return
        await ws.accept(subprotocol=codec.SUBPROTOCOL)
        self._reader = asyncio.current_task()
        writer = asyncio.ensure_future(self._writer())
        try:
            await self._authenticate()
            await self._serve()
        except ProtocolViolation as exc:
            self._fail(exc.code, exc.message)
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
            self._fail(Code.INTERNAL_ERROR, "internal error")
        finally:
            await self._finish(writer)

    def _fail(self, code: Code, message: str) -> None:
        """Tell the browser why (an error message) and close with ``code`` once it is written."""
        if self._closing is None:
            self._closing = (code, message)
            self._enqueue(codec.encode("error", code=int(code), message=message), None)
            self._wake()

    async def _finish(self, writer: asyncio.Task[None]) -> None:
        if self._closing is None:
            self._closing = (Code.NORMAL, "")
        self._send_held()
        self._wake()
        if self._abandoned:  # a slow consumer: its writer may wait forever
            writer.cancel()
        else:
            try:
                await asyncio.wait_for(writer, self.limits.slow_consumer_timeout)
            except TimeoutError:
                writer.cancel()
        code, message = self._closing
        self.gateway.metrics.closes.labels(code.name).inc()
        self._drop_queue()
        for fut in self._signs.values():
            if not fut.done():
                fut.cancel()
        for timer in self._token_timers:
            timer.cancel()
        self.gateway.socket_ended(self, resumable=self._lost)
        await self._close_ws(code, message)

    async def _close_ws(self, code: Code, message: str) -> None:
        if self._ws_closed:
            return
        self._ws_closed = True
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.ws.close(int(code), message[:120])

    async def _receive(self, timeout: float | None = None) -> str | bytes:
        if timeout is None:  # the gateway's watchdog enforces idle_timeout, not a timer per message
            message = await self.ws.receive()
        else:
            async with asyncio.timeout(timeout):
                message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            if self._closing is None:
                code = message.get("code", 1006)
                if code == 1009:  # the server refused a frame over ws_max_size: §7's 4009
                    self._closing = (Code.MESSAGE_TOO_BIG, "frame over the size limit")
                else:
                    # the browser went away without closing: its sessions wait for a resume
                    self._lost = code not in (1000, 1001)
                    self._closing = (Code.NORMAL, "")
            raise WebSocketDisconnect(message.get("code", 1000))
        self._last_activity = time.monotonic()
        text = message.get("text")
        if text is not None:
            assert isinstance(text, str)
            return text
        data = message.get("bytes")
        assert isinstance(data, bytes)
        return data

    async def _authenticate(self) -> None:
        gw = self.gateway
        gateway_peer_id = str(gw.host.peer_id)
        loop_now = time.monotonic()
        challenge = Challenge.new(loop_now, self.limits.challenge_ttl)
        self._enqueue(
            codec.encode(
                "challenge",
                version=codec.PROTOCOL_VERSION,
                nonce=challenge.nonce,
                gateway=gateway_peer_id,
                expires_in=self.limits.challenge_ttl,
            ),
            None,
        )
        try:
            raw = await self._receive(self.limits.auth_timeout)
        except TimeoutError:
            gw.metrics.auth_failures.labels(Code.AUTH_TIMEOUT.name).inc()
            raise ProtocolViolation(Code.AUTH_TIMEOUT, "no auth message in time") from None
        if isinstance(raw, bytes):
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "binary frame before auth")
        try:
            message = codec.decode_client_message(raw, max_bytes=self.limits.max_control_bytes)
            if not isinstance(message, codec.Auth):
                raise ProtocolViolation(Code.PROTOCOL_ERROR, "the first message must be auth")
            with gw.tracer.start_as_current_span("gateway.auth"):
                challenge.take(time.monotonic())
                if not gw.origin_allowed(self.origin):
                    raise ProtocolViolation(Code.ORIGIN_NOT_ALLOWED, "this page's origin is not allowed")
                self.peer_id = verify_auth(
                    public_key=message.public_key,
                    signature=message.signature,
                    gateway_peer_id=gateway_peer_id,
                    origin=self.origin,
                    nonce=challenge.nonce,
                )
                self.public_key = message.public_key
                self.batch = message.batch
                self.claims = gw.check_token(message.token, self.peer_id)
        except ProtocolViolation as exc:
            gw.metrics.auth_failures.labels(exc.code.name).inc()
            _audit.info(
                "auth failed",
                extra={"event": "auth", "ok": False, "ip": self.client_ip, "code": exc.code.name},
            )
            raise
        gw.metrics.auth_successes.inc()
        _audit.info(
            "auth", extra={"event": "auth", "ok": True, "ip": self.client_ip, "peer": str(self.peer_id)}
        )
        if message.resume_token is not None:
            resumed = gw.resume(self, message)
        else:
            resumed = None
            gw.forget_detached(self.peer_id)
        if self.claims is not None:
            self._schedule_token_expiry(self.claims.expires_at)
        backends = [
            {"name": b.name, "peer_id": str(b.peer_id)}
            for b in gw.settings.backends
            if self._may_open(b.name, b.peer_id)
        ]
        self._enqueue(
            codec.encode(
                "ready",
                peer_id=str(self.peer_id),
                resume_token=self.resume_token,
                resume_grace=self.limits.resume_grace,
                backends=backends,
                limits={
                    "max_sessions": self.limits.max_sessions,
                    "max_streams": self.limits.max_streams,
                    "max_frame_bytes": self.limits.max_frame_bytes,
                    "max_control_bytes": self.limits.max_control_bytes,
                },
                resumed=resumed,
                batch=True,  # batches from the browser are welcome (§5.6)
            ),
            None,
        )
        for number, session in self.sessions.items():  # on a new socket: only those just resumed
            session.replay(message.resume_sessions[number])

    async def _serve(self) -> None:
        limits = self.limits
        while self._closing is None:
            raw = await self._receive()
            now = self._last_activity
            batch = (
                codec.decode_batch(raw, max_bytes=limits.max_frame_bytes)
                if isinstance(raw, bytes) and raw[:1] == _BATCH
                else None
            )
            count = 1 if batch is None else len(batch)  # each frame of a batch counts (§7)
            if self._messages.take(now, count) or self._bytes.take(now, len(raw)):
                raise ProtocolViolation(Code.RATE_LIMITED, "too many messages or bytes per second")
            if batch is None:
                await self._handle(raw)
            else:
                for frame in batch:
                    await self._handle(frame)

    async def _handle(self, raw: str | bytes | memoryview) -> None:
        try:
            if isinstance(raw, str):
                self._on_control(codec.decode_client_message(raw, max_bytes=self.limits.max_control_bytes))
            else:
                await self._on_data(raw)
        except ProtocolViolation as exc:
            if is_socket_level(exc.code):
                raise
            self._error(exc.code, exc.message, **exc.fields)  # 4100+: this request only (§8)

    # Browser -> gateway.

    async def _on_data(self, raw: bytes | memoryview) -> None:
        frame = codec.decode_data_frame(raw, max_bytes=self.limits.max_frame_bytes)
        session = self.sessions.get(frame.session)
        if session is None:
            self.gateway.metrics.drops.labels("unknown_session").inc()
            self._error(Code.SESSION_NOT_FOUND, "no such session", session=frame.session)
            return
        try:
            await session.send(frame.stream, frame.payload)
        except TooManyStreams as exc:
            self.gateway.metrics.drops.labels("too_many_streams").inc()
            self._error(Code.TOO_MANY_STREAMS, str(exc), session=frame.session)
            return
        except GlueberryError as exc:
            self.gateway.metrics.drops.labels("backend_stream").inc()
            _log.info("session %d: send on %s failed: %s", frame.session, frame.stream, exc)
            self._error(Code.BACKEND_CLOSED, f"cannot send on {frame.stream}: {exc}", session=frame.session)
            return
        traffic = self._traffic
        traffic.frames_to_backend += 1
        traffic.bytes_to_backend += len(frame.payload)

    def _on_control(self, message: codec.ClientMessage) -> None:
        if isinstance(message, codec.Open):
            self._start_open(message)
        elif isinstance(message, codec.Signature | codec.SignRefused):
            fut = self._signs.pop(message.id, None)
            if fut is None or fut.done():
                if 0 < message.id < self._next_sign:
                    return  # an answer to a request of ours that timed out: that open failed already
                raise ProtocolViolation(Code.PROTOCOL_ERROR, f"no sign request with id {message.id}")
            if isinstance(message, codec.Signature):
                fut.set_result(message.signature)
            else:
                fut.set_exception(_SessionError(Code.SIGNATURE_INVALID, "the browser refused to sign"))
        elif isinstance(message, codec.Close):
            session = self.sessions.pop(message.session, None)
            if session is None:
                self._error(Code.SESSION_NOT_FOUND, "no such session", id=message.id, session=message.session)
                return
            self.gateway.end_session(session, Code.NORMAL, self)
            self._enqueue(codec.encode("closed", id=message.id, session=message.session, code=1000), None)
        elif isinstance(message, codec.Refresh):
            assert self.peer_id is not None
            claims = self.gateway.check_token(message.token, self.peer_id)
            if claims is None:
                raise ProtocolViolation(Code.TOKEN_INVALID, "refresh needs a token")
            self.claims = claims
            self._schedule_token_expiry(claims.expires_at)
            self._enqueue(codec.encode("refreshed", id=message.id, expires_at=int(claims.expires_at)), None)
        elif isinstance(message, codec.Ping):
            self._enqueue(codec.encode("pong", id=message.id), None)
        else:  # Auth again
            raise ProtocolViolation(Code.PROTOCOL_ERROR, "already authenticated")

    # Sessions.

    def _may_open(self, name: str, peer_id: PeerID) -> bool:
        allowed = self.claims.backends if self.claims is not None else None
        return allowed is None or name in allowed or str(peer_id) in allowed

    def _start_open(self, message: codec.Open) -> None:
        number = message.session
        if number in self.sessions or number in self.opening:
            self._error(Code.SESSION_EXISTS, "session number in use", id=message.id, session=number)
            return
        if len(self.sessions) + len(self.opening) >= self.limits.max_sessions:
            self._error(Code.TOO_MANY_SESSIONS, "max_sessions reached", id=message.id, session=number)
            return
        backend = self.gateway.settings.backend(message.backend)
        if backend is None:
            self._error(Code.BACKEND_UNKNOWN, "no such backend", id=message.id, session=number)
            return
        if not self._may_open(backend.name, backend.peer_id):
            self._error(
                Code.BACKEND_NOT_ALLOWED,
                "your token does not allow this backend",
                id=message.id,
                session=number,
            )
            return
        self.opening.add(number)
        self.gateway.spawn(self._open(message, backend))

    async def _open(self, message: codec.Open, backend: Backend) -> None:
        gw = self.gateway
        assert self.peer_id is not None
        start = time.monotonic()
        outcome = "error"
        try:
            with gw.tracer.start_as_current_span("gateway.session_open") as span:
                span.set_attribute("glueberry.backend", backend.name)
                try:
                    # TCP, then Noise with the browser's signature, yamux, identify
                    with gw.tracer.start_as_current_span("gateway.dial") as dial_span:
                        dial_span.set_attribute("glueberry.backend", backend.name)
                        async with asyncio.timeout(self.limits.handshake_timeout + self.limits.sign_timeout):
                            conn = await gw.host.dial(
                                backend.peer_id,
                                list(backend.addrs),
                                signer=RemoteSigner(self, message.session, gw.tracer),  # a fresh static key
                            )
                except (GlueberryError, OSError, TimeoutError) as exc:  # a _SessionError passes as it is
                    if isinstance(exc, PeerIDMismatch):
                        raise _SessionError(
                            Code.BACKEND_UNAVAILABLE, "the backend is not who it should be"
                        ) from None
                    raise _SessionError(Code.BACKEND_UNAVAILABLE, f"cannot reach {backend.name}") from None
            if self._closing is not None or message.session not in self.opening:
                conn.close()
                return
            session = gw.add_session(self, message.session, backend.name, conn)
            self.sessions[message.session] = session
            outcome = "ok"
            self._enqueue(
                codec.encode(
                    "opened",
                    id=message.id,
                    session=message.session,
                    backend=backend.name,
                    peer_id=str(backend.peer_id),
                ),
                None,
            )
            _audit.info(
                "session opened",
                extra={
                    "event": "session_open",
                    "peer": str(self.peer_id),
                    "backend": backend.name,
                    "session": message.session,
                },
            )
        except _SessionError as exc:
            self._error(exc.code, str(exc), id=message.id, session=message.session)
            _audit.info(
                "session refused",
                extra={
                    "event": "session_open",
                    "peer": str(self.peer_id),
                    "backend": backend.name,
                    "code": exc.code.name,
                },
            )
        finally:
            self.opening.discard(message.session)
            gw.metrics.dial_latency.labels(outcome).observe(time.monotonic() - start)

    async def request_signature(self, session: int, payload: bytes) -> bytes:
        sign_id = self._next_sign
        self._next_sign += 1
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._signs[sign_id] = fut
        self._enqueue(codec.encode("sign", id=sign_id, session=session, payload=payload), None)
        try:
            return await asyncio.wait_for(fut, self.limits.sign_timeout)
        except TimeoutError:
            raise _SessionError(Code.SIGN_TIMEOUT, "no signature in time") from None
        finally:
            self._signs.pop(sign_id, None)

    # BrowserLink (called by sessions).

    def send_frames(self, frames: list[bytes], ack: Ack | None) -> None:
        traffic = self._traffic
        traffic.frames_to_browser += len(frames)
        traffic.bytes_to_browser += sum(map(len, frames))
        if not self.batch:
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                self._enqueue(frame, ack if i == last else None)
            return
        # Hold the frames until the end of this event-loop turn: whatever the backends deliver to
        # this browser meanwhile leaves as one batch message, one WebSocket write (§5.6).
        self._held += frames
        if ack is not None:
            self._held_acks.append(ack)
        if self._held_flush is None:
            self._held_flush = self._loop.call_soon(self._send_held)

    def _send_held(self) -> None:
        if self._held_flush is not None:
            self._held_flush.cancel()
            self._held_flush = None
        frames, acks = self._held, self._held_acks
        if not frames:
            return
        self._held, self._held_acks = [], []
        ack = None if not acks else acks[0] if len(acks) == 1 else functools.partial(_call_all, acks)
        messages = codec.pack_batches(frames, BATCH_BYTES)
        last = len(messages) - 1
        for i, message in enumerate(messages):  # the acks go with the last
            self._enqueue(message, ack if i == last else None)

    def stream_closed(self, session: BackendSession, name: str) -> None:
        self._enqueue(codec.encode("stream_closed", session=session.number, stream=name), None)

    def session_closed(self, session: BackendSession, code: Code, message: str) -> None:
        if self.sessions.get(session.number) is session:
            del self.sessions[session.number]
            self.gateway.end_session(session, code, self)
            self._enqueue(
                codec.encode("closed", session=session.number, code=int(code), message=message), None
            )

    # Outbound queue.

    def _error(self, code: Code, message: str, **fields: int) -> None:
        if is_socket_level(code):
            raise ProtocolViolation(code, message)
        self._enqueue(codec.encode("error", code=int(code), message=message, **fields), None)

    def _enqueue(self, item: bytes | str, ack: Ack | None) -> None:
        if self._held and isinstance(item, str):  # a notice goes after the data sent before it
            self._send_held()
        if self._writer_idle and not self._queue and self._closing is None:
            # The writer is idle: send right here, without a task switch, when the socket can
            # take it at once (the usual case); otherwise the writer finishes this send first.
            self._writer_idle = False
            self._sending_since = time.monotonic()
            send = self.ws.send_bytes(item) if isinstance(item, bytes) else self.ws.send_text(item)
            try:
                pending = run_until_suspended(send)
            except (RuntimeError, OSError, WebSocketDisconnect):
                pending = None
                if self._closing is None:
                    self._closing = (Code.NORMAL, "")
            if pending is None:
                self._sending_since = None
                self._last_activity = time.monotonic()
                self._writer_idle = True
                if ack is not None:
                    ack()
                if self._closing is not None:
                    self._wake()
                return
            self._inflight = (pending, len(item), ack)
            self._queued += len(item)
            self._wake()
            return
        self._queue.append((item, ack))
        self._queued += len(item)
        limit = self.limits.outbound_queue_bytes
        if self._queued > limit:
            if self._full_since is None:
                self._full_since = time.monotonic()
            if (
                self._queued > 2 * limit
                or time.monotonic() - self._full_since > self.limits.slow_consumer_timeout
            ):
                self._slow_consumer()
        self._wake()

    def _wake(self) -> None:
        work = self._work
        if work is not None and not work.done():
            work.set_result(None)

    def _slow_consumer(self) -> None:
        if self._closing is None or self._closing[0] is not Code.SLOW_CONSUMER:
            self._closing = (Code.SLOW_CONSUMER, "the browser does not read its data")
            self.gateway.metrics.drops.labels("slow_consumer").inc(len(self._queue))
            self._drop_queue()
            self._wake()
            self.gateway.spawn(self._close_ws(Code.SLOW_CONSUMER, "the browser does not read its data"))
            self.gateway.spawn(self._give_up())

    async def _give_up(self) -> None:
        """The close frame waits behind the data the browser does not read, and until it is out
        nothing wakes the reader. Give the browser one more ``slow_consumer_timeout``, then stop
        the reader: that ends the sessions and the socket (§7); the server drops the connection."""
        await asyncio.sleep(self.limits.slow_consumer_timeout)
        reader = self._reader
        if reader is not None and not reader.done():
            self._abandoned = True
            reader.cancel()

    def _drop_queue(self) -> None:
        if self._held_flush is not None:
            self._held_flush.cancel()
            self._held_flush = None
        for held_ack in self._held_acks:
            held_ack()
        self._held, self._held_acks = [], []
        while self._queue:
            _, ack = self._queue.popleft()
            if ack is not None:
                ack()
        self._queued = 0

    async def _writer(self) -> None:
        """Send the queue in order; on closing, flush what is left (not for a slow consumer)
        and close the WebSocket, which also ends the reader's wait. A send that blocks too long
        is caught by :meth:`watchdog`."""
        ws = self.ws
        queue = self._queue
        try:
            while True:
                if self._inflight is not None:  # an eager send that could not finish at once
                    pending, size, inflight_ack = self._inflight
                    try:
                        await pending
                    finally:
                        self._inflight = None
                        self._sending_since = None
                        self._queued -= size
                        if inflight_ack is not None:
                            inflight_ack()
                    continue
                if not queue:
                    if self._closing is not None:
                        break
                    self._writer_idle = True
                    self._work = self._loop.create_future()
                    await self._work
                    self._work = None
                    self._writer_idle = False
                    continue
                item, ack = queue.popleft()
                self._sending_since = time.monotonic()
                try:
                    if isinstance(item, bytes):
                        await ws.send_bytes(item)
                    else:
                        await ws.send_text(item)
                finally:
                    self._sending_since = None
                    self._queued -= len(item)
                    if ack is not None:
                        ack()
                self._last_activity = time.monotonic()
                if self._full_since is not None and self._queued <= self.limits.outbound_queue_bytes:
                    self._full_since = None
        except (RuntimeError, OSError, WebSocketDisconnect):
            if self._closing is None:
                self._closing = (Code.NORMAL, "")
            return
        code, message = self._closing
        await self._close_ws(code, message)

    def watchdog(self, now: float) -> None:
        """Called about once a second by the gateway: idle sockets and slow consumers."""
        if self._closing is not None:
            return
        limits = self.limits
        if self.peer_id is not None and now - self._last_activity > limits.idle_timeout:
            self._fail(Code.IDLE_TIMEOUT, "idle for too long")
        elif (
            self._sending_since is not None and now - self._sending_since > limits.slow_consumer_timeout
        ) or (self._full_since is not None and now - self._full_since > limits.slow_consumer_timeout):
            self._slow_consumer()

    # Tokens.

    def _schedule_token_expiry(self, expires_at: float) -> None:
        for timer in self._token_timers:
            timer.cancel()
        expire = max(0.0, expires_at - time.time())
        notice = max(0.0, expire - self.limits.token_refresh_notice)
        self._token_timers = (
            self._loop.call_later(notice, self._token_notice, expires_at),
            self._loop.call_later(expire, self._token_expired, expires_at),
        )

    def _token_notice(self, expires_at: float) -> None:
        if self.claims is not None and self.claims.expires_at == expires_at and self._closing is None:
            self._enqueue(codec.encode("token_expiring", expires_at=int(expires_at)), None)

    def _token_expired(self, expires_at: float) -> None:
        if self.claims is not None and self.claims.expires_at == expires_at:
            self._fail(Code.TOKEN_EXPIRED, "the token expired; refresh it before it does")

    # Drain.

    def drain(self, reconnect_after_ms: int) -> None:
        """Tell the browser to come back later, then close with 1001 (going away)."""
        if self._closing is None:
            self._enqueue(codec.encode("drain", reconnect_after_ms=reconnect_after_ms), None)
            self._closing = (Code.GOING_AWAY, "the gateway is restarting")
        self._wake()


def _call_all(acks: list[Ack]) -> None:
    for ack in acks:
        ack()


def run_until_suspended(coro: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
    """Run ``coro`` in place until it finishes (None) or first waits; then go on in a task and
    return it. Saves a task switch per message when, as usual, the send does not wait."""
    try:
        waited = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, waited))


async def _resume(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    # What a Task does for a coroutine suspended on a future: wait for it, then step on.
    while True:
        if isinstance(waited, asyncio.Future):
            waited._asyncio_future_blocking = False
            try:
                await asyncio.wait([waited])
            except asyncio.CancelledError as exc:
                try:
                    waited = coro.throw(exc)
                except StopIteration:
                    return
                continue
        try:
            waited = coro.send(None)
        except StopIteration:
            return
