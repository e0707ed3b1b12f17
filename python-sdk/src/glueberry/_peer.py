"""What a node knows about one peer: its connection state, its stream key and names, its Glueberry
streams (every one read; the newest of a name sent on, PROTOCOL.md §4.3), its timers and limits."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .events import ConnectionState
from .limits import SlidingWindow, TokenBucket
from .p2p.keys import PeerID
from .stats import PeerStats
from .streams import GlueberryStream, StreamTable
from .wire.cipher import StreamCipher

__all__ = ["Backlog", "Peer"]


@dataclass(slots=True, eq=False)
class Backlog:
    """Payloads of one stream that wait for their turn (an async step before them has not
    finished), each with its plaintext if it was decrypted already (else None) and the window
    bytes to release once it is taken (those of the delivery it ended, else 0); and the task
    working through them."""

    payloads: deque[tuple[bytes, bytes | None, int]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None

    def add(self, payloads: list[bytes], held: int) -> None:
        last = len(payloads) - 1
        self.payloads.extend((p, None, held if i == last else 0) for i, p in enumerate(payloads))


@dataclass(slots=True, eq=False)
class Peer:
    peer_id: PeerID
    state: ConnectionState = ConnectionState.DISCONNECTED
    outbound: bool = False
    cipher: StreamCipher | None = None
    allowed: set[str] = field(default_factory=set)
    streams: StreamTable = field(default_factory=StreamTable)
    opening: dict[str, asyncio.Future[GlueberryStream]] = field(default_factory=dict)
    backlogs: dict[GlueberryStream, Backlog] = field(default_factory=dict)
    handshake_timer: asyncio.TimerHandle | None = None
    cooldown_timer: asyncio.TimerHandle | None = None
    reconnect_task: asyncio.Task[None] | None = None
    on_purpose: bool = False  # disconnected by the application: do not reconnect
    bucket: TokenBucket | None = None
    attempts: SlidingWindow | None = None
    stats: PeerStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = PeerStats(self.peer_id)

    async def send_stream(
        self, name: str, open_stream: Callable[[], Awaitable[GlueberryStream]]
    ) -> GlueberryStream:
        """The stream to send ``name`` on: the newest open one, or a new one from ``open_stream``
        (several senders waiting for the same new stream share it)."""
        stream = self.streams.sender(name)
        if stream is not None:
            return stream
        pending = self.opening.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[GlueberryStream] = asyncio.get_running_loop().create_future()
        self.opening[name] = fut
        try:
            stream = await open_stream()
            fut.set_result(stream)
            return stream
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
            raise
        finally:
            self.opening.pop(name, None)

    def wipe(self) -> None:
        """Forget what a Disconnected event wipes (Go: cleanupPeerResources): streams (closed),
        payloads still waiting, the key and the allowed names."""
        for stream in self.streams.clear():
            stream.close()
        for fut in self.opening.values():
            fut.cancel()
        self.opening.clear()
        for backlog in self.backlogs.values():
            if backlog.task is not None:
                backlog.task.cancel()
        self.backlogs.clear()
        if self.cipher is not None:
            self.cipher.close()
            self.cipher = None
        self.allowed.clear()

    def cancel_timers(self) -> None:
        for timer in (self.handshake_timer, self.cooldown_timer):
            if timer is not None:
                timer.cancel()
        self.handshake_timer = self.cooldown_timer = None

    def cancel_reconnect(self) -> None:
        if self.reconnect_task is not None:
            self.reconnect_task.cancel()
            self.reconnect_task = None
