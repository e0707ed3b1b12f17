"""A session of the Python gateway client as its user sees it (asyncio): the handshake, sends,
an inbox of decrypted messages, and its close. Made by :meth:`GatewayClient.open
<glueberry_gateway.client.asyncio.GatewayClient.open>`; its protocol state is the core's
:class:`~.record.SessionRecord`, its I/O the client's (:class:`SessionHost`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Final, Protocol, Self

from glueberry.exceptions import GlueberryError, HandshakeTimeout
from glueberry.p2p.keys import PeerID
from glueberry.wire.cipher import StreamCipher

from ..protocol.codes import Code
from .errors import GatewayError, SessionClosed
from .events import (
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    PeerHelloReceived,
    PeerInfoReceived,
    SessionEnded,
    SessionErrorReceived,
    SessionEvent,
)
from .handshake import HandshakeFactory
from .link import Link
from .record import SessionPhase, SessionRecord

__all__ = ["ConnectionState", "Message", "Session", "SessionHost"]

CLOSE_TIMEOUT: Final = 10.0


class ConnectionState(Enum):
    CONNECTED = "connected"
    RESUMING = "resuming"  # a resume is under way; sends wait for it
    DISCONNECTED = "disconnected"  # dropped, resumable: call resume() within resume_grace
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted message received on a named stream."""

    stream: str
    data: bytes


class SessionHost(Protocol):
    """What a :class:`Session` needs from the client that made it (a narrow view of
    :class:`~glueberry_gateway.client.asyncio.GatewayClient`)."""

    @property
    def state(self) -> ConnectionState: ...

    @property
    def _link(self) -> Link | None: ...

    async def _ready_link(self) -> Link:
        """The socket, once connected (waits while a resume is under way)."""
        ...

    def _dispatch(self, link: Link) -> None:
        """Act on the core's events."""

    async def _flush(self, link: Link) -> None:
        """Wait until what the core queued was written."""

    def _check_alive(self) -> None:
        """Raise GatewayClosed unless connected or resuming."""

    def _inbox_taken(self, session: Session) -> None: ...

    def _forget_session(self, number: int) -> None: ...


