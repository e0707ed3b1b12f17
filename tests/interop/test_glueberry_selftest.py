"""Go⇄Go self-test of build/glueberry-peer: two real Glueberry v1.2.10 nodes driven by
tests/interop/goproc.py. It proves the program and records what the Go library does (state events,
timings, losses, quirks), so that the Python Glueberry node can later be put on one side and
compared with it. Each test's docstring states the Go behaviour it pins down."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoCommandError, GoPeer, GoProcessError, JSONObject

pytestmark = pytest.mark.interop

MIB = 1 << 20
HELLO, PUBKEY, COMPLETE = b"\x01", b"\x02", b"\x03"

# Short Glueberry timers (milliseconds): handshake timeout 500, cooldown 1000, reconnection
# delays 200·2^n capped at 1000 (±10 % jitter), 3 attempts.
FAST_TIMERS = (
    "--handshake-timeout-ms",
    "500",
    "--failed-handshake-cooldown-ms",
    "1000",
    "--reconnect-base-delay-ms",
    "200",
    "--reconnect-max-delay-ms",
    "1000",
    "--reconnect-max-attempts",
    "3",
)
BIG_BUFFER = ("--message-buffer-size", "20000")  # no receive-side drops for 10,000 messages


# -- helpers ----------------------------------------------------------------------------------


def public_key_from_seed(seed: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def peer_id_from_seed(seed: bytes) -> str:
    proto = b"\x08\x01\x12\x20" + public_key_from_seed(seed)  # protobuf PublicKey{Ed25519, key}
    return str(base58.b58encode(b"\x00" + bytes([len(proto)]) + proto).decode())


def many_filler(size: int) -> bytes:
    """send_many's payload after the 8-byte sequence number: byte at payload offset k is k % 251."""
    return bytes(k % 251 for k in range(8, size))


def many_payload(seq: int, size: int) -> bytes:
    return seq.to_bytes(8, "big") + many_filler(size)


def many_sha256(count: int, size: int, start: int = 0) -> str:
    h = hashlib.sha256()
    filler = many_filler(size)
    for seq in range(start, start + count):
        h.update(seq.to_bytes(8, "big"))
        h.update(filler)
    return h.hexdigest()


def state_is(peer_id: str, *states: str) -> Callable[[JSONObject], bool]:
    return lambda ev: ev.get("peer_id") == peer_id and ev.get("state") in states


def about(peer_id: str) -> Callable[[JSONObject], bool]:
    return lambda ev: ev.get("peer_id") == peer_id


def events(peer: GoPeer, name: str, peer_id: str | None = None) -> list[JSONObject]:
    return [
        ev
        for ev in peer.event_history
        if ev.get("event") == name and (peer_id is None or ev.get("peer_id") == peer_id)
    ]


def states(peer: GoPeer, peer_id: str) -> list[str]:
    return [str(ev["state"]) for ev in events(peer, "state", peer_id)]


def now_ms() -> float:
    return time.time() * 1000


async def start_pair(
    start_glueberry: StartPeer, args_a: Sequence[str] = (), args_b: Sequence[str] = ()
) -> tuple[GoPeer, GoPeer]:
    a = await start_glueberry(*args_a, name="a")
    b = await start_glueberry(*args_b, name="b")
    return a, b


async def established_pair(
    start_glueberry: StartPeer, args_a: Sequence[str] = (), args_b: Sequence[str] = ()
) -> tuple[GoPeer, GoPeer]:
    """a dials b (add_peer auto-connects) and both reach Established with the auto handshake."""
    a, b = await start_pair(start_glueberry, args_a, args_b)
    await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
    await a.wait_event("state", state_is(b.peer_id, "Established"))
    await b.wait_event("state", state_is(a.peer_id, "Established"))
    return a, b


async def summary(peer: GoPeer, peer_id: str, stream: str = "messages", **kw: Any) -> JSONObject:
    return await peer.request("summary", peer_id=peer_id, stream=stream, **kw)


# -- tests ------------------------------------------------------------------------------------


