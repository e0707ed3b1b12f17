"""Batch messages (docs/gateway-protocol.md §5.6) in the codec: layout, bounds, bad input, and how
frames are packed into as few messages as their bounds allow."""

from __future__ import annotations

import pytest

from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.protocol.errors import ProtocolViolation
from glueberry_gateway.protocol.frames import (
    BATCH_KIND,
    MAX_BATCH_ENTRY,
    MAX_BATCH_FRAMES,
    decode_batch,
    decode_data_frame,
    encode_batch,
    encode_data_frame,
    pack_batches,
)


def frame(size: int, session: int = 1) -> bytes:
    """A data frame of exactly ``size`` bytes on stream "chat"."""
    header = encode_data_frame(session, "chat", b"")
    return header + bytes(size - len(header))


def unpack(messages: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for message in messages:
        out += (
            [bytes(f) for f in decode_batch(message, max_bytes=1 << 24)]
            if message[0] == BATCH_KIND
            else [message]
        )
    return out


class TestLayout:
    def test_kind_then_u16_length_and_frame_per_entry(self) -> None:
        a, b = encode_data_frame(1, "chat", b"x"), encode_data_frame(2, "files", b"yz")
        assert encode_batch([a, b]) == b"\x02" + len(a).to_bytes(2, "big") + a + len(b).to_bytes(2, "big") + b

    def test_round_trip_keeps_order_and_views(self) -> None:
        frames = [encode_data_frame(i, "chat", bytes([i]) * i) for i in range(1, 6)]
        decoded = decode_batch(encode_batch(frames), max_bytes=1000)
        assert [bytes(f) for f in decoded] == frames
        assert all(isinstance(f, memoryview) for f in decoded)
        assert [decode_data_frame(f, max_bytes=100).session for f in decoded] == [1, 2, 3, 4, 5]

    def test_a_frame_too_long_for_an_entry_is_refused(self) -> None:
        encode_batch([frame(MAX_BATCH_ENTRY)])
        with pytest.raises(ValueError, match="send it alone"):
            encode_batch([frame(MAX_BATCH_ENTRY + 1)])


class TestBadBatches:
    @pytest.mark.parametrize(
        ("data", "why"),
        [
            (b"\x02", "empty"),
            (b"\x02\x00", "cut short"),
            (b"\x02\x00\x09\x01\x00\x01", "longer than the batch"),
            (b"\x02\x00\x00", "data frames only"),
            (b"\x02\x00\x04\x02\x00\x01\x01", "data frames only"),  # a nested batch
            (b"\x01\x00\x01\x01a", "not a batch"),
        ],
    )
    def test_malformed(self, data: bytes, why: str) -> None:
        with pytest.raises(ProtocolViolation, match=why) as info:
            decode_batch(data, max_bytes=1000)
        assert info.value.code == Code.PROTOCOL_ERROR

    def test_at_most_1024_frames(self) -> None:
        tiny = encode_data_frame(1, "c", b"")
        assert len(decode_batch(encode_batch([tiny] * MAX_BATCH_FRAMES), max_bytes=1 << 20)) == 1024
        over = encode_batch([tiny] * MAX_BATCH_FRAMES) + len(tiny).to_bytes(2, "big") + tiny
        with pytest.raises(ProtocolViolation, match="more than 1024 frames") as info:
            decode_batch(over, max_bytes=1 << 20)
        assert info.value.code == Code.PROTOCOL_ERROR
        with pytest.raises(ValueError, match="at most 1024"):
            encode_batch([tiny] * (MAX_BATCH_FRAMES + 1))

    def test_over_the_bound(self) -> None:
        batch = encode_batch([frame(50)] * 3)
        decode_batch(batch, max_bytes=len(batch))
        with pytest.raises(ProtocolViolation) as info:
            decode_batch(batch, max_bytes=len(batch) - 1)
        assert info.value.code == Code.MESSAGE_TOO_BIG


class TestPacking:
    def test_one_frame_goes_as_a_data_frame(self) -> None:
        assert pack_batches([frame(10)], 1000) == [frame(10)]
        assert pack_batches([], 1000) == []

    def test_frames_share_batches_within_the_bound(self) -> None:
        frames = [frame(100, session=i) for i in range(1, 21)]
        messages = pack_batches(frames, 1000)
        assert unpack(messages) == frames
        assert all(len(m) <= 1000 for m in messages)
        assert len(messages) == 3  # 9 entries of 102 bytes + the kind byte fit in 1000
        assert all(m[0] == BATCH_KIND for m in messages)

    def test_runs_of_at_most_1024_frames(self) -> None:
        frames = [encode_data_frame(1, "c", bytes([i % 256])) for i in range(2500)]
        messages = pack_batches(frames, 1 << 20)
        assert [len(decode_batch(m, max_bytes=1 << 20)) for m in messages] == [1024, 1024, 452]
        assert unpack(messages) == frames

    def test_a_frame_that_fits_no_batch_travels_alone_in_its_place(self) -> None:
        big = frame(MAX_BATCH_ENTRY + 10)
        frames = [frame(10), frame(20), big, frame(30), frame(999)]
        messages = pack_batches(frames, 1000)
        assert unpack(messages) == frames
        assert messages[1] == big
        assert messages[3] == frame(999)  # 999 + 3 bytes of batch would be over the bound
