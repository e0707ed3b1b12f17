"""asyncio drivers of the libp2p cores: connections, streams and the host."""

from __future__ import annotations

from .connection import Connection, ConnectionCallbacks, Stream
from .host import ConnectionGater, Host, HostConfig, StreamHandler

__all__ = [
    "Connection",
    "ConnectionCallbacks",
    "ConnectionGater",
    "Host",
    "HostConfig",
    "Stream",
    "StreamHandler",
]
