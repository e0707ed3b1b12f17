"""Authentication by key possession and token checks (docs/gateway-protocol.md §3–§4).

Pure functions and small objects over a clock passed in; the socket handler calls them.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import jwt
from jwt.types import Options

from glueberry.p2p.keys import PeerID, verify_signature
from glueberry.p2p.signer import NOISE_SIGNATURE_PREFIX

from .codec import ProtocolViolation
from .codes import Code

__all__ = [
    "AUTH_LABEL",
    "Challenge",
    "TokenClaims",
    "TokenVerifier",
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


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    expires_at: float
    backends: frozenset[str] | None  # None: every configured backend


class TokenVerifier:
    """Checks application tokens (JWT) with PyJWT.

    Args:
        key: the verification key (PEM public key for EdDSA/ES256/RS256, or the HS256 secret).
        algorithms: accepted algorithms, a subset of EdDSA, ES256, RS256, HS256.
        issuer, audience: checked when given.
        leeway: clock skew allowed, in seconds.
    """

    ALLOWED: Final = frozenset({"EdDSA", "ES256", "RS256", "HS256"})

    def __init__(
        self,
        key: str | bytes,
        algorithms: Collection[str],
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 5.0,
    ) -> None:
        unknown = set(algorithms) - self.ALLOWED
        if not algorithms or unknown:
            raise ValueError(
                f"token algorithms must be among {sorted(self.ALLOWED)}; got {sorted(algorithms)}"
            )
        self._key = key
        self._algorithms = list(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    def verify(self, token: str, peer_id: PeerID, now: float) -> TokenClaims:
        """Raises ProtocolViolation: 4006 when expired, 4005 for anything else wrong."""
        options: Options = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise ProtocolViolation(Code.TOKEN_EXPIRED, "the token expired") from exc
        except jwt.PyJWTError as exc:
            raise ProtocolViolation(Code.TOKEN_INVALID, f"token rejected: {exc}") from exc
        if claims.get("sub") != str(peer_id):
            raise ProtocolViolation(Code.TOKEN_INVALID, "the token's 'sub' is not this browser's peer ID")
        exp = claims["exp"]
        if now > float(exp) + self._leeway:  # jwt checks with its own clock; ours is the test clock
            raise ProtocolViolation(Code.TOKEN_EXPIRED, "the token expired")
        backends = claims.get("backends")
        if backends is not None and (
            not isinstance(backends, list)
            or not all(isinstance(b, str) for b in backends)
            or len(backends) > 256
        ):
            raise ProtocolViolation(
                Code.TOKEN_INVALID, "the 'backends' claim must be a list of names or peer IDs"
            )
        return TokenClaims(
            str(claims["sub"]), float(exp), frozenset(backends) if backends is not None else None
        )
