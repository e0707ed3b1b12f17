"""yamux core (hashicorp/yamux spec.md; go-yamux v5.0.1 behaviour, PROTOCOL.md §2.2)."""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glueberry.exceptions import (
    FrameTooLarge,
    InvalidArgument,
    InvalidConfig,
    InvalidState,
    LimitExceeded,
    RemoteProtocolError,
    StreamClosed,
)
from glueberry.exceptions import StreamReset as StreamResetError
from glueberry.p2p.yamux import (
    STREAM_TRANSITIONS,
    ConnectionEnded,
    DataReceived,
    GoAwayReceived,
    PongReceived,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    StreamTrigger,
    WindowUpdated,
    YamuxConfig,
    YamuxEvent,
    YamuxProtocol,
)
from tests.helpers import pump, splits

DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8
KIB = 1024
MIB = 1024 * KIB
EXTRA = 16 * MIB - 256 * KIB  # the window beyond the initial 256 KiB we announce with SYN / ACK


class Frame(NamedTuple):
    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes = b""
    version: int = 0

    def encode(self) -> bytes:
        header = struct.pack(">BBHII", self.version, self.type, self.flags, self.stream_id, self.length)
        return header + self.payload


def data_frame(sid: int, payload: bytes, flags: int = 0) -> Frame:
    return Frame(DATA, flags, sid, len(payload), payload)


def decode(data: bytes) -> list[Frame]:
    frames, pos = [], 0
    while pos < len(data):
        version, typ, flags, sid, length = struct.unpack_from(">BBHII", data, pos)
        pos += 12
        payload = b""
        if typ == DATA:
            payload = data[pos : pos + length]
            pos += length
        frames.append(Frame(typ, flags, sid, length, payload, version))
    return frames


def sent(core: YamuxProtocol) -> list[Frame]:
    return decode(b"".join(core.data_to_send()))


def feed(core: YamuxProtocol, *frames: Frame) -> list[YamuxEvent]:
    core.receive_data(b"".join(f.encode() for f in frames))
    return core.events_received()


def merged(events: list[YamuxEvent]) -> list[YamuxEvent]:
    """Join consecutive DataReceived of one stream: data may be delivered in any pieces."""
    out: list[YamuxEvent] = []
    for ev in events:
        last = out[-1] if out else None
        if isinstance(ev, DataReceived) and isinstance(last, DataReceived) and last.stream_id == ev.stream_id:
            out[-1] = DataReceived(ev.stream_id, last.data + ev.data)
        else:
            out.append(ev)
    return out


def drain(core: YamuxProtocol) -> dict[int, bytes]:
    """Consume every DataReceived (as an application would) and return the bytes per stream."""
    got: dict[int, bytes] = {}
    for ev in core.events_received():
        if isinstance(ev, DataReceived):
            got[ev.stream_id] = got.get(ev.stream_id, b"") + ev.data
            core.consume(ev.stream_id, len(ev.data))
    return got


def make_pair(config: YamuxConfig | None = None) -> tuple[YamuxProtocol, YamuxProtocol]:
    return YamuxProtocol(is_client=True, config=config), YamuxProtocol(is_client=False, config=config)


def opened_pair(config: YamuxConfig | None = None) -> tuple[YamuxProtocol, YamuxProtocol, int]:
    client, server = make_pair(config)
    sid = client.open_stream()
    pump(client, server)
    client.events_received()
    server.events_received()
    return client, server, sid


def server_with_stream(sid: int = 1) -> YamuxProtocol:
    server = YamuxProtocol(is_client=False)
    feed(server, Frame(WINDOW_UPDATE, SYN, sid, 0))
    server.data_to_send()
    return server


