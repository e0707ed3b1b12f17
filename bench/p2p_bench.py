"""libp2p throughput on loopback: Python<->Python, Python<->Go and Go<->Go in one run.

For each pair: 1 KiB messages per second on one echo stream (the writer sends messages back to
back while the reader takes the echo) and bulk MB/s to a /discard/1.0.0 stream. Every side is
the same work: no hashing or pattern checks (the Go peer's are switched off with hash/verify
false), Noise on both sides (--security noise). Results are medians of
several rounds, reported with their ratio to Go<->Go measured in the same run (the machine is
shared and noisy, so only ratios are comparable between runs).

    .venv/bin/python bench/p2p_bench.py [--rounds 3] [--messages 50000] [--bulk-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from glueberry.p2p.asyncio import Host, HostConfig
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multiaddr import Multiaddr
from glueberry.p2p.signer import LocalSigner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.interop.goproc import GoPeer

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


class PyServer:
    """bench/py_p2p_peer.py in its own process, so client and server do not share a core."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "py_p2p_peer.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.peer_id: str = info["peer_id"]
        self.addrs: list[str] = info["addrs"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


async def py_messages(host: Host, peer_id: str, addrs: list[str], count: int, size: int) -> float:
    stream = await host.new_stream(
        PeerID.from_string(peer_id), "/echo/1.0.0", [Multiaddr.parse(a) for a in addrs]
    )
    message = b"m" * size
    start = time.perf_counter()

    async def writer() -> None:
        for _ in range(count):
            await stream.write(message)
        await stream.close()

    task = asyncio.ensure_future(writer())
    total = 0
    while data := await stream.read():
        total += len(data)
    await task
    elapsed = time.perf_counter() - start
    assert total == count * size, (total, count * size)
    return count / elapsed


async def py_bulk(host: Host, peer_id: str, addrs: list[str], nbytes: int) -> float:
    stream = await host.new_stream(
        PeerID.from_string(peer_id), "/discard/1.0.0", [Multiaddr.parse(a) for a in addrs]
    )
    chunk = b"b" * MIB
    start = time.perf_counter()
    for _ in range(nbytes // MIB):
        await stream.write(chunk)
    await stream.close()
    assert await stream.read() == b""  # the discarder closes after reading everything
    return nbytes / (time.perf_counter() - start) / 1e6


async def run(rounds: int, messages: int, bulk_mib: int) -> dict[str, dict[str, float]]:
    binary = ROOT / "build" / "p2p-peer"
    go_a = await GoPeer(binary, ["--security", "noise"], name="go-a").start()
    go_b = await GoPeer(binary, ["--security", "noise"], name="go-b").start()
    py_server = PyServer()
    client = Host(LocalSigner(generate_private_key()), HostConfig())
    results: dict[str, dict[str, list[float]]] = {}

    def record(pair: str, metric: str, value: float) -> None:
        results.setdefault(pair, {}).setdefault(metric, []).append(value)

    try:
        await go_a.request("connect", peer_id=go_b.peer_id, addrs=go_b.addrs)
        await go_a.request("connect", peer_id=py_server.peer_id, addrs=py_server.addrs)
        for _ in range(rounds):
            for pair, target in (("go->go", go_b), ("go->python", py_server)):
                r = await go_a.request(
                    "messages", peer_id=target.peer_id, count=messages, size=1024, verify=False
                )
                record(pair, "msgs_per_s", r["messages_per_s"])
                r = await go_a.request(
                    "send_bulk",
                    peer_id=target.peer_id,
                    bytes=bulk_mib * MIB,
                    protocol="/discard/1.0.0",
                    hash=False,
                )
                record(pair, "mb_per_s", bulk_mib * MIB / (r["elapsed_ms"] / 1000) / 1e6)
            for pair, (pid, addrs) in (
                ("python->go", (go_b.peer_id, go_b.addrs)),
                ("python->python", (py_server.peer_id, py_server.addrs)),
            ):
                record(pair, "msgs_per_s", await py_messages(client, pid, addrs, messages, 1024))
                record(pair, "mb_per_s", await py_bulk(client, pid, addrs, bulk_mib * MIB))
    finally:
        await client.close()
        py_server.close()
        await go_a.close()
        await go_b.close()
    return {pair: {m: statistics.median(v) for m, v in metrics.items()} for pair, metrics in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--bulk-mib", type=int, default=256)
    args = parser.parse_args()
    import uvloop

    medians = uvloop.run(run(args.rounds, args.messages, args.bulk_mib))
    base = medians["go->go"]
    print(
        f"# libp2p loopback, {time.strftime('%Y-%m-%d')}, {platform.node()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()} (uvloop), {args.rounds} rounds, medians"
    )
    print("| pair | 1 KiB msgs/s | vs Go↔Go | bulk MB/s | vs Go↔Go |")
    print("|---|---|---|---|---|")
    for pair in ("go->go", "go->python", "python->go", "python->python"):
        m = medians[pair]
        print(
            f"| {pair} | {m['msgs_per_s']:,.0f} | {m['msgs_per_s'] / base['msgs_per_s']:.2f} "
            f"| {m['mb_per_s']:,.0f} | {m['mb_per_s'] / base['mb_per_s']:.2f} |"
        )
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
