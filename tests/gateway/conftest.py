"""Fixtures for gateway tests: a real gateway (uvicorn on 127.0.0.1, websockets-sansio), real
backends (a python-sdk node; the Go glueberry-peer from tests/interop), real clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.auto_handshake import HelloHandshakeHandler
from glueberry.config import Config
from glueberry.node import Node
from glueberry.p2p.keys import generate_private_key
from glueberry_gateway.client import GatewayClient
from glueberry_gateway.server.app import create_app
from glueberry_gateway.server.cli import uvicorn_config
from glueberry_gateway.server.gateway import Gateway
from glueberry_gateway.server.session import Tap
from glueberry_gateway.server.settings import Backend, Settings
from tests.helpers import free_port

ORIGIN = "http://app.test"
STREAMS = ["chat", "files"]


@dataclass
class RunningGateway:
    gateway: Gateway
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)


AsgiWrapper = Callable[[Any], Any]


async def start_gateway(
    settings: Settings, *, tap: Tap | None = None, port: int | None = None, wrap: AsgiWrapper | None = None
) -> RunningGateway:
    """Run a gateway on 127.0.0.1; ``wrap`` may wrap its ASGI app (e.g. to record traffic)."""
    gateway = Gateway(settings, tap=tap)
    app: Any = create_app(settings, gateway=gateway)
    if wrap is not None:
        app = wrap(app)
    port = port or free_port()
    settings.listen_host, settings.listen_port = "127.0.0.1", port
    server = uvicorn.Server(uvicorn_config(app, settings))  # the server the CLI runs
    task = asyncio.ensure_future(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return RunningGateway(gateway, server, task, port)


@dataclass
class EchoBackend:
    """A python-sdk backend: answers every message with b"echo:" + message on the same stream."""

    node: Node
    received: list[tuple[str, bytes]] = field(default_factory=list)
    decryption_errors: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def backend(self, name: str = "py") -> Backend:
        return Backend(name, self.node.peer_id, tuple(self.node.addrs))


async def _start_echo_backend(path: Path, name: str) -> EchoBackend:
    errors: list[str] = []
    config = Config(
        generate_private_key(),
        path,
        ["/ip4/127.0.0.1/tcp/0"],
        max_messages_per_second=0,
        on_decryption_error=lambda peer, exc: errors.append(peer),
    )
    node = Node(config, handshake=HelloHandshakeHandler(streams=STREAMS, name=name))
    await node.start()
    backend = EchoBackend(node, decryption_errors=errors)

    async def echo() -> None:
        async for message in node.messages():
            backend.received.append((message.stream_name, message.data))
            await node.send(message.peer_id, message.stream_name, b"echo:" + message.data)

    backend.task = asyncio.ensure_future(echo())
    return backend


async def _stop_echo_backend(backend: EchoBackend) -> None:
    assert backend.task is not None
    backend.task.cancel()
    await backend.node.stop()


@pytest.fixture
async def echo_backend(tmp_path: Path) -> AsyncIterator[EchoBackend]:
    backend = await _start_echo_backend(tmp_path / "backend.json", "python-backend")
    yield backend
    await _stop_echo_backend(backend)


@pytest.fixture
async def second_backend(tmp_path: Path) -> AsyncIterator[EchoBackend]:
    backend = await _start_echo_backend(tmp_path / "backend2.json", "python-backend-2")
    yield backend
    await _stop_echo_backend(backend)


MakeGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[MakeGateway]:
    running: list[RunningGateway] = []

    async def make(
        *backends: Backend, tap: Tap | None = None, wrap: AsgiWrapper | None = None, **limits: Any
    ) -> RunningGateway:
        settings = Settings(allowed_origins=(ORIGIN,), backends=tuple(backends))
        for key, value in limits.items():
            setattr(settings.limits, key, value)
        gw = await start_gateway(settings, tap=tap, wrap=wrap)
        running.append(gw)
        return gw

    yield make
    for gw in running:
        await gw.stop()


MakeClient = Callable[..., Awaitable[GatewayClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[GatewayClient] = []

    async def make(url: str, identity: Ed25519PrivateKey | None = None, **options: Any) -> GatewayClient:
        options.setdefault("origin", ORIGIN)
        client = await GatewayClient.connect(url, identity=identity or generate_private_key(), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()


# The Go programs' fixtures (tests/interop/conftest.py): a real Go glueberry backend.
from tests.interop.conftest import (  # noqa: E402
    glueberry_peer_binary,
    proof_peer_binary,
    start_glueberry,
    start_proof,
)

__all__ = ["glueberry_peer_binary", "proof_peer_binary", "start_glueberry", "start_proof"]
