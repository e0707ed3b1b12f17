"""The chat backend: a Glueberry peer (python-sdk) that runs the chat rooms of the web demo.

Browsers reach it through the gateway as ordinary Glueberry peers: each one connects with its own
peer ID, runs the Hello / PubKey / Complete handshake and sends JSON on the ``chat`` stream. The
node decrypts what a member sends; :class:`~glueberry_demo.rooms.ChatRooms` decides what goes to
whom; every outgoing message is encrypted for its recipient by ``node.send`` (one stream key per
peer), so the gateway in between sees only ciphertext.

Each peer has its own bounded outbox and sender task, so a slow member delays nobody else; a
member whose outbox overflows is disconnected (its page reconnects, rejoins and catches up from
the welcome history). A member leaves its rooms on ``leave`` or when its connection goes
(``Disconnected`` events, plus a periodic sweep in case an event was missed).

    backend = await run_chat_backend(key, "/ip4/127.0.0.1/tcp/0", "book.json")
    print(backend.peer_id, backend.addrs)
    ...
    await backend.stop()

Command line: ``python -m glueberry_demo.chat_backend --key-file chat.key``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry import (
    Config,
    ConnectionState,
    EventSubscription,
    GlueberryError,
    HelloHandshakeHandler,
    Multiaddr,
    Node,
    PeerID,
    fingerprint,
    generate_private_key,
    private_key_from_bytes,
)
from glueberry_gateway.server.keyfile import write_key_file

from .rooms import STREAM, ChatLimits, ChatRooms, Outgoing, encode

__all__ = ["ChatBackend", "main", "read_or_create_key", "run_chat_backend"]

_log = logging.getLogger("glueberry_demo.chat")

#: Messages waiting for one member before it counts as too slow and is disconnected.
OUTBOX_LIMIT: Final = 1000
#: How long one send may take before the member counts as gone.
SEND_TIMEOUT: Final = 10.0
#: How often members whose connection is gone are removed (in case an event was missed).
SWEEP_INTERVAL: Final = 10.0
_LIVE: Final = (ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.ESTABLISHED)


class _Outbox:
    """The messages waiting for one member, sent in order by one task."""

    def __init__(self, backend: ChatBackend, peer: str) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(OUTBOX_LIMIT)
        self.task = asyncio.ensure_future(self._run(backend))

    async def _run(self, backend: ChatBackend) -> None:
        while True:
            data = await self.queue.get()
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await backend.node.send(self.peer, STREAM, data)
            except (GlueberryError, TimeoutError) as exc:
                # The member went away (its Disconnected event removes it) or is stuck.
                _log.info("%s: could not send: %s", _short(self.peer), exc)
                if backend.node.connection_state(self.peer) is not ConnectionState.ESTABLISHED:
                    return


class ChatBackend:
    """A running chat backend. Create it with :func:`run_chat_backend` (or construct it and
    ``await start()``); ``await stop()`` ends it. Also an async context manager.

    Args:
        key: the backend's Ed25519 identity (a key or its 32-byte seed).
        listen: multiaddrs to listen on, e.g. ``"/ip4/127.0.0.1/tcp/0"``.
        address_book_path: the node's address book (JSON; browsers are not added to it).
        rooms: the rooms to serve; pass the same object to a restarted backend to keep history.
        name: what the backend calls itself in its Hello.
    """

    def __init__(
        self,
        key: Ed25519PrivateKey | bytes,
        listen: str | Sequence[str],
        address_book_path: str | os.PathLike[str],
        *,
        rooms: ChatRooms | None = None,
        name: str = "chat",
        max_peers: int = 1024,
    ) -> None:
        config = Config(
            key,
            address_book_path,
            [listen] if isinstance(listen, str) else list(listen),
            event_buffer_size=1000,
            max_peers=max_peers,
            max_messages_per_second=200.0,  # per member; over it the node stops reading it a while
        )
        self.handshake = HelloHandshakeHandler(streams=[STREAM], name=name)
        self.node = Node(config, handshake=self.handshake)
        self.rooms = rooms if rooms is not None else ChatRooms(ChatLimits())
        self.rooms.forget_members()  # nobody is connected to a backend that is just starting
        self._outboxes: dict[str, _Outbox] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._running = False

    # Identity.

    @property
    def peer_id(self) -> PeerID:
        return self.node.peer_id

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.node.peer_id)

    @property
    def addrs(self) -> list[Multiaddr]:
        """The addresses it listens on (``/ip4/127.0.0.1/tcp/PORT``, without ``/p2p/``)."""
        return self.node.addrs

    @property
    def running(self) -> bool:
        return self._running

    # Lifecycle.

    async def start(self) -> None:
        events = self.node.events(states=[ConnectionState.DISCONNECTED])
        await self.node.start()
        self._running = True
        self._tasks = [
            asyncio.ensure_future(self._receive()),
            asyncio.ensure_future(self._watch(events)),
            asyncio.ensure_future(self._sweep()),
        ]
        _log.debug("chat backend %s (%s) listening on %s", self.peer_id, self.fingerprint, _addrs(self.addrs))

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        for task in self._tasks:
            task.cancel()
        for outbox in self._outboxes.values():
            outbox.task.cancel()
        pending = [*self._tasks, *(o.task for o in self._outboxes.values())]
        self._outboxes.clear()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.node.stop()
        self.rooms.forget_members()
        _log.info("chat backend %s stopped", self.peer_id)

    async def __aenter__(self) -> ChatBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # The loops.

    async def _receive(self) -> None:
        async for message in self.node.messages():
            if message.stream_name != STREAM:
                _log.debug("%s: ignored a message on stream %r", _short(message.peer_id), message.stream_name)
                continue
            peer = str(message.peer_id)
            self._dispatch(self.rooms.handle(peer, message.data))

    async def _watch(self, events: EventSubscription) -> None:
        with events:
            async for event in events:
                self._gone(str(event.peer_id))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            for peer in self.rooms.peers:
                self._gone(peer)

    def _gone(self, peer: str) -> None:
        """The peer's connection went, unless it is already back (a Disconnected event can be read
        after the same peer connected again and rejoined)."""
        if self.node.connection_state(peer) in _LIVE:
            return
        outbox = self._outboxes.pop(peer, None)
        if outbox is not None:
            outbox.task.cancel()
        rooms = self.rooms.rooms_of(peer)
        if rooms:
            _log.info("%s disconnected: leaves %s", _short(peer), ", ".join(sorted(rooms)))
        self._dispatch(self.rooms.peer_gone(peer))

    def _dispatch(self, messages: list[Outgoing]) -> None:
        for item in messages:
            kind = item.message["t"]
            if kind == "error":
                _log.info("%s: refused: %s", _short(item.peer), item.message["text"])
            elif kind == "welcome":
                _log.info(
                    "%s joined %s as %r (%d members)",
                    _short(item.peer),
                    item.message["room"],
                    self.rooms.members(item.message["room"]).get(item.peer, "?"),
                    len(item.message["members"]),
                )
            self._send(item.peer, encode(item.message))

    def _send(self, peer: str, data: bytes) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None or outbox.task.done():
            outbox = self._outboxes[peer] = _Outbox(self, peer)
        try:
            outbox.queue.put_nowait(data)
        except asyncio.QueueFull:
            _log.warning("%s: %d messages waiting: too slow, disconnecting it", _short(peer), OUTBOX_LIMIT)
            outbox.task.cancel()
            del self._outboxes[peer]
            task = asyncio.ensure_future(self._drop(peer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _drop(self, peer: str) -> None:
        with contextlib.suppress(GlueberryError):
            await self.node.disconnect(peer)


async def run_chat_backend(
    key: Ed25519PrivateKey | bytes,
    listen: str | Sequence[str],
    address_book_path: str | os.PathLike[str],
    *,
    rooms: ChatRooms | None = None,
    name: str = "chat",
) -> ChatBackend:
    """Start a chat backend and return it (running; ``await backend.stop()`` ends it)."""
    backend = ChatBackend(key, listen, address_book_path, rooms=rooms, name=name)
    await backend.start()
    return backend


# Keys.


def read_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key in ``path`` (64 hex characters: the seed, as ``glueberry-gateway keygen`` writes
    it), or a new one written there (mode 0600). Returns (key, created)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = generate_private_key()
        write_key_file(path, key)
        return key, True
    try:
        return private_key_from_bytes(bytes.fromhex(text)), False
    except (ValueError, GlueberryError) as exc:
        raise ValueError(f"{path} does not hold a hex-encoded Ed25519 key: {exc}") from None


# The command line.


def _short(peer: object) -> str:
    text = str(peer)
    return f"{text[:8]}…{text[-6:]}" if len(text) > 16 else text


def _addrs(addrs: Sequence[Multiaddr]) -> str:
    return ", ".join(str(a) for a in addrs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m glueberry_demo.chat_backend",
        description="Run the chat backend of the Glueberry web demo: a Glueberry peer that browsers "
        "reach through a glueberry-gateway (configure it as a backend there).",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="where to listen (repeatable; default /ip4/127.0.0.1/tcp/0: a free port)",
    )
    parser.add_argument(
        "--key-file",
        required=True,
        type=Path,
        help="the backend's identity: 64 hex characters; created if missing (keep it to keep the peer ID)",
    )
    parser.add_argument(
        "--address-book",
        type=Path,
        help="the node's address book file (default: next to the key file, <key-file>.peers.json)",
    )
    parser.add_argument("--name", default="chat", help="the name sent in the handshake (default: chat)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        key, created = read_or_create_key(args.key_file)
    except (OSError, ValueError) as exc:
        print(f"chat_backend: error: {exc}", file=sys.stderr)
        return 2
    book = args.address_book or args.key_file.with_name(args.key_file.name + ".peers.json")
    try:
        backend = await run_chat_backend(key, args.listen or ["/ip4/127.0.0.1/tcp/0"], book, name=args.name)
    except (GlueberryError, OSError) as exc:
        print(f"chat_backend: error: cannot start: {exc}", file=sys.stderr)
        return 3
    if created:
        print(f"created a new identity in {args.key_file}")
    print(f"chat backend peer ID: {backend.peer_id}")
    print(f"fingerprint: {backend.fingerprint}")
    for addr in backend.addrs:
        print(f"listening on {addr}/p2p/{backend.peer_id}")
    print("Ctrl-C stops", flush=True)
    await stop.wait()
    await backend.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        logging.getLogger("glueberry").setLevel(logging.WARNING)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