class TestStartup:
    async def test_ready_event(self, start_glueberry: StartPeer) -> None:
        seed = bytes(range(32))
        a = await start_glueberry("--seed", seed.hex(), "--name", "alice", "--streams", "x,y", name="seeded")
        assert a.peer_id == peer_id_from_seed(seed)
        assert a.ready["public_key"] == public_key_from_seed(seed).hex()
        assert len(a.addrs) == 1
        assert a.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        assert a.ready["handshake"] == "auto"
        assert a.ready["streams"] == ["x", "y"]
        assert a.ready["name"] == "alice"
        assert isinstance(a.ready["time_ms"], float)
        # Quirk: the v1.2.10 module still reports protocol version 1.2.9 (its version.go).
        assert a.ready["version"] == "1.2.9"
        info = await a.request("info")
        assert info["peer_id"] == a.peer_id
        assert info["public_key"] == a.ready["public_key"]
        b = await start_glueberry(name="random")
        assert b.peer_id != a.peer_id

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--handshake", "bogus"], "unknown --handshake"),
            (["--on-message", "bogus"], "unknown --on-message"),
            (["--name", "x" * 65], "at most 64"),
            (["--streams", "no spaces"], "--streams"),
            (["--seed", "00"], "--seed must be 64 hex"),
            (["--handshake-timeout-ms", "-1"], "handshake timeout cannot be negative"),
        ],
        ids=["handshake", "on-message", "name", "streams", "seed", "negative-timeout"],
    )
    async def test_bad_flags(self, glueberry_peer_binary: Path, args: list[str], message: str) -> None:
        peer = GoPeer(glueberry_peer_binary, args, name="bad")
        with pytest.raises(GoProcessError, match=message):
            await peer.start()
        assert peer.returncode not in (None, 0)

    async def test_unknown_command_and_bad_arguments(self, start_glueberry: StartPeer) -> None:
        a = await start_glueberry()
        with pytest.raises(GoCommandError, match="unknown command"):
            await a.request("frobnicate")
        with pytest.raises(GoCommandError, match="peer_id"):
            await a.request("state")
        with pytest.raises(GoCommandError, match="bad peer id"):
            await a.request("state", peer_id="nope")
        with pytest.raises(GoCommandError, match="bad hex"):
            await a.request("send", peer_id=a.peer_id, stream="messages", hex="zz")
        with pytest.raises(GoCommandError, match="32 bytes"):
            await a.request("prepare_streams", peer_id=a.peer_id, public_key="00")
        with pytest.raises(GoCommandError, match="at least 8"):
            await a.request("send_many", peer_id=a.peer_id, stream="messages", count=1, size=4)
        # A peer never heard of: Disconnected, and IsOutbound's error is passed on.
        st = await a.request("state", peer_id=peer_id_from_seed(b"\x07" * 32))
        assert st["state"] == "Disconnected"
        assert "not connected" in st["outbound_error"]


