"""yamux stream multiplexer (``/yamux/1.0.0``) as a sans-I/O core.

Spec: hashicorp/yamux ``spec.md`` (framing, flags, flow control, session termination); behaviour
matched to go-yamux v5.0.1 as configured by go-libp2p v0.46 (PROTOCOL.md §2.2,
``YX:session.go``, ``YX:stream.go``).

Theory of operation
-------------------
Frames are ``version u8 | type u8 | flags u16 | stream id u32 | length u32`` (big endian) and, for
Data frames, ``length`` bytes of payload. The parser is a hand-written loop over the input chunk
with ``struct.unpack_from`` at an offset (measured faster than a generator over ``StreamReader``);
only the bytes of an incomplete header are kept between calls. A stream's life is the table
:data:`STREAM_TRANSITIONS` (h11 style). A local action the state does not allow raises (sending)
or does nothing (closing twice, resetting a stream that is over); a remote flag the state does not
allow is ignored (duplicate FIN / ACK, as go-yamux does), but data after the remote's FIN resets
the stream.

Invariants:

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

import enum
import struct
from dataclasses import dataclass

from ..exceptions import (
    FlowControlError,
    InvalidArgument,
    InvalidConfig,
    InvalidState,
    LimitExceeded,
    MuxerProtocolError,
    RemoteProtocolError,
    StreamClosed,
)
from ..exceptions import (
    StreamReset as StreamResetError,
)

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

HEADER_SIZE = 12
TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY = 0, 1, 2, 3
FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST = 1, 2, 4, 8
GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, GO_AWAY_INTERNAL_ERROR = 0, 1, 2
# go-libp2p StreamErrorCode values carried in our RST frames (``LP:core/network/mux.go``).
RESET_RESOURCE_LIMIT = 0x1002
RESET_PROTOCOL_VIOLATION = 0x1004

_U32 = 0xFFFFFFFF
_HEADER = struct.Struct(">BBHII")
_pack = _HEADER.pack
_unpack = _HEADER.unpack_from
_MAX_PENDING_PONGS = 1024  # go-yamux drops pong replies past a backlog too (PingBacklog 32)
_MAX_OUTSTANDING_PINGS = 1024
_MAX_TOMBSTONES = 256
_MAX_ID_GAPS = 4096  # out-of-order remote ids remembered; go-yamux reorders at most AcceptBacklog


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Limits of one yamux session.

    Attributes:
        initial_window: the window both sides assume for a new stream; fixed at 256 KiB by the
            spec (change it only in tests).
        receive_window: the window we grant per stream; the extra beyond ``initial_window`` is
            announced with our SYN / ACK window update. go-libp2p's maximum is 16 MiB.
        max_streams: open streams, both directions; an inbound SYN beyond it is reset.
        max_frame_payload: payload of the Data frames we send (go-yamux: MaxMessageSize 64 KiB).
    """

    initial_window: int = 256 * 1024
    receive_window: int = 16 * 1024 * 1024
    max_streams: int = 1024
    max_frame_payload: int = 64 * 1024

    def __post_init__(self) -> None:
        if not 0 < self.initial_window <= self.receive_window <= _U32:
            raise InvalidConfig("yamux: need 0 < initial_window <= receive_window < 2**32")
        if self.max_streams < 1:
            raise InvalidConfig("yamux: max_streams must be positive")
        if not 0 < self.max_frame_payload <= _U32:
            raise InvalidConfig("yamux: max_frame_payload must be positive")


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The remote opened a stream (we have already queued the ACK)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The remote ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for a stream. Call :meth:`YamuxProtocol.consume` once the application took them."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The remote half-closed the stream (FIN): no more data will come."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was reset: by the remote (``remote=True``, ``code`` from its RST; 0 for an RST on
    a Data frame), or by this core because the remote broke the stream's rules (``remote=False``,
    our RST already queued). Not to be confused with the exception ``exceptions.StreamReset``,
    which this module imports as ``StreamResetError``."""

    stream_id: int
    code: int
    remote: bool = True


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """Our send window on the stream grew: a writer waiting for window may continue."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The answer to :meth:`YamuxProtocol.ping` with this opaque value arrived."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The remote will accept no new streams (0 normal, 1 protocol error, 2 internal error, or a
    go-libp2p ConnErrorCode). Streams already open continue."""

    code: int


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The layer below ended (EOF). Every stream is gone."""


