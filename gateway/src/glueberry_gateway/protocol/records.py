"""The small records inside control messages (docs/gateway-protocol.md §3, §6) and the checks
that decode them: a resume request (``auth.resume``), the backends, limits and resume outcomes of
``ready``. Bounded like every field: at most :data:`MAX_BACKENDS` backends, :data:`MAX_SESSION`
sessions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from glueberry.p2p.keys import PeerID

from .fields import MAX_ID, b64d, integer, object_, peer_id, session_key, string, violation
from .frames import MAX_SESSION

__all__ = [
    "MAX_BACKENDS",
    "MAX_NAME_CHARS",
    "BackendInfo",
    "GatewayLimits",
    "ResumeOutcome",
    "ResumeRequest",
    "backends",
    "limits",
    "resume_request",
    "resumed",
]

MAX_NAME_CHARS: Final = 128
MAX_BACKENDS: Final = 1024


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """``auth.resume`` (§6): the single-use token and the data frames received per session."""

    token: bytes
    sessions: dict[int, int]


def resume_request(value: Any, what: str) -> ResumeRequest | None:
    if value is None:
        return None
    resume = object_(value, what)
    token = b64d(resume.get("token"), f"{what}.token", size=24)
    raw = resume.get("sessions", {})
    if not isinstance(raw, dict) or len(raw) > MAX_SESSION:
        raise violation(f"'{what}.sessions' must map session numbers to counts")
    sessions: dict[int, int] = {}
    for key, count in raw.items():
        number = session_key(key)
        if number is None or type(count) is not int or count < 0:
            raise violation(f"'{what}.sessions' maps session numbers to counts")
        sessions[number] = count
    return ResumeRequest(token, sessions)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend this browser may open (``ready.backends``)."""

    name: str
    peer_id: PeerID


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """``ready.limits``: what the gateway accepts from a browser (§7); absent ones are these."""

    max_sessions: int = 16
    max_streams: int = 16
    max_frame_bytes: int = (1 << 20) + 64
    max_control_bytes: int = 16384


@dataclass(frozen=True, slots=True)
class ResumeOutcome:
    """``ready.resumed`` for one session (§6): re-attached after ``received`` browser frames, or not."""

    recovered: bool
    received: int | None = None


def backends(value: Any, what: str) -> tuple[BackendInfo, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_BACKENDS:
        raise violation(f"'{what}' must be a list of at most {MAX_BACKENDS}")
    name = string(MAX_NAME_CHARS, min_chars=0)
    return tuple(
        BackendInfo(name(item.get("name"), f"{what}.name"), peer_id(item.get("peer_id"), f"{what}.peer_id"))
        for item in (object_(raw, what) for raw in value)
    )


def limits(value: Any, what: str) -> GatewayLimits:
    raw = object_(value, what) if value is not None else {}
    size = integer(1, MAX_ID, optional=True)
    given = {f.name: size(raw.get(f.name), f"{what}.{f.name}") for f in dataclasses.fields(GatewayLimits)}
    return GatewayLimits(**{k: v for k, v in given.items() if v is not None})


def resumed(value: Any, what: str) -> dict[int, ResumeOutcome] | None:
    """Entries that are not a recovery read as not recovered; one that is needs its count."""
    if value is None:
        return None
    raw = object_(value, what)
    if len(raw) > MAX_SESSION:
        raise violation(f"'{what}' names more than {MAX_SESSION} sessions")
    outcomes: dict[int, ResumeOutcome] = {}
    for key, entry in raw.items():
        number = session_key(key)
        if number is None:
            continue
        if not isinstance(entry, dict) or entry.get("recovered") is not True:
            outcomes[number] = ResumeOutcome(False)
            continue
        received = entry.get("received")
        if type(received) is not int or received < 0:
            raise violation(f"'{what}': a recovered session needs a 'received' count")
        outcomes[number] = ResumeOutcome(True, received)
    return outcomes
