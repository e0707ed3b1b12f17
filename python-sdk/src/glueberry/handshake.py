"""The ready-made application handshake: Hello / PubKey / Complete (PROTOCOL.md §10).

Glueberry itself only carries opaque messages on the unencrypted ``handshake`` stream (§7); the
application decides what they mean and when to call ``prepare_streams`` / ``finalize_handshake``.
This module is a handshake for applications that have none of their own, byte- and
rule-compatible with the TypeScript client (``js-client/src/handshake.ts``) and with the Go test
peer (``tests/interop/cmd/glueberry-peer``, ``--handshake auto``). Each message is one framed
payload (§6):

.. code-block:: text

    type  message   payload                     length
    0x01  Hello     01 ‖ name                   1–65   name: UTF-8, 0–64 bytes, may be empty
    0x02  PubKey    02 ‖ Ed25519 public key     33     the sender's raw 32-byte key
    0x03  Complete  03                          1

Rules (:class:`HelloHandshake`, identical to the TypeScript ``HelloHandshake``):

* **The dialler speaks first** (§5, §10): the initiator's :meth:`~HelloHandshake.start` sends
  Hello and PubKey; the responder's sends nothing. A Go listener only learns of an inbound
  connection from its handshake stream, so a dialler that waits for the other side deadlocks, and
  a Python listener that opens the stream itself flips Go's ``IsOutbound`` to false.
* A Hello is answered with our Hello and PubKey unless our PubKey was sent already. Only the first
  Hello is reported (:class:`PeerHello`); later ones are ignored.
* A PubKey must be the key of the peer ID we expect (:meth:`PeerID.matches_public_key
  <glueberry.p2p.keys.PeerID.matches_public_key>`), duplicates included, else :class:`KeyMismatch`.
  The first one makes us ask for ``prepare_streams`` (:class:`PrepareRequested`) and send Complete,
  once; it is preceded by our own Hello and PubKey if we had not sent them (a peer that skipped
  Hello still gets our key). A repeated identical PubKey is ignored.
* A Complete received while prepared asks for ``finalize_handshake`` (:class:`FinalizeRequested`);
  one received earlier is remembered and acted on once we prepare.
* :meth:`~HelloHandshake.established_by_traffic`: a peer whose encrypted frame decrypted with our
  key has prepared, whether or not its Complete ever comes.
* Malformed messages (empty, unknown type, name over 64 bytes, key not 32 bytes, bytes after
  Complete) raise :class:`HandshakeError`; a name that is not UTF-8 is decoded with U+FFFD, as
  Go never checks it. After any error the machine is :attr:`HandshakeState.FAILED` and every
  further call raises :class:`InvalidState`.

Go peers it tolerates (``glueberry@v1.2.10/examples/``, the Go test peer's options):

* Duplicate Hellos: ``cluster``, ``rpc`` and ``file-transfer`` answer *every* Hello with Hello +
  PubKey, so when one of them dialled, our answering Hello draws a second Hello and PubKey that
  arrive after our Complete; both are ignored (the PubKey after checking it is the same key).
* A slow peer: their diallers poll for our PubKey (``cluster`` every 50 ms for 5 s; ``rpc`` and
  ``file-transfer`` 100 times without sleeping, so they usually give up at once) and otherwise
  send Complete only in answer to ours; either way Complete may come late, or twice. The Go test
  peer's ``--hs-delay-ms`` delays every reaction. Nothing here has a clock: the node's handshake
  timeout bounds the wait.
* A Complete that never comes: the examples drop every send error (``_ = node.Send(…)``) and
  answer a Complete only from a per-peer state that still holds the key (it is deleted after
  ``CompleteHandshake``); the Go test peer's ``--hs-no-complete`` never sends one. A Go peer may
  also send encrypted data right after its ``PrepareStreams``, on another stream, before its
  Complete arrives (§10). Both are covered by :meth:`~HelloHandshake.established_by_traffic`.
* Not compatible: ``blockberry-integration`` uses the same type bytes for another protocol (JSON
  where we expect a name or a key), which fails as malformed. §10: match the actual Go application.

Unlike the TypeScript class this one derives no key: the node does, in ``prepare_streams``. Each
call returns :class:`HandshakeStep` actions in the order they must be carried out::

    handshake = HelloHandshake(local_public_key=key, remote_peer_id=peer, name="alice", initiator=dialled)
    for message in handshake.start():
        await node.send(peer, "handshake", message)
    ...  # for each message received on the handshake stream:
    for action in handshake.receive(message).actions:
        match action:
            case PeerHello(name=name): ...  # show it
            case PrepareRequested(public_key=key): node.prepare_streams(peer, key, names)
            case SendMessage(data=data): await node.send(peer, "handshake", data)
            case FinalizeRequested(): await node.finalize_handshake(peer)

The order matters twice: streams are prepared before the Complete (and our PubKey, if it goes in
the same step) that lets the peer send encrypted data, and Go's ``FinalizeHandshake`` closes the
handshake stream, so :class:`FinalizeRequested` always comes after the step's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Protocol, TypeAlias

from .exceptions import (
    HandshakeError,
    InvalidArgument,
    InvalidKey,
    InvalidPeerID,
    InvalidState,
    KeyMismatch,
)
from .p2p.keys import PeerID
from .wire.cipher import ed25519_public_to_x25519, x25519_shared_secret

__all__ = [
    "COMPLETE",
    "HELLO",
    "MAX_NAME_BYTES",
    "PUBKEY",
    "Complete",
    "FinalizeRequested",
    "HandshakeAction",
    "HandshakeEvent",
    "HandshakeMachine",
    "HandshakeMessage",
    "HandshakeState",
    "HandshakeStep",
    "Hello",
    "HelloHandshake",
    "PeerHello",
    "PeerInfo",
    "PrepareRequested",
    "PubKey",
    "SendMessage",
    "decode_handshake_message",
    "encode_complete",
    "encode_hello",
    "encode_pubkey",
]

HELLO: Final = 0x01
PUBKEY: Final = 0x02
COMPLETE: Final = 0x03
#: Longest name a Hello may carry, in UTF-8 bytes (the Go test peer's ``maxNameLen``).
MAX_NAME_BYTES: Final = 64
_KEY_SIZE: Final = 32
# Any scalar serves: X25519 clamps it to 8·k with k below the prime orders of the curve's and the
# twist's large subgroups, so the result is all zero exactly for the low-order keys Go refuses (§8.2).
_PROBE_SCALAR: Final = bytes(range(1, 33))


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Hello:
    """A decoded Hello: the sender's name (malformed UTF-8 shown as U+FFFD)."""

    name: str


