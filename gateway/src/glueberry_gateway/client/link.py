"""One WebSocket of the gateway client with its sans-I/O core (asyncio): opening it (the upgrade and
its refusals, §2), and the reader and writer tasks that feed the core and write what it queues.

What the core's events mean is the client's business (:class:`~.asyncio.GatewayClient`): the link
hands it the events through ``on_events``. The link stops reading while the client's ``room`` is
not set (a session inbox is full), so the gateway stalls the backend instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from ..protocol.codes import CloseSocket, Code
from ..protocol.control import SUBPROTOCOL
from .core import ClientProtocol
from .errors import GatewayClosed, GatewayProtocolError

__all__ = ["Link", "open_websocket"]

# HTTP refusals of the upgrade (§2, §7) as the close code a gateway would otherwise use.
_HTTP_REFUSALS: Final = {
    400: Code.UNSUPPORTED_VERSION,
    403: Code.ORIGIN_NOT_ALLOWED,
    429: Code.RATE_LIMITED,
    503: Code.TOO_MANY_CONNECTIONS,
}


async def open_websocket(url: str, origin: str, max_size: int) -> ClientConnection:
    """The WebSocket to a gateway, with subprotocol ``glueberry.v1`` and ``Origin: origin``.

    Raises:
        GatewayClosed: refused (the HTTP status as the close code a gateway would use;
            ``resumable`` when a later attempt may succeed) or unreachable.
    """
    try:
        ws = await ws_connect(
            url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            origin=Origin(origin),
            compression=None,
            max_size=max_size,
            open_timeout=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = _HTTP_REFUSALS.get(status, 1006)
        transient = status >= 500 or status == 429
        raise GatewayClosed(code, f"upgrade refused: HTTP {status}", resumable=transient) from exc
    except (OSError, InvalidHandshake) as exc:
        raise GatewayClosed(1006, f"cannot connect to {url}: {exc}", resumable=True) from exc
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close(Code.UNSUPPORTED_VERSION, "glueberry.v1 not negotiated")
        raise GatewayClosed(Code.UNSUPPORTED_VERSION, "the gateway did not accept glueberry.v1")
    return ws


class Link:
    """One WebSocket and its core, with the reader and writer tasks serving them.

    Args:
        ws, core: the socket and its protocol state.
        on_events: called after the core was fed, to act on its events.
        room: set while the client may take more messages.
    """

    def __init__(
        self,
        ws: ClientConnection,
        core: ClientProtocol,
        on_events: Callable[[Link], None],
        room: asyncio.Event,
    ) -> None:
        self.ws = ws
        self.core = core
        self.wake = asyncio.Event()  # output queued in the core
        self.idle = asyncio.Event()  # the core's output was written (or the socket is gone)
        self.idle.set()
        self.ended = asyncio.Event()  # core.connection_closed() was processed
        self.auth: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.auth.add_done_callback(lambda f: f.cancelled() or f.exception())  # mark retrieved
        self.requests: dict[int, asyncio.Future[float | None]] = {}
        self.writer_done = False
        self._on_events = on_events
        self._room = room
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="gateway-client-reader"),
            asyncio.create_task(self._write_loop(), name="gateway-client-writer"),
        ]

    async def written(self) -> None:
        """Wait until everything the core queued so far was written (or the socket is gone)."""
        if not self.writer_done:
            self.idle.clear()
            self.wake.set()
            await self.idle.wait()

    async def stop(self) -> None:
        """Stop the tasks and close the socket (the core learns it is gone)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self.ended.is_set():
            await self.ws.close()
            self._socket_gone()

    async def _read_loop(self) -> None:
        ws, core = self.ws, self.core
        try:
            while True:
                if not self._room.is_set() and not await self._wait_for_room():
                    break
                message = await ws.recv()
                try:
                    if isinstance(message, str):
                        core.receive_text(message)
                    else:
                        core.receive_binary(message)
                except GatewayProtocolError as exc:
                    if not self.auth.done():
                        self.auth.set_exception(exc)
                    self._on_events(self)
                    self.wake.set()
                    await ws.wait_closed()
                    break
                self._on_events(self)
                self.wake.set()
        except ConnectionClosed:
            pass
        finally:
            self._socket_gone()

    async def _wait_for_room(self) -> bool:
        """Back-pressure: wait until no session inbox is full; False if the socket closed meanwhile."""
        room = asyncio.ensure_future(self._room.wait())
        closed = asyncio.ensure_future(self.ws.wait_closed())
        try:
            done, _ = await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            closed.cancel()
        return room in done

    async def _write_loop(self) -> None:
        ws, core = self.ws, self.core
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while items := core.data_to_send():
                    for item in items:
                        if isinstance(item, CloseSocket):
                            await ws.close(item.code, item.reason)
                            return
                        await ws.send(item)
                self.idle.set()
        except ConnectionClosed:
            pass
        finally:
            self.writer_done = True
            self.idle.set()

    def _socket_gone(self) -> None:
        if self.ended.is_set():
            return
        ws = self.ws
        code = ws.close_code if ws.close_code is not None else 1006
        self.core.connection_closed(code, ws.close_reason or "")
        self._on_events(self)
        self.idle.set()
