"""Who may come in, and how fast (docs/gateway-protocol.md §7): the gateway's admission limits.

Two levels:

* :class:`Admission` decides about each new socket before it is accepted: the node's socket
  limit, sockets per IP and new sockets per IP per minute. It is an interface because the state
  it keeps is the gateway's, not the socket's: :class:`LocalAdmission` keeps it in this process
  (the default, which needs nothing else); a cluster of gateway processes keeps it where all of
  them see it, behind the same two calls.
* :class:`SocketRates` meters one authenticated socket: messages and bytes per second from the
  browser, each frame of a batch counting as a message.

Both are pure bookkeeping over a clock passed in or read once per call; nothing here does I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Protocol

from glueberry.limits import SlidingWindow, TokenBucket

from ..protocol.codes import Code
from .settings import Limits

__all__ = ["Admission", "LocalAdmission", "Refusal", "SocketRates"]

#: Per-IP rate counters kept at most; beyond it, the idle ones are forgotten.
MAX_TRACKED_IPS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a socket is not let in: the code it is closed with, and a message for the browser."""

    code: Code
    message: str


class Admission(Protocol):
    """The gateway's socket admission (a narrow, async interface: a shared store may answer it)."""

    async def admit(self, ip: str) -> Refusal | None:
        """Count a new socket from ``ip`` in, or say why it may not come in (nothing is counted)."""
        ...

    async def release(self, ip: str) -> None:
        """A socket that :meth:`admit` let in has closed."""
        ...

    @property
    def sockets(self) -> int:
        """Sockets let in and not yet released (as this process knows them)."""
        ...


class LocalAdmission:
    """:class:`Admission` with its counts in this process: ``max_sockets``,
    ``max_sockets_per_ip`` and ``connection_rate_per_ip`` (per minute)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._sockets = 0
        self._per_ip: dict[str, int] = {}
        self._rates: dict[str, SlidingWindow] = {}

    @property
    def sockets(self) -> int:
        return self._sockets

    async def admit(self, ip: str) -> Refusal | None:
        limits = self._limits
        if self._sockets >= limits.max_sockets:
            return Refusal(Code.TOO_MANY_CONNECTIONS, "the gateway is full")
        if self._per_ip.get(ip, 0) >= limits.max_sockets_per_ip:
            return Refusal(Code.TOO_MANY_CONNECTIONS, "too many sockets from your address")
        now = time.monotonic()
        window = self._rates.get(ip)
        if window is None:
            if len(self._rates) >= MAX_TRACKED_IPS:
                self._rates = {k: w for k, w in self._rates.items() if not w.idle(now)}
            window = self._rates[ip] = SlidingWindow(limits.connection_rate_per_ip, 60.0)
        if not window.allow(now):
            return Refusal(Code.RATE_LIMITED, "too many connections from your address")
        self._sockets += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return None

    async def release(self, ip: str) -> None:
        self._sockets -= 1
        left = self._per_ip.get(ip, 1) - 1
        if left:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)


class SocketRates:
    """``messages_per_second`` and ``bytes_per_second`` of one socket, browser -> gateway."""

    __slots__ = ("_bytes", "_messages")

    def __init__(self, limits: Limits, now: float) -> None:
        self._messages = TokenBucket(limits.messages_per_second, limits.messages_per_second, now)
        self._bytes = TokenBucket(limits.bytes_per_second, limits.bytes_per_second, now)

    def allow(self, now: float, messages: int, size: int) -> bool:
        """Take ``messages`` and ``size`` bytes if both fit; False (over the limit) otherwise."""
        return not (self._messages.take(now, messages) or self._bytes.take(now, size))
