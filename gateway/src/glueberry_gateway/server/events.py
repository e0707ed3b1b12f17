"""Events of the gateway's socket core (:meth:`ServerProtocol.events_received
<glueberry_gateway.server.core.ServerProtocol.events_received>`): what its driver must do, each a
frozen dataclass named by what happened. ``S`` is what the driver keeps per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from glueberry.p2p.keys import PeerID

from ..protocol.codes import Code
from ..protocol.control import ResumeRequest
from .settings import Backend

__all__ = [
    "AuthAccepted",
    "AuthRefused",
    "CloseRequested",
    "DataReceived",
    "OpenRequested",
    "ServerEvent",
    "SignatureAnswered",
    "TokenChanged",
]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class AuthAccepted:
    """The browser proved its key. Decide about ``resume`` (None: drop what waited for this peer),
    then call :meth:`ServerProtocol.accept`."""

    peer_id: PeerID
    resume: ResumeRequest | None


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """The auth message was refused; the socket closes with ``code``."""

    code: Code


@dataclass(frozen=True, slots=True)
class OpenRequested:
    """Dial ``backend`` for session ``session``; then :meth:`~ServerProtocol.session_opened` or
    :meth:`~ServerProtocol.open_failed` with the same ``id``."""

    id: int
    session: int
    backend: Backend


@dataclass(frozen=True, slots=True)
class SignatureAnswered:
    """The answer to sign request ``id``: the signature, or None if the browser refused."""

    id: int
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class CloseRequested(Generic[S]):
    """The browser closed this session (``closed`` is queued): end it at the backend."""

    session: S


@dataclass(slots=True)  # not frozen: one per relayed frame, and a frozen one costs 3x to make
class DataReceived(Generic[S]):
    """A data frame for the backend of ``session``; report a failure with :meth:`~ServerProtocol.data_failed`."""

    session: S
    number: int
    stream: str
    payload: memoryview | bytes


@dataclass(frozen=True, slots=True)
class TokenChanged:
    """A token was accepted (auth or refresh): time the notice and the expiry of ``expires_at``."""

    expires_at: float


ServerEvent = (
    AuthAccepted
    | AuthRefused
    | OpenRequested
    | SignatureAnswered
    | CloseRequested[S]
    | DataReceived[S]
    | TokenChanged
)
