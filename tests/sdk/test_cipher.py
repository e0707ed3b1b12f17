"""Encrypted named streams: key conversion, ECDH, HKDF and frames (PROTOCOL.md §8)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from glueberry.exceptions import DecryptionFailed, InvalidArgument, InvalidKey, InvalidState
from glueberry.p2p.keys import private_key_from_bytes, public_key_bytes
from glueberry.wire.cipher import (
    HKDF_INFO,
    OVERHEAD,
    StreamCipher,
    derive_stream_key,
    ed25519_private_to_x25519,
    ed25519_public_to_x25519,
    shared_key,
    x25519_shared_secret,
)
from glueberry.wire.framing import EndOfStream, Frame, FrameDecoder, encode_frame, outer_length

P = 2**255 - 19
D = (-121665 * pow(121666, -1, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

seeds = st.binary(min_size=32, max_size=32)


def x25519_base(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def rfc8032_decodes(key: bytes) -> bool:
    """Independent check: RFC 8032 §5.1.3 point decoding (square root by the (p+3)/8 power), with
    Go's relaxations — y reduced mod p rather than refused, and the sign bit ignored."""
    y = (int.from_bytes(key, "little") & ((1 << 255) - 1)) % P
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == u:
        return True
    return v * x * x % P == (-u) % P and v * (x * SQRT_M1) ** 2 % P == u


def encode_y(y: int, sign: int = 0) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


@pytest.mark.parametrize("name", ["peer_a", "peer_b"])
class TestKeyConversion:
    """§8.1: x_priv = clamp(SHA-512(seed)[:32]); public u = (1+y)/(1−y) with Go's decoding."""

    def test_private_from_seed_go_key_and_object(self, vectors: dict[str, Any], name: str) -> None:
        peer = vectors[name]
        expected = peer["x25519_private_key"]
        seed = bytes.fromhex(peer["ed25519_seed"])
        assert ed25519_private_to_x25519(seed).hex() == expected
        assert ed25519_private_to_x25519(bytes.fromhex(peer["ed25519_private_key_go"])).hex() == expected
        assert ed25519_private_to_x25519(private_key_from_bytes(seed)).hex() == expected

    def test_public(self, vectors: dict[str, Any], name: str) -> None:
        peer = vectors[name]
        u = ed25519_public_to_x25519(bytes.fromhex(peer["ed25519_public_key"]))
        assert u.hex() == peer["x25519_public_key"]
        assert x25519_base(bytes.fromhex(peer["x25519_private_key"])) == u


