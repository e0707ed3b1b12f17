"""multistream-select on every yamux stream, sans-I/O: which protocol each stream speaks.

Spec: libp2p/specs ``connections/README.md`` (protocol negotiation); PROTOCOL.md §4.5. The message
format and the two sides' rules are in :mod:`.multistream`.

Theory of operation
-------------------
A libp2p stream carries one protocol, agreed at its start: the opener proposes protocols one at a
time, the listener echoes the one it accepts or answers ``na``. :class:`StreamNegotiations` runs
that agreement for every stream of one yamux session, with one multistream core per stream while
it negotiates (a :class:`MultistreamClient` for the streams we open, a :class:`MultistreamServer`
for those the remote opens). It works on the :class:`YamuxProtocol` it is given: it writes the
negotiation bytes with ``send_data``, returns their window with ``consume``, and takes the yamux
events of negotiating streams out of the flow (:meth:`StreamNegotiations.route`), putting in their
place what the negotiation produced.

Invariants:

1. While the session lives, a stream is in :attr:`StreamNegotiations.negotiating` exactly while
   it negotiates; its ``DataReceived`` and ``StreamEnded`` events are then the table's and never
   reach the application.
2. It leaves with exactly one event: :class:`StreamNegotiated`, :class:`StreamNegotiationFailed`,
   or yamux's ``StreamReset`` (the remote's RST, passed on); or with none when its owner resets it
   (:meth:`StreamNegotiations.forget`). When the session ends, nothing is said per stream.
3. Negotiation bytes go back to the remote's window at once. Bytes pipelined behind the agreement
   leave as one ``DataReceived`` right after :class:`StreamNegotiated` and stay charged to the
   window until the application consumes them, like any later data.
4. A failed negotiation sends what its multistream core still had to say (a listener's last
   ``na``), then resets the stream with code 0.
5. Every other event passes through unchanged and in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..exceptions import GlueberryError, StreamClosed
from ..exceptions import StreamReset as StreamResetError
from .multistream import MultistreamClient, MultistreamServer
from .yamux import (
    DataReceived,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxEvent,
    YamuxProtocol,
)

__all__ = ["StreamEvent", "StreamNegotiated", "StreamNegotiationFailed", "StreamNegotiations"]


@dataclass(frozen=True, slots=True)
class StreamNegotiated:
    """The stream agreed on ``protocol``; ``outbound``: we opened it. Data may flow both ways now;
    a ``DataReceived`` with bytes the remote sent behind the agreement may follow at once."""

    stream_id: int
    protocol: str
    outbound: bool


@dataclass(frozen=True, slots=True)
class StreamNegotiationFailed:
    """The stream found no protocol and was reset (our RST is queued). ``error`` says why:
    :class:`~glueberry.exceptions.NegotiationFailed` (nothing in common),
    :class:`~glueberry.exceptions.RemoteProtocolError` (a malformed message) or
    :class:`~glueberry.exceptions.StreamReset` (the remote closed the stream first)."""

    stream_id: int
    error: GlueberryError


StreamEvent = YamuxEvent | StreamNegotiated | StreamNegotiationFailed
_Negotiation = MultistreamClient | MultistreamServer


class StreamNegotiations:
    """The streams of one yamux session that have not agreed on a protocol yet.

    Args:
        yamux: the session; negotiation bytes are written to it and consumed from it here.
        supports: whether an inbound stream may use a protocol. None leaves the streams the remote
            opens plain yamux streams, never negotiated (for tests of the layers below).
    """

    __slots__ = ("_supports", "_yamux", "negotiating")

    def __init__(self, yamux: YamuxProtocol, supports: Callable[[str], bool] | None) -> None:
        self._yamux = yamux
        self._supports = supports
        # stream id -> its multistream core; read it, never change it from outside
        self.negotiating: dict[int, _Negotiation] = {}

    def open_stream(self, protocols: Sequence[str]) -> int:
        """Open a stream that proposes ``protocols`` in order; return its id.

        After calling this method: call the session's data_to_send() (the SYN, then the header and
        first proposal). :class:`StreamNegotiated` or :class:`StreamNegotiationFailed` comes out of
        :meth:`route` later.

        Raises:
            LocalProtocolError: ``protocols`` is empty or holds an ID over the message limit
                (checked before the stream is opened).
            InvalidState, LimitExceeded: the session refuses new streams.
        """
        client = MultistreamClient(protocols)
        stream_id = self._yamux.open_stream()
        self.negotiating[stream_id] = client
        self._send(stream_id, client)
        return stream_id

    def forget(self, stream_id: int) -> bool:
        """Drop the stream's negotiation, without a word to the remote (its owner resets the
        stream). Returns whether it was negotiating."""
        return self.negotiating.pop(stream_id, None) is not None

    def route(self, events: list[YamuxEvent]) -> Sequence[StreamEvent]:
        """The session's ``events`` as the application should see them: those of negotiating
        streams are handled here and replaced by what their negotiations produced.

        After calling this method: call the session's data_to_send() (answers, window updates and
        resets may be queued).
        """
        if not self.negotiating:
            for event in events:  # the usual case: no negotiation runs and no stream opens
                if type(event) is StreamOpened:
                    break
            else:
                return events
        negotiating = self.negotiating
        out: list[StreamEvent] = []
        for event in events:
            if type(event) is DataReceived:
                negotiation = negotiating.get(event.stream_id)
                if negotiation is not None:
                    self._receive(event.stream_id, negotiation, event.data, out)
                    continue
            elif type(event) is StreamOpened:
                if self._supports is not None:
                    server = MultistreamServer(self._supports)
                    negotiating[event.stream_id] = server
                    self._send(event.stream_id, server)  # our header goes out at once
            elif type(event) is StreamEnded:
                negotiation = negotiating.get(event.stream_id)
                if negotiation is not None:
                    error = StreamResetError("the remote closed the stream during negotiation")
                    self._fail(event.stream_id, negotiation, error, out)
                    continue
            elif type(event) is StreamReset:
                negotiating.pop(event.stream_id, None)
            out.append(event)
        return out

    # Internals.

    def _receive(
        self, stream_id: int, negotiation: _Negotiation, data: bytes, out: list[StreamEvent]
    ) -> None:
        try:
            negotiation.receive_data(data)
        except GlueberryError as exc:
            self._fail(stream_id, negotiation, exc, out)  # reset: the stream's window is moot
            return
        self._send(stream_id, negotiation)
        agreed = negotiation.events_received()
        if not agreed:
            self._yamux.consume(stream_id, len(data))
            return
        (agreement,) = agreed  # a multistream core agrees once, then is done
        del self.negotiating[stream_id]
        remainder = agreement.remainder
        self._yamux.consume(stream_id, len(data) - len(remainder))  # the remainder is the reader's
        out.append(StreamNegotiated(stream_id, agreement.protocol, type(negotiation) is MultistreamClient))
        if remainder:
            out.append(DataReceived(stream_id, remainder))

    def _fail(
        self, stream_id: int, negotiation: _Negotiation, error: GlueberryError, out: list[StreamEvent]
    ) -> None:
        del self.negotiating[stream_id]
        self._send(stream_id, negotiation)
        self._yamux.reset_stream(stream_id, 0)
        out.append(StreamNegotiationFailed(stream_id, error))

    def _send(self, stream_id: int, negotiation: _Negotiation) -> None:
        chunks = negotiation.data_to_send()
        if not chunks:
            return
        # The remote may have reset the stream later in the same read: yamux has forgotten it
        # already, and its StreamReset event comes after the one being handled.
        with contextlib.suppress(StreamClosed):
            self._yamux.send_data(stream_id, b"".join(chunks))
