"""Test helpers shared by the suites: joining two sans-I/O cores in memory (after h11's
ConnectionPair), feeding transcripts split at every byte, picking a free local port, and waiting
for a node's connection state."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Protocol

from glueberry.events import ConnectionEvent, ConnectionState, EventSubscription


class SansIO(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def data_to_send(self) -> list[bytes]: ...


def pump(a: SansIO, b: SansIO, *, max_rounds: int = 1000) -> None:
    """Move bytes between two cores until both are quiet."""
    for _ in range(max_rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            out = b"".join(src.data_to_send())
            if out:
                dst.receive_data(out)
                moved = True
        if not moved:
            return
    raise AssertionError("cores kept talking for too many rounds")


def splits(data: bytes) -> Iterator[list[bytes]]:
    """Every way of cutting ``data`` in two, plus byte by byte."""
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_state(sub: EventSubscription, state: ConnectionState, timeout: float = 5.0) -> ConnectionEvent:
    """The next event of ``sub`` in ``state`` (TimeoutError after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        async for event in sub:
            if event.state is state:
                return event
    raise AssertionError("subscription ended")


async def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 10 ms for up to ``timeout`` seconds; whether it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
