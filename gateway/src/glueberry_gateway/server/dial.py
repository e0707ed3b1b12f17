"""Dialling a backend with the browser's identity (docs/gateway-protocol.md §5.1).

The libp2p connection uses a fresh Noise static key of the gateway's, and its libp2p identity
signature is made by the browser: :class:`RemoteSigner` asks the browser through its socket, and
refuses to ask for anything but a Noise static-key payload. :func:`dial_backend` turns what can go
wrong into the session faults the protocol names (4102, 4103, 4111).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from opentelemetry.trace import Tracer

from glueberry.exceptions import GlueberryError, PeerIDMismatch
from glueberry.p2p.asyncio import Connection, Host
from glueberry.p2p.keys import PeerID, verify_signature

from ..protocol.auth import is_noise_payload
from ..protocol.errors import BackendUnavailable, SignatureInvalid
from .settings import Backend

__all__ = ["RemoteSigner", "SignatureSource", "dial_backend"]


class SignatureSource(Protocol):
    """The browser, as its socket lets the gateway ask it to sign."""

    async def request_signature(self, session: int, payload: bytes) -> bytes:
        """The browser's signature of ``payload``. Raises SignatureInvalid, SignTimeout."""
        ...


class RemoteSigner:
    """A :class:`~glueberry.p2p.signer.Signer` whose signatures the browser makes (§5.1)."""

    def __init__(self, browser: SignatureSource, public_key: bytes, session: int, tracer: Tracer) -> None:
        self._browser = browser
        self._public_key = public_key
        self._peer_id = PeerID.from_public_key(public_key)
        self._session = session
        self._tracer = tracer

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    async def sign(self, message: bytes) -> bytes:
        if not is_noise_payload(message):  # never ask the browser to sign anything else
            raise SignatureInvalid("refusing to request a non-Noise signature")
        with self._tracer.start_as_current_span("gateway.sign_request"):  # the browser signs
            signature = await self._browser.request_signature(self._session, message)
        if not verify_signature(self._public_key, signature, message):
            raise SignatureInvalid("the browser's Noise signature does not verify")
        return signature


async def dial_backend(host: Host, backend: Backend, signer: RemoteSigner, *, timeout: float) -> Connection:
    """TCP, then Noise with the browser's signature, yamux and identify, within ``timeout``.

    Raises:
        BackendUnavailable: unreachable, too slow, or not the peer it should be.
        SignatureInvalid, SignTimeout: the browser's part failed.
    """
    try:
        async with asyncio.timeout(timeout):
            return await host.dial(backend.peer_id, list(backend.addrs), signer=signer)
    except PeerIDMismatch:
        raise BackendUnavailable("the backend is not who it should be") from None
    except (GlueberryError, OSError, TimeoutError):
        raise BackendUnavailable(f"cannot reach {backend.name}") from None
