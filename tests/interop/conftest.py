"""Fixtures for the interop tests: the Go programs, built on demand, and running instances."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from tests.interop.goproc import REPO_ROOT, GoPeer

INTEROP_DIR = Path(__file__).resolve().parent
BUILD_DIR = REPO_ROOT / "build"

StartPeer = Callable[..., Awaitable[GoPeer]]


def _newest_source_mtime() -> float:
    newest = 0.0
    for path in INTEROP_DIR.rglob("*"):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            newest = max(newest, path.stat().st_mtime)
    return newest


def build_go_programs(binaries: Sequence[str]) -> None:
    """Build every program under tests/interop/cmd/ into build/ (the command scripts/setup.sh
    runs) when one of ``binaries`` is missing or older than the Go sources."""
    targets = [BUILD_DIR / name for name in binaries]
    newest = _newest_source_mtime()
    if all(t.is_file() and t.stat().st_mtime >= newest for t in targets):
        return
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain ('go') is needed to build the interop programs: run scripts/setup.sh")
    BUILD_DIR.mkdir(exist_ok=True)
    result = subprocess.run(
        [go, "build", "-o", f"{BUILD_DIR}{os.sep}", "./cmd/..."],
        cwd=INTEROP_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go build failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    for t in targets:
        if not t.is_file():
            pytest.fail(f"go build did not produce {t}")
        t.touch()  # a no-op rebuild keeps the old mtime; mark it fresh


@pytest.fixture(scope="session")
def p2p_peer_binary() -> Path:
    """build/p2p-peer, (re)built if missing or stale."""
    build_go_programs(["p2p-peer"])
    return BUILD_DIR / "p2p-peer"


@pytest.fixture(scope="session")
def glueberry_peer_binary() -> Path:
    """build/glueberry-peer (a real Glueberry v1.2.10 node), (re)built if missing or stale."""
    build_go_programs(["glueberry-peer"])
    return BUILD_DIR / "glueberry-peer"


@pytest.fixture(scope="session")
def proof_peer_binary() -> Path:
    """build/proof-peer (a Glueberry v1.2.10 service with a handshake of its own), (re)built if stale."""
    build_go_programs(["proof-peer"])
    return BUILD_DIR / "proof-peer"


@pytest.fixture
async def start_peer(p2p_peer_binary: Path) -> AsyncIterator[StartPeer]:
    """Start p2p-peer processes (``await start_peer("--security", "noise", name="a")``); all
    are closed at teardown."""
    peers: list[GoPeer] = []

    async def start(*args: str, name: str | None = None, binary: Path | None = None) -> GoPeer:
        peer = GoPeer(binary or p2p_peer_binary, args, name=name or f"go-{len(peers)}")
        peers.append(peer)
        return await peer.start()

    yield start
    for peer in reversed(peers):
        await peer.close()


@pytest.fixture
async def start_glueberry(glueberry_peer_binary: Path) -> AsyncIterator[StartPeer]:
    """Start glueberry-peer processes (``await start_glueberry("--name", "alice", name="a")``);
    all are closed at teardown."""
    peers: list[GoPeer] = []

    async def start(*args: str, name: str | None = None) -> GoPeer:
        peer = GoPeer(glueberry_peer_binary, args, name=name or f"glueberry-{len(peers)}")
        peers.append(peer)
        return await peer.start()

    yield start
    for peer in reversed(peers):
        await peer.close()


@pytest.fixture
async def start_proof(proof_peer_binary: Path) -> AsyncIterator[StartPeer]:
    """Start proof-peer processes (``await start_proof("--seed", hex, name="svc")``); all are
    closed at teardown."""
    peers: list[GoPeer] = []

    async def start(*args: str, name: str | None = None) -> GoPeer:
        peer = GoPeer(proof_peer_binary, args, name=name or f"proof-{len(peers)}")
        peers.append(peer)
        return await peer.start()

    yield start
    for peer in reversed(peers):
        await peer.close()
