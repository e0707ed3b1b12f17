"""A yamux stream as the application sees it: read, write, close, reset.

Flow control is end to end: received bytes count against the yamux window until the application
reads them (or, in callback mode, acknowledges them), so a slow reader stalls the remote sender
instead of growing memory; :meth:`BaseStream.write` waits for the remote's window and for the
socket to drain.

A stream knows its connection only as a :class:`StreamOwner`, so this module imports nothing from
connection.py. What applications get, :class:`~glueberry.p2p.asyncio.connection.Stream`, is
``BaseStream`` bound to the real ``Connection`` type (mypy checks there that it is a StreamOwner).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ...exceptions import InvalidState, StreamClosed, StreamReset
from ..keys import PeerID

__all__ = ["BaseStream", "DataCallback", "StreamOwner"]

# Called with each chunk of received data; b"" means the remote closed its side.
DataCallback = Callable[[bytes], None]


class StreamOwner(Protocol):
    """What a stream needs from the connection that carries it."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def remote_peer_id(self) -> PeerID: ...

    @property
    def writing_paused(self) -> bool: ...

    async def wait_writable(self) -> None:
        """Return once the socket takes writes again; raise StreamReset if the connection is gone."""

    def send_stream_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue what the stream's send window allows of ``data``; return how much was taken."""

    def send_window(self, stream_id: int) -> int:
        """How much :meth:`send_stream_data` would take now."""

    def consume(self, stream_id: int, n: int) -> None:
        """The stream's reader took ``n`` bytes: give them back to the remote's window."""

    def close_stream(self, stream_id: int) -> None: ...

    def reset_stream(self, stream_id: int, code: int) -> None: ...


OwnerT = TypeVar("OwnerT", bound=StreamOwner)


