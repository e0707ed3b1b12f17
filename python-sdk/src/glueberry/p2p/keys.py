"""Ed25519 identities, the libp2p ``PublicKey`` encoding and peer IDs.

A peer ID is the multihash of the protobuf-encoded public key: for Ed25519 the 36-byte
protobuf fits the identity hash, so the key can be read back out of the ID (``12D3KooW…``).
Spec: libp2p/specs ``peer-ids/peer-ids.md``; PROTOCOL.md §2.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import base58
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..exceptions import InvalidKey, InvalidPeerID, RemoteProtocolError
from . import _protobuf as pb

__all__ = [
    "ED25519_MULTIHASH_PREFIX",
    "KEY_TYPE_ED25519",
    "PeerID",
    "generate_private_key",
    "private_key_from_bytes",
    "private_key_to_go",
    "public_key_bytes",
    "public_key_from_protobuf",
    "public_key_to_protobuf",
    "verify_signature",
]

KEY_TYPE_ED25519 = 1
#: Multihash identity (0x00), length 36 (0x24), protobuf ``Type: Ed25519`` (08 01), ``Data`` (12 20):
#: what every canonical Ed25519 peer ID (``12D3KooW…``) starts with, before its 32-byte key.
ED25519_MULTIHASH_PREFIX = bytes.fromhex("002408011220")
_MULTIHASH_IDENTITY = 0x00
_MULTIHASH_SHA2_256 = 0x12
_MAX_PEER_ID_STRING = 128  # the longest base58 multihash we accept (identity of a 42-byte key ≈ 60)
_RAW = serialization.Encoding.Raw


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_bytes(data: bytes) -> Ed25519PrivateKey:
    """Load a 32-byte seed or a 64-byte Go ``ed25519.PrivateKey`` (seed ‖ public).

    Raises:
        InvalidKey: wrong length, or a 64-byte key whose public half does not match its seed.
    """
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    if len(data) in (64, 96):  # libp2p also accepts a redundant trailing copy of the public key
        key = Ed25519PrivateKey.from_private_bytes(data[:32])
        if public_key_bytes(key) != data[32:64] or (len(data) == 96 and data[64:] != data[32:64]):
            raise InvalidKey("Ed25519 private key: the public half does not match the seed")
        return key
    raise InvalidKey(f"Ed25519 private key must be 32 or 64 bytes, got {len(data)}")


def private_key_to_go(key: Ed25519PrivateKey) -> bytes:
    """The 64-byte Go form, seed ‖ public key."""
    seed = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return seed + public_key_bytes(key)


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(_RAW, serialization.PublicFormat.Raw)


def public_key_to_protobuf(public_key: bytes) -> bytes:
    """libp2p ``PublicKey{Type: Ed25519, Data: key}``: ``08 01 12 20 ‖ key``."""
    if len(public_key) != 32:
        raise InvalidKey(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return pb.encode_varint_field(1, KEY_TYPE_ED25519) + pb.encode_bytes_field(2, public_key)


def public_key_from_protobuf(data: bytes) -> bytes:
    """Decode a libp2p ``PublicKey`` and return the raw Ed25519 key.

    Raises:
        InvalidKey: not a well-formed protobuf, not an Ed25519 key, or not 32 bytes.
    """
    if len(data) > 1024:
        raise InvalidKey("public key protobuf is over 1024 bytes")
    try:
        fields = pb.decode_fields(data, max_fields=8)
        key_type = pb.single_int(fields, 1)
        key = pb.single_bytes(fields, 2)
    except RemoteProtocolError as exc:
        raise InvalidKey(f"malformed public key protobuf: {exc}") from exc
    if key_type != KEY_TYPE_ED25519:
        raise InvalidKey(f"unsupported libp2p key type {key_type} (only Ed25519 is supported)")
    if key is None or len(key) != 32:
        raise InvalidKey("Ed25519 public key must be 32 bytes")
    return key


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (_CryptoInvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class PeerID:
    """A libp2p peer ID: the multihash bytes, shown as base58btc."""

    multihash: bytes
    # The base58btc text, computed once: IDs are logged and used as keys far more often than made.
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_multihash(self.multihash)
        object.__setattr__(self, "_text", str(base58.b58encode(self.multihash), "ascii"))

    @classmethod
    def from_public_key(cls, public_key: bytes) -> PeerID:
        proto = public_key_to_protobuf(public_key)
        return cls(bytes([_MULTIHASH_IDENTITY, len(proto)]) + proto)

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> PeerID:
        return cls.from_public_key(public_key_bytes(key))

    @classmethod
    def from_string(cls, text: str) -> PeerID:
        """Parse the base58btc form (``12D3KooW…`` or ``Qm…``).

        Raises:
            InvalidPeerID: not base58, not a multihash, or an unsupported hash.
        """
        if not isinstance(text, str) or not text or len(text) > _MAX_PEER_ID_STRING:
            raise InvalidPeerID(f"not a peer ID: {str(text)[:80]!r}")
        try:
            raw = base58.b58decode(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise InvalidPeerID(f"peer ID is not base58btc: {text[:80]!r}") from exc
        return cls(raw)

    def to_string(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"PeerID({self.to_string()!r})"

    def public_key(self) -> bytes | None:
        """The Ed25519 key embedded in an identity-hash peer ID, else None."""
        if self.multihash[0] != _MULTIHASH_IDENTITY:
            return None
        try:
            return public_key_from_protobuf(self.multihash[2:])
        except InvalidKey:
            return None

    def ed25519_key(self) -> bytes | None:
        """The key of a canonical Ed25519 peer ID (``12D3KooW…``), else None: the only peer IDs
        Glueberry can check a handshake key against or show a fingerprint of."""
        mh = self.multihash
        if len(mh) == len(ED25519_MULTIHASH_PREFIX) + 32 and mh.startswith(ED25519_MULTIHASH_PREFIX):
            return mh[len(ED25519_MULTIHASH_PREFIX) :]
        return None

    def matches_public_key(self, public_key: bytes) -> bool:
        return len(public_key) == 32 and PeerID.from_public_key(public_key) == self


def _check_multihash(raw: bytes) -> None:
    if len(raw) < 2:
        raise InvalidPeerID("peer ID multihash is too short")
    code, length = raw[0], raw[1]
    if code == _MULTIHASH_IDENTITY:
        if length > 42 or len(raw) != 2 + length:
            raise InvalidPeerID("identity multihash has a wrong length")
    elif code == _MULTIHASH_SHA2_256:
        if length != 32 or len(raw) != 34:
            raise InvalidPeerID("sha2-256 multihash must hold 32 bytes")
    else:
        raise InvalidPeerID(f"unsupported multihash code 0x{code:02x}")