@dataclass(frozen=True, slots=True)
class PubKey:
    """A decoded PubKey: the sender's raw 32-byte Ed25519 key (not yet checked)."""

    public_key: bytes


@dataclass(frozen=True, slots=True)
class Complete:
    """A decoded Complete: the sender has prepared its streams."""


HandshakeMessage: TypeAlias = Hello | PubKey | Complete


def _name_bytes(name: str) -> bytes:
    if not isinstance(name, str):
        raise InvalidArgument(f"handshake name must be a str, got {type(name).__name__}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates; TS would send U+FFFD instead
        raise InvalidArgument("handshake name is not encodable as UTF-8") from exc
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidArgument(f"handshake name is {len(raw)} bytes of UTF-8, at most {MAX_NAME_BYTES}")
    return raw


def encode_hello(name: str = "") -> bytes:
    """``01 ‖ UTF-8 name``. Raises :class:`InvalidArgument` for a name over 64 bytes."""
    return bytes([HELLO]) + _name_bytes(name)


def encode_pubkey(public_key: bytes) -> bytes:
    """``02 ‖ 32-byte Ed25519 public key``. Raises :class:`InvalidKey` for another length."""
    if not isinstance(public_key, bytes | bytearray | memoryview) or len(public_key) != _KEY_SIZE:
        raise InvalidKey("Ed25519 public key must be 32 bytes")
    return bytes([PUBKEY]) + bytes(public_key)


def encode_complete() -> bytes:
    """``03``."""
    return bytes([COMPLETE])


def decode_handshake_message(message: bytes) -> HandshakeMessage:
    """Parse one handshake payload (already unframed), with the Go test peer's bounds.

    Raises:
        HandshakeError: empty, unknown type byte, Hello over 1 + 64 bytes, PubKey not exactly
            33 bytes, Complete not exactly 1 byte.
    """
    if not message:
        raise HandshakeError("empty handshake message")
    kind, size = message[0], len(message)
    if kind == HELLO:
        if size > 1 + MAX_NAME_BYTES:
            raise HandshakeError(f"Hello name of {size - 1} bytes (max {MAX_NAME_BYTES})")
        # Lenient like Go, which never checks the bytes; "replace" matches WHATWG TextDecoder.
        return Hello(bytes(message[1:]).decode("utf-8", errors="replace"))
    if kind == PUBKEY:
        if size != 1 + _KEY_SIZE:
            raise HandshakeError(f"PubKey carries {size - 1} bytes, expected {_KEY_SIZE}")
        return PubKey(bytes(message[1:]))
    if kind == COMPLETE:
        if size != 1:
            raise HandshakeError("Complete carries unexpected bytes")
        return Complete()
    raise HandshakeError(f"unknown handshake message type 0x{kind:02x}")


# --------------------------------------------------------------------------------------------
# What a step asks the caller to do


@dataclass(frozen=True, slots=True)
class PeerHello:
    """The peer's first Hello arrived; ``name`` is its (possibly empty) name."""

    name: str


@dataclass(frozen=True, slots=True)
class PrepareRequested:
    """The peer's key checked out: call ``prepare_streams(peer, public_key, names)`` now, before
    sending the messages that follow in the same step. ``streams``: the names to prepare, when
    the handshake chose them (None: the caller's)."""

    public_key: bytes
    streams: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What an application's handshake learnt of the peer (e.g. its name, a version), for the
    caller to keep. :class:`HelloHandshake` says :class:`PeerHello` instead."""

    info: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class FinalizeRequested:
    """Both sides prepared: call ``finalize_handshake(peer)`` (after the step's earlier messages)."""


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Frame ``data`` and write it to the handshake stream."""

    data: bytes


HandshakeEvent: TypeAlias = PeerHello | PeerInfo | PrepareRequested | FinalizeRequested
HandshakeAction: TypeAlias = PeerHello | PeerInfo | PrepareRequested | SendMessage | FinalizeRequested


@dataclass(frozen=True, slots=True)
class HandshakeStep:
    """What one call caused: carry out ``actions`` in order (see the module docstring)."""

    actions: tuple[HandshakeAction, ...] = ()

    @property
    def events(self) -> list[HandshakeEvent]:
        """The actions other than messages, in order (the TypeScript step's ``events``)."""
        return [a for a in self.actions if not isinstance(a, SendMessage)]

    @property
    def send(self) -> list[bytes]:
        """The messages to send, in order (the TypeScript step's ``send``)."""
        return [a.data for a in self.actions if isinstance(a, SendMessage)]


class HandshakeMachine(Protocol):
    """An application handshake with one peer, sans I/O: :class:`HelloHandshake`, or one of the
    application's own (docs/python-sdk.md "Write your own handshake"). A node runs it with
    :class:`~glueberry.auto_handshake.MachineHandshakeHandler`; the gateway's Python client runs
    it for a session."""

    def start(self) -> list[bytes]:
        """The messages to send first (the dialler speaks first; a listener returns ``[]``)."""
        ...

    def receive(self, message: bytes) -> HandshakeStep:
        """One message of the peer's; the actions to carry out, in order."""
        ...


# --------------------------------------------------------------------------------------------
# The state machine


class HandshakeState(Enum):
    """Where the handshake is. TypeScript's ``'handshaking'`` is STARTED or HELLO_SENT here."""

    STARTED = "started"  # nothing sent: a responder waiting for Hello, an initiator before start()
    HELLO_SENT = "hello_sent"  # our Hello and PubKey sent, the peer's key not received
    PREPARED = "prepared"  # the peer's key accepted, PrepareRequested and our Complete issued
    ESTABLISHED = "established"  # FinalizeRequested issued
    FAILED = "failed"  # an error was raised; every further call raises InvalidState


class _Trigger(Enum):
    INTRODUCE = auto()  # our Hello and PubKey go out
    PREPARE = auto()  # the peer's PubKey accepted
    ESTABLISH = auto()  # Complete (or decrypted traffic) while prepared
    FAIL = auto()


_S = HandshakeState
_TRANSITIONS: Final[dict[HandshakeState, dict[_Trigger, HandshakeState]]] = {
    _S.STARTED: {_Trigger.INTRODUCE: _S.HELLO_SENT, _Trigger.FAIL: _S.FAILED},
    _S.HELLO_SENT: {_Trigger.PREPARE: _S.PREPARED, _Trigger.FAIL: _S.FAILED},
    _S.PREPARED: {_Trigger.ESTABLISH: _S.ESTABLISHED, _Trigger.FAIL: _S.FAILED},
    _S.ESTABLISHED: {_Trigger.FAIL: _S.FAILED},
    _S.FAILED: {},
}


class HelloHandshake:
    """Sans-I/O Hello / PubKey / Complete handshake with one peer (rules: module docstring).

    Args:
        local_public_key: our raw 32-byte Ed25519 public key, sent in PubKey.
        remote_peer_id: the Ed25519 (``12D3KooW…``) peer ID we mean to talk to; the PubKey it
            sends must be the key embedded in it.
        name: our name in Hello, UTF-8, at most 64 bytes; default empty.
        initiator: True on the side that dialled: it speaks first (:meth:`start`).

    Raises:
        InvalidKey: ``local_public_key`` is not 32 bytes.
        InvalidPeerID: ``remote_peer_id`` is not an Ed25519 identity peer ID.
        InvalidArgument: ``name`` is over 64 bytes of UTF-8 (or not encodable).
    """

    def __init__(
        self, *, local_public_key: bytes, remote_peer_id: PeerID, name: str = "", initiator: bool
    ) -> None:
        if not isinstance(remote_peer_id, PeerID):
            raise InvalidPeerID(f"remote_peer_id must be a PeerID, got {type(remote_peer_id).__name__}")
        if remote_peer_id.ed25519_key() is None:
            raise InvalidPeerID(f"not an Ed25519 (12D3KooW…) peer ID: {remote_peer_id}")
        self._hello = encode_hello(name)
        self._pubkey = encode_pubkey(local_public_key)
        self._name = name
        self._remote_peer_id = remote_peer_id
        self._initiator = initiator
        self._state = HandshakeState.STARTED
        self._complete_received = False
        self._peer_name: str | None = None
        self._peer_public_key: bytes | None = None

    @property
    def state(self) -> HandshakeState:
        return self._state

    @property
    def name(self) -> str:
        """Our name, as sent in Hello."""
        return self._name

    @property
    def remote_peer_id(self) -> PeerID:
        return self._remote_peer_id

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def peer_name(self) -> str | None:
        """The name from the peer's first Hello, once received."""
        return self._peer_name

    @property
    def peer_public_key(self) -> bytes | None:
        """The peer's Ed25519 key, once its PubKey was accepted."""
        return self._peer_public_key

    def start(self) -> list[bytes]:
        """The messages to send first: initiator ``[Hello, PubKey]`` (those not sent yet),
        responder ``[]`` — it waits for the dialler (§5).

        After calling this method: frame and send the messages, in order.
        """
        self._check_usable()
        return self._introduce() if self.initiator else []

    def receive(self, message: bytes) -> HandshakeStep:
        """Process one handshake payload (already unframed).

        After calling this method: carry out ``step.actions`` in order.

        Raises:
            HandshakeError: a malformed or unknown message.
            KeyMismatch: a PubKey that is not the key of :attr:`remote_peer_id`.
            InvalidKey: the expected peer's key is unusable (not a curve point, or low-order).
            InvalidState: the handshake failed earlier.
        """
        self._check_usable()
        try:
            return HandshakeStep(tuple(self._receive(decode_handshake_message(message))))
        except Exception:
            self._advance(_Trigger.FAIL)
            raise

    def established_by_traffic(self) -> list[HandshakeEvent]:
        """The peer sent an encrypted frame that decrypted with our key, but no Complete: it has
        prepared, so treat the handshake as done.

        Returns ``[FinalizeRequested()]`` the first time, ``[]`` after (also after a Complete).

        Raises:
            InvalidState: no key prepared yet, or the handshake failed earlier.
        """
        self._check_usable()
        if self._state is HandshakeState.ESTABLISHED:
            return []
        if self._state is not HandshakeState.PREPARED:
            raise InvalidState("handshake: no key prepared yet", peer_id=str(self.remote_peer_id))
        self._advance(_Trigger.ESTABLISH)
        return [FinalizeRequested()]

    # ----------------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state is HandshakeState.FAILED:
            raise InvalidState("handshake failed earlier", peer_id=str(self.remote_peer_id))

    def _advance(self, trigger: _Trigger) -> None:
        self._state = _TRANSITIONS[self._state][trigger]

    def _introduce(self) -> list[bytes]:
        """Our Hello and PubKey if not sent yet (they always go out together)."""
        if self._state is not HandshakeState.STARTED:
            return []
        self._advance(_Trigger.INTRODUCE)
        return [self._hello, self._pubkey]

    def _receive(self, msg: HandshakeMessage) -> list[HandshakeAction]:
        actions: list[HandshakeAction] = []
        if isinstance(msg, Hello):
            if self._peer_name is None:
                self._peer_name = msg.name
                actions.append(PeerHello(msg.name))
            actions += [SendMessage(m) for m in self._introduce()]
        elif isinstance(msg, PubKey):
            key = msg.public_key
            if not self.remote_peer_id.matches_public_key(key):
                raise KeyMismatch(
                    f"peer sent the key of {PeerID.from_public_key(key)}, expected {self.remote_peer_id}",
                    peer_id=str(self.remote_peer_id),
                )
            if self._peer_public_key is not None:
                return actions  # a duplicate, and the same key (checked above)
            # Refuse here what prepare_streams would refuse, as TS (whose cipher derivation throws).
            x25519_shared_secret(_PROBE_SCALAR, ed25519_public_to_x25519(key))
            self._peer_public_key = key
            # A peer that sent PubKey before our Hello/PubKey still needs ours, before Complete.
            introduction = self._introduce()
            self._advance(_Trigger.PREPARE)
            actions.append(PrepareRequested(key))
            actions += [SendMessage(m) for m in introduction]
            actions.append(SendMessage(encode_complete()))
            if self._complete_received:
                self._advance(_Trigger.ESTABLISH)
                actions.append(FinalizeRequested())
        else:
            self._complete_received = True
            if self._state is HandshakeState.PREPARED:
                self._advance(_Trigger.ESTABLISH)
                actions.append(FinalizeRequested())
        return actions