class TestAutoHandshake:
    async def test_established_both_sides(self, start_glueberry: StartPeer) -> None:
        """The dialler sees Connecting, Connected, Established; the listener only learns of the
        connection from the handshake stream and sees Connected, Established. Wire bytes:
        01‖name, 02‖key, then 03, from each side."""
        a, b = await start_pair(start_glueberry, ["--name", "alice"], ["--name", "bob"])
        t0 = now_ms()
        reply = await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs, metadata={"role": "server"})
        assert reply["state"] in ("Disconnected", "Connecting")  # AddPeer dials in the background
        await a.wait_event("state", state_is(b.peer_id, "Established"))
        await b.wait_event("state", state_is(a.peer_id, "Established"))
        assert states(a, b.peer_id) == ["Connecting", "Connected", "Established"]
        assert states(b, a.peer_id) == ["Connected", "Established"]
        established = events(a, "state", b.peer_id)[-1]["time_ms"]
        assert established - t0 < 2000

        key_a, key_b = a.ready["public_key"], b.ready["public_key"]
        sent_a = [(ev["kind"], ev["hex"]) for ev in events(a, "hs_sent", b.peer_id)]
        sent_b = [(ev["kind"], ev["hex"]) for ev in events(b, "hs_sent", a.peer_id)]
        assert sent_a == [("hello", "01" + b"alice".hex()), ("pubkey", "02" + key_a), ("complete", "03")]
        assert sent_b == [("hello", "01" + b"bob".hex()), ("pubkey", "02" + key_b), ("complete", "03")]
        hello_at_b = events(b, "hs_hello", a.peer_id)
        assert [(ev["name"], ev["duplicate"]) for ev in hello_at_b] == [("alice", False)]
        assert events(b, "hs_pubkey", a.peer_id)[0]["public_key"] == key_a
        assert events(a, "hs_pubkey", b.peer_id)[0]["public_key"] == key_b
        # (hs_finalized is printed after FinalizeHandshake returns, so it may follow Established.)
        await a.wait_event("hs_finalized", about(b.peer_id))
        await b.wait_event("hs_finalized", about(a.peer_id))
        assert not events(a, "hs_error")
        assert not events(b, "hs_error")

        st_a = await a.request("state", peer_id=b.peer_id)
        st_b = await b.request("state", peer_id=a.peer_id)
        assert (st_a["state"], st_a["is_outbound"]) == ("Established", True)
        assert (st_b["state"], st_b["is_outbound"]) == ("Established", False)
        hs = await b.request("hs_status", peer_id=a.peer_id)
        assert hs["finalized"]
        assert hs["prepared"]
        assert hs["peer_name"] == "alice"
        assert hs["peer_public_key"] == key_a

        # Handshake messages count in Glueberry's statistics, under the stream "handshake".
        stats = await a.request("stats", peer_id=b.peer_id)
        assert stats["has_stats"]
        assert stats["connected"]
        assert stats["is_outbound"]
        assert stats["stream_stats"]["handshake"]["messages_sent"] == 3
        assert stats["stream_stats"]["handshake"]["messages_received"] == 3
        assert stats["messages_sent_total"] == 3
        # Quirk: Glueberry never records connection starts: connected_at unset, count 0.
        assert stats["connected_at"] is None
        assert stats["connection_count"] == 0

    async def test_slow_peer(self, start_glueberry: StartPeer) -> None:
        """--hs-delay-ms 300 on the listener: two delayed reactions (Hello+PubKey, then Complete),
        so Established comes at least ~600 ms after Connected on both sides."""
        a, b = await start_pair(start_glueberry, [], ["--hs-delay-ms", "300"])
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        est_a = await a.wait_event("state", state_is(b.peer_id, "Established"))
        est_b = await b.wait_event("state", state_is(a.peer_id, "Established"))
        connected = events(a, "state", b.peer_id)[1]
        assert connected["state"] == "Connected"
        assert est_a["time_ms"] - connected["time_ms"] >= 550
        assert est_b["time_ms"] - connected["time_ms"] >= 550

    async def test_peer_that_never_completes(self, start_glueberry: StartPeer) -> None:
        """B (--hs-no-complete) finalizes on A's Complete and is Established; A never gets
        Complete, times out (Cooldown, error "handshake timeout") and closes the connection. B is
        not told: it stays Established. When A reconnects after the cooldown and says Hello
        again, B's handshake state (reset only by a Disconnected event) calls it a duplicate."""
        a, b = await start_pair(start_glueberry, FAST_TIMERS, [*FAST_TIMERS, "--hs-no-complete"])
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        await b.wait_event("state", state_is(a.peer_id, "Established"))
        cooldown = await a.wait_event("state", state_is(b.peer_id, "Cooldown"), timeout=5)
        assert cooldown["error"] == "handshake timeout"
        connected = events(a, "state", b.peer_id)[1]
        assert 400 <= cooldown["time_ms"] - connected["time_ms"] <= 1500
        assert not [e for e in events(b, "hs_sent", a.peer_id) if e["kind"] == "complete"]
        await b.wait_event("hs_hello", lambda ev: ev["duplicate"] is True, timeout=6)
        assert states(b, a.peer_id) == ["Connected", "Established"]
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Established"
        # A's reconnection emits Connected, but its state stays Reconnecting (Reconnecting →
        # Connected is not an allowed transition; the error is ignored by Glueberry).
        assert states(a, b.peer_id)[:6] == [
            "Connecting",
            "Connected",
            "Cooldown",
            "Disconnected",
            "Reconnecting",
            "Connected",
        ]
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Reconnecting"

    async def test_manual_driver_against_auto_peer(self, start_glueberry: StartPeer) -> None:
        """Drive the auto handshake by hand, byte by byte (what the Python node will do):
        malformed messages are reported and ignored; a duplicate Hello gets no answer."""
        a, b = await start_pair(start_glueberry, ["--handshake", "manual"], ["--name", "bob"])
        key_a, key_b = a.ready["public_key"], b.ready["public_key"]
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        await a.wait_event("state", state_is(b.peer_id, "Connected"))

        bad = {"": "empty", "09": "unknown handshake message type 0x09", "0200": "pubkey message is 2 bytes"}
        bad["01" + "78" * 65] = "hello name is 65 bytes"
        bad["0300"] = "complete message is 2 bytes"
        for payload, error in bad.items():
            await a.request("send", peer_id=b.peer_id, stream="handshake", hex=payload)
            ev = await b.wait_event("hs_error", about(a.peer_id))
            assert ev["step"] == "parse"
            assert error in ev["error"]
            assert ev["hex"] == payload

        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="01" + b"alice".hex())
        assert (await a.wait_event("hs_message", about(b.peer_id)))["hex"] == "01" + b"bob".hex()
        assert (await a.wait_event("hs_message", about(b.peer_id)))["hex"] == "02" + key_b
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="01" + b"alice".hex())
        assert (await b.wait_event("hs_hello", about(a.peer_id)))["duplicate"] is False
        assert (await b.wait_event("hs_hello", about(a.peer_id)))["duplicate"] is True

        await a.request("prepare_streams", peer_id=b.peer_id, public_key=key_b)
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="02" + key_a)
        assert (await a.wait_event("hs_message", about(b.peer_id)))["hex"] == "03"
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="03")
        await b.wait_event("state", state_is(a.peer_id, "Established"))
        await a.request("finalize_handshake", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Established"))
        assert len(events(a, "hs_message", b.peer_id)) == 3  # nothing after Complete

        await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 8)
        assert (await b.wait_event("message", about(a.peer_id)))["hex"] == "00" * 8


