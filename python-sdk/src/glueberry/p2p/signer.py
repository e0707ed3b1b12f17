"""Who signs the libp2p identity proof in a Noise handshake.

The Noise handshake payload carries an Ed25519 signature over ``noise-libp2p-static-key:`` ‖ the
Noise static key. A node signs with its own key (:class:`LocalSigner`); the gateway instead asks a
browser to sign, so the signer is asynchronous and separate from the Noise static key.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .keys import PeerID, public_key_bytes

__all__ = ["NOISE_SIGNATURE_PREFIX", "LocalSigner", "Signer"]

NOISE_SIGNATURE_PREFIX = b"noise-libp2p-static-key:"


@runtime_checkable
class Signer(Protocol):
    """An Ed25519 identity that can sign, possibly remotely."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""

    @property
    def peer_id(self) -> PeerID: ...

    async def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""


class LocalSigner:
    """Signs with a private key held in this process."""

    __slots__ = ("_key", "_peer_id", "_public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public_key = public_key_bytes(key)
        self._peer_id = PeerID.from_public_key(self._public_key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    def sign_now(self, message: bytes) -> bytes:
        return self._key.sign(message)

    async def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
