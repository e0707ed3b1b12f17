"""Events of the gateway client's core (:meth:`ClientProtocol.events_received
<glueberry_gateway.client.core.ClientProtocol.events_received>`), each a frozen dataclass named by
what happened, and :class:`CloseInfo`, how a socket ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from glueberry.exceptions import GlueberryError
from glueberry.p2p.keys import PeerID

from ..protocol.control import BackendInfo, GatewayLimits
from .errors import GatewayError

__all__ = [
    "Authenticated",
    "ClientEvent",
    "CloseInfo",
    "ConnectionEnded",
    "DrainRequested",
    "FrameDropped",
    "FrameUndecryptable",
    "GatewayErrorReceived",
    "HandshakeCompleted",
    "HandshakeFailed",
    "MessageReceived",
    "PeerHelloReceived",
    "PeerInfoReceived",
    "Pong",
    "RequestFailed",
    "SessionEnded",
    "SessionErrorReceived",
    "SessionEvent",
    "SessionOpenFailed",
    "SessionOpened",
    "SessionResumed",
    "SignatureRefused",
    "SignatureSent",
    "StreamEnded",
    "TokenExpiring",
    "TokenRefreshed",
]


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a socket ended. ``resumable``: its sessions can be re-attached (§6)."""

    code: int
    reason: str = ""
    resumable: bool = False


@dataclass(frozen=True, slots=True)
class Authenticated:
    """``ready`` arrived: the socket is usable (after a resume, :class:`SessionResumed` /
    :class:`SessionEnded` for each carried session follow)."""

    peer_id: PeerID
    backends: tuple[BackendInfo, ...]
    limits: GatewayLimits
    resume_token: bytes
    resume_grace: float


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: int
    backend: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class SessionOpenFailed:
    session: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """The session was re-attached; ``resent`` frames from the outbox were queued again."""

    session: int
    resent: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over (``closed``, a failed close, no recovery, a failed handshake, …)."""

    session: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class SignatureSent:
    session: int
    request_id: int


@dataclass(frozen=True, slots=True)
class SignatureRefused:
    session: int
    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decrypted message on a named stream."""

    session: int
    stream: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FrameUndecryptable:
    """A frame on a named stream failed authentication and was dropped (PROTOCOL.md §8.5)."""

    session: int
    stream: str


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A frame that could not be used: a stream not prepared, too many frames held, session closing."""

    session: int
    stream: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeerHelloReceived:
    session: int
    name: str


@dataclass(frozen=True, slots=True)
class PeerInfoReceived:
    """An application handshake told something of the backend (``info``: e.g. a name, a version)."""

    session: int
    info: dict[str, object]


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The backend's key checked out and both sides prepared; ``peer_public_key`` is its Ed25519 key."""

    session: int
    peer_public_key: bytes


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake failed (``error``: a HandshakeError such as KeyMismatch, or InvalidKey);
    the session is closed (a :class:`SessionEnded` follows)."""

    session: int
    error: GlueberryError


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """``stream_closed``: the backend ended its side of the stream (§5.3)."""

    session: int
    stream: str


@dataclass(frozen=True, slots=True)
class SessionErrorReceived:
    """An ``error`` about a session that leaves it open (e.g. 4105, the frame was dropped)."""

    session: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: int


@dataclass(frozen=True, slots=True)
class TokenRefreshed:
    request_id: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A ``ping`` or ``refresh`` got an ``error`` or was cut off by the socket closing."""

    request_id: int
    error: GatewayError


@dataclass(frozen=True, slots=True)
class TokenExpiring:
    expires_at: float


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """The gateway is shutting down: sessions will be closed, then the socket (1001)."""

    reconnect_after_ms: int


@dataclass(frozen=True, slots=True)
class GatewayErrorReceived:
    """A socket-level ``error`` (a close with the same code follows), or one naming nothing we know."""

    error: GatewayError


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The socket is gone (always the last event of a core)."""

    info: CloseInfo


#: The events about one session (each has its ``session`` number).
SessionEvent: TypeAlias = (
    MessageReceived
    | SessionEnded
    | HandshakeCompleted
    | HandshakeFailed
    | PeerHelloReceived
    | PeerInfoReceived
    | SessionErrorReceived
    | FrameUndecryptable
    | FrameDropped
    | StreamEnded
)

ClientEvent: TypeAlias = (
    Authenticated
    | SessionOpened
    | SessionOpenFailed
    | SessionResumed
    | SessionEnded
    | SignatureSent
    | SignatureRefused
    | MessageReceived
    | FrameUndecryptable
    | FrameDropped
    | PeerHelloReceived
    | PeerInfoReceived
    | HandshakeCompleted
    | HandshakeFailed
    | StreamEnded
    | SessionErrorReceived
    | Pong
    | TokenRefreshed
    | RequestFailed
    | TokenExpiring
    | DrainRequested
    | GatewayErrorReceived
    | ConnectionEnded
)
