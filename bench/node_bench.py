"""Glueberry node benchmark: 1 KiB encrypted messages/s and round-trip latency, for
Go->Go, Go->Python, Python->Go and Python->Python, in one run (each node in its own process except
the Python sender, which is this process). Ratios are against Go->Go measured in the same run.

Throughput: the sender sends N messages of 1 KiB on one stream as fast as its API allows; the time
runs until the receiver has all N. Latency: one message at a time, each after the echo of the
previous one (p50/p99 over the round trips).

    .venv/bin/python bench/node_bench.py [--messages 20000] [--round-trips 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glueberry.auto_handshake import HelloHandshakeHandler  # noqa: E402
from glueberry.config import Config  # noqa: E402
from glueberry.events import ConnectionState  # noqa: E402
from glueberry.node import Node  # noqa: E402
from glueberry.p2p.keys import PeerID, generate_private_key  # noqa: E402
from tests.interop.goproc import GoPeer  # noqa: E402

SIZE = 1024


class PyPeer:
    """bench/py_node_peer.py in a subprocess."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def start(self) -> PyPeer:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "py_node_peer.py"),
            self.mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        info = json.loads(await self.proc.stdout.readline())
        self.peer_id: str = info["peer_id"]
        self.addrs: list[str] = info["addrs"]
        return self

    async def expect(self, n: int) -> asyncio.Future[dict[str, Any]]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"expect": n}).encode() + b"\n")
        await self.proc.stdin.drain()
        stdout = self.proc.stdout
        return asyncio.ensure_future(_read_json(stdout))

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 10)


async def _read_json(stream: asyncio.StreamReader) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await stream.readline())
    return result


def payload(i: int) -> bytes:
    return i.to_bytes(8, "big") + b"p" * (SIZE - 8)


async def go_peer(*args: str, name: str) -> GoPeer:
    return await GoPeer(
        ROOT / "build" / "glueberry-peer",
        ["--streams", "bench", "--message-buffer-size", "100000", *args],
        name=name,
    ).start()


async def run(messages: int, round_trips: int, rounds: int) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp())
    go_sender = await go_peer(name="go-sender")
    go_count = await go_peer("--on-message", "count", name="go-count")
    go_echo = await go_peer("--on-message", "echo", name="go-echo")
    py_count = await PyPeer("count").start()
    py_echo = await PyPeer("echo").start()
    config = Config(
        generate_private_key(), tmp / "book.json", ["/ip4/127.0.0.1/tcp/0"], max_messages_per_second=0
    )
    py = Node(config, handshake=HelloHandshakeHandler(streams=["bench"], name="py-sender"))
    await py.start()
    results: dict[str, dict[str, list[float]]] = {}

    def record(pair: str, metric: str, value: float) -> None:
        results.setdefault(pair, {}).setdefault(metric, []).append(value)

    try:
        # connect every sender to every receiver and wait for Established
        events = py.events(states=[ConnectionState.ESTABLISHED])
        for target in (go_count, go_echo, py_count, py_echo):
            py.add_peer(target.peer_id, target.addrs)
            await go_sender.request("add_peer", peer_id=target.peer_id, addrs=target.addrs)
        for _ in range(4):
            await asyncio.wait_for(events.get(), 15)
        for target in (go_count, go_echo, py_count, py_echo):
            await go_sender.wait_state(target.peer_id, timeout=15)
        await asyncio.sleep(0.3)

        for _ in range(rounds):
            # throughput
            base = (await go_count.request("summary", peer_id=go_sender.peer_id, stream="bench"))["count"]
            start = time.perf_counter()
            await go_sender.request(
                "send_many", peer_id=go_count.peer_id, stream="bench", count=messages, size=SIZE
            )
            await go_count.request(
                "wait_messages",
                peer_id=go_sender.peer_id,
                stream="bench",
                count=base + messages,
                timeout_ms=120000,
            )
            record("go->go", "msgs_per_s", messages / (time.perf_counter() - start))

            done = await py_count.expect(messages)
            start = time.perf_counter()
            await go_sender.request(
                "send_many", peer_id=py_count.peer_id, stream="bench", count=messages, size=SIZE
            )
            await done
            record("go->python", "msgs_per_s", messages / (time.perf_counter() - start))

            base = (await go_count.request("summary", peer_id=str(py.peer_id), stream="bench"))["count"]
            target = PeerID.from_string(go_count.peer_id)
            start = time.perf_counter()
            for i in range(messages):
                await py.send(target, "bench", payload(i))
            await go_count.request(
                "wait_messages",
                peer_id=str(py.peer_id),
                stream="bench",
                count=base + messages,
                timeout_ms=120000,
            )
            record("python->go", "msgs_per_s", messages / (time.perf_counter() - start))

            done = await py_count.expect(messages)
            target = PeerID.from_string(py_count.peer_id)
            start = time.perf_counter()
            for i in range(messages):
                await py.send(target, "bench", payload(i))
            await done
            record("python->python", "msgs_per_s", messages / (time.perf_counter() - start))

            # latency
            for pair, echo in (("go->go", go_echo), ("go->python", py_echo)):
                r = await go_sender.request(
                    "rtt", peer_id=echo.peer_id, stream="bench", count=round_trips, size=SIZE
                )
                record(pair, "p50_us", r["p50_us"])
                record(pair, "p99_us", r["p99_us"])
            for pair, echo in (("python->go", go_echo), ("python->python", py_echo)):
                target = PeerID.from_string(echo.peer_id)
                rtts = []
                for i in range(round_trips):
                    t = time.perf_counter()
                    await py.send(target, "bench", payload(i))
                    await py.receive(timeout=10)
                    rtts.append((time.perf_counter() - t) * 1e6)
                rtts.sort()
                record(pair, "p50_us", rtts[len(rtts) // 2])
                record(pair, "p99_us", rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))])
    finally:
        await py.stop()
        for peer in (go_sender, go_count, go_echo):
            await peer.close()
        for p in (py_count, py_echo):
            await p.close()
    return {pair: {m: statistics.median(v) for m, v in metrics.items()} for pair, metrics in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--round-trips", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import uvloop

    medians = uvloop.run(run(args.messages, args.round_trips, args.rounds))
    base = medians["go->go"]
    print(
        f"# Glueberry node, {time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()} "
        f"(uvloop), {args.rounds} rounds, medians; 1 KiB messages"
    )
    print("| pair | msgs/s | vs Go→Go | RTT p50 µs | RTT p99 µs |")
    print("|---|---|---|---|---|")
    for pair in ("go->go", "go->python", "python->go", "python->python"):
        m = medians[pair]
        print(
            f"| {pair} | {m['msgs_per_s']:,.0f} | {m['msgs_per_s'] / base['msgs_per_s']:.2f} "
            f"| {m['p50_us']:,.0f} | {m['p99_us']:,.0f} |"
        )
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
