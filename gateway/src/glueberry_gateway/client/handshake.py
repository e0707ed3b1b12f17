"""The application handshake of a client session, pluggable (docs/gateway.md §10 "Write your own
handshake"; the same interface as js-client's ``Handshake``).

Glueberry carries opaque messages on the session's ``handshake`` stream and leaves their meaning
to the application; a Go service defines its own and calls ``PrepareStreams`` and
``FinalizeHandshake`` (PROTOCOL.md §4.1, §10). A session runs any :data:`SessionHandshake` (python-sdk's
:class:`~glueberry.handshake.HandshakeMachine`): an object, sans I/O, that returns the messages
to send first (``start()``) and, for each message received (``receive(message)``), the actions
to take, in the vocabulary of :mod:`glueberry.handshake`:

* :class:`~glueberry.handshake.SendMessage`: send ``data`` on the ``handshake`` stream;
* :class:`~glueberry.handshake.PrepareRequested`: the backend's Ed25519 key, Go's
  ``PrepareStreams``: the session checks that it is the key of the backend's peer ID
  (:class:`~glueberry.exceptions.KeyMismatch` otherwise), derives the stream key and from then on
  encrypts on ``streams`` (when given; else the ones :meth:`Session.handshake` was given);
* :class:`~glueberry.handshake.FinalizeRequested`: done (Go's ``FinalizeHandshake``); a valid
  encrypted frame after the key was prepared completes it too (Go's rule);
* :class:`~glueberry.handshake.PeerInfo` / :class:`~glueberry.handshake.PeerHello`: what the
  handshake learnt of the backend, kept in ``session.handshake_info``.

Raising a :class:`~glueberry.exceptions.HandshakeError` (any exception is wrapped in one) fails
the session. :class:`~glueberry.handshake.HelloHandshake` is the default and one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import GlueberryError, HandshakeError
from glueberry.handshake import HandshakeMachine, HelloHandshake, encode_hello
from glueberry.p2p.keys import PeerID

__all__ = [
    "HandshakeContext",
    "HandshakeFactory",
    "SessionHandshake",
    "as_handshake_error",
    "hello_handshake",
]


#: An application handshake as a session runs it: python-sdk's
#: :class:`~glueberry.handshake.HandshakeMachine` (``start()``, ``receive(message)``), so one
#: implementation serves a python-sdk node and a client session alike.
SessionHandshake: TypeAlias = HandshakeMachine


@dataclass(frozen=True, slots=True)
class HandshakeContext:
    """What a handshake is made with, once per session (and per reopen).

    Attributes:
        identity: the client's Ed25519 key (to sign with; its public half is ``public_key``).
        public_key: the client's raw 32-byte public key.
        remote_peer_id: the backend's peer ID as the gateway reported it: the key of a
            ``PrepareRequested`` must be its key.
        backend: the backend name or peer ID the session was opened with.
        streams: the streams :meth:`Session.handshake` was given (None: any).
    """

    identity: Ed25519PrivateKey
    public_key: bytes
    remote_peer_id: PeerID
    backend: str
    streams: tuple[str, ...] | None


HandshakeFactory: TypeAlias = Callable[[HandshakeContext], SessionHandshake]


def hello_handshake(name: str = "") -> HandshakeFactory:
    """The default: :class:`~glueberry.handshake.HelloHandshake` as initiator, our Hello ``name``.

    Raises:
        InvalidArgument: ``name`` is over 64 UTF-8 bytes.
    """
    encode_hello(name)  # InvalidArgument: over 64 bytes

    def make(context: HandshakeContext) -> SessionHandshake:
        return HelloHandshake(
            local_public_key=context.public_key,
            remote_peer_id=context.remote_peer_id,
            name=name,
            initiator=True,
        )

    return make


def as_handshake_error(exc: Exception) -> GlueberryError:
    """What a failed handshake reports: our errors as they are, an application's wrapped."""
    return exc if isinstance(exc, GlueberryError) else HandshakeError(f"handshake failed: {exc!r}")
