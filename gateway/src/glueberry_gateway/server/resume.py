"""Resume (docs/gateway-protocol.md §6), the gateway's side, in one place.

* :class:`ResumeBuffer` — per session, the last data frames sent to the browser, numbered, so that
  a browser that lost its socket can get again those it missed.
* :class:`ResumeStore` — the sessions of sockets that dropped, kept for ``resume_grace`` under the
  socket's single-use resume token. An interface: :class:`MemoryResumeStore` keeps them in this
  process (the default); a store shared by several gateway processes plugs in behind the same
  calls.
* :func:`reattach` — which of the kept sessions a resuming browser gets back, and what the
  ``ready.resumed`` answer says about each.

How a session is resumed: when the socket drops (not a close), its sessions are detached — they
keep relaying, the backend's frames going to the buffer only — and handed to the store. A new
socket of the same browser identity presents the token and, per session, how many data frames
it received; a session is re-attached when every frame the browser missed is still in the
buffer, and the socket then sends them again, in order, before new ones.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from glueberry.p2p.keys import PeerID

from ..protocol.codes import Code
from ..protocol.control import ResumeOutcome
from ..protocol.errors import ProtocolViolation

__all__ = ["MemoryResumeStore", "Resumable", "ResumeBuffer", "ResumeStore", "reattach"]


class ResumeBuffer:
    """The last frames sent to the browser, with their sequence numbers, at most ``limit`` bytes.

    ``sent`` counts every frame ever produced for the browser (the numbers are 0-based); while
    detached, a frame the browser never saw may fall out, and then the session cannot resume.
    """

    __slots__ = ("_bytes", "_detached_at", "_frames", "_limit", "recoverable", "sent")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._frames: deque[tuple[int, bytes]] | None = (
            None  # made on the first frame: idle sessions are many
        )
        self._bytes = 0
        self._detached_at = 0
        self.sent = 0
        self.recoverable = True

    def append(self, frames: list[bytes], *, attached: bool) -> None:
        """Number and keep ``frames``, dropping the oldest beyond the byte limit."""
        ring = self._frames
        if ring is None:
            ring = self._frames = deque()
        for frame in frames:
            ring.append((self.sent, frame))
            self.sent += 1
            self._bytes += len(frame)
        while self._bytes > self._limit:
            _, old = ring.popleft()
            self._bytes -= len(old)
        if not attached and ring and ring[0][0] > self._detached_at:
            self.recoverable = False  # frames the browser never saw fell out of the buffer

    def detach(self) -> None:
        """The socket is gone: frames from now on are ones the browser has not seen."""
        self._detached_at = self.sent

    def covers(self, browser_received: int) -> bool:
        """Whether a browser that received ``browser_received`` frames can get every one it missed."""
        first = self._frames[0][0] if self._frames else self.sent
        return self.recoverable and first <= browser_received <= self.sent

    def since(self, browser_received: int) -> list[bytes]:
        """The buffered frames from number ``browser_received`` on, in order."""
        return [frame for seq, frame in self._frames or () if seq >= browser_received]

    def clear(self) -> None:
        self._frames = None
        self._bytes = 0


class Resumable(Protocol):
    """What a kept session must offer to be resumed (a :class:`~.session.BackendSession`)."""

    @property
    def closed(self) -> bool: ...

    @property
    def frames_in(self) -> int: ...

    @property
    def buffer(self) -> ResumeBuffer: ...


R = TypeVar("R", bound=Resumable)


class ResumeStore(Protocol[R]):
    """Where the sessions of dropped sockets wait for a resume (a narrow, async interface)."""

    async def keep(self, peer_id: PeerID, token: bytes, sessions: Mapping[int, R]) -> None:
        """The socket of ``peer_id`` whose resume token is ``token`` dropped: keep its (detached)
        sessions for the grace period, then end them. Replaces what was kept for ``peer_id``."""
        ...

    async def claim(self, peer_id: PeerID, token: bytes) -> dict[int, R]:
        """Take back what is kept for ``peer_id`` (nothing: ``{}``); it is no longer kept.

        Raises:
            ProtocolViolation: 4014, ``token`` is not the kept one (what is kept stays kept).
        """
        ...

    async def forget(self, peer_id: PeerID) -> None:
        """A socket of ``peer_id`` came without a resume: end what was kept for it now."""
        ...

    async def close(self) -> None:
        """End everything kept (the gateway stops)."""
        ...

    @property
    def waiting(self) -> int:
        """Sessions kept in this process."""
        ...


@dataclass(slots=True)
class _Kept:
    token: bytes
    sessions: dict[int, Resumable]
    timer: asyncio.TimerHandle


class MemoryResumeStore(ResumeStore[R]):
    """:class:`ResumeStore` in this process: a dict and a timer per dropped socket.

    Args:
        grace: ``resume_grace``, seconds.
        expire: ends one session whose grace is over or that no resume asked for (with 4110).
    """

    def __init__(self, grace: float, expire: Callable[[R], None]) -> None:
        self._grace = grace
        self._expire = expire
        self._kept: dict[PeerID, _Kept] = {}
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def keep(self, peer_id: PeerID, token: bytes, sessions: Mapping[int, R]) -> None:
        self._end(peer_id)
        timer = asyncio.get_running_loop().call_later(self._grace, self._end, peer_id)
        self._kept[peer_id] = _Kept(token, dict(sessions), timer)
        self._waiting += len(sessions)

    async def claim(self, peer_id: PeerID, token: bytes) -> dict[int, R]:
        kept = self._kept.get(peer_id)
        if kept is None:
            return {}
        if not hmac.compare_digest(kept.token, token):
            raise ProtocolViolation(Code.RESUME_FAILED, "wrong resume token")
        return self._take(peer_id)

    async def forget(self, peer_id: PeerID) -> None:
        self._end(peer_id)

    async def close(self) -> None:
        for peer_id in list(self._kept):
            self._end(peer_id)

    def _take(self, peer_id: PeerID) -> dict[int, R]:
        kept = self._kept.pop(peer_id, None)
        if kept is None:
            return {}
        kept.timer.cancel()
        self._waiting -= len(kept.sessions)
        return kept.sessions  # type: ignore[return-value]  # only R were kept

    def _end(self, peer_id: PeerID) -> None:
        for session in self._take(peer_id).values():
            self._expire(session)


def reattach(
    kept: dict[int, R], requested: Mapping[int, int]
) -> tuple[dict[int, R], dict[int, ResumeOutcome], list[R]]:
    """Match what a resuming browser asks for (session -> frames it received) against what was
    kept: the sessions it gets back, the ``ready.resumed`` answer for each one asked for, and the
    kept sessions to end (not asked for, closed meanwhile, or missing frames that fell out)."""
    attached: dict[int, R] = {}
    outcomes: dict[int, ResumeOutcome] = {}
    left = dict(kept)
    for number, received in requested.items():
        session = left.pop(number, None)
        if session is not None and not session.closed and session.buffer.covers(received):
            attached[number] = session
            outcomes[number] = ResumeOutcome(True, session.frames_in)
        else:
            if session is not None:
                left[number] = session  # ended with the rest
            outcomes[number] = ResumeOutcome(False)
    return attached, outcomes, list(left.values())
