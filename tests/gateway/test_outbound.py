"""The outbound queue of a browser socket (glueberry_gateway.server.outbound, docs/gateway-protocol.md
§5.6, §7): order, eager sends, batches, acks (the backends' window), slow consumers, the close.

The WebSocket here is a fake that can hold a send or break, to inject what a real socket does
under a browser that does not read; everything else is the real queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.websockets import WebSocketDisconnect

from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.protocol.frames import decode_batch, encode_data_frame
from glueberry_gateway.server.outbound import BATCH_BYTES, Outbound
from glueberry_gateway.server.settings import Limits


@dataclass
class FakeWebSocket:
    """Records what is sent; ``hold()`` makes sends wait until ``release()``; ``broken`` fails them."""

    sent: list[str | bytes] = field(default_factory=list)
    closed: list[tuple[Code, str]] = field(default_factory=list)
    broken: bool = False
    _gate: asyncio.Event | None = None

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def _send(self, data: str | bytes) -> None:
        if self.broken:
            raise WebSocketDisconnect(1006)
        gate = self._gate
        if gate is not None:
            await gate.wait()
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)

    async def send_text(self, data: str) -> None:
        await self._send(data)

    async def close(self, code: Code, reason: str) -> None:
        self.closed.append((code, reason))


@dataclass
class Queue:
    ws: FakeWebSocket
    outbound: Outbound
    writer: asyncio.Task[None]
    slow: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)

    def ack(self, name: str) -> object:
        return lambda: self.acked.append(name)


_writers: list[asyncio.Task[None]] = []


@pytest.fixture(autouse=True)
async def _stop_writers() -> AsyncIterator[None]:
    yield
    for writer in _writers:
        writer.cancel()
    _writers.clear()


async def make(*, batch: bool = False, **limits: float) -> Queue:
    ws = FakeWebSocket()
    settings = Limits(**limits)  # type: ignore[arg-type]
    slow: list[float] = []
    outbound = Outbound(ws, ws.close, settings, lambda: slow.append(time.monotonic()))
    outbound.batch = batch
    writer = asyncio.ensure_future(outbound.run())
    _writers.append(writer)
    await asyncio.sleep(0)  # the writer waits for work
    return Queue(ws, outbound, writer, slow)


FRAME = encode_data_frame(1, "chat", b"x" * 100)


class TestOrderAndAcks:
    async def test_an_idle_socket_sends_at_once(self) -> None:
        q = await make()
        q.outbound.push(FRAME, q.ack("a"))  # type: ignore[arg-type]
        assert q.ws.sent == [FRAME]  # no task switch
        assert q.acked == ["a"]

    async def test_order_and_acks_after_the_write(self) -> None:
        q = await make()
        q.ws.hold()
        q.outbound.push("notice 1")
        q.outbound.push(FRAME, q.ack("frame"))  # type: ignore[arg-type]
        q.outbound.push("notice 2")
        await asyncio.sleep(0.01)
        assert q.acked == []  # the backend's window stays charged while the browser has not taken it
        assert q.outbound.queued_bytes == len("notice 1") + len(FRAME) + len("notice 2")
        q.ws.release()
        await asyncio.sleep(0.01)
        assert q.ws.sent == ["notice 1", FRAME, "notice 2"]
        assert q.acked == ["frame"]
        assert q.outbound.queued_bytes == 0

    async def test_the_close_comes_after_what_was_queued_and_nothing_after_it(self) -> None:
        q = await make()
        q.ws.hold()
        q.outbound.push("error")
        q.outbound.close(Code.RATE_LIMITED, "too fast")
        q.outbound.push(FRAME, q.ack("late"))  # type: ignore[arg-type]
        assert q.acked == ["late"]  # dropped: its window goes back at once
        q.ws.release()
        await asyncio.wait_for(q.writer, 1)
        assert q.ws.sent == ["error"]
        assert q.ws.closed == [(Code.RATE_LIMITED, "too fast")]

    async def test_a_broken_socket_stops_the_writer(self) -> None:
        q = await make()
        q.ws.broken = True
        q.outbound.push("x")
        await asyncio.wait_for(q.writer, 1)
        q.outbound.push(FRAME, q.ack("after"))  # type: ignore[arg-type]
        assert q.acked == ["after"]
        assert q.ws.sent == []


class TestBatches:
    async def test_frames_of_one_loop_turn_leave_as_one_batch(self) -> None:
        q = await make(batch=True)
        q.outbound.send_frames([FRAME, FRAME], q.ack("first"))  # type: ignore[arg-type]
        q.outbound.send_frames([FRAME], q.ack("second"))  # type: ignore[arg-type]
        assert q.ws.sent == []  # held until the end of this turn
        await asyncio.sleep(0)
        (batch,) = q.ws.sent
        assert isinstance(batch, bytes)
        assert [bytes(f) for f in decode_batch(batch, max_bytes=1 << 20)] == [FRAME] * 3
        assert q.acked == ["first", "second"]

    async def test_a_notice_goes_after_the_data_sent_before_it(self) -> None:
        q = await make(batch=True)
        q.outbound.send_frames([FRAME], None)
        q.outbound.push("stream_closed")
        assert q.ws.sent == [FRAME, "stream_closed"]

    async def test_a_burst_larger_than_a_batch_goes_as_several(self) -> None:
        q = await make(batch=True)
        big = encode_data_frame(1, "chat", b"y" * 20_000)
        q.outbound.send_frames([big] * 8, None)
        await asyncio.sleep(0.01)
        assert len(q.ws.sent) >= 3
        assert all(len(m) <= BATCH_BYTES for m in q.ws.sent)
        frames = [bytes(f) for m in q.ws.sent for f in decode_batch(bytes(m), max_bytes=1 << 20)]
        assert frames == [big] * 8


class TestSlowConsumers:
    """§7: past outbound_queue_bytes for slow_consumer_timeout, or twice it at once, or one write
    blocked that long: the owner is told once; what is queued waits for drop()."""

    async def test_twice_the_limit_at_once(self) -> None:
        q = await make(outbound_queue_bytes=1000, slow_consumer_timeout=60)
        q.ws.hold()
        q.outbound.push("first")  # the write that blocks
        for i in range(30):
            q.outbound.push(FRAME, q.ack(f"f{i}"))  # type: ignore[arg-type]
        assert len(q.slow) == 1
        assert q.outbound.drop() > 0
        assert len(q.acked) == 30  # every queued frame's window back

    async def test_over_the_limit_for_too_long(self) -> None:
        q = await make(outbound_queue_bytes=150, slow_consumer_timeout=0.05)
        q.ws.hold()
        q.outbound.push("first")
        q.outbound.push(FRAME)
        q.outbound.push(FRAME)  # over the limit, not twice it
        assert q.slow == []
        await asyncio.sleep(0.06)
        q.outbound.check(time.monotonic())
        q.outbound.check(time.monotonic())
        assert len(q.slow) == 1

    async def test_a_single_write_blocked_for_too_long(self) -> None:
        q = await make(slow_consumer_timeout=0.05)
        q.ws.hold()
        q.outbound.push(FRAME)
        await asyncio.sleep(0.06)
        q.outbound.check(time.monotonic())
        assert len(q.slow) == 1

    async def test_a_reader_that_catches_up_is_not_slow(self) -> None:
        q = await make(outbound_queue_bytes=150, slow_consumer_timeout=0.05)
        q.ws.hold()
        q.outbound.push("first")
        q.outbound.push(FRAME)
        q.outbound.push(FRAME)
        q.ws.release()
        await asyncio.sleep(0.06)
        q.outbound.check(time.monotonic())
        assert q.slow == []
