"""multistream-select on each stream, inside ConnectionCore (libp2p connections spec, "Protocol
Negotiation"; PROTOCOL.md §4.5), with two cores joined in memory after their upgrade.

Where a test needs a remote that misbehaves or writes byte by byte, that side is a core made
without ``supports``: its streams are plain yamux streams, and the test writes and reads the
multistream bytes itself.
"""

from __future__ import annotations

import pytest

from glueberry.exceptions import (
    InvalidArgument,
    InvalidState,
    LocalProtocolError,
    NegotiationFailed,
    RemoteProtocolError,
)
from glueberry.exceptions import StreamReset as StreamResetError
from glueberry.p2p import yamux
from glueberry.p2p.connection import (
    ConnectionCore,
    ConnectionEvent,
    StreamNegotiated,
    StreamNegotiationFailed,
    UpgradeCompleted,
)
from glueberry.p2p.multistream import HEADER, MAX_PROPOSALS, NA, encode_message
from tests.helpers import pump, splits
from tests.sdk.cores import Supports, side

ECHO = "/echo/1.0.0"
OTHER = "/other/1.0.0"


def muxed_pair(
    *, client: Supports | None = None, server: Supports | None = None
) -> tuple[ConnectionCore, ConnectionCore]:
    """A dialler and a listener, upgraded; ``client`` / ``server``: what each side's inbound
    streams may use (None: they are plain)."""
    listener, listener_id = side(False, supports=server)
    dialler, _ = side(True, supports=client, expected=listener_id)
    pump(dialler, listener)
    assert UpgradeCompleted() in dialler.events_received()
    assert UpgradeCompleted() in listener.events_received()
    return dialler, listener


def serves(*protocols: str) -> Supports:
    return set(protocols).__contains__


def transfer(src: ConnectionCore, dst: ConnectionCore) -> list[ConnectionEvent]:
    """Hand everything ``src`` has to say to ``dst`` in one read; return ``dst``'s events."""
    dst.receive_data(b"".join(src.data_to_send()))
    return dst.events_received()


def exchange(a: ConnectionCore, b: ConnectionCore) -> tuple[list[ConnectionEvent], list[ConnectionEvent]]:
    """Let the two cores talk until both are quiet; return the events of each."""
    pump(a, b)
    return a.events_received(), b.events_received()


def lines(*texts: str) -> bytes:
    return b"".join(encode_message(text) for text in texts)


def without_credit(events: list[ConnectionEvent]) -> list[ConnectionEvent]:
    """``events`` without yamux's acknowledgements and window credit (our SYN asks for a larger
    window than the initial one, so an ACK comes with both)."""
    return [e for e in events if not isinstance(e, yamux.StreamAccepted | yamux.WindowUpdated)]


def data_of(events: list[ConnectionEvent], stream_id: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, yamux.DataReceived) and e.stream_id == stream_id)


def failure(events: list[ConnectionEvent]) -> StreamNegotiationFailed:
    (failed,) = [e for e in events if isinstance(e, StreamNegotiationFailed)]
    return failed


def assert_charged(core: ConnectionCore, stream_id: int, n: int) -> None:
    """Exactly ``n`` received bytes of the stream wait to be consumed by the application (and
    are consumed here): negotiation bytes never count, pipelined data always does."""
    with pytest.raises(InvalidArgument):
        core.consume(stream_id, n + 1)
    core.consume(stream_id, n)