class TestPublicKeyDecoding:
    """§8.1: Go's edwards25519.Point.SetBytes rules, mirrored exactly."""

    @settings(max_examples=50)
    @given(seeds)
    def test_private_is_clamped_hash_of_seed(self, seed: bytes) -> None:
        k = bytearray(hashlib.sha512(seed).digest()[:32])
        k[0] &= 248
        k[31] = (k[31] & 127) | 64
        assert ed25519_private_to_x25519(seed) == bytes(k)

    @settings(max_examples=50)
    @given(seeds)
    def test_converted_public_is_x25519_of_converted_private(self, seed: bytes) -> None:
        key = private_key_from_bytes(seed)
        assert ed25519_public_to_x25519(public_key_bytes(key)) == x25519_base(ed25519_private_to_x25519(key))

    @settings(max_examples=50)
    @given(seeds)
    def test_sign_bit_ignored(self, seed: bytes) -> None:
        pub = bytearray(public_key_bytes(private_key_from_bytes(seed)))
        flipped = bytes(pub[:31]) + bytes([pub[31] ^ 0x80])
        assert ed25519_public_to_x25519(flipped) == ed25519_public_to_x25519(bytes(pub))

    @pytest.mark.parametrize("y", range(19))
    def test_non_canonical_y_is_reduced(self, y: int) -> None:
        """y + p still fits in 255 bits for y < 19; Go accepts it as y."""
        try:
            expected = ed25519_public_to_x25519(encode_y(y))
        except InvalidKey:
            with pytest.raises(InvalidKey):
                ed25519_public_to_x25519(encode_y(y + P))
        else:
            assert ed25519_public_to_x25519(encode_y(y + P)) == expected
            assert ed25519_public_to_x25519(encode_y(y + P, sign=1)) == expected

    @pytest.mark.parametrize(
        ("y", "u"),
        [
            (1, 0),  # identity: 1/0 taken as 0
            (P - 1, 0),  # (0, −1), order 2: (1 + y) = 0
            (0, 1),  # (±√−1, 0), order 4
        ],
    )
    def test_special_points(self, y: int, u: int) -> None:
        assert ed25519_public_to_x25519(encode_y(y)) == u.to_bytes(32, "little")
        assert ed25519_public_to_x25519(encode_y(y, sign=1)) == u.to_bytes(32, "little")

    def test_rejected_remote_keys(self, vectors: dict[str, Any]) -> None:
        cases = vectors["rejected_remote_keys"]["cases"]
        identity, not_a_point, short = (bytes.fromhex(c["ed25519_public_key"]) for c in cases)
        assert ed25519_public_to_x25519(identity).hex() == cases[0]["x25519_public_key"]
        with pytest.raises(InvalidKey, match="not a point"):
            ed25519_public_to_x25519(not_a_point)
        with pytest.raises(InvalidKey, match="32 bytes"):
            ed25519_public_to_x25519(short)

    @pytest.mark.parametrize("length", [0, 31, 33, 64])
    def test_wrong_length(self, length: int) -> None:
        with pytest.raises(InvalidKey):
            ed25519_public_to_x25519(bytes(length))

    @settings(max_examples=500)
    @given(st.binary(min_size=32, max_size=32))
    def test_random_strings_convert_or_raise_invalid_key(self, key: bytes) -> None:
        try:
            u = ed25519_public_to_x25519(key)
        except InvalidKey:
            assert not rfc8032_decodes(key)
        else:
            assert rfc8032_decodes(key)
            assert len(u) == 32
            assert int.from_bytes(u, "little") < P

    def test_about_half_of_all_strings_are_points(self) -> None:
        results = []
        for i in range(400):
            try:
                ed25519_public_to_x25519(os.urandom(32) if i else bytes(32))
                results.append(True)
            except InvalidKey:
                results.append(False)
        assert 120 < sum(results) < 280


class TestECDH:
    """§8.2: X25519(local x_priv, remote u); an all-zero result is an error."""

    def test_shared_secret_both_ways(self, vectors: dict[str, Any]) -> None:
        a, b = vectors["peer_a"], vectors["peer_b"]
        ab = x25519_shared_secret(
            bytes.fromhex(a["x25519_private_key"]), bytes.fromhex(b["x25519_public_key"])
        )
        ba = x25519_shared_secret(
            bytes.fromhex(b["x25519_private_key"]), bytes.fromhex(a["x25519_public_key"])
        )
        assert ab.hex() == ba.hex() == vectors["ecdh"]["shared_secret"]

    def test_rejected_remote_keys(self, vectors: dict[str, Any]) -> None:
        """All three vector keys make shared_key (PrepareStreams) fail, with InvalidKey only."""
        seed = bytes.fromhex(vectors["peer_a"]["ed25519_seed"])
        for case in vectors["rejected_remote_keys"]["cases"]:
            with pytest.raises(InvalidKey):
                shared_key(seed, bytes.fromhex(case["ed25519_public_key"]))

    @pytest.mark.parametrize("y", [1, P - 1, 0, P + 1])
    def test_low_order_edwards_points(self, y: int) -> None:
        with pytest.raises(InvalidKey, match="low-order"):
            shared_key(bytes(32), encode_y(y))

    @pytest.mark.parametrize("u", [0, 1, P - 1])
    def test_low_order_u(self, u: int) -> None:
        with pytest.raises(InvalidKey, match="low-order"):
            x25519_shared_secret(ed25519_private_to_x25519(bytes(32)), u.to_bytes(32, "little"))

    def test_wrong_lengths(self) -> None:
        with pytest.raises(InvalidKey):
            x25519_shared_secret(bytes(31), bytes(32))
        with pytest.raises(InvalidKey):
            x25519_shared_secret(bytes(32), bytes(33))


