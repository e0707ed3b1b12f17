"""Connection states, connection events, incoming messages, and event subscriptions.

States and their numbers are Go glueberry's (``pkg/connection/state.go``, PROTOCOL.md §5); the
transition table is Go's ``CanTransitionTo`` plus the edges our node adds because, unlike Go, it
notices when a remote goes away (Connected/Established → Disconnected → Reconnecting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from enum import IntEnum

from .p2p.keys import PeerID

__all__ = [
    "TRANSITIONS",
    "ConnectionEvent",
    "ConnectionState",
    "EventSubscription",
    "IncomingMessage",
]

_log = logging.getLogger("glueberry")


class ConnectionState(IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2  # libp2p connection up; the application runs its handshake
    ESTABLISHED = 3  # handshake finalized; encrypted streams in use
    RECONNECTING = 4
    COOLDOWN = 5  # after a failed handshake, before reconnection is allowed

    def __str__(self) -> str:
        return self.name.capitalize()

    @property
    def is_active(self) -> bool:
        """Go's ``IsActive``: a connection exists or is being made."""
        return self in (ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.ESTABLISHED)


S = ConnectionState
# Go's allowed transitions (state.go CanTransitionTo), unchanged. Our node also goes
# RECONNECTING -> CONNECTING -> CONNECTED on reconnection, which Go allows too.
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING, S.RECONNECTING}),
    S.CONNECTING: frozenset({S.CONNECTED, S.DISCONNECTED}),
    S.CONNECTED: frozenset({S.ESTABLISHED, S.DISCONNECTED, S.COOLDOWN}),
    S.ESTABLISHED: frozenset({S.DISCONNECTED}),
    S.RECONNECTING: frozenset({S.CONNECTING, S.DISCONNECTED}),
    S.COOLDOWN: frozenset({S.DISCONNECTED, S.RECONNECTING}),
}


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A peer's connection changed state. ``error`` says why, for failures."""

    peer_id: PeerID
    state: ConnectionState
    error: Exception | None = None
    timestamp: float = field(default_factory=time.time)

    @property
    def is_error(self) -> bool:
        return self.error is not None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message: decrypted (named streams) or as sent (the handshake stream)."""

    peer_id: PeerID
    stream_name: str
    data: bytes
    timestamp: float = field(default_factory=time.time)


class EventSubscription:
    """Connection events for one consumer, optionally filtered by peer and state.

    Use it as an async iterator (``async for event in node.events(): …``); it ends when the node
    stops or :meth:`close` is called. The queue is bounded: a consumer that falls behind loses
    the oldest events (counted in :attr:`dropped`, logged), never blocks the node.
    """

    def __init__(
        self,
        *,
        maxsize: int,
        peer_ids: Collection[PeerID] | None = None,
        states: Collection[ConnectionState] | None = None,
        on_close: object = None,
    ) -> None:
        self._queue: asyncio.Queue[ConnectionEvent | None] = asyncio.Queue(maxsize)
        self._peers = frozenset(peer_ids) if peer_ids else None
        self._states = frozenset(states) if states else None
        self._closed = False
        self._on_close = on_close
        self.dropped = 0

    def matches(self, event: ConnectionEvent) -> bool:
        return (self._peers is None or event.peer_id in self._peers) and (
            self._states is None or event.state in self._states
        )

    def deliver(self, event: ConnectionEvent) -> None:
        if self._closed or not self.matches(event):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            _log.warning("event subscriber is behind: dropped the oldest event (%d so far)", self.dropped)
        self._queue.put_nowait(event)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        if callable(self._on_close):
            self._on_close(self)

    async def get(self) -> ConnectionEvent | None:
        """The next event, or None once the subscription is closed."""
        if self._closed and self._queue.empty():
            return None
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[ConnectionEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ConnectionEvent]:
        while (event := await self.get()) is not None:
            yield event

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
