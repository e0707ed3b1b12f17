"""The one outbound queue of a browser socket: order, batching, back-pressure, slow consumers
(docs/gateway-protocol.md §5.6, §7).

Everything for the browser goes through it, in order: control messages from the socket's core and
data frames from its sessions. A data frame carries an *ack*, called once the WebSocket has taken
it (or it was dropped): that is when its backend stream gets its window back, so a browser that
reads slowly stalls its backends instead of filling memory here.

* **Eager sends.** When the writer is idle and the queue empty, a message is written at once,
  without a task switch (the usual case); a send that would wait is finished by the writer.
* **Batches.** For a browser that takes them, the data frames delivered within one event-loop
  turn leave as one batch message — one WebSocket write (§5.6).
* **Slow consumers.** Past ``outbound_queue_bytes`` for ``slow_consumer_timeout`` (or past twice
  that size at once), or a single write blocked that long, the socket is a slow consumer (4010):
  the owner is told, once.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Protocol

from starlette.websockets import WebSocketDisconnect

from ..protocol.codes import CloseSocket, Code
from ..protocol.frames import pack_batches
from .metrics import Traffic
from .session import Ack
from .settings import Limits

__all__ = ["BATCH_BYTES", "Outbound", "WebSocketSender", "run_until_suspended"]

#: The largest batch the gateway sends (§5.6): bigger bursts go as several.
BATCH_BYTES: Final = 64 * 1024
# What a broken socket raises from a send: the writer stops.
_SEND_ERRORS: Final = (RuntimeError, OSError, WebSocketDisconnect)

Item = str | bytes | CloseSocket


class WebSocketSender(Protocol):
    """The two sends the queue needs (a Starlette ``WebSocket`` has them)."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, data: str) -> None: ...


