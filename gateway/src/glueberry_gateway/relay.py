"""One session: a browser's libp2p connection to one backend, relayed frame by frame.

The gateway never decrypts: browser data frames carry the Glueberry payload (handshake bytes or
``nonce ‖ ciphertext ‖ tag``), to which it adds the stream framing toward the backend; backend
streams are parsed back into payloads for the browser (docs/gateway-protocol.md §5).

No task per session: backend streams deliver to callbacks, and bytes stay charged to the yamux
window until the browser's WebSocket has taken them (the link calls the ack), so a slow browser
stalls its backend's sender instead of filling memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from glueberry._streams import protocol_id, stream_name_of
from glueberry.exceptions import GlueberryError, RemoteProtocolError
from glueberry.p2p.asyncio import Connection, Stream
from glueberry.wire.framing import Frame, FrameDecoder, frame_header, outer_length

from .codec import data_header
from .codes import Code

__all__ = ["BackendSession", "BrowserLink", "Tap", "TooManyStreams"]

_log = logging.getLogger("glueberry_gateway")
Ack = Callable[[], None]
# Sees (and may change) every payload the gateway relays: ("to_backend" | "to_browser", session,
# stream, payload) -> payload. For audits and the blind-relay tests; None in production.
Tap = Callable[[str, int, str, bytes], bytes]


class TooManyStreams(Exception):
    pass


class BrowserLink(Protocol):
    """What a session needs from the browser socket it is attached to."""

    def send_frames(self, frames: list[bytes], ack: Ack | None) -> None:
        """Queue data frames for the browser, in order (one batch message if the browser takes
        them); call ``ack`` once they were all written (or dropped)."""

    def stream_closed(self, session: BackendSession, name: str) -> None: ...

    def session_closed(self, session: BackendSession, code: Code, message: str) -> None: ...


class _StreamState:
    __slots__ = ("decoder", "header", "name", "stream")

    def __init__(self, stream: Stream, name: str, max_frame: int, session: int) -> None:
        self.stream = stream
        self.name = name
        self.decoder = FrameDecoder(outer_length(max_frame))
        self.header = data_header(session, name)  # of every frame for the browser


class BackendSession:
    """Relays one session. ``number`` is the browser's session number."""

    def __init__(
        self,
        number: int,
        backend_name: str,
        conn: Connection,
        link: BrowserLink | None,
        *,
        max_streams: int,
        max_frame: int,
        resume_buffer_bytes: int,
        tap: Tap | None = None,
    ) -> None:
        self.number = number
        self.backend_name = backend_name
        self.conn = conn
        self.link = link
        self.max_streams = max_streams
        self.max_frame = max_frame
        self.closed = False
        self.frames_in = 0  # data frames received from the browser
        self.frames_out = 0  # data frames produced for the browser (their sequence numbers)
        self._send: dict[str, _StreamState] = {}  # the stream each name is sent on
        self._all: dict[Stream, _StreamState] = {}
        # the last frames sent, for resume: (sequence number, frame)
        self._ring: deque[tuple[int, bytes]] | None = None  # made on the first frame (idle sessions are many)
        self._ring_bytes = 0
        self._ring_limit = resume_buffer_bytes
        self._detached_at = 0
        self.recoverable = True
        self._tap = tap

    # Browser -> backend.

    async def send(self, name: str, payload: memoryview | bytes) -> None:
        """Frame ``payload`` onto the backend stream ``name`` (opened lazily); waits for window.

        Raises:
            TooManyStreams; GlueberryError when the stream cannot be opened or written.
        """
        self.frames_in += 1  # every frame read counts, sent or refused: resume counts must agree
        state = self._send.get(name)
        if state is None:
            if len(self._all) >= self.max_streams:
                raise TooManyStreams(f"session {self.number} has {len(self._all)} streams")
            stream = await self.conn.open_stream([protocol_id(name)])
            state = self._adopt(stream, name)
        if self._tap is not None:
            payload = self._tap("to_backend", self.number, name, bytes(payload))
        await state.stream.write(frame_header(len(payload)) + payload)

    def accept(self, stream: Stream) -> None:
        """A stream the backend opened (``/glueberry/stream/<name>/1.0.0``): relay it."""
        name = stream_name_of(stream.protocol)
        if name is None or self.closed or len(self._all) >= self.max_streams:
            stream.reset()
            return
        self._adopt(stream, name)

    # Backend -> browser.

    def _adopt(self, stream: Stream, name: str) -> _StreamState:
        state = _StreamState(stream, name, self.max_frame, self.number)
        self._all[stream] = state
        self._send[name] = state  # the newest stream wins (PROTOCOL.md §4.3)
        stream.set_data_callback(lambda data: self._from_backend(state, data))
        return state

    def _from_backend(self, state: _StreamState, data: bytes) -> None:
        """Window accounting: bytes that complete frames stay charged to the yamux window until
        the browser's socket took the last frame they completed; bytes of a frame not yet complete
        are returned at once — they wait in the decoder (at most one frame per stream), and a frame
        larger than the window could otherwise never complete."""
        if not data:
            self._stream_ended(state, reset=False)
            return
        decoder = state.decoder
        try:
            decoder.receive_data(data)
        except RemoteProtocolError as exc:
            _log.warning(
                "session %d: malformed frames from the backend on %s: %s", self.number, state.name, exc
            )
            frames = self._decoded(state)  # those before the error: Go and the SDK deliver them too
            if frames:
                self._deliver(frames, None)
            self._stream_ended(state, reset=True)
            return
        frames = self._decoded(state)
        partial = decoder.buffered_bytes
        if not frames:
            state.stream.acknowledge(len(data))
            return
        if partial:
            state.stream.acknowledge(partial)
        self._deliver(frames, functools.partial(state.stream.acknowledge, len(data) - partial))

    def _decoded(self, state: _StreamState) -> list[bytes]:
        """The frames the stream's decoder completed, as data frames for the browser."""
        payloads = [e.payload for e in state.decoder.events_received() if isinstance(e, Frame)]
        if self._tap is not None:
            payloads = [self._tap("to_browser", self.number, state.name, p) for p in payloads]
        return [state.header + payload for payload in payloads]

    def _deliver(self, frames: list[bytes], ack: Ack | None) -> None:
        ring = self._ring
        if ring is None:
            ring = self._ring = deque()
        for frame in frames:
            ring.append((self.frames_out, frame))
            self.frames_out += 1
            self._ring_bytes += len(frame)
        while self._ring_bytes > self._ring_limit:
            _, old = ring.popleft()
            self._ring_bytes -= len(old)
        link = self.link
        if link is not None:
            link.send_frames(frames, ack)
            return
        # Detached (resume grace): the frame waits in the ring; the backend may send on.
        if ack is not None:
            ack()
        if ring and ring[0][0] > self._detached_at:
            # frames the browser never saw fell out of the buffer: resuming is impossible
            self.recoverable = False

    def _stream_ended(self, state: _StreamState, *, reset: bool) -> None:
        if self._all.pop(state.stream, None) is None:
            return
        if reset:
            state.stream.reset()
        else:
            state.stream.close_write()  # Go's full close: we will not write there either
        if self._send.get(state.name) is state:
            del self._send[state.name]
            for other in self._all.values():  # an older stream still open takes over
                if other.name == state.name:
                    self._send[state.name] = other
        if self.link is not None and state.name not in self._send:
            self.link.stream_closed(self, state.name)

    # Resume.

    def detach(self) -> None:
        """The browser's socket is gone; keep relaying into the resume buffer."""
        self.link = None
        self._detached_at = self.frames_out

    def reattach(self, link: BrowserLink, browser_received: int) -> bool:
        """Attach to a new socket; False if the frames the browser missed are no longer all in
        the buffer. After the socket has told the browser, call :meth:`replay`."""
        first = self._ring[0][0] if self._ring else self.frames_out
        if self.closed or not self.recoverable or not first <= browser_received <= self.frames_out:
            return False
        self.link = link
        return True

    def replay(self, browser_received: int) -> None:
        """Send again, in order, the buffered frames from ``browser_received`` on."""
        assert self.link is not None
        frames = [frame for seq, frame in self._ring or () if seq >= browser_received]
        if frames:
            self.link.send_frames(frames, None)

    # Ending.

    def backend_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.link is not None:
            self.link.session_closed(self, Code.BACKEND_CLOSED, "the backend closed the connection")

    def close(self) -> None:
        """Close the backend connection (GoAway, then the socket)."""
        self.closed = True
        self._all.clear()
        self._send.clear()
        self._ring = None
        self._ring_bytes = 0
        with contextlib.suppress(GlueberryError):
            self.conn.close()
