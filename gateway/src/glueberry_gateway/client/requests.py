"""The requests of one gateway socket that wait for an answer (docs/gateway-protocol.md §2: each
carries an id the answer repeats): ``open``, ``close``, ``ping`` and ``refresh``. Bounded."""

from __future__ import annotations

from typing import Final

from glueberry.exceptions import LimitExceeded

from ..protocol.control import MAX_ID

__all__ = ["MAX_PENDING_REQUESTS", "Requests"]

MAX_PENDING_REQUESTS: Final = 256


class Requests:
    """Pending requests by id: their kind and the session they concern (0 for none)."""

    __slots__ = ("_next_id", "_pending", "_tokens")

    def __init__(self) -> None:
        self._pending: dict[int, tuple[str, int]] = {}
        self._tokens: dict[int, str] = {}  # refresh id -> the token it offers
        self._next_id = 1

    def room(self) -> bool:
        """Whether one more request may wait."""
        return len(self._pending) < MAX_PENDING_REQUESTS

    def new(self, kind: str, session: int = 0, *, token: str | None = None) -> int:
        """A fresh id for a request of ``kind`` (a ``refresh`` remembers its ``token``).

        Raises:
            LimitExceeded: :data:`MAX_PENDING_REQUESTS` wait already.
        """
        if not self.room():
            raise LimitExceeded("too many requests waiting for the gateway", limit="pending_requests")
        while self._next_id in self._pending:
            self._next_id = self._next_id % MAX_ID + 1
        request_id = self._next_id
        self._next_id = self._next_id % MAX_ID + 1
        self._pending[request_id] = (kind, session)
        if token is not None:
            self._tokens[request_id] = token
        return request_id

    def is_open_of(self, request_id: int, session: int) -> bool:
        return self._pending.get(request_id) == ("open", session)

    def answered(self, request_id: int, kind: str) -> bool:
        """Whether ``request_id`` is a pending request of ``kind``; it is then no longer pending."""
        if self._pending.get(request_id, ("", 0))[0] != kind:
            return False
        del self._pending[request_id]
        return True

    def pop(self, request_id: int | None) -> tuple[str, int] | None:
        """The pending request ``request_id`` (kind, session), no longer pending; None if none."""
        if request_id is None:
            return None
        self._tokens.pop(request_id, None)
        return self._pending.pop(request_id, None)

    def token(self, request_id: int) -> str | None:
        """The token a ``refresh`` offered (once)."""
        return self._tokens.pop(request_id, None)

    def forget_opens(self, session: int) -> None:
        """The session ended while being opened: its ``open`` will get no answer."""
        for request_id, (kind, number) in list(self._pending.items()):
            if kind == "open" and number == session:
                del self._pending[request_id]

    def end(self) -> list[int]:
        """The socket is gone: nothing is pending any more; returns the ids of the ``ping`` and
        ``refresh`` requests, which fail (sessions have their own ending)."""
        failed = [rid for rid, (kind, _) in self._pending.items() if kind in ("ping", "refresh")]
        self._pending.clear()
        self._tokens.clear()
        return failed