class TestFraming:
    """spec: Framing — 12-byte big-endian header, Data frames followed by ``length`` bytes."""

    def test_syn_is_a_window_update_with_the_extra_window(self) -> None:
        client = YamuxProtocol(is_client=True)
        assert client.open_stream() == 1
        raw = b"".join(client.data_to_send())
        assert raw == bytes([0, 1, 0, 1, 0, 0, 0, 1]) + EXTRA.to_bytes(4, "big")

    def test_data_frames_chunked_at_max_frame_payload(self) -> None:
        client, _, sid = opened_pair(YamuxConfig(max_frame_payload=1000))
        assert client.send_data(sid, bytes(2500)) == 2500
        assert [(f.type, f.stream_id, f.length) for f in sent(client)] == [
            (DATA, sid, 1000),
            (DATA, sid, 1000),
            (DATA, sid, 500),
        ]

    def test_output_is_joined(self) -> None:
        client, _, sid = opened_pair()
        client.send_data(sid, b"a")
        client.send_data(sid, memoryview(b"bc"))
        client.ping()
        out = client.data_to_send()
        assert len(out) == 1
        assert decode(out[0])[:2] == [data_frame(sid, b"a"), data_frame(sid, b"bc")]
        assert client.data_to_send() == []

    def test_transcript_split_at_every_byte_parses_identically(self) -> None:
        transcript = b"".join(
            f.encode()
            for f in [
                Frame(WINDOW_UPDATE, SYN, 1, EXTRA),
                data_frame(1, b"hello"),
                data_frame(3, b"syn with data", SYN),
                Frame(PING, SYN, 0, 77),
                data_frame(1, bytes(range(256)) * 3),
                Frame(WINDOW_UPDATE, 0, 1, 4096),
                data_frame(1, b"bye", FIN),
                Frame(WINDOW_UPDATE, RST, 3, 5),
                data_frame(3, b"late, discarded"),
                Frame(WINDOW_UPDATE, SYN | FIN, 5, 0),
                Frame(GO_AWAY, 0, 0, 0),
            ]
        )
        reference = YamuxProtocol(is_client=False)
        reference.receive_data(transcript)
        expected_events = merged(reference.events_received())
        expected_out = sent(reference)
        assert expected_events == [
            StreamOpened(1),
            DataReceived(1, b"hello"),
            StreamOpened(3),
            DataReceived(3, b"syn with data"),
            DataReceived(1, bytes(range(256)) * 3),
            WindowUpdated(1),
            DataReceived(1, b"bye"),
            StreamEnded(1),
            StreamReset(3, 5),
            StreamOpened(5),
            StreamEnded(5),
            GoAwayReceived(0),
        ]
        assert [(f.type, f.flags, f.stream_id) for f in expected_out] == [
            (WINDOW_UPDATE, ACK, 1),
            (WINDOW_UPDATE, ACK, 3),
            (PING, ACK, 0),
            (WINDOW_UPDATE, ACK, 5),
        ]
        for parts in splits(transcript):
            core = YamuxProtocol(is_client=False)
            events: list[YamuxEvent] = []
            for part in parts:
                core.receive_data(part)
                events += core.events_received()
            assert merged(events) == expected_events
            assert sent(core) == expected_out

    @settings(max_examples=50, deadline=None)
    @given(
        writes=st.lists(st.tuples(st.integers(0, 2), st.binary(max_size=3000)), max_size=20),
        cuts=st.lists(st.integers(1, 5000), max_size=30),
    )
    def test_round_trip_any_chunking(self, writes: list[tuple[int, bytes]], cuts: list[int]) -> None:
        client, server = make_pair(YamuxConfig(max_frame_payload=700))
        sids = [client.open_stream() for _ in range(3)]
        want: dict[int, bytes] = {}
        for index, payload in writes:
            assert client.send_data(sids[index], payload) == len(payload)
            want[sids[index]] = want.get(sids[index], b"") + payload
        raw = b"".join(client.data_to_send())
        pos = 0
        for cut in [*cuts, len(raw)]:
            server.receive_data(raw[pos : pos + cut])
            pos += cut
        got = drain(server)
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}