class TestMessages:
    async def test_three_streams(self, start_glueberry: StartPeer) -> None:
        names = ["alpha", "beta", "gamma"]
        args = ["--streams", ",".join(names)]
        a, b = await established_pair(start_glueberry, args, args)
        for i, stream in enumerate(names):
            payload = bytes([i]) * 8 + stream.encode()
            await a.request("send", peer_id=b.peer_id, stream=stream, hex=payload.hex())
            ev = await b.wait_event("message", lambda e, s=stream: e["stream"] == s)
            assert ev["peer_id"] == a.peer_id
            assert ev["len"] == len(payload)
            assert ev["hex"] == payload.hex()
            assert ev["sha256"] == hashlib.sha256(payload).hexdigest()
            assert ev["seq"] == int.from_bytes(payload[:8], "big")
        for stream in names:  # answers go back over the streams a opened
            await b.request("send", peer_id=a.peer_id, stream=stream, hex=stream.encode().hex())
            ev = await a.wait_event("message", lambda e, s=stream: e["stream"] == s)
            assert bytes.fromhex(ev["hex"]) == stream.encode()
        for i, stream in enumerate(names):
            s = await summary(b, a.peer_id, stream)
            payload = bytes([i]) * 8 + stream.encode()
            assert (s["count"], s["bytes"]) == (1, len(payload))
            assert s["sha256"] == hashlib.sha256(payload).hexdigest()
        with pytest.raises(GoCommandError, match="not allowed"):
            await a.request("send", peer_id=b.peer_id, stream="delta", hex="00")
        with pytest.raises(GoCommandError, match="invalid"):
            await a.request("send", peer_id=b.peer_id, stream="no spaces", hex="00")
        stats = await b.request("stats", peer_id=a.peer_id)
        assert {n: stats["stream_stats"][n]["messages_received"] for n in names} == dict.fromkeys(names, 1)

    async def test_ten_thousand_in_order(self, start_glueberry: StartPeer) -> None:
        a, b = await established_pair(start_glueberry, [], [*BIG_BUFFER, "--on-message", "count"])
        sent = await a.request("send_many", peer_id=b.peer_id, stream="messages", count=10_000, size=128)
        expected_sha = many_sha256(10_000, 128)
        assert sent["sent"] == 10_000
        assert sent["bytes"] == 1_280_000
        assert sent["sha256"] == expected_sha
        assert sent["messages_per_s"] > 0
        got = await b.request(
            "wait_messages", peer_id=a.peer_id, stream="messages", count=10_000, timeout_ms=60_000
        )
        assert (got["count"], got["bytes"], got["seq_count"]) == (10_000, 1_280_000, 10_000)
        assert got["in_order"] is True
        assert got["gaps"] == []
        assert got["last_seq"] == 9_999
        assert got["sha256"] == expected_sha
        assert not events(b, "message")  # count mode prints nothing
        stats = await b.request("stats", peer_id=a.peer_id)
        assert stats["stream_stats"]["messages"]["messages_received"] == 10_000
        assert stats["node"]["messages_dropped"] == 0
        assert (await a.request("stats", peer_id=b.peer_id))["stream_stats"]["messages"][
            "messages_sent"
        ] == 10_000
        reset = await summary(b, a.peer_id, reset=True)
        assert reset["count"] == 10_000
        assert (await summary(b, a.peer_id))["count"] == 0

    async def test_drops_under_load_are_counted(self, start_glueberry: StartPeer) -> None:
        """With the default MessageBufferSize (1000), a burst of small messages can overflow the
        receiver's queues: Glueberry drops messages silently (only its Metrics hear of it); the
        sender's Send calls all succeed. Whatever the machine's speed: received + dropped = sent,
        and what arrives is in order (gaps only skip forward; drops at the end leave no gap)."""
        a, b = await established_pair(start_glueberry, [], ["--on-message", "count"])
        await a.request("send_many", peer_id=b.peer_id, stream="messages", count=10_000, size=64)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            s = await summary(b, a.peer_id)
            dropped = (await b.request("stats", peer_id=a.peer_id))["node"]["messages_dropped"]
            if s["count"] + dropped >= 10_000 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert s["count"] + dropped == 10_000
        assert all(g["got"] > g["expected"] for g in s["gaps"])
        if s["gap_count"] <= len(s["gaps"]):  # all gaps listed: they and the tail are the drops
            assert sum(g["got"] - g["expected"] for g in s["gaps"]) + 9_999 - s["last_seq"] == dropped
        if dropped == 0:
            assert s["in_order"] is True

    async def test_echo(self, start_glueberry: StartPeer) -> None:
        a, b = await established_pair(
            start_glueberry,
            [*BIG_BUFFER, "--on-message", "count"],
            [*BIG_BUFFER, "--on-message", "echo", "--report"],
        )
        sent = await a.request(
            "send_many", peer_id=b.peer_id, stream="messages", count=500, size=100, start=1000
        )
        back = await a.request(
            "wait_messages", peer_id=b.peer_id, stream="messages", count=500, timeout_ms=30_000
        )
        # The sequence starts at 1000, not 0: the summary records that as its one gap.
        assert back["gaps"] == [{"expected": 0, "got": 1000}]
        assert back["gap_count"] == 1
        assert back["sha256"] == sent["sha256"] == many_sha256(500, 100, start=1000)
        assert back["last_seq"] == 1499
        await b.wait_event("message", lambda ev: ev.get("seq") == 1499)
        assert len(events(b, "message")) == 500
        assert not events(b, "echo_error")

    async def test_large_and_empty_messages(self, start_glueberry: StartPeer) -> None:
        """MaxMessageSize (default 1 MiB) limits what a node sends, not what it receives."""
        a, b = await established_pair(start_glueberry, [], ["--max-message-size", "100"])
        big = bytes(i % 256 for i in range(MIB))
        await a.request("send", peer_id=b.peer_id, stream="messages", hex=big.hex())
        ev = await b.wait_event("message")
        assert ev["len"] == MIB
        assert ev["hex"] == big[:64].hex()
        assert ev["sha256"] == hashlib.sha256(big).hexdigest()
        await a.request("send", peer_id=b.peer_id, stream="messages", hex="")
        ev = await b.wait_event("message")
        assert (ev["len"], ev["hex"]) == (0, "")
        with pytest.raises(GoCommandError, match="message size 1048577 exceeds maximum 1048576"):
            await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * (MIB + 1))
        # b (--max-message-size 100) still received 1 MiB above, but cannot send 101 bytes.
        with pytest.raises(GoCommandError, match="message size 101 exceeds maximum 100"):
            await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 101)
        await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 100)
        assert (await a.wait_event("message"))["len"] == 100
        s = await summary(b, a.peer_id)
        assert (s["count"], s["bytes"]) == (2, MIB)

    async def test_simultaneous_first_sends(self, start_glueberry: StartPeer) -> None:
        """Both sides send their first messages on a name at once. Each Go side keeps one stream
        per (peer, name) and resets a second one, so a direction may lose its whole first batch
        (all five, never some) although its Sends returned success; a Send may also fail with a
        reset during negotiation. Observed over 60 runs: 30 no loss, 13 both directions lost,
        15 one direction lost, 2 failed Sends. Afterwards, turn-by-turn traffic always flows."""
        a, b = await established_pair(start_glueberry)
        results = await asyncio.gather(
            a.request("send_many", peer_id=b.peer_id, stream="messages", count=5, size=16),
            b.request("send_many", peer_id=a.peer_id, stream="messages", count=5, size=16),
            return_exceptions=True,
        )
        for r in results:
            assert isinstance(r, dict) or (isinstance(r, GoCommandError) and "reset" in r.error), r
        await asyncio.sleep(0.5)
        for receiver, sender in ((b, a), (a, b)):
            s = await summary(receiver, sender.peer_id, reset=True)
            assert s["count"] in (0, 5)
            assert s["in_order"] is True
        for rnd in range(3):
            first = 100 + 5 * rnd
            for sender, receiver in ((a, b), (b, a)):
                await sender.request(
                    "send_many", peer_id=receiver.peer_id, stream="messages", count=5, size=16, start=first
                )
                got = await receiver.request(
                    "wait_messages",
                    peer_id=sender.peer_id,
                    stream="messages",
                    count=5 * (rnd + 1),
                    timeout_ms=5000,
                )
                assert got["last_seq"] == first + 4


