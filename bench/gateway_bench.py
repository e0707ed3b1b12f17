"""Gateway benchmark, in one run on 127.0.0.1 (each server in its own process):

1. set-up: auth + open (dial the backend, Noise, yamux, identify) + Hello/PubKey/Complete,
   sequentially, p50/p90;
2. round trips: K clients, each sending a 1 KiB frame and waiting for its echo, through the
   gateway to a python-sdk echo backend and back (the backend decrypts and re-encrypts), against
   the same clients on a plain uvicorn WebSocket echo (the baseline, same server stack);
3. latency at scale: S concurrent sessions open, a steady aggregate rate of round trips spread
   over them, p50/p99;
4. memory: N concurrent sessions open (over N/k sockets, k sessions each, to distinct backends:
   the sandbox allows 20,000 file descriptors per process and each session holds a WebSocket share
   and a backend connection), gateway RSS growth per session.

    .venv/bin/python bench/gateway_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glueberry.p2p.keys import generate_private_key  # noqa: E402
from glueberry_gateway.client import GatewayClient, Session  # noqa: E402
from glueberry_gateway.codec import encode_data_frame  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from raw_gateway_client import RawGatewayClient  # noqa: E402

ORIGIN = "http://bench.local"
FRAME = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Backend:
    def __init__(self, script: str = "py_node_peer.py", *args: str) -> None:
        self.command = [sys.executable, str(ROOT / "bench" / script), *args]

    async def start(self) -> Backend:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        info = json.loads(await self.proc.stdout.readline())
        self.peer_id: str = info["peer_id"]
        self.addrs: list[str] = info["addrs"]
        return self

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()


async def start_gateway(
    backends: list[Backend], tmp: Path, raw: Backend | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    lines = [
        f'listen = "127.0.0.1:{port}"',
        f'allowed_origins = ["{ORIGIN}"]',
        'log_format = "text"',
        'log_level = "WARNING"',
    ]
    named = [(f"b{i}", b) for i, b in enumerate(backends)] + ([("raw", raw)] if raw is not None else [])
    for name, backend in named:
        lines += [
            "[[backends]]",
            f'name = "{name}"',
            f'peer_id = "{backend.peer_id}"',
            f"addrs = {json.dumps(backend.addrs)}",
        ]
    lines += [
        "[limits]",
        "max_sockets = 19000",
        "max_sockets_per_ip = 19000",
        "connection_rate_per_ip = 1000000",
        "max_sessions = 16",
        "messages_per_second = 100000",
        "bytes_per_second = 1000000000",
        "auth_timeout = 60",
        "sign_timeout = 60",
        "handshake_timeout = 60",
        "idle_timeout = 3600",
    ]
    config = tmp / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "glueberry_gateway.cli",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"ws://127.0.0.1:{port}/ws"
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return proc, url


async def open_session(url: str, backend: str) -> tuple[GatewayClient, Session]:
    client = await GatewayClient.connect(url, identity=generate_private_key(), origin=ORIGIN, open_timeout=60)
    session = await client.open(backend, timeout=60)
    await session.handshake(["bench"], timeout=60)
    return client, session


async def bench_setup(url: str, n: int) -> dict[str, float]:
    times = []
    clients = []
    for _ in range(n):
        start = time.perf_counter()
        client, _ = await open_session(url, "b0")
        times.append((time.perf_counter() - start) * 1000)
        clients.append(client)
    for client in clients:
        await client.close()
    times.sort()
    return {"setup_p50_ms": times[len(times) // 2], "setup_p90_ms": times[int(len(times) * 0.9)]}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ping_pong(
    loops: list[Callable[[], Awaitable[None]]], seconds: float, server_pid: int
) -> tuple[float, float]:
    """Round trips per second over all loops, and the server's CPU microseconds per round trip."""
    count = 0
    stop = time.perf_counter() + seconds

    async def run(rt: Callable[[], Awaitable[None]]) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await rt()
            count += 1

    cpu0 = cpu_seconds(server_pid)
    start = time.perf_counter()
    await asyncio.gather(*(run(rt) for rt in loops))
    elapsed = time.perf_counter() - start
    return count / elapsed, (cpu_seconds(server_pid) - cpu0) / count * 1e6


