"""One session of the gateway client, sans I/O: its frame counts and outbox (what a resume needs,
§6), and its end of the Glueberry handshake and encryption with the backend (PROTOCOL.md §8,
§10), which the gateway never sees.

A :class:`SessionRecord` outlives the socket it was opened on when the session is resumed; the
core of the socket it is on at the moment (:class:`~glueberry_gateway.client.core.ClientProtocol`)
feeds it frames and takes what it produces through :class:`RecordHost`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.config import HANDSHAKE_STREAM
from glueberry.exceptions import (
    DecryptionFailed,
    GlueberryError,
    HandshakeError,
    InvalidStreamName,
    KeyMismatch,
    MessageTooLarge,
)
from glueberry.handshake import FinalizeRequested, PeerHello, PeerInfo, PrepareRequested, SendMessage
from glueberry.p2p.keys import PeerID
from glueberry.wire.cipher import StreamCipher, shared_key

from ..protocol.frames import check_stream_name, encode_data_frame
from .events import (
    ClientEvent,
    FrameDropped,
    FrameUndecryptable,
    HandshakeCompleted,
    MessageReceived,
    PeerHelloReceived,
    PeerInfoReceived,
)
from .handshake import SessionHandshake, as_handshake_error

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_OUTBOX_FRAMES",
    "DEFAULT_PENDING_FRAMES",
    "RecordHost",
    "SessionBounds",
    "SessionPhase",
    "SessionRecord",
]

#: Largest plaintext a session sends: Go's default ``MaxMessageSize`` (PROTOCOL.md §8.5).
DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20
#: Outbox bound per session, kept for resume: the newest frames, at most this many ...
DEFAULT_OUTBOX_FRAMES: Final = 1024
#: ... and at most this many bytes (the newest frame is always kept).
DEFAULT_OUTBOX_BYTES: Final = 4 << 20
#: Frames held per session before they can be used (handshake frames before :meth:`start_handshake`,
#: encrypted frames before the peer's key is known); further ones are dropped, as Go drops frames
#: for streams it has not prepared.
DEFAULT_PENDING_FRAMES: Final = 256


class SessionPhase(Enum):
    OPENING = "opening"  # open sent, no opened yet
    OPEN = "open"
    CLOSING = "closing"  # close sent; frames still arriving are dropped


@dataclass(frozen=True, slots=True)
class SessionBounds:
    """What a core allows its sessions: the gateway's frame size, the outbox, frames held."""

    max_frame_bytes: int
    outbox_frames: int
    outbox_bytes: int
    pending_frames: int


class RecordHost(Protocol):
    """Where a session's events and frames go (the core of the socket it is on)."""

    def emit(self, event: ClientEvent) -> None: ...

    def send(self, frame: bytes) -> None: ...


