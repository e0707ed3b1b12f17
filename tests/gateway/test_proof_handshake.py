"""Any application's handshake from the browser side (issue 17's proof): a real Go glueberry
v1.2.10 service whose handshake is not Hello/PubKey/Complete (tests/interop/cmd/proof-peer: a
versioned INTRO with nonces, signatures over both keys, READY with three streams), reached
through a real gateway by

* the Python gateway client with examples/proof_handshake.py,
* js-client in Node and in Chromium with js-client/examples/proof-handshake.ts
  (js-client/test-integration/proof-scenario.ts),

each: the handshake and its app data, messages on every stream both ways (and one the service
starts), a resume after the socket is cut, a new session after the service restarted (same key,
same address), and an impostor — a service whose handshake key is not its peer ID — refused with
KeyMismatch. Also a python-sdk node that dials the Go service with the same example class.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Route, async_playwright

from examples.proof_handshake import proof_handler, proof_handshake
from glueberry.config import Config
from glueberry.exceptions import KeyMismatch
from glueberry.node import Node
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multiaddr import Multiaddr
from glueberry_gateway.client import GatewayClient, Session, SessionClosed
from glueberry_gateway.server.settings import Backend
from tests.gateway.conftest import ORIGIN, MakeClient, MakeGateway, RunningGateway
from tests.gateway.tcp_proxy import TcpProxy
from tests.gateway.test_js_client import JS, _ensure_built
from tests.helpers import free_port
from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoPeer

STREAMS = ("alpha", "beta", "gamma")
SERVICE_INFO = {"name": "proof-service", "version": 2}


@dataclass
class Services:
    """The Go proof service (restartable on its address) and an impostor, behind one gateway."""

    start: StartPeer
    seed: str
    port: int
    go: GoPeer
    impostor: GoPeer
    gateway: RunningGateway
    proxy: TcpProxy
    before: list[GoPeer] = field(default_factory=list)  # incarnations before a restart

    @property
    def url(self) -> str:
        """The gateway, through the proxy the test can cut."""
        return f"ws://127.0.0.1:{self.proxy.port}/ws"

    async def restart(self) -> None:
        await self.go.kill()
        self.before.append(self.go)
        self.go = await self.start(*self.args(), name="proof-restarted")

    def finalized(self) -> list[str]:
        """The names of the handshakes each incarnation of the service finalized, in order."""
        return [
            e["name"]
            for go in (*self.before, self.go)
            for e in go.event_history
            if e.get("event") == "hs_finalized"
        ]

    def args(self) -> tuple[str, ...]:
        return ("--seed", self.seed, "--listen", f"/ip4/127.0.0.1/tcp/{self.port}")


def backend(name: str, go: GoPeer) -> Backend:
    return Backend(name, PeerID.from_string(go.peer_id), tuple(Multiaddr.parse(a) for a in go.addrs))


@pytest.fixture
async def services(start_proof: StartPeer, make_gateway: MakeGateway) -> AsyncIterator[Services]:
    seed, port = os.urandom(32).hex(), free_port()
    go = await start_proof("--seed", seed, "--listen", f"/ip4/127.0.0.1/tcp/{port}", name="proof")
    impostor = await start_proof("--impostor", name="impostor")
    gw = await make_gateway(backend("proof", go), backend("impostor", impostor))
    proxy = await TcpProxy("127.0.0.1", gw.port).start()
    yield Services(start_proof, seed, port, go, impostor, gw, proxy)
    await proxy.close()


async def open_proof(client: GatewayClient, name: str) -> Session:
    session = await client.open("proof")
    await session.handshake(handshake=proof_handshake(streams=STREAMS, name=name), timeout=10)
    return session


async def test_python_client(services: Services, make_client: MakeClient) -> None:
    client = await make_client(services.url)
    session = await open_proof(client, "py-client")
    assert session.handshake_info == SERVICE_INFO
    assert session.peer_name == "proof-service"
    done = await services.go.wait_event("hs_finalized", lambda e: e["peer_id"] == str(client.peer_id))
    assert done["name"] == "py-client"
    assert sorted(done["peer_streams"]) == sorted(STREAMS)
    welcome = await session.receive(timeout=5)
    assert (welcome.stream, welcome.data) == ("gamma", b"welcome py-client")
    for stream in STREAMS:
        await session.send(stream, f"hi-{stream}".encode())
        echo = await session.receive(timeout=5)
        assert (echo.stream, echo.data) == (stream, f"{stream}:hi-{stream}".encode())
    await services.go.request("send", peer_id=str(client.peer_id), stream="beta", text="pushed")
    assert (await session.receive(timeout=5)).data == b"pushed"

    services.proxy.cut()  # the network drops; the service keeps talking
    await asyncio.sleep(0.2)
    await services.go.request("send", peer_id=str(client.peer_id), stream="alpha", text="while away")
    await client.resume()
    assert (await session.receive(timeout=5)).data == b"while away"
    await session.send("gamma", b"after the cut")
    assert (await session.receive(timeout=5)).data == b"gamma:after the cut"
    texts = [e["text"] for e in services.go.event_history if e.get("event") == "message"]
    assert texts == ["hi-alpha", "hi-beta", "hi-gamma", "after the cut"]  # each exactly once

    await services.restart()
    with pytest.raises(SessionClosed):
        await session.receive(timeout=10)
    again = await open_proof(client, "py-client")
    assert (await again.receive(timeout=5)).data == b"welcome py-client"
    await again.send("beta", b"back")
    assert (await again.receive(timeout=5)).data == b"beta:back"

    impostor = await client.open("impostor")
    with pytest.raises(KeyMismatch):
        await impostor.handshake(handshake=proof_handshake(streams=STREAMS), timeout=10)


Hook = Callable[[str], Awaitable[None]]


def _hooks(services: Services) -> Hook:
    async def hook(name: str) -> None:
        if name == "cut":
            services.proxy.cut()
        elif name == "restart":
            await services.restart()
        else:
            raise AssertionError(f"unknown hook {name!r}")

    return hook


def _build_scenarios() -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed"
    _ensure_built()  # node_modules (esbuild, ws)
    subprocess.run(["node", "scripts/build-integration.mjs"], cwd=JS, check=True)


def check_js_result(result: dict[str, object], name: str) -> None:
    assert result["info"] == SERVICE_INFO
    assert result["welcome"] == f"gamma|welcome {name}"
    assert result["echoes"] == [f"{s}|{s}:hi-{s}" for s in STREAMS]
    assert result["afterCut"] == sorted(f"{s}|{s}:after-cut-{s}" for s in STREAMS)
    assert result["states"][:2] == ["resuming 1006", "connected"]
    assert result["closedCode"] == 4109  # the service went away: BackendClosed
    assert result["reopened"] == [f"gamma|welcome {name}", "beta|beta:back"]
    assert result["impostor"] == "KeyMismatchError"


async def test_node_client(services: Services) -> None:
    await asyncio.to_thread(_build_scenarios)
    env = {**os.environ, "GLUEBERRY_GATEWAY_URL": services.url, "GLUEBERRY_ORIGIN": ORIGIN}
    proc = await asyncio.create_subprocess_exec(
        "node",
        "build/integration/proof-node.mjs",
        cwd=JS,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    hook, lines = _hooks(services), []
    try:
        async with asyncio.timeout(90):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line.rstrip("\n"))
                if line.startswith("HOOK "):
                    await hook(line.split()[1])
                    proc.stdin.write(b"done\n")
                    await proc.stdin.drain()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert proc.returncode == 0, f"proof-node exited {proc.returncode}\n{lines}\n{err}"
    check_js_result(json.loads(lines[-1].removeprefix("RESULT ")), "js-node")
    assert services.finalized() == ["js-node", "js-node"]  # before and after the restart


@pytest.mark.e2e
async def test_chromium(services: Services) -> None:
    await asyncio.to_thread(_build_scenarios)
    chromium = shutil.which("chromium")
    assert chromium is not None, "Debian's chromium is needed (scripts/setup.sh installs it)"
    script = (JS / "build" / "integration" / "proof-browser.js").read_text()
    page_html = '<!doctype html><body><script type="module" src="/proof.js"></script></body>'

    async def serve(route: Route) -> None:
        if route.request.url.endswith("/proof.js"):
            await route.fulfill(body=script, content_type="text/javascript")
        else:
            await route.fulfill(body=page_html, content_type="text/html")

    async with async_playwright() as playwright:
        flags = (
            "LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights"
        )
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", f"--disable-features={flags}"]
        )
        try:
            page = await browser.new_page()
            logs: list[str] = []
            page.on("console", lambda message: logs.append(message.text))
            await page.expose_function("proofHook", _hooks(services))
            await page.route(f"{ORIGIN}/**", serve)
            await page.goto(f"{ORIGIN}/index.html")
            await page.wait_for_function("typeof window.runProof === 'function'", timeout=10_000)
            result = await page.evaluate("url => window.runProof(url)", services.url)
        finally:
            await browser.close()
    check_js_result(result, "js-chromium")
    assert services.finalized() == ["js-chromium", "js-chromium"]


async def test_python_sdk_node_dials_the_go_service(start_proof: StartPeer, tmp_path: Path) -> None:
    """The same example class as a python-sdk node's handshake (MachineHandshakeHandler)."""
    go = await start_proof(name="proof")
    key = generate_private_key()
    handler = proof_handler(key, streams=STREAMS, name="py-node")
    node = Node(Config(key, tmp_path / "book.json", ["/ip4/127.0.0.1/tcp/0"]), handshake=handler)
    await node.start()
    try:
        service = PeerID.from_string(go.peer_id)
        node.add_peer(service, go.addrs)  # a started node dials it (Go's AddPeer)
        done = await go.wait_event("hs_finalized", lambda e: e["peer_id"] == str(node.peer_id))
        assert done["name"] == "py-node"
        message = await node.receive(timeout=10)
        assert (message.stream_name, message.data) == ("gamma", b"welcome py-node")
        await node.send(service, "alpha", b"from python")
        echo = await node.receive(timeout=10)
        assert (echo.stream_name, echo.data) == ("alpha", b"alpha:from python")
        assert handler.peer_info[service] == SERVICE_INFO
    finally:
        await node.stop()
