"""yamux stream multiplexer (``/yamux/1.0.0``) as a sans-I/O core.

Spec: hashicorp/yamux ``spec.md`` (framing, flags, flow control, session termination); behaviour
matched to go-yamux v5.0.1 as configured by go-libp2p v0.46 (PROTOCOL.md §2.2,
``YX:session.go``, ``YX:stream.go``).

Theory of operation
-------------------
:class:`YamuxProtocol` is one session. Its parts each have a module: ``yamux_frames`` the frame
format (a 12-byte header, then a Data frame's payload), ``yamux_events`` the events,
``yamux_streams`` a stream's life as the table :data:`STREAM_TRANSITIONS` (h11 style),
``yamux_session`` the session's state and what the remote's frames do to it. This module adds the
feed/drain API and the application's actions, and is the layer's public face: every name the rest
of the code uses is importable from here. A local action the state does not allow raises (sending)
or does nothing (closing twice, resetting a stream that is over); for the remote's frames, see
``yamux_session``.

Invariants (of the session as a whole; the state is defined in ``yamux_session``):

1. A stream is in ``_streams`` exactly while its state is live (not CLOSED / RESET). Entering
   CLOSED or RESET forgets it; a small bounded dict remembers the last ended ones for
   :meth:`YamuxProtocol.stream_state` and error messages.
2. For every live stream ``recv_window + unconsumed + owed == receive_window`` (our SYN / ACK
   announces the extra beyond 256 KiB at once, so this is an upper bound of the remote's view):
   the driver never has to hold more than ``receive_window`` unconsumed bytes per stream. A Data
   frame longer than ``recv_window`` ends the session (go-yamux: ``ErrRecvWindowExceeded``),
   checked on its header, before any payload is read.
3. ``0 <= send_window``; :meth:`YamuxProtocol.send_data` never sends more than it.
4. Received payload is never buffered here: it leaves as :class:`DataReceived` (possibly in
   several pieces) or is skipped, so memory per connection is one partial header.
5. Our ids have our parity (client odd, server even) and increase; one of ours below
   ``_next_id`` that is not live has ended. Remote ids may arrive out of order (go-yamux
   allocates ids before queueing the SYN), so the ids the remote has opened are a floor plus a
   bounded set. Frames for an ended stream are discarded quietly; frames for an id never
   opened, or a SYN for a live id, are session errors.
6. ``len(_streams) <= max_streams`` (both directions); a SYN beyond it is answered with RST.
7. A session error queues GoAway(1) and raises a :class:`RemoteProtocolError`; EOF emits
   :class:`ConnectionEnded`. After either, actions raise :class:`InvalidState` (queries and the
   two drain methods still work).
"""

from __future__ import annotations

from ..exceptions import (
    InvalidArgument,
    InvalidState,
    LimitExceeded,
    RemoteProtocolError,
    StreamClosed,
)
from ..exceptions import (
    StreamReset as StreamResetError,
)
from .yamux_events import (
    ConnectionEnded,
    DataReceived,
    GoAwayReceived,
    PongReceived,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    YamuxEvent,
)
from .yamux_frames import (
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER_SIZE,
    RESET_PROTOCOL_VIOLATION,
    RESET_RESOURCE_LIMIT,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    U32_MAX,
    pack_header,
)
from .yamux_session import YamuxConfig, YamuxSession
from .yamux_streams import STREAM_TRANSITIONS, Stream, StreamState, StreamTrigger

__all__ = [
    "PROTOCOL_ID",
    "STREAM_TRANSITIONS",
    "ConnectionEnded",
    "DataReceived",
    "GoAwayReceived",
    "PongReceived",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "StreamTrigger",
    "WindowUpdated",
    "YamuxConfig",
    "YamuxEvent",
    "YamuxProtocol",
    "GO_AWAY_NORMAL",
    "GO_AWAY_PROTOCOL_ERROR",
    "GO_AWAY_INTERNAL_ERROR",
    "RESET_RESOURCE_LIMIT",
    "RESET_PROTOCOL_VIOLATION",
]

PROTOCOL_ID = "/yamux/1.0.0"

_MAX_OUTSTANDING_PINGS = 1024


