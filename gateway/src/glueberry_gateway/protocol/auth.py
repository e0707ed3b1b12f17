"""Authentication by key possession (docs/gateway-protocol.md §3, §5.1): what a browser signs,
and what a gateway checks. Both sides use it: the server core verifies, the client signs.

Pure functions and small objects over a clock passed in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from glueberry.p2p.keys import PeerID, verify_signature
from glueberry.p2p.signer import NOISE_SIGNATURE_PREFIX

from .codes import Code
from .errors import ProtocolViolation

__all__ = [
    "AUTH_LABEL",
    "Challenge",
    "auth_message",
    "is_noise_payload",
    "verify_auth",
]

AUTH_LABEL: Final = b"glueberry-gateway-auth-v1\x00"
NOISE_PREFIX: Final = NOISE_SIGNATURE_PREFIX
NONCE_SIZE: Final = 32


def auth_message(gateway_peer_id: str, origin: str, nonce: bytes) -> bytes:
    """The bytes a browser signs: label ‖ len‖gateway ‖ len‖origin ‖ nonce (§3)."""
    gateway = gateway_peer_id.encode("ascii")
    origin_bytes = origin.encode("ascii", errors="strict")
    if len(gateway) > 255 or len(origin_bytes) > 255:
        raise ValueError("gateway peer ID and origin are at most 255 bytes each")
    return AUTH_LABEL + bytes([len(gateway)]) + gateway + bytes([len(origin_bytes)]) + origin_bytes + nonce


def is_noise_payload(payload: bytes) -> bool:
    """What a client must check before signing for the gateway: the libp2p Noise prefix and a
    32-byte key, nothing else."""
    return len(payload) == len(NOISE_PREFIX) + 32 and payload.startswith(NOISE_PREFIX)


@dataclass(slots=True)
class Challenge:
    """A single-use nonce that expires."""

    nonce: bytes
    expires_at: float
    used: bool = False

    @classmethod
    def new(cls, now: float, ttl: float) -> Challenge:
        return cls(os.urandom(NONCE_SIZE), now + ttl)

    def take(self, now: float) -> None:
        """Use the challenge once. Raises ProtocolViolation(4004) if expired or used."""
        if self.used:
            raise ProtocolViolation(Code.CHALLENGE_EXPIRED, "this challenge was already used")
        self.used = True
        if now > self.expires_at:
            raise ProtocolViolation(Code.CHALLENGE_EXPIRED, "the challenge expired; reconnect for a new one")


def verify_auth(
    *, public_key: bytes, signature: bytes, gateway_peer_id: str, origin: str, nonce: bytes
) -> PeerID:
    """Check the auth signature; return the browser's peer ID. Raises ProtocolViolation(4002)."""
    try:
        message = auth_message(gateway_peer_id, origin, nonce)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ProtocolViolation(Code.ORIGIN_NOT_ALLOWED, "origin is not a short ASCII string") from exc
    if not verify_signature(public_key, signature, message):
        raise ProtocolViolation(Code.AUTH_FAILED, "the signature does not verify for this key and challenge")
    return PeerID.from_public_key(public_key)
