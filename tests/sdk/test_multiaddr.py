"""Multiaddrs (multiformats/multiaddr): text and binary forms."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glueberry.exceptions import InvalidMultiaddr
from glueberry.p2p.keys import PeerID
from glueberry.p2p.multiaddr import Multiaddr, TcpTarget


class TestKnownForms:
    @pytest.mark.parametrize(
        ("text", "binary"),
        [
            ("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1"),
            ("/ip6/::1/tcp/4001", "29" + "00" * 15 + "01" + "060fa1"),
            ("/dns4/example.com/tcp/80", "360b" + b"example.com".hex() + "060050"),
            ("/ip4/1.2.3.4/udp/4001/quic-v1", "0401020304" + "9102" + "0fa1" + "cd03"),
            ("/ip4/1.2.3.4/tcp/443/tls/ws", "0401020304060" + "1bb" + "c003" + "dd03"),
        ],
    )
    def test_round_trip(self, text: str, binary: str) -> None:
        addr = Multiaddr.parse(text)
        assert str(addr) == text
        assert addr.to_bytes().hex() == binary
        assert Multiaddr.from_bytes(bytes.fromhex(binary)) == addr

    def test_p2p_component(self, vectors: dict[str, Any]) -> None:
        pid = vectors["peer_a"]["peer_id"]
        addr = Multiaddr.parse(f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}")
        assert addr.peer_id == PeerID.from_string(pid)
        assert addr.to_bytes().hex().endswith("a50326" + vectors["peer_a"]["peer_id_multihash"])
        assert str(Multiaddr.from_bytes(addr.to_bytes())) == str(addr)
        assert str(addr.without_peer_id()) == "/ip4/127.0.0.1/tcp/4001"
        assert addr.without_peer_id().with_peer_id(PeerID.from_string(pid)) == addr
        assert str(Multiaddr.parse(f"/ip4/127.0.0.1/tcp/4001/ipfs/{pid}")) == str(addr)

    def test_tcp_target(self) -> None:
        assert Multiaddr.parse("/ip4/10.0.0.1/tcp/5").tcp_target() == TcpTarget("10.0.0.1", 5)
        assert Multiaddr.parse("/dns/localhost/tcp/80").tcp_target() == TcpTarget("localhost", 80)
        assert Multiaddr.parse("/ip4/1.2.3.4/udp/4001/quic-v1").tcp_target() is None
        assert Multiaddr.parse("/ip4/1.2.3.4/tcp/1/ws").tcp_target() is None

    def test_from_tcp(self) -> None:
        assert str(Multiaddr.from_tcp("127.0.0.1", 80)) == "/ip4/127.0.0.1/tcp/80"
        assert str(Multiaddr.from_tcp("::1", 80)) == "/ip6/::1/tcp/80"

    def test_certhash(self) -> None:
        text = (
            "/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ"
        )
        addr = Multiaddr.parse(text)
        assert str(Multiaddr.from_bytes(addr.to_bytes())) == text


class TestRejects:
    @pytest.mark.parametrize(
        "text",
        [
            "",
            "ip4/1.2.3.4",
            "/ip4/1.2.3",
            "/ip4/300.1.1.1/tcp/1",
            "/ip4/1.2.3.4/tcp/65536",
            "/ip4/1.2.3.4/tcp/-1",
            "/ip4/1.2.3.4/tcp",
            "/ip4//tcp/1",
            "/bogus/1",
            "/ip6/nothex/tcp/1",
            "/ip4/1.2.3.4/tcp/1/p2p/notapeer",
            "/ws/extra",
            "/dns/" + "a" * 300,
            "/" + "x" * 2000,
        ],
    )
    def test_text(self, text: str) -> None:
        with pytest.raises(InvalidMultiaddr):
            Multiaddr.parse(text)

    @pytest.mark.parametrize(
        "binary",
        [
            "",
            "047f0000",  # truncated ip4
            "ff7f",  # unknown code
            "a50305aabbccddee",  # p2p with an invalid multihash
            "0b",  # unknown code 11
            "36ff",  # truncated length
        ],
    )
    def test_binary(self, binary: str) -> None:
        with pytest.raises(InvalidMultiaddr):
            Multiaddr.from_bytes(bytes.fromhex(binary))

    @given(st.binary(max_size=64))
    def test_random_binary_is_parsed_or_rejected(self, data: bytes) -> None:
        try:
            addr = Multiaddr.from_bytes(data)
        except InvalidMultiaddr:
            return
        assert Multiaddr.from_bytes(addr.to_bytes()) == addr