class Outbound:
    """The outbound queue of one socket (module docstring).

    Args:
        ws: where messages go.
        close_ws: closes the WebSocket with a code (idempotent); the writer calls it on reaching
            a :class:`~.core.CloseSocket`.
        limits: ``outbound_queue_bytes`` and ``slow_consumer_timeout``.
        on_slow_consumer: called once when the browser does not read in time.
        traffic: where the data frames sent to the browser are counted.
    """

    def __init__(
        self,
        ws: WebSocketSender,
        close_ws: Callable[[Code, str], Awaitable[None]],
        limits: Limits,
        on_slow_consumer: Callable[[], None],
        traffic: Traffic | None = None,
    ) -> None:
        self._ws = ws
        self._traffic = traffic or Traffic()
        self._close_ws = close_ws
        self._limit = limits.outbound_queue_bytes
        self._timeout = limits.slow_consumer_timeout
        self._on_slow_consumer = on_slow_consumer
        self._loop = asyncio.get_running_loop()  # asking for it costs a getpid() each time (3.11)
        self.batch = False  # the browser takes batch messages
        self.last_write = time.monotonic()
        self._queue: deque[tuple[Item, Ack | None]] = deque()
        self._queued = 0
        self._work: asyncio.Future[None] | None = None  # the idle writer waits on it (made lazily)
        self._writer_idle = False  # the writer waits for work: push may send directly
        self._inflight: tuple[asyncio.Future[None], int, Ack | None] | None = None
        self._full_since: float | None = None
        self._sending_since: float | None = None
        self._closed = False  # a CloseSocket was queued, or a send failed: nothing more goes in
        self._slow = False  # the writer stopped: what comes now waits for drop()
        self._held: list[bytes] = []  # data frames for the batch sent at the end of this loop turn
        self._held_acks: list[Ack] = []
        self._held_flush: asyncio.Handle | None = None

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written (the slow-consumer bound applies to this)."""
        return self._queued

    # Input.

    def send_frames(self, frames: list[bytes], ack: Ack | None) -> None:
        """Queue data frames in order; ``ack`` is called once the last was written or dropped."""
        traffic = self._traffic
        traffic.frames_to_browser += len(frames)
        traffic.bytes_to_browser += sum(map(len, frames))
        if not self.batch:
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                self.push(frame, ack if i == last else None)
            return
        # Hold the frames until the end of this event-loop turn: whatever the backends deliver to
        # this browser meanwhile leaves as one batch message, one WebSocket write (§5.6).
        self._held += frames
        if ack is not None:
            self._held_acks.append(ack)
        if self._held_flush is None:
            self._held_flush = self._loop.call_soon(self._send_held)

    def push(self, item: Item, ack: Ack | None = None) -> None:
        """Queue one message (a text, a binary message, or the close that ends the queue)."""
        if self._held and not isinstance(item, bytes):  # a notice goes after the data sent before it
            self._send_held()
        if self._closed:
            if ack is not None:
                ack()  # after the close: dropped
            return
        if isinstance(item, CloseSocket):
            self._closed = True
        elif self._writer_idle and not self._queue:
            self._send_now(item, ack)
            return
        self._queue.append((item, ack))
        self._queued += _size(item)
        if self._queued > self._limit and not self._slow:
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            if self._queued > 2 * self._limit or now - self._full_since > self._timeout:
                self._slow_consumer()
        self._wake()

    def close(self, code: Code, reason: str) -> None:
        """End the queue: what is queued goes out, then the WebSocket closes with ``code``."""
        self.push(CloseSocket(code, reason))

    def check(self, now: float) -> None:
        """Called about once a second: a write blocked, or the queue full, for too long."""
        timeout = self._timeout
        if not self._slow and (
            (self._sending_since is not None and now - self._sending_since > timeout)
            or (self._full_since is not None and now - self._full_since > timeout)
        ):
            self._slow_consumer()

    def drop(self) -> int:
        """Drop what is queued or held (their acks are called); returns how many messages."""
        if self._held_flush is not None:
            self._held_flush.cancel()
            self._held_flush = None
        for held_ack in self._held_acks:
            held_ack()
        self._held, self._held_acks = [], []
        dropped = len(self._queue)
        while self._queue:
            _, ack = self._queue.popleft()
            if ack is not None:
                ack()
        self._queued = 0
        return dropped

    # The writer.

    async def run(self) -> None:
        """Write the queue in order until its close (then close the WebSocket) or a send fails.
        A send that blocks too long is caught by :meth:`check`."""
        queue = self._queue
        ws = self._ws
        try:
            while True:
                if self._inflight is not None:  # an eager send that could not finish at once
                    pending, size, inflight_ack = self._inflight
                    try:
                        await pending
                    finally:
                        self._inflight = None
                        self._sent(size, inflight_ack)
                    continue
                if not queue:
                    if self._slow or self._closed:
                        return  # a slow consumer (its owner closes the socket), or a send failed
                    self._writer_idle = True
                    self._work = self._loop.create_future()
                    await self._work
                    self._work = None
                    self._writer_idle = False
                    continue
                item, ack = queue.popleft()
                if isinstance(item, CloseSocket):
                    self._queued -= _size(item)
                    await self._close_ws(Code(item.code), item.reason)
                    return
                self._sending_since = time.monotonic()
                try:
                    if isinstance(item, bytes):
                        await ws.send_bytes(item)
                    else:
                        await ws.send_text(item)
                finally:
                    self._sent(len(item), ack)
                if self._full_since is not None and self._queued <= self._limit:
                    self._full_since = None
        except _SEND_ERRORS:
            self._closed = True  # the socket is broken: its reader sees it end

    # Internals.

    def _send_now(self, item: str | bytes, ack: Ack | None) -> None:
        self._writer_idle = False
        self._sending_since = time.monotonic()
        send = self._ws.send_bytes(item) if isinstance(item, bytes) else self._ws.send_text(item)
        try:
            pending = run_until_suspended(send)
        except _SEND_ERRORS:
            pending = None
            self._closed = True
        if pending is None:
            self._sending_since = None
            self.last_write = time.monotonic()
            self._writer_idle = not self._closed
            if ack is not None:
                ack()
            if self._closed:
                self._wake()
            return
        self._inflight = (pending, len(item), ack)
        self._queued += len(item)
        self._wake()

    def _sent(self, size: int, ack: Ack | None) -> None:
        self._sending_since = None
        self._queued -= size
        self.last_write = time.monotonic()
        if ack is not None:
            ack()

    def _send_held(self) -> None:
        if self._held_flush is not None:
            self._held_flush.cancel()
            self._held_flush = None
        frames, acks = self._held, self._held_acks
        if not frames:
            return
        self._held, self._held_acks = [], []
        ack = None if not acks else acks[0] if len(acks) == 1 else functools.partial(_call_all, acks)
        messages = pack_batches(frames, BATCH_BYTES)
        last = len(messages) - 1
        for i, message in enumerate(messages):  # the acks go with the last
            self.push(message, ack if i == last else None)

    def _slow_consumer(self) -> None:
        self._slow = True
        self._on_slow_consumer()
        self._wake()

    def _wake(self) -> None:
        work = self._work
        if work is not None and not work.done():
            work.set_result(None)


def _size(item: Item) -> int:
    return 0 if isinstance(item, CloseSocket) else len(item)


def _call_all(acks: list[Ack]) -> None:
    for ack in acks:
        ack()


def run_until_suspended(coro: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
    """Run ``coro`` in place until it finishes (None) or first waits; then go on in a task and
    return it. Saves a task switch per message when, as usual, the send does not wait."""
    try:
        waited = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, waited))


async def _resume(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    # What a Task does for a coroutine suspended on a future: wait for it, then step on.
    while True:
        if isinstance(waited, asyncio.Future):
            waited._asyncio_future_blocking = False
            try:
                await asyncio.wait([waited])
            except asyncio.CancelledError as exc:
                try:
                    waited = coro.throw(exc)
                except StopIteration:
                    return
                continue
        try:
            waited = coro.send(None)
        except StopIteration:
            return