YamuxEvent = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | PongReceived
    | GoAwayReceived
    | ConnectionEnded
)


# --- stream state machine -----------------------------------------------------------------------


class StreamState(enum.Enum):
    INIT = "init"
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    LOCAL_CLOSED = "local-closed"
    REMOTE_CLOSED = "remote-closed"
    CLOSED = "closed"
    RESET = "reset"


class StreamTrigger(enum.Enum):
    SEND_SYN = "send-syn"
    RECV_SYN = "recv-syn"
    SEND_ACK = "send-ack"
    RECV_ACK = "recv-ack"
    SEND_FIN = "send-fin"
    RECV_FIN = "recv-fin"
    SEND_RST = "send-rst"
    RECV_RST = "recv-rst"


S, T = StreamState, StreamTrigger
_RESETS = {T.SEND_RST: S.RESET, T.RECV_RST: S.RESET}
STREAM_TRANSITIONS: dict[StreamState, dict[StreamTrigger, StreamState]] = {
    S.INIT: {T.SEND_SYN: S.SYN_SENT, T.RECV_SYN: S.SYN_RECEIVED},
    # Data may flow before the ACK (spec: "Opening a stream"); our FIN may precede it too.
    S.SYN_SENT: {
        T.RECV_ACK: S.ESTABLISHED,
        T.SEND_FIN: S.LOCAL_CLOSED,
        T.RECV_FIN: S.REMOTE_CLOSED,
        **_RESETS,
    },
    # Transient: the core ACKs an inbound SYN at once (no accept backlog here).
    S.SYN_RECEIVED: {T.SEND_ACK: S.ESTABLISHED, **_RESETS},
    S.ESTABLISHED: {T.SEND_FIN: S.LOCAL_CLOSED, T.RECV_FIN: S.REMOTE_CLOSED, **_RESETS},
    S.LOCAL_CLOSED: {T.RECV_ACK: S.LOCAL_CLOSED, T.RECV_FIN: S.CLOSED, **_RESETS},
    S.REMOTE_CLOSED: {T.RECV_ACK: S.REMOTE_CLOSED, T.SEND_FIN: S.CLOSED, **_RESETS},
    S.CLOSED: {},
    S.RESET: {},
}
_CAN_SEND = frozenset({S.SYN_SENT, S.ESTABLISHED, S.REMOTE_CLOSED})
_CAN_RECV = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.LOCAL_CLOSED})
_ENDED = frozenset({S.CLOSED, S.RESET})
del S, T


class _Stream:
    """Per-stream counters; ``can_send`` / ``can_recv`` cache the state for the hot paths."""

    __slots__ = ("acked", "can_recv", "can_send", "owed", "recv_window", "send_window", "state", "unconsumed")

    def __init__(self, state: StreamState, send_window: int, recv_window: int, acked: bool) -> None:
        self.state = state
        self.can_send = state in _CAN_SEND
        self.can_recv = state in _CAN_RECV
        self.send_window = send_window
        self.recv_window = recv_window  # bytes the remote may still send
        self.unconsumed = 0  # delivered in DataReceived, not yet consume()d
        self.owed = 0  # consumed, not yet returned in a WindowUpdate
        self.acked = acked


# --- the core -----------------------------------------------------------------------------------


