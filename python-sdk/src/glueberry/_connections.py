"""The connection side of a node: one record per peer and the state machine of its connection
(PROTOCOL.md §5, Go's ``pkg/connection``) — dial, handshake timer and cooldown, loss,
reconnection with backoff, and the limits that gate who may connect.

Invariants:

1. State changes go through :meth:`PeerConnections.set_state`, which checks :data:`TRANSITIONS`
   and emits exactly one :class:`ConnectionEvent` per change.
2. A ``Disconnected`` event wipes the peer's key, allowed names and streams (as Go does); unlike
   Go, losing the last connection to a peer produces that event, then reconnection if the peer is
   in the address book and was not disconnected on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from ._peer import Peer
from .addressbook import AddressBook
from .auto_handshake import HandshakeHandler
from .config import Config
from .events import TRANSITIONS, ConnectionEvent, ConnectionState, EventSubscription
from .exceptions import (
    ConnectionClosed,
    ConnectionFailed,
    GlueberryError,
    HandshakeTimeout,
    InvalidState,
    LimitExceeded,
    PeerBlacklisted,
    PeerNotFound,
)
from .limits import SlidingWindow
from .p2p.asyncio import Connection, Host
from .p2p.keys import PeerID
from .p2p.multiaddr import Multiaddr

__all__ = ["PeerConnections"]

_log = logging.getLogger("glueberry")
S = ConnectionState


class PeerConnections:
    """The peers of a node and their connections (module docstring).

    Args:
        config: the node's configuration.
        handshake: the node's handshake handler, told of connections and disconnections.
        host, book: the node's libp2p host and address book (made when it starts).
        started: whether the node runs.
        spawn: runs a coroutine as a task the node tracks (and cancels when it stops).
        refuse: counts a refusal by a limit's name.
        subscriptions: where connection events go.
    """

    def __init__(
        self,
        config: Config,
        handshake: HandshakeHandler | None,
        *,
        host: Callable[[], Host],
        book: Callable[[], AddressBook],
        started: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        refuse: Callable[[str], None],
        subscriptions: set[EventSubscription],
    ) -> None:
        self.peers: dict[PeerID, Peer] = {}
        self._config = config
        self._handshake = handshake
        self._host = host
        self._book = book
        self._started = started
        self._spawn = spawn
        self._refuse = refuse
        self._subscriptions = subscriptions

    async def connect(self, pid: PeerID) -> None:
        """:meth:`Node.connect <glueberry.node.Node.connect>`."""
        entry = self._book().get_peer(pid)
        if entry.blacklisted:
            raise PeerBlacklisted("peer is blacklisted", peer_id=str(pid))
        peer = self.peer(pid)
        if peer.state.is_active:
            raise InvalidState(f"already {peer.state} with this peer", peer_id=str(pid))
        if peer.state is S.COOLDOWN:
            raise InvalidState("peer is in cooldown after a failed handshake", peer_id=str(pid))
        peer.cancel_reconnect()
        peer.on_purpose = False
        await self.dial(peer, list(entry.multiaddrs))

    def peer(self, pid: PeerID) -> Peer:
        peer = self.peers.get(pid)
        if peer is None:
            peer = self.peers[pid] = Peer(pid)
        return peer

    def set_state(self, peer: Peer, state: ConnectionState, error: Exception | None = None) -> None:
        if state is peer.state:
            return
        if state not in TRANSITIONS[peer.state]:
            _log.debug("%s: ignored transition %s -> %s", peer.peer_id, peer.state, state)
            return
        _log.info("%s: %s -> %s%s", peer.peer_id, peer.state, state, f" ({error})" if error else "")
        peer.state = state
        if state is S.CONNECTED:
            peer.stats.mark_connected(peer.outbound)
        elif state is S.DISCONNECTED:
            peer.stats.mark_disconnected()
        if state is S.DISCONNECTED and self._handshake is not None:
            self._handshake.disconnected(peer.peer_id)
        event = ConnectionEvent(peer.peer_id, state, error)
        for sub in list(self._subscriptions):
            sub.deliver(event)

    def connected(self, peer: Peer, *, outbound: bool) -> None:
        """Connecting -> Connected, with the handshake timer (Go: ``Manager.ConnectCtx``)."""
        peer.outbound = outbound
        self.set_state(peer, S.CONNECTED)
        if peer.handshake_timer is not None:
            peer.handshake_timer.cancel()
        loop = asyncio.get_running_loop()
        peer.handshake_timer = loop.call_later(self._config.handshake_timeout, self._handshake_expired, peer)
        if self._handshake is not None:
            self._spawn(self._handshake.connected(peer.peer_id, outbound))

    def _handshake_expired(self, peer: Peer) -> None:
        peer.handshake_timer = None
        if peer.state is not S.CONNECTED:
            return
        self.set_state(peer, S.COOLDOWN, HandshakeTimeout("handshake timeout", peer_id=str(peer.peer_id)))
        self._spawn(self._close_connections(peer))
        loop = asyncio.get_running_loop()
        peer.cooldown_timer = loop.call_later(
            self._config.failed_handshake_cooldown, self._cooldown_over, peer
        )

    def _cooldown_over(self, peer: Peer) -> None:
        peer.cooldown_timer = None
        if peer.state is S.COOLDOWN:
            self._spawn(self._after_cooldown(peer))

    async def _after_cooldown(self, peer: Peer) -> None:
        peer.wipe()
        self.set_state(peer, S.DISCONNECTED, HandshakeTimeout("cooldown over after a handshake timeout"))
        self.maybe_reconnect(peer)

    async def dial(self, peer: Peer, addrs: list[Multiaddr]) -> None:
        if not self.has_room_for(peer.peer_id):
            raise LimitExceeded("max_peers reached", limit="max_peers", peer_id=str(peer.peer_id))
        self.set_state(peer, S.CONNECTING)
        try:
            await self._host().dial(peer.peer_id, addrs)
        except (GlueberryError, OSError) as exc:
            error = exc if isinstance(exc, GlueberryError) else ConnectionFailed(str(exc))
            self.set_state(peer, S.DISCONNECTED, error)
            self.maybe_reconnect(peer)
            raise error from None
        self.connected(peer, outbound=True)

    async def disconnect(self, peer: Peer, error: Exception | None = None) -> None:
        """Drop the peer on purpose (no reconnection); the Disconnected event carries ``error``."""
        peer.on_purpose = True
        peer.cancel_reconnect()
        peer.cancel_timers()
        peer.wipe()
        await self._close_connections(peer)
        self.set_state(peer, S.DISCONNECTED, error)

    async def _close_connections(self, peer: Peer) -> None:
        for conn in self._host().connections(peer.peer_id):
            conn.close()

    def connection_lost(self, conn: Connection) -> None:
        """The host lost a connection; if it was the peer's last, the peer is Disconnected."""
        if not self._started():
            return
        peer = self.peers.get(conn.remote_peer_id)
        if peer is None or self._host().connections(peer.peer_id):
            return
        if peer.state in (S.CONNECTED, S.ESTABLISHED):
            peer.cancel_timers()
            self._spawn(self._lost(peer, conn.close_reason))

    async def _lost(self, peer: Peer, reason: BaseException | None) -> None:
        peer.wipe()
        error = ConnectionClosed(f"connection lost: {reason}", peer_id=str(peer.peer_id))
        self.set_state(peer, S.DISCONNECTED, error)
        self.maybe_reconnect(peer)

    def maybe_reconnect(self, peer: Peer) -> None:
        book = self._book()
        if (
            self._started()
            and not peer.on_purpose
            and peer.reconnect_task is None
            and peer.peer_id in book
            and not book.is_blacklisted(peer.peer_id)
        ):
            # A tracked task, so that stop() cancels it with the others.
            peer.reconnect_task = self._spawn(self._reconnect(peer))

    async def _reconnect(self, peer: Peer) -> None:
        """Go's reconnection loop: delays min(base·2^n, max) ±10 %, at most max attempts."""
        cfg = self._config
        self.set_state(peer, S.RECONNECTING)
        try:
            for attempt in range(cfg.reconnect_max_attempts):
                delay = min(cfg.reconnect_base_delay * 2**attempt, cfg.reconnect_max_delay)
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))
                if peer.state is not S.RECONNECTING:
                    return  # the remote connected to us meanwhile
                try:
                    entry = self._book().get_peer(peer.peer_id)
                except PeerNotFound:
                    break
                self.set_state(peer, S.CONNECTING)
                try:
                    await self._host().dial(peer.peer_id, list(entry.multiaddrs))
                except (GlueberryError, OSError) as exc:
                    _log.info("%s: reconnection attempt %d failed: %s", peer.peer_id, attempt + 1, exc)
                    peer.state = S.RECONNECTING  # Connecting -> Reconnecting is silent in Go too
                    continue
                self.connected(peer, outbound=True)
                return
            self.set_state(peer, S.DISCONNECTED, ConnectionFailed("reconnection attempts exhausted"))
        finally:
            if peer.reconnect_task is asyncio.current_task():  # not a successor started meanwhile
                peer.reconnect_task = None

    async def auto_connect(self, pid: PeerID) -> None:
        peer = self.peer(pid)
        if peer.state.is_active or peer.state is S.COOLDOWN:
            return
        try:
            await self.connect(pid)
        except GlueberryError as exc:
            _log.info("auto-connect to %s failed: %s", pid, exc)

    def has_room_for(self, pid: PeerID) -> bool:
        host = self._host()
        connected = {c.remote_peer_id for c in host.connections() if c.is_open}
        if pid in connected or len(connected) < self._config.max_peers:
            return True
        self._refuse("max_peers")
        return False

    def gate(self, pid: PeerID, outbound: bool) -> bool:
        """The host's gater: blacklist, max_peers, inbound attempt rate (our limits)."""
        if self._book().is_blacklisted(pid):
            self._refuse("blacklisted")
            return False
        if outbound:
            return True
        peer = self.peer(pid)
        rate = self._config.max_connection_attempts_per_minute
        if rate:
            if peer.attempts is None:
                peer.attempts = SlidingWindow(rate, 60.0)
            if not peer.attempts.allow(asyncio.get_running_loop().time()):
                self._refuse("max_connection_attempts_per_minute")
                return False
        return self.has_room_for(pid)