class BaseStream(Generic[OwnerT]):
    """One multiplexed stream that agreed on ``protocol``, carried by a connection of type
    ``OwnerT``. The connection makes it and feeds it (the ``_on_*`` methods)."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_callback",
        "_conn",
        "_discard",
        "_eof",
        "_error",
        "_local_closed",
        "_read_waiter",
        "_write_waiter",
        "outbound",
        "protocol",
        "stream_id",
    )

    def __init__(self, conn: OwnerT, stream_id: int, *, outbound: bool, protocol: str) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.outbound = outbound
        self.protocol = protocol
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._local_closed = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._callback: DataCallback | None = None
        self._discard = False

    def __repr__(self) -> str:
        way = "out" if self.outbound else "in"
        return f"<Stream {self.stream_id} {way} {self.protocol} {self.remote_peer_id}>"

    @property
    def connection(self) -> OwnerT:
        return self._conn

    @property
    def remote_peer_id(self) -> PeerID:
        return self._conn.remote_peer_id

    @property
    def is_reset(self) -> bool:
        return isinstance(self._error, StreamReset)

    @property
    def at_eof(self) -> bool:
        """The remote closed its side and every byte it sent was read."""
        return self._eof and not self._buffer

    # Reading.

    async def read(self, max_bytes: int = 256 * 1024) -> bytes:
        """Up to ``max_bytes`` received bytes, waiting for at least one; ``b""`` at end of stream.

        Raises:
            StreamReset: the stream was reset (by either side) or its connection was lost.
        """
        if self._callback is not None:
            raise InvalidState("this stream delivers data to a callback; read() is not available")
        while not self._buffer:
            if self._error is not None:
                raise self._failure()
            if self._eof or self._discard:
                return b""
            await self._wait_readable()
        if self._error is not None:
            raise self._failure()
        buf = self._buffer
        if len(buf) <= max_bytes:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        self._conn.consume(self.stream_id, len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes. Raises :class:`StreamClosed` if the stream ends first."""
        chunks = bytearray()
        while len(chunks) < n:
            data = await self.read(n - len(chunks))
            if not data:
                raise StreamClosed(f"stream ended after {len(chunks)} of {n} bytes")
            chunks += data
        return bytes(chunks)

    async def read_all(self, limit: int) -> bytes:
        """Everything until the remote closes; :class:`StreamClosed` past ``limit`` bytes."""
        out = bytearray()
        while data := await self.read():
            out += data
            if len(out) > limit:
                self.reset()
                raise StreamClosed(f"stream sent more than {limit} bytes")
        return bytes(out)

    def set_data_callback(self, callback: DataCallback) -> None:
        """Deliver received data to ``callback`` instead of :meth:`read` (no task per stream).

        The bytes stay charged to the yamux window until :meth:`acknowledge` is called, so the
        callback's owner keeps the flow control it would have with :meth:`read`. Data already
        buffered is delivered at once; ``b""`` announces the end of the stream: the remote's
        end, or a reset (check :attr:`is_reset`), also one that came before this call.
        """
        self._callback = callback
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            callback(data)
        if self._eof or self._error is not None:
            self._callback = None  # nothing follows the end
            callback(b"")

    def close_read(self) -> None:
        """Stop reading: whatever arrives from now on is dropped (and its window returned), as
        go-yamux does after a full ``Close``. Buffered data is dropped too."""
        self._discard = True
        if self._buffer:
            self._conn.consume(self.stream_id, len(self._buffer))
            self._buffer.clear()
        self._wake_reader()

    def acknowledge(self, n: int) -> None:
        """In callback mode: ``n`` delivered bytes were taken care of; the remote may send more."""
        self._conn.consume(self.stream_id, n)

    # Writing.

    def write_nowait(self, data: bytes) -> bool:
        """Send all of ``data`` now if the stream's window and the socket take it without waiting;
        False, with nothing sent, otherwise (then :meth:`write` it). The common case of a small
        message costs no coroutine.

        Raises:
            StreamReset, StreamClosed: as :meth:`write`.
        """
        if self._error is not None:
            raise self._failure()
        if self._local_closed:
            raise StreamClosed("write after close()")
        conn = self._conn
        if conn.writing_paused or conn.send_window(self.stream_id) < len(data):
            return False
        conn.send_stream_data(self.stream_id, data)
        return True

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, waiting for window and socket space as needed.

        Raises:
            StreamReset: the stream was reset or its connection lost.
            StreamClosed: we already closed our side.
        """
        conn = self._conn
        view = data if isinstance(data, bytes) else bytes(data)
        offset = 0
        total = len(view)
        while True:
            if self._error is not None:
                raise self._failure()
            if self._local_closed:
                raise StreamClosed("write after close()")
            if conn.writing_paused:
                await conn.wait_writable()
                continue
            taken = conn.send_stream_data(self.stream_id, view if offset == 0 else memoryview(view)[offset:])
            offset += taken
            if offset >= total:
                return
            await self._wait_writable()

    async def close(self) -> None:
        """Close our side (yamux FIN); the remote may go on sending and we may go on reading."""
        self.close_write()

    def close_write(self) -> None:
        """:meth:`close` for callers that cannot await (callbacks)."""
        if self._local_closed or self._error is not None:
            return
        self._local_closed = True
        self._conn.close_stream(self.stream_id)

    def reset(self, code: int = 0) -> None:
        """Abort the stream both ways; data in flight is lost."""
        if self._error is not None:
            return
        self._fail(StreamReset("stream reset locally"))
        self._conn.reset_stream(self.stream_id, code)

    # Called by the connection.

    def _on_data(self, data: bytes) -> None:
        if self._discard:
            self._conn.consume(self.stream_id, len(data))
            return
        if self._callback is not None:
            self._callback(data)
            return
        self._buffer += data
        self._wake_reader()

    def _on_eof(self) -> None:
        self._eof = True
        callback, self._callback = self._callback, None  # nothing follows the end: let its owner go
        if callback is not None:
            callback(b"")
        self._wake_reader()

    def _on_window(self) -> None:
        _wake(self._write_waiter)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._buffer.clear()
        _wake(self._read_waiter)
        _wake(self._write_waiter)
        callback, self._callback = self._callback, None  # the owner often holds the stream: no cycle
        if callback is not None and not self._eof:
            callback(b"")

    def _failure(self) -> BaseException:
        """The error that ended the stream, to raise: a copy, because raising the stored one
        would tie its traceback — and the frames holding this stream — to the stream, a
        reference cycle per failed stream that only a full collection frees."""
        error = self._error
        assert error is not None
        try:
            fresh = copy.copy(error)
        except Exception:  # an exception type that cannot be rebuilt from its args
            return error
        fresh.__cause__ = error.__cause__  # a copy has no traceback of its own yet
        return fresh

    def _wake_reader(self) -> None:
        _wake(self._read_waiter)

    async def _wait_readable(self) -> None:
        self._read_waiter = self._conn.loop.create_future()
        try:
            await self._read_waiter
        finally:
            self._read_waiter = None

    async def _wait_writable(self) -> None:
        self._write_waiter = self._conn.loop.create_future()
        try:
            await self._write_waiter
        finally:
            self._write_waiter = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
