"""Go⇄Go self-test of the interop harness: two real go-libp2p hosts (build/p2p-peer) driven by
tests/interop/goproc.py exercise every command of the JSON-lines protocol, so that when the
Python libp2p is later put on one side, a failure is the Python side's and not the harness's."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoCommandError, GoPeer, GoProcessError

pytestmark = pytest.mark.interop

MIB = 1 << 20


def pattern(n: int) -> bytes:
    """The deterministic transfer pattern: byte i is i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def peer_id_from_seed(seed: bytes) -> str:
    """libp2p peer id of an Ed25519 key: identity multihash of the protobuf PublicKey."""
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    proto = b"\x08\x01\x12\x20" + pub  # KeyType Ed25519 = 1, Data = 32 bytes
    return str(base58.b58encode(b"\x00" + bytes([len(proto)]) + proto).decode())


async def connected_pair(
    start_peer: StartPeer, *args_a: str, args_b: tuple[str, ...] = ()
) -> tuple[GoPeer, GoPeer, dict[str, Any]]:
    a = await start_peer(*args_a, name="a")
    b = await start_peer(*args_b, name="b")
    reply = await a.request("connect", peer_id=b.peer_id, addrs=b.addrs)
    return a, b, reply


async def write_until_error(peer: GoPeer, stream_id: str) -> str:
    """Write one byte at a time until the write fails (a few may pass before a reset arrives)."""
    for _ in range(100):
        try:
            await peer.request("stream_write", stream_id=stream_id, hex="00")
        except GoCommandError as e:
            return e.error
        await asyncio.sleep(0.02)
    pytest.fail("writes kept succeeding")


class TestStartup:
    async def test_ready_event_and_seed(self, start_peer: StartPeer) -> None:
        seed = bytes(range(32))
        a = await start_peer("--seed", seed.hex(), name="seeded")
        assert a.peer_id == peer_id_from_seed(seed)
        assert a.peer_id.startswith("12D3KooW")
        assert len(a.addrs) == 1
        assert a.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        b = await start_peer(name="random")
        assert b.peer_id != a.peer_id

    async def test_bad_flag_fails_with_stderr(self, p2p_peer_binary: Path) -> None:
        peer = GoPeer(p2p_peer_binary, ["--security", "bogus"], name="bogus")
        with pytest.raises(GoProcessError, match="unknown security"):
            await peer.start()
        assert peer.returncode not in (None, 0)

    async def test_unknown_command_and_bad_arguments(self, start_peer: StartPeer) -> None:
        a = await start_peer()
        with pytest.raises(GoCommandError, match="unknown command") as info:
            await a.request("frobnicate")
        assert info.value.cmd == "frobnicate"
        with pytest.raises(GoCommandError, match="peer_id"):
            await a.request("ping")
        with pytest.raises(GoCommandError, match="bad peer id"):
            await a.request("ping", peer_id="not-a-peer")
        info_reply = await a.request("info")
        assert info_reply["peer_id"] == a.peer_id

    async def test_quit_exit_code_and_dead_process(self, start_peer: StartPeer) -> None:
        a = await start_peer()
        assert await a.close() == 0
        b = await start_peer()
        await b.kill()
        with pytest.raises(GoProcessError, match="exit"):
            await b.request("info", timeout=5)


