"""Run the ready-made Hello / PubKey / Complete handshake for every peer of a node.

    async with Node(config, handshake=HelloHandshakeHandler(streams=["chat"], name="alice")) as node:
        await node.connect(peer_id)           # or let peers connect to you
        async for message in node.messages():  # encrypted messages only; the handshake is handled
            ...

Connection events still report every step (Connected, then Established). A peer whose key does
not match its peer ID, or that sends a malformed handshake message, is disconnected (the event
carries the error).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from .config import HANDSHAKE_STREAM, validate_stream_names
from .exceptions import GlueberryError
from .handshake import (
    FinalizeRequested,
    HandshakeAction,
    HandshakeState,
    HelloHandshake,
    PeerHello,
    PrepareRequested,
    SendMessage,
)
from .p2p.keys import PeerID

__all__ = ["HandshakeHandler", "HandshakeNode", "HelloHandshakeHandler"]

_log = logging.getLogger("glueberry")


class HandshakeNode(Protocol):
    """What a handshake handler may ask of the node that runs it (a :class:`~glueberry.node.Node`)."""

    @property
    def public_key(self) -> bytes: ...

    async def send(self, peer_id: PeerID | str, stream_name: str, data: bytes) -> None: ...

    def prepare_streams(
        self, peer_id: PeerID | str, public_key: bytes, stream_names: Sequence[str]
    ) -> None: ...

    async def finalize_handshake(self, peer_id: PeerID | str) -> None: ...

    async def fail_peer(self, peer_id: PeerID | str, error: Exception) -> None: ...


class HandshakeHandler(Protocol):
    """What a node calls when it runs an application handshake for you."""

    def attach(self, node: HandshakeNode) -> None: ...
    async def connected(self, peer_id: PeerID, outbound: bool) -> None: ...
    async def received(self, peer_id: PeerID, data: bytes) -> None: ...
    async def traffic(self, peer_id: PeerID) -> None: ...
    def disconnected(self, peer_id: PeerID) -> None: ...
    def restarted(self, peer_id: PeerID) -> None: ...


class HelloHandshakeHandler:
    """One :class:`~glueberry.handshake.HelloHandshake` per connection, driven by the node."""

    def __init__(self, *, streams: Sequence[str], name: str = "") -> None:
        validate_stream_names(streams)
        self.streams = list(streams)
        self.name = name
        self.peer_names: dict[PeerID, str] = {}  # what each peer called itself in its Hello
        self._machines: dict[PeerID, HelloHandshake] = {}
        self._node: HandshakeNode | None = None

    def attach(self, node: HandshakeNode) -> None:
        self._node = node

    async def connected(self, peer_id: PeerID, outbound: bool) -> None:
        if not outbound:
            return  # the dialler speaks first (PROTOCOL.md §5): wait for its Hello
        machine = self._machine(peer_id, initiator=True)
        try:
            for message in machine.start():
                await self._send(peer_id, message)
        except GlueberryError as exc:
            await self._fail(peer_id, exc)

    async def received(self, peer_id: PeerID, data: bytes) -> None:
        machine = self._machine(peer_id, initiator=False)
        if machine.state is HandshakeState.ESTABLISHED:
            return  # a Go example peer's late duplicate Hello/PubKey: nothing left to do
        try:
            step = machine.receive(data)
            await self._run(peer_id, step.actions)
        except GlueberryError as exc:
            await self._fail(peer_id, exc)

    async def traffic(self, peer_id: PeerID) -> None:
        machine = self._machines.get(peer_id)
        if machine is not None and machine.state is HandshakeState.PREPARED:
            try:
                await self._run(peer_id, machine.established_by_traffic())
            except GlueberryError as exc:
                await self._fail(peer_id, exc)

    def disconnected(self, peer_id: PeerID) -> None:
        self._machines.pop(peer_id, None)

    def restarted(self, peer_id: PeerID) -> None:
        """The established peer opened a new handshake stream: forget the finished handshake."""
        machine = self._machines.get(peer_id)
        if machine is not None and machine.state is HandshakeState.ESTABLISHED:
            del self._machines[peer_id]

    def _machine(self, peer_id: PeerID, *, initiator: bool) -> HelloHandshake:
        machine = self._machines.get(peer_id)
        if machine is None or machine.state is HandshakeState.FAILED:
            node = self._require_node()
            machine = self._machines[peer_id] = HelloHandshake(
                local_public_key=node.public_key, remote_peer_id=peer_id, name=self.name, initiator=initiator
            )
        return machine

    async def _run(self, peer_id: PeerID, actions: Sequence[HandshakeAction]) -> None:
        node = self._require_node()
        for action in actions:
            if isinstance(action, SendMessage):
                await self._send(peer_id, action.data)
            elif isinstance(action, PrepareRequested):
                node.prepare_streams(peer_id, action.public_key, self.streams)
            elif isinstance(action, FinalizeRequested):
                await node.finalize_handshake(peer_id)
            elif isinstance(action, PeerHello):
                self.peer_names[peer_id] = action.name

    async def _send(self, peer_id: PeerID, message: bytes) -> None:
        await self._require_node().send(peer_id, HANDSHAKE_STREAM, message)

    async def _fail(self, peer_id: PeerID, exc: GlueberryError) -> None:
        _log.warning("handshake with %s failed: %s", peer_id, exc)
        self._machines.pop(peer_id, None)
        await self._require_node().fail_peer(peer_id, exc)

    def _require_node(self) -> HandshakeNode:
        if self._node is None:
            raise RuntimeError("HelloHandshakeHandler is not attached to a node")
        return self._node
