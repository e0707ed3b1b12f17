"""Close and error codes of the gateway protocol (docs/gateway-protocol.md §8).

One list for both: 4000-4099 end the socket, 4100-4199 refuse or end one session or request.
``js-client/src/codes.ts`` holds the same list; ``tests/gateway/test_js_client.py::test_codes_match``
checks they match. Which exception becomes which code is :mod:`.errors`' one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["CloseSocket", "Code", "is_socket_level"]


class Code(IntEnum):
    NORMAL = 1000  # normal close
    GOING_AWAY = 1001  # the gateway is draining: reconnect after the drain message's delay
    PROTOCOL_ERROR = 4000  # malformed frame or JSON, unknown type, message out of order
    UNSUPPORTED_VERSION = 4001  # subprotocol or version not supported
    AUTH_FAILED = 4002  # the auth signature does not verify
    AUTH_TIMEOUT = 4003  # no valid auth in time
    CHALLENGE_EXPIRED = 4004  # the challenge expired or was already used
    TOKEN_INVALID = 4005  # token missing (when required), malformed, forged, or sub mismatch
    TOKEN_EXPIRED = 4006  # the token expired
    ORIGIN_NOT_ALLOWED = 4007  # the Origin is not allowed or differs from the one signed
    RATE_LIMITED = 4008  # too many messages, bytes or connections
    MESSAGE_TOO_BIG = 4009  # a frame over max_frame_bytes / max_control_bytes
    SLOW_CONSUMER = 4010  # the browser did not read its data in time
    IDLE_TIMEOUT = 4011  # nothing happened for idle_timeout
    TOO_MANY_CONNECTIONS = 4012  # socket limits (node or per IP)
    INTERNAL_ERROR = 4013  # a gateway bug; see its logs
    RESUME_FAILED = 4014  # the resume token is wrong or was used
    BACKEND_UNKNOWN = 4100  # no configured backend by that name or peer ID (or an address was given)
    BACKEND_NOT_ALLOWED = 4101  # the token does not allow this backend
    BACKEND_UNAVAILABLE = 4102  # the dial or the libp2p upgrade failed
    SIGNATURE_INVALID = 4103  # the Noise signature does not verify, or the client refused to sign
    TOO_MANY_SESSIONS = 4104  # max_sessions reached
    TOO_MANY_STREAMS = 4105  # max_streams reached on this session
    SESSION_NOT_FOUND = 4106  # no such session on this socket
    SESSION_EXISTS = 4107  # the session number is in use
    INVALID_STREAM = 4108  # bad stream name in a data frame
    BACKEND_CLOSED = 4109  # the backend closed the connection
    SESSION_EXPIRED = 4110  # the resume grace period ended
    SIGN_TIMEOUT = 4111  # the browser did not answer a sign request in time


def is_socket_level(code: int) -> bool:
    """Codes 4000-4099 (and 1000/1001) end the socket; 4100+ concern one session or request."""
    return code < 4100


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """An output item of either side's core: close the WebSocket with this code and reason, once
    everything queued before it is written."""

    code: int
    reason: str = ""
