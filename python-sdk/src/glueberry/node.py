"""The Glueberry node: Go's ``glueberry.Node`` in Python idiom.

Theory of operation
-------------------
A node owns a libp2p :class:`~glueberry.p2p.asyncio.Host`, an address book and one record per
peer (:class:`~._peer.Peer`: connection state, the stream key, the allowed stream names and the
Glueberry streams). The application drives the handshake on the ``handshake`` stream, then calls
:meth:`Node.prepare_streams` (derive the key) and :meth:`Node.finalize_handshake`
(→ Established); see :mod:`glueberry.handshake` for a ready-made one.

Three parts do the work behind this class's API:

* :class:`~._connections.PeerConnections` — the peers' connection state machine: dial, handshake
  timer and cooldown, loss, reconnection, the limits on who may connect;
* :class:`~glueberry.streams.GlueberryStream` in each peer's :class:`~glueberry.streams.StreamTable`
  — framing, and which stream of a name is sent on;
* :class:`~._inbox.Inbox` — decryption, the message rate and the one bounded queue of messages.

Invariants:

1. At most one *send* stream per (peer, name); inbound streams are always accepted when the
   peer may use the name, read to their end, and the newest becomes the send stream
   (PROTOCOL.md §4.3: Go resets duplicates, which loses data on simultaneous first sends).
2. State changes go through :meth:`PeerConnections.set_state <._connections.PeerConnections.set_state>`,
   which checks :data:`~glueberry.events.TRANSITIONS` and emits exactly one
   :class:`~glueberry.events.ConnectionEvent` per change.
3. A ``Disconnected`` event wipes the peer's key, allowed names and streams (as Go does); unlike
   Go, losing the last connection to a peer produces that event, then reconnection if the peer is
   in the address book and was not disconnected on purpose.
4. Received messages go through one bounded queue; when it is full, the window bytes of what
   waits are not released, so the yamux windows stall the senders: nothing is dropped (Go drops
   silently).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._connections import PeerConnections
from ._inbox import Inbox
from ._peer import Peer
from .addressbook import AddressBook, PeerEntry
from .auto_handshake import HandshakeHandler
from .config import HANDSHAKE_STREAM, Config, validate_stream_name, validate_stream_names
from .events import ConnectionState, EventSubscription, IncomingMessage
from .exceptions import (
    ConnectionClosed,
    InvalidKey,
    InvalidState,
    KeyMismatch,
    MessageTooLarge,
    NodeAlreadyStarted,
    NodeNotStarted,
    PeerBlacklisted,
    StreamClosed,
)
from .p2p.asyncio import Host, HostConfig, Stream
from .p2p.keys import PeerID, private_key_from_bytes
from .p2p.multiaddr import Multiaddr
from .p2p.signer import LocalSigner
from .p2p.yamux import YamuxConfig
from .stats import PeerStats
from .streams import HANDSHAKE_PROTOCOL, GlueberryStream, protocol_id, stream_name_of
from .version import ProtocolVersion, __version__
from .wire.cipher import OVERHEAD, StreamCipher, shared_key
from .wire.framing import outer_length

__all__ = ["Node"]

_log = logging.getLogger("glueberry")
S = ConnectionState


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
        self._subscriptions: set[EventSubscription] = set()
        self._max_frame = outer_length(config.max_message_size + OVERHEAD)
        self._started = False
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.limit_refusals: dict[str, int] = {}
        self._handshake = handshake
        self._inbox = Inbox(config, handshake, self._spawn, self._refuse)
        self._connections = PeerConnections(
            config,
            handshake,
            host=self._require_host,
            book=self._book,
            started=lambda: self._started,
            spawn=self._spawn,
            refuse=self._refuse,
            subscriptions=self._subscriptions,
        )
        self._peers = self._connections.peers
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
        host.gater = self._connections.gate
        host.on_disconnected.append(self._connections.connection_lost)
        host.set_stream_handler(HANDSHAKE_PROTOCOL, self._accept_handshake_stream)
        self._inbox.reset()
        await host.listen(self.config.listen_addrs)
        self._started = True
        self._stopped.clear()
        _log.info("node started: %s listening on %s", self.peer_id, ", ".join(map(str, host.addrs)))
        for entry in self._address_book.list_peers():
            self._spawn(self._connections.auto_connect(entry.peer_id))

    async def stop(self) -> None:
        """Close every stream and connection, forget keys, end iterators (Go's ``Stop``)."""
        if not self._started:
            raise NodeNotStarted("node not started")
        self._started = False
        self._stopped.set()
        for peer in self._peers.values():
            peer.cancel_timers()
            peer.wipe()
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
            self._spawn(self._connections.auto_connect(pid))
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
            await self._connections.disconnect(peer)

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
        await self._connections.connect(_pid(peer_id))

    async def disconnect(self, peer_id: PeerID | str) -> None:
        """Close streams and connections with the peer, forget its key; no reconnection."""
        self._require_started()
        await self._connections.disconnect(self._connections.peer(_pid(peer_id)))

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
        peer.cancel_reconnect()
        self._connections.set_state(peer, S.DISCONNECTED, ConnectionClosed("reconnection cancelled"))

    async def fail_peer(self, peer_id: PeerID | str, error: Exception) -> None:
        """Disconnect a peer because its handshake failed; the Disconnected event carries
        ``error`` and no reconnection follows."""
        await self._connections.disconnect(self._connections.peer(_pid(peer_id)), error)

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
        peer = self._connections.peer(pid)
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
        peer = self._connections.peer(_pid(peer_id))
        if peer.state not in (S.CONNECTED, S.ESTABLISHED):  # Established: a repeated handshake
            raise InvalidState(
                f"cannot finalize the handshake in state {peer.state}", peer_id=str(peer.peer_id)
            )
        if peer.handshake_timer is not None:
            peer.handshake_timer.cancel()
            peer.handshake_timer = None
        for stream in peer.streams:
            if stream.name == HANDSHAKE_STREAM:
                stream.close()
        self._connections.set_state(peer, S.ESTABLISHED)
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
        peer = self._connections.peer(pid)
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
                stream = peer.streams.sender(stream_name) or await peer.send_stream(
                    stream_name, lambda: self._open_stream(peer, stream_name)
                )
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
        self._require_started()
        return self._inbox.messages(self._stopped)

    async def receive(self, timeout: float | None = None) -> IncomingMessage:
        """The next received message (TimeoutError after ``timeout`` seconds)."""
        self._require_started()
        return await self._inbox.receive(timeout)

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

    @property
    def decryption_errors(self) -> int:
        """Frames dropped because they did not decrypt, from every peer (PROTOCOL.md §8.5)."""
        return self._inbox.decryption_errors

    def messages_sent(self, peer_id: PeerID | str) -> int:
        peer = self._peers.get(_pid(peer_id))
        return peer.stats.messages_sent if peer is not None else 0

    def _refuse(self, limit: str) -> None:
        self.limit_refusals[limit] = self.limit_refusals.get(limit, 0) + 1

    # Internals: streams.

    async def _accept_handshake_stream(self, stream: Stream) -> None:
        peer = self._connections.peer(stream.remote_peer_id)
        if peer.state is S.COOLDOWN:
            stream.reset()
            return
        if peer.state in (S.DISCONNECTED, S.RECONNECTING):
            # Go's RegisterIncomingConnection: the connection becomes visible with its handshake
            peer.cancel_reconnect()
            peer.on_purpose = False
            self._connections.set_state(peer, S.CONNECTING)
            self._connections.connected(peer, outbound=False)
        elif peer.state is S.ESTABLISHED and self._handshake is not None:
            # A new handshake stream from an established peer: it started over (a new connection,
            # e.g. a second browser session). Run the handshake again; the state stays Established.
            self._handshake.restarted(peer.peer_id)
        self._adopt(peer, stream, HANDSHAKE_STREAM, outbound=False)

    async def _accept_named_stream(self, stream: Stream) -> None:
        peer = self._peers.get(stream.remote_peer_id)
        name = stream_name_of(stream.protocol)
        if peer is None or peer.cipher is None or name not in peer.allowed:
            stream.reset()  # as Go: prepared for others, not for this peer
            return
        self._adopt(peer, stream, name, outbound=False)

    def _adopt(self, peer: Peer, stream: Stream, name: str, *, outbound: bool) -> GlueberryStream:
        """Read ``stream`` and make it the send stream for its name (the newest wins)."""
        return peer.streams.adopt(
            stream,
            name,
            outbound=outbound,
            max_frame_size=self._max_frame,
            on_payloads=self._on_payloads,
            on_end=self._on_stream_end,
        )

    async def _open_stream(self, peer: Peer, name: str) -> GlueberryStream:
        raw = await self._require_host().new_stream(
            peer.peer_id, protocol_id(name), self._addrs_of(peer.peer_id)
        )
        return self._adopt(peer, raw, name, outbound=True)

    def _addrs_of(self, pid: PeerID) -> list[Multiaddr]:
        book = self._book()
        if pid in book:
            return list(book.get_peer(pid).multiaddrs)
        info = self._require_host().peer_info.get(pid)
        return list(info.listen_addrs) if info is not None else []

    def _on_payloads(self, gstream: GlueberryStream, payloads: list[bytes], held: int) -> None:
        peer = self._peers.get(gstream.peer_id)
        if peer is None:
            gstream.release(held)
            return
        self._inbox.deliver(peer, gstream, payloads, held)

    def _on_stream_end(self, gstream: GlueberryStream, error: BaseException | None) -> None:
        peer = self._peers.get(gstream.peer_id)
        if peer is not None:
            peer.streams.remove(gstream)  # the next send opens a new stream if none is left

    # Internals: helpers.

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