@dataclass(slots=True, eq=False)
class SessionRecord:
    """One session's state; it outlives a socket when the session is resumed (§6).

    ``received``/``sent`` count data frames from/to the gateway since the session opened. The
    outbox holds the last sent frames (encoded, header included): frame number ``i`` (0-based)
    is ``outbox[i - outbox_base]`` for ``outbox_base <= i < sent``.
    """

    number: int
    backend: str
    expected_peer: PeerID | None = None
    phase: SessionPhase = SessionPhase.OPENING
    peer_id: PeerID | None = None
    received: int = 0
    sent: int = 0
    outbox: deque[bytes] = field(default_factory=deque)
    outbox_bytes: int = 0
    handshake: SessionHandshake | None = None
    streams: frozenset[str] | None = None  # None: every name accepted
    cipher: StreamCipher | None = None
    peer_public_key: bytes | None = None
    established: bool = False
    pending_handshake: deque[bytes] = field(default_factory=deque)
    pending_named: deque[tuple[str, bytes]] = field(default_factory=deque)
    info: dict[str, object] = field(default_factory=dict)  # what the handshake told of the backend
    decryption_errors: int = 0
    dropped_frames: int = 0
    signatures: int = 0

    @property
    def outbox_base(self) -> int:
        return self.sent - len(self.outbox)

    # Sending.

    def frame(self, stream: str, payload: bytes, bounds: SessionBounds) -> bytes:
        """The data frame carrying ``payload`` on ``stream``, counted and kept in the outbox.

        Raises:
            MessageTooLarge: over the gateway's ``max_frame_bytes``.
        """
        frame = encode_data_frame(self.number, stream, payload)
        if len(frame) > bounds.max_frame_bytes:
            raise MessageTooLarge(
                f"data frame of {len(frame)} bytes is over the gateway's max_frame_bytes "
                f"({bounds.max_frame_bytes})",
                stream=stream,
            )
        self.sent += 1
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        while len(self.outbox) > bounds.outbox_frames or (
            self.outbox_bytes > bounds.outbox_bytes and len(self.outbox) > 1
        ):
            self.outbox_bytes -= len(self.outbox.popleft())
        return frame

    def confirm(self, received_by_gateway: int) -> None:
        """A resume says the gateway got the first ``received_by_gateway`` frames: let them go."""
        for _ in range(received_by_gateway - self.outbox_base):
            self.outbox_bytes -= len(self.outbox.popleft())

    def start_handshake(
        self,
        handshake: SessionHandshake,
        streams: frozenset[str] | None,
        host: RecordHost,
        identity: Ed25519PrivateKey,
        bounds: SessionBounds,
    ) -> GlueberryError | None:
        """Run ``handshake`` as initiator, then the handshake frames that waited for it; returns
        the error that failed it, if one did (the core then ends the session)."""
        self.streams = streams
        self.handshake = handshake
        try:
            for message in handshake.start():
                host.send(self.frame(HANDSHAKE_STREAM, message, bounds))
        except Exception as exc:  # the application's handshake: a failure ends the session
            return as_handshake_error(exc)
        while self.pending_handshake:
            error = self._on_handshake_frame(self.pending_handshake.popleft(), host, identity, bounds)
            if error is not None:
                return error
        return None

    # Receiving.

    def receive(
        self,
        stream: str,
        payload: bytes | memoryview,
        host: RecordHost,
        identity: Ed25519PrivateKey,
        bounds: SessionBounds,
    ) -> GlueberryError | None:
        """One data frame for this session; returns the error that failed the handshake, if any."""
        self.received += 1
        if self.phase is SessionPhase.CLOSING:
            self._dropped(stream, "the session is closing", host)
        elif stream == HANDSHAKE_STREAM:
            return self._on_handshake_frame(bytes(payload), host, identity, bounds)
        elif self.cipher is None or self.pending_named:
            # before the key, any name is held (bounded): the handshake may say which it prepares
            if self._may_hold(stream, "too many frames held before the stream key", host, bounds):
                self.pending_named.append((stream, bytes(payload)))  # not a view pinning a batch
        elif self.streams is not None and stream not in self.streams:
            self._dropped(stream, "stream not prepared", host)
        else:
            self._decrypt(stream, payload, host)  # decrypted from the view
        return None

    def _dropped(self, stream: str, reason: str, host: RecordHost) -> None:
        self.dropped_frames += 1
        host.emit(FrameDropped(self.number, stream, reason))

    def _may_hold(self, stream: str, reason: str, host: RecordHost, bounds: SessionBounds) -> bool:
        """Whether one more frame may wait for the handshake (the bound is shared by both
        queues); if not, it is counted as dropped for ``reason``."""
        if len(self.pending_handshake) + len(self.pending_named) < bounds.pending_frames:
            return True
        self._dropped(stream, reason, host)
        return False

    def _on_handshake_frame(
        self, payload: bytes, host: RecordHost, identity: Ed25519PrivateKey, bounds: SessionBounds
    ) -> GlueberryError | None:
        handshake = self.handshake
        if handshake is None:  # the handshake was not started yet: keep it for start_handshake()
            if self._may_hold(HANDSHAKE_STREAM, "too many frames held before the handshake", host, bounds):
                self.pending_handshake.append(payload)
            return None
        try:
            for action in handshake.receive(payload).actions:
                if isinstance(action, SendMessage):
                    host.send(self.frame(HANDSHAKE_STREAM, action.data, bounds))
                elif isinstance(action, PrepareRequested):
                    self._prepare(action, identity)
                elif isinstance(action, FinalizeRequested):
                    if self.cipher is None:
                        raise HandshakeError("the handshake finished before it prepared a key")
                    self._established(host)
                elif isinstance(action, PeerHello):
                    self.info["name"] = action.name
                    host.emit(PeerHelloReceived(self.number, action.name))
                elif isinstance(action, PeerInfo):
                    self.info.update(action.info)
                    host.emit(PeerInfoReceived(self.number, dict(action.info)))
        except Exception as exc:  # HandshakeError family, InvalidKey, or the application's own
            return as_handshake_error(exc)
        if self.cipher is not None:
            while self.pending_named:
                stream, held = self.pending_named.popleft()
                if self.streams is None or stream in self.streams:
                    self._decrypt(stream, held, host)
                else:
                    self._dropped(stream, "stream not prepared", host)
        return None

    def _prepare(self, action: PrepareRequested, identity: Ed25519PrivateKey) -> None:
        """The backend's key (Go's ``PrepareStreams``): it must be its peer ID's key."""
        key = action.public_key
        if self.peer_id is None or PeerID.from_public_key(key) != self.peer_id:
            raise KeyMismatch(
                f"the backend's key is not the key of {self.peer_id}", peer_id=str(self.peer_id)
            )
        if self.cipher is not None:
            return  # prepared already, with this same key
        if action.streams is not None:
            for name in action.streams:
                check_stream_name(name)
                if name == HANDSHAKE_STREAM:
                    raise InvalidStreamName("'handshake' cannot be prepared", stream=name)
        self.cipher = StreamCipher(shared_key(identity, key))  # InvalidKey: low-order
        self.peer_public_key = key
        if action.streams is not None:
            self.streams = frozenset(action.streams)

    def _established(self, host: RecordHost) -> None:
        if not self.established:
            self.established = True
            assert self.peer_public_key is not None
            host.emit(HandshakeCompleted(self.number, self.peer_public_key))

    def _decrypt(self, stream: str, payload: bytes | memoryview, host: RecordHost) -> None:
        assert self.cipher is not None
        try:
            plaintext = self.cipher.decrypt(payload)
        except DecryptionFailed:
            self.decryption_errors += 1
            host.emit(FrameUndecryptable(self.number, stream))
            return
        if not self.established and self.handshake is not None:
            self._established(host)  # a frame under our key proves the peer prepared (Go's rule)
        host.emit(MessageReceived(self.number, stream, plaintext))
