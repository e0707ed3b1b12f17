"""Shared fixtures of the asyncio node suites: Python Glueberry nodes on loopback (``make_node``).
Waiting for a connection state is ``tests.helpers.wait_state``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from glueberry.auto_handshake import HelloHandshakeHandler
from glueberry.config import Config
from glueberry.node import Node
from glueberry.p2p.keys import generate_private_key

MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
def node_streams() -> tuple[str, ...]:
    """The encrypted streams the Hello handshake of ``make_node``'s nodes prepares; a test module
    overrides this fixture to change them."""
    return ("chat", "files", "control")


@pytest.fixture
async def make_node(tmp_path: Path, node_streams: tuple[str, ...]) -> AsyncIterator[MakeNode]:
    """``await make_node(**config_options)``: a started node listening on loopback, with the Hello
    handshake (``auto=False``: none) over ``streams`` (default: ``node_streams``); stopped after
    the test."""
    nodes: list[Node] = []

    async def make(*, auto: bool = True, streams: tuple[str, ...] = node_streams, **options: object) -> Node:
        config = Config(
            generate_private_key(),
            tmp_path / f"book-{len(nodes)}.json",
            ["/ip4/127.0.0.1/tcp/0"],
            **options,  # type: ignore[arg-type]
        )
        handler = HelloHandshakeHandler(streams=list(streams), name=f"n{len(nodes)}") if auto else None
        node = Node(config, handshake=handler)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node._started:
            await node.stop()