class TestOpeningStream:
    """spec: Opening a stream — SYN, answered with ACK (or RST); data may flow before the ACK."""

    def test_open_accept_and_data_both_ways(self) -> None:
        client, server = make_pair()
        sid = client.open_stream()
        assert client.stream_state(sid) is StreamState.SYN_SENT
        assert client.send_data(sid, b"request") == 7  # before the ACK
        pump(client, server)
        assert server.events_received() == [StreamOpened(sid), DataReceived(sid, b"request")]
        assert server.stream_state(sid) is StreamState.ESTABLISHED
        assert client.events_received() == [StreamAccepted(sid), WindowUpdated(sid)]  # the ACK's delta
        assert client.stream_state(sid) is StreamState.ESTABLISHED
        server.send_data(sid, b"response")
        pump(client, server)
        assert client.events_received() == [DataReceived(sid, b"response")]

    def test_stream_ids_client_odd_server_even(self) -> None:
        client, server = make_pair()
        assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
        assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
        pump(client, server)
        assert [e for e in server.events_received() if isinstance(e, StreamOpened)] == [
            StreamOpened(1),
            StreamOpened(3),
            StreamOpened(5),
        ]

    def test_ack_carries_the_extra_window(self) -> None:
        server = YamuxProtocol(is_client=False)
        feed(server, Frame(WINDOW_UPDATE, SYN, 1, 0))
        assert sent(server) == [Frame(WINDOW_UPDATE, ACK, 1, EXTRA)]

    def test_go_ack_with_window_delta(self) -> None:
        """go-yamux accepts with a WindowUpdate(ACK) whose delta grows our send window."""
        client = YamuxProtocol(is_client=True)
        sid = client.open_stream()
        client.data_to_send()
        assert client.send_window(sid) == 256 * KIB
        assert feed(client, Frame(WINDOW_UPDATE, ACK, sid, 1000)) == [StreamAccepted(sid), WindowUpdated(sid)]
        assert client.send_window(sid) == 256 * KIB + 1000

    def test_go_syn_on_data_frame_with_payload(self) -> None:
        server = YamuxProtocol(is_client=False)
        events = feed(server, data_frame(1, b"first bytes", SYN))
        assert events == [StreamOpened(1), DataReceived(1, b"first bytes")]
        assert sent(server) == [Frame(WINDOW_UPDATE, ACK, 1, EXTRA)]

    def test_go_syn_window_update_without_extra(self) -> None:
        """go-yamux opens with WindowUpdate(SYN, delta 0): our send window stays 256 KiB."""
        server = YamuxProtocol(is_client=False)
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 1, 0)) == [StreamOpened(1)]
        assert server.send_window(1) == 256 * KIB

    def test_remote_syns_out_of_order(self) -> None:
        """go-yamux allocates ids before queueing SYNs, so concurrent opens may arrive reordered."""
        server = YamuxProtocol(is_client=False)
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 5, 0), Frame(WINDOW_UPDATE, SYN, 1, 0)) == [
            StreamOpened(5),
            StreamOpened(1),
        ]
        assert server.stream_state(3) is StreamState.INIT
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 3, 0)) == [StreamOpened(3)]

    def test_go_sized_frame_split_across_secure_channel_records(self) -> None:
        """A 64 KiB frame arrives over Noise records of at most 65519 bytes: delivered in pieces."""
        server = server_with_stream()
        payload = bytes(range(256)) * 256
        raw = data_frame(1, payload).encode()
        server.receive_data(raw[:65519])
        server.receive_data(raw[65519:])
        events = server.events_received()
        assert len(events) == 2
        assert merged(events) == [DataReceived(1, payload)]

    def test_hundred_concurrent_streams(self) -> None:
        client, server = make_pair()
        sids = [client.open_stream() for _ in range(50)]
        pump(client, server)
        server_sids = [server.open_stream() for _ in range(50)]
        pump(client, server)
        client.events_received()
        server.events_received()
        for sid in sids + server_sids:
            owner, peer = (client, server) if sid % 2 else (server, client)
            owner.send_data(sid, f"from {sid}".encode() * 10)
            owner.close_stream(sid)
            peer.send_data(sid, f"reply {sid}".encode())
            peer.close_stream(sid)
        pump(client, server)
        c_events, s_events = client.events_received(), server.events_received()
        for sid in sids + server_sids:
            owner_events, peer_events = (c_events, s_events) if sid % 2 else (s_events, c_events)
            assert [e for e in peer_events if getattr(e, "stream_id", None) == sid] == [
                DataReceived(sid, f"from {sid}".encode() * 10),
                StreamEnded(sid),
            ]
            assert [e for e in owner_events if getattr(e, "stream_id", None) == sid] == [
                DataReceived(sid, f"reply {sid}".encode()),
                StreamEnded(sid),
            ]
        assert client.open_streams == server.open_streams == 0


