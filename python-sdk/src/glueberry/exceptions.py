"""Every error the Glueberry SDK raises, in one tree.

.. code-block:: text

    GlueberryError                      root; carries an ErrorCode, retriable flag and a hint
    ├── ProtocolError                   a wire protocol was broken (abstract)
    │   ├── LocalProtocolError          we were asked to do what the protocol forbids
    │   └── RemoteProtocolError         the remote sent something invalid
    │       ├── FrameTooLarge           a length field over the bound of its layer
    │       │   └── FlowControlError    yamux data beyond the window granted
    │       ├── MalformedFrame          Glueberry framing that cannot be parsed
    │       │   └── TruncatedFrame      the stream ended inside a frame
    │       └── MuxerProtocolError      a yamux session error (carries the GoAway code)
    ├── HandshakeError                  securing or upgrading a connection failed
    │   ├── NegotiationFailed           multistream-select found no common protocol
    │   ├── InvalidHandshakePayload     the libp2p Noise payload is unusable (no/unsupported key)
    │   ├── NoiseDecryptError           a Noise message failed authentication
    │   ├── InvalidSignature            the identity signature does not verify
    │   ├── PeerIDMismatch              the remote is not the peer that was dialled
    │   ├── KeyMismatch                 a Glueberry handshake key is not the peer ID's key
    │   └── HandshakeTimeout            the handshake did not finish in time (retriable)
    ├── ConnectionClosed                the connection is gone
    │   └── ConnectionFailed            a dial did not succeed (retriable)
    ├── StreamClosed                    the stream was closed
    │   └── StreamReset                 the stream was reset by either side
    ├── InvalidState                    the call is not allowed in the current state
    ├── LimitExceeded                   a configured bound refused the operation
    ├── DecryptionFailed                an encrypted frame did not authenticate
    ├── InvalidArgument (ValueError)    bad input given to an API
    │   ├── InvalidPeerID
    │   ├── InvalidMultiaddr
    │   ├── InvalidKey
    │   ├── InvalidStreamName
    │   ├── MessageTooLarge
    │   ├── MetadataTooLarge            peer metadata over the limit (Go: ErrMetadataTooLarge)
    │   └── InvalidConfig
    │       ├── AddressBookCorrupt      the file is not an address book; it is left untouched
    │       └── AddressBookUnreadable   the file cannot be read
    ├── AddressBookWriteFailed          saving failed; the change was not applied (retriable)
    ├── PeerNotFound                    not in the address book
    ├── PeerBlacklisted                 blacklisted (permanent)
    ├── NodeNotStarted
    └── NodeAlreadyStarted

Codes are Go glueberry's ``ErrorCode`` values (``errors.go``) so logs and metrics line up across
the two implementations; codes 100 and up are ours and have no Go counterpart.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

__all__ = [
    "AddressBookCorrupt",
    "AddressBookUnreadable",
    "AddressBookWriteFailed",
    "ConnectionClosed",
    "ConnectionFailed",
    "DecryptionFailed",
    "ErrorCode",
    "FlowControlError",
    "FrameTooLarge",
    "GlueberryError",
    "HandshakeError",
    "HandshakeTimeout",
    "InvalidArgument",
    "InvalidConfig",
    "InvalidHandshakePayload",
    "InvalidKey",
    "InvalidMultiaddr",
    "InvalidPeerID",
    "InvalidSignature",
    "InvalidState",
    "InvalidStreamName",
    "KeyMismatch",
    "LimitExceeded",
    "LocalProtocolError",
    "MalformedFrame",
    "MessageTooLarge",
    "MetadataTooLarge",
    "MuxerProtocolError",
    "NegotiationFailed",
    "NodeAlreadyStarted",
    "NodeNotStarted",
    "NoiseDecryptError",
    "PeerBlacklisted",
    "PeerIDMismatch",
    "PeerNotFound",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamClosed",
    "StreamReset",
    "TruncatedFrame",
    "is_permanent",
    "is_retriable",
]


class ErrorCode(IntEnum):
    """Go glueberry's error codes (0–16), then ours (100+)."""

    UNKNOWN = 0
    CONNECTION_FAILED = 1
    HANDSHAKE_FAILED = 2
    HANDSHAKE_TIMEOUT = 3
    STREAM_CLOSED = 4
    ENCRYPTION_FAILED = 5
    DECRYPTION_FAILED = 6
    PEER_NOT_FOUND = 7
    PEER_BLACKLISTED = 8
    BUFFER_FULL = 9
    CONTEXT_CANCELED = 10
    INVALID_CONFIG = 11
    NODE_NOT_STARTED = 12
    NODE_ALREADY_STARTED = 13
    VERSION_MISMATCH = 14
    MESSAGE_TOO_LARGE = 15
    BACKPRESSURE = 16
    # Ours: no Go counterpart.
    PROTOCOL_VIOLATION = 100
    LIMIT_EXCEEDED = 101
    INVALID_ARGUMENT = 102
    KEY_MISMATCH = 103
    INVALID_STATE = 104