class TestConnect:
    async def test_connect_default_security_and_events(self, start_peer: StartPeer) -> None:
        a, b, reply = await connected_pair(start_peer)
        # go-libp2p's default offers TLS first, then Noise: Go⇄Go settles on TLS, with the muxer
        # chosen inside the security handshake (ALPN), not by a second multistream round.
        assert reply["security"] == "/tls/1.0.0"
        assert reply["muxer"] == "/yamux/1.0.0"
        assert reply["early_muxer"] is True
        ev = await b.wait_event("connected", lambda e: e["peer_id"] == a.peer_id)
        assert ev["direction"] == "inbound"
        ev = await a.wait_event("connected", lambda e: e["peer_id"] == b.peer_id)
        assert ev["direction"] == "outbound"
        await b.wait_event("identified", lambda e: e["peer_id"] == a.peer_id)

        conns = await b.request("conns", peer_id=a.peer_id)
        assert conns["count"] == 1
        assert conns["conns"][0]["security"] == "/tls/1.0.0"
        assert conns["conns"][0]["muxer"] == "/yamux/1.0.0"

    @pytest.mark.parametrize(
        ("sec_a", "sec_b", "expected"),
        [
            ("noise", "default", "/noise"),
            ("default", "noise", "/noise"),  # the dialer proposes /tls/1.0.0, gets na, falls back
            ("noise,tls", "default", "/noise"),
            ("tls", "default", "/tls/1.0.0"),
        ],
    )
    async def test_security_selection(
        self, start_peer: StartPeer, sec_a: str, sec_b: str, expected: str
    ) -> None:
        a = await start_peer("--security", sec_a, name="a")
        b = await start_peer("--security", sec_b, name="b")
        reply = await a.request("connect", peer_id=b.peer_id, addrs=b.addrs)
        assert reply["security"] == expected
        assert reply["muxer"] == "/yamux/1.0.0"
        ev = await b.wait_event("connected")
        assert ev["security"] == expected
        # Noise carries the muxer list in its handshake extensions, TLS in ALPN: both early.
        assert ev["early_muxer"] is True
        await a.request("echo", peer_id=b.peer_id, count=2, size=1000)

    async def test_no_common_security_fails(self, start_peer: StartPeer) -> None:
        a = await start_peer("--security", "tls", name="a")
        b = await start_peer("--security", "noise", name="b")
        with pytest.raises(GoCommandError, match="failed to dial"):
            await a.request("connect", peer_id=b.peer_id, addrs=b.addrs, timeout_ms=10_000)

    async def test_only_identify_streams_on_connect(self, start_peer: StartPeer) -> None:
        a = await start_peer("--trace-streams", name="a")
        b = await start_peer("--trace-streams", name="b")
        await a.request("connect", peer_id=b.peer_id, addrs=b.addrs)
        await asyncio.sleep(1.0)
        for peer in (a, b):
            protos = {
                (e["direction"], e["protocol"]) for e in peer.event_history if e["event"] == "stream_protocol"
            }
            assert protos == {("inbound", "/ipfs/id/1.0.0"), ("outbound", "/ipfs/id/1.0.0")}


