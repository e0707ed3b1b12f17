"""The Glueberry node, Python <-> Python over loopback (the same scenarios run against Go in
tests/interop/test_glueberry_python_go.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from pathlib import Path

import pytest

from glueberry.config import Config
from glueberry.events import ConnectionState
from glueberry.exceptions import (
    ConnectionFailed,
    InvalidConfig,
    InvalidKey,
    InvalidState,
    InvalidStreamName,
    KeyMismatch,
    MessageTooLarge,
    NodeNotStarted,
    PeerBlacklisted,
    PeerNotFound,
)
from glueberry.node import Node
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from tests.helpers import wait_state
from tests.sdk.asyncio.conftest import MakeNode

S = ConnectionState


async def established_pair(make_node: MakeNode, **options: object) -> tuple[Node, Node]:
    a = await make_node(**options)
    b = await make_node(**options)
    ev_a, ev_b = a.events(states=[S.ESTABLISHED]), b.events(states=[S.ESTABLISHED])
    a.add_peer(b.peer_id, b.addrs)
    await wait_state(ev_a, S.ESTABLISHED)
    await wait_state(ev_b, S.ESTABLISHED)
    return a, b


class TestHandshakeToEstablished:
    async def test_both_sides_established_with_events_in_order(self, make_node: MakeNode) -> None:
        a = await make_node()
        b = await make_node()
        ev_a, ev_b = a.events(), b.events()
        a.add_peer(b.peer_id, b.addrs)
        seen_a = [(await ev_a.get()) for _ in range(3)]
        assert [e.state for e in seen_a if e] == [S.CONNECTING, S.CONNECTED, S.ESTABLISHED]
        seen_b = [(await ev_b.get()) for _ in range(3)]
        assert [e.state for e in seen_b if e] == [S.CONNECTING, S.CONNECTED, S.ESTABLISHED]
        assert a.is_outbound(b.peer_id) is True
        assert b.is_outbound(a.peer_id) is False
        assert a.connection_state(b.peer_id) is S.ESTABLISHED
        # the address book learned b's key
        assert a.get_peer(b.peer_id).public_key == b.public_key

    async def test_manual_handshake(self, make_node: MakeNode) -> None:
        a = await make_node(auto=False)
        b = await make_node(auto=False)
        ev_b = b.events(states=[S.CONNECTED])
        a.add_peer(b.peer_id, b.addrs)
        await a.send(b.peer_id, "handshake", b"hi, I am a")
        msg = await b.receive(timeout=5)
        assert (msg.stream_name, msg.data) == ("handshake", b"hi, I am a")
        await wait_state(ev_b, S.CONNECTED)
        a.prepare_streams(b.peer_id, b.public_key, ["chat"])
        b.prepare_streams(a.peer_id, a.public_key, ["chat"])
        await a.finalize_handshake(b.peer_id)
        await b.finalize_handshake(a.peer_id)
        await a.send(b.peer_id, "chat", b"secret")
        assert (await b.receive(timeout=5)).data == b"secret"


class TestMessages:
    async def test_three_streams_at_once(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        await asyncio.gather(
            *(a.send(b.peer_id, name, name.encode()) for name in ("chat", "files", "control"))
        )
        got = {(m.stream_name, m.data) for m in [await b.receive(timeout=5) for _ in range(3)]}
        assert got == {("chat", b"chat"), ("files", b"files"), ("control", b"control")}

    async def test_10000_messages_in_order_per_stream(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node, max_messages_per_second=0)
        n = 10_000

        async def send(name: str) -> None:
            for i in range(n):
                await a.send(b.peer_id, name, i.to_bytes(8, "big") + name.encode())

        senders = asyncio.gather(send("chat"), send("files"))
        expected = {"chat": 0, "files": 0}
        for _ in range(2 * n):
            msg = await b.receive(timeout=10)
            assert int.from_bytes(msg.data[:8], "big") == expected[msg.stream_name]
            expected[msg.stream_name] += 1
        await senders
        assert expected == {"chat": n, "files": n}
        stats = b.peer_statistics(a.peer_id)
        assert stats is not None
        assert stats.streams["chat"].messages_received == n

    async def test_one_mebibyte_and_empty_messages(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        big = os.urandom(1 << 20)
        await a.send(b.peer_id, "files", big)
        await a.send(b.peer_id, "files", b"")
        assert (await b.receive(timeout=10)).data == big
        assert (await b.receive(timeout=5)).data == b""
        with pytest.raises(MessageTooLarge):
            await a.send(b.peer_id, "files", big + b"!")

    async def test_simultaneous_first_sends_lose_nothing(self, make_node: MakeNode) -> None:
        """Both sides open the stream at once; each adopts the other's and reads both (§4.3)."""
        a, b = await established_pair(make_node)
        await asyncio.gather(
            *(a.send(b.peer_id, "control", f"a{i}".encode()) for i in range(20)),
            *(b.send(a.peer_id, "control", f"b{i}".encode()) for i in range(20)),
        )
        got_b = {(await b.receive(timeout=5)).data for _ in range(20)}
        got_a = {(await a.receive(timeout=5)).data for _ in range(20)}
        assert got_b == {f"a{i}".encode() for i in range(20)}
        assert got_a == {f"b{i}".encode() for i in range(20)}

    async def test_backpressure_not_loss_when_the_application_is_slow(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node, message_buffer_size=10, max_messages_per_second=0)
        sending = asyncio.gather(*(a.send(b.peer_id, "chat", b"x" * 60_000) for _ in range(100)))
        await asyncio.sleep(0.5)  # b reads nothing meanwhile: its queue (10) and windows fill
        for _ in range(100):
            assert len((await b.receive(timeout=5)).data) == 60_000
        await sending


