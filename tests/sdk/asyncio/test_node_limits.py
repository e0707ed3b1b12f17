"""The node's limits (Go's roadmap item 1.1.3): each refusal typed and counted, nothing else
disturbed; and bad input from a remote peer ending only that stream."""

from __future__ import annotations

import asyncio
import time

import pytest

from glueberry.events import ConnectionState
from glueberry.exceptions import ConnectionFailed, InvalidKey, LimitExceeded, MetadataTooLarge
from glueberry.limits import SlidingWindow, TokenBucket
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from tests.helpers import wait_for, wait_state
from tests.sdk.asyncio.conftest import MakeNode

S = ConnectionState


@pytest.fixture
def node_streams() -> tuple[str, ...]:
    """make_node's nodes (conftest.py) prepare the stream "chat" alone."""
    return ("chat",)


class TestRateArithmetic:
    def test_token_bucket(self) -> None:
        bucket = TokenBucket(rate=10, burst=2, now=0.0)
        assert bucket.take(0.0) == 0
        assert bucket.take(0.0) == 0
        assert bucket.take(0.0) == pytest.approx(0.1)
        assert bucket.take(0.1) == 0  # refilled one token

    def test_sliding_window(self) -> None:
        window = SlidingWindow(limit=2, window=60)
        assert window.allow(0)
        assert window.allow(1)
        assert not window.allow(2)
        assert window.allow(61)  # the first one left the window
        assert not window.idle(61)
        assert window.idle(200)


class TestLimits:
    async def test_max_metadata_size_reaches_the_address_book(self, make_node: MakeNode) -> None:
        node = await make_node(max_metadata_size=32)
        peer = PeerID.from_public_key(public_key_bytes(generate_private_key()))
        node.add_peer(peer, ["/ip4/127.0.0.1/tcp/1"], {"note": "x" * 28})  # 4 + 28 bytes: at the limit
        with pytest.raises(MetadataTooLarge, match="over the limit of 32"):
            node.add_peer(peer, ["/ip4/127.0.0.1/tcp/1"], {"note": "x" * 29})
        assert node.get_peer(peer).metadata == {"note": "x" * 28}

    async def test_max_peers(self, make_node: MakeNode) -> None:
        hub = await make_node(max_peers=1)
        a = await make_node()
        b = await make_node()
        ev_a = a.events()
        a.add_peer(hub.peer_id, hub.addrs)
        await wait_state(ev_a, S.ESTABLISHED)
        b.add_peer(hub.peer_id, hub.addrs)
        with pytest.raises(ConnectionFailed):
            await b.connect(hub.peer_id)
        assert hub.limit_refusals["max_peers"] >= 1
        # the peer already connected is unaffected
        await a.send(hub.peer_id, "chat", b"still here")
        assert (await hub.receive(timeout=5)).data == b"still here"
        # and outbound dials past the limit are refused before anything is sent
        hub.add_peer(b.peer_id, b.addrs)
        with pytest.raises((LimitExceeded, ConnectionFailed)):
            await hub.connect(b.peer_id)

    async def test_connection_attempts_per_minute(self, make_node: MakeNode) -> None:
        hub = await make_node(max_connection_attempts_per_minute=2)
        a = await make_node(reconnect_max_attempts=1)
        a.add_peer(hub.peer_id, hub.addrs)
        events = a.events()
        await wait_state(events, S.ESTABLISHED)
        for _ in range(2):
            await a.disconnect(hub.peer_id)
            try:
                await a.connect(hub.peer_id)
            except ConnectionFailed:
                break
        assert hub.limit_refusals.get("max_connection_attempts_per_minute", 0) >= 1

    async def test_messages_per_second_paces_instead_of_dropping(self, make_node: MakeNode) -> None:
        receiver = await make_node(max_messages_per_second=200)
        sender = await make_node(max_messages_per_second=0)
        events = sender.events()
        sender.add_peer(receiver.peer_id, receiver.addrs)
        await wait_state(events, S.ESTABLISHED)
        start = time.monotonic()
        for i in range(400):
            await sender.send(receiver.peer_id, "chat", i.to_bytes(4, "big"))
        got = [int.from_bytes((await receiver.receive(timeout=10)).data, "big") for _ in range(400)]
        elapsed = time.monotonic() - start
        assert got == list(range(400))  # nothing lost, in order
        assert elapsed >= 0.9  # 200 burst + 200 at 200/s
        stats = receiver.peer_statistics(sender.peer_id)
        assert stats is not None
        assert stats.rate_limited >= 1
        assert receiver.limit_refusals["max_messages_per_second"] >= 1

    async def test_streams_per_peer(self, make_node: MakeNode) -> None:
        receiver = await make_node(max_streams_per_peer=4)
        sender = await make_node()
        events = sender.events()
        sender.add_peer(receiver.peer_id, receiver.addrs)
        await wait_state(events, S.ESTABLISHED)
        names = [f"s{i}" for i in range(8)]
        sender.prepare_streams(receiver.peer_id, receiver.public_key, names)
        receiver.prepare_streams(sender.peer_id, sender.public_key, names)
        results = await asyncio.gather(
            *(sender.send(receiver.peer_id, n, b"x") for n in names), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, Exception)]
        assert refused  # yamux refused the streams past the limit with RST
        assert all("code 4098" in str(r) for r in refused)  # yamux "resource limit" reset
        open_name = next(n for n, r in zip(names, results, strict=True) if not isinstance(r, Exception))
        await sender.send(receiver.peer_id, open_name, b"the connection lives")
        seen = set()
        async with asyncio.timeout(5):
            while b"the connection lives" not in seen:
                seen.add((await receiver.receive()).data)


class TestBadInputFromThePeer:
    async def test_malformed_framing_resets_only_that_stream(self, make_node: MakeNode) -> None:
        a = await make_node()
        b = await make_node()
        events = a.events()
        a.add_peer(b.peer_id, b.addrs)
        await wait_state(events, S.ESTABLISHED)
        await a.send(b.peer_id, "chat", b"ok")
        assert (await b.receive(timeout=5)).data == b"ok"
        sending = a._peers[b.peer_id].streams.sender("chat")
        assert sending is not None
        stream = sending.stream  # its data goes to a's Glueberry stream: watch for the reset
        await stream.write(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # a 10-byte varint overflow
        assert await wait_for(lambda: stream.is_reset, 5)  # b reset it
        # b is fine and a new stream works
        await a.send(b.peer_id, "chat", b"again")
        assert (await b.receive(timeout=5)).data == b"again"

    async def test_oversized_frame_is_refused_before_allocation(self, make_node: MakeNode) -> None:
        a = await make_node()
        b = await make_node(max_message_size=1024)
        events = a.events()
        a.add_peer(b.peer_id, b.addrs)
        await wait_state(events, S.ESTABLISHED)
        await a.send(b.peer_id, "chat", b"ok")
        await b.receive(timeout=5)
        sending = a._peers[b.peer_id].streams.sender("chat")
        assert sending is not None
        stream = sending.stream
        await stream.write(b"\x80\x80\x80\x20")  # announces 64 MiB
        assert await wait_for(lambda: stream.is_reset, 5)  # b reset it

    async def test_low_order_key(self, make_node: MakeNode) -> None:
        from glueberry.p2p.keys import PeerID

        a = await make_node()
        identity_point = bytes([1]) + bytes(31)  # u = 0: low order
        with pytest.raises(InvalidKey):
            a.prepare_streams(PeerID.from_public_key(identity_point), identity_point, ["chat"])