class TestManualHandshake:
    async def test_prepare_then_finalize(self, start_glueberry: StartPeer) -> None:
        """The listener is blind until the handshake stream arrives. Encrypted sends work right
        after PrepareStreams (before Finalize), but fail with "protocols not supported" towards
        a node that has never prepared the name. Finalize twice is an error."""
        a, b = await start_pair(start_glueberry, ["--handshake", "manual"], ["--handshake", "manual"])
        key_a, key_b = a.ready["public_key"], b.ready["public_key"]
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        await a.wait_event("state", state_is(b.peer_id, "Connected"))
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Disconnected"
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="68656c6c6f")
        assert (await b.wait_event("hs_message", about(a.peer_id)))["hex"] == "68656c6c6f"
        await b.wait_event("state", state_is(a.peer_id, "Connected"))

        await b.request("prepare_streams", peer_id=a.peer_id, public_key=key_a)
        with pytest.raises(GoCommandError, match="protocols not supported"):
            await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 8)
        await a.request("prepare_streams", peer_id=b.peer_id, public_key=key_b)
        await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 7 + "01")
        assert (await b.wait_event("message"))["seq"] == 1
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Connected"

        assert (await a.request("finalize_handshake", peer_id=b.peer_id))["state"] == "Established"
        assert (await b.request("finalize_handshake", peer_id=a.peer_id))["state"] == "Established"
        with pytest.raises(GoCommandError, match="Established -> Established"):
            await b.request("finalize_handshake", peer_id=a.peer_id)
        await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 7 + "02")
        assert (await a.wait_event("message"))["seq"] == 2
        assert states(a, b.peer_id) == ["Connecting", "Connected", "Established"]
        assert states(b, a.peer_id) == ["Connected", "Established"]

    async def test_complete_and_establish_encrypted_streams(self, start_glueberry: StartPeer) -> None:
        """EstablishEncryptedStreams on a Disconnected peer registers an inbound connection
        (Connected event, handshake timer) without any handshake stream; CompleteHandshake is
        Prepare + Finalize in one call."""
        a, b = await start_pair(start_glueberry, ["--handshake", "manual"], ["--handshake", "manual"])
        key_a, key_b = a.ready["public_key"], b.ready["public_key"]
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        await a.wait_event("state", state_is(b.peer_id, "Connected"))
        await b.request(
            "establish_encrypted_streams", peer_id=a.peer_id, public_key=key_a, streams=["s1", "s2"]
        )
        await b.wait_event("state", state_is(a.peer_id, "Connected"))
        reply = await a.request(
            "complete_handshake", peer_id=b.peer_id, public_key=key_b, streams=["s1", "s2"]
        )
        assert reply["state"] == "Established"
        await b.request("finalize_handshake", peer_id=a.peer_id)
        for stream in ("s1", "s2"):
            await a.request("send", peer_id=b.peer_id, stream=stream, hex="00" * 8)
            assert (await b.wait_event("message", lambda e, s=stream: e["stream"] == s))["len"] == 8
        with pytest.raises(GoCommandError, match="not allowed"):
            await a.request("send", peer_id=b.peer_id, stream="messages", hex="00")

    async def test_finalize_errors(self, start_glueberry: StartPeer) -> None:
        a = await start_glueberry("--handshake", "manual")
        stranger = peer_id_from_seed(b"\x09" * 32)
        with pytest.raises(GoCommandError, match="not connected"):
            await a.request("finalize_handshake", peer_id=stranger)

    async def test_stream_reopen_after_eof(self, start_glueberry: StartPeer) -> None:
        """FinalizeHandshake closes the handshake stream on both sides; a later handshake send
        opens a new stream, which the other side accepts (its entry is closed). After a one-sided
        Disconnect, the other side (still Established, its streams at EOF) accepts a new
        handshake stream and, after a manual re-handshake, new encrypted streams both ways; its
        own Finalize fails (Established -> Established) without harm."""
        args = ["--handshake", "manual", "--trace-conns"]
        a, b = await start_pair(start_glueberry, args, args)
        key_a, key_b = a.ready["public_key"], b.ready["public_key"]
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        await a.wait_event("state", state_is(b.peer_id, "Connected"))
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="01")
        await b.wait_event("hs_message")
        await a.request("complete_handshake", peer_id=b.peer_id, public_key=key_b)
        await b.request("complete_handshake", peer_id=a.peer_id, public_key=key_a)
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="aa")
        assert (await b.wait_event("hs_message"))["hex"] == "aa"
        await b.request("send", peer_id=a.peer_id, stream="handshake", hex="bb")
        assert (await a.wait_event("hs_message"))["hex"] == "bb"
        await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 8)
        await a.wait_event("message")

        await a.request("disconnect", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Disconnected"))
        await b.wait_event("conn_closed", about(a.peer_id))
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Established"
        await a.request("connect", peer_id=b.peer_id)
        await a.request("send", peer_id=b.peer_id, stream="handshake", hex="01")
        assert (await b.wait_event("hs_message"))["hex"] == "01"
        await a.request("prepare_streams", peer_id=b.peer_id, public_key=key_b)
        await b.request("prepare_streams", peer_id=a.peer_id, public_key=key_a)
        await a.request("finalize_handshake", peer_id=b.peer_id)
        with pytest.raises(GoCommandError, match="Established -> Established"):
            await b.request("finalize_handshake", peer_id=a.peer_id)
        await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 7 + "01")
        assert (await a.wait_event("message"))["seq"] == 1
        await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 7 + "02")
        assert (await b.wait_event("message"))["seq"] == 2
        assert states(b, a.peer_id) == ["Connected", "Established"]


