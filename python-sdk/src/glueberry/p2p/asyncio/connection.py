"""The asyncio driver of one libp2p connection: feeds socket bytes to :class:`ConnectionCore`,
writes what it produces, keeps the timers, and maps the core's stream events onto :class:`Stream`
objects. Protocol state, including each stream's multistream negotiation, lives in the core.

Writes are coalesced: stream writes only queue frames in the core and schedule one flush per
event-loop tick, so many small messages share one Noise record and one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from typing import cast

from ...exceptions import (
    ConnectionClosed,
    GlueberryError,
    InvalidState,
    NegotiationFailed,
    StreamReset,
)
from .. import yamux
from ..connection import (
    ConnectionCore,
    ConnectionEvent,
    SecurityEstablished,
    StreamNegotiated,
    StreamNegotiationFailed,
    UpgradeCompleted,
)
from ..keys import PeerID
from ..multiaddr import Multiaddr
from .stream import BaseStream

__all__ = ["Connection", "ConnectionCallbacks", "Stream"]

_log = logging.getLogger("glueberry.p2p")


class ConnectionCallbacks:
    """What a connection asks of its owner (the host). Override what you need.

    Which protocols the remote's streams may use is asked by the core, during their negotiation:
    give it to :class:`ConnectionCore` as ``supports``.
    """

    def secured(self, conn: Connection) -> None:
        """The remote proved its peer ID; raise a GlueberryError to refuse the connection."""

    def stream_opened(self, stream: Stream) -> None:
        """An inbound stream agreed on a protocol; the owner must take it (handler or reset)."""
        stream.reset()

    def closed(self, conn: Connection) -> None:
        """The connection is gone (``conn.close_reason`` says why)."""


class Connection(asyncio.Protocol):
    """One TCP connection, upgraded to Noise + yamux. Create it with a loop's ``create_connection``
    or ``create_server`` factory; await :meth:`wait_ready` before using it. Its core must have
    been given ``supports``: every stream is negotiated.
    """

    def __init__(
        self,
        core: ConnectionCore,
        callbacks: ConnectionCallbacks,
        *,
        local_peer_id: PeerID,
        local_public_key: bytes,
        negotiation_timeout: float = 10.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.core = core
        self.callbacks = callbacks
        self.local_peer_id = local_peer_id
        self.local_public_key = local_public_key
        self.negotiation_timeout = negotiation_timeout
        self.outbound = core.initiator
        self.streams: dict[int, Stream] = {}  # those that agreed on a protocol and are not over
        self._peername: object = None
        self._sockname: object = None
        self.close_reason: BaseException | None = None
        self.error: GlueberryError | None = None  # what the remote did wrong, if it did
        self.identify_done: asyncio.Future[None] = self.loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._ready: asyncio.Future[None] = self.loop.create_future()
        self._closed: asyncio.Future[None] = self.loop.create_future()
        self._flush_handle: asyncio.Handle | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None  # made only while writing is paused
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._opening: dict[int, asyncio.Future[Stream]] = {}  # our streams still negotiating
        self._negotiation_timers: dict[int, asyncio.TimerHandle] = {}  # the remote's, negotiating
        self._remote_peer_id: PeerID | None = None

    def __repr__(self) -> str:
        way = "out" if self.outbound else "in"
        return f"<Connection {way} {self._remote_peer_id} {self.remote_addr}>"

    # Public API.

    @property
    def remote_addr(self) -> Multiaddr | None:
        """The remote's TCP address (made on demand: most connections never need it)."""
        return _tcp_multiaddr(self._peername)

    @property
    def local_addr(self) -> Multiaddr | None:
        return _tcp_multiaddr(self._sockname)

    @property
    def remote_peer_id(self) -> PeerID:
        if self._remote_peer_id is None:
            raise InvalidState("the remote peer is not known before the security handshake")
        return self._remote_peer_id

    @property
    def is_open(self) -> bool:
        return self._ready.done() and not self._closed.done() and self._ready.exception() is None

    @property
    def writing_paused(self) -> bool:
        return self._paused

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the upgrade (Noise + yamux) to finish; raise its error on failure."""
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.abort(ConnectionClosed(f"connection upgrade took longer than {timeout:.1f} s"))
            raise self.close_reason or ConnectionClosed("upgrade timed out") from None

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def wait_writable(self) -> None:
        if self._paused:
            if self._drained is None:
                self._drained = self.loop.create_future()
            await asyncio.shield(self._drained)
        if self._closed.done():
            raise StreamReset("connection closed")

    async def open_stream(self, protocols: Sequence[str]) -> Stream:
        """Open a stream and agree on the first of ``protocols`` the remote supports.

        Raises:
            NegotiationFailed: the remote supports none of them.
            StreamReset: the remote reset the stream or the connection was lost.
        """
        self._check_open()
        sid = self.core.open_stream(protocols)
        opened: asyncio.Future[Stream] = self.loop.create_future()
        self._opening[sid] = opened
        self._schedule_flush()
        try:
            return await asyncio.wait_for(opened, self.negotiation_timeout)
        except TimeoutError:
            self._abandon(sid)
            raise NegotiationFailed(
                f"no answer to {protocols[0]!r} in {self.negotiation_timeout} s"
            ) from None
        except BaseException:
            self._abandon(sid)
            raise
        finally:
            self._opening.pop(sid, None)

    async def ping(self, timeout: float = 10.0) -> float:
        """yamux-level round trip time in seconds."""
        self._check_open()
        opaque = self.core.ping()
        fut: asyncio.Future[float] = self.loop.create_future()
        self._pings[opaque] = fut
        start = self.loop.time()
        self._schedule_flush()
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(opaque, None)
        return self.loop.time() - start

    def close(self) -> None:
        """Say GoAway and close the socket once written (streams of ours are reset)."""
        if self._transport is None or self._closed.done():
            return
        if self.core.upgraded:
            with contextlib.suppress(InvalidState):
                self.core.go_away(yamux.GO_AWAY_NORMAL)
        self._flush()
        self._transport.close()

    def abort(self, reason: BaseException) -> None:
        """Drop the connection at once (after writing what the core still had to say)."""
        if self.close_reason is None:
            self.close_reason = reason
        if self._transport is not None and not self._closed.done():
            self._flush()
            self._transport.close()

    # Used by Stream.

    def send_stream_data(self, stream_id: int, data: bytes | memoryview) -> int:
        taken = self.core.send_data(stream_id, data)
        if taken:
            self._schedule_flush()
        return taken

    def send_window(self, stream_id: int) -> int:
        return self.core.send_window(stream_id)

    def consume(self, stream_id: int, n: int) -> None:
        if n and not self._closed.done():
            core = self.core
            core.consume(stream_id, n)
            if core.has_output:  # a window update is due only after half the window was read
                self._schedule_flush()

    def close_stream(self, stream_id: int) -> None:
        if self._closed.done():
            return
        self.core.close_stream(stream_id)
        self._schedule_flush()
        self._forget_if_done(stream_id)

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.streams.pop(stream_id, None)
        if self._closed.done():
            return
        try:
            self.core.reset_stream(stream_id, code)
        except InvalidState:
            return
        self._schedule_flush()

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._peername = transport.get_extra_info("peername")
            self._sockname = transport.get_extra_info("sockname")
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.core.receive_data(data)
            self._handle_events(self.core.events_received())
        except GlueberryError as exc:
            _log.info("connection %r failed: %s: %s", self, type(exc).__name__, exc)
            self.error = exc
            self.abort(exc)
            return
        self._flush()

    def eof_received(self) -> bool:
        try:
            self.core.receive_eof()
            self._handle_events(self.core.events_received())
        except GlueberryError as exc:
            self.error = exc
            self.close_reason = self.close_reason or exc
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (
            ConnectionClosed(f"connection lost: {exc}") if exc else ConnectionClosed("connection closed")
        )
        self.close_reason = reason
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for timer in self._negotiation_timers.values():
            timer.cancel()
        self._negotiation_timers.clear()
        for stream in list(self.streams.values()):
            stream._fail(StreamReset(f"connection closed: {reason}"))
        self.streams.clear()
        for sid in list(self._opening):
            self._fail_opening(sid, StreamReset(f"connection closed: {reason}"))
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionClosed("connection closed"))
        if not self._ready.done():
            self._ready.set_exception(reason)
            self._ready.exception()  # retrieved here; wait_ready() re-raises it
        if not self.identify_done.done():
            self.identify_done.set_result(None)
        self._closed.set_result(None)
        self.resume_writing()  # wake writers so they see the error
        self.callbacks.closed(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # Internals.

    def _check_open(self) -> None:
        if self._closed.done():
            raise ConnectionClosed(f"connection is closed: {self.close_reason}")
        if not self.core.upgraded:
            raise InvalidState("the connection is not ready")

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        out = self.core.data_to_send()
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _handle_events(self, events: list[ConnectionEvent]) -> None:
        count = len(events)
        i = 0
        while i < count:
            event = events[i]
            i += 1
            if isinstance(event, yamux.DataReceived):  # first: by far the most frequent
                data = event.data
                if i < count:  # the frames of one stream read together go to it as one chunk
                    run = [data]
                    while (
                        i < count
                        and type(nxt := events[i]) is yamux.DataReceived
                        and nxt.stream_id == event.stream_id
                    ):
                        run.append(nxt.data)
                        i += 1
                    if len(run) > 1:
                        data = b"".join(run)
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(data)
                else:  # a stream we reset or gave up on: let the remote's window go
                    self.core.consume(event.stream_id, len(data))
            elif isinstance(event, yamux.WindowUpdated):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._on_window()
            elif isinstance(event, StreamNegotiated):
                self._stream_negotiated(event)
            elif isinstance(event, yamux.StreamOpened):  # the core negotiates it; we keep the clock
                self._negotiation_timers[event.stream_id] = self.loop.call_later(
                    self.negotiation_timeout, self._negotiation_expired, event.stream_id
                )
            elif isinstance(event, yamux.StreamEnded):
                self._stream_ended(event.stream_id)
            elif isinstance(event, yamux.StreamReset):
                who = "remote" if event.remote else "local"
                self._stream_gone(event.stream_id, StreamReset(f"stream reset ({who}, code {event.code})"))
            elif isinstance(event, StreamNegotiationFailed):
                self._stream_gone(event.stream_id, event.error)  # the opener sees why, not a bare reset
            elif isinstance(event, yamux.PongReceived):
                fut = self._pings.get(event.opaque)
                if fut is not None and not fut.done():
                    fut.set_result(0.0)
            elif isinstance(event, SecurityEstablished):
                self._remote_peer_id = event.remote_peer_id
                self.callbacks.secured(self)  # may raise to refuse the peer
            elif isinstance(event, UpgradeCompleted):
                if not self._ready.done():
                    self._ready.set_result(None)
            elif isinstance(event, yamux.GoAwayReceived):
                _log.debug("%r: remote sent GoAway(%d)", self, event.code)
            # StreamAccepted and ConnectionEnded need nothing here: connection_lost follows EOF.

    def _stream_negotiated(self, event: StreamNegotiated) -> None:
        sid = event.stream_id
        if event.outbound:
            opened = self._opening.pop(sid, None)
            if opened is None or opened.done():  # its opener gave up (cancelled): nobody wants it
                self.reset_stream(sid, 0)
                return
            stream = self.streams[sid] = Stream(self, sid, outbound=True, protocol=event.protocol)
            opened.set_result(stream)
        else:
            self._stop_negotiation_timer(sid)
            stream = self.streams[sid] = Stream(self, sid, outbound=False, protocol=event.protocol)
            self.callbacks.stream_opened(stream)

    def _stream_ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream._on_eof()
            self._forget_if_done(stream_id)

    def _stream_gone(self, stream_id: int, error: BaseException) -> None:
        """The stream was reset (its negotiation may have failed): whoever holds or awaits it
        gets ``error``."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream._fail(error)
            return
        self._fail_opening(stream_id, error)
        self._stop_negotiation_timer(stream_id)

    def _fail_opening(self, stream_id: int, error: BaseException) -> None:
        opened = self._opening.pop(stream_id, None)
        if opened is not None and not opened.done():
            opened.set_exception(error)
            opened.exception()  # the opener may be giving up at this moment: mark it retrieved

    def _abandon(self, stream_id: int) -> None:
        """:meth:`open_stream` gives up on the stream (timeout, cancellation, failure)."""
        stream = self.streams.get(stream_id)
        if stream is not None:  # it agreed just as its opener gave up
            stream.reset()
        else:
            self.reset_stream(stream_id, 0)  # nothing happens if the stream is already over

    def _negotiation_expired(self, stream_id: int) -> None:
        self._negotiation_timers.pop(stream_id, None)
        if self._closed.done():
            return
        _log.debug("%r: inbound stream %d did not negotiate in time", self, stream_id)
        with contextlib.suppress(InvalidState):
            self.core.negotiation_expired(stream_id)
        self._schedule_flush()

    def _stop_negotiation_timer(self, stream_id: int) -> None:
        timer = self._negotiation_timers.pop(stream_id, None)
        if timer is not None:  # thousands of connections: do not keep a timer per stream
            timer.cancel()

    def _forget_if_done(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream._local_closed and stream._eof:
            del self.streams[stream_id]


class Stream(BaseStream["Connection"]):
    """A stream of a :class:`Connection`. Everything it does is in
    :class:`~glueberry.p2p.asyncio.stream.BaseStream`; this class binds the connection type, so
    that ``stream.connection`` is a :class:`Connection` while stream.py needs no import of it."""

    __slots__ = ()


def _tcp_multiaddr(sockaddr: object) -> Multiaddr | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        try:
            return Multiaddr.from_tcp(str(sockaddr[0]), int(sockaddr[1]))
        except ValueError:
            return None
    return None
