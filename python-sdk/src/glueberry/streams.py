"""Glueberry streams: one libp2p stream per (peer, name), carrying framed messages (PROTOCOL.md
§4, §6). One implementation, used by the node and by the gateway's relay.

A :class:`GlueberryStream` frames what it sends (one writer at a time) and parses what it
receives without a task of its own: the libp2p stream hands it each chunk (callback mode), and it
hands its owner every complete payload, with the number of window bytes they still hold. The
owner calls :meth:`GlueberryStream.release` with that number once it is done with them — the node
when the message is queued for the application, the gateway when the browser's socket took it —
so a slow consumer stalls the remote sender on its yamux window instead of growing memory. Bytes
of a frame not yet complete are released at once: they wait in the decoder, at most one frame.

What a payload is stays the owner's business: the node decrypts named streams with the peer's
key; the gateway never holds a key and relays ciphertext.

A :class:`StreamTable` holds the streams of one peer (or one gateway session). Every stream is
read to its end; per name, the newest is the one sent on (§4.3: Go resets duplicates instead,
which loses data when both sides open at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

from .exceptions import GlueberryError, RemoteProtocolError, StreamClosed, StreamReset
from .p2p.asyncio import Stream
from .p2p.keys import PeerID
from .wire.framing import Frame, FrameDecoder, frame_header

__all__ = [
    "HANDSHAKE_PROTOCOL",
    "EndHandler",
    "GlueberryStream",
    "PayloadHandler",
    "StreamTable",
    "protocol_id",
    "stream_name_of",
]

_log = logging.getLogger("glueberry")

_PREFIX: Final = "/glueberry/stream/"
_SUFFIX: Final = "/1.0.0"
HANDSHAKE_PROTOCOL: Final = f"{_PREFIX}handshake{_SUFFIX}"

#: (stream, payloads, held): complete payloads in order; ``held`` window bytes to release after.
PayloadHandler = Callable[["GlueberryStream", list[bytes], int], None]
#: (stream, error): the stream is over for reading; error is None at a clean end of stream,
#: :class:`~glueberry.exceptions.StreamReset` after a reset, a RemoteProtocolError for bad framing.
EndHandler = Callable[["GlueberryStream", BaseException | None], None]


def protocol_id(name: str) -> str:
    """The multistream protocol ID of Glueberry stream ``name`` (§4.1)."""
    return f"{_PREFIX}{name}{_SUFFIX}"


def stream_name_of(protocol: str) -> str | None:
    """The stream name in a Glueberry protocol ID, or None for any other protocol."""
    if protocol.startswith(_PREFIX) and protocol.endswith(_SUFFIX):
        return protocol[len(_PREFIX) : -len(_SUFFIX)]
    return None


class GlueberryStream:
    """A libp2p stream in Glueberry framing, both ways, whichever side opened it.

    Reading starts with :meth:`start` (data the stream already buffered is delivered from it, so
    put the stream where the callbacks will look for it first). ``on_end`` is called once, after
    the last ``on_payloads``; the stream is then ``closed``.
    """

    __slots__ = (
        "__weakref__",
        "_decoder",
        "_on_end",
        "_on_payloads",
        "_waiting",
        "_writing",
        "closed",
        "name",
        "outbound",
        "stream",
    )

    def __init__(
        self,
        stream: Stream,
        name: str,
        *,
        outbound: bool,
        max_frame_size: int,
        on_payloads: PayloadHandler,
        on_end: EndHandler,
    ) -> None:
        self.stream = stream
        self.name = name
        self.outbound = outbound
        self.closed = False
        self._decoder = FrameDecoder(max_frame_size)
        self._writing = False  # a send is inside its frame
        self._waiting: deque[asyncio.Future[None]] | None = None  # senders behind it (made when needed)
        self._on_payloads = on_payloads
        self._on_end = on_end

    def start(self) -> None:
        """Start delivering what the stream receives to ``on_payloads``."""
        self.stream.set_data_callback(self._on_data)

    def __repr__(self) -> str:
        way = "out" if self.outbound else "in"
        state = "closed" if self.closed else "open"
        return f"<GlueberryStream {self.name} {way} {self.stream.remote_peer_id} {state}>"

    @property
    def peer_id(self) -> PeerID:
        return self.stream.remote_peer_id

    async def send(self, payload: bytes | memoryview) -> None:
        """Write one framed message; concurrent senders never interleave their frames.

        Raises:
            StreamClosed: the stream is closed or was reset (open a new one and retry).
        """
        if self.closed:
            raise StreamClosed("stream is closed", peer_id=str(self.peer_id), stream=self.name)
        data = frame_header(len(payload)) + payload
        # One frame at a time: a write that waits for window must not let another frame in.
        # (Not an asyncio.Lock: this is the per-message path and the wait is rare.) The turn is
        # handed from writer to writer: while anyone waits, _writing stays True.
        if not self._writing:
            try:
                if self.stream.write_nowait(data):  # the common case: no coroutine below this one
                    return
            except StreamClosed:
                self.closed = True
                raise
            self._writing = True
        else:
            waiting = self._waiting
            if waiting is None:
                waiting = self._waiting = deque()
            turn = asyncio.get_running_loop().create_future()
            waiting.append(turn)
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():  # handed the turn, then cancelled: pass it on
                    self._pass_turn()
                raise
        try:
            await self.stream.write(data)
        except StreamClosed:
            self.closed = True
            raise
        finally:
            self._pass_turn()

    def send_nowait(self, payload: bytes | memoryview) -> bool:
        """:meth:`send` when nothing has to wait (no other sender, window and socket free): True
        when the framed message went; False, with nothing sent, otherwise (then await
        :meth:`send`). The per-message path of a relay or a node takes this first.

        Raises:
            StreamClosed: as :meth:`send`.
        """
        if self.closed:
            raise StreamClosed("stream is closed", peer_id=str(self.peer_id), stream=self.name)
        if self._writing:
            return False
        try:
            return self.stream.write_nowait(frame_header(len(payload)) + payload)
        except StreamClosed:
            self.closed = True
            raise

    def _pass_turn(self) -> None:
        waiting = self._waiting
        while waiting:  # the next sender still waiting (one that gave up is skipped) writes next
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._writing = False

    def release(self, held: int) -> None:
        """``held`` window bytes of delivered payloads are taken care of: the remote may send more."""
        self.stream.acknowledge(held)

    def close(self) -> None:
        """Go's full close: FIN, and stop reading (later data is dropped, its window returned).
        ``on_end`` follows (once) if the stream had not ended yet."""
        if self.closed:
            return
        self._stop(None)
        self.stream.close_read()
        with contextlib.suppress(GlueberryError):
            self.stream.close_write()

    def reset(self) -> None:
        """Abort both ways; data in flight is lost. ``on_end`` follows as for :meth:`close`."""
        self._stop(None)
        self.stream.reset()

    def _on_data(self, data: bytes) -> None:
        if self.closed:
            self.stream.acknowledge(len(data))
            return
        decoder = self._decoder
        if not data:  # the remote's end, or a reset
            error: BaseException | None = None
            if self.stream.is_reset:
                error = StreamReset("stream reset")
            else:
                try:
                    decoder.receive_eof()
                except RemoteProtocolError as exc:
                    error = exc
                # Go's full close: the remote will not read either, so neither side writes more
                with contextlib.suppress(GlueberryError):
                    self.stream.close_write()
            self._stop(error)
            return
        try:
            decoder.receive_data(data)
        except RemoteProtocolError as exc:
            # frames decoded before the malformed one are delivered, as Go does; we also reset
            # (Go would only stop reading) so that the sender learns its stream is dead
            _log.warning("%r: malformed framing, stream reset: %s", self, exc)
            payloads = [e.payload for e in decoder.events_received() if isinstance(e, Frame)]
            if payloads:
                self._on_payloads(self, payloads, 0)
            self.stream.acknowledge(len(data))
            self._stop(exc)
            self.stream.reset()
            return
        payloads = [e.payload for e in decoder.events_received() if isinstance(e, Frame)]
        partial = decoder.buffered_bytes
        if not payloads:
            self.stream.acknowledge(len(data))
            return
        if partial:
            self.stream.acknowledge(partial)
        self._on_payloads(self, payloads, len(data) - partial)

    def _stop(self, error: BaseException | None) -> None:
        self.closed = True
        if self._on_end is _ended:
            return
        on_end, self._on_end = self._on_end, _ended  # once; and let go of the owner
        self._on_payloads = _dropped
        on_end(self, error)


def _ended(stream: GlueberryStream, error: BaseException | None) -> None:
    pass


def _dropped(stream: GlueberryStream, payloads: list[bytes], held: int) -> None:
    stream.stream.acknowledge(held)


class StreamTable:
    """The Glueberry streams of one peer or session: every one is read; per name, the newest
    open one is sent on (PROTOCOL.md §4.3)."""

    __slots__ = ("_all", "_send")

    def __init__(self) -> None:
        self._all: dict[GlueberryStream, None] = {}  # in the order they came
        self._send: dict[str, GlueberryStream] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[GlueberryStream]:
        return iter(list(self._all))

    def add(self, stream: GlueberryStream) -> None:
        """Read ``stream`` and send on it from now on (it is the newest of its name)."""
        self._all[stream] = None
        self._send[stream.name] = stream

    def adopt(
        self,
        stream: Stream,
        name: str,
        *,
        outbound: bool,
        max_frame_size: int,
        on_payloads: PayloadHandler,
        on_end: EndHandler,
    ) -> GlueberryStream:
        """Make a libp2p stream a Glueberry stream of this table (the newest of ``name``) and start
        reading it — in that order, so that its callbacks find it here."""
        gstream = GlueberryStream(
            stream,
            name,
            outbound=outbound,
            max_frame_size=max_frame_size,
            on_payloads=on_payloads,
            on_end=on_end,
        )
        self.add(gstream)
        gstream.start()
        return gstream

    def sender(self, name: str) -> GlueberryStream | None:
        """The stream to send ``name`` on, if one is open."""
        stream = self._send.get(name)
        return stream if stream is not None and not stream.closed else None

    def remove(self, stream: GlueberryStream) -> bool:
        """Forget ``stream``; the newest other open stream of its name takes over sending.
        Returns True when no open stream of that name is left."""
        if stream not in self._all:
            return False  # not ours (any more): nothing to tell anyone
        del self._all[stream]
        name = stream.name
        if self._send.get(name) is stream:
            del self._send[name]
            for other in reversed(self._all):
                if other.name == name and not other.closed:
                    self._send[name] = other
                    break
        return name not in self._send

    def clear(self) -> list[GlueberryStream]:
        """Forget every stream; returns them (to close or reset)."""
        streams = list(self._all)
        self._all.clear()
        self._send.clear()
        return streams
