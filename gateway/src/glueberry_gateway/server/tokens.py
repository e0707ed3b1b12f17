"""Application tokens (JWT) at the gateway (docs/gateway-protocol.md §4): checked with PyJWT
against the configured key, bound to the browser's peer ID."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import jwt
from jwt.types import Options

from glueberry.p2p.keys import PeerID

from ..protocol.codes import Code
from ..protocol.errors import ProtocolViolation

__all__ = ["TokenClaims", "TokenVerifier"]


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