class TestKeyDerivation:
    """§8.3: HKDF-SHA256, empty salt, info 'glueberry-v1-stream-key'; one key per peer pair."""

    def test_stream_key(self, vectors: dict[str, Any]) -> None:
        assert HKDF_INFO.decode() == vectors["stream_key"]["hkdf_info_ascii"]
        key = derive_stream_key(bytes.fromhex(vectors["ecdh"]["shared_secret"]))
        assert key.hex() == vectors["stream_key"]["key"]

    def test_shared_key_is_symmetric(self, vectors: dict[str, Any]) -> None:
        a, b = vectors["peer_a"], vectors["peer_b"]
        expected = vectors["stream_key"]["key"]
        a_key = private_key_from_bytes(bytes.fromhex(a["ed25519_seed"]))
        assert shared_key(a_key, bytes.fromhex(b["ed25519_public_key"])).hex() == expected
        b_go = bytes.fromhex(b["ed25519_private_key_go"])
        assert shared_key(b_go, bytes.fromhex(a["ed25519_public_key"])).hex() == expected

    @settings(max_examples=25)
    @given(seeds, seeds)
    def test_random_pairs_agree(self, seed_a: bytes, seed_b: bytes) -> None:
        pub_a = public_key_bytes(private_key_from_bytes(seed_a))
        pub_b = public_key_bytes(private_key_from_bytes(seed_b))
        assert shared_key(seed_a, pub_b) == shared_key(seed_b, pub_a)

    def test_cross_check_with_cryptography_x25519(self) -> None:
        seed_a, seed_b = os.urandom(32), os.urandom(32)
        x_a = X25519PrivateKey.from_private_bytes(ed25519_private_to_x25519(seed_a))
        u_b = ed25519_public_to_x25519(public_key_bytes(private_key_from_bytes(seed_b)))
        raw = x_a.exchange(X25519PublicKey.from_public_bytes(u_b))
        assert shared_key(seed_a, public_key_bytes(private_key_from_bytes(seed_b))) == derive_stream_key(raw)

    @pytest.mark.parametrize("bad", [bytes(31), bytes(63)])
    def test_bad_local_key(self, bad: bytes) -> None:
        with pytest.raises(InvalidKey):
            ed25519_private_to_x25519(bad)

    def test_go_key_with_foreign_public_half(self, vectors: dict[str, Any]) -> None:
        bad = bytes.fromhex(vectors["peer_a"]["ed25519_seed"] + vectors["peer_b"]["ed25519_public_key"])
        with pytest.raises(InvalidKey):
            ed25519_private_to_x25519(bad)


@pytest.fixture
def cipher(vectors: dict[str, Any]) -> StreamCipher:
    return StreamCipher(bytes.fromhex(vectors["stream_key"]["key"]))


class TestFrame:
    """§8.4: nonce(12) || ciphertext || tag(16), no AAD, then framed per §6."""

    def test_encrypted_frame(self, vectors: dict[str, Any], cipher: StreamCipher) -> None:
        case = vectors["encrypted_frame"]
        nonce = bytes.fromhex(case["nonce"])
        frame = cipher.encrypt(bytes.fromhex(case["plaintext"]), nonce=nonce)
        assert frame.hex() == case["frame"]
        assert len(frame) == case["frame_length"]
        assert frame[12:].hex() == case["ciphertext_and_tag"]
        assert encode_frame(frame).hex() == case["wire"]

    def test_empty_plaintext(self, vectors: dict[str, Any], cipher: StreamCipher) -> None:
        case = vectors["encrypted_frame_empty_plaintext"]
        frame = cipher.encrypt(b"", nonce=bytes.fromhex(vectors["encrypted_frame"]["nonce"]))
        assert frame.hex() == case["frame"]
        assert len(frame) == OVERHEAD
        assert encode_frame(frame).hex() == case["wire"]

    def test_random_nonces(self, cipher: StreamCipher) -> None:
        frames = {cipher.encrypt(b"same") for _ in range(50)}
        assert len(frames) == 50
        assert {len(f) for f in frames} == {4 + OVERHEAD}
        assert len({f[:12] for f in frames}) == 50

    @pytest.mark.parametrize("nonce", [b"", bytes(11), bytes(13)])
    def test_bad_nonce(self, cipher: StreamCipher, nonce: bytes) -> None:
        with pytest.raises(InvalidArgument):
            cipher.encrypt(b"x", nonce=nonce)

    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    def test_plaintext_buffers(self, cipher: StreamCipher, kind: Any) -> None:
        assert cipher.decrypt(cipher.encrypt(kind(b"hello"))) == b"hello"