class TestLifecycle:
    async def test_handshake_timeout_cooldown_disconnected(self, start_glueberry: StartPeer) -> None:
        """A silent listener (manual mode): both sides time out 500 ms after their Connected
        (Cooldown, error "handshake timeout", connection closed), reach Disconnected when the
        1000 ms cooldown ends and start reconnecting. A (whose address book has B) redials
        ~200 ms later: a Connected event, but its state stays Reconnecting. B (no address book
        entry) fails its 3 attempts (200+400+800 ms ±10 %) and ends Disconnected."""
        a, b = await start_pair(start_glueberry, FAST_TIMERS, [*FAST_TIMERS, "--handshake", "manual"])
        await a.request("add_peer", peer_id=b.peer_id, addrs=b.addrs)
        cool_a = await a.wait_event("state", state_is(b.peer_id, "Cooldown"), timeout=5)
        with pytest.raises(GoCommandError, match="in cooldown"):
            await a.request("connect", peer_id=b.peer_id)
        cool_b = await b.wait_event("state", state_is(a.peer_id, "Cooldown"), timeout=5)
        assert cool_a["error"] == cool_b["error"] == "handshake timeout"
        disc_a = await a.wait_event("state", state_is(b.peer_id, "Disconnected"), timeout=5)
        disc_b = await b.wait_event("state", state_is(a.peer_id, "Disconnected"), timeout=5)
        reconnected = await a.wait_event(
            "state", lambda e: e["state"] == "Connected" and e["time_ms"] > disc_a["time_ms"]
        )
        exhausted = await b.wait_event("state", state_is(a.peer_id, "Disconnected"), timeout=8)
        assert exhausted["error"] == "max reconnection attempts reached"

        conn_a = events(a, "state", b.peer_id)[1]
        conn_b = events(b, "state", a.peer_id)[0]
        assert 400 <= cool_a["time_ms"] - conn_a["time_ms"] <= 1500
        assert 400 <= cool_b["time_ms"] - conn_b["time_ms"] <= 1500
        assert 900 <= disc_a["time_ms"] - cool_a["time_ms"] <= 2500
        assert 900 <= disc_b["time_ms"] - cool_b["time_ms"] <= 2500
        assert disc_a["error"] is None
        assert 150 <= reconnected["time_ms"] - disc_a["time_ms"] <= 1500
        assert 1100 <= exhausted["time_ms"] - disc_b["time_ms"] <= 3500
        assert states(a, b.peer_id)[:6] == [
            "Connecting",
            "Connected",
            "Cooldown",
            "Disconnected",
            "Reconnecting",
            "Connected",
        ]
        assert states(b, a.peer_id) == [
            "Connected",
            "Cooldown",
            "Disconnected",
            "Reconnecting",
            "Disconnected",
        ]
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Reconnecting"
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Disconnected"
        # Reconnecting's own handshake timer has no effect (it only fires from Connected).
        await asyncio.sleep(1.0)
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Reconnecting"

    async def test_disconnect(self, start_glueberry: StartPeer) -> None:
        """Disconnect: Disconnected event (no reconnection), key and streams forgotten. The other
        side gets no event and stays Established; its next Send redials and "succeeds" (lazy
        protocol negotiation) but the data is reset by the disconnecting side and lost. A second
        Disconnect emits a second Disconnected event."""
        a, b = await established_pair(start_glueberry, ["--trace-conns"], ["--trace-conns"])
        await a.request("disconnect", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Disconnected"))
        await b.wait_event("conn_closed", about(a.peer_id))
        with pytest.raises(GoCommandError, match="not allowed"):
            await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 8)
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Established"
        await asyncio.sleep(0.3)  # let b's stream readers see the end of the old connection
        await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 8)
        await b.wait_event(
            "conn_opened", lambda ev: ev["direction"] == "outbound" and ev["peer_id"] == a.peer_id
        )
        await asyncio.sleep(1.0)
        assert (await summary(a, b.peer_id))["count"] == 0
        assert states(a, b.peer_id) == ["Connecting", "Connected", "Established", "Disconnected"]
        assert states(b, a.peer_id) == ["Connected", "Established"]
        await a.request("disconnect", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Disconnected"))
        assert states(a, b.peer_id)[-2:] == ["Disconnected", "Disconnected"]

    async def test_dropped_connection_is_invisible(self, start_glueberry: StartPeer, tmp_path: Path) -> None:
        """Killing one process: libp2p on the survivor closes the connection at once, but
        Glueberry registers no network notifiee, so the survivor emits no state event and stays
        Established. Its next Send tries to redial and fails ("connection refused", then libp2p
        "dial backoff")."""
        # b's address book in tmp_path: a killed process cannot remove its temporary directory.
        a, b = await established_pair(
            start_glueberry, ["--trace-conns"], ["--addressbook", str(tmp_path / "b.json")]
        )
        killed_at = now_ms()
        await b.kill()
        closed = await a.wait_event("conn_closed", about(b.peer_id), timeout=5)
        assert closed["time_ms"] - killed_at < 2000
        await asyncio.sleep(1.0)
        assert states(a, b.peer_id) == ["Connecting", "Connected", "Established"]
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Established"
        with pytest.raises(GoCommandError, match=r"connection refused|failed to dial"):
            await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 8)
        with pytest.raises(GoCommandError, match=r"dial backoff|failed to dial"):
            await a.request("send", peer_id=b.peer_id, stream="messages", hex="00" * 8)
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Established"

    async def test_one_sided_disconnect_then_auto_reconnect(self, start_glueberry: StartPeer) -> None:
        """With the auto handshake as specified, a one-sided Disconnect cannot be healed by
        reconnecting: the other side, still Established (no Disconnected event, so its handshake
        state was never reset), treats the new Hello as a duplicate and does not answer; the
        redialling side times out into Cooldown."""
        a, b = await established_pair(start_glueberry, FAST_TIMERS, FAST_TIMERS)
        await a.request("disconnect", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Disconnected"))
        await a.request("connect", peer_id=b.peer_id)
        assert (await b.wait_event("hs_hello", about(a.peer_id)))["duplicate"] is False
        assert (await b.wait_event("hs_hello", about(a.peer_id)))["duplicate"] is True
        cooldown = await a.wait_event("state", state_is(b.peer_id, "Cooldown"), timeout=5)
        assert cooldown["error"] == "handshake timeout"
        assert states(b, a.peer_id) == ["Connected", "Established"]

    async def test_blacklist(self, start_glueberry: StartPeer) -> None:
        """Blacklisting a connected peer disconnects it (Disconnected event, no cooldown); Connect
        is refused; the blacklisted side, still Established, cannot get through the gater."""
        a, b = await established_pair(start_glueberry, [], ["--trace-conns"])
        await a.request("blacklist", peer_id=b.peer_id)
        await a.wait_event("state", state_is(b.peer_id, "Disconnected"))
        with pytest.raises(GoCommandError, match="blacklisted"):
            await a.request("connect", peer_id=b.peer_id)
        entry = (await a.request("get_peer", peer_id=b.peer_id))["peer"]
        assert entry["blacklisted"] is True
        assert (await a.request("list_peers"))["peers"] == []
        assert (await b.request("state", peer_id=a.peer_id))["state"] == "Established"
        await b.wait_event("conn_closed", about(a.peer_id))
        await asyncio.sleep(0.3)
        with pytest.raises(GoCommandError, match="connection failed"):  # refused by a's gater
            await b.request("send", peer_id=a.peer_id, stream="messages", hex="00" * 8)
        await b.wait_event("conn_closed", lambda ev: ev["direction"] == "outbound")
        book = json.loads((await a.request("addressbook"))["content"])
        assert book["peers"][b.peer_id]["blacklisted"] is True

        await a.request("unblacklist", peer_id=b.peer_id)
        assert [p["peer_id"] for p in (await a.request("list_peers"))["peers"]] == [b.peer_id]
        t = now_ms()
        await a.request("connect", peer_id=b.peer_id)
        await a.wait_event("state", lambda ev: ev["state"] == "Connected" and ev["time_ms"] > t)
        assert (await a.request("state", peer_id=b.peer_id))["state"] in ("Connected", "Cooldown")

    async def test_peer_management_errors(self, start_glueberry: StartPeer) -> None:
        a, b = await established_pair(start_glueberry)
        with pytest.raises(GoCommandError, match="is not reconnecting"):
            await a.request("cancel_reconnection", peer_id=b.peer_id)
        with pytest.raises(GoCommandError, match="already connected"):
            await a.request("connect", peer_id=b.peer_id)
        with pytest.raises(GoCommandError, match="not found"):
            await b.request("get_peer", peer_id=a.peer_id)  # the listener's book has no entry
        await a.request("remove_peer", peer_id=b.peer_id)  # does not disconnect
        assert (await a.request("state", peer_id=b.peer_id))["state"] == "Established"
        with pytest.raises(GoCommandError, match="not found"):
            await a.request("remove_peer", peer_id=b.peer_id)
        await a.request("disconnect", peer_id=b.peer_id)
        with pytest.raises(GoCommandError, match="not in address book"):
            await a.request("connect", peer_id=b.peer_id)


class TestAddressBook:
    async def test_addressbook_content(self, start_glueberry: StartPeer, tmp_path: Path) -> None:
        """The address book file: {"version": 1, "peers": {peer_id: entry}}, entry keys peer_id,
        multiaddrs (a trailing /p2p/ part is stripped by the program), public_key (base64, set by
        PrepareStreams), metadata, last_seen, blacklisted, created_at, updated_at. Only peers added
        with AddPeer appear (the listener's file is never written). A node started on an existing
        file dials its peers at Start."""
        path = tmp_path / "book.json"
        a, b = await start_pair(start_glueberry, ["--addressbook", str(path)], [])
        await a.request(
            "add_peer",
            peer_id=b.peer_id,
            addrs=[b.addrs[0] + "/p2p/" + b.peer_id],
            metadata={"role": "server"},
        )
        await a.wait_event("state", state_is(b.peer_id, "Established"))
        await b.wait_event("state", state_is(a.peer_id, "Established"))
        reply = await a.request("addressbook")
        assert reply["exists"] is True
        assert reply["path"] == str(path)
        book = json.loads(reply["content"])
        assert reply["data"] == book
        assert book["version"] == 1
        assert list(book["peers"]) == [b.peer_id]
        entry = book["peers"][b.peer_id]
        assert set(entry) == {
            "peer_id",
            "multiaddrs",
            "public_key",
            "metadata",
            "last_seen",
            "blacklisted",
            "created_at",
            "updated_at",
        }
        assert entry["peer_id"] == b.peer_id
        assert entry["multiaddrs"] == b.addrs
        assert base64.b64decode(entry["public_key"]).hex() == b.ready["public_key"]
        assert entry["metadata"] == {"role": "server"}
        assert entry["blacklisted"] is False
        got = (await a.request("get_peer", peer_id=b.peer_id))["peer"]
        assert got["public_key"] == b.ready["public_key"]
        assert got["multiaddrs"] == b.addrs
        assert got["metadata"] == {"role": "server"}
        assert got["last_seen"] is not None
        assert (await b.request("addressbook"))["exists"] is False

        await a.close()
        assert path.is_file()  # --addressbook files are kept
        a2 = await start_glueberry("--addressbook", str(path), "--seed", "11" * 32, name="a2")
        await a2.wait_event("state", state_is(b.peer_id, "Established"))  # auto-connect at Start
        await b.wait_event("state", state_is(a2.peer_id, "Established"))
        await a2.request("remove_peer", peer_id=b.peer_id)
        assert json.loads((await a2.request("addressbook"))["content"])["peers"] == {}