class TestStreams:
    async def test_echo_100_streams(self, start_peer: StartPeer) -> None:
        # go-libp2p's default limits allow 75 inbound streams per protocol and peer at once: on a
        # loaded machine more than 75 of the 100 are still open together, and b resets the rest
        a, b, _ = await connected_pair(start_peer, args_b=("--unlimited-resources",))
        reply = await a.request("echo", peer_id=b.peer_id, count=100, size=10_000)
        assert reply["streams"] == 100
        for _ in range(100):
            ev = await b.wait_event("echo_done", lambda e: e["peer_id"] == a.peer_id)
            assert ev["bytes"] == 10_000
            assert ev["error"] is None

    async def test_echo_large_stream_exceeds_window(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await a.request("echo", peer_id=b.peer_id, count=2, size=4 * MIB)

    async def test_send_bulk_16mib(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        n = 16 * MIB
        reply = await a.request("send_bulk", peer_id=b.peer_id, protocol="/sink/1.0.0", bytes=n)
        want = hashlib.sha256(pattern(n)).hexdigest()
        assert reply["sha256"] == want
        assert reply["received"] == 0
        ev = await b.wait_event("sink_done")
        assert ev["bytes"] == n
        assert ev["sha256"] == want
        assert ev["error"] is None

    async def test_fetch_bulk_16mib(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        n = 16 * MIB
        reply = await a.request("fetch_bulk", peer_id=b.peer_id, bytes=n)
        assert reply["bytes"] == n
        assert reply["sha256"] == hashlib.sha256(pattern(n)).hexdigest()
        # Without the early half-close the source must still answer.
        reply = await a.request("fetch_bulk", peer_id=b.peer_id, bytes=1000, close_write=False)
        assert reply["bytes"] == 1000

    async def test_messages(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        reply = await a.request("messages", peer_id=b.peer_id, protocol="/echo/1.0.0", count=20_000, size=64)
        assert reply["messages"] == 20_000
        assert reply["messages_per_s"] > 0
        ev = await b.wait_event("echo_done")
        assert ev["bytes"] == 20_000 * 64

    async def test_ping(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        reply = await a.request("ping", peer_id=b.peer_id, count=5)
        assert len(reply["rtts_us"]) == 5
        assert all(rtt > 0 for rtt in reply["rtts_us"])

    async def test_identify_info(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        info = await a.request("identify_info", peer_id=b.peer_id)
        assert info["identified"] is True
        assert info["public_key_matches"] is True
        assert info["public_key_type"] == "Ed25519"
        for proto in (
            "/ipfs/id/1.0.0",
            "/ipfs/id/push/1.0.0",
            "/ipfs/ping/1.0.0",
            "/echo/1.0.0",
            "/sink/1.0.0",
        ):
            assert proto in info["protocols"]
        assert b.addrs[0] in info["addrs"]
        assert info["advertised_listen_addrs"] == b.addrs
        assert info["agent_version"].startswith("github.com/")
        assert info["protocol_version"] == ""  # go-libp2p v0.46 sends an empty protocolVersion
        assert info["signed_peer_record"] is True
        assert info["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")

    async def test_open_raw_unknown_protocol(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        with pytest.raises(GoCommandError, match="protocols not supported") as info:
            await a.request("open_raw", peer_id=b.peer_id, protocol="/no/such/1.0.0")
        assert "/no/such/1.0.0" in info.value.error
        # Several proposals: the first the listener supports wins.
        reply = await a.request(
            "open_raw", peer_id=b.peer_id, protocols=["/no/such/1.0.0", "/echo/1.0.0"], mode="eager"
        )
        assert reply["protocol"] == "/echo/1.0.0"
        assert reply["lazy"] is False

    async def test_lazy_stream_to_unknown_protocol_fails_on_read(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        # A read alone sends the lazy proposal and then reads the listener's "na".
        reply = await a.request("open_raw", peer_id=b.peer_id, protocol="/no/such/1.0.0", mode="lazy")
        assert reply["lazy"] is True
        read = await a.request("stream_read", stream_id=reply["stream_id"], n=1, timeout_ms=5000)
        assert read["n"] == 0
        assert "protocols not supported" in read["error"]

        # With data sent along with the proposal, the Go listener answers "na", reads the data as
        # its next multistream message, finds it malformed and resets the stream with
        # ProtocolNegotiationFailed (0x1001): the dialer sees whichever arrives first.
        reply = await a.request("open_raw", peer_id=b.peer_id, protocol="/no/such/1.0.0", mode="lazy")
        await a.request("stream_write", stream_id=reply["stream_id"], hex="00")
        read = await a.request("stream_read", stream_id=reply["stream_id"], n=1, timeout_ms=5000)
        assert read["n"] == 0
        assert "protocols not supported" in read["error"] or read["error_code"] == 0x1001

    async def test_scripted_echo_stream(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        reply = await a.request("open_raw", peer_id=b.peer_id, protocol="/echo/1.0.0")
        assert reply["lazy"] is True  # identify told a that b speaks /echo/1.0.0
        sid = reply["stream_id"]
        await a.request("stream_write", stream_id=sid, hex=b"hello".hex())
        read = await a.request("stream_read", stream_id=sid, n=5)
        assert bytes.fromhex(read["hex"]) == b"hello"
        assert read["eof"] is False
        # Nothing more arrives: the read times out without error.
        read = await a.request("stream_read", stream_id=sid, n=1, timeout_ms=200)
        assert read["n"] == 0
        assert read["timed_out"] is True, read
        await a.request("stream_write", stream_id=sid, hex=b" world".hex())
        await a.request("stream_close_write", stream_id=sid)
        read = await a.request("stream_read", stream_id=sid)  # n omitted: until EOF
        assert bytes.fromhex(read["hex"]) == b" world"
        assert read["eof"] is True
        assert read["error"] is None
        ev = await b.wait_event("echo_done")
        assert ev["bytes"] == 11
        await a.request("stream_close", stream_id=sid)

    async def test_remote_handler_resets(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        sid = (await a.request("open_raw", peer_id=b.peer_id, protocol="/reset/1.0.0"))["stream_id"]
        await a.request("stream_write", stream_id=sid, hex="01")
        read = await a.request("stream_read", stream_id=sid, n=1)
        assert read["reset"] is True
        assert read["remote"] is True
        assert read["error_code"] == 0
        with pytest.raises(GoCommandError, match="reset"):
            await a.request("stream_write", stream_id=sid, hex="02")

    async def test_local_reset_seen_by_echo_handler(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        sid = (await a.request("open_raw", peer_id=b.peer_id, protocol="/echo/1.0.0"))["stream_id"]
        await a.request("stream_write", stream_id=sid, hex="abcd")
        assert (await a.request("stream_read", stream_id=sid, n=2))["hex"] == "abcd"
        await a.request("stream_reset", stream_id=sid, error_code=7)
        ev = await b.wait_event("stream_reset", lambda e: e["protocol"] == "/echo/1.0.0")
        assert ev["remote"] is True
        assert ev["error_code"] == 7  # yamux in go-libp2p v0.46 carries reset error codes
        done = await b.wait_event("echo_done")
        assert done["error"] is not None

    async def test_held_stream_scripted_on_both_sides(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await b.request("set_handler", protocol="/hold/1.0.0", behaviour="hold")
        # b's identify push tells a about the new protocol.
        await a.wait_event("protocols_updated", lambda e: "/hold/1.0.0" in e["added"])

        async def open_held() -> tuple[str, str]:
            sid_a = (await a.request("open_raw", peer_id=b.peer_id, protocol="/hold/1.0.0"))["stream_id"]
            await a.request("stream_write", stream_id=sid_a, hex=b"ping".hex())  # sends the lazy proposal
            opened = await b.wait_event("stream_opened", lambda e: e["protocol"] == "/hold/1.0.0")
            assert opened["peer_id"] == a.peer_id
            sid_b = opened["stream_id"]
            assert bytes.fromhex((await b.request("stream_read", stream_id=sid_b, n=4))["hex"]) == b"ping"
            return sid_a, sid_b

        # b resets with an error code: a's pending read says so.
        sid_a, sid_b = await open_held()
        await b.request("stream_write", stream_id=sid_b, hex=b"pong".hex())
        assert bytes.fromhex((await a.request("stream_read", stream_id=sid_a, n=4))["hex"]) == b"pong"
        await b.request("stream_reset", stream_id=sid_b, error_code=42)
        read = await a.request("stream_read", stream_id=sid_a, n=1)
        assert read["reset"] is True
        assert read["error_code"] == 42
        assert read["remote"] is True

        # Half-close b→a: a reads the data then EOF, and can still write.
        sid_a, sid_b = await open_held()
        await b.request("stream_write", stream_id=sid_b, hex=b"pong".hex())
        await b.request("stream_close_write", stream_id=sid_b)
        read = await a.request("stream_read", stream_id=sid_a)
        assert bytes.fromhex(read["hex"]) == b"pong"
        assert read["eof"] is True
        await a.request("stream_write", stream_id=sid_a, hex=b"more".hex())
        read = await b.request("stream_read", stream_id=sid_b, n=4)
        assert bytes.fromhex(read["hex"]) == b"more"
        # A reset after a's read side saw EOF leaves that side at EOF; a's writes fail.
        await b.request("stream_reset", stream_id=sid_b)
        read = await a.request("stream_read", stream_id=sid_a, n=1)
        assert read["eof"] is True
        assert "reset" in await write_until_error(a, sid_a)

    async def test_close_both_sides(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await b.request("set_handler", protocol="/hold/1.0.0", behaviour="hold")
        sid_a = (await a.request("open_raw", peer_id=b.peer_id, protocol="/hold/1.0.0", mode="eager"))[
            "stream_id"
        ]
        sid_b = (await b.wait_event("stream_opened"))["stream_id"]
        await a.request("stream_close_write", stream_id=sid_a)
        read = await b.request("stream_read", stream_id=sid_b)
        assert read["eof"] is True
        assert read["n"] == 0
        await b.request("stream_write", stream_id=sid_b, hex="ff")
        await b.request("stream_close", stream_id=sid_b)
        read = await a.request("stream_read", stream_id=sid_a)
        assert read["hex"] == "ff"
        assert read["eof"] is True

    async def test_set_and_remove_handler(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await b.request("set_handler", protocol="/mirror/1.0.0", behaviour="echo")
        await a.wait_event("protocols_updated", lambda e: "/mirror/1.0.0" in e["added"])
        await a.request("echo", peer_id=b.peer_id, protocol="/mirror/1.0.0", count=3, size=100)
        await b.request("remove_handler", protocol="/mirror/1.0.0")
        await a.wait_event("protocols_updated", lambda e: "/mirror/1.0.0" in e["removed"])
        with pytest.raises(GoCommandError, match="protocols not supported"):
            await a.request("open_raw", peer_id=b.peer_id, protocol="/mirror/1.0.0")
        with pytest.raises(GoCommandError, match="unknown behaviour"):
            await b.request("set_handler", protocol="/x/1.0.0", behaviour="dance")


class TestDisconnect:
    async def test_disconnect(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await b.wait_event("connected")
        reply = await a.request("disconnect", peer_id=b.peer_id)
        assert reply["closed"] == 1
        ev = await b.wait_event("disconnected", lambda e: e["peer_id"] == a.peer_id)
        assert ev["conns_left"] == 0
        await a.wait_event("disconnected", lambda e: e["peer_id"] == b.peer_id)
        assert (await a.request("conns", peer_id=b.peer_id))["count"] == 0
        assert (await b.request("conns", peer_id=a.peer_id))["count"] == 0
        # The peerstore keeps the address: a stream re-dials.
        await a.request("echo", peer_id=b.peer_id, count=1, size=10)
        assert (await a.request("conns", peer_id=b.peer_id))["count"] == 1

    async def test_peer_exit_is_a_disconnect(self, start_peer: StartPeer) -> None:
        a, b, _ = await connected_pair(start_peer)
        await b.kill()
        await a.wait_event("disconnected", lambda e: e["peer_id"] == b.peer_id)
