"""Gateway benchmark, in one run on 127.0.0.1 (each server in its own process):

1. set-up: auth + open (dial the backend, Noise, yamux, identify) + Hello/PubKey/Complete,
   sequentially, p50/p90;
2. round trips: K clients, each sending a window of W 1 KiB frames (W = 1: one at a time; W = 8:
   eight in flight, sent as one batch message where the protocol allows) and waiting for their
   echoes, (a) through the gateway to a byte-echo backend (the relay alone), (b) through the
   gateway to a python-sdk Glueberry echo node with the client doing the Glueberry crypto (the
   full stack), (c) the same with the real Go glueberry as the echo node, against plain
   WebSocket clients on a plain uvicorn echo (the baseline, same server stack); wall-clock rates
   and each process's CPU per round trip;
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
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glueberry.p2p.keys import generate_private_key  # noqa: E402
from glueberry_gateway.client import GatewayClient, Session  # noqa: E402
from glueberry_gateway.protocol.frames import encode_batch, encode_data_frame  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from core_gateway_client import CoreGatewayClient  # noqa: E402
from raw_gateway_client import RawGatewayClient  # noqa: E402

from tests.helpers import free_port  # noqa: E402
from tests.interop.goproc import GoPeer  # noqa: E402

ORIGIN = "http://bench.local"
FRAME = 1024


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


class Named(Protocol):
    """A backend to configure: its peer ID and addresses."""

    @property
    def peer_id(self) -> str: ...

    @property
    def addrs(self) -> list[str]: ...


async def start_gateway(
    backends: list[Backend], tmp: Path, raw: Backend | None = None, go: Named | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    lines = [
        f'listen = "127.0.0.1:{port}"',
        f'allowed_origins = ["{ORIGIN}"]',
        'log_format = "text"',
        'log_level = "WARNING"',
    ]
    named: list[tuple[str, Named]] = [(f"b{i}", b) for i, b in enumerate(backends)]
    named += [(name, b) for name, b in (("raw", raw), ("go", go)) if b is not None]
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
        "glueberry_gateway",
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
    loops: list[Callable[[], Awaitable[None]]], seconds: float, pids: dict[str, int], per_loop: int = 1
) -> dict[str, float]:
    """Run every loop (one round of ``per_loop`` round trips each) until ``seconds`` are over:
    round trips per second over all loops, and CPU microseconds per round trip of each process
    in ``pids`` (from /proc)."""
    count = 0
    stop = time.perf_counter() + seconds

    async def run(rt: Callable[[], Awaitable[None]]) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await rt()
            count += per_loop

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    await asyncio.gather(*(run(rt) for rt in loops))
    elapsed = time.perf_counter() - start
    out = {"rt_per_s": count / elapsed}
    for name, pid in pids.items():
        out[f"{name}_us_per_rt"] = (cpu_seconds(pid) - cpu0[name]) / count * 1e6
    return out


async def bench_round_trips(
    url: str,
    baseline_url: str,
    *,
    pids: dict[str, int],
    clients: int,
    window: int,
    seconds: float,
) -> dict[str, Any]:
    """1 KiB round trips, each client with ``window`` frames in flight (1: lockstep), through
    the baseline echo, the relay alone, and the full stack; the same light load generators."""
    payload = os.urandom(FRAME)
    frame = encode_data_frame(1, "bench", payload)
    me = {"loadgen": os.getpid()}

    # the baseline: plain WebSocket clients on a plain echo
    sockets = [await connect(baseline_url, compression=None) for _ in range(clients)]

    def base_rt(ws: Any) -> Callable[[], Awaitable[None]]:
        async def rt() -> None:
            for _ in range(window):
                await ws.send(payload)
            for _ in range(window):
                await ws.recv()

        return rt

    base = await ping_pong(
        [base_rt(ws) for ws in sockets], seconds, {"server": pids["baseline"], **me}, window
    )
    for ws in sockets:
        await ws.close()

    # relay only: the same light clients (no Glueberry crypto) to a byte-echo backend
    raws = []
    for _ in range(clients):
        raw = await RawGatewayClient.connect(url, ORIGIN, batch=True)
        await raw.open(1, "raw")
        raws.append(raw)
    frames = [frame] * window
    batch = encode_batch(frames) if window > 1 else None
    relay = await ping_pong(
        [functools.partial(r.window, frames, batch) for r in raws],
        seconds,
        {"gateway": pids["gateway"], "backend": pids["raw"], **me},
        window,
    )
    for raw in raws:
        await raw.close()

    async def full_stack(backend: str) -> dict[str, float]:
        """The client's Glueberry crypto, the gateway, a Glueberry echo node."""
        full_clients = [
            await CoreGatewayClient.connect(url, ORIGIN, backend, "bench") for _ in range(clients)
        ]
        result = await ping_pong(
            [functools.partial(c.window, "bench", [payload] * window) for c in full_clients],
            seconds,
            {"gateway": pids["gateway"], "backend": pids[backend], **me},
            window,
        )
        for c in full_clients:
            await c.close()
        return result

    full = await full_stack("b0")  # python-sdk
    full_go = await full_stack("go")  # the real Go glueberry (tests/interop/cmd/glueberry-peer)
    return {
        "window": window,
        "baseline": base,
        "relay_only": relay,
        "full_stack": full,
        "full_stack_go": full_go,
        "relay_only_ratio": relay["rt_per_s"] / base["rt_per_s"],
        "relay_only_cpu_ratio": base["server_us_per_rt"] / relay["gateway_us_per_rt"],
        "full_stack_ratio": full["rt_per_s"] / base["rt_per_s"],
        "full_stack_cpu_ratio": base["server_us_per_rt"] / full["gateway_us_per_rt"],
        "full_stack_go_ratio": full_go["rt_per_s"] / base["rt_per_s"],
        "full_stack_go_cpu_ratio": base["server_us_per_rt"] / full_go["gateway_us_per_rt"],
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
    # The load generator holds 1,000 clients: its own collector's pauses (~100 ms) are not the
    # gateway's. Keep them out of the figures.
    gc.collect()
    gc.freeze()
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
    gc.unfreeze()
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
    go = await GoPeer(
        ROOT / "build" / "glueberry-peer",
        ["--streams", "bench", "--on-message", "echo", "--message-buffer-size", "100000", "--log", "error"],
        name="go-echo",
    ).start()
    gateway, url = await start_gateway(backends, tmp, raw_backend, go)
    base_port = free_port()
    baseline = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "ws_echo_app.py"), str(base_port)
    )
    await asyncio.sleep(1.5)
    results: dict[str, Any] = {}
    try:
        results["setup"] = await bench_setup(url, 50 if quick else 200)
        pids = {"gateway": gateway.pid, "baseline": baseline.pid, "raw": raw_backend.proc.pid}
        pids["b0"] = backends[0].proc.pid
        assert go.pid is not None
        pids["go"] = go.pid
        for window in (1, 8):
            results[f"round_trips_window_{window}"] = await bench_round_trips(
                url,
                f"ws://127.0.0.1:{base_port}/ws",
                pids=pids,
                clients=16,
                window=window,
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
        await go.close()
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
