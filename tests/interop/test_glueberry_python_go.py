"""Our Glueberry node against the real Go glueberry v1.2.10 (build/glueberry-peer).

Every scenario runs both ways round (the ``dial`` fixture: Python dials Go, Go dials Python), with
the Hello/PubKey/Complete handshake on both sides. Where Go behaves differently from our node
(a dropped connection, the simultaneous first-send race), the test states what Go does.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from glueberry.auto_handshake import HelloHandshakeHandler
from glueberry.config import Config
from glueberry.events import ConnectionState, EventSubscription
from glueberry.exceptions import ConnectionFailed, PeerBlacklisted
from glueberry.node import Node
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.wire.cipher import StreamCipher
from tests.helpers import free_port, wait_state
from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoPeer

pytestmark = pytest.mark.interop

S = ConnectionState
STREAMS = ("messages", "chat", "files")
GO_FAST = (
    "--handshake-timeout-ms",
    "600",
    "--failed-handshake-cooldown-ms",
    "600",
    "--reconnect-base-delay-ms",
    "200",
    "--reconnect-max-delay-ms",
    "400",
    "--reconnect-max-attempts",
    "3",
)


@dataclass
class Pair:
    py: Node
    go: GoPeer
    py_events: EventSubscription

    @property
    def go_id(self) -> PeerID:
        return PeerID.from_string(self.go.peer_id)


MakeNode = Callable[..., Awaitable[Node]]
Dial = Callable[[Node, GoPeer], Awaitable[None]]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(*, auto: bool = True, **options: object) -> Node:
        config = Config(
            generate_private_key(),
            tmp_path / f"py-{len(nodes)}.json",
            ["/ip4/127.0.0.1/tcp/0"],
            max_messages_per_second=0,
            **options,  # type: ignore[arg-type]
        )
        node = Node(
            config, handshake=HelloHandshakeHandler(streams=list(STREAMS), name="py") if auto else None
        )
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node._started:
            await node.stop()


async def python_dials(py: Node, go: GoPeer) -> None:
    py.add_peer(go.peer_id, go.addrs)


async def go_dials(py: Node, go: GoPeer) -> None:
    await go.request("add_peer", peer_id=str(py.peer_id), addrs=[str(a) for a in py.addrs])


@pytest.fixture(params=[python_dials, go_dials], ids=["python-dials", "go-dials"])
def dial(request: pytest.FixtureRequest) -> Dial:
    fn: Dial = request.param
    return fn


async def established(
    make_node: MakeNode, start_glueberry: StartPeer, dial: Dial, *go_args: str, **py_options: object
) -> Pair:
    go = await start_glueberry("--streams", ",".join(STREAMS), "--message-buffer-size", "20000", *go_args)
    py = await make_node(**py_options)
    events = py.events()
    await dial(py, go)
    await wait_state(events, S.ESTABLISHED, timeout=10)
    await go.wait_state(py.peer_id)
    return Pair(py, go, events)


def seq_payload(i: int, size: int = 64) -> bytes:
    return i.to_bytes(8, "big") + bytes(k % 251 for k in range(size - 8))


class TestHandshake:
    async def test_established_on_both_sides(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--name", "gopher")
        state = await pair.go.request("state", peer_id=str(pair.py.peer_id))
        assert state["state"] == "Established"
        assert pair.py.connection_state(pair.go_id) is S.ESTABLISHED
        assert pair.py.is_outbound(pair.go_id) is (dial is python_dials)
        handler = pair.py._handshake
        assert isinstance(handler, HelloHandshakeHandler)
        assert handler.peer_names[pair.go_id] == "gopher"


class TestMessages:
    async def test_three_streams_at_once(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "echo", "--report")
        await asyncio.gather(*(pair.py.send(pair.go_id, name, f"to {name}".encode()) for name in STREAMS))
        echoes = {(m.stream_name, m.data) for m in [await pair.py.receive(timeout=10) for _ in STREAMS]}
        assert echoes == {(name, f"to {name}".encode()) for name in STREAMS}

    async def test_10000_in_order_python_to_go(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "count")
        n = 10_000
        digest = hashlib.sha256()
        for i in range(n):
            payload = seq_payload(i)
            digest.update(payload)
            await pair.py.send(pair.go_id, "messages", payload)
        summary = await pair.go.request(
            "wait_messages", peer_id=str(pair.py.peer_id), stream="messages", count=n, timeout_ms=30000
        )
        assert summary["count"] == n
        assert summary["in_order"] is True
        assert summary["sha256"] == digest.hexdigest()

    async def test_10000_in_order_go_to_python(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial)
        n = 10_000
        sent = asyncio.ensure_future(
            pair.go.request("send_many", peer_id=str(pair.py.peer_id), stream="chat", count=n, size=64)
        )
        digest = hashlib.sha256()
        for i in range(n):
            msg = await pair.py.receive(timeout=10)
            assert msg.stream_name == "chat"
            assert int.from_bytes(msg.data[:8], "big") == i
            digest.update(msg.data)
        reply = await sent
        assert reply["sent"] == n
        assert reply["sha256"] == digest.hexdigest()

    async def test_one_mebibyte_and_empty(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "echo", "--report")
        big = os.urandom(1 << 20)
        await pair.py.send(pair.go_id, "files", big)
        assert (await pair.py.receive(timeout=20)).data == big  # Go received it whole and echoed it
        await pair.py.send(pair.go_id, "files", b"")
        assert (await pair.py.receive(timeout=10)).data == b""
        await pair.go.request("send", peer_id=str(pair.py.peer_id), stream="files", hex="")
        assert (await pair.py.receive(timeout=10)).data == b""

    async def test_go_opens_the_stream_then_python_answers_on_it(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "report")
        await pair.go.request("send", peer_id=str(pair.py.peer_id), stream="chat", hex=b"go first".hex())
        assert (await pair.py.receive(timeout=10)).data == b"go first"
        await pair.py.send(pair.go_id, "chat", b"python answers")
        event = await pair.go.wait_event("message", lambda e: e["stream"] == "chat", timeout=10)
        assert bytes.fromhex(event["hex"]) == b"python answers"

    async def test_python_opens_the_stream_then_go_answers_on_it(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "report")
        await pair.py.send(pair.go_id, "chat", b"python first")
        await pair.go.wait_event("message", lambda e: e["stream"] == "chat", timeout=10)
        await pair.go.request("send", peer_id=str(pair.py.peer_id), stream="chat", hex=b"go answers".hex())
        assert (await pair.py.receive(timeout=10)).data == b"go answers"

    async def test_simultaneous_first_sends(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        """Both open "files" at once. We accept Go's stream and read both, so nothing Go sends is
        lost; Go resets our stream when it already holds its own (PROTOCOL.md §4.3), so our first
        batch may be lost in that race — Go's behaviour, recorded here. Afterwards both ways work."""
        pair = await established(make_node, start_glueberry, dial, "--on-message", "count")
        n = 20
        await asyncio.gather(
            pair.go.request("send_many", peer_id=str(pair.py.peer_id), stream="files", count=n, size=32),
            *(pair.py.send(pair.go_id, "files", seq_payload(i, 32)) for i in range(n)),
        )
        got = sorted([int.from_bytes((await pair.py.receive(timeout=10)).data[:8], "big") for _ in range(n)])
        assert got == list(range(n))  # all of Go's batch
        await asyncio.sleep(0.3)
        before = (await pair.go.request("summary", peer_id=str(pair.py.peer_id), stream="files"))["count"]
        assert before in (0, n)  # Go either took our whole first batch or reset it whole
        for i in range(n, 2 * n):
            await pair.py.send(pair.go_id, "files", seq_payload(i, 32))
        summary = await pair.go.request(
            "wait_messages", peer_id=str(pair.py.peer_id), stream="files", count=before + n, timeout_ms=10000
        )
        assert summary["count"] == before + n