async def bench_round_trips(
    url: str, baseline_url: str, *, gateway_pid: int, baseline_pid: int, clients: int, seconds: float
) -> dict[str, float]:
    payload = os.urandom(FRAME)
    frame = encode_data_frame(1, "bench", payload)

    # the baseline: plain WebSocket clients on a plain echo
    sockets = [await connect(baseline_url, compression=None) for _ in range(clients)]

    def base_rt(ws: Any) -> Callable[[], Awaitable[None]]:
        async def rt() -> None:
            await ws.send(payload)
            await ws.recv()

        return rt

    base_rate, base_cpu = await ping_pong([base_rt(ws) for ws in sockets], seconds, baseline_pid)
    for ws in sockets:
        await ws.close()

    # relay only: the same light clients (no Glueberry crypto) to a byte-echo backend
    raws = []
    for _ in range(clients):
        raw = await RawGatewayClient.connect(url, ORIGIN)
        await raw.open(1, "raw")
        raws.append(raw)
    relay_rate, relay_cpu = await ping_pong(
        [functools.partial(r.round_trip, frame) for r in raws], seconds, gateway_pid
    )
    for raw in raws:
        await raw.close()

    # the full stack: the Python client's crypto, a python-sdk Glueberry echo node
    full = [await open_session(url, "b0") for _ in range(clients)]

    def full_rt(session: Session) -> Callable[[], Awaitable[None]]:
        async def rt() -> None:
            await session.send("bench", payload)
            await session.receive(timeout=10)

        return rt

    full_rate, full_cpu = await ping_pong([full_rt(s) for _, s in full], seconds, gateway_pid)
    for client, _ in full:
        await client.close()
    return {
        "baseline_rt_per_s": base_rate,
        "baseline_server_us_per_rt": base_cpu,
        "relay_only_rt_per_s": relay_rate,
        "relay_only_gateway_us_per_rt": relay_cpu,
        "relay_only_ratio": relay_rate / base_rate,
        "relay_only_cpu_ratio": base_cpu / relay_cpu,
        "full_stack_rt_per_s": full_rate,
        "full_stack_gateway_us_per_rt": full_cpu,
        "full_stack_ratio": full_rate / base_rate,
    }


async def open_many(
    url: str, backends: int, sockets: int, per_socket: int, parallel: int = 64
) -> list[tuple[GatewayClient, list[Session]]]:
    semaphore = asyncio.Semaphore(parallel)
    out: list[tuple[GatewayClient, list[Session]]] = []

    async def one(i: int) -> None:
        async with semaphore:
            client = await GatewayClient.connect(
                url, identity=generate_private_key(), origin=ORIGIN, open_timeout=120
            )
            sessions = []
            for k in range(per_socket):
                session = await client.open(f"b{(i + k) % backends}", timeout=120)
                await session.handshake(["bench"], timeout=120)
                sessions.append(session)
            out.append((client, sessions))

    await asyncio.gather(*(one(i) for i in range(sockets)))
    return out


async def bench_latency_at_scale(
    url: str, sessions_wanted: int, rate: float, seconds: float
) -> dict[str, float]:
    opened = await open_many(url, 1, sessions_wanted, 1)
    sessions = [s for _, ss in opened for s in ss]
    payload = os.urandom(FRAME)
    latencies: list[float] = []
    interval = len(sessions) / rate  # each session sends once per interval

    async def loop(session: Session) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await session.send("bench", payload)
            await session.receive(timeout=10)
            latencies.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t)))

    await asyncio.gather(*(loop(s) for s in sessions))
    for client, _ in opened:
        await client.close()
    latencies.sort()
    return {
        "sessions": len(sessions),
        "round_trips": len(latencies),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


async def bench_memory(backends: list[Backend], tmp: Path, sockets: int, per_socket: int) -> dict[str, float]:
    """In a fresh gateway process, so that no memory freed by an earlier phase is reused."""
    gateway, url = await start_gateway(backends, tmp)
    try:
        await asyncio.sleep(1)
        warm = await open_many(url, len(backends), 20, 1)  # imports, caches, first allocations
        await asyncio.sleep(0.5)
        before = rss_kib(gateway.pid)
        opened = await open_many(url, len(backends), sockets, per_socket)
        await asyncio.sleep(2)
        after = rss_kib(gateway.pid)
        n = sum(len(ss) for _, ss in opened)
        _, sessions = opened[len(opened) // 2]  # the sessions still work at this scale
        await sessions[0].send("bench", b"still alive")
        assert (await sessions[0].receive(timeout=30)).data == b"still alive"
        for c, _ in opened + warm:
            await c.close()
    finally:
        gateway.terminate()
        await gateway.wait()
    return {
        "sessions": n,
        "sockets": len(opened),
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_session": (after - before) / n,
    }


async def run(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp())
    n_backends = 4
    backends = [await Backend("py_node_peer.py", "echo").start() for _ in range(n_backends)]
    raw_backend = await Backend("raw_echo_backend.py").start()
    gateway, url = await start_gateway(backends, tmp, raw_backend)
    base_port = free_port()
    baseline = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "ws_echo_app.py"), str(base_port)
    )
    await asyncio.sleep(1.5)
    results: dict[str, Any] = {}
    try:
        results["setup"] = await bench_setup(url, 50 if quick else 200)
        results["round_trips"] = await bench_round_trips(
            url,
            f"ws://127.0.0.1:{base_port}/ws",
            gateway_pid=gateway.pid,
            baseline_pid=baseline.pid,
            clients=16,
            seconds=3 if quick else 10,
        )
        results["latency"] = await bench_latency_at_scale(
            url, 200 if quick else 1000, 500.0, 5 if quick else 15
        )
        results["memory_one_session_per_socket"] = await bench_memory(
            backends, tmp, 500 if quick else 9000, 1
        )
        results["memory_10k_sessions"] = await bench_memory(backends, tmp, 250 if quick else 2500, 4)
    finally:
        baseline.terminate()
        gateway.terminate()
        await gateway.wait()
        await baseline.wait()
        for backend in [*backends, raw_backend]:
            await backend.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    args = parser.parse_args()
    import uvloop

    results = uvloop.run(run(args.quick))
    print(f"# gateway, {time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
