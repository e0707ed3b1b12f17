"""A yamux stream's life: its states, the table of transitions, and its per-stream counters.

Spec: hashicorp/yamux ``spec.md`` ("Opening a stream", "Closing a stream"); go-yamux
``YX:stream.go`` ``processFlags``.

A stream's life is the table :data:`STREAM_TRANSITIONS` (h11 style): ``{state: {trigger: next}}``,
where a trigger is a flag we send or receive. The session looks a transition up before it takes
it; a trigger missing from the table is one the state does not allow, and the session decides what
that means (raise, ignore, or reset the stream). CLOSED and RESET have no way out: the session
forgets a stream that reaches them.
"""

from __future__ import annotations

import enum

__all__ = [
    "CAN_RECV",
    "CAN_SEND",
    "ENDED",
    "STREAM_TRANSITIONS",
    "Stream",
    "StreamState",
    "StreamTrigger",
]


class StreamState(enum.Enum):
    INIT = "init"
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    LOCAL_CLOSED = "local-closed"
    REMOTE_CLOSED = "remote-closed"
    CLOSED = "closed"
    RESET = "reset"


class StreamTrigger(enum.Enum):
    SEND_SYN = "send-syn"
    RECV_SYN = "recv-syn"
    SEND_ACK = "send-ack"
    RECV_ACK = "recv-ack"
    SEND_FIN = "send-fin"
    RECV_FIN = "recv-fin"
    SEND_RST = "send-rst"
    RECV_RST = "recv-rst"


S, T = StreamState, StreamTrigger
_RESETS = {T.SEND_RST: S.RESET, T.RECV_RST: S.RESET}
STREAM_TRANSITIONS: dict[StreamState, dict[StreamTrigger, StreamState]] = {
    S.INIT: {T.SEND_SYN: S.SYN_SENT, T.RECV_SYN: S.SYN_RECEIVED},
    # Data may flow before the ACK (spec: "Opening a stream"); our FIN may precede it too.
    S.SYN_SENT: {
        T.RECV_ACK: S.ESTABLISHED,
        T.SEND_FIN: S.LOCAL_CLOSED,
        T.RECV_FIN: S.REMOTE_CLOSED,
        **_RESETS,
    },
    # Transient: the core ACKs an inbound SYN at once (no accept backlog here).
    S.SYN_RECEIVED: {T.SEND_ACK: S.ESTABLISHED, **_RESETS},
    S.ESTABLISHED: {T.SEND_FIN: S.LOCAL_CLOSED, T.RECV_FIN: S.REMOTE_CLOSED, **_RESETS},
    S.LOCAL_CLOSED: {T.RECV_ACK: S.LOCAL_CLOSED, T.RECV_FIN: S.CLOSED, **_RESETS},
    S.REMOTE_CLOSED: {T.RECV_ACK: S.REMOTE_CLOSED, T.SEND_FIN: S.CLOSED, **_RESETS},
    S.CLOSED: {},
    S.RESET: {},
}
CAN_SEND = frozenset({S.SYN_SENT, S.ESTABLISHED, S.REMOTE_CLOSED})
CAN_RECV = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.LOCAL_CLOSED})
ENDED = frozenset({S.CLOSED, S.RESET})
del S, T


class Stream:
    """Per-stream counters; ``can_send`` / ``can_recv`` cache the state for the hot paths."""

    __slots__ = ("acked", "can_recv", "can_send", "owed", "recv_window", "send_window", "state", "unconsumed")

    def __init__(self, state: StreamState, send_window: int, recv_window: int, acked: bool) -> None:
        self.state = state
        self.can_send = state in CAN_SEND
        self.can_recv = state in CAN_RECV
        self.send_window = send_window
        self.recv_window = recv_window  # bytes the remote may still send
        self.unconsumed = 0  # delivered in DataReceived, not yet consume()d
        self.owed = 0  # consumed, not yet returned in a WindowUpdate
        self.acked = acked
