"""What a node's Glueberry streams receive, on its way to the application (PROTOCOL.md §7–§8).

A stream hands its complete payloads to :meth:`Inbox.deliver` (no task per stream). Each payload
is the handshake stream's message — for the node's handshake handler, or the application — or a
named stream's encrypted frame, decrypted with the peer's key (a frame that fails to decrypt is
counted and dropped, as Go drops it). Messages for the application go through one bounded queue.

Most payloads are taken at once. One that has to wait — for the handshake handler, the per-peer
message rate, or room in the queue — waits in its stream's :class:`~._peer.Backlog`, and so does
every later payload of that stream, in order, worked through by one task. The window bytes the
payloads hold are released only once they are taken, so a full queue stalls the remote sender on
its yamux window: nothing is dropped (Go drops silently).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

from ._peer import Backlog, Peer
from .auto_handshake import HandshakeHandler
from .config import HANDSHAKE_STREAM, Config
from .events import ConnectionState, IncomingMessage
from .exceptions import DecryptionFailed
from .limits import TokenBucket
from .streams import GlueberryStream

__all__ = ["Inbox"]

_log = logging.getLogger("glueberry")


class _Untouched:
    """A payload nothing was done with yet (as opposed to its decrypted plaintext)."""


_UNTOUCHED: Final = _Untouched()


class Inbox:
    """The receiving side of a node (module docstring).

    Args:
        config: ``message_buffer_size``, ``max_messages_per_second``, ``on_decryption_error``.
        handshake: the node's handshake handler, if it runs one.
        spawn: runs a coroutine as a task the node tracks (and cancels when it stops).
        refuse: counts a refusal by a limit's name.
    """

    def __init__(
        self,
        config: Config,
        handshake: HandshakeHandler | None,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        refuse: Callable[[str], None],
    ) -> None:
        self._config = config
        self._handshake = handshake
        self._spawn = spawn
        self._refuse = refuse
        self._queue: asyncio.Queue[IncomingMessage] = asyncio.Queue(config.message_buffer_size)
        self.decryption_errors = 0

    def reset(self) -> None:
        """An empty queue (the node starts again)."""
        self._queue = asyncio.Queue(self._config.message_buffer_size)

    # From the streams.

    def deliver(self, peer: Peer, stream: GlueberryStream, payloads: list[bytes], held: int) -> None:
        """A stream's ``on_payloads``: take the payloads in order; release ``held`` once taken."""
        backlog = peer.backlogs.get(stream)
        if backlog is not None:
            backlog.add(payloads, held)
            return
        for i, payload in enumerate(payloads):
            data = self._take_now(peer, stream, payload)
            if data is not None:  # it must wait: it and those after it go to a backlog, in order
                backlog = peer.backlogs[stream] = Backlog()
                backlog.add(payloads[i:], held)
                if not isinstance(data, _Untouched):
                    _, _, release = backlog.payloads[0]
                    backlog.payloads[0] = (payload, data, release)  # decrypted already
                backlog.task = self._spawn(self._work_through(peer, stream, backlog))
                return
        stream.release(held)

    def _take_now(self, peer: Peer, stream: GlueberryStream, payload: bytes) -> bytes | _Untouched | None:
        """Take ``payload`` if nothing has to wait (None); otherwise return where it stands for
        :meth:`_take`: untouched, or decrypted."""
        handler = self._handshake
        if stream.name == HANDSHAKE_STREAM:
            if handler is not None:
                return _UNTOUCHED  # the handler's turn
            data = payload
        else:
            plaintext = self._decrypt(peer, payload)
            if plaintext is None:
                return None
            data = plaintext
            if handler is not None and peer.state is ConnectionState.CONNECTED:
                return data  # the handler learns of the traffic first
        if self._queue.full() or not self._may_pass(peer):
            return data
        peer.stats.record_received(stream.name, len(data))
        self._queue.put_nowait(IncomingMessage(peer.peer_id, stream.name, data))
        return None

    async def _take(self, peer: Peer, stream: GlueberryStream, payload: bytes, data: bytes | None) -> None:
        """:meth:`_take_now` with the waits: the handler, the message rate, room in the queue.
        ``data``: the payload's plaintext if it was decrypted already."""
        handler = self._handshake
        if data is None:
            if stream.name == HANDSHAKE_STREAM and handler is not None:
                await handler.received(peer.peer_id, payload)
                return
            plaintext = payload if stream.name == HANDSHAKE_STREAM else self._decrypt(peer, payload)
            if plaintext is None:
                return
            data = plaintext
        if (
            stream.name != HANDSHAKE_STREAM
            and handler is not None
            and peer.state is ConnectionState.CONNECTED
        ):
            await handler.traffic(peer.peer_id)
        await self._pace(peer)
        peer.stats.record_received(stream.name, len(data))
        await self._queue.put(IncomingMessage(peer.peer_id, stream.name, data))  # the remote stalls meanwhile

    async def _work_through(self, peer: Peer, stream: GlueberryStream, backlog: Backlog) -> None:
        """Take the backlog's payloads in order; each delivery's window goes back once its last
        payload is taken, so the sender is stalled only by what really waits."""
        try:
            while backlog.payloads:
                payload, data, release = backlog.payloads.popleft()
                await self._take(peer, stream, payload, data)
                if release:
                    stream.release(release)
        finally:
            if peer.backlogs.get(stream) is backlog:
                del peer.backlogs[stream]

    def _decrypt(self, peer: Peer, payload: bytes) -> bytes | None:
        cipher = peer.cipher
        if cipher is None:
            return None  # keys wiped (Disconnected) while frames were in flight
        try:
            return cipher.decrypt(payload)
        except DecryptionFailed as exc:
            self.decryption_errors += 1
            peer.stats.decryption_errors += 1
            _log.warning("%s: dropped a frame that failed to decrypt", peer.peer_id)
            callback = self._config.on_decryption_error
            if callback is not None:
                try:
                    callback(str(peer.peer_id), exc)
                except Exception:
                    _log.exception("on_decryption_error callback failed")
            return None

    # The per-peer message rate.

    def _bucket(self, peer: Peer, rate: float, now: float) -> TokenBucket:
        if peer.bucket is None:
            peer.bucket = TokenBucket(rate, max(rate, 1.0), now)
        return peer.bucket

    def _may_pass(self, peer: Peer) -> bool:
        """Whether the peer's next message is within its rate now (a token is taken if so)."""
        rate = self._config.max_messages_per_second
        if not rate:
            return True
        now = asyncio.get_running_loop().time()
        return not self._bucket(peer, rate, now).take(now)

    async def _pace(self, peer: Peer) -> None:
        rate = self._config.max_messages_per_second
        if not rate:
            return
        loop = asyncio.get_running_loop()
        bucket = self._bucket(peer, rate, loop.time())
        wait = bucket.take(loop.time())
        if wait:
            peer.stats.rate_limited += 1
            self._refuse("max_messages_per_second")
            while wait:
                await asyncio.sleep(wait)
                wait = bucket.take(loop.time())

    # To the application.

    async def receive(self, timeout: float | None) -> IncomingMessage:
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def messages(self, stopped: asyncio.Event) -> AsyncIterator[IncomingMessage]:
        """Messages until ``stopped`` is set."""
        queue = self._queue
        ended = asyncio.ensure_future(stopped.wait())
        try:
            while True:
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                get = asyncio.ensure_future(queue.get())
                await asyncio.wait({get, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    return
                yield get.result()
        finally:
            ended.cancel()
