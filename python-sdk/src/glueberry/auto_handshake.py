"""Run an application handshake for every peer of a node: any sans-I/O handshake
(:class:`MachineHandshakeHandler`), or the ready-made Hello / PubKey / Complete one
(:class:`HelloHandshakeHandler`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .config import HANDSHAKE_STREAM, validate_stream_names
from .exceptions import GlueberryError, HandshakeError
from .handshake import (
    FinalizeRequested,
    HandshakeAction,
    HandshakeMachine,
    HelloHandshake,
    PeerHello,
    PeerInfo,
    PrepareRequested,
    SendMessage,
)
from .p2p.keys import PeerID

__all__ = [
    "HandshakeHandler",
    "HandshakeNode",
    "HelloHandshakeHandler",
    "MachineFactory",
    "MachineHandshakeHandler",
]

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


MachineFactory = Callable[[PeerID, bool], HandshakeMachine]


@dataclass(eq=False)
class _Run:
    machine: HandshakeMachine
    prepared: bool = False
    finalized: bool = False


class MachineHandshakeHandler:
    """Any sans-I/O handshake (a :class:`~glueberry.handshake.HandshakeMachine`), one per
    connection, driven by the node: ``make(peer_id, initiator)`` makes it; the node sends what it
    returns, calls ``prepare_streams`` on :class:`~glueberry.handshake.PrepareRequested` (with its
    ``streams``, else ``streams`` here) and ``finalize_handshake`` on
    :class:`~glueberry.handshake.FinalizeRequested`. Traffic under the prepared key finalizes too
    (Go's rule). What the handshake says of a peer is kept in :attr:`peer_info`.

    A peer whose handshake raises is disconnected (any exception becomes a
    :class:`~glueberry.exceptions.HandshakeError`). docs/python-sdk.md "Write your own handshake".
    """

    def __init__(self, make: MachineFactory, *, streams: Sequence[str]) -> None:
        validate_stream_names(streams)
        self.streams = list(streams)
        self.peer_info: dict[PeerID, dict[str, object]] = {}  # PeerHello / PeerInfo, per peer
        self._make = make
        self._runs: dict[PeerID, _Run] = {}
        self._node: HandshakeNode | None = None

    def attach(self, node: HandshakeNode) -> None:
        self._node = node

    async def connected(self, peer_id: PeerID, outbound: bool) -> None:
        if not outbound:
            return  # the dialler speaks first (PROTOCOL.md §5): wait for its first message
        try:
            run = self._run_for(peer_id, initiator=True)
            for message in run.machine.start():
                await self._send(peer_id, message)
        except Exception as exc:
            await self._fail(peer_id, exc)

    async def received(self, peer_id: PeerID, data: bytes) -> None:
        try:
            run = self._run_for(peer_id, initiator=False)
            if run.finalized:
                return  # a late duplicate (Go's example peers resend Hello/PubKey): nothing left to do
            await self._carry_out(peer_id, run, run.machine.receive(data).actions)
        except Exception as exc:
            await self._fail(peer_id, exc)

    async def traffic(self, peer_id: PeerID) -> None:
        run = self._runs.get(peer_id)
        if run is not None and run.prepared and not run.finalized:
            try:
                await self._carry_out(peer_id, run, [FinalizeRequested()])
            except Exception as exc:
                await self._fail(peer_id, exc)

    def disconnected(self, peer_id: PeerID) -> None:
        self._runs.pop(peer_id, None)

    def restarted(self, peer_id: PeerID) -> None:
        """The established peer opened a new handshake stream: forget the finished handshake."""
        run = self._runs.get(peer_id)
        if run is not None and run.finalized:
            del self._runs[peer_id]

    def _run_for(self, peer_id: PeerID, *, initiator: bool) -> _Run:
        run = self._runs.get(peer_id)
        if run is None:
            run = self._runs[peer_id] = _Run(self._make(peer_id, initiator))
        return run

    async def _carry_out(self, peer_id: PeerID, run: _Run, actions: Sequence[HandshakeAction]) -> None:
        node = self._require_node()
        for action in actions:
            if isinstance(action, SendMessage):
                await self._send(peer_id, action.data)
            elif isinstance(action, PrepareRequested):
                streams = self.streams if action.streams is None else list(action.streams)
                node.prepare_streams(peer_id, action.public_key, streams)
                run.prepared = True
            elif isinstance(action, FinalizeRequested):
                if not run.prepared:
                    raise HandshakeError(
                        "the handshake finished before it prepared a key", peer_id=str(peer_id)
                    )
                if not run.finalized:
                    run.finalized = True
                    await node.finalize_handshake(peer_id)
            elif isinstance(action, PeerHello):
                self.peer_info.setdefault(peer_id, {})["name"] = action.name
            elif isinstance(action, PeerInfo):
                self.peer_info.setdefault(peer_id, {}).update(action.info)

    async def _send(self, peer_id: PeerID, message: bytes) -> None:
        await self._require_node().send(peer_id, HANDSHAKE_STREAM, message)

    async def _fail(self, peer_id: PeerID, exc: Exception) -> None:
        if not isinstance(exc, GlueberryError):
            exc = HandshakeError(f"handshake failed: {exc!r}", peer_id=str(peer_id))
        _log.warning("handshake with %s failed: %s", peer_id, exc)
        self._runs.pop(peer_id, None)
        await self._require_node().fail_peer(peer_id, exc)

    def _require_node(self) -> HandshakeNode:
        if self._node is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a node")
        return self._node


class HelloHandshakeHandler(MachineHandshakeHandler):
    """One :class:`~glueberry.handshake.HelloHandshake` per connection, driven by the node."""

    def __init__(self, *, streams: Sequence[str], name: str = "") -> None:
        self.name = name
        super().__init__(self._hello, streams=streams)

    @property
    def peer_names(self) -> dict[PeerID, str]:
        """What each peer called itself in its Hello."""
        return {p: name for p, info in self.peer_info.items() if isinstance(name := info.get("name"), str)}

    def _hello(self, peer_id: PeerID, initiator: bool) -> HandshakeMachine:
        public_key = self._require_node().public_key
        return HelloHandshake(
            local_public_key=public_key, remote_peer_id=peer_id, name=self.name, initiator=initiator
        )
