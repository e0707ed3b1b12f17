"""Glueberry streams: one libp2p stream per (peer, name), carrying framed messages (PROTOCOL.md §4, §6).

A :class:`GlueberryStream` frames and writes on its side and runs one reader task that parses
frames and hands each payload to its owner. The owner (the node) decides what a payload is: the
handshake stream's are delivered as they are, a named stream's are decrypted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .exceptions import GlueberryError, RemoteProtocolError, StreamClosed
from .p2p.asyncio import Stream
from .p2p.keys import PeerID
from .wire.framing import Frame, FrameDecoder, frame_header

__all__ = ["HANDSHAKE_PROTOCOL", "GlueberryStream", "protocol_id", "stream_name_of"]

_log = logging.getLogger("glueberry")

HANDSHAKE_PROTOCOL = "/glueberry/stream/handshake/1.0.0"
_PREFIX = "/glueberry/stream/"
_SUFFIX = "/1.0.0"

# (stream, payload) -> awaitable; awaiting it is how backpressure reaches the reader
PayloadHandler = Callable[["GlueberryStream", bytes], Awaitable[None]]
ClosedHandler = Callable[["GlueberryStream", BaseException | None], None]


def protocol_id(name: str) -> str:
    return f"{_PREFIX}{name}{_SUFFIX}"


def stream_name_of(protocol: str) -> str | None:
    if protocol.startswith(_PREFIX) and protocol.endswith(_SUFFIX):
        return protocol[len(_PREFIX) : -len(_SUFFIX)]
    return None


class GlueberryStream:
    """A libp2p stream in Glueberry framing, in both directions whichever side opened it."""

    __slots__ = ("__weakref__", "_lock", "_reader", "closed", "name", "outbound", "peer_id", "stream")

    def __init__(self, stream: Stream, name: str, *, outbound: bool) -> None:
        self.stream = stream
        self.name = name
        self.peer_id: PeerID = stream.remote_peer_id
        self.outbound = outbound
        self.closed = False
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        way = "out" if self.outbound else "in"
        return f"<GlueberryStream {self.name} {way} {self.peer_id} {'closed' if self.closed else 'open'}>"

    def start_reading(
        self, max_frame_size: int, on_payload: PayloadHandler, on_closed: ClosedHandler
    ) -> None:
        self._reader = asyncio.ensure_future(self._read_loop(max_frame_size, on_payload, on_closed))

    async def send(self, payload: bytes) -> None:
        """Write one framed message; concurrent senders never interleave their frames.

        Raises:
            StreamClosed: the stream is closed or was reset (open a new one and retry).
        """
        if self.closed:
            raise StreamClosed("stream is closed", peer_id=str(self.peer_id), stream=self.name)
        data = frame_header(len(payload)) + payload
        async with self._lock:
            try:
                await self.stream.write(data)
            except StreamClosed:
                self.closed = True
                raise

    async def close(self) -> None:
        """Go's full close: FIN, and stop reading (later data is dropped)."""
        if self.closed:
            return
        self.closed = True
        self.stream.close_read()
        with contextlib.suppress(GlueberryError):
            await self.stream.close()
        self._stop_reader()

    def reset(self) -> None:
        self.closed = True
        self.stream.reset()
        self._stop_reader()

    def _stop_reader(self) -> None:
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    async def _read_loop(
        self, max_frame_size: int, on_payload: PayloadHandler, on_closed: ClosedHandler
    ) -> None:
        decoder = FrameDecoder(max_frame_size)
        error: BaseException | None = None
        try:
            while True:
                data = await self.stream.read()
                if not data:
                    decoder.receive_eof()  # raises TruncatedFrame for a frame cut short
                    break
                try:
                    decoder.receive_data(data)
                finally:
                    # frames decoded before a malformed one are still delivered, as Go does
                    for event in decoder.events_received():
                        if isinstance(event, Frame):
                            await on_payload(self, event.payload)
        except RemoteProtocolError as exc:
            # Go would just stop reading; we reset so the sender learns its stream is dead.
            _log.warning("%r: malformed framing, stream reset: %s", self, exc)
            error = exc
            self.stream.reset()
        except StreamClosed as exc:
            error = exc
        finally:
            self.closed = True
            # this frame outlives the loop in the traceback of any exception ending it: let go of
            # the reader task and of the error, or stream, task and error hold each other
            self._reader = None
            on_closed(self, error)
            error = None