class Session:
    """A session to one backend (§5), made by :meth:`GatewayClient.open`.

    Attributes:
        number: the session number on the socket.
        backend: the name or peer ID it was opened with.
        backend_peer_id: the backend's peer ID as the gateway reported in ``opened``; the
            handshake checks the backend's key against it.
        peer_name: the backend's name from the handshake (Hello's, or ``handshake_info["name"]``).
        errors: the last (up to 16) ``error`` notices about this session that left it open.
    """

    def __init__(self, client: SessionHost, record: SessionRecord, peer_id: PeerID) -> None:
        self._client = client
        self._record = record
        self.number = record.number
        self.backend = record.backend
        self.backend_peer_id = peer_id
        self.peer_name: str | None = None
        self.errors: deque[GatewayError] = deque(maxlen=16)
        self._inbox: deque[Message] = deque()
        self._changed = asyncio.Event()
        self._end: SessionClosed | None = None
        self._handshake_error: GlueberryError | None = None

    def __repr__(self) -> str:
        return f"<Session {self.number} {self.backend} {'closed' if self._end else 'open'}>"

    # ---- state ------------------------------------------------------------------------------

    @property
    def cipher(self) -> StreamCipher | None:
        """The stream cipher, once the handshake derived the key (wiped when the session ends)."""
        return self._record.cipher

    @property
    def handshake_complete(self) -> bool:
        return self._record.established

    @property
    def handshake_info(self) -> Mapping[str, object]:
        """What the handshake told of the backend (e.g. ``name``, a version), merged."""
        return self._record.info

    @property
    def peer_public_key(self) -> bytes | None:
        """The backend's Ed25519 key from its PubKey, once accepted."""
        return self._record.peer_public_key

    @property
    def decryption_errors(self) -> int:
        """Frames dropped because they did not decrypt (PROTOCOL.md §8.5)."""
        return self._record.decryption_errors

    @property
    def dropped_frames(self) -> int:
        """Frames dropped otherwise (unprepared stream, too many before the key, session closing)."""
        return self._record.dropped_frames

    @property
    def frames_received(self) -> int:
        """Data frames received from the gateway since the session opened (the resume count, §6)."""
        return self._record.received

    @property
    def frames_sent(self) -> int:
        return self._record.sent

    @property
    def outbox_size(self) -> int:
        """Sent frames kept for a resume (not yet known to have reached the gateway)."""
        return len(self._record.outbox)

    @property
    def closed(self) -> bool:
        return self._end is not None

    @property
    def close_error(self) -> SessionClosed | None:
        """Why the session ended (code and message), once it has."""
        return self._end

    # ---- operations -------------------------------------------------------------------------

    async def handshake(
        self,
        streams: Iterable[str] | None = None,
        *,
        name: str = "",
        timeout: float = 10.0,
        handshake: HandshakeFactory | None = None,
    ) -> None:
        """Run the application handshake as initiator: ``handshake`` (docs/gateway.md §10, "Write
        your own handshake"), by default Hello/PubKey/Complete (PROTOCOL.md §10) with our ``name``.

        The key the handshake prepares must be the key of :attr:`backend_peer_id`; then the
        stream key is derived (:attr:`cipher`). ``streams``: the named streams to use (others are
        dropped) unless the handshake prepares others; None accepts every name.

        Raises:
            KeyMismatch, HandshakeError, InvalidKey: the backend's handshake was wrong, or the
                application's handshake failed (the session is closed).
            HandshakeTimeout: not done within ``timeout`` seconds.
            SessionClosed, GatewayClosed: the session or the socket ended first.
        """
        link = await self._client._ready_link()
        self._check_open()
        chosen = list(streams) if streams is not None else None
        link.core.start_handshake(self.number, streams=chosen, name=name, handshake=handshake)
        self._client._dispatch(link)  # held frames may have been processed
        try:
            async with asyncio.timeout(timeout):
                await self._client._flush(link)
                while True:
                    if self._handshake_error is not None:
                        raise self._handshake_error
                    if self._record.established:
                        return
                    self._check_open()
                    self._client._check_alive()
                    await self._wait()
        except TimeoutError:
            raise HandshakeTimeout(
                f"no handshake with {self.backend} within {timeout} s", peer_id=str(self.backend_peer_id)
            ) from None

    async def send(self, stream: str, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it on the named ``stream``.

        Returns once the frame was written to the socket (or, if the socket dropped in a
        resumable way, once it is in the outbox: a resume re-sends it). While a resume is under
        way it waits for it.

        Raises:
            InvalidState: no stream key yet (run :meth:`handshake` first).
            InvalidStreamName, MessageTooLarge: see :meth:`ClientProtocol.send_data`.
            SessionClosed, GatewayClosed: the session or the socket is gone.
        """
        link = await self._client._ready_link()
        self._check_open()
        link.core.send_data(self.number, stream, data)
        await self._client._flush(link)

    async def send_raw(self, stream: str, payload: bytes | bytearray | memoryview) -> None:
        """Send an already-built Glueberry payload as is (handshake messages; tampered frames in
        tests). Same contract as :meth:`send`, without encryption."""
        link = await self._client._ready_link()
        self._check_open()
        link.core.send_raw(self.number, stream, payload)
        await self._client._flush(link)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next decrypted message, in arrival order; frames that fail to decrypt are counted
        (:attr:`decryption_errors`) and dropped.

        Raises:
            SessionClosed: the session ended and every message before the end was received.
            GatewayClosed: the socket is gone (not being resumed) and the inbox is empty.
            TimeoutError: nothing within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._inbox:
                    message = self._inbox.popleft()
                    self._client._inbox_taken(self)
                    return message
                self._check_open()
                self._client._check_alive()
                await self._wait()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """Messages until the session ends (a closed socket raises :class:`GatewayClosed`)."""
        try:
            return await self.receive()
        except SessionClosed:
            raise StopAsyncIteration from None

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close the session (§5.4) and wait for the gateway's ``closed``; idempotent.
        Messages already received stay readable."""
        client = self._client
        if self._end is not None:
            return
        if client.state is not ConnectionState.CONNECTED:
            client._forget_session(self.number)
            self._finish(SessionClosed(Code.NORMAL, "closed while disconnected", session=self.number))
            return
        link = client._link
        assert link is not None
        if self._record.phase is SessionPhase.OPEN:
            link.core.close_session(self.number)
        try:
            async with asyncio.timeout(timeout):
                await client._flush(link)
                while self._end is None and client.state is ConnectionState.CONNECTED:
                    await self._wait()
        except TimeoutError:
            link.core.discard_session(self.number)
            self._finish(SessionClosed(Code.NORMAL, "no answer to close; forgotten", session=self.number))
        if self._end is None:
            self._finish(SessionClosed(Code.NORMAL, "closed", session=self.number))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- driver side --------------------------------------------------------------------------

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()

    def _check_open(self) -> None:
        if self._end is not None:
            raise SessionClosed(self._end.code, self._end.message, session=self.number)

    def _on_event(self, event: SessionEvent) -> int:
        """What the core said about this session; returns how many messages wait in the inbox."""
        if isinstance(event, MessageReceived):
            self._inbox.append(Message(event.stream, event.data))
            self._wake()
        elif isinstance(event, SessionEnded):
            self._finish(SessionClosed(event.code, event.message, session=event.session))
        elif isinstance(event, HandshakeCompleted):
            self._wake()  # handshake() sees it on the record
        elif isinstance(event, HandshakeFailed):
            self._handshake_error = event.error
            self._wake()
        elif isinstance(event, PeerHelloReceived):
            self.peer_name = event.name
        elif isinstance(event, PeerInfoReceived):
            name = event.info.get("name")
            if isinstance(name, str):
                self.peer_name = name
        elif isinstance(event, SessionErrorReceived):
            self.errors.append(event.error)
        # FrameUndecryptable, FrameDropped: counted in the record; StreamEnded: nothing to do
        return len(self._inbox)

    def _finish(self, end: SessionClosed) -> None:
        if self._end is None:
            self._end = end
        self._client._inbox_taken(self)
        self._wake()
