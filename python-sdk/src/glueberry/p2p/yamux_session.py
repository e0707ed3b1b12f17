"""The state of one yamux session, and what the remote's frames do to it.

Spec: hashicorp/yamux ``spec.md``; behaviour matched to go-yamux v5.0.1 as configured by go-libp2p
v0.46 (PROTOCOL.md §2.2, ``YX:session.go`` ``handleStreamMessage``, ``incomingStream``,
``handlePing``).

:class:`YamuxSession` is the half of :class:`~glueberry.p2p.yamux.YamuxProtocol` that the remote
drives. It holds all of the session's state (the invariants are listed in ``yamux.py``) and turns
each frame received into state changes, events and replies (ACK, RST, pong); ``YamuxProtocol``
adds the feed/drain API and the application's actions on the same state. A base class rather than
a helper object: the per-frame paths of both halves read the same attributes of ``self``, with no
object in between.

Theory of operation
-------------------
The parser is a hand-written loop over the input chunk with ``struct.unpack_from`` at an offset
(measured faster than a generator over ``StreamReader``); only the bytes of an incomplete header
are kept between calls. Plain Data on a stream that may receive takes a short path in the loop;
every other frame goes to a handler. A remote flag the stream's state does not allow is ignored
(duplicate FIN / ACK, as go-yamux does), but data after the remote's FIN resets the stream. A
frame the session cannot take (an unknown version or type, an id never opened, more data than the
window: invariants 2 and 5 in ``yamux.py``) raises a ``RemoteProtocolError`` out of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import FlowControlError, InvalidConfig, MuxerProtocolError
from .yamux_events import (
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
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    HEADER_SIZE,
    RESET_PROTOCOL_VIOLATION,
    RESET_RESOURCE_LIMIT,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    U32_MAX,
    pack_header,
    unpack_header,
)
from .yamux_streams import CAN_RECV, CAN_SEND, ENDED, STREAM_TRANSITIONS, Stream, StreamState, StreamTrigger

__all__ = ["YamuxConfig", "YamuxSession"]

_MAX_PENDING_PONGS = 1024  # go-yamux drops pong replies past a backlog too (PingBacklog 32)
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
        if not 0 < self.initial_window <= self.receive_window <= U32_MAX:
            raise InvalidConfig("yamux: need 0 < initial_window <= receive_window < 2**32")
        if self.max_streams < 1:
            raise InvalidConfig("yamux: max_streams must be positive")
        if not 0 < self.max_frame_payload <= U32_MAX:
            raise InvalidConfig("yamux: max_frame_payload must be positive")


class YamuxSession:
    """The state of one yamux session and its receiving half; used through
    :class:`~glueberry.p2p.yamux.YamuxProtocol`. ``is_client`` is the side that dialled (it uses
    odd stream ids)."""

    def __init__(self, *, is_client: bool, config: YamuxConfig | None = None) -> None:
        self.config = config = config or YamuxConfig()
        self.is_client = is_client
        self.streams_refused = 0  # inbound SYNs answered with RST (limit, GoAway, reused id)
        self._streams: dict[int, Stream] = {}
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
            version, typ, flags, sid, length = unpack_header(buf, pos)
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
                if window > U32_MAX:
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
                self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, RESET_PROTOCOL_VIOLATION))
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

    def _remote_syn(self, sid: int) -> Stream | None:
        """An inbound SYN (go-yamux incomingStream); returns None when refused with RST."""
        if sid & 1 != self._remote_parity:
            raise MuxerProtocolError(f"yamux: SYN for stream {sid}, an id of ours (both sides clients?)")
        reused = self._is_known(sid)
        if not reused:
            self._note_remote_id(sid)
        if reused or self._local_goaway or len(self._streams) >= self.config.max_streams:
            code = RESET_RESOURCE_LIMIT if not (reused or self._local_goaway) else 0
            self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, code))
            self.streams_refused += 1
            return None
        cfg = self.config
        state = STREAM_TRANSITIONS[StreamState.INIT][StreamTrigger.RECV_SYN]
        st = Stream(state, cfg.initial_window, cfg.receive_window, True)
        self._streams[sid] = st
        self._out.append(pack_header(0, TYPE_WINDOW_UPDATE, FLAG_ACK, sid, self._syn_delta))
        self._transition(sid, st, StreamTrigger.SEND_ACK)
        self._events.append(StreamOpened(sid))
        return st

    def _remote_fin(self, sid: int, st: Stream) -> None:
        if StreamTrigger.RECV_FIN in STREAM_TRANSITIONS[st.state]:
            self._transition(sid, st, StreamTrigger.RECV_FIN)
            self._events.append(StreamEnded(sid))
        # else a duplicate FIN: ignored, as go-yamux does

    def _ping_frame(self, flags: int, opaque: int) -> None:
        if flags & FLAG_SYN:
            if self._pending_pongs < _MAX_PENDING_PONGS:
                self._pending_pongs += 1
                self._out.append(pack_header(0, TYPE_PING, FLAG_ACK, 0, opaque))
        elif flags & FLAG_ACK and opaque in self._pings:
            self._pings.discard(opaque)
            self._events.append(PongReceived(opaque))

    def _skip_payload(self, is_data: bool, length: int) -> None:
        if is_data and length:
            self._payload_left = length
            self._payload_sid = 0
            self._payload_fin = False

    def _window_exceeded(self, sid: int, st: Stream, length: int) -> FlowControlError:
        return FlowControlError(
            f"yamux: {length} bytes of data on stream {sid} exceed its receive window ({st.recv_window})"
        )

    # --- bookkeeping ---------------------------------------------------------------------------

    def _transition(self, sid: int, st: Stream, trigger: StreamTrigger) -> None:
        state = STREAM_TRANSITIONS[st.state][trigger]
        st.state = state
        st.can_send = state in CAN_SEND
        st.can_recv = state in CAN_RECV
        if state in ENDED:
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
