"""Glueberry streams (glueberry.streams, PROTOCOL.md §4, §6), the one implementation the node and
the gateway share, over real libp2p streams on loopback: framing both ways, payloads delivered in
order without a task, the window held until the owner releases it, how a stream ends (clean end,
truncated frame, bad framing, reset, even one before reading started), and which stream of a
name is sent on (StreamTable: the newest open one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from glueberry.exceptions import RemoteProtocolError, StreamClosed, StreamReset, TruncatedFrame
from glueberry.p2p.asyncio import Host, HostConfig, Stream
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.signer import LocalSigner
from glueberry.p2p.yamux import YamuxConfig
from glueberry.streams import GlueberryStream, StreamTable, protocol_id, stream_name_of
from glueberry.wire.framing import encode_frame, outer_length
from tests.helpers import wait_for

PROTOCOL = protocol_id("chat")
WINDOW = 256 * 1024


@dataclass(eq=False)
class Receiver:
    """The owner of a Glueberry stream, as the node or a gateway session is."""

    release: bool = True
    payloads: list[bytes] = field(default_factory=list)
    held: int = 0
    ends: list[BaseException | None] = field(default_factory=list)

    def on_payloads(self, stream: GlueberryStream, payloads: list[bytes], held: int) -> None:
        self.payloads += payloads
        if self.release:
            stream.release(held)
        else:
            self.held += held

    def on_end(self, stream: GlueberryStream, error: BaseException | None) -> None:
        self.ends.append(error)

    def wrap(self, stream: Stream, *, start: bool = True) -> GlueberryStream:
        gstream = GlueberryStream(
            stream,
            "chat",
            outbound=False,
            max_frame_size=outer_length(1 << 20),
            on_payloads=self.on_payloads,
            on_end=self.on_end,
        )
        if start:
            gstream.start()
        return gstream


@dataclass
class Pair:
    client: Host
    server_id: PeerID
    inbound: asyncio.Queue[Stream]

    async def open(self) -> tuple[Stream, Stream]:
        """A stream from the client, and the same stream as the server sees it."""
        outbound = await self.client.new_stream(self.server_id, PROTOCOL, [])
        return outbound, await asyncio.wait_for(self.inbound.get(), 5)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    config = HostConfig(yamux=YamuxConfig(receive_window=WINDOW))
    server = Host(LocalSigner(generate_private_key()), config)
    client = Host(LocalSigner(generate_private_key()), config)
    inbound: asyncio.Queue[Stream] = asyncio.Queue()

    async def handler(stream: Stream) -> None:
        inbound.put_nowait(stream)

    server.set_stream_handler(PROTOCOL, handler)
    addrs = await server.listen(["/ip4/127.0.0.1/tcp/0"])
    await client.dial(server.peer_id, addrs)
    yield Pair(client, server.peer_id, inbound)
    await client.close()
    await server.close()


class TestFraming:
    async def test_payloads_in_order_both_ways(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        near, far = Receiver(), Receiver()
        sender = near.wrap(raw_out)
        receiver = far.wrap(raw_in)
        for i in range(50):
            await sender.send(f"m{i}".encode() * (i + 1))
        await receiver.send(b"back")
        assert await wait_for(lambda: len(far.payloads) == 50 and near.payloads == [b"back"], 5)
        assert far.payloads == [f"m{i}".encode() * (i + 1) for i in range(50)]

    async def test_concurrent_senders_never_interleave(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        sender = Receiver().wrap(raw_out)
        far.wrap(raw_in)
        payloads = [bytes([i]) * 100_000 for i in range(8)]  # each waits for window midway
        await asyncio.gather(*(sender.send(p) for p in payloads))
        assert await wait_for(lambda: len(far.payloads) == 8, 5)
        assert sorted(far.payloads) == sorted(payloads)

    async def test_a_sender_that_gives_up_does_not_block_the_others(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver(release=False)  # the window fills: a send waits inside its frame
        sender = Receiver().wrap(raw_out)
        receiver = far.wrap(raw_in)
        big = [bytes([100 + i]) * 60_000 for i in range(8)]
        writes = asyncio.gather(*(sender.send(p) for p in big))
        await asyncio.sleep(0.1)
        small = [asyncio.ensure_future(sender.send(bytes([i]) * 10)) for i in range(3)]
        await asyncio.sleep(0.05)
        assert not any(s.done() for s in small)  # waiting their turn
        small[0].cancel()  # gives up while waiting
        receiver.release(far.held)
        far.release = True
        await asyncio.wait_for(asyncio.gather(writes, *small[1:]), 5)
        assert await wait_for(lambda: len(far.payloads) == 10, 5)
        assert sorted(far.payloads[:8]) == sorted(big)
        assert far.payloads[8:] == [bytes([1]) * 10, bytes([2]) * 10]  # the one that gave up never went

    def test_protocol_ids(self) -> None:
        assert protocol_id("chat") == "/glueberry/stream/chat/1.0.0"
        assert stream_name_of("/glueberry/stream/chat/1.0.0") == "chat"
        assert stream_name_of("/ipfs/ping/1.0.0") is None


class TestWindow:
    async def test_the_window_is_held_until_the_owner_releases_it(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver(release=False)
        sender = Receiver().wrap(raw_out)
        receiver = far.wrap(raw_in)
        chunk = b"x" * 60_000
        writes = asyncio.gather(*(sender.send(chunk) for _ in range(8)))
        await asyncio.sleep(0.2)
        assert not writes.done()  # 480 kB cannot pass a 256 KiB window that is never released
        assert 0 < far.held <= WINDOW
        receiver.release(far.held)
        far.release = True
        await asyncio.wait_for(writes, 5)
        assert await wait_for(lambda: len(far.payloads) == 8, 5)

    async def test_send_nowait_sends_only_what_need_not_wait(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver(release=False)  # complete frames hold their window until released
        sender = Receiver().wrap(raw_out)
        receiver = far.wrap(raw_in)
        assert sender.send_nowait(b"first")  # window free, no other sender: it goes now
        assert not sender.send_nowait(b"x" * WINDOW)  # more than the window: nothing is sent
        chunks = [bytes([i]) * 60_000 for i in range(5)]  # the fifth waits for window

        async def send_all() -> None:
            for chunk in chunks:
                await sender.send(chunk)

        writes = asyncio.ensure_future(send_all())
        await asyncio.sleep(0.1)
        assert not writes.done()
        assert not sender.send_nowait(b"x")  # another sender holds the turn: not now
        receiver.release(far.held)
        far.release = True
        await asyncio.wait_for(writes, 5)
        assert sender.send_nowait(b"last")
        assert await wait_for(lambda: len(far.payloads) == 7, 5)
        assert far.payloads == [b"first", *chunks, b"last"]
        sender.close()
        with pytest.raises(StreamClosed):
            sender.send_nowait(b"after")

    async def test_waiting_senders_take_their_turns_in_order(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver(release=False)
        sender = Receiver().wrap(raw_out)
        receiver = far.wrap(raw_in)
        big = [bytes([100 + i]) * 60_000 for i in range(5)]
        writes = [asyncio.ensure_future(sender.send(chunk)) for chunk in big]  # the fifth waits
        await asyncio.sleep(0.05)
        queued = []
        for i in range(5):
            queued.append(asyncio.ensure_future(sender.send(bytes([i]) * 10)))
            await asyncio.sleep(0)  # each joins the queue in this order
        assert not sender.send_nowait(b"jump")  # while anyone waits, the turn is not free
        # Right after the fifth finishes, the turn is on its way to the next in the queue (a
        # woken sender that has not run yet): one that comes now must not go before it.
        jumped: list[bool] = []
        writes[4].add_done_callback(lambda _: jumped.append(sender.send_nowait(b"jump")))
        receiver.release(far.held)
        far.release = True
        await asyncio.wait_for(asyncio.gather(*writes, *queued), 5)
        assert jumped == [False]
        assert await wait_for(lambda: len(far.payloads) == 10, 5)
        assert far.payloads[5:] == [bytes([i]) * 10 for i in range(5)]

    async def test_a_frame_larger_than_the_window_still_arrives(self, pair: Pair) -> None:
        """Bytes of a frame not yet complete are released at once: they wait in the decoder."""
        raw_out, raw_in = await pair.open()
        far = Receiver(release=False)
        sender = Receiver().wrap(raw_out)
        far.wrap(raw_in)
        big = b"y" * (WINDOW + 50_000)
        await asyncio.wait_for(sender.send(big), 5)
        assert await wait_for(lambda: far.payloads == [big], 5)
        assert far.held < len(big)


class TestEnds:
    async def test_a_clean_end_closes_our_side_too(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        far.wrap(raw_in)
        await raw_out.write(encode_frame(b"last"))
        await raw_out.close()
        assert await wait_for(lambda: far.ends == [None], 5)
        assert far.payloads == [b"last"]
        assert await raw_out.read() == b""  # Go's full close: the far side ended its writes as well

    async def test_a_stream_cut_inside_a_frame(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        far.wrap(raw_in)
        await raw_out.write(encode_frame(b"whole") + encode_frame(b"cut short")[:5])
        await raw_out.close()
        assert await wait_for(lambda: len(far.ends) == 1, 5)
        assert far.payloads == [b"whole"]
        assert isinstance(far.ends[0], TruncatedFrame)

    async def test_bad_framing_delivers_what_came_before_then_resets(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        far.wrap(raw_in)
        await raw_out.write(encode_frame(b"good") + b"\xff" * 9 + b"\x7f")  # a varint overflow
        assert await wait_for(lambda: len(far.ends) == 1, 5)
        assert far.payloads == [b"good"]
        assert isinstance(far.ends[0], RemoteProtocolError)
        assert await wait_for(lambda: raw_out.is_reset, 5)  # the sender learns its stream is dead

    async def test_a_reset_by_the_remote(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        receiver = far.wrap(raw_in)
        raw_out.reset()
        assert await wait_for(lambda: len(far.ends) == 1, 5)
        assert isinstance(far.ends[0], StreamReset)
        assert receiver.closed
        with pytest.raises(StreamClosed):
            await receiver.send(b"too late")

    async def test_a_reset_before_reading_started_is_still_reported(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        raw_out.reset()
        assert await wait_for(lambda: raw_in.is_reset, 5)
        far = Receiver()
        far.wrap(raw_in)  # start() on a stream that already ended
        assert len(far.ends) == 1
        assert isinstance(far.ends[0], StreamReset)

    async def test_our_own_close_ends_it_once_and_drops_what_comes(self, pair: Pair) -> None:
        raw_out, raw_in = await pair.open()
        far = Receiver()
        receiver = far.wrap(raw_in)
        receiver.close()
        receiver.close()
        assert far.ends == [None]
        await raw_out.write(encode_frame(b"ignored") * 100)
        await asyncio.sleep(0.05)
        assert far.payloads == []


class TestStreamTable:
    async def test_the_newest_open_stream_of_a_name_is_sent_on(self, pair: Pair) -> None:
        table = StreamTable()
        owner = Receiver()
        first = owner.wrap((await pair.open())[1])
        second = owner.wrap((await pair.open())[1])
        table.add(first)
        table.add(second)
        assert table.sender("chat") is second
        assert table.sender("files") is None
        assert len(table) == 2
        assert table.remove(second) is False  # an older one takes over
        assert table.sender("chat") is first
        assert table.remove(second) is False  # not ours any more: nothing to tell
        first.close()
        assert table.sender("chat") is None  # closed streams are never sent on
        assert table.remove(first) is True  # the name has no stream left
        assert table.clear() == []

    async def test_clear_hands_back_every_stream(self, pair: Pair) -> None:
        table = StreamTable()
        owner = Receiver()
        streams = [owner.wrap((await pair.open())[1]) for _ in range(3)]
        for stream in streams:
            table.add(stream)
        assert table.clear() == streams
        assert table.sender("chat") is None
