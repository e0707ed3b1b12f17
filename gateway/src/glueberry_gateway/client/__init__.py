"""The Python client of the gateway: a browser's side of ``glueberry.v1``, for tests, tools and
Python programs that reach Glueberry peers through a gateway.

:class:`GatewayClient` (asyncio, :mod:`.asyncio`) drives the sans-I/O :class:`~.core.ClientProtocol`.
"""

from __future__ import annotations

from ..protocol.control import BackendInfo, GatewayLimits
from .asyncio import GatewayClient
from .errors import GatewayClosed, GatewayError, GatewayProtocolError, SessionClosed
from .events import CloseInfo
from .handshake import HandshakeContext, HandshakeFactory, SessionHandshake, hello_handshake
from .session import ConnectionState, Message, Session

__all__ = [
    "BackendInfo",
    "CloseInfo",
    "ConnectionState",
    "GatewayClient",
    "GatewayClosed",
    "GatewayError",
    "GatewayLimits",
    "GatewayProtocolError",
    "HandshakeContext",
    "HandshakeFactory",
    "Message",
    "Session",
    "SessionClosed",
    "SessionHandshake",
    "hello_handshake",
]
