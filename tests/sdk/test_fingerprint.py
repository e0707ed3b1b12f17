"""Peer ID fingerprints: the TypeScript client's definition, value for value (js-client/src/identity.ts)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glueberry.exceptions import InvalidArgument, InvalidPeerID
from glueberry.fingerprint import ED25519_MULTIHASH_PREFIX, fingerprint
from glueberry.p2p.keys import PeerID, private_key_from_bytes, public_key_bytes

SHAPE = re.compile(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}")


class TestDefinition:
    """base32(SHA-256(multihash)[0:10]), uppercase, no padding, grouped 4-4-4-4."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [("peer_a", "F2UZ-4BFX-EJXL-WCMF"), ("peer_b", "OX24-Q4ND-2UOA-BTQU")],
    )
    def test_values_fixed_by_the_ts_tests(self, vectors: dict[str, Any], name: str, expected: str) -> None:
        peer = vectors[name]
        assert fingerprint(peer["peer_id"]) == expected
        assert fingerprint(PeerID.from_string(peer["peer_id"])) == expected
        assert fingerprint(PeerID(bytes.fromhex(peer["peer_id_multihash"]))) == expected
        key = private_key_from_bytes(bytes.fromhex(peer["ed25519_seed"]))
        assert fingerprint(PeerID.from_private_key(key)) == expected

    def test_value_computed_by_the_ts_client(self) -> None:
        # seed 03*32 ("mallory" of tests/vectors/hello_handshake.json), printed by js-client's fingerprint
        peer = PeerID.from_private_key(private_key_from_bytes(b"\x03" * 32))
        assert str(peer) == "12D3KooWRndVhVZPCiQwHBBBdg769GyrPUW13zxwqQyf9r3ANaba"
        assert fingerprint(peer) == "GWQZ-NDGQ-G5VX-VZ37"

    @given(st.binary(min_size=32, max_size=32))
    def test_matches_the_formula_and_shape(self, seed: bytes) -> None:
        pub = public_key_bytes(private_key_from_bytes(seed))
        multihash = ED25519_MULTIHASH_PREFIX + pub
        text = base64.b32encode(hashlib.sha256(multihash).digest()[:10]).decode()
        expected = "-".join(text[i : i + 4] for i in range(0, 16, 4))
        peer = PeerID.from_public_key(pub)
        assert peer.multihash == multihash
        assert fingerprint(peer) == fingerprint(str(peer)) == expected
        assert SHAPE.fullmatch(expected)


class TestRejects:
    """Only canonical Ed25519 identity peer IDs have a fingerprint (TS: InvalidPeerIdError)."""

    def test_sha256_peer_id(self) -> None:
        with pytest.raises(InvalidPeerID):
            fingerprint("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")

    @pytest.mark.parametrize("text", ["", "not a peer id", "0OIl", "12D3KooW", "1" * 200])
    def test_garbage_strings(self, text: str) -> None:
        with pytest.raises(InvalidPeerID):
            fingerprint(text)

    def test_other_key_type_in_an_identity_multihash(self) -> None:
        # secp256k1 (type 2), 33-byte compressed key: a valid libp2p peer ID, not an Ed25519 one
        proto = bytes.fromhex("08021221") + b"\x02" * 33
        peer = PeerID(bytes([0, len(proto)]) + proto)
        with pytest.raises(InvalidPeerID):
            fingerprint(peer)
        with pytest.raises(InvalidPeerID):
            fingerprint(base58.b58encode(peer.multihash).decode())

    def test_non_canonical_ed25519_protobuf(self) -> None:
        # fields in the other order: the same key, but not the bytes every peer hashes
        proto = bytes.fromhex("1220") + b"\x11" * 32 + bytes.fromhex("0801")
        peer = PeerID(bytes([0, len(proto)]) + proto)
        assert peer.public_key() == b"\x11" * 32
        with pytest.raises(InvalidPeerID):
            fingerprint(peer)

    def test_not_a_peer_id_at_all(self) -> None:
        with pytest.raises(InvalidArgument):
            fingerprint(b"12D3KooW")  # type: ignore[arg-type]
