"""Our libp2p (glueberry.p2p) against the real go-libp2p v0.46.0 (build/p2p-peer).

Every scenario runs with Python dialling Go and with Go dialling Python: Go proposes /tls/1.0.0
first and must fall back to /noise on our "na"; both sides list yamux in the Noise payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from glueberry.exceptions import ConnectionFailed, NegotiationFailed, PeerIDMismatch, StreamReset
from glueberry.p2p.asyncio import Connection, Host, Stream
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multiaddr import Multiaddr
from glueberry.p2p.signer import LocalSigner
from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoCommandError, GoPeer

pytestmark = pytest.mark.interop

MIB = 1 << 20


def pattern(n: int) -> bytes:
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


@dataclass
class PyPeer:
    host: Host
    sink_hashes: asyncio.Queue[tuple[int, str]]
    disconnected: asyncio.Queue[PeerID]


async def _echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def _source(stream: Stream) -> None:
    (count,) = struct.unpack(">Q", await stream.readexactly(8))
    data = pattern(count)
    for off in range(0, count, 256 * 1024):
        await stream.write(data[off : off + 256 * 1024])
    await stream.close()


async def _reset(stream: Stream) -> None:
    await stream.readexactly(1)
    stream.reset()


@pytest.fixture
async def py_peer() -> AsyncIterator[PyPeer]:
    host = Host(LocalSigner(generate_private_key()))
    sinks: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    gone: asyncio.Queue[PeerID] = asyncio.Queue()

    async def sink(stream: Stream) -> None:
        digest = hashlib.sha256()
        total = 0
        while data := await stream.read():
            digest.update(data)
            total += len(data)
        await stream.close()
        sinks.put_nowait((total, digest.hexdigest()))

    host.set_stream_handler("/echo/1.0.0", _echo)
    host.set_stream_handler("/sink/1.0.0", sink)
    host.set_stream_handler("/source/1.0.0", _source)
    host.set_stream_handler("/reset/1.0.0", _reset)
    host.on_disconnected.append(lambda conn: gone.put_nowait(conn.remote_peer_id))
    await host.listen(["/ip4/127.0.0.1/tcp/0"])
    yield PyPeer(host, sinks, gone)
    await host.close()


Connect = Callable[[PyPeer, GoPeer], Awaitable[Connection]]


async def python_dials(py: PyPeer, go: GoPeer) -> Connection:
    return await py.host.dial(PeerID.from_string(go.peer_id), [Multiaddr.parse(a) for a in go.addrs])


async def go_dials(py: PyPeer, go: GoPeer) -> Connection:
    reply = await go.request("connect", peer_id=str(py.host.peer_id), addrs=[str(a) for a in py.host.addrs])
    assert reply["security"] == "/noise"  # Go proposed /tls/1.0.0 first; we said na
    assert reply["muxer"] == "/yamux/1.0.0"
    conn = py.host.connection(PeerID.from_string(go.peer_id))
    assert conn is not None
    return conn


@pytest.fixture(params=[python_dials, go_dials], ids=["python-dials", "go-dials"])
def connect(request: pytest.FixtureRequest) -> Connect:
    fn: Connect = request.param
    return fn


class TestUpgrade:
    async def test_security_and_muxer(self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        assert str(conn.remote_peer_id) == go.peer_id
        info = await go.request("conns", peer_id=str(py_peer.host.peer_id))
        assert info["count"] == 1
        (c,) = info["conns"]
        assert c["security"] == "/noise"
        assert c["muxer"] == "/yamux/1.0.0"
        assert c["early_muxer"] is True  # yamux agreed inside the Noise handshake

    async def test_go_with_noise_only(self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect) -> None:
        go = await start_peer("--security", "noise")
        conn = await connect(py_peer, go)
        assert conn.is_open

    async def test_go_with_tls_only_is_refused(self, py_peer: PyPeer, start_peer: StartPeer) -> None:
        go = await start_peer("--security", "tls")
        with pytest.raises(ConnectionFailed) as failed:
            await python_dials(py_peer, go)
        assert isinstance(failed.value.__cause__, NegotiationFailed)
        with pytest.raises(GoCommandError):
            await go.request(
                "connect", peer_id=str(py_peer.host.peer_id), addrs=[str(a) for a in py_peer.host.addrs]
            )

    async def test_wrong_peer_id_is_refused(self, py_peer: PyPeer, start_peer: StartPeer) -> None:
        go = await start_peer()
        other = PeerID.from_private_key(generate_private_key())
        with pytest.raises(PeerIDMismatch):
            await py_peer.host.dial(other, [Multiaddr.parse(a) for a in go.addrs])


class TestStreams:
    async def test_100_concurrent_echo_streams_go_opens(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        await connect(py_peer, go)
        reply = await go.request("echo", peer_id=str(py_peer.host.peer_id), count=100, size=4096)
        assert reply["streams"] == 100

    async def test_100_concurrent_echo_streams_python_opens(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        # go-libp2p's default resource manager allows 75 inbound streams per protocol per peer
        # (test_go_resource_limit_resets_excess_streams); lift it to hold 100 at once.
        go = await start_peer("--unlimited-resources")
        conn = await connect(py_peer, go)

        async def one(i: int) -> None:
            stream = await conn.open_stream(["/echo/1.0.0"])
            payload = bytes([i]) * 4096
            await stream.write(payload)
            await stream.close()
            assert await stream.read_all(1 << 20) == payload

        await asyncio.gather(*(one(i) for i in range(100)))

    async def test_go_resource_limit_resets_excess_streams(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        streams = []
        refused = 0
        for _ in range(100):
            stream = await conn.open_stream(["/echo/1.0.0"])
            streams.append(stream)
        errors: list[str] = []
        for stream in streams:
            try:
                await stream.write(b"x")
                await stream.close()
                assert await asyncio.wait_for(stream.read_all(10), 5) == b"x"
            except StreamReset as exc:
                errors.append(str(exc))
                refused += 1
        # go-libp2p's reset code for "resource limit exceeded" is 0x1002
        assert all("code 4098" in e for e in errors)
        assert 0 < refused < 100
        assert conn.is_open  # only the excess streams were refused

    async def test_16_mib_each_way(self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        size = 16 * MIB
        # Go -> Python
        sent = await go.request("send_bulk", peer_id=str(py_peer.host.peer_id), bytes=size)
        total, digest = await asyncio.wait_for(py_peer.sink_hashes.get(), 30)
        assert (total, digest) == (size, sent["sha256"])
        # Python -> Go
        stream = await conn.open_stream(["/sink/1.0.0"])
        data = pattern(size)
        for off in range(0, size, MIB):
            await stream.write(data[off : off + MIB])
        await stream.close()
        assert await stream.read() == b""
        done = await go.wait_event("sink_done", timeout=30)
        assert done["bytes"] == size
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        # Go pulls from Python's /source, Python pulls from Go's /source
        fetched = await go.request("fetch_bulk", peer_id=str(py_peer.host.peer_id), bytes=size)
        assert fetched["bytes"] == size
        stream = await conn.open_stream(["/source/1.0.0"])
        await stream.write(struct.pack(">Q", size))
        assert await stream.read_all(size + 1) == data

    async def test_unknown_protocol_gets_na(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        with pytest.raises(NegotiationFailed):
            await conn.open_stream(["/nope/1.0.0"])
        with pytest.raises(GoCommandError, match="protocols not supported"):
            await go.request(
                "open_raw", peer_id=str(py_peer.host.peer_id), protocol="/nope/1.0.0", mode="eager"
            )
        # the connection carries on
        assert await go.request("echo", peer_id=str(py_peer.host.peer_id), count=1, size=10)

    async def test_first_of_several_proposals(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        stream = await conn.open_stream(["/nope/1.0.0", "/other/2.0.0", "/echo/1.0.0"])
        assert stream.protocol == "/echo/1.0.0"


class TestResetAndClose:
    async def test_go_resets_python_sees_it(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        stream = await conn.open_stream(["/reset/1.0.0"])
        await stream.write(b"x")
        with pytest.raises(StreamReset):
            await asyncio.wait_for(stream.read(), 5)
        assert stream.is_reset

    async def test_python_resets_go_sees_it(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        await connect(py_peer, go)
        opened = await go.request("open_raw", peer_id=str(py_peer.host.peer_id), protocol="/reset/1.0.0")
        await go.request("stream_write", stream_id=opened["stream_id"], hex="01")
        result = await go.request("stream_read", stream_id=opened["stream_id"], timeout_ms=5000)
        assert result["reset"] is True

    async def test_python_reset_with_code(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        await go.request("set_handler", protocol="/hold/1.0.0", behaviour="hold")
        await asyncio.sleep(0.1)  # the identify push reaches us
        stream = await conn.open_stream(["/hold/1.0.0"])
        await stream.write(b"hi")
        held = await go.wait_event("stream_opened", timeout=5)
        stream.reset(42)
        result = await go.request("stream_read", stream_id=held["stream_id"], timeout_ms=5000)
        assert result["reset"] is True
        assert result.get("error_code") == 42

    async def test_half_close_both_ways(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        await connect(py_peer, go)
        opened = await go.request("open_raw", peer_id=str(py_peer.host.peer_id), protocol="/echo/1.0.0")
        sid = opened["stream_id"]
        await go.request("stream_write", stream_id=sid, hex="616263")
        await go.request("stream_close_write", stream_id=sid)
        result = await go.request("stream_read", stream_id=sid, timeout_ms=5000)
        assert result["hex"] == "616263"
        assert result["eof"] is True
        assert result["reset"] is False

    async def test_python_closes_connection(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        conn.close()
        event = await go.wait_event("disconnected", timeout=5)
        assert event["peer_id"] == str(py_peer.host.peer_id)
        await asyncio.wait_for(conn.wait_closed(), 5)

    async def test_go_closes_connection(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        stream = await conn.open_stream(["/echo/1.0.0"])
        await go.request("disconnect", peer_id=str(py_peer.host.peer_id))
        gone = await asyncio.wait_for(py_peer.disconnected.get(), 5)
        assert str(gone) == go.peer_id
        with pytest.raises(StreamReset):
            await asyncio.wait_for(stream.read(), 5)
        assert py_peer.host.connection(PeerID.from_string(go.peer_id)) is None


class TestPingAndIdentify:
    async def test_ping_both_ways(self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        reply = await go.request("ping", peer_id=str(py_peer.host.peer_id), count=5)
        assert len(reply["rtts_us"]) == 5
        rtt = await py_peer.host.ping(conn.remote_peer_id)
        assert 0 < rtt < 1.0
        assert 0 < await conn.ping() < 1.0  # yamux-level ping

    async def test_identify_both_ways(self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        info = await go.request("identify_info", peer_id=str(py_peer.host.peer_id))
        assert info["public_key_matches"] is True
        assert info["agent_version"].startswith("glueberry-py/")
        for proto in ("/echo/1.0.0", "/sink/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"):
            assert proto in info["protocols"]
        await asyncio.wait_for(conn.identify_done, 5)
        ours = py_peer.host.peer_info[conn.remote_peer_id]
        assert ours.agent_version.startswith("github.com/glueberry-bridge/interop")
        assert ours.public_key == conn.remote_peer_id.public_key()
        for proto in ("/echo/1.0.0", "/sink/1.0.0", "/source/1.0.0", "/ipfs/id/1.0.0"):
            assert proto in ours.protocols
        assert [str(a) for a in ours.listen_addrs] == go.addrs

    async def test_identify_push_both_ways(
        self, py_peer: PyPeer, start_peer: StartPeer, connect: Connect
    ) -> None:
        go = await start_peer()
        conn = await connect(py_peer, go)
        await asyncio.wait_for(conn.identify_done, 5)
        go.clear_events()
        py_peer.host.set_stream_handler("/new/1.0.0", _echo)
        # Go's own identify of us may still be finishing and emit an update of its own first
        event = await go.wait_event("protocols_updated", lambda e: "/new/1.0.0" in e["added"], timeout=5)
        assert event["peer_id"] == str(py_peer.host.peer_id)
        await go.request("set_handler", protocol="/go-new/1.0.0", behaviour="echo")
        for _ in range(50):
            if "/go-new/1.0.0" in py_peer.host.peer_info[conn.remote_peer_id].protocols:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("Go's identify push did not arrive")
