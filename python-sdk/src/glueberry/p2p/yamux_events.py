"""What a yamux session reports: the events :meth:`YamuxProtocol.events_received` returns.

Each is a frozen, slotted dataclass named by what happened, compared with ``==`` in tests. All of
them come from the remote's frames (or the end of the connection); the application's own actions
produce bytes to send, never events.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConnectionEnded",
    "DataReceived",
    "GoAwayReceived",
    "PongReceived",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
    "YamuxEvent",
]


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The remote opened a stream (we have already queued the ACK)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The remote ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for a stream. Call :meth:`YamuxProtocol.consume` once the application took them."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The remote half-closed the stream (FIN): no more data will come."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was reset: by the remote (``remote=True``, ``code`` from its RST; 0 for an RST on
    a Data frame), or by the core because the remote broke the stream's rules (``remote=False``,
    our RST already queued). Not to be confused with the exception ``exceptions.StreamReset``,
    which the yamux modules import as ``StreamResetError``."""

    stream_id: int
    code: int
    remote: bool = True


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """Our send window on the stream grew: a writer waiting for window may continue."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The answer to :meth:`YamuxProtocol.ping` with this opaque value arrived."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The remote will accept no new streams (0 normal, 1 protocol error, 2 internal error, or a
    go-libp2p ConnErrorCode). Streams already open continue."""

    code: int


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The layer below ended (EOF). Every stream is gone."""


YamuxEvent = (
    StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | PongReceived
    | GoAwayReceived
    | ConnectionEnded
)
