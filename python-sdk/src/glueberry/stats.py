"""Per-peer and per-stream statistics (Go's ``PeerStats`` / ``StreamStats``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from .p2p.keys import PeerID

__all__ = ["PeerStats", "StreamStats"]


@dataclass(slots=True)
class StreamStats:
    name: str
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_sent_at: float | None = None
    last_received_at: float | None = None


@dataclass(slots=True)
class PeerStats:
    """Counters for one peer; read a snapshot with :meth:`~glueberry.Node.peer_statistics`."""

    peer_id: PeerID
    connected: bool = False
    is_outbound: bool = False
    connected_at: float | None = None
    total_connect_time: float = 0.0  # seconds, over finished connections
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    decryption_errors: int = 0
    rate_limited: int = 0  # times inbound reading was paused by max_messages_per_second
    streams: dict[str, StreamStats] = field(default_factory=dict)

    def stream(self, name: str) -> StreamStats:
        stats = self.streams.get(name)
        if stats is None:
            stats = self.streams[name] = StreamStats(name)
        return stats

    def record_sent(self, name: str, size: int) -> None:
        now = time.time()
        self.messages_sent += 1
        self.bytes_sent += size
        s = self.stream(name)
        s.messages_sent += 1
        s.bytes_sent += size
        s.last_sent_at = now

    def record_received(self, name: str, size: int) -> None:
        now = time.time()
        self.messages_received += 1
        self.bytes_received += size
        s = self.stream(name)
        s.messages_received += 1
        s.bytes_received += size
        s.last_received_at = now

    def mark_connected(self, outbound: bool) -> None:
        if not self.connected:
            self.connected = True
            self.connected_at = time.time()
        self.is_outbound = outbound

    def mark_disconnected(self) -> None:
        if self.connected and self.connected_at is not None:
            self.total_connect_time += time.time() - self.connected_at
        self.connected = False
        self.connected_at = None

    def snapshot(self) -> PeerStats:
        return replace(self, streams={k: replace(v) for k, v in self.streams.items()})