class YamuxProtocol(YamuxSession):
    """One yamux session. ``is_client`` is the side that dialled (it uses odd stream ids).

    The state and the handling of received frames come from :class:`YamuxSession`.
    """

    # --- I/O -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the layer below.

        After calling this method: call events_received() and data_to_send() (pongs, ACKs and
        RSTs are queued here).

        Raises:
            MuxerProtocolError, FlowControlError (a receive window overflow): the session is
                over; GoAway(1) is queued, flush data_to_send() and close. Events produced before
                the bad frame are still in events_received().
            InvalidState: the session already ended.
        """
        self._check_alive()
        if type(data) is not bytes:
            data = bytes(data)
        try:
            rest = self._rest
            if rest:
                need = HEADER_SIZE - len(rest)
                if len(data) < need:
                    self._rest = rest + data
                    return
                self._rest = b""
                self._parse(rest + data[:need], 0)
                self._parse(data, need)
            else:
                self._parse(data, 0)
        except RemoteProtocolError as exc:
            self._queue_goaway(GO_AWAY_PROTOCOL_ERROR)
            self._dead = f"yamux session failed: {exc.message}"
            self._streams.clear()
            raise

    def receive_eof(self) -> None:
        """The layer below ended. After calling this method: call events_received()."""
        self._check_alive()
        self._dead = "yamux session ended: the connection was closed"
        self._streams.clear()
        self._events.append(ConnectionEnded())

    def events_received(self) -> list[YamuxEvent]:
        """Return and clear the events produced since the last call."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return and clear the bytes to write to the layer below (at most one bytes object)."""
        out = self._out
        self._pending_pongs = 0
        if not out:
            return []
        self._out = []
        if len(out) == 1 and type(out[0]) is bytes:
            return [out[0]]
        return [b"".join(out)]

    # --- actions -------------------------------------------------------------------------------

    def open_stream(self) -> int:
        """Open a stream and return its id; data may be sent at once (up to the initial window).

        After calling this method: call data_to_send() and send the bytes (a SYN window update).

        Raises:
            InvalidState: GoAway was sent or received, or the session ended.
            LimitExceeded: ``max_streams`` streams are open, or the stream ids ran out.
        """
        self._check_alive()
        if self._local_goaway or self._remote_goaway:
            raise InvalidState("yamux: no new streams after GoAway")
        if len(self._streams) >= self.config.max_streams:
            raise LimitExceeded(f"yamux: {len(self._streams)} streams open", limit="max_streams")
        sid = self._next_id
        if sid > U32_MAX:
            raise LimitExceeded("yamux: stream ids exhausted", limit="stream_ids")
        self._next_id = sid + 2
        cfg = self.config
        state = STREAM_TRANSITIONS[StreamState.INIT][StreamTrigger.SEND_SYN]
        self._streams[sid] = Stream(state, cfg.initial_window, cfg.receive_window, False)
        self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_SYN, sid, self._syn_delta))
        return sid

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows, in frames of at most
        ``max_frame_payload`` bytes; return how many bytes were taken (0 when the window is 0:
        wait for :class:`WindowUpdated`). Bytes other than ``bytes`` are copied.

        After calling this method: call data_to_send() and send the bytes.

        Raises:
            StreamClosed: we closed the stream (or it is over); exceptions.StreamReset if it was reset.
            InvalidArgument: no such stream was ever opened.
        """
        st = self._streams.get(stream_id)
        if st is None or not st.can_send:
            self._check_alive()
            raise self._not_sendable(stream_id, st)
        n = len(data)
        window = st.send_window
        n = min(n, window)
        if n == 0:
            return 0
        if type(data) is not bytes:
            data = bytes(data[:n])
        st.send_window = window - n
        out = self._out
        maxp = self._max_payload
        if n <= maxp:
            out.append(pack_header(0, TYPE_DATA, 0, stream_id, n))
            out.append(data if n == len(data) else memoryview(data)[:n])
            return n
        view = memoryview(data)
        for off in range(0, n, maxp):
            size = min(maxp, n - off)
            out.append(pack_header(0, TYPE_DATA, 0, stream_id, size))
            out.append(view[off : off + size])
        return n

    def send_window(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` would accept now on the stream (0 if it cannot send)."""
        st = self._streams.get(stream_id)
        return st.send_window if st is not None and st.can_send else 0

    def consume(self, stream_id: int, n: int) -> None:
        """The application took ``n`` received bytes off the stream. Once half of
        ``receive_window`` is owed a WindowUpdate returns it (go-yamux ``GrowTo``). Unknown or
        ended streams are ignored.

        After calling this method: call data_to_send() and send the bytes.

        Raises:
            InvalidArgument: ``n`` is negative or more than was delivered and not yet consumed.
        """
        st = self._streams.get(stream_id)
        if st is None:
            if n < 0:
                raise InvalidArgument("yamux: consume() of a negative count")
            return
        if not 0 <= n <= st.unconsumed:
            raise InvalidArgument(f"yamux: consume({n}) but {st.unconsumed} bytes are unconsumed")
        st.unconsumed -= n
        owed = st.owed + n
        if owed >= self._update_threshold and st.can_recv and self._dead is None:
            st.recv_window += owed
            st.owed = 0
            self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, 0, stream_id, owed))
        else:
            st.owed = owed

    def close_stream(self, stream_id: int) -> None:
        """Half-close our side (FIN); the remote may still send. Closing twice does nothing.

        After calling this method: call data_to_send() and send the bytes.

        Raises:
            exceptions.StreamReset: the stream was reset. InvalidArgument: it was never opened.
        """
        self._check_alive()
        st = self._streams.get(stream_id)
        if st is None:
            exc = self._not_sendable(stream_id, None)
            if isinstance(exc, StreamResetError | InvalidArgument):
                raise exc
            return
        if StreamTrigger.SEND_FIN not in STREAM_TRANSITIONS[st.state]:
            return  # already closed by us
        self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0))
        self._transition(stream_id, st, StreamTrigger.SEND_FIN)

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Reset the stream (RST in a WindowUpdate whose length is ``code``, as go-yamux v5).
        A stream already over is left alone.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if not 0 <= code <= U32_MAX:
            raise InvalidArgument("yamux: reset code must fit in 32 bits")
        st = self._streams.get(stream_id)
        if st is None:
            if not self._is_known(stream_id):
                raise InvalidArgument(f"yamux: stream {stream_id} was never opened")
            return
        self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, code))
        self._transition(stream_id, st, StreamTrigger.SEND_RST)

    def ping(self) -> int:
        """Send a ping; :class:`PongReceived` with the returned opaque value follows.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if len(self._pings) >= _MAX_OUTSTANDING_PINGS:
            raise LimitExceeded("yamux: too many unanswered pings", limit="pings")
        opaque = self._ping_id
        self._ping_id = (opaque + 1) & U32_MAX
        self._pings.add(opaque)
        self._out.append(pack_header(0, TYPE_PING, FLAG_SYN, 0, opaque))
        return opaque

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """Tell the remote we accept no new streams (existing ones continue); later inbound SYNs
        are reset and :meth:`open_stream` refuses.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if not 0 <= code <= U32_MAX:
            raise InvalidArgument("yamux: GoAway code must fit in 32 bits")
        self._queue_goaway(code)

    def stream_state(self, stream_id: int) -> StreamState:
        """The stream's state; INIT for an id never used, CLOSED for one long over."""
        st = self._streams.get(stream_id)
        if st is not None:
            return st.state
        ended = self._ended.get(stream_id)
        if ended is not None:
            return ended
        return StreamState.CLOSED if self._is_known(stream_id) else StreamState.INIT

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has something."""
        return bool(self._out)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _queue_goaway(self, code: int) -> None:
        self._local_goaway = True
        self._out.append(pack_header(0, TYPE_GO_AWAY, 0, 0, code))

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise InvalidState(self._dead)

    def _not_sendable(self, sid: int, st: Stream | None) -> Exception:
        if st is not None:
            return StreamClosed(f"yamux: stream {sid} is {st.state.value}: no more data may be sent")
        if self._ended.get(sid) is StreamState.RESET:
            return StreamResetError(f"yamux: stream {sid} was reset")
        if self._is_known(sid):
            return StreamClosed(f"yamux: stream {sid} is closed")
        return InvalidArgument(f"yamux: stream {sid} was never opened")
