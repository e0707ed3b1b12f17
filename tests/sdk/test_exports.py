"""The public names of the packages (a change here is an API change: update docs and changelog)."""

from __future__ import annotations

import glueberry
import glueberry_gateway


def test_glueberry_exports() -> None:
    assert sorted(glueberry.__all__) == sorted(
        [
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
    )
    for name in glueberry.__all__:
        assert hasattr(glueberry, name), name


def test_gateway_exports() -> None:
    for name in glueberry_gateway.__all__:
        assert hasattr(glueberry_gateway, name), name