class TestClosingStream:
    """spec: Closing a stream — FIN half-closes; closed once both sides sent FIN."""

    def test_fin_both_ways(self) -> None:
        client, server, sid = opened_pair()
        client.send_data(sid, b"last words")
        client.close_stream(sid)
        assert client.stream_state(sid) is StreamState.LOCAL_CLOSED
        assert sent(client) == [data_frame(sid, b"last words"), Frame(WINDOW_UPDATE, FIN, sid, 0)]
        feed(server, data_frame(sid, b"last words"), Frame(WINDOW_UPDATE, FIN, sid, 0))
        assert server.stream_state(sid) is StreamState.REMOTE_CLOSED
        server.send_data(sid, b"still allowed")
        server.close_stream(sid)
        assert server.stream_state(sid) is StreamState.CLOSED
        pump(client, server)
        assert client.events_received() == [DataReceived(sid, b"still allowed"), StreamEnded(sid)]
        assert client.stream_state(sid) is StreamState.CLOSED
        assert client.open_streams == server.open_streams == 0

    def test_send_after_close_raises(self) -> None:
        client, _, sid = opened_pair()
        client.close_stream(sid)
        with pytest.raises(StreamClosed):
            client.send_data(sid, b"x")
        client.close_stream(sid)  # twice: nothing happens
        assert sent(client) == [Frame(WINDOW_UPDATE, FIN, sid, 0)]

    def test_fin_on_data_frame_after_payload(self) -> None:
        server = server_with_stream()
        assert feed(server, data_frame(1, b"end", FIN)) == [DataReceived(1, b"end"), StreamEnded(1)]

    def test_duplicate_fin_ignored(self) -> None:
        server = server_with_stream()
        feed(server, Frame(WINDOW_UPDATE, FIN, 1, 0))
        assert feed(server, Frame(WINDOW_UPDATE, FIN, 1, 0)) == []
        assert server.stream_state(1) is StreamState.REMOTE_CLOSED

    def test_data_after_remote_fin_resets_only_that_stream(self) -> None:
        server = server_with_stream()
        feed(server, Frame(WINDOW_UPDATE, SYN, 3, 0), Frame(WINDOW_UPDATE, FIN, 1, 0))
        server.data_to_send()
        assert feed(server, data_frame(1, b"too late"), data_frame(3, b"fine")) == [
            StreamReset(1, 0x1004, remote=False),
            DataReceived(3, b"fine"),
        ]
        assert sent(server) == [Frame(WINDOW_UPDATE, RST, 1, 0x1004)]
        assert server.stream_state(1) is StreamState.RESET

    def test_unknown_stream_rejected_locally(self) -> None:
        client = YamuxProtocol(is_client=True)
        with pytest.raises(InvalidArgument):
            client.send_data(7, b"x")
        with pytest.raises(InvalidArgument):
            client.close_stream(7)