class GlueberryError(Exception):
    """Root of every SDK error.

    Attributes:
        code: the :class:`ErrorCode` of this kind of error.
        retriable: whether trying the same operation again later can succeed.
        hint: one sentence on what to do about it.
        peer_id: the peer concerned, as a string, when there is one.
        stream: the stream name concerned, when there is one.
    """

    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN
    retriable: ClassVar[bool] = False
    hint: ClassVar[str] = ""

    def __init__(self, message: str, *, peer_id: str | None = None, stream: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.peer_id = peer_id
        self.stream = stream

    def __str__(self) -> str:
        where = []
        if self.peer_id:
            where.append(f"peer {self.peer_id}")
        if self.stream:
            where.append(f"stream {self.stream!r}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.message}{suffix}"


class ProtocolError(GlueberryError):
    """A wire protocol was broken. Raise one of the two subclasses."""

    code = ErrorCode.PROTOCOL_VIOLATION

    def __init__(self, message: str, *, peer_id: str | None = None, stream: str | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message, peer_id=peer_id, stream=stream)


class LocalProtocolError(ProtocolError):
    """The local application asked for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The remote sent bytes that break the protocol; the connection or stream is ended."""


class FrameTooLarge(RemoteProtocolError):
    """A length field announced more bytes than this layer accepts."""


class FlowControlError(FrameTooLarge):
    """The remote sent more data on a yamux stream than the window we granted."""


class MalformedFrame(RemoteProtocolError):
    """Glueberry framing (PROTOCOL.md §6) that cannot be parsed: bad varint, zero or impossible length."""


class TruncatedFrame(MalformedFrame):
    """The stream ended after part of a frame."""


class MuxerProtocolError(RemoteProtocolError):
    """The yamux session broke a rule; ``go_away_code`` is what we told the remote."""

    def __init__(self, message: str, *, go_away_code: int = 1, peer_id: str | None = None) -> None:
        super().__init__(message, peer_id=peer_id)
        self.go_away_code = go_away_code


class HandshakeError(GlueberryError):
    code = ErrorCode.HANDSHAKE_FAILED
    hint = "Check that both sides run compatible versions and that the right peer ID was dialled."


class NegotiationFailed(HandshakeError):
    """multistream-select: the remote supports none of the protocols proposed."""


class InvalidHandshakePayload(HandshakeError):
    """The Noise handshake payload is empty, garbled, or carries no supported identity key."""


class NoiseDecryptError(HandshakeError):
    """A Noise handshake or transport message failed to authenticate."""


class InvalidSignature(HandshakeError):
    """The remote's identity signature over its Noise static key does not verify."""


class PeerIDMismatch(HandshakeError):
    """The remote proved a different identity from the peer ID that was dialled."""


class KeyMismatch(HandshakeError):
    """A public key received in a Glueberry handshake does not belong to the connection's peer ID."""

    code = ErrorCode.KEY_MISMATCH
    hint = "The remote sent a key that is not its own: a misconfigured peer or a man in the middle."


class HandshakeTimeout(HandshakeError):
    code = ErrorCode.HANDSHAKE_TIMEOUT
    retriable = True
    hint = "The peer may be slow or unresponsive; raise handshake_timeout or check connectivity."


class ConnectionClosed(GlueberryError):
    """The connection was closed, by either side or by the network."""

    code = ErrorCode.CONNECTION_FAILED
    retriable = True


class ConnectionFailed(ConnectionClosed):
    """A dial did not produce a secured, multiplexed connection."""

    hint = "Check that the peer is online and reachable at the multiaddrs given."


class StreamClosed(GlueberryError):
    code = ErrorCode.STREAM_CLOSED
    retriable = True
    hint = "The stream was closed by the remote or by a network failure; open a new one."


class StreamReset(StreamClosed):
    """The stream was reset by either side: data in flight is lost."""


class InvalidState(GlueberryError):
    code = ErrorCode.INVALID_STATE


class LimitExceeded(GlueberryError):
    """A configured limit refused the operation. ``limit`` names which one."""

    code = ErrorCode.LIMIT_EXCEEDED
    retriable = True

    def __init__(
        self, message: str, *, limit: str, peer_id: str | None = None, stream: str | None = None
    ) -> None:
        super().__init__(message, peer_id=peer_id, stream=stream)
        self.limit = limit


class DecryptionFailed(GlueberryError):
    code = ErrorCode.DECRYPTION_FAILED
    hint = (
        "The frame was corrupted or encrypted for someone else; both peers must have finished the handshake."
    )


class InvalidArgument(GlueberryError, ValueError):
    code = ErrorCode.INVALID_ARGUMENT


class InvalidPeerID(InvalidArgument):
    pass


class InvalidMultiaddr(InvalidArgument):
    pass


class InvalidKey(InvalidArgument):
    pass


class InvalidStreamName(InvalidArgument):
    hint = "Use 1-64 bytes of letters, digits, '-' and '_'; 'handshake' is reserved."


class MessageTooLarge(InvalidArgument):
    code = ErrorCode.MESSAGE_TOO_LARGE
    hint = "Split the message or raise max_message_size on both peers."


class InvalidConfig(InvalidArgument):
    code = ErrorCode.INVALID_CONFIG


class PeerNotFound(GlueberryError):
    code = ErrorCode.PEER_NOT_FOUND
    hint = "Add the peer with add_peer() before connecting or sending."


class PeerBlacklisted(GlueberryError):
    code = ErrorCode.PEER_BLACKLISTED
    hint = "Call unblacklist_peer() to allow this peer again."


class NodeNotStarted(GlueberryError):
    code = ErrorCode.NODE_NOT_STARTED
    hint = "Call await node.start() or use 'async with node:' first."


class NodeAlreadyStarted(GlueberryError):
    code = ErrorCode.NODE_ALREADY_STARTED


class AddressBookCorrupt(InvalidConfig):
    """The address book file exists but is not a version-1 Glueberry address book."""

    hint = "Move it aside or fix it; it was not modified."

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"address book {path} cannot be loaded: {problem}. {self.hint}")
        self.path = path
        self.problem = problem


class AddressBookUnreadable(InvalidConfig):
    """The address book file exists but cannot be read (permissions, a directory, an I/O error)."""

    hint = "Check the path and its permissions; the file was not modified."

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"address book {path} cannot be read: {problem}. {self.hint}")
        self.path = path
        self.problem = problem


class AddressBookWriteFailed(GlueberryError):
    """Saving the address book failed; the change was not applied and the old file is intact."""

    retriable = True
    hint = "Check free space and write permission on the address book's directory."

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"address book {path} could not be saved: {problem}. {self.hint}")
        self.path = path


class MetadataTooLarge(InvalidArgument):
    """Go's ``ErrMetadataTooLarge``: keys plus values over the limit, counted in UTF-8 bytes."""

    hint = "Store less metadata per peer, or raise Config.max_metadata_size (a Node) or max_metadata_bytes (an AddressBook)."


_PERMANENT = frozenset({ErrorCode.PEER_BLACKLISTED, ErrorCode.INVALID_CONFIG})


def is_retriable(exc: BaseException) -> bool:
    """True when the failed operation may succeed if tried again later."""
    return isinstance(exc, GlueberryError) and exc.retriable


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help (Go's ``IsPermanent``: blacklisted peer, invalid config)."""
    return isinstance(exc, GlueberryError) and exc.code in _PERMANENT
