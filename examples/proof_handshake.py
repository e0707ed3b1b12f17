"""An application handshake of one's own, in Python (docs/python-sdk.md "Write your own handshake"):
the "proof" handshake that the Go service tests/interop/cmd/proof-peer speaks, as one sans-I/O
class for both roles. The same object runs in a python-sdk node
(``MachineHandshakeHandler``) and in a session of the gateway's Python client
(``session.handshake(handshake=proof_handshake(...))``).

    INTRO  = 0x21 ‖ version (1 byte) ‖ nonce (16) ‖ Ed25519 public key (32) ‖ name length (1) ‖ name (≤ 32)
    PROOF  = 0x22 ‖ Ed25519 signature (64) over
             b"glueberry-proof-v2" ‖ sender nonce ‖ receiver nonce ‖ sender key ‖ receiver key
    READY  = 0x23 ‖ the stream names the sender prepared, comma-separated
    REFUSE = 0x2f ‖ reason (UTF-8)

The dialler sends INTRO. The listener checks the version and that the key is the dialler's peer
ID, answers INTRO and PROOF. The dialler checks the signature, prepares, answers PROOF and READY;
the listener checks that PROOF, prepares and answers READY. Each side finalizes on the other's
READY once it has prepared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from glueberry.auto_handshake import MachineHandshakeHandler
from glueberry.exceptions import HandshakeError, KeyMismatch
from glueberry.handshake import (
    FinalizeRequested,
    HandshakeAction,
    HandshakeMachine,
    HandshakeStep,
    PeerInfo,
    PrepareRequested,
    SendMessage,
)
from glueberry.p2p.keys import PeerID, public_key_bytes
from glueberry_gateway.client import HandshakeContext, HandshakeFactory

VERSION = 2
INTRO, PROOF, READY, REFUSE = 0x21, 0x22, 0x23, 0x2F
NONCE_BYTES = 16
MAX_NAME = 32
DOMAIN = b"glueberry-proof-v2"


def encode_intro(version: int, nonce: bytes, public_key: bytes, name: str) -> bytes:
    raw = name.encode()
    if len(raw) > MAX_NAME:
        raise HandshakeError("name over 32 bytes")
    return bytes([INTRO, version]) + nonce + public_key + bytes([len(raw)]) + raw


def decode_intro(message: bytes) -> tuple[int, bytes, bytes, str]:
    """(version, nonce, public key, name) of an INTRO."""
    head = 2 + NONCE_BYTES + 32 + 1
    if len(message) < head or message[head - 1] > MAX_NAME or len(message) != head + message[head - 1]:
        raise HandshakeError("malformed INTRO")
    key = message[2 + NONCE_BYTES : head - 1]
    return message[1], message[2 : 2 + NONCE_BYTES], key, message[head:].decode(errors="replace")


def proof_message(
    sender_nonce: bytes, receiver_nonce: bytes, sender_key: bytes, receiver_key: bytes
) -> bytes:
    return DOMAIN + sender_nonce + receiver_nonce + sender_key + receiver_key


class ProofHandshake:
    """One side of the proof handshake with ``remote``, sans I/O (a ``HandshakeMachine``)."""

    def __init__(
        self,
        identity: Ed25519PrivateKey,
        remote: PeerID,
        *,
        initiator: bool,
        streams: Sequence[str],
        name: str = "",
    ) -> None:
        self._identity = identity
        self._key = public_key_bytes(identity)
        self._remote = remote
        self._initiator = initiator
        self._streams = tuple(streams)
        self._name = name
        self._nonce = os.urandom(NONCE_BYTES)
        self._peer: tuple[bytes, bytes] | None = None  # its nonce and key, from its INTRO
        self._prepared = False
        self._their_ready = False

    def start(self) -> list[bytes]:
        return [self._intro()] if self._initiator else []

    def receive(self, message: bytes) -> HandshakeStep:
        kind = message[:1]
        if kind == bytes([INTRO]) and self._peer is None:
            return HandshakeStep(tuple(self._on_intro(message)))
        if kind == bytes([PROOF]) and self._peer is not None and not self._prepared and len(message) == 65:
            return HandshakeStep(tuple(self._on_proof(message[1:])))
        if kind == bytes([READY]):
            theirs = message[1:].decode(errors="replace").split(",")
            missing = [s for s in self._streams if s not in theirs]
            if missing:
                raise HandshakeError(f"the peer did not prepare {', '.join(missing)}")
            self._their_ready = True
            return HandshakeStep((FinalizeRequested(),) if self._prepared else ())
        if kind == bytes([REFUSE]):
            raise HandshakeError(f"refused: {message[1:].decode(errors='replace')}")
        raise HandshakeError(f"unexpected handshake message {message[:1].hex()}")

    def _intro(self) -> bytes:
        return encode_intro(VERSION, self._nonce, self._key, self._name)

    def _on_intro(self, message: bytes) -> list[HandshakeAction]:
        version, nonce, key, name = decode_intro(message)
        if version != VERSION:
            raise HandshakeError(f"version {version}, not {VERSION}")
        if PeerID.from_public_key(key) != self._remote:
            raise KeyMismatch(f"the INTRO key is not the key of {self._remote}", peer_id=str(self._remote))
        self._peer = (nonce, key)
        actions: list[HandshakeAction] = [PeerInfo({"name": name, "version": version})]
        if not self._initiator:  # the listener answers with its own INTRO and its PROOF
            actions += [SendMessage(self._intro()), SendMessage(self._proof())]
        return actions

    def _proof(self) -> bytes:
        assert self._peer is not None
        nonce, key = self._peer
        return bytes([PROOF]) + self._identity.sign(proof_message(self._nonce, nonce, self._key, key))

    def _on_proof(self, signature: bytes) -> list[HandshakeAction]:
        assert self._peer is not None
        nonce, key = self._peer
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(
                signature, proof_message(nonce, self._nonce, key, self._key)
            )
        except InvalidSignature:
            raise HandshakeError("bad PROOF signature") from None
        self._prepared = True
        actions: list[HandshakeAction] = [PrepareRequested(key, self._streams)]
        if self._initiator:  # the dialler's PROOF goes after it prepared (Go may send data at once)
            actions.append(SendMessage(self._proof()))
        actions.append(SendMessage(bytes([READY]) + ",".join(self._streams).encode()))
        if self._their_ready:
            actions.append(FinalizeRequested())
        return actions


def proof_handshake(*, streams: Sequence[str], name: str = "") -> HandshakeFactory:
    """For the gateway's Python client: ``await session.handshake(handshake=proof_handshake(...))``."""

    def make(context: HandshakeContext) -> HandshakeMachine:
        return ProofHandshake(
            context.identity, context.remote_peer_id, initiator=True, streams=streams, name=name
        )

    return make


def proof_handler(
    identity: Ed25519PrivateKey, *, streams: Sequence[str], name: str = ""
) -> MachineHandshakeHandler:
    """For a python-sdk node: ``Node(config, handshake=proof_handler(key, streams=[...]))``."""

    def make(peer: PeerID, initiator: bool) -> HandshakeMachine:
        return ProofHandshake(identity, peer, initiator=initiator, streams=streams, name=name)

    return MachineHandshakeHandler(make, streams=streams)
