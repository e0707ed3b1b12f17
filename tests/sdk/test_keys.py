"""Identities and peer IDs (PROTOCOL.md §2.1, libp2p peer-ids spec)."""

from __future__ import annotations

from typing import Any

import pytest

from glueberry.exceptions import InvalidKey, InvalidPeerID
from glueberry.p2p.keys import (
    PeerID,
    generate_private_key,
    private_key_from_bytes,
    private_key_to_go,
    public_key_bytes,
    public_key_from_protobuf,
    public_key_to_protobuf,
    verify_signature,
)


@pytest.mark.parametrize("name", ["peer_a", "peer_b"])
class TestKnownAnswers:
    def test_go_private_key_round_trip(self, vectors: dict[str, Any], name: str) -> None:
        peer = vectors[name]
        key = private_key_from_bytes(bytes.fromhex(peer["ed25519_seed"]))
        assert private_key_to_go(key).hex() == peer["ed25519_private_key_go"]
        assert public_key_bytes(key).hex() == peer["ed25519_public_key"]
        again = private_key_from_bytes(bytes.fromhex(peer["ed25519_private_key_go"]))
        assert public_key_bytes(again) == public_key_bytes(key)

    def test_public_key_protobuf(self, vectors: dict[str, Any], name: str) -> None:
        peer = vectors[name]
        pub = bytes.fromhex(peer["ed25519_public_key"])
        proto = public_key_to_protobuf(pub)
        assert proto.hex() == peer["libp2p_public_key_protobuf"]
        assert public_key_from_protobuf(proto) == pub

    def test_peer_id(self, vectors: dict[str, Any], name: str) -> None:
        peer = vectors[name]
        pub = bytes.fromhex(peer["ed25519_public_key"])
        pid = PeerID.from_public_key(pub)
        assert pid.multihash.hex() == peer["peer_id_multihash"]
        assert str(pid) == peer["peer_id"]
        assert str(pid).startswith("12D3KooW")
        parsed = PeerID.from_string(peer["peer_id"])
        assert parsed == pid
        assert parsed.public_key() == pub
        assert parsed.matches_public_key(pub)


class TestPeerIDParsing:
    def test_sha256_peer_id_has_no_embedded_key(self) -> None:
        pid = PeerID.from_string("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        assert pid.public_key() is None
        assert pid.ed25519_key() is None

    def test_ed25519_key_only_of_the_canonical_encoding(self) -> None:
        pub = b"\x11" * 32
        assert PeerID.from_public_key(pub).ed25519_key() == pub
        reordered = bytes.fromhex("1220") + pub + bytes.fromhex("0801")  # same key, other bytes
        odd = PeerID(bytes([0, len(reordered)]) + reordered)
        assert odd.public_key() == pub
        assert odd.ed25519_key() is None

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "not-base58-0OIl",
            "1",
            "12D3KooW",  # truncated
            "x" * 500,
            "3vQB7B6MrGQZaxCuFg4oh",  # valid base58 but an unknown multihash code
        ],
    )
    def test_rejects(self, text: str) -> None:
        with pytest.raises(InvalidPeerID):
            PeerID.from_string(text)

    def test_other_key_does_not_match(self, vectors: dict[str, Any]) -> None:
        pid = PeerID.from_string(vectors["peer_a"]["peer_id"])
        assert not pid.matches_public_key(bytes.fromhex(vectors["peer_b"]["ed25519_public_key"]))
        assert not pid.matches_public_key(b"short")


class TestKeyDecoding:
    def test_mismatched_go_key_rejected(self, vectors: dict[str, Any]) -> None:
        bad = bytes.fromhex(vectors["peer_a"]["ed25519_seed"]) + bytes.fromhex(
            vectors["peer_b"]["ed25519_public_key"]
        )
        with pytest.raises(InvalidKey):
            private_key_from_bytes(bad)

    @pytest.mark.parametrize("length", [0, 31, 33, 63, 65])
    def test_wrong_length(self, length: int) -> None:
        with pytest.raises(InvalidKey):
            private_key_from_bytes(b"\x01" * length)

    @pytest.mark.parametrize(
        "proto",
        [
            "0800122000",  # wrong type (RSA = 0) and short
            "0801121f" + "00" * 31,  # 31-byte key
            "080212200000000000000000000000000000000000000000000000000000000000000000",  # secp256k1
            "0801ff",  # truncated
            "",
        ],
    )
    def test_bad_protobuf(self, proto: str) -> None:
        with pytest.raises(InvalidKey):
            public_key_from_protobuf(bytes.fromhex(proto))

    def test_signature(self) -> None:
        key = generate_private_key()
        sig = key.sign(b"msg")
        assert verify_signature(public_key_bytes(key), sig, b"msg")
        assert not verify_signature(public_key_bytes(key), sig, b"other")
        assert not verify_signature(b"\x00" * 5, sig, b"msg")
