"""The Glueberry node: Go's ``glueberry.Node`` in Python idiom.

Theory of operation
-------------------
A node owns a libp2p :class:`~glueberry.p2p.asyncio.Host`, an address book and one record per
peer (:class:`_Peer`: connection state, the stream key, the allowed stream names and the
Glueberry streams). The application drives the handshake on the ``handshake`` stream, then calls
:meth:`Node.prepare_streams` (derive the key) and :meth:`Node.finalize_handshake`
(→ Established); see :mod:`glueberry.handshake` for a ready-made one.

Invariants:

1. At most one *send* stream per (peer, name); inbound streams are always accepted when the
   peer may use the name, read to their end, and the newest becomes the send stream
   (PROTOCOL.md §4.3: Go resets duplicates, which loses data on simultaneous first sends).
2. State changes go through :meth:`Node._set_state`, which checks :data:`TRANSITIONS` and emits
   exactly one :class:`ConnectionEvent` per change.
3. A ``Disconnected`` event wipes the peer's key, allowed names and streams (as Go does); unlike
   Go, losing the last connection to a peer produces that event, then reconnection if the peer is
   in the address book and was not disconnected on purpose.
4. Received messages go through one bounded queue; when it is full the stream readers wait, so
   the yamux windows stall the senders: nothing is dropped (Go drops silently).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import __version__
from ._streams import HANDSHAKE_PROTOCOL, GlueberryStream, protocol_id, stream_name_of
from .addressbook import AddressBook, PeerEntry
from .auto_handshake import HandshakeHandler
from .config import HANDSHAKE_STREAM, Config, validate_stream_name, validate_stream_names
from .events import TRANSITIONS, ConnectionEvent, ConnectionState, EventSubscription, IncomingMessage
from .exceptions import (
    ConnectionClosed,
    ConnectionFailed,
    DecryptionFailed,
    GlueberryError,
    HandshakeTimeout,
    InvalidKey,
    InvalidState,
    KeyMismatch,
    LimitExceeded,
    MessageTooLarge,
    NodeAlreadyStarted,
    NodeNotStarted,
    PeerBlacklisted,
    PeerNotFound,
    StreamClosed,
)
from .limits import SlidingWindow, TokenBucket
from .p2p.asyncio import Connection, Host, HostConfig, Stream
from .p2p.keys import PeerID, private_key_from_bytes
from .p2p.multiaddr import Multiaddr
from .p2p.signer import LocalSigner
from .p2p.yamux import YamuxConfig
from .stats import PeerStats
from .version import ProtocolVersion
from .wire.cipher import OVERHEAD, StreamCipher, shared_key
from .wire.framing import outer_length

__all__ = ["Node"]

_log = logging.getLogger("glueberry")
S = ConnectionState


@dataclass(slots=True, eq=False)
class _Peer:
    peer_id: PeerID
    state: ConnectionState = S.DISCONNECTED
    outbound: bool = False
    cipher: StreamCipher | None = None
    allowed: set[str] = field(default_factory=set)
    streams: dict[str, GlueberryStream] = field(default_factory=dict)  # the send stream per name
    all_streams: set[GlueberryStream] = field(default_factory=set)
    opening: dict[str, asyncio.Future[GlueberryStream]] = field(default_factory=dict)
    handshake_timer: asyncio.TimerHandle | None = None
    cooldown_timer: asyncio.TimerHandle | None = None
    reconnect_task: asyncio.Task[None] | None = None
    on_purpose: bool = False  # disconnected by the application: do not reconnect
    bucket: TokenBucket | None = None
    attempts: SlidingWindow | None = None
    stats: PeerStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = PeerStats(self.peer_id)


class Node:
    """A Glueberry node. Use ``async with Node(config) as node:`` or ``start()``/``stop()``."""

    def __init__(self, config: Config, *, handshake: HandshakeHandler | None = None) -> None:
        """Args:
        config: see :class:`~glueberry.config.Config`.
        handshake: run an application handshake for every peer (e.g.
            :class:`~glueberry.auto_handshake.HelloHandshakeHandler`); its messages are then not
            delivered by :meth:`messages`.
        """
        config.validate()
        self.config = config = config.with_defaults()
        key = config.private_key
        self._key: Ed25519PrivateKey = (
            key if isinstance(key, Ed25519PrivateKey) else private_key_from_bytes(key)
        )
        self._signer = LocalSigner(self._key)
        self.peer_id: PeerID = self._signer.peer_id
        self.public_key: bytes = self._signer.public_key
        self._address_book: AddressBook | None = None
        self._host: Host | None = None
        self._peers: dict[PeerID, _Peer] = {}
        self._messages: asyncio.Queue[IncomingMessage] | None = None
        self._subscriptions: set[EventSubscription] = set()
        self._max_frame = outer_length(config.max_message_size + OVERHEAD)
        self._started = False
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.limit_refusals: dict[str, int] = {}
        self.decryption_errors = 0
        self._handshake = handshake
        if handshake is not None:
            handshake.attach(self)

    # Lifecycle.

    async def start(self) -> None:
        """Open the address book, listen, and dial every address-book peer (as Go's ``Start``).

        Raises:
            NodeAlreadyStarted; InvalidConfig (e.g. a corrupt address book: it is left untouched).
        """
        if self._started:
            raise NodeAlreadyStarted("node already started")
        self._address_book = AddressBook(
            self.config.address_book_path, max_metadata_bytes=self.config.max_metadata_size
        )
        host_config = HostConfig(
            agent_version=self.config.agent_version or f"glueberry-py/{__version__}",
            dial_timeout=self.config.dial_timeout,
            max_pending_connections=self.config.max_pending_connections,
            max_connections=self.config.max_peers * 2,
            yamux=YamuxConfig(receive_window=1 << 20, max_streams=self.config.max_streams_per_peer),
        )
        host = self._host = Host(self._signer, host_config)
        host.gater = self._gate
        host.on_disconnected.append(self._connection_lost)
        host.set_stream_handler(HANDSHAKE_PROTOCOL, self._accept_handshake_stream)
        self._messages = asyncio.Queue(self.config.message_buffer_size)
        await host.listen(self.config.listen_addrs)
        self._started = True
        self._stopped.clear()
        _log.info("node started: %s listening on %s", self.peer_id, ", ".join(map(str, host.addrs)))
        for entry in self._address_book.list_peers():
            self._spawn(self._auto_connect(entry.peer_id))

    async def stop(self) -> None:
        """Close every stream and connection, forget keys, end iterators (Go's ``Stop``)."""
        if not self._started:
            raise NodeNotStarted("node not started")
        self._started = False
        self._stopped.set()
        for peer in self._peers.values():
            self._cancel_timers(peer)
            await self._cleanup(peer)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._host is not None:
            await self._host.close()
        for sub in list(self._subscriptions):
            sub.close()
        _log.info("node stopped: %s", self.peer_id)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._started:
            await self.stop()

    # Identity.

    @property
    def addrs(self) -> list[Multiaddr]:
        return self._require_host().addrs

    @property
    def version(self) -> ProtocolVersion:
        return ProtocolVersion.current()

    # Address book.

    def add_peer(
        self, peer_id: PeerID | str, addrs: Sequence[Multiaddr | str], metadata: dict[str, str] | None = None
    ) -> PeerEntry:
        """Add (or update) a peer; a started node then connects to it (Go's ``AddPeer``)."""
        pid = _pid(peer_id)
        entry = self._book().add_peer(pid, addrs, metadata)
        if self._started:
            self._spawn(self._auto_connect(pid))
        return entry

    def remove_peer(self, peer_id: PeerID | str) -> None:
        self._book().remove_peer(_pid(peer_id))

    async def blacklist_peer(self, peer_id: PeerID | str) -> None:
        """Refuse the peer from now on (dial and accept) and drop its connection."""
        pid = _pid(peer_id)
        book = self._book()
        if pid not in book:  # Go refuses peers it has no entry for; a peer that dialled us counts too
            book.add_peer(pid, [])
        book.blacklist_peer(pid)
        _log.warning("peer blacklisted: %s", pid)
        peer = self._peers.get(pid)
        if peer is not None:
            await self._disconnect(peer)

    def unblacklist_peer(self, peer_id: PeerID | str) -> None:
        self._book().unblacklist_peer(_pid(peer_id))

    def get_peer(self, peer_id: PeerID | str) -> PeerEntry:
        return self._book().get_peer(_pid(peer_id))

    def list_peers(self) -> list[PeerEntry]:
        return self._book().list_peers()

    # Connections.

    async def connect(self, peer_id: PeerID | str) -> None:
        """Dial an address-book peer; on success the state is Connected and the handshake timer
        runs. The dialler must send the first handshake message (PROTOCOL.md §5).

        Raises:
            NodeNotStarted, PeerNotFound, PeerBlacklisted, InvalidState (already active or in
            cooldown), LimitExceeded (max_peers), ConnectionFailed.
        """
        self._require_started()
        pid = _pid(peer_id)
        entry = self._book().get_peer(pid)
        if entry.blacklisted:
            raise PeerBlacklisted("peer is blacklisted", peer_id=str(pid))
        peer = self._peer(pid)
        if peer.state.is_active:
            raise InvalidState(f"already {peer.state} with this peer", peer_id=str(pid))
        if peer.state is S.COOLDOWN:
            raise InvalidState("peer is in cooldown after a failed handshake", peer_id=str(pid))
        self._cancel_reconnect(peer)
        peer.on_purpose = False
        await self._dial(peer, list(entry.multiaddrs))

    async def disconnect(self, peer_id: PeerID | str) -> None:
        """Close streams and connections with the peer, forget its key; no reconnection."""
        self._require_started()
        await self._disconnect(self._peer(_pid(peer_id)))

    def connection_state(self, peer_id: PeerID | str) -> ConnectionState:
        peer = self._peers.get(_pid(peer_id))
        return peer.state if peer is not None else S.DISCONNECTED

    def is_outbound(self, peer_id: PeerID | str) -> bool:
        """Whether we dialled the peer. Raises InvalidState if there is no connection."""
        peer = self._peers.get(_pid(peer_id))
        if peer is None or not peer.state.is_active:
            raise InvalidState("not connected to this peer", peer_id=str(peer_id))
        return peer.outbound

    def cancel_reconnection(self, peer_id: PeerID | str) -> None:
        peer = self._peers.get(_pid(peer_id))
        if peer is None or peer.reconnect_task is None:
            raise InvalidState("no reconnection in progress", peer_id=str(peer_id))
        self._cancel_reconnect(peer)
        self._set_state(peer, S.DISCONNECTED, ConnectionClosed("reconnection cancelled"))

    async def fail_peer(self, peer_id: PeerID | str, error: Exception) -> None:
        """Disconnect a peer because its handshake failed; the Disconnected event carries
        ``error`` and no reconnection follows."""
        await self._disconnect(self._peer(_pid(peer_id)), error)

    # Handshake.

    def prepare_streams(self, peer_id: PeerID | str, public_key: bytes, stream_names: Sequence[str]) -> None:
        """Derive the stream key from the peer's Ed25519 key and accept ``stream_names`` from it.

        Raises:
            KeyMismatch: ``public_key`` is not the key of ``peer_id`` (Go does not check).
            InvalidKey: not a usable Ed25519 key (e.g. low order). InvalidStreamName.
        """
        self._require_started()
        pid = _pid(peer_id)
        validate_stream_names(stream_names, self.config.max_stream_name_length)
        if not isinstance(public_key, bytes | bytearray) or len(public_key) != 32:
            raise InvalidKey("the peer's public key must be 32 bytes", peer_id=str(pid))
        if not pid.matches_public_key(bytes(public_key)):
            raise KeyMismatch("this public key does not belong to the connection's peer ID", peer_id=str(pid))
        key = shared_key(self._key, bytes(public_key))
        peer = self._peer(pid)
        if peer.cipher is not None:
            peer.cipher.close()
        peer.cipher = StreamCipher(key)
        peer.allowed.update(stream_names)
        host = self._require_host()
        for name in stream_names:
            if protocol_id(name) not in host.protocols:
                host.set_stream_handler(protocol_id(name), self._accept_named_stream)
        if pid in self._book():
            self._book().update_public_key(pid, bytes(public_key))

    async def finalize_handshake(self, peer_id: PeerID | str) -> None:
        """Stop the handshake timer, close the handshake stream, go to Established."""
        self._require_started()
        peer = self._peer(_pid(peer_id))
        if peer.state not in (S.CONNECTED, S.ESTABLISHED):  # Established: a repeated handshake
            raise InvalidState(
                f"cannot finalize the handshake in state {peer.state}", peer_id=str(peer.peer_id)
            )
        if peer.handshake_timer is not None:
            peer.handshake_timer.cancel()
            peer.handshake_timer = None
        for stream in [s for s in peer.all_streams if s.name == HANDSHAKE_STREAM]:
            await stream.close()
        peer.streams.pop(HANDSHAKE_STREAM, None)
        self._set_state(peer, S.ESTABLISHED)
        if peer.peer_id in self._book():
            self._book().update_last_seen(peer.peer_id)

    async def complete_handshake(
        self, peer_id: PeerID | str, public_key: bytes, stream_names: Sequence[str]
    ) -> None:
        self.prepare_streams(peer_id, public_key, stream_names)
        await self.finalize_handshake(peer_id)

    # Messages.

    async def send(self, peer_id: PeerID | str, stream_name: str, data: bytes) -> None:
        """Send one message: as is on ``"handshake"``, else encrypted. Opens the stream lazily.

        Raises:
            MessageTooLarge, InvalidStreamName, PeerBlacklisted, InvalidState (no prepare_streams
            for this peer and name), ConnectionFailed (no connection could be made).
        """
        self._require_started()
        pid = _pid(peer_id)
        validate_stream_name(stream_name, self.config.max_stream_name_length)
        if len(data) > self.config.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds max_message_size {self.config.max_message_size}",
                peer_id=str(pid),
                stream=stream_name,
            )
        if self._book().is_blacklisted(pid):
            raise PeerBlacklisted("peer is blacklisted", peer_id=str(pid))
        peer = self._peer(pid)
        if stream_name == HANDSHAKE_STREAM:
            payload = bytes(data)
        else:
            if peer.cipher is None or stream_name not in peer.allowed:
                raise InvalidState(
                    "no stream key for this peer and stream: call prepare_streams() first",
                    peer_id=str(pid),
                    stream=stream_name,
                )
            payload = peer.cipher.encrypt(data)
        for attempt in range(3):
            try:
                stream = await self._send_stream(peer, stream_name)
                await stream.send(payload)
                break
            except StreamClosed:
                # The stream ended under us, or a Go peer reset the one we opened because it
                # holds its own (simultaneous first sends, PROTOCOL.md §4.3): its stream is
                # adopted as it arrives, so try again on it, or on a fresh one.
                if attempt == 2:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        peer.stats.record_sent(stream_name, len(data))

    def messages(self) -> AsyncIterator[IncomingMessage]:
        """Iterate over received messages (all peers, all streams) until the node stops."""
        return self._iterate_messages()

    async def receive(self, timeout: float | None = None) -> IncomingMessage:
        """The next received message (TimeoutError after ``timeout`` seconds)."""
        self._require_started()
        assert self._messages is not None
        return await asyncio.wait_for(self._messages.get(), timeout)

    def events(
        self, *, peer_ids: Collection[PeerID] | None = None, states: Collection[ConnectionState] | None = None
    ) -> EventSubscription:
        """A new subscription to connection events (optionally only some peers or states)."""
        sub = EventSubscription(
            maxsize=self.config.event_buffer_size,
            peer_ids=peer_ids,
            states=states,
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(sub)
        return sub

    # Statistics.

    def peer_statistics(self, peer_id: PeerID | str) -> PeerStats | None:
        peer = self._peers.get(_pid(peer_id))
        return peer.stats.snapshot() if peer is not None else None

    def messages_sent(self, peer_id: PeerID | str) -> int:
        peer = self._peers.get(_pid(peer_id))
        return peer.stats.messages_sent if peer is not None else 0

    # Internals: peers and states.

    def _peer(self, pid: PeerID) -> _Peer:
        peer = self._peers.get(pid)
        if peer is None:
            peer = self._peers[pid] = _Peer(pid)
        return peer

    def _set_state(self, peer: _Peer, state: ConnectionState, error: Exception | None = None) -> None:
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

    def _connected(self, peer: _Peer, *, outbound: bool) -> None:
        """Connecting -> Connected, with the handshake timer (Go: ``Manager.ConnectCtx``)."""
        peer.outbound = outbound
        self._set_state(peer, S.CONNECTED)
        if peer.handshake_timer is not None:
            peer.handshake_timer.cancel()
        loop = asyncio.get_running_loop()
        peer.handshake_timer = loop.call_later(self.config.handshake_timeout, self._handshake_expired, peer)
        if self._handshake is not None:
            self._spawn(self._handshake.connected(peer.peer_id, outbound))

    def _handshake_expired(self, peer: _Peer) -> None:
        peer.handshake_timer = None
        if peer.state is not S.CONNECTED:
            return
        self._set_state(peer, S.COOLDOWN, HandshakeTimeout("handshake timeout", peer_id=str(peer.peer_id)))
        self._spawn(self._close_connections(peer))
        loop = asyncio.get_running_loop()
        peer.cooldown_timer = loop.call_later(
            self.config.failed_handshake_cooldown, self._cooldown_over, peer
        )

    def _cooldown_over(self, peer: _Peer) -> None:
        peer.cooldown_timer = None
        if peer.state is S.COOLDOWN:
            self._spawn(self._after_cooldown(peer))

    async def _after_cooldown(self, peer: _Peer) -> None:
        await self._cleanup(peer)
        self._set_state(peer, S.DISCONNECTED, HandshakeTimeout("cooldown over after a handshake timeout"))
        self._maybe_reconnect(peer)

    async def _dial(self, peer: _Peer, addrs: list[Multiaddr]) -> None:
        if not self._has_room_for(peer.peer_id):
            raise LimitExceeded("max_peers reached", limit="max_peers", peer_id=str(peer.peer_id))
        self._set_state(peer, S.CONNECTING)
        try:
            await self._require_host().dial(peer.peer_id, addrs)
        except (GlueberryError, OSError) as exc:
            error = exc if isinstance(exc, GlueberryError) else ConnectionFailed(str(exc))
            self._set_state(peer, S.DISCONNECTED, error)
            self._maybe_reconnect(peer)
            raise error from None
        self._connected(peer, outbound=True)

    async def _disconnect(self, peer: _Peer, error: Exception | None = None) -> None:
        """Drop the peer on purpose (no reconnection); the Disconnected event carries ``error``."""
        peer.on_purpose = True
        self._cancel_reconnect(peer)
        self._cancel_timers(peer)
        await self._cleanup(peer)
        await self._close_connections(peer)
        self._set_state(peer, S.DISCONNECTED, error)

    async def _close_connections(self, peer: _Peer) -> None:
        for conn in self._require_host().connections(peer.peer_id):
            conn.close()

    async def _cleanup(self, peer: _Peer) -> None:
        """Forget what a Disconnected event wipes: streams, key, allowed names (Go: cleanupPeerResources)."""
        for stream in list(peer.all_streams):
            await stream.close()
        peer.all_streams.clear()
        peer.streams.clear()
        for fut in peer.opening.values():
            fut.cancel()
        peer.opening.clear()
        if peer.cipher is not None:
            peer.cipher.close()
            peer.cipher = None
        peer.allowed.clear()

    def _cancel_timers(self, peer: _Peer) -> None:
        for name in ("handshake_timer", "cooldown_timer"):
            timer = getattr(peer, name)
            if timer is not None:
                timer.cancel()
                setattr(peer, name, None)

    def _cancel_reconnect(self, peer: _Peer) -> None:
        if peer.reconnect_task is not None:
            peer.reconnect_task.cancel()
            peer.reconnect_task = None

    def _connection_lost(self, conn: Connection) -> None:
        """The host lost a connection; if it was the peer's last, the peer is Disconnected."""
        if not self._started:
            return
        peer = self._peers.get(conn.remote_peer_id)
        if peer is None or self._require_host().connections(peer.peer_id):
            return
        if peer.state in (S.CONNECTED, S.ESTABLISHED):
            self._cancel_timers(peer)
            self._spawn(self._lost(peer, conn.close_reason))

    async def _lost(self, peer: _Peer, reason: BaseException | None) -> None:
        await self._cleanup(peer)
        error = ConnectionClosed(f"connection lost: {reason}", peer_id=str(peer.peer_id))
        self._set_state(peer, S.DISCONNECTED, error)
        self._maybe_reconnect(peer)

    def _maybe_reconnect(self, peer: _Peer) -> None:
        book = self._book()
        if (
            self._started
            and not peer.on_purpose
            and peer.reconnect_task is None
            and peer.peer_id in book
            and not book.is_blacklisted(peer.peer_id)
        ):
            # A tracked task, so that stop() cancels it with the others.
            peer.reconnect_task = self._spawn(self._reconnect(peer))

    async def _reconnect(self, peer: _Peer) -> None:
        """Go's reconnection loop: delays min(base·2^n, max) ±10 %, at most max attempts."""
        cfg = self.config
        self._set_state(peer, S.RECONNECTING)
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
                self._set_state(peer, S.CONNECTING)
                try:
                    await self._require_host().dial(peer.peer_id, list(entry.multiaddrs))
                except (GlueberryError, OSError) as exc:
                    _log.info("%s: reconnection attempt %d failed: %s", peer.peer_id, attempt + 1, exc)
                    peer.state = S.RECONNECTING  # Connecting -> Reconnecting is silent in Go too
                    continue
                self._connected(peer, outbound=True)
                return
            self._set_state(peer, S.DISCONNECTED, ConnectionFailed("reconnection attempts exhausted"))
        finally:
            if peer.reconnect_task is asyncio.current_task():  # not a successor started meanwhile
                peer.reconnect_task = None

    async def _auto_connect(self, pid: PeerID) -> None:
        peer = self._peer(pid)
        if peer.state.is_active or peer.state is S.COOLDOWN:
            return
        try:
            await self.connect(pid)
        except GlueberryError as exc:
            _log.info("auto-connect to %s failed: %s", pid, exc)

    def _has_room_for(self, pid: PeerID) -> bool:
        host = self._require_host()
        connected = {c.remote_peer_id for c in host.connections() if c.is_open}
        if pid in connected or len(connected) < self.config.max_peers:
            return True
        self._refuse("max_peers")
        return False

    def _gate(self, pid: PeerID, outbound: bool) -> bool:
        """The host's gater: blacklist, max_peers, inbound attempt rate (our limits)."""
        if self._book().is_blacklisted(pid):
            self._refuse("blacklisted")
            return False
        if outbound:
            return True
        peer = self._peer(pid)
        rate = self.config.max_connection_attempts_per_minute
        if rate:
            if peer.attempts is None:
                peer.attempts = SlidingWindow(rate, 60.0)
            if not peer.attempts.allow(asyncio.get_running_loop().time()):
                self._refuse("max_connection_attempts_per_minute")
                return False
        return self._has_room_for(pid)

    def _refuse(self, limit: str) -> None:
        self.limit_refusals[limit] = self.limit_refusals.get(limit, 0) + 1

    # Internals: streams.

    async def _accept_handshake_stream(self, stream: Stream) -> None:
        peer = self._peer(stream.remote_peer_id)
        if peer.state is S.COOLDOWN:
            stream.reset()
            return
        if peer.state in (S.DISCONNECTED, S.RECONNECTING):
            # Go's RegisterIncomingConnection: the connection becomes visible with its handshake
            self._cancel_reconnect(peer)
            peer.on_purpose = False
            self._set_state(peer, S.CONNECTING)
            self._connected(peer, outbound=False)
        elif peer.state is S.ESTABLISHED and self._handshake is not None:
            # A new handshake stream from an established peer: it started over (a new connection,
            # e.g. a second browser session). Run the handshake again; the state stays Established.
            self._handshake.restarted(peer.peer_id)
        self._adopt(peer, GlueberryStream(stream, HANDSHAKE_STREAM, outbound=False))

    async def _accept_named_stream(self, stream: Stream) -> None:
        peer = self._peers.get(stream.remote_peer_id)
        name = stream_name_of(stream.protocol)
        if peer is None or peer.cipher is None or name not in peer.allowed:
            stream.reset()  # as Go: prepared for others, not for this peer
            return
        self._adopt(peer, GlueberryStream(stream, name, outbound=False))

    def _adopt(self, peer: _Peer, gstream: GlueberryStream) -> None:
        """Read ``gstream`` and make it the send stream for its name (the newest wins)."""
        peer.all_streams.add(gstream)
        peer.streams[gstream.name] = gstream
        gstream.start_reading(self._max_frame, self._on_payload, self._on_stream_closed)

    async def _send_stream(self, peer: _Peer, name: str) -> GlueberryStream:
        stream = peer.streams.get(name)
        if stream is not None and not stream.closed:
            return stream
        pending = peer.opening.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[GlueberryStream] = asyncio.get_running_loop().create_future()
        peer.opening[name] = fut
        try:
            raw = await self._require_host().new_stream(
                peer.peer_id, protocol_id(name), self._addrs_of(peer.peer_id)
            )
            gstream = GlueberryStream(raw, name, outbound=True)
            self._adopt(peer, gstream)
            fut.set_result(gstream)
            return gstream
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
            raise
        finally:
            peer.opening.pop(name, None)

    def _addrs_of(self, pid: PeerID) -> list[Multiaddr]:
        book = self._book()
        if pid in book:
            return list(book.get_peer(pid).multiaddrs)
        info = self._require_host().peer_info.get(pid)
        return list(info.listen_addrs) if info is not None else []

    async def _on_payload(self, gstream: GlueberryStream, payload: bytes) -> None:
        peer = self._peers.get(gstream.peer_id)
        if peer is None:
            return
        if gstream.name == HANDSHAKE_STREAM:
            data = payload
            if self._handshake is not None:
                await self._handshake.received(peer.peer_id, data)
                return
        else:
            cipher = peer.cipher
            if cipher is None:
                return  # keys wiped (Disconnected) while frames were in flight
            try:
                data = cipher.decrypt(payload)
            except DecryptionFailed as exc:
                self._decryption_failed(peer, exc)
                return
            if self._handshake is not None and peer.state is S.CONNECTED:
                await self._handshake.traffic(peer.peer_id)
        await self._pace(peer)
        peer.stats.record_received(gstream.name, len(data))
        queue = self._messages
        assert queue is not None
        message = IncomingMessage(peer.peer_id, gstream.name, data)
        if queue.full():
            await queue.put(message)  # backpressure: the remote stalls on its window
        else:
            queue.put_nowait(message)

    async def _pace(self, peer: _Peer) -> None:
        rate = self.config.max_messages_per_second
        if not rate:
            return
        loop = asyncio.get_running_loop()
        if peer.bucket is None:
            peer.bucket = TokenBucket(rate, max(rate, 1.0), loop.time())
        wait = peer.bucket.take(loop.time())
        if wait:
            peer.stats.rate_limited += 1
            self._refuse("max_messages_per_second")
            while wait:
                await asyncio.sleep(wait)
                wait = peer.bucket.take(loop.time())

    def _decryption_failed(self, peer: _Peer, exc: DecryptionFailed) -> None:
        self.decryption_errors += 1
        peer.stats.decryption_errors += 1
        _log.warning("%s: dropped a frame that failed to decrypt", peer.peer_id)
        callback = self.config.on_decryption_error
        if callback is not None:
            try:
                callback(str(peer.peer_id), exc)
            except Exception:
                _log.exception("on_decryption_error callback failed")

    def _on_stream_closed(self, gstream: GlueberryStream, error: BaseException | None) -> None:
        peer = self._peers.get(gstream.peer_id)
        if peer is None:
            return
        peer.all_streams.discard(gstream)
        if peer.streams.get(gstream.name) is gstream:
            # the next send opens a new stream; an older inbound one still open takes over
            del peer.streams[gstream.name]
            for other in peer.all_streams:
                if other.name == gstream.name and not other.closed:
                    peer.streams[gstream.name] = other

    # Internals: helpers.

    async def _iterate_messages(self) -> AsyncIterator[IncomingMessage]:
        self._require_started()
        queue = self._messages
        assert queue is not None
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            while True:
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                get = asyncio.ensure_future(queue.get())
                await asyncio.wait({get, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    return
                yield get.result()
        finally:
            stopped.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the background; stop() cancels and awaits it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("background task failed: %s: %s", type(exc).__name__, exc, exc_info=exc)

    def _require_started(self) -> None:
        if not self._started:
            raise NodeNotStarted("node not started")

    def _require_host(self) -> Host:
        if self._host is None:
            raise NodeNotStarted("node not started")
        return self._host

    def _book(self) -> AddressBook:
        if self._address_book is None:
            raise NodeNotStarted("node not started: the address book opens in start()")
        return self._address_book


def _pid(peer_id: PeerID | str) -> PeerID:
    return peer_id if isinstance(peer_id, PeerID) else PeerID.from_string(peer_id)