class TestBadInput:
    async def test_names(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        for name in ("", "a b", "x" * 65, "slash/name", "é" * 33):
            with pytest.raises(InvalidStreamName):
                await a.send(b.peer_id, name, b"x")
        await a.send(b.peer_id, "chat", b"still fine")
        assert (await b.receive(timeout=5)).data == b"still fine"

    async def test_send_before_prepare(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        with pytest.raises(InvalidState, match="prepare_streams"):
            await a.send(b.peer_id, "not-prepared", b"x")

    async def test_key_that_does_not_match_the_peer_id(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        stranger = public_key_bytes(generate_private_key())
        with pytest.raises(KeyMismatch):
            a.prepare_streams(b.peer_id, stranger, ["chat"])
        with pytest.raises(InvalidKey):
            a.prepare_streams(b.peer_id, b"short", ["chat"])

    async def test_unknown_and_blacklisted_peers(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node)
        stranger = PeerID.from_private_key(generate_private_key())
        with pytest.raises(PeerNotFound):
            await a.connect(stranger)
        ev_b = b.events(states=[S.DISCONNECTED])
        await a.blacklist_peer(b.peer_id)
        assert a.connection_state(b.peer_id) is S.DISCONNECTED
        await wait_state(ev_b, S.DISCONNECTED)
        with pytest.raises(PeerBlacklisted):
            await a.send(b.peer_id, "chat", b"x")
        with pytest.raises(PeerBlacklisted):
            await a.connect(b.peer_id)
        # and b cannot reach a either: a's gater refuses it
        b.add_peer(a.peer_id, a.addrs)
        with pytest.raises(ConnectionFailed):
            await b.connect(a.peer_id)
        assert a.limit_refusals.get("blacklisted", 0) >= 1

    async def test_not_started(self, tmp_path: Path) -> None:
        node = Node(Config(generate_private_key(), tmp_path / "b.json", ["/ip4/127.0.0.1/tcp/0"]))
        with pytest.raises(NodeNotStarted):
            await node.send(PeerID.from_private_key(generate_private_key()), "chat", b"x")

    def test_config_errors_name_every_field(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidConfig) as info:
            Config(b"short", "", [], handshake_timeout=-1, max_peers=0).validate()
        text = str(info.value)
        for field_name in (
            "private_key",
            "address_book_path",
            "listen_addrs",
            "handshake_timeout",
            "max_peers",
        ):
            assert field_name in text

    async def test_corrupt_address_book_refuses_to_start(self, tmp_path: Path) -> None:
        path = tmp_path / "book.json"
        path.write_text("{not json")
        before = path.read_bytes()
        node = Node(Config(generate_private_key(), path, ["/ip4/127.0.0.1/tcp/0"]))
        with pytest.raises(InvalidConfig, match=str(path)):
            await node.start()
        assert path.read_bytes() == before


class TestTamperedFrames:
    async def test_decryption_error_drops_the_frame_and_keeps_the_stream(self, make_node: MakeNode) -> None:
        errors: list[str] = []
        a = await make_node()
        b = await make_node(on_decryption_error=lambda peer, exc: errors.append(peer))
        ev = b.events(states=[S.ESTABLISHED])
        a.add_peer(b.peer_id, b.addrs)
        await wait_state(ev, S.ESTABLISHED)
        await a.send(b.peer_id, "chat", b"first")
        assert (await b.receive(timeout=5)).data == b"first"
        # a frame encrypted with another key, then a corrupted one, on the same stream
        stream = a._peers[b.peer_id].streams.sender("chat")
        assert stream is not None
        from glueberry.wire.cipher import StreamCipher

        await stream.send(StreamCipher(os.urandom(32)).encrypt(b"for someone else"))
        assert a._peers[b.peer_id].cipher is not None
        good = a._peers[b.peer_id].cipher.encrypt(b"tampered")  # type: ignore[union-attr]
        await stream.send(good[:-1] + bytes([good[-1] ^ 1]))
        await stream.send(b"short")
        await a.send(b.peer_id, "chat", b"after")
        assert (await b.receive(timeout=5)).data == b"after"
        assert errors == [str(a.peer_id)] * 3
        assert b.decryption_errors == 3


class TestConnectionLoss:
    async def test_a_dropped_peers_streams_are_freed_without_the_collector(self, make_node: MakeNode) -> None:
        # A stream's reader task, the exception that ended it and the stream held each other, so
        # every closed peer waited for a full collection (a pause that grows with the peers).
        a, b = await established_pair(make_node)
        await a.send(b.peer_id, "chat", b"open the stream")
        assert (await b.receive(timeout=5)).data == b"open the stream"
        streams = [weakref.ref(s) for s in b._peers[a.peer_id].streams]
        assert streams
        gc.collect()
        gc.disable()
        try:
            await b.disconnect(a.peer_id)  # b's readers are cancelled while they wait for data
            await asyncio.sleep(0.1)
            assert [ref() for ref in streams] == [None] * len(streams)
        finally:
            gc.enable()

    async def test_remote_goes_away_then_reconnection(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node, reconnect_base_delay=0.05)
        events = a.events()
        # drop every connection from b's side without telling a's node
        for conn in b._host.connections(a.peer_id):  # type: ignore[union-attr]
            conn.abort(ConnectionError("cable pulled"))  # type: ignore[arg-type]
        disconnected = await wait_state(events, S.DISCONNECTED)
        assert disconnected.error is not None
        await wait_state(events, S.RECONNECTING)
        await wait_state(events, S.ESTABLISHED, timeout=10)
        await a.send(b.peer_id, "chat", b"back")
        assert (await b.receive(timeout=5)).data == b"back"

    async def test_stop_cancels_a_pending_reconnection(self, make_node: MakeNode) -> None:
        a, b = await established_pair(make_node, reconnect_base_delay=30)
        events = a.events()
        await b.stop()
        await wait_state(events, S.RECONNECTING)
        reconnection = a._peers[b.peer_id].reconnect_task
        assert reconnection is not None
        assert not reconnection.done()
        await a.stop()
        assert reconnection.cancelled()
        assert a._peers[b.peer_id].reconnect_task is None

        a, b = await established_pair(make_node, reconnect_base_delay=0.05)
        await a.disconnect(b.peer_id)
        await asyncio.sleep(0.3)
        assert a.connection_state(b.peer_id) is S.DISCONNECTED

    async def test_handshake_timeout_then_cooldown_then_disconnected(self, make_node: MakeNode) -> None:
        a = await make_node(
            auto=False, handshake_timeout=0.3, failed_handshake_cooldown=0.3, reconnect_max_attempts=1
        )
        b = await make_node(auto=False)
        events = a.events()
        a.add_peer(b.peer_id, b.addrs)
        await wait_state(events, S.CONNECTED)
        cooldown = await wait_state(events, S.COOLDOWN, timeout=2)
        assert type(cooldown.error).__name__ == "HandshakeTimeout"
        with pytest.raises(InvalidState, match="cooldown"):
            await a.connect(b.peer_id)
        await wait_state(events, S.DISCONNECTED, timeout=2)