class TestReceiving:
    """§8.5: frames < 28 bytes or with a bad tag are dropped (DecryptionFailed), the stream goes on."""

    def test_wire_to_plaintext(self, vectors: dict[str, Any], cipher: StreamCipher) -> None:
        wire = bytes.fromhex(
            vectors["encrypted_frame"]["wire"] + vectors["encrypted_frame_empty_plaintext"]["wire"]
        )
        decoder = FrameDecoder(outer_length(1024 * 1024 + OVERHEAD))
        for i in range(len(wire)):
            decoder.receive_data(wire[i : i + 1])
        decoder.receive_eof()
        events = decoder.events_received()
        assert events[-1] == EndOfStream()
        plaintexts = [cipher.decrypt(e.payload) for e in events if isinstance(e, Frame)]
        assert plaintexts == [b"hello glueberry", b""]

    def test_tampered_frame_rejected_then_stream_continues(
        self, vectors: dict[str, Any], cipher: StreamCipher
    ) -> None:
        wire = bytes.fromhex(vectors["encrypted_frame_tampered"]["wire"] + vectors["encrypted_frame"]["wire"])
        decoder = FrameDecoder(1024)
        decoder.receive_data(wire)
        first, second = decoder.events_received()
        assert isinstance(first, Frame)
        assert isinstance(second, Frame)
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(first.payload)
        assert cipher.decrypt(second.payload) == b"hello glueberry"

    @pytest.mark.parametrize("length", range(OVERHEAD))
    def test_short_frames(self, cipher: StreamCipher, length: int) -> None:
        with pytest.raises(DecryptionFailed, match="shorter"):
            cipher.decrypt(bytes(length))

    def test_wrong_key(self, vectors: dict[str, Any]) -> None:
        frame = bytes.fromhex(vectors["encrypted_frame"]["frame"])
        with pytest.raises(DecryptionFailed):
            StreamCipher(bytes(32)).decrypt(frame)

    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    def test_frame_buffers(self, vectors: dict[str, Any], cipher: StreamCipher, kind: Any) -> None:
        frame = kind(bytes.fromhex(vectors["encrypted_frame"]["frame"]))
        assert cipher.decrypt(frame) == b"hello glueberry"
        if isinstance(frame, bytearray):
            frame.extend(b"resizable again")  # the view taken inside decrypt was released

    @given(st.binary(max_size=200), st.data())
    def test_any_bit_flip_is_rejected(self, plaintext: bytes, data: st.DataObject) -> None:
        cipher = StreamCipher(bytes(range(32)))
        frame = bytearray(cipher.encrypt(plaintext))
        bit = data.draw(st.integers(0, len(frame) * 8 - 1))
        frame[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(frame)

    @given(st.binary(max_size=2000))
    def test_round_trip_between_two_peers(self, plaintext: bytes) -> None:
        key = bytes(range(32))
        frame = StreamCipher(key).encrypt(plaintext)
        assert len(frame) == len(plaintext) + OVERHEAD
        assert StreamCipher(bytearray(key)).decrypt(frame) == plaintext

    def test_no_aad(self, vectors: dict[str, Any], cipher: StreamCipher) -> None:
        """§8.6: frames are not bound to a direction or stream; one cipher reads its own output."""
        frame = cipher.encrypt(b"replayable")
        assert cipher.decrypt(frame) == cipher.decrypt(frame) == b"replayable"


class TestKeyHygiene:
    """close() wipes the key copy this object owns and refuses further use."""

    def test_close_wipes_and_refuses(self, cipher: StreamCipher) -> None:
        own_copy = cipher._key
        assert own_copy is not None
        assert any(own_copy)
        frame = cipher.encrypt(b"x")
        cipher.close()
        assert own_copy == bytearray(32)
        assert cipher.closed
        with pytest.raises(InvalidState):
            cipher.encrypt(b"x")
        with pytest.raises(InvalidState):
            cipher.decrypt(frame)
        cipher.close()  # idempotent

    def test_context_manager(self) -> None:
        with StreamCipher(bytes(32)) as cipher:
            assert "open" in repr(cipher)
        assert cipher.closed
        assert "closed" in repr(cipher)

    def test_caller_buffer_is_copied(self) -> None:
        key = bytearray(range(32))
        cipher = StreamCipher(key)
        frame = cipher.encrypt(b"x")
        key[:] = bytes(32)
        assert cipher.decrypt(frame) == b"x"

    @pytest.mark.parametrize("length", [0, 16, 31, 33])
    def test_key_length(self, length: int) -> None:
        with pytest.raises(InvalidKey):
            StreamCipher(bytes(length))
