"""Errors of the gateway client: what the gateway refused or ended (§8), and protocol breaches.

GatewayError               the gateway refused a request or ended something; ``code`` (§8)
├── GatewayClosed          the WebSocket closed, dropped or could not be opened
└── SessionClosed          a session is over
GatewayProtocolError       the gateway broke glueberry.v1 (a RemoteProtocolError of the SDK)
"""

from __future__ import annotations

from glueberry.exceptions import RemoteProtocolError

from ..protocol.codes import Code

__all__ = ["GatewayClosed", "GatewayError", "GatewayProtocolError", "SessionClosed"]


def _as_code(code: int) -> Code | int:
    try:
        return Code(code)
    except ValueError:
        return code


class GatewayError(Exception):
    """The gateway refused a request or ended something (§8). ``code`` is a :class:`Code` when
    the number is one of §8's, else the plain int (e.g. WebSocket close code 1006)."""

    def __init__(
        self, code: int, message: str = "", *, request_id: int | None = None, session: int | None = None
    ) -> None:
        super().__init__(message)
        self.code: Code | int = _as_code(code)
        self.message = message
        self.request_id = request_id
        self.session = session

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, Code) else "close"
        where = f" (session {self.session})" if self.session is not None else ""
        return f"{name} {int(self.code)}: {self.message}{where}"


class GatewayClosed(GatewayError):
    """The WebSocket closed, dropped or could not be opened. ``resumable``: the sessions wait
    at the gateway and :meth:`GatewayClient.resume <glueberry_gateway.client.GatewayClient.resume>`
    may re-attach them."""

    def __init__(self, code: int, message: str = "", *, resumable: bool = False) -> None:
        super().__init__(code, message)
        self.resumable = resumable


class SessionClosed(GatewayError):
    """The session is over: closed by us, by the gateway or backend, or not recovered on resume."""


class GatewayProtocolError(RemoteProtocolError):
    """The gateway broke ``glueberry.v1``; the core queued a close with ``close_code``."""

    def __init__(self, message: str, close_code: Code = Code.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code