class TestReset:
    """spec: RST hard-closes a stream; go-yamux v5 sends it on a WindowUpdate with an error code."""

    def test_reset_both_ways_with_code(self) -> None:
        client, server, sid = opened_pair()
        client.reset_stream(sid, 0x1006)
        assert client.stream_state(sid) is StreamState.RESET
        pump(client, server)
        assert server.events_received() == [StreamReset(sid, 0x1006)]
        assert server.stream_state(sid) is StreamState.RESET

        sid2 = client.open_stream()
        pump(client, server)
        server.events_received()
        client.events_received()
        server.reset_stream(sid2, 42)
        pump(client, server)
        assert client.events_received() == [StreamReset(sid2, 42)]
        with pytest.raises(StreamResetError):
            client.send_data(sid2, b"x")
        with pytest.raises(StreamResetError):
            client.close_stream(sid2)
        client.reset_stream(sid2)  # already over: nothing sent
        assert client.data_to_send() == []

    def test_go_rst_on_window_update_with_error_code(self) -> None:
        server = server_with_stream()
        assert feed(server, Frame(WINDOW_UPDATE, RST, 1, 0x1002)) == [StreamReset(1, 0x1002)]
        assert server.open_streams == 0

    def test_rst_on_data_frame_drops_payload(self) -> None:
        server = server_with_stream()
        assert feed(server, data_frame(1, b"ignored", RST), data_frame(1, b"late")) == [StreamReset(1, 0)]

    def test_sent_reset_is_a_window_update(self) -> None:
        client, _, sid = opened_pair()
        client.reset_stream(sid, 7)
        assert sent(client) == [Frame(WINDOW_UPDATE, RST, sid, 7)]

    def test_data_on_a_stream_we_reset_is_discarded(self) -> None:
        server = server_with_stream()
        server.reset_stream(1)
        server.data_to_send()
        assert feed(server, data_frame(1, b"in flight"), Frame(WINDOW_UPDATE, FIN, 1, 0)) == []
        assert sent(server) == []
        assert feed(server, Frame(PING, SYN, 0, 1)) == []  # the session lives
        assert sent(server) == [Frame(PING, ACK, 0, 1)]

    def test_reset_while_payload_arrives(self) -> None:
        server = server_with_stream()
        raw = data_frame(1, b"0123456789").encode() + data_frame(1, b"next").encode()
        server.receive_data(raw[:15])
        assert server.events_received() == [DataReceived(1, b"012")]
        server.reset_stream(1)
        server.receive_data(raw[15:])
        assert server.events_received() == []


class TestFlowControl:
    """spec: Flow Control — 256 KiB initial window per stream, WindowUpdate deltas, Data counted."""

    def test_sixteen_mib_transfer_obeys_windows(self) -> None:
        config = YamuxConfig(receive_window=1 * MIB)
        client, server, sid = opened_pair(config)
        payload = bytes(i % 251 for i in range(16 * MIB))
        offset = stalls = 0
        received = bytearray()
        while offset < len(payload):
            n = client.send_data(sid, memoryview(payload)[offset:])
            offset += n
            if offset < len(payload):
                assert client.send_window(sid) == 0
                assert client.send_data(sid, payload[offset:]) == 0
                stalls += 1
            server.receive_data(b"".join(client.data_to_send()))
            events = server.events_received()
            for ev in events:
                assert isinstance(ev, DataReceived)
                received += ev.data
                server.consume(sid, len(ev.data))
            client.receive_data(b"".join(server.data_to_send()))
            if offset < len(payload):
                assert WindowUpdated(sid) in client.events_received()
        assert received == payload
        assert stalls == 15  # 1 MiB window, 16 MiB to send

    def test_default_window_is_sixteen_mib_after_ack(self) -> None:
        client, _server, sid = opened_pair()
        assert client.send_window(sid) == 16 * MIB
        assert client.send_data(sid, bytes(17 * MIB)) == 16 * MIB
        assert client.send_data(sid, b"more") == 0

    def test_window_update_once_half_is_consumed(self) -> None:
        """go-yamux returns window when at least half of it is owed (segmentedBuffer.GrowTo)."""
        server = server_with_stream()
        for _ in range(31):
            feed(server, data_frame(1, bytes(256 * KIB)))
            server.consume(1, 256 * KIB)
        assert sent(server) == []  # 7.75 MiB owed < 8 MiB
        feed(server, data_frame(1, bytes(256 * KIB)))
        server.consume(1, 100 * KIB)
        server.consume(1, 156 * KIB)
        assert sent(server) == [Frame(WINDOW_UPDATE, 0, 1, 8 * MIB)]
        server.consume(1, 0)
        assert sent(server) == []

    def test_consume_more_than_received(self) -> None:
        server = server_with_stream()
        feed(server, data_frame(1, b"abc"))
        with pytest.raises(InvalidArgument):
            server.consume(1, 4)

    def test_sender_counts_only_data(self) -> None:
        client, _, sid = opened_pair()
        before = client.send_window(sid)
        client.ping()
        client.send_data(sid, b"12345")
        assert client.send_window(sid) == before - 5
        client.close_stream(sid)
        assert client.send_window(sid) == 0  # closed: cannot send


