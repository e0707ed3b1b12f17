"""A libp2p host over TCP: listen, dial, route inbound streams to handlers, open streams.

Like go-libp2p's basic host, it answers identify and ping on every connection and runs identify
towards the remote (go-libp2p waits for it before opening streams, PROTOCOL.md §2.2). Unlike it,
it speaks only TCP + Noise + yamux, which is all Glueberry needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...exceptions import (
    ConnectionClosed,
    ConnectionFailed,
    GlueberryError,
    InvalidArgument,
    InvalidState,
    LimitExceeded,
    PeerIDMismatch,
)
from ...version import __version__
from ..connection import ConnectionCore
from ..identify import IdentifyInfo
from ..keys import PeerID
from ..multiaddr import Multiaddr
from ..noise import check_identity_signature, generate_static_key, noise_signature_payload
from ..signer import Signer
from ..yamux import YamuxConfig
from . import services
from .connection import Connection, ConnectionCallbacks, Stream

__all__ = ["ConnectionGater", "Host", "HostConfig", "StreamHandler"]

_log = logging.getLogger("glueberry.p2p")

StreamHandler = Callable[[Stream], Awaitable[None]]
# Called after the security handshake with (peer, outbound); return False to refuse the peer.
ConnectionGater = Callable[[PeerID, bool], bool]


@dataclass(slots=True)
class HostConfig:
    """Tunables of a :class:`Host`; the defaults suit a server with a few hundred peers."""

    agent_version: str = f"glueberry-py/{__version__}"
    dial_timeout: float = 30.0  # TCP connect + Noise + yamux (Go's Connect uses 30 s)
    upgrade_timeout: float = 10.0  # an inbound connection must be secured and muxed by then
    negotiation_timeout: float = 10.0  # multistream-select on a stream (go-libp2p: 10 s)
    max_connections: int = 1024
    max_pending_connections: int = 64  # inbound connections still in their handshake
    identify_timeout: float = 5.0
    yamux: YamuxConfig = field(default_factory=lambda: YamuxConfig(receive_window=1024 * 1024))

    def validate(self) -> None:
        for name in ("dial_timeout", "upgrade_timeout", "negotiation_timeout", "identify_timeout"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"HostConfig.{name} must be positive")
        if self.max_connections < 1 or self.max_pending_connections < 1:
            raise InvalidArgument("HostConfig connection limits must be at least 1")


class Host(ConnectionCallbacks):
    """Listen and dial with one identity; each connection can also use another (see :meth:`dial`)."""

    def __init__(self, signer: Signer, config: HostConfig | None = None) -> None:
        self.config = config or HostConfig()
        self.config.validate()
        self.signer = signer
        self.peer_id = signer.peer_id
        self._handlers: dict[str, StreamHandler] = {}
        self._matchers: list[tuple[Callable[[str], bool], StreamHandler]] = []
        self._connections: dict[PeerID, list[Connection]] = {}
        self._servers: list[asyncio.Server] = []
        self._listen_addrs: list[Multiaddr] = []
        self._static_key: X25519PrivateKey = generate_static_key()
        self._signature: bytes | None = None
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._push_handle: asyncio.Handle | None = None
        self.peer_info: dict[PeerID, IdentifyInfo] = {}
        self.gater: ConnectionGater | None = None
        self.on_connected: list[Callable[[Connection], None]] = []
        self.on_disconnected: list[Callable[[Connection], None]] = []
        self.refused: dict[str, int] = {}  # connections refused, by reason
        self.connection_errors: dict[str, int] = {}  # connections ended by a remote's error, by type
        services.install(self)

    # Lifecycle.

    async def listen(self, addrs: Iterable[Multiaddr | str]) -> list[Multiaddr]:
        """Listen on TCP multiaddrs (port 0 picks one); return the addresses bound."""
        await self._own_signature()
        for addr in addrs:
            maddr = addr if isinstance(addr, Multiaddr) else Multiaddr.parse(addr)
            target = maddr.tcp_target()
            if target is None:
                raise InvalidArgument(f"can only listen on /ip4|ip6/…/tcp/N, not {maddr}")
            server = await asyncio.get_running_loop().create_server(
                self._inbound_protocol, target.host, target.port
            )
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self._listen_addrs.append(Multiaddr.from_tcp(host, port))
        return list(self._listen_addrs)

    @property
    def addrs(self) -> list[Multiaddr]:
        return list(self._listen_addrs)

    async def close(self) -> None:
        """Stop listening, close every connection and wait for them to go."""
        self._closing = True
        for server in self._servers:
            server.close()
        conns = self.connections()
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                await asyncio.wait_for(conn.wait_closed(), 2.0)
        for server in self._servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    # Streams.

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``: ``handler(stream)`` runs in its own task for each inbound stream."""
        self._handlers[protocol] = handler
        self._protocols_changed()

    def set_stream_matcher(self, match: Callable[[str], bool], handler: StreamHandler) -> None:
        """Serve every protocol ``match`` accepts that has no handler of its own (e.g. all
        ``/glueberry/stream/<name>/1.0.0``); such protocols are not listed in identify."""
        self._matchers.append((match, handler))

    def remove_stream_handler(self, protocol: str) -> None:
        if self._handlers.pop(protocol, None) is not None:
            self._protocols_changed()

    @property
    def protocols(self) -> list[str]:
        return sorted(self._handlers)

    async def new_stream(
        self, peer_id: PeerID, protocols: Sequence[str] | str, addrs: Sequence[Multiaddr] = ()
    ) -> Stream:
        """Open a stream to ``peer_id`` (dialling ``addrs`` if not connected)."""
        if isinstance(protocols, str):
            protocols = [protocols]
        conn = self.connection(peer_id) or await self.dial(peer_id, addrs)
        return await conn.open_stream(protocols)

    # Connections.

    def connection(self, peer_id: PeerID) -> Connection | None:
        """The newest open connection to ``peer_id`` made with our own identity."""
        for conn in reversed(self._connections.get(peer_id, [])):
            if conn.is_open and conn.local_peer_id == self.peer_id:
                return conn
        return None

    def connections(self, peer_id: PeerID | None = None) -> list[Connection]:
        if peer_id is None:
            return [c for cs in self._connections.values() for c in cs]
        return list(self._connections.get(peer_id, []))

    async def dial(
        self,
        peer_id: PeerID,
        addrs: Sequence[Multiaddr],
        *,
        signer: Signer | None = None,
        static_key: X25519PrivateKey | None = None,
    ) -> Connection:
        """Open a new connection to ``peer_id``, trying ``addrs`` in order.

        With ``signer`` the connection carries that identity instead of the host's: the Noise
        static key is ``static_key`` (fresh by default) and its libp2p signature comes from the
        signer — the gateway uses this to dial as a browser.

        Raises:
            ConnectionFailed: no address worked (the last error is chained).
            PeerIDMismatch: the remote is someone else.
        """
        if self._closing:
            raise InvalidState("host is closed")
        if len(self.connections()) >= self.config.max_connections:
            self._count_refusal("max_connections")
            raise LimitExceeded("too many connections", limit="max_connections")
        if signer is None:
            static_key = self._static_key
            signature = await self._own_signature()
            signer = self.signer
        else:
            static_key = static_key or generate_static_key()
            signature = await _sign_static_key(signer, static_key)
        targets = [a.tcp_target() for a in addrs]
        usable = [t for t in targets if t is not None]
        if not usable:
            raise ConnectionFailed(f"no TCP address to dial for {peer_id}", peer_id=str(peer_id))
        last: BaseException | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.dial_timeout
        for target in usable:
            core = ConnectionCore(
                initiator=True,
                static_key=static_key,
                identity_key=signer.public_key,
                identity_signature=signature,
                expected_peer=peer_id,
                yamux_config=self.config.yamux,
                signature_checked=True,  # by _sign_static_key
                supports=self.supports,
            )
            try:
                remaining = max(0.01, deadline - loop.time())
                async with asyncio.timeout(remaining):
                    _, conn = await loop.create_connection(
                        functools.partial(self._make_connection, core, signer), target.host, target.port
                    )
                await conn.wait_ready(max(0.01, deadline - loop.time()))
                # Like go-libp2p's Connect, return once identify ran: the remote has then
                # registered the connection too (our side is ready one flight earlier).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.identify_done), self.config.identify_timeout)
            except PeerIDMismatch:
                raise
            except (OSError, TimeoutError, GlueberryError) as exc:
                last = exc
                continue
            if not conn.is_open:  # e.g. the remote's gater refused us right after the handshake
                last = conn.close_reason or ConnectionClosed("the remote closed the connection")
                continue
            return conn
        raise ConnectionFailed(f"could not connect to {peer_id}: {last}", peer_id=str(peer_id)) from last

    async def ping(self, peer_id: PeerID) -> float:
        """Round-trip time in seconds of one ``/ipfs/ping/1.0.0`` exchange."""
        return await services.ping(self, peer_id)

    def supports(self, protocol: str) -> bool:
        """Whether a stream the remote opens may use ``protocol`` (our connections' cores ask)."""
        return self._handler_for(protocol) is not None

    def _handler_for(self, protocol: str) -> StreamHandler | None:
        handler = self._handlers.get(protocol)
        if handler is None:
            handler = next((h for match, h in self._matchers if match(protocol)), None)
        return handler

    # ConnectionCallbacks (called by our connections).

    def secured(self, conn: Connection) -> None:
        peer = conn.remote_peer_id
        if self.gater is not None and not self.gater(peer, conn.outbound):
            self._count_refusal("gater")
            raise ConnectionClosed(f"connection with {peer} refused by the gater", peer_id=str(peer))
        if len(self.connections()) >= self.config.max_connections:
            self._count_refusal("max_connections")
            raise LimitExceeded("too many connections", limit="max_connections")
        self._connections.setdefault(peer, []).append(conn)

    def stream_opened(self, stream: Stream) -> None:
        handler = self._handler_for(stream.protocol)
        if handler is None:  # removed while the stream negotiated
            stream.reset()
            return
        self.spawn(self._run_handler(handler, stream))

    def closed(self, conn: Connection) -> None:
        if not conn.core.upgraded and not conn.outbound:
            self._pending -= 1
        if conn.error is not None:
            name = type(conn.error).__name__
            self.connection_errors[name] = self.connection_errors.get(name, 0) + 1
        try:
            peer = conn.remote_peer_id
        except InvalidState:
            return
        conns = self._connections.get(peer)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._connections[peer]
            if conn.is_open or conn.core.upgraded:
                for callback in self.on_disconnected:
                    callback(conn)

    # Internals.

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, handler: StreamHandler, stream: Stream) -> None:
        try:
            await handler(stream)
        except GlueberryError as exc:
            _log.debug("handler for %s ended: %s", stream.protocol, exc)
            stream.reset()
        except Exception:
            _log.exception("handler for %s failed", stream.protocol)
            stream.reset()

    def _make_connection(self, core: ConnectionCore, signer: Signer) -> Connection:
        conn = Connection(
            core,
            self,
            local_peer_id=signer.peer_id,
            local_public_key=signer.public_key,
            negotiation_timeout=self.config.negotiation_timeout,
        )
        self.spawn(self._after_upgrade(conn))
        return conn

    def _inbound_protocol(self) -> Connection:
        assert self._signature is not None
        core = ConnectionCore(
            initiator=False,
            static_key=self._static_key,
            identity_key=self.signer.public_key,
            identity_signature=self._signature,
            yamux_config=self.config.yamux,
            signature_checked=True,  # by _sign_static_key
            supports=self.supports,
        )
        conn = self._make_connection(core, self.signer)
        self._pending += 1
        if self._pending > self.config.max_pending_connections or self._closing:
            self._count_refusal("max_pending_connections" if not self._closing else "closing")
            conn.loop.call_soon(conn.abort, LimitExceeded("too many pending connections", limit="pending"))
        return conn

    async def _after_upgrade(self, conn: Connection) -> None:
        try:
            await conn.wait_ready(
                self.config.upgrade_timeout if not conn.outbound else self.config.dial_timeout
            )
        except (TimeoutError, GlueberryError, OSError):
            return
        if not conn.outbound:
            self._pending -= 1
        for callback in self.on_connected:
            callback(conn)
        await services.identify_remote(self, conn, self.config.identify_timeout)

    async def _own_signature(self) -> bytes:
        if self._signature is None:
            self._signature = await _sign_static_key(self.signer, self._static_key)
        return self._signature

    def _count_refusal(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def _protocols_changed(self) -> None:
        if self._push_handle is None and self._connections:
            with contextlib.suppress(RuntimeError):  # no running loop: nobody to tell yet
                self._push_handle = asyncio.get_running_loop().call_soon(self._push_identify)

    def _push_identify(self) -> None:
        self._push_handle = None
        for conn in self.connections():
            if conn.is_open:
                self.spawn(services.push_identify(self, conn, self.config.identify_timeout))

    def identify_info_for(self, conn: Connection) -> IdentifyInfo:
        """What we tell the remote about ourselves on ``conn`` (its identity may be a borrowed one)."""
        return IdentifyInfo(
            agent_version=self.config.agent_version,
            public_key=conn.local_public_key,
            listen_addrs=tuple(self._listen_addrs) if conn.local_peer_id == self.peer_id else (),
            observed_addr=conn.remote_addr,
            protocols=tuple(self.protocols),
        )


async def _sign_static_key(signer: Signer, static_key: X25519PrivateKey) -> bytes:
    """``signer``'s libp2p identity proof for the Noise static key (noise/README.md payload),
    verified here once, so that connections using it need not check it again.

    Raises:
        LocalProtocolError: the signer's signature does not verify.
    """
    static_public_key = static_key.public_key().public_bytes_raw()
    signature = await signer.sign(noise_signature_payload(static_public_key))
    check_identity_signature(signer.public_key, signature, static_public_key)
    return signature
