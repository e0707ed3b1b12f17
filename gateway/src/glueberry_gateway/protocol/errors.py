"""The gateway protocol's errors, and the one table that turns them into codes (§8).

Exception tree (what the protocol code raises; the SDK's own errors are translated into these at
the boundary where they happen, so nothing else needs to know them)::

    ProtocolViolation          a message breaks glueberry.v1; it names its own code
                               (4000-4099 end the socket, 4100+ only the request)
    SessionFault               one session or request failed; the socket goes on
    ├── TooManyStreams         4105  max_streams reached on the session
    ├── BackendUnavailable     4102  the dial or the libp2p upgrade failed
    ├── BackendClosed          4109  the backend's stream or connection is gone
    ├── SignatureInvalid       4103  the browser refused to sign, or its signature is wrong
    └── SignTimeout            4111  no signature in time

:func:`error_of` is the only place where an exception becomes a code.
"""

from __future__ import annotations

from typing import Final

from .codes import Code

__all__ = [
    "BackendClosed",
    "BackendUnavailable",
    "ProtocolViolation",
    "SessionFault",
    "SignTimeout",
    "SignatureInvalid",
    "TooManyStreams",
    "WireError",
    "error_of",
]


class ProtocolViolation(Exception):
    """A message that breaks the protocol; ``code`` is the close or error code to answer with."""

    def __init__(
        self, code: Code, message: str, *, id: int | None = None, session: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # for a session-level code (4100+): what the error message names (§8)
        self.fields = {k: v for k, v in (("id", id), ("session", session)) if v is not None}


class SessionFault(Exception):
    """One session or request failed (a 4100+ code); the socket and its other sessions go on."""


class TooManyStreams(SessionFault):
    pass


class BackendUnavailable(SessionFault):
    pass


class BackendClosed(SessionFault):
    pass


class SignatureInvalid(SessionFault):
    pass


class SignTimeout(SessionFault):
    pass


_SESSION_CODES: Final[dict[type[SessionFault], Code]] = {
    TooManyStreams: Code.TOO_MANY_STREAMS,
    BackendUnavailable: Code.BACKEND_UNAVAILABLE,
    BackendClosed: Code.BACKEND_CLOSED,
    SignatureInvalid: Code.SIGNATURE_INVALID,
    SignTimeout: Code.SIGN_TIMEOUT,
}


class WireError:
    """What an ``error`` message says about an exception: its code, text and the fields that
    name the request or session (§8)."""

    __slots__ = ("code", "fields", "message")

    def __init__(self, code: Code, message: str, fields: dict[str, int]) -> None:
        self.code = code
        self.message = message
        self.fields = fields


def error_of(exc: Exception, *, id: int | None = None, session: int | None = None) -> WireError:
    """The code and text an exception is answered with (the one exception → code table).

    ``id`` and ``session`` name the request or session it concerns, unless the exception names
    its own. Anything not in the table is a gateway bug: 4013, without its text.
    """
    fields = {k: v for k, v in (("id", id), ("session", session)) if v is not None}
    if isinstance(exc, ProtocolViolation):
        return WireError(exc.code, exc.message, exc.fields or fields)
    code = _SESSION_CODES.get(type(exc)) if isinstance(exc, SessionFault) else None
    if code is None:
        return WireError(Code.INTERNAL_ERROR, "internal error", {})
    return WireError(code, str(exc), fields)