class TestPing:
    """spec: Ping — SYN request, ACK response echoing the opaque value; go-yamux pings every 30 s."""

    def test_ping_pong(self) -> None:
        client, server = make_pair()
        opaque = client.ping()
        pump(client, server)
        assert client.events_received() == [PongReceived(opaque)]
        assert server.events_received() == []
        assert client.ping() != opaque

    def test_go_ping_answered_with_same_opaque(self) -> None:
        server = YamuxProtocol(is_client=False)
        assert feed(server, Frame(PING, SYN, 0, 0xDEADBEEF)) == []
        assert sent(server) == [Frame(PING, ACK, 0, 0xDEADBEEF)]

    def test_unsolicited_pong_ignored(self) -> None:
        client = YamuxProtocol(is_client=True)
        assert feed(client, Frame(PING, ACK, 0, 5)) == []


class TestSessionTermination:
    """spec: Session termination — GoAway with a code; no new streams afterwards."""

    def test_go_away(self) -> None:
        client, server, sid = opened_pair()
        server.go_away()
        assert sent(server) == [Frame(GO_AWAY, 0, 0, 0)]
        server.go_away(2)
        feed(client, Frame(GO_AWAY, 0, 0, 2))
        assert client.events_received() == []
        with pytest.raises(InvalidState):
            client.open_stream()
        with pytest.raises(InvalidState):
            server.open_stream()
        client.send_data(sid, b"existing streams continue")
        pump(client, server)
        assert server.events_received() == [DataReceived(sid, b"existing streams continue")]

    def test_go_away_event(self) -> None:
        client = YamuxProtocol(is_client=True)
        assert feed(client, Frame(GO_AWAY, 0, 0, 0x1003)) == [GoAwayReceived(0x1003)]

    def test_syn_after_our_go_away_is_reset(self) -> None:
        server = YamuxProtocol(is_client=False)
        server.go_away()
        server.data_to_send()
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 1, 0)) == []
        assert sent(server) == [Frame(WINDOW_UPDATE, RST, 1, 0)]

    def test_eof(self) -> None:
        client, _server, sid = opened_pair()
        client.receive_eof()
        assert client.events_received() == [ConnectionEnded()]
        with pytest.raises(InvalidState):
            client.send_data(sid, b"x")
        with pytest.raises(InvalidState):
            client.receive_data(b"\x00")


class TestBadInput:
    """Session errors: a typed error out of receive_data, GoAway(1) queued, then InvalidState."""

    @pytest.mark.parametrize(
        ("frames", "error", "match"),
        [
            pytest.param(
                [Frame(PING, SYN, 0, 1, version=1)], RemoteProtocolError, "version", id="bad-version"
            ),
            pytest.param([Frame(4, 0, 0, 0)], RemoteProtocolError, "type", id="unknown-type"),
            pytest.param(
                [Frame(WINDOW_UPDATE, SYN, 1, 0), Frame(DATA, 0, 1, 16 * MIB + 1)],  # header alone
                FrameTooLarge,
                "receive window",
                id="window-overflow",
            ),
            pytest.param(
                [Frame(WINDOW_UPDATE, SYN, 2, 0)], RemoteProtocolError, "ours", id="syn-wrong-parity"
            ),
            pytest.param(
                [Frame(WINDOW_UPDATE, SYN, 1, 0), Frame(WINDOW_UPDATE, SYN, 1, 0)],
                RemoteProtocolError,
                "open",
                id="syn-in-use",
            ),
            pytest.param([data_frame(0, b"x")], RemoteProtocolError, "stream 0", id="data-on-stream-0"),
            pytest.param([data_frame(3, b"x")], RemoteProtocolError, "never opened", id="never-opened"),
            pytest.param(
                [Frame(WINDOW_UPDATE, ACK, 2, 0)], RemoteProtocolError, "never opened", id="ack-ours"
            ),
            pytest.param(
                [Frame(WINDOW_UPDATE, SYN, 1, 0xFFFFFFFF)],
                RemoteProtocolError,
                "overflows",
                id="send-window-overflow",
            ),
        ],
    )
    def test_session_error(self, frames: list[Frame], error: type[Exception], match: str) -> None:
        server = YamuxProtocol(is_client=False)
        raw = b"".join(f.encode() for f in frames)
        with pytest.raises(error, match=match):
            server.receive_data(raw)
        assert sent(server)[-1] == Frame(GO_AWAY, 0, 0, 1)
        with pytest.raises(InvalidState):
            server.receive_data(b"")
        with pytest.raises(InvalidState):
            server.open_stream()
        with pytest.raises(InvalidState):
            server.send_data(1, b"x")

    def test_window_overflow_after_grant(self) -> None:
        _client, server, sid = opened_pair()
        server.receive_data(data_frame(sid, bytes(16 * MIB)).encode())
        server.consume(sid, 1)
        with pytest.raises(FrameTooLarge):
            server.receive_data(data_frame(sid, b"xx").encode())
        assert sent(server)[-1] == Frame(GO_AWAY, 0, 0, 1)

    def test_events_before_the_error_are_kept(self) -> None:
        server = YamuxProtocol(is_client=False)
        with pytest.raises(RemoteProtocolError):
            feed(server, data_frame(1, b"ok", SYN), Frame(9, 0, 0, 0))
        assert server.events_received() == [StreamOpened(1), DataReceived(1, b"ok")]


