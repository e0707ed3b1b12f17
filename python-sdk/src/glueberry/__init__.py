"""Glueberry for Python: a peer-to-peer node wire-compatible with github.com/blockberries/glueberry.

    from glueberry import Config, HelloHandshakeHandler, Node, generate_private_key

    async with Node(Config(generate_private_key(), "book.json", ["/ip4/0.0.0.0/tcp/4001"]),
                    handshake=HelloHandshakeHandler(streams=["chat"])) as node:
        node.add_peer(peer_id, ["/ip4/10.0.0.2/tcp/4001"])
        async for message in node.messages():
            ...

The guide and API reference are in docs/python-sdk.md.
"""

from __future__ import annotations

from .version import __version__  # first: node.py reads it from this package while it loads

# isort: split
from .auto_handshake import HandshakeHandler, HelloHandshakeHandler
from .config import Config
from .events import ConnectionEvent, ConnectionState, EventSubscription, IncomingMessage
from .exceptions import ErrorCode, GlueberryError, is_permanent, is_retriable
from .fingerprint import fingerprint
from .handshake import HelloHandshake
from .node import Node
from .p2p.keys import PeerID, generate_private_key, private_key_from_bytes, private_key_to_go
from .p2p.multiaddr import Multiaddr
from .stats import PeerStats, StreamStats
from .version import ProtocolVersion

__all__ = [
    "Config",
    "ConnectionEvent",
    "ConnectionState",
    "ErrorCode",
    "EventSubscription",
    "GlueberryError",
    "HandshakeHandler",
    "HelloHandshake",
    "HelloHandshakeHandler",
    "IncomingMessage",
    "Multiaddr",
    "Node",
    "PeerID",
    "PeerStats",
    "ProtocolVersion",
    "StreamStats",
    "__version__",
    "fingerprint",
    "generate_private_key",
    "is_permanent",
    "is_retriable",
    "private_key_from_bytes",
    "private_key_to_go",
]
