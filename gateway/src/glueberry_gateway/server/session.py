"""One session: a browser's libp2p connection to one backend, relayed frame by frame.

The gateway never decrypts: a browser's data frame carries the Glueberry payload (handshake bytes
or ``nonce ‖ ciphertext ‖ tag``), which goes out framed on the backend stream of its name; what
the backend's streams deliver goes to the browser as data frames (docs/gateway-protocol.md §5).
The backend streams are the SDK's own :class:`~glueberry.streams.GlueberryStream`, the same the
node uses, in a :class:`~glueberry.streams.StreamTable` (the newest stream of a name is sent on).

No task per session: backend streams deliver to callbacks, and their bytes stay charged to the
yamux window until the browser's WebSocket has taken them (the link calls the ack), so a slow
browser stalls its backend's sender instead of filling memory. Every frame sent to the browser
is also kept, numbered, in the session's :class:`~.resume.ResumeBuffer` for a resume (§6).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Protocol

from glueberry.exceptions import GlueberryError
from glueberry.p2p.asyncio import Connection, Stream
from glueberry.streams import GlueberryStream, StreamTable, protocol_id, stream_name_of
from glueberry.wire.framing import outer_length

from ..protocol.codes import Code
from ..protocol.errors import BackendClosed, TooManyStreams
from ..protocol.frames import data_header
from .resume import ResumeBuffer

__all__ = ["Ack", "BackendSession", "BrowserLink", "Tap"]

Ack = Callable[[], None]
#: Sees (and may change) every payload the gateway relays: ("to_backend" | "to_browser", session,
#: stream, payload) -> payload. For audits and the blind-relay tests; None in production.
Tap = Callable[[str, int, str, bytes], bytes]


class BrowserLink(Protocol):
    """What a session needs from the browser socket it is attached to."""

    def send_frames(self, frames: list[bytes], ack: Ack | None) -> None:
        """Queue data frames for the browser, in order (one batch message if the browser takes
        them); call ``ack`` once they were all written (or dropped)."""

    def stream_closed(self, session: BackendSession, name: str) -> None: ...

    def session_closed(self, session: BackendSession, code: Code, message: str) -> None: ...


class BackendSession:
    """Relays one session. ``number`` is the browser's session number."""

    __slots__ = (
        "_headers",
        "_max_frame",
        "_streams",
        "_tap",
        "backend_name",
        "buffer",
        "closed",
        "conn",
        "frames_in",
        "link",
        "max_streams",
        "number",
    )

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
        self.closed = False
        self.frames_in = 0  # data frames received from the browser
        self.buffer = ResumeBuffer(resume_buffer_bytes)  # the frames sent to the browser, for a resume
        self._max_frame = outer_length(max_frame)
        self._streams = StreamTable()
        self._headers: dict[str, bytes] = {}  # the data-frame header per stream name
        self._tap = tap

    @property
    def frames_out(self) -> int:
        """Data frames produced for the browser (the next one's sequence number)."""
        return self.buffer.sent

    # Browser -> backend.

    async def send(self, name: str, payload: memoryview | bytes) -> None:
        """Frame ``payload`` onto the backend stream ``name`` (opened lazily); waits for window.

        Raises:
            TooManyStreams; BackendClosed when the stream cannot be opened or written.
        """
        self.frames_in += 1  # every frame read counts, sent or refused: resume counts must agree
        stream = self._streams.sender(name)
        try:
            if stream is None:
                if len(self._streams) >= self.max_streams:
                    raise TooManyStreams(f"session {self.number} has {len(self._streams)} streams")
                stream = self._adopt(await self.conn.open_stream([protocol_id(name)]), name, outbound=True)
            if self._tap is not None:
                payload = self._tap("to_backend", self.number, name, bytes(payload))
            await stream.send(payload)
        except GlueberryError as exc:
            raise BackendClosed(f"cannot send on {name}: {exc}") from exc

    def try_send(self, name: str, payload: memoryview | bytes) -> bool:
        """:meth:`send` when it need not wait (stream open, window and socket free, no tap): True
        when the frame went (and is counted); False, with nothing done, otherwise: await
        :meth:`send`, which also reports any error."""
        stream = self._streams.sender(name)
        if stream is None or self._tap is not None:
            return False
        try:
            if not stream.send_nowait(payload):
                return False
        except GlueberryError:
            return False  # send() meets the same and says so
        self.frames_in += 1
        return True

    def accept(self, stream: Stream) -> None:
        """A stream the backend opened (``/glueberry/stream/<name>/1.0.0``): relay it."""
        name = stream_name_of(stream.protocol)
        if name is None or self.closed or len(self._streams) >= self.max_streams:
            stream.reset()
            return
        self._adopt(stream, name, outbound=False)

    # Backend -> browser.

    def _adopt(self, stream: Stream, name: str, *, outbound: bool) -> GlueberryStream:
        return self._streams.adopt(
            stream,
            name,
            outbound=outbound,
            max_frame_size=self._max_frame,
            on_payloads=self._from_backend,
            on_end=self._stream_ended,
        )

    def _from_backend(self, gstream: GlueberryStream, payloads: list[bytes], held: int) -> None:
        name = gstream.name
        if self._tap is not None:
            payloads = [self._tap("to_browser", self.number, name, p) for p in payloads]
        header = self._headers.get(name)
        if header is None:  # one per name while a stream of it is open
            header = self._headers[name] = data_header(self.number, name)
        frames = [header + payload for payload in payloads]
        link = self.link
        self.buffer.append(frames, attached=link is not None)
        ack = functools.partial(gstream.stream.acknowledge, held) if held else None  # its release()
        if link is not None:
            link.send_frames(frames, ack)
        elif ack is not None:
            ack()  # detached (resume grace): the frames wait in the buffer; the backend may send on

    def _stream_ended(self, gstream: GlueberryStream, error: BaseException | None) -> None:
        if self._streams.remove(gstream):  # no stream of that name is left
            self._headers.pop(gstream.name, None)
            if self.link is not None:
                self.link.stream_closed(self, gstream.name)

    # Resume.

    def detach(self) -> None:
        """The browser's socket is gone; keep relaying into the resume buffer."""
        self.link = None
        self.buffer.detach()

    def attach(self, link: BrowserLink) -> None:
        """A resume gave the session a new socket; then call :meth:`replay`."""
        self.link = link

    def replay(self, browser_received: int) -> None:
        """Send again, in order, the buffered frames from ``browser_received`` on."""
        assert self.link is not None
        frames = self.buffer.since(browser_received)
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
        self._streams.clear()
        self.buffer.clear()
        with contextlib.suppress(GlueberryError):
            self.conn.close()