class TestDiallerSide:
    """Protocol negotiation, the stream's opener: propose in order, fall back after na, give up."""

    def test_first_proposal_agreed(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream([ECHO])
        client_events, server_events = exchange(client, server)
        assert client_events[0] == yamux.StreamAccepted(sid)
        assert without_credit(client_events) == [StreamNegotiated(sid, ECHO, outbound=True)]
        assert server_events == [yamux.StreamOpened(sid), StreamNegotiated(sid, ECHO, outbound=False)]
        assert_charged(client, sid, 0)
        assert_charged(server, sid, 0)
        client.send_data(sid, b"ping")
        assert transfer(client, server) == [yamux.DataReceived(sid, b"ping")]

    def test_falls_back_to_the_next_protocol_after_na(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream([OTHER, ECHO])
        client_events, server_events = exchange(client, server)
        assert StreamNegotiated(sid, ECHO, outbound=True) in client_events
        assert server_events == [yamux.StreamOpened(sid), StreamNegotiated(sid, ECHO, outbound=False)]

    def test_refused_fails_and_resets_the_stream(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream([OTHER, "/third/1.0.0"])
        client_events, server_events = exchange(client, server)
        assert client_events[0] == yamux.StreamAccepted(sid)
        failed = failure(client_events)
        assert failed.stream_id == sid
        assert isinstance(failed.error, NegotiationFailed)
        assert not any(isinstance(e, StreamNegotiated) for e in client_events)
        assert server_events == [yamux.StreamOpened(sid), yamux.StreamReset(sid, 0)]
        with pytest.raises(StreamResetError):
            client.send_data(sid, b"x")

    def test_data_pipelined_behind_the_answer_follows_the_event_and_is_charged(self) -> None:
        client, server = muxed_pair()  # the listener is plain: the test answers for it
        sid = client.open_stream([ECHO])
        assert data_of(transfer(client, server), sid) == lines(HEADER, ECHO)
        server.send_data(sid, lines(HEADER, ECHO) + b"hello")
        assert without_credit(transfer(server, client)) == [
            StreamNegotiated(sid, ECHO, outbound=True),
            yamux.DataReceived(sid, b"hello"),
        ]
        assert_charged(client, sid, len(b"hello"))

    def test_a_malformed_answer_fails_the_stream_not_the_connection(self) -> None:
        client, server = muxed_pair()
        sid = client.open_stream([ECHO])
        transfer(client, server)
        server.send_data(sid, lines(HEADER, "/not-what-was-proposed"))
        failed = failure(transfer(server, client))
        assert failed.stream_id == sid
        assert isinstance(failed.error, RemoteProtocolError)
        assert yamux.StreamReset(sid, 0) in transfer(client, server)
        again = client.open_stream([ECHO])
        assert yamux.StreamOpened(again) in transfer(client, server)

    def test_nothing_to_propose_opens_no_stream(self) -> None:
        client, _ = muxed_pair()
        with pytest.raises(LocalProtocolError):
            client.open_stream([])
        assert not client.has_output

    def test_no_writing_or_closing_before_the_agreement(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream([ECHO])
        with pytest.raises(InvalidState):
            client.send_data(sid, b"too early")
        with pytest.raises(InvalidState):
            client.close_stream(sid)
        exchange(client, server)
        client.send_data(sid, b"now")
        client.close_stream(sid)
        assert transfer(client, server) == [yamux.DataReceived(sid, b"now"), yamux.StreamEnded(sid)]


class TestListenerSide:
    """Protocol negotiation, the remote's streams: answer na until a proposal is supported."""

    def test_unsupported_protocol_gets_na_and_the_dialler_may_go_on(self) -> None:
        asked: list[str] = []

        def supports(protocol: str) -> bool:
            asked.append(protocol)
            return protocol == ECHO

        client, server = muxed_pair(server=supports)
        sid = client.open_stream(None)
        client.send_data(sid, lines(HEADER, OTHER))
        assert transfer(client, server) == [yamux.StreamOpened(sid)]
        assert data_of(transfer(server, client), sid) == lines(HEADER, NA)
        client.send_data(sid, lines(ECHO))
        assert transfer(client, server) == [StreamNegotiated(sid, ECHO, outbound=False)]
        assert data_of(transfer(server, client), sid) == lines(ECHO)
        assert asked == [OTHER, ECHO]

    def test_lazy_dialler_data_behind_the_proposal_follows_the_event_and_is_charged(self) -> None:
        """go-libp2p writes header, proposal and its first message together."""
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream(None)
        client.send_data(sid, lines(HEADER, ECHO) + b"first message")
        assert transfer(client, server) == [
            yamux.StreamOpened(sid),
            StreamNegotiated(sid, ECHO, outbound=False),
            yamux.DataReceived(sid, b"first message"),
        ]
        assert_charged(server, sid, len(b"first message"))

    def test_too_many_proposals_get_their_na_then_a_reset(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream(None)
        client.send_data(sid, lines(HEADER, *[OTHER] * MAX_PROPOSALS))
        server_events = transfer(client, server)
        assert server_events[0] == yamux.StreamOpened(sid)
        assert isinstance(failure(server_events).error, NegotiationFailed)
        client_events = transfer(server, client)
        assert data_of(client_events, sid) == lines(HEADER, *[NA] * MAX_PROPOSALS)
        assert client_events[-1] == yamux.StreamReset(sid, 0)

    def test_a_malformed_proposal_fails_the_stream_not_the_connection(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream(None)
        client.send_data(sid, lines(HEADER) + b"\x06/echo!")  # no newline at the end
        failed = failure(transfer(client, server))
        assert failed.stream_id == sid
        assert isinstance(failed.error, RemoteProtocolError)
        assert yamux.StreamReset(sid, 0) in transfer(server, client)
        again = client.open_stream([ECHO])
        client_events, _ = exchange(client, server)
        assert StreamNegotiated(again, ECHO, outbound=True) in client_events


class TestStreamEndsDuringNegotiation:
    """A stream reset or closed before it agreed: the negotiation ends with it."""

    def test_the_remote_resets_the_stream(self) -> None:
        client, server = muxed_pair()
        sid = client.open_stream([ECHO])
        transfer(client, server)
        server.reset_stream(sid, 7)
        assert without_credit(transfer(server, client)) == [yamux.StreamReset(sid, 7)]
        client.negotiation_expired(sid)  # the negotiation is over already: nothing to do
        client.reset_stream(sid)  # nor here: the stream is over
        assert not client.has_output

    def test_the_remote_closes_the_stream_before_agreeing(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream(None)
        client.send_data(sid, lines(HEADER))
        client.close_stream(sid)
        server_events = transfer(client, server)
        assert server_events[0] == yamux.StreamOpened(sid)
        failed = failure(server_events)
        assert failed.stream_id == sid
        assert isinstance(failed.error, StreamResetError)
        assert not any(isinstance(e, yamux.StreamEnded) for e in server_events)
        client_events = transfer(server, client)
        assert data_of(client_events, sid) == lines(HEADER)
        assert client_events[-1] == yamux.StreamReset(sid, 0)

    def test_a_local_reset_ends_the_negotiation_without_an_event(self) -> None:
        """The remote then sees the stream open, agree and reset in one read: its answer has
        nowhere to go, and only the stream ends."""
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream([ECHO])
        client.reset_stream(sid)
        assert transfer(client, server) == [
            yamux.StreamOpened(sid),
            StreamNegotiated(sid, ECHO, outbound=False),
            yamux.StreamReset(sid, 0),
        ]
        assert transfer(server, client) == []  # its ACK, for a stream that is over
        with pytest.raises(StreamResetError):  # not InvalidState: it negotiates no more
            client.send_data(sid, b"x")
        again = client.open_stream([ECHO])
        client_events, _ = exchange(client, server)
        assert StreamNegotiated(again, ECHO, outbound=True) in client_events

    def test_an_expired_negotiation_is_reset_and_an_agreed_stream_is_not(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        silent = client.open_stream(None)  # a dialler that never proposes
        agreed = client.open_stream(None)
        client.send_data(agreed, lines(HEADER, ECHO))
        transfer(client, server)
        transfer(server, client)  # the answers
        server.negotiation_expired(agreed)
        assert not server.has_output
        server.negotiation_expired(silent)
        client_events = transfer(server, client)
        assert yamux.StreamReset(silent, 0) in client_events
        assert yamux.StreamReset(agreed, 0) not in client_events
        client.send_data(agreed, b"still open")
        assert transfer(client, server) == [yamux.DataReceived(agreed, b"still open")]

    def test_the_end_of_the_connection_ends_every_negotiation_quietly(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        sid = client.open_stream(None)
        assert transfer(client, server) == [yamux.StreamOpened(sid)]
        server.receive_eof()
        assert server.events_received() == [yamux.ConnectionEnded()]


class TestSplitInput:
    """Negotiation bytes split at every byte, each piece in a yamux frame of its own."""

    def test_the_listener(self) -> None:
        client, server = muxed_pair(server=serves(ECHO))
        transcript = lines(HEADER, ECHO) + b"data"
        for pieces in splits(transcript):
            sid = client.open_stream(None)
            events: list[ConnectionEvent] = []
            for piece in pieces:
                client.send_data(sid, piece)
                events += transfer(client, server)
            assert events[:2] == [yamux.StreamOpened(sid), StreamNegotiated(sid, ECHO, outbound=False)]
            assert all(isinstance(e, yamux.DataReceived) for e in events[2:])
            assert data_of(events, sid) == b"data"
            assert_charged(server, sid, len(b"data"))
            assert data_of(transfer(server, client), sid) == lines(HEADER, ECHO)

    def test_the_dialler_falling_back(self) -> None:
        client, server = muxed_pair()
        transcript = lines(HEADER, NA, ECHO) + b"data"  # the answers to OTHER, then ECHO
        for pieces in splits(transcript):
            sid = client.open_stream([OTHER, ECHO])
            assert data_of(transfer(client, server), sid) == lines(HEADER, OTHER)
            events: list[ConnectionEvent] = []
            for piece in pieces:
                server.send_data(sid, piece)
                events += transfer(server, client)
            events = without_credit(events)
            assert events[0] == StreamNegotiated(sid, ECHO, outbound=True)
            assert all(isinstance(e, yamux.DataReceived) for e in events[1:])
            assert data_of(events, sid) == b"data"
            assert_charged(client, sid, len(b"data"))
            assert data_of(transfer(client, server), sid) == lines(ECHO)  # after the na
