"""The public faces of the gateway package (after websockets' tests/test_exports.py): what
``glueberry_gateway.server`` and ``glueberry_gateway.client`` export is pinned, and resolves."""

from __future__ import annotations

import glueberry_gateway.client
import glueberry_gateway.server


def test_server_exports() -> None:
    assert sorted(glueberry_gateway.server.__all__) == [
        "Backend",
        "Gateway",
        "Limits",
        "Settings",
        "TokenSettings",
        "create_app",
        "load_settings",
    ]
    for name in glueberry_gateway.server.__all__:
        assert hasattr(glueberry_gateway.server, name), name


def test_client_exports() -> None:
    assert sorted(glueberry_gateway.client.__all__) == [
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
    for name in glueberry_gateway.client.__all__:
        assert hasattr(glueberry_gateway.client, name), name
