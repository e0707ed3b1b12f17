"""The states of a gateway client socket and the bounds on what it receives (docs/gateway-protocol.md
§2, §3): the vocabulary :class:`~.core.ClientProtocol` is written in."""

from __future__ import annotations

from enum import Enum
from typing import Final, TypeAlias

from glueberry.wire.cipher import OVERHEAD

from ..protocol import control
from ..protocol.codes import CloseSocket

__all__ = [
    "DEFAULT_MAX_CONTROL_BYTES",
    "DEFAULT_MAX_RECEIVE_BYTES",
    "EXPECTED",
    "TRANSITIONS",
    "ClientState",
    "Outgoing",
]

#: Largest binary frame accepted from the gateway: a default Go sender's largest encrypted frame
#: (1 MiB + 28) plus the data-frame header with a 64-byte stream name (§5.2).
DEFAULT_MAX_RECEIVE_BYTES: Final = (1 << 20) + OVERHEAD + 4 + 64
#: Largest control message accepted from the gateway (a ``ready`` may list many backends).
DEFAULT_MAX_CONTROL_BYTES: Final = 1 << 20
Outgoing: TypeAlias = str | bytes | CloseSocket


class ClientState(Enum):
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_READY = "await_ready"
    READY = "ready"
    CLOSED = "closed"


TRANSITIONS: Final[dict[ClientState, frozenset[ClientState]]] = {
    ClientState.AWAIT_CHALLENGE: frozenset({ClientState.AWAIT_READY, ClientState.CLOSED}),
    ClientState.AWAIT_READY: frozenset({ClientState.READY, ClientState.CLOSED}),
    ClientState.READY: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset({ClientState.CLOSED}),
}
# The one message each state before READY waits for; error and drain come at any time.
EXPECTED: Final[dict[ClientState, type[control.Challenge] | type[control.Ready]]] = {
    ClientState.AWAIT_CHALLENGE: control.Challenge,
    ClientState.AWAIT_READY: control.Ready,
}