class TestBadFrames:
    async def test_tampered_and_foreign_frames_are_dropped_stream_stays(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, "--on-message", "report")
        await pair.py.send(pair.go_id, "messages", b"before")
        await pair.go.wait_event("message", timeout=10)
        stream = pair.py._peers[pair.go_id].streams.sender("messages")
        assert stream is not None
        cipher = pair.py._peers[pair.go_id].cipher
        assert cipher is not None
        good = cipher.encrypt(b"tampered")
        await stream.send(good[:-1] + bytes([good[-1] ^ 0x80]))  # tag flipped
        await stream.send(StreamCipher(os.urandom(32)).encrypt(b"for someone else"))
        await pair.py.send(pair.go_id, "messages", b"after")
        after = await pair.go.wait_event("message", timeout=10)
        assert bytes.fromhex(after["hex"]) == b"after"  # the stream is alive
        errors = [e for e in pair.go.event_history if e.get("event") == "decrypt_error"]
        assert len(errors) == 2
        stats = await pair.go.request("stats", peer_id=str(pair.py.peer_id))
        assert stats["decrypt_errors"] == 2


class TestConnectionLoss:
    async def test_go_killed_python_reports_and_reconnects(
        self, make_node: MakeNode, start_glueberry: StartPeer, tmp_path: Path
    ) -> None:
        """Python dialled; the Go process dies. Unlike Go (which reports nothing), our node emits
        Disconnected, then reconnects to the address-book peer once it is back (same key, port)."""
        seed = os.urandom(32).hex()
        port = free_port()
        args = ("--seed", seed, "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--streams", ",".join(STREAMS))
        go = await start_glueberry(*args, name="go-1")
        py = await make_node(reconnect_base_delay=0.2, reconnect_max_delay=0.5, reconnect_max_attempts=30)
        events = py.events()
        py.add_peer(go.peer_id, go.addrs)
        await wait_state(events, S.ESTABLISHED, timeout=10)
        await go.kill()
        lost = await wait_state(events, S.DISCONNECTED, timeout=10)
        assert lost.error is not None
        await wait_state(events, S.RECONNECTING, timeout=10)
        go2 = await start_glueberry(*args, "--on-message", "echo", "--report", name="go-2")
        await wait_state(events, S.ESTABLISHED, timeout=20)
        await py.send(PeerID.from_string(go2.peer_id), "chat", b"back again")
        assert (await py.receive(timeout=10)).data == b"back again"

    async def test_python_stopped_go_sees_nothing(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        """Go's documented blind spot (PROTOCOL.md §5): when our node goes away, Go's state stays
        Established and its next send fails."""
        pair = await established(make_node, start_glueberry, dial)
        await pair.py.stop()
        await asyncio.sleep(0.3)
        state = await pair.go.request("state", peer_id=str(pair.py.peer_id))
        assert state["state"] == "Established"


class TestBlacklist:
    async def test_python_blacklists_go(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial)
        await pair.py.blacklist_peer(pair.go_id)
        assert pair.py.connection_state(pair.go_id) is S.DISCONNECTED
        with pytest.raises(PeerBlacklisted):
            await pair.py.send(pair.go_id, "chat", b"x")
        # Go cannot get back in: its redial is refused after the security handshake
        await pair.go.request("disconnect", peer_id=str(pair.py.peer_id))
        await pair.go.request("add_peer", peer_id=str(pair.py.peer_id), addrs=[str(a) for a in pair.py.addrs])
        await asyncio.sleep(0.5)
        assert pair.py.connection_state(pair.go_id) is S.DISCONNECTED
        assert pair.py.limit_refusals.get("blacklisted", 0) >= 1

    async def test_go_blacklists_python(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        pair = await established(make_node, start_glueberry, dial, reconnect_max_attempts=1)
        if dial is python_dials:  # Go blacklists only peers in its address book
            await pair.go.request(
                "add_peer", peer_id=str(pair.py.peer_id), addrs=[str(a) for a in pair.py.addrs]
            )
        await pair.go.request("blacklist", peer_id=str(pair.py.peer_id))
        await wait_state(pair.py_events, S.DISCONNECTED, timeout=10)
        pair.py.add_peer(pair.go.peer_id, pair.go.addrs)
        with pytest.raises(ConnectionFailed):
            await pair.py.connect(pair.go_id)


class TestHandshakeTimeout:
    async def test_python_times_out_a_silent_go_peer(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        go = await start_glueberry("--handshake", "manual")
        py = await make_node(
            auto=False, handshake_timeout=0.5, failed_handshake_cooldown=0.5, reconnect_max_attempts=1
        )
        events = py.events()
        if dial is go_dials:
            # Go dials but never speaks: a bare connection is invisible to Glueberry (Go's rule,
            # which we keep), so Go must send one handshake message for our timer to start.
            await go_dials(py, go)
            await go.wait_event("state", lambda e: e["state"] == "Connected")
            await go.request("send", peer_id=str(py.peer_id), stream="handshake", hex="ff")
        else:
            await python_dials(py, go)
        await wait_state(events, S.CONNECTED, timeout=10)
        cooldown = await wait_state(events, S.COOLDOWN, timeout=5)
        assert type(cooldown.error).__name__ == "HandshakeTimeout"
        await wait_state(events, S.DISCONNECTED, timeout=5)

    async def test_go_times_out_a_silent_python_peer(
        self, make_node: MakeNode, start_glueberry: StartPeer, dial: Dial
    ) -> None:
        go = await start_glueberry(*GO_FAST)
        py = await make_node(auto=False)
        await dial(py, go)
        if dial is python_dials:
            await wait_state(py.events(), S.CONNECTED, timeout=10)
            await py.send(PeerID.from_string(go.peer_id), "handshake", b"\x09")  # unknown type: ignored
        await go.wait_event("state", lambda e: e["state"] == "Cooldown", timeout=5)
        await go.wait_event("state", lambda e: e["state"] == "Disconnected", timeout=5)