class YamuxProtocol:
    """One yamux session. ``is_client`` is the side that dialled (it uses odd stream ids)."""

    def __init__(self, *, is_client: bool, config: YamuxConfig | None = None) -> None:
        self.config = config = config or YamuxConfig()
        self.is_client = is_client
        self.streams_refused = 0  # inbound SYNs answered with RST (limit, GoAway, reused id)
        self._streams: dict[int, _Stream] = {}
        self._ended: dict[int, StreamState] = {}  # bounded: recently ended streams
        self._next_id = 1 if is_client else 2
        self._remote_parity = 0 if is_client else 1
        self._remote_floor = -1 if is_client else 0  # every remote id <= floor has been opened
        self._remote_seen: set[int] = set()  # remote ids above the floor that were opened
        self._syn_delta = config.receive_window - config.initial_window
        self._update_threshold = config.receive_window // 2  # go-yamux: segmentedBuffer.GrowTo
        self._max_payload = config.max_frame_payload
        self._events: list[YamuxEvent] = []
        self._out: list[bytes | memoryview] = []
        self._rest = b""  # an incomplete header
        self._payload_left = 0  # payload bytes of the current Data frame still to come
        self._payload_sid = 0  # where they go; 0 = skip them
        self._payload_fin = False  # the frame carried FIN: apply it after the payload
        self._ping_id = 0
        self._pings: set[int] = set()
        self._pending_pongs = 0
        self._local_goaway = False
        self._remote_goaway = False
        self._dead: str | None = None  # why the session can no longer be used

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
        if sid > _U32:
            raise LimitExceeded("yamux: stream ids exhausted", limit="stream_ids")
        self._next_id = sid + 2
        cfg = self.config
        state = STREAM_TRANSITIONS[StreamState.INIT][StreamTrigger.SEND_SYN]
        self._streams[sid] = _Stream(state, cfg.initial_window, cfg.receive_window, False)
        self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_SYN, sid, self._syn_delta))
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
            out.append(_pack(0, TYPE_DATA, 0, stream_id, n))
            out.append(data if n == len(data) else memoryview(data)[:n])
            return n
        view = memoryview(data)
        for off in range(0, n, maxp):
            size = min(maxp, n - off)
            out.append(_pack(0, TYPE_DATA, 0, stream_id, size))
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
            self._out.append(_pack(0, TYPE_WINDOW_UPDATE, 0, stream_id, owed))
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
        self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0))
        self._transition(stream_id, st, StreamTrigger.SEND_FIN)

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Reset the stream (RST in a WindowUpdate whose length is ``code``, as go-yamux v5).
        A stream already over is left alone.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if not 0 <= code <= _U32:
            raise InvalidArgument("yamux: reset code must fit in 32 bits")
        st = self._streams.get(stream_id)
        if st is None:
            if not self._is_known(stream_id):
                raise InvalidArgument(f"yamux: stream {stream_id} was never opened")
            return
        self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, code))
        self._transition(stream_id, st, StreamTrigger.SEND_RST)

    def ping(self) -> int:
        """Send a ping; :class:`PongReceived` with the returned opaque value follows.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if len(self._pings) >= _MAX_OUTSTANDING_PINGS:
            raise LimitExceeded("yamux: too many unanswered pings", limit="pings")
        opaque = self._ping_id
        self._ping_id = (opaque + 1) & _U32
        self._pings.add(opaque)
        self._out.append(_pack(0, TYPE_PING, FLAG_SYN, 0, opaque))
        return opaque

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """Tell the remote we accept no new streams (existing ones continue); later inbound SYNs
        are reset and :meth:`open_stream` refuses.

        After calling this method: call data_to_send() and send the bytes.
        """
        self._check_alive()
        if not 0 <= code <= _U32:
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

    # --- receiving -----------------------------------------------------------------------------

    def _parse(self, buf: bytes, pos: int) -> None:
        end = len(buf)
        events = self._events
        streams = self._streams
        while pos < end:
            left = self._payload_left
            if left:  # the rest of a Data frame's payload
                take = end - pos
                take = min(take, left)
                sid = self._payload_sid
                if sid:
                    events.append(DataReceived(sid, buf[pos : pos + take]))
                pos += take
                left -= take
                self._payload_left = left
                if not left and self._payload_fin:
                    self._payload_fin = False
                    st = streams.get(sid)
                    if st is not None:
                        self._remote_fin(sid, st)
                continue
            if end - pos < HEADER_SIZE:
                self._rest = buf[pos:]
                return
            version, typ, flags, sid, length = _unpack(buf, pos)
            pos += HEADER_SIZE
            if not (version | typ | flags):  # hot path: plain Data on a stream that may receive
                st = streams.get(sid)
                if st is not None and st.can_recv:
                    if length > st.recv_window:
                        raise self._window_exceeded(sid, st, length)
                    st.recv_window -= length
                    st.unconsumed += length
                    if length <= end - pos:
                        if length:
                            events.append(DataReceived(sid, buf[pos : pos + length]))
                            pos += length
                    else:
                        self._payload_left = length
                        self._payload_sid = sid
                    continue
            if version != 0:
                raise MuxerProtocolError(f"yamux: unsupported version {version}")
            if typ <= TYPE_WINDOW_UPDATE:
                self._stream_frame(typ, flags, sid, length)
            elif typ == TYPE_PING:
                self._ping_frame(flags, length)
            elif typ == TYPE_GO_AWAY:
                self._remote_goaway = True
                events.append(GoAwayReceived(length))
            else:
                raise MuxerProtocolError(f"yamux: unknown frame type {typ}")

    def _stream_frame(self, typ: int, flags: int, sid: int, length: int) -> None:
        """A Data or WindowUpdate frame that is not plain data (go-yamux handleStreamMessage)."""
        is_data = typ == TYPE_DATA
        if sid == 0:
            raise MuxerProtocolError(f"yamux: {'Data' if is_data else 'WindowUpdate'} frame on stream 0")
        st = self._streams.get(sid)
        if flags & FLAG_SYN:
            if st is not None:
                raise MuxerProtocolError(f"yamux: SYN for stream {sid}, which is open")
            st = self._remote_syn(sid)
            if st is None:  # refused with RST
                self._skip_payload(is_data, length)
                return
        elif st is None:
            if not self._is_known(sid):
                raise MuxerProtocolError(f"yamux: frame for stream {sid}, which was never opened")
            self._skip_payload(is_data, length)  # a late frame for a stream that is over
            return
        if flags & FLAG_ACK and not st.acked:
            st.acked = True
            if StreamTrigger.RECV_ACK in STREAM_TRANSITIONS[st.state]:
                self._transition(sid, st, StreamTrigger.RECV_ACK)
            self._events.append(StreamAccepted(sid))
        if flags & FLAG_RST:
            # go-yamux v5 sends RST on a WindowUpdate whose length is an error code.
            self._transition(sid, st, StreamTrigger.RECV_RST)
            self._events.append(StreamReset(sid, 0 if is_data else length))
            self._skip_payload(is_data, length)
            return
        if not is_data:
            if length:
                window = st.send_window + length
                if window > _U32:
                    raise MuxerProtocolError(f"yamux: window update overflows stream {sid}'s window")
                st.send_window = window
                if st.can_send and not flags & FLAG_SYN:
                    self._events.append(WindowUpdated(sid))
            if flags & FLAG_FIN:
                self._remote_fin(sid, st)
            return
        if length:
            if length > st.recv_window:
                raise self._window_exceeded(sid, st, length)
            if not st.can_recv:  # data after the remote's FIN: a stream error, not a session one
                self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, RESET_PROTOCOL_VIOLATION))
                self._transition(sid, st, StreamTrigger.SEND_RST)
                self._events.append(StreamReset(sid, RESET_PROTOCOL_VIOLATION, remote=False))
                self._skip_payload(True, length)
                return
            st.recv_window -= length
            st.unconsumed += length
            self._payload_left = length
            self._payload_sid = sid
            self._payload_fin = bool(flags & FLAG_FIN)
        elif flags & FLAG_FIN:
            self._remote_fin(sid, st)

    def _remote_syn(self, sid: int) -> _Stream | None:
        """An inbound SYN (go-yamux incomingStream); returns None when refused with RST."""
        if sid & 1 != self._remote_parity:
            raise MuxerProtocolError(f"yamux: SYN for stream {sid}, an id of ours (both sides clients?)")
        reused = self._is_known(sid)
        if not reused:
            self._note_remote_id(sid)
        if reused or self._local_goaway or len(self._streams) >= self.config.max_streams:
            code = RESET_RESOURCE_LIMIT if not (reused or self._local_goaway) else 0
            self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, code))
            self.streams_refused += 1
            return None
        cfg = self.config
        state = STREAM_TRANSITIONS[StreamState.INIT][StreamTrigger.RECV_SYN]
        st = _Stream(state, cfg.initial_window, cfg.receive_window, True)
        self._streams[sid] = st
        self._out.append(_pack(0, TYPE_WINDOW_UPDATE, FLAG_ACK, sid, self._syn_delta))
        self._transition(sid, st, StreamTrigger.SEND_ACK)
        self._events.append(StreamOpened(sid))
        return st

    def _remote_fin(self, sid: int, st: _Stream) -> None:
        if StreamTrigger.RECV_FIN in STREAM_TRANSITIONS[st.state]:
            self._transition(sid, st, StreamTrigger.RECV_FIN)
            self._events.append(StreamEnded(sid))
        # else a duplicate FIN: ignored, as go-yamux does

    def _ping_frame(self, flags: int, opaque: int) -> None:
        if flags & FLAG_SYN:
            if self._pending_pongs < _MAX_PENDING_PONGS:
                self._pending_pongs += 1
                self._out.append(_pack(0, TYPE_PING, FLAG_ACK, 0, opaque))
        elif flags & FLAG_ACK and opaque in self._pings:
            self._pings.discard(opaque)
            self._events.append(PongReceived(opaque))

    def _skip_payload(self, is_data: bool, length: int) -> None:
        if is_data and length:
            self._payload_left = length
            self._payload_sid = 0
            self._payload_fin = False

    def _window_exceeded(self, sid: int, st: _Stream, length: int) -> FlowControlError:
        return FlowControlError(
            f"yamux: {length} bytes of data on stream {sid} exceed its receive window ({st.recv_window})"
        )

    # --- bookkeeping ---------------------------------------------------------------------------

    def _transition(self, sid: int, st: _Stream, trigger: StreamTrigger) -> None:
        state = STREAM_TRANSITIONS[st.state][trigger]
        st.state = state
        st.can_send = state in _CAN_SEND
        st.can_recv = state in _CAN_RECV
        if state in _ENDED:
            del self._streams[sid]
            if self._payload_sid == sid:  # reset while its payload is arriving: skip the rest
                self._payload_sid = 0
                self._payload_fin = False
            ended = self._ended
            ended[sid] = state
            if len(ended) > _MAX_TOMBSTONES:
                del ended[next(iter(ended))]

    def _is_known(self, sid: int) -> bool:
        """Whether ``sid`` was ever opened (by either side)."""
        if sid <= 0:
            return False
        if sid & 1 == self._remote_parity:
            return sid <= self._remote_floor or sid in self._remote_seen
        return sid < self._next_id

    def _note_remote_id(self, sid: int) -> None:
        seen = self._remote_seen
        floor = self._remote_floor
        if sid == floor + 2:
            floor = sid
        else:
            seen.add(sid)
            if len(seen) > _MAX_ID_GAPS:  # give up on the oldest gap: its ids count as used
                floor = min(seen)
                seen.discard(floor)
        while floor + 2 in seen:
            floor += 2
            seen.discard(floor)
        self._remote_floor = floor

    def _queue_goaway(self, code: int) -> None:
        self._local_goaway = True
        self._out.append(_pack(0, TYPE_GO_AWAY, 0, 0, code))

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise InvalidState(self._dead)

    def _not_sendable(self, sid: int, st: _Stream | None) -> Exception:
        if st is not None:
            return StreamClosed(f"yamux: stream {sid} is {st.state.value}: no more data may be sent")
        if self._ended.get(sid) is StreamState.RESET:
            return StreamResetError(f"yamux: stream {sid} was reset")
        if self._is_known(sid):
            return StreamClosed(f"yamux: stream {sid} is closed")
        return InvalidArgument(f"yamux: stream {sid} was never opened")
