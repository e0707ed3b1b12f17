"""Resume (docs/gateway-protocol.md §6), the client's rules in one place: which closes leave the
sessions waiting at the gateway, and what a new socket carries over to re-attach them. (The
gateway's side is :mod:`glueberry_gateway.server.resume`; what the gateway answers for each
session is applied by :meth:`SessionTable.resumed <.sessions.SessionTable.resumed>`.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .record import SessionRecord

__all__ = ["RESUMABLE_CODES", "ResumeState", "resumable"]

#: Closes of a ready socket after which its sessions wait at the gateway for ``resume_grace``
#: seconds (§6): the socket was lost rather than closed on purpose — no close frame (1005, 1006),
#: a keepalive timeout or server error (1011), a restart (1012–1014). A close the gateway chose
#: (4xxx: a protocol or auth error, rate limit, slow consumer, idle, internal error) or a normal
#: close or drain (1000, 1001) ends the sessions.
RESUMABLE_CODES: Final = frozenset({1005, 1006, 1011, 1012, 1013, 1014})
# Closes of a resume attempt (before ready) after which a later attempt may still succeed.
_RETRY_ATTEMPT_CODES: Final = RESUMABLE_CODES | {4003, 4004, 4008, 4010, 4011, 4012, 4013}


@dataclass(slots=True)
class ResumeState:
    """What a new socket needs to resume (§6): the single-use token and the open sessions."""

    token: bytes
    sessions: dict[int, SessionRecord]
    next_session: int = 1
    resume_grace: float = 30.0


def resumable(code: int, *, was_ready: bool, resuming: bool, failed: bool, chosen: bool) -> bool:
    """Whether a socket that closed with ``code`` leaves its sessions for a resume.

    Args:
        was_ready: the socket had authenticated; otherwise it was an attempt to connect or resume.
        resuming: the socket was a resume attempt (it carried sessions).
        failed: the gateway broke the protocol.
        chosen: we closed on purpose, or the gateway said it drains.
    """
    if was_ready:
        return not (failed or chosen) and code in RESUMABLE_CODES
    # a resume attempt that ended before ready keeps its sessions for the next attempt, unless the
    # gateway refused it; giving up on it ourselves (a timeout) harms nothing
    return resuming and not failed and (chosen or code in _RETRY_ATTEMPT_CODES)
