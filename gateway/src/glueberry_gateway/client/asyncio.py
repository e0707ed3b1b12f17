"""A Python client of the gateway (docs/gateway-protocol.md): the browser side, over asyncio.

A thin driver of :class:`~glueberry_gateway.client.core.ClientProtocol` over a ``websockets``
connection. It plays the browser: it holds the Ed25519 identity, answers the challenge, signs
only Noise payloads, runs the Glueberry handshake with the backend and encrypts and decrypts
itself — the gateway sees ciphertext only::

    client = await GatewayClient.connect("ws://127.0.0.1:8080/ws", identity=key, origin="http://127.0.0.1:8080")
    session = await client.open("chat")
    await session.handshake(streams=["chat"], name="alice")
    await session.send("chat", b"hello")
    async for message in session:  # Message(stream, data), decrypted
        ...
    await client.close()

Back-pressure, both ways: :meth:`Session.send` returns once the frame was written to the socket
(the gateway reads a browser frame only after the backend took the previous one, §7); each
session's inbox holds at most ``inbox_size`` messages, and while one is full the client stops
reading the socket (the gateway then stalls the backend, or ends a very slow reader with 4010).

Resume (§6): when the socket drops (not a normal or fatal close), the sessions wait at the
gateway for ``resume_grace`` seconds. :meth:`GatewayClient.resume` (or ``auto_resume=True``, with
jittered exponential backoff) opens a new socket, re-attaches them, re-sends the frames the gateway
did not get (from a per-session outbox of the last ``outbox_frames`` frames / ``outbox_bytes``
bytes, default 1024 / 4 MiB; a session whose missing frames fell out of it is closed) and receives
the frames the gateway kept, in order, before new ones.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import InvalidState
from glueberry.p2p.keys import PeerID

from ..protocol.control import BackendInfo, GatewayLimits
from .core import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECEIVE_BYTES,
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_FRAMES,
)
from .driver import Driver, attempt_info
from .errors import SessionClosed
from .events import Authenticated, CloseInfo
from .session import CLOSE_TIMEOUT, ConnectionState, Session

__all__ = ["GatewayClient"]

DEFAULT_INBOX_SIZE: Final = 1024


class GatewayClient(Driver):
    """A browser-like client of one gateway (module docstring). Make one with :meth:`connect`.

    Attributes:
        on_close: called with a :class:`CloseInfo` each time a socket closes (also before an
            automatic resume); may return an awaitable.
        on_token_expiring: called with ``expires_at`` on ``token_expiring`` (§4); e.g.
            ``lambda _: client.refresh_token(new_token())``.
        on_drain: called with the delay in seconds on ``drain`` (§8).
        drain_delay: the last ``drain`` message's delay in seconds, if any.
        last_error: the last socket-level ``error`` message, if any.
    """

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        identity: Ed25519PrivateKey,
        origin: str,
        token: str | None = None,
        open_timeout: float = 10.0,
        auto_resume: bool = False,
        gateway_peer_id: PeerID | str | None = None,
        inbox_size: int = DEFAULT_INBOX_SIZE,
        resume_delay: float = 0.2,
        resume_max_delay: float = 5.0,
        max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        outbox_frames: int = DEFAULT_OUTBOX_FRAMES,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
    ) -> GatewayClient:
        """Open the WebSocket (subprotocol ``glueberry.v1``, ``Origin: origin``), answer the
        challenge and wait for ``ready`` (§2–§3).

        Args:
            url: the gateway endpoint, e.g. ``ws://127.0.0.1:8080/ws``.
            identity: the browser's Ed25519 key (its peer ID is the identity).
            origin: the page origin; sent as the ``Origin`` header and signed.
            token: a JWT when the gateway wants one (§4).
            open_timeout: seconds for the whole of connect → ready.
            auto_resume: resume automatically after a drop, with backoff (``resume_delay`` doubling
                up to ``resume_max_delay``, jittered) until ``resume_grace`` runs out.
            gateway_peer_id: refuse a gateway with another identity.
            inbox_size: messages held per session before the client stops reading the socket.
            max_receive_bytes, max_message_size, outbox_frames, outbox_bytes: see
                :class:`~glueberry_gateway.client.core.ClientProtocol`.

        Raises:
            GatewayClosed: the upgrade was refused or the gateway closed the socket (``code``:
                e.g. 4002 auth failed, 4005 token invalid, 4007 origin not allowed).
            GatewayProtocolError: the gateway broke the protocol.
            TimeoutError: no ``ready`` within ``open_timeout``.
        """
        options: dict[str, Any] = {
            "gateway_peer_id": gateway_peer_id,
            "max_receive_bytes": max_receive_bytes,
            "max_message_size": max_message_size,
            "outbox_frames": outbox_frames,
            "outbox_bytes": outbox_bytes,
        }
        client = cls(
            url,
            identity=identity,
            origin=origin,
            token=token,
            open_timeout=open_timeout,
            auto_resume=auto_resume,
            inbox_size=inbox_size,
            resume_delay=resume_delay,
            resume_max_delay=resume_max_delay,
            core_options=options,
        )
        try:
            await client._establish(None)
        except BaseException:
            client._set_state(ConnectionState.CLOSED)
            raise
        return client

    # ---- properties -------------------------------------------------------------------------

    def _info(self) -> Authenticated:
        if self._ready is None:
            raise InvalidState("not authenticated yet")
        return self._ready

    @property
    def peer_id(self) -> PeerID:
        """The browser's peer ID, as the gateway confirmed in ``ready``."""
        return self._info().peer_id

    @property
    def gateway_peer_id(self) -> PeerID | None:
        return self._link.core.gateway_peer_id if self._link else None

    @property
    def backends(self) -> tuple[BackendInfo, ...]:
        """The backends this browser may open (``ready.backends``)."""
        return self._info().backends

    @property
    def limits(self) -> GatewayLimits:
        return self._info().limits

    @property
    def resume_token(self) -> bytes:
        """The current single-use resume token (a new one after each resume)."""
        return self._info().resume_token

    @property
    def resume_grace(self) -> float:
        return self._info().resume_grace

    @property
    def sessions(self) -> dict[int, Session]:
        """The open sessions by number (a copy)."""
        return dict(self._sessions)

    @property
    def closed(self) -> asyncio.Future[CloseInfo]:
        """Resolves with a :class:`CloseInfo` when the client stops by itself: a normal or fatal
        close, :meth:`close`, a drop without ``auto_resume`` (``resumable`` is then True and
        :meth:`resume` may follow), or an automatic resume that gave up. After a successful
        :meth:`resume` this is a new future."""
        return self._closed

    # ---- operations -------------------------------------------------------------------------

    async def open(self, backend: str | PeerID, *, timeout: float | None = 30.0) -> Session:
        """Open a session to a configured backend (name or peer ID, §5.1).

        Raises:
            GatewayError: the gateway refused (``code``: 4100 unknown, 4101 not allowed,
                4102 unavailable, 4104 too many sessions, …), or opened another peer than
                ``ready.backends`` (or the peer ID given) names.
            GatewayClosed: the socket closed first. TimeoutError: no answer in time (a late
                ``opened`` is then closed again).
        """
        link = await self._ready_link()
        number = link.core.open(backend)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._opening[number] = future
        link.wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            future.cancel()
            raise

    async def ping(self, *, timeout: float | None = 10.0) -> float:
        """An application-level ``ping`` (§5.5); returns the round trip in seconds."""
        link = await self._ready_link()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._request(link, link.core.ping(), timeout)
        return loop.time() - start

    async def refresh_token(self, token: str, *, timeout: float | None = 10.0) -> float:
        """Replace the token on the open socket (§4); returns the new ``expires_at``. Later
        resumes authenticate with it.

        Raises:
            GatewayError: refused (4005 invalid, 4006 expired). GatewayClosed, TimeoutError.
        """
        link = await self._ready_link()
        expires_at = await self._request(link, link.core.refresh_token(token), timeout)
        assert expires_at is not None
        self._token = token
        return expires_at

    async def resume(self) -> None:
        """Re-attach the sessions after a drop (§6): new socket, challenge, ``auth`` with ``resume``.

        Sessions the gateway recovered continue (frames it missed are re-sent, frames it kept
        arrive first); the others end with :class:`SessionClosed` (code 4110, or 4014 when
        their frames are no longer in the outbox).

        Raises:
            InvalidState: connected, closed, not resumable, or an automatic resume is under way.
            GatewayClosed: the attempt failed (``resumable`` says whether another may succeed;
                4014: the token was refused and the sessions are gone). TimeoutError.
        """
        if self._state is not ConnectionState.DISCONNECTED or self._resume_state is None:
            raise InvalidState(f"nothing to resume ({self._state.value})")
        self._set_state(ConnectionState.RESUMING)
        try:
            await self._establish(self._resume_state)
        except BaseException as exc:
            self._attempt_failed(attempt_info(exc))
            raise

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket normally; every session ends and nothing is resumed. Idempotent."""
        task, self._resume_task = self._resume_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        link = self._link
        if self._state is ConnectionState.CLOSED and (link is None or link.ended.is_set()):
            return
        self._set_state(ConnectionState.CLOSED)
        if link is not None and not link.ended.is_set():
            link.core.close(code, reason)
            link.wake.set()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await link.ended.wait()
            except TimeoutError:
                pass
        if link is not None:
            await link.stop()
        self._finish(CloseInfo(code, reason, False), SessionClosed(code, reason or "client closed"))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
