"""Who may come in, and to what: the rules a socket's core asks about (docs/gateway-protocol.md
§3–§5) — the configured backends, the allowed origins, the application tokens. Pure: nothing here
does I/O; token checks read the wall clock (JWT times are wall-clock times)."""

from __future__ import annotations

import time

from glueberry.p2p.keys import PeerID

from ..protocol.codes import Code
from ..protocol.errors import ProtocolViolation
from .settings import Backend, Settings
from .tokens import TokenClaims, TokenVerifier

__all__ = ["SettingsPolicy"]


class SettingsPolicy:
    """The :class:`~.core.Policy` of a gateway's :class:`~.settings.Settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        tokens = settings.tokens
        self.tokens = (
            TokenVerifier(tokens.key, tokens.algorithms, issuer=tokens.issuer, audience=tokens.audience)
            if tokens.key is not None
            else None
        )

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._settings.backends

    def backend(self, name_or_peer: str) -> Backend | None:
        return self._settings.backend(name_or_peer)

    def origin_allowed(self, origin: str) -> bool:
        allowed = self._settings.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    def check_token(self, token: str | None, peer_id: PeerID) -> TokenClaims | None:
        if token is None:
            if self._settings.tokens.required:
                raise ProtocolViolation(Code.TOKEN_INVALID, "this gateway requires a token")
            return None
        if self.tokens is None:
            raise ProtocolViolation(Code.TOKEN_INVALID, "this gateway does not accept tokens")
        return self.tokens.verify(token, peer_id, time.time())
