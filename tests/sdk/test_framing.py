"""Glueberry framing: cramberry double-uvarint writer and Go-compatible reader (PROTOCOL.md §6, §7)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glueberry._varint import encode_uvarint
from glueberry.exceptions import FrameTooLarge, InvalidArgument, InvalidState, RemoteProtocolError
from glueberry.wire.framing import (
    GO_MAX_FRAME_SIZE,
    EndOfStream,
    Frame,
    FrameDecoder,
    FrameEvent,
    encode_frame,
    frame_header,
    outer_length,
)

MiB = 1024 * 1024


def decode_all(
    chunks: list[bytes], max_frame_size: int = GO_MAX_FRAME_SIZE
) -> tuple[list[bytes], str, FrameDecoder]:
    """Feed ``chunks`` then EOF; return (payloads delivered, 'eof' | 'error', decoder)."""
    decoder = FrameDecoder(max_frame_size)
    payloads: list[bytes] = []
    outcome = "eof"
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            payloads += _payloads(decoder.events_received())
        decoder.receive_eof()
        events = decoder.events_received()
        assert events[-1] == EndOfStream()
        payloads += _payloads(events[:-1])
    except RemoteProtocolError:
        outcome = "error"
        payloads += _payloads(decoder.events_received())
    return payloads, outcome, decoder


def _payloads(events: list[FrameEvent]) -> list[bytes]:
    out = []
    for event in events:
        assert isinstance(event, Frame), event
        out.append(event.payload)
    return out


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` whole, byte by byte, and cut in two at every position."""
    cases = [[data], [data[i : i + 1] for i in range(len(data))]]
    cases += [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return cases


def go_reader(data: bytes, limit: int) -> tuple[list[bytes], str]:
    """Reference: cramberry ``MessageIterator.Next`` into ``*[]byte`` over ``data``, written byte
    by byte after the Go code (``StreamReader.ReadUvarint``, ``ReadMessage``, ``Reader.ReadBytes``),
    with ``limit`` in place of ``MaxMessageSize``."""

    def uvarint(buf: bytes, pos: int) -> tuple[int, int] | None:
        value = shift = 0
        for i in range(10):
            if pos + i >= len(buf):
                return None
            b = buf[pos + i]
            if i == 9 and b > 1:
                raise ValueError("overflow")
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos + i + 1
            shift += 7
        raise AssertionError("unreachable")

    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        try:
            outer = uvarint(data, pos)
        except ValueError:
            return out, "error"
        if outer is None:
            return out, "eof"  # EOF inside the outer varint
        length, pos = outer
        if length > limit:
            return out, "error"
        if pos == len(data) and length > 0:
            return out, "eof"  # io.ReadFull read nothing: io.EOF, clean
        if pos + length > len(data):
            return out, "error"  # ErrUnexpectedEOF after some body bytes
        body = data[pos : pos + length]
        pos += length
        try:
            inner = uvarint(body, 0)
        except ValueError:
            return out, "error"
        if inner is None:
            return out, "error"  # includes the empty frame
        n, start = inner
        if n > len(body) - start:
            return out, "error"
        out.append(body[start : start + n])
    return out, "eof"


class TestWriter:
    """§6.1: uvarint(len(inner)) || inner, inner = uvarint(len(payload)) || payload, minimal varints."""

    def test_framing_examples(self, vectors: dict[str, Any]) -> None:
        for case in vectors["framing_examples"]["cases"]:
            if "payload" in case:
                payload = bytes.fromhex(case["payload"])
                assert encode_frame(payload).hex() == case["wire"], case["note"]
            else:
                payload = bytes.fromhex(case["payload_byte"]) * case["payload_len"]
                prefix = bytes.fromhex(case["wire_prefix"])
                assert frame_header(len(payload)) == prefix, case["note"]
                wire = encode_frame(payload)
                assert wire == prefix + payload, case["note"]

    def test_handshake_message(self, vectors: dict[str, Any]) -> None:
        """§7: handshake payloads are framed as is."""
        case = vectors["handshake_message"]
        assert encode_frame(bytes.fromhex(case["payload"])).hex() == case["wire"]

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_accepts_buffers(self, kind: Any) -> None:
        assert encode_frame(kind(b"hello")) == bytes.fromhex("060568656c6c6f")

    @pytest.mark.parametrize(
        ("n", "header"),
        [(0, "0100"), (1, "0201"), (126, "7f7e"), (127, "80017f"), (128, "82018001"), (16381, "ff7ffd7f")],
    )
    def test_header_boundaries(self, n: int, header: str) -> None:
        assert frame_header(n).hex() == header

    def test_negative_length_refused(self) -> None:
        with pytest.raises(InvalidArgument):
            frame_header(-1)
        with pytest.raises(InvalidArgument):
            outer_length(-1)

    @given(st.integers(min_value=0, max_value=2**63))
    def test_header_is_two_minimal_uvarints(self, n: int) -> None:
        inner = encode_uvarint(n)
        assert frame_header(n) == encode_uvarint(n + len(inner)) + inner
        assert outer_length(n) == n + len(inner)

    @given(st.binary(max_size=300))
    def test_header_plus_payload(self, payload: bytes) -> None:
        assert encode_frame(payload) == frame_header(len(payload)) + payload


class TestReaderAcceptance:
    """§6.2: what Go's MessageIterator accepts, reproduced for every vector and every split."""

    def test_vectors_whole_and_split_at_every_byte(self, vectors: dict[str, Any]) -> None:
        for case in vectors["reader_acceptance"]["cases"]:
            wire = bytes.fromhex(case["wire"])
            expected = [bytes.fromhex(p) for p in case["payloads"]]
            want = "error" if case["result"] == "error" else "eof"
            for chunks in splits(wire):
                payloads, outcome, _ = decode_all(chunks)
                assert (payloads, outcome) == (expected, want), (case["note"], chunks)

    def test_vectors_match_the_reference_reader(self, vectors: dict[str, Any]) -> None:
        for case in vectors["reader_acceptance"]["cases"]:
            payloads, outcome = go_reader(bytes.fromhex(case["wire"]), GO_MAX_FRAME_SIZE)
            assert outcome == ("error" if case["result"] == "error" else "eof")
            assert payloads == [bytes.fromhex(p) for p in case["payloads"]]

    def test_accepted_cases_followed_by_a_frame(self, vectors: dict[str, Any]) -> None:
        """Non-minimal varints and ignored trailing bytes leave the stream in sync."""
        for case in vectors["reader_acceptance"]["cases"]:
            if case["result"] != "accept":
                continue
            wire = bytes.fromhex(case["wire"]) + encode_frame(b"next")
            for chunks in splits(wire):
                payloads, outcome, _ = decode_all(chunks)
                assert outcome == "eof"
                assert payloads == [*(bytes.fromhex(p) for p in case["payloads"]), b"next"]

    def test_frames_before_an_error_are_delivered(self) -> None:
        """Go delivers the good frames, then its iterator stops."""
        wire = encode_frame(b"a") + encode_frame(b"b") + bytes.fromhex("0405010203")
        for chunks in splits(wire):
            payloads, outcome, _ = decode_all(chunks)
            assert (payloads, outcome) == ([b"a", b"b"], "error")

    @pytest.mark.parametrize(
        "wire",
        [
            "02" + "81",  # inner varint cut by the end of the frame
            "0404010203",  # inner length one byte beyond the frame
            "0a" + "ff" * 9 + "02",  # inner varint overflows
            "0a" + "ff" * 9 + "01",  # inner length 2**63 + ..., far beyond the frame
            "ff" * 9 + "80",  # 10th outer byte with the continuation bit
        ],
    )
    def test_more_malformed_frames(self, wire: str) -> None:
        for chunks in splits(bytes.fromhex(wire)):
            assert decode_all(chunks)[:2] == ([], "error")

    @pytest.mark.parametrize("wire", ["ffffffffffffffffff02", "0a" + "ff" * 9 + "02", "ff" * 9 + "03"])
    def test_varint_overflow(self, wire: str) -> None:
        """A 10th varint byte above 1 is an overflow (not a size error), in both prefixes."""
        decoder = FrameDecoder(GO_MAX_FRAME_SIZE)
        with pytest.raises(RemoteProtocolError, match="overflows"):
            decoder.receive_data(bytes.fromhex(wire))

    def test_non_minimal_ten_byte_varints(self) -> None:
        outer = bytes.fromhex("84" + "80" * 8 + "00")  # 4 in ten bytes
        inner = bytes.fromhex("83" + "80" * 8 + "00")  # 3 in ten bytes: exceeds the 4-byte frame
        assert decode_all([outer + bytes.fromhex("03010203")])[:2] == ([b"\x01\x02\x03"], "eof")
        assert decode_all([bytes.fromhex("0b") + inner + b"\x01"])[:2] == ([], "error")

    @pytest.mark.parametrize(
        "size", [0, 1, 125, 126, 127, 128, 200, 255, 256, 1024, 16380, 16381, 16382, 16383, 16384, 70000]
    )
    def test_varint_size_boundaries(self, size: int) -> None:
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        wire = encode_frame(payload) * 2
        assert decode_all([wire], outer_length(size))[:2] == ([payload, payload], "eof")
        assert decode_all([wire[:1], wire[1:]], outer_length(size))[:2] == ([payload, payload], "eof")

    def test_empty_payload(self) -> None:
        decoder = FrameDecoder(16)
        decoder.receive_data(b"\x01\x00\x01\x00")
        assert decoder.events_received() == [Frame(b""), Frame(b"")]


class TestEndOfStream:
    """§6.2 point 5: EOF before a frame, in or right after the outer varint is clean; later it is not."""

    @pytest.mark.parametrize("wire", ["", "80", "ffffffffffffffffff", "04", "8400", "ffff03"])
    def test_clean(self, wire: str) -> None:
        decoder = FrameDecoder(1 << 22)
        decoder.receive_data(bytes.fromhex(wire))
        decoder.receive_eof()
        assert decoder.events_received() == [EndOfStream()]
        assert decoder.buffered_bytes == 0

    @pytest.mark.parametrize("wire", ["0401", "04030102", "060568656c6c"])
    def test_truncated_body(self, wire: str) -> None:
        decoder = FrameDecoder(1024)
        decoder.receive_data(bytes.fromhex(wire))
        with pytest.raises(RemoteProtocolError, match="ended inside a frame"):
            decoder.receive_eof()
        assert decoder.events_received() == []

    def test_eof_after_frames(self) -> None:
        decoder = FrameDecoder(1024)
        decoder.receive_data(encode_frame(b"x"))
        decoder.receive_eof()
        assert decoder.events_received() == [Frame(b"x"), EndOfStream()]

    def test_use_after_eof(self) -> None:
        decoder = FrameDecoder(1024)
        decoder.receive_eof()
        with pytest.raises(InvalidState):
            decoder.receive_data(b"\x01\x00")
        with pytest.raises(InvalidState):
            decoder.receive_eof()
        assert decoder.events_received() == [EndOfStream()]
        assert decoder.events_received() == []


class TestErrors:
    """Conventions: typed errors out of receive_data, then InvalidState."""

    @pytest.mark.parametrize("wire", ["00", "0405010203", "ffffffffffffffffff02", "81808020"])
    def test_error_then_invalid_state(self, wire: str) -> None:
        decoder = FrameDecoder(GO_MAX_FRAME_SIZE)
        with pytest.raises(RemoteProtocolError):
            decoder.receive_data(bytes.fromhex(wire))
        assert decoder.buffered_bytes == 0
        with pytest.raises(InvalidState):
            decoder.receive_data(b"\x01\x00")
        with pytest.raises(InvalidState):
            decoder.receive_eof()
        assert decoder.events_received() == []

    def test_error_on_second_chunk(self) -> None:
        decoder = FrameDecoder(64)
        decoder.receive_data(b"\x01\x00\x05\x09")
        with pytest.raises(RemoteProtocolError):
            decoder.receive_data(b"abcd")  # inner length 9 in a 5-byte frame: found once it is complete
        decoder_events = decoder.events_received()
        assert decoder_events == [Frame(b"")]

    def test_empty_data_is_a_no_op(self) -> None:
        decoder = FrameDecoder(64)
        decoder.receive_data(b"")
        decoder.receive_data(memoryview(b""))
        assert decoder.events_received() == []

    def test_invalid_bound(self) -> None:
        with pytest.raises(InvalidArgument):
            FrameDecoder(0)

    def test_caller_buffer_not_retained(self) -> None:
        decoder = FrameDecoder(64)
        data = bytearray(b"\x06\x05hel")
        decoder.receive_data(data)
        data[:] = b"\x00" * len(data)  # the caller reuses its buffer
        decoder.receive_data(memoryview(b"lo"))
        assert decoder.events_received() == [Frame(b"hello")]


class TestBounds:
    """Our bound on the outer length, checked before anything of the frame is buffered (conventions)."""

    def test_over_the_bound_refused_from_the_header_alone(self) -> None:
        limit = outer_length(MiB + 28)
        decoder = FrameDecoder(limit)
        with pytest.raises(FrameTooLarge):
            decoder.receive_data(frame_header(MiB + 29))
        assert decoder.buffered_bytes == 0

    def test_at_the_bound_accepted(self) -> None:
        limit = outer_length(MiB + 28)
        payload = bytes(range(256)) * ((MiB + 28) // 256) + bytes(28)
        wire = encode_frame(payload)
        decoder = FrameDecoder(limit)
        for i in range(0, len(wire), 65536):
            decoder.receive_data(wire[i : i + 65536])
            assert decoder.buffered_bytes <= limit + 10
        assert decoder.events_received() == [Frame(payload)]
        assert decoder.buffered_bytes == 0

    def test_go_limit_64_mib(self) -> None:
        """cramberry's MaxMessageSize: 64 MiB is accepted and one byte more is not (vector 81808020)."""
        decoder = FrameDecoder(GO_MAX_FRAME_SIZE)
        inner = encode_uvarint(GO_MAX_FRAME_SIZE - 4)
        assert len(inner) == 4
        decoder.receive_data(encode_uvarint(GO_MAX_FRAME_SIZE) + inner)
        chunk = bytes(MiB)
        for _ in range(63):
            decoder.receive_data(chunk)
        decoder.receive_data(chunk[:-5])
        assert decoder.buffered_bytes == GO_MAX_FRAME_SIZE + 3  # one byte short of the frame
        assert decoder.events_received() == []
        decoder.receive_data(b"\x00")
        [event] = decoder.events_received()
        assert isinstance(event, Frame)
        assert len(event.payload) == GO_MAX_FRAME_SIZE - 4
        with pytest.raises(FrameTooLarge):
            decoder.receive_data(encode_uvarint(GO_MAX_FRAME_SIZE + 1))

    @pytest.mark.parametrize(
        "header",
        ["ffffffffffffffffff01", "80808080808080808001", "818080a000", "81808020"],
    )
    def test_huge_and_non_minimal_lengths(self, header: str) -> None:
        decoder = FrameDecoder(GO_MAX_FRAME_SIZE)
        with pytest.raises(FrameTooLarge):
            decoder.receive_data(bytes.fromhex(header))

    def test_bound_split_at_every_byte(self) -> None:
        wire = encode_frame(bytes(100)) + encode_frame(bytes(101))
        for chunks in splits(wire):
            payloads, outcome, decoder = decode_all(chunks, max_frame_size=outer_length(100))
            assert (payloads, outcome) == ([bytes(100)], "error")
            with pytest.raises(InvalidState):
                decoder.receive_data(b"\x01\x00")


payload_lists = st.lists(st.binary(max_size=300), max_size=12)


@st.composite
def split_points(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


class TestProperties:
    """Round trips and robustness on arbitrary input (Hypothesis)."""

    @given(payload_lists, st.data())
    def test_round_trip_split_anywhere(self, payloads: list[bytes], data: st.DataObject) -> None:
        wire = b"".join(encode_frame(p) for p in payloads)
        chunks = data.draw(split_points(wire))
        got, outcome, decoder = decode_all(chunks, max_frame_size=outer_length(300))
        assert (got, outcome) == (payloads, "eof")
        assert decoder.buffered_bytes == 0

    @given(st.binary(max_size=2000), st.data())
    def test_round_trip_large_payload(self, payload: bytes, data: st.DataObject) -> None:
        chunks = data.draw(split_points(encode_frame(payload) * 3))
        assert decode_all(chunks, outer_length(2000))[:2] == ([payload] * 3, "eof")

    @settings(max_examples=500)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=80).map(encode_frame),
                st.binary(max_size=12),
                st.sampled_from([b"\x00", b"\xff" * 9, b"\x84\x00", b"\x80", b"\x05\x09"]),
            ),
            max_size=10,
        ),
        st.integers(1, 100),
        st.data(),
    )
    def test_random_input_matches_go_and_stays_bounded(
        self, parts: list[bytes], limit: int, data: st.DataObject
    ) -> None:
        wire = b"".join(parts)
        decoder = FrameDecoder(limit)
        payloads: list[bytes] = []
        outcome = "eof"
        try:
            for chunk in data.draw(split_points(wire)):
                decoder.receive_data(chunk)
                assert decoder.buffered_bytes < limit + 10
                payloads += _payloads(decoder.events_received())
            decoder.receive_eof()
            assert decoder.events_received()[-1] == EndOfStream()
        except RemoteProtocolError:  # FrameTooLarge included; nothing else may escape
            outcome = "error"
            payloads += _payloads(decoder.events_received())
        assert (payloads, outcome) == go_reader(wire, limit)
        assert decoder.buffered_bytes == 0