class TestLimits:
    """Bounds: max_streams both directions; refused inbound streams are reset, the session lives."""

    def test_inbound_syn_over_max_streams_is_reset(self) -> None:
        server = YamuxProtocol(is_client=False, config=YamuxConfig(max_streams=2))
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 1, 0), Frame(WINDOW_UPDATE, SYN, 3, 0)) == [
            StreamOpened(1),
            StreamOpened(3),
        ]
        server.data_to_send()
        assert feed(server, data_frame(5, b"payload", SYN), data_frame(5, b"more")) == []
        assert sent(server) == [Frame(WINDOW_UPDATE, RST, 5, 0x1002)]
        assert server.streams_refused == 1
        assert feed(server, data_frame(1, b"alive")) == [DataReceived(1, b"alive")]
        with pytest.raises(LimitExceeded):
            server.open_stream()

    def test_open_stream_over_max(self) -> None:
        client = YamuxProtocol(is_client=True, config=YamuxConfig(max_streams=3))
        for _ in range(3):
            client.open_stream()
        with pytest.raises(LimitExceeded) as info:
            client.open_stream()
        assert info.value.limit == "max_streams"

    def test_reused_remote_id_is_reset(self) -> None:
        server = server_with_stream()
        feed(server, Frame(WINDOW_UPDATE, RST, 1, 0))
        assert feed(server, Frame(WINDOW_UPDATE, SYN, 1, 0)) == []
        assert sent(server) == [Frame(WINDOW_UPDATE, RST, 1, 0)]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"receive_window": 1000},
            {"receive_window": 1 << 32},
            {"max_streams": 0},
            {"max_frame_payload": 0},
        ],
    )
    def test_bad_config(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(InvalidConfig):
            YamuxConfig(**kwargs)


class TestStateTable:
    """The stream transition table (module docstring) and what each state allows."""

    def test_every_live_state_can_be_reset(self) -> None:
        for state, moves in STREAM_TRANSITIONS.items():
            if state in (StreamState.CLOSED, StreamState.RESET, StreamState.INIT):
                continue
            assert moves[StreamTrigger.SEND_RST] is StreamState.RESET
            assert moves[StreamTrigger.RECV_RST] is StreamState.RESET

    def test_terminal_states(self) -> None:
        assert STREAM_TRANSITIONS[StreamState.CLOSED] == {}
        assert STREAM_TRANSITIONS[StreamState.RESET] == {}

    def test_fin_before_ack(self) -> None:
        client = YamuxProtocol(is_client=True)
        sid = client.open_stream()
        client.close_stream(sid)
        assert client.stream_state(sid) is StreamState.LOCAL_CLOSED
        assert feed(client, Frame(WINDOW_UPDATE, ACK | FIN, sid, 0)) == [
            StreamAccepted(sid),
            StreamEnded(sid),
        ]
        assert client.stream_state(sid) is StreamState.CLOSED
        assert client.open_streams == 0

    def test_never_used_id_is_init(self) -> None:
        assert YamuxProtocol(is_client=True).stream_state(1) is StreamState.INIT
