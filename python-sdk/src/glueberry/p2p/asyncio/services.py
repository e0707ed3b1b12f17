"""The two services go-libp2p runs on every connection: identify (and identify push) and ping.

They know their host only as a :class:`ServiceHost`, so this module does not import host.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..._varint import decode_uvarint
from ...exceptions import GlueberryError, RemoteProtocolError, StreamClosed
from ..identify import IDENTIFY_PROTOCOL, IDENTIFY_PUSH_PROTOCOL, MAX_IDENTIFY_SIZE, IdentifyInfo
from ..keys import PeerID
from .connection import Connection, Stream

__all__ = ["PING_PROTOCOL", "ServiceHost", "identify_remote", "install", "ping", "push_identify"]

PING_PROTOCOL = "/ipfs/ping/1.0.0"
PING_SIZE = 32
_log = logging.getLogger("glueberry.p2p")


class ServiceHost(Protocol):
    """What the services need from the host that runs them."""

    peer_info: dict[PeerID, IdentifyInfo]  # what each remote told us in identify

    def identify_info_for(self, conn: Connection) -> IdentifyInfo:
        """What we tell the remote of ``conn`` about ourselves."""

    def set_stream_handler(self, protocol: str, handler: Callable[[Stream], Awaitable[None]]) -> None: ...

    def connection(self, peer_id: PeerID) -> Connection | None: ...


def install(host: ServiceHost) -> None:
    async def answer_identify(stream: Stream) -> None:
        await stream.write(host.identify_info_for(stream.connection).encode_delimited())
        await stream.close()

    async def accept_push(stream: Stream) -> None:
        info = await _read_identify(stream)
        await stream.close()  # both sides closed: the stream is gone and its slot free
        host.peer_info[stream.remote_peer_id] = info

    async def answer_ping(stream: Stream) -> None:
        # Echo 32-byte payloads until the dialler closes or resets (go-libp2p resets when done).
        while True:
            try:
                payload = await stream.readexactly(PING_SIZE)
            except StreamClosed:
                await stream.close()
                return
            await stream.write(payload)

    host.set_stream_handler(IDENTIFY_PROTOCOL, answer_identify)
    host.set_stream_handler(IDENTIFY_PUSH_PROTOCOL, accept_push)
    host.set_stream_handler(PING_PROTOCOL, answer_ping)


async def identify_remote(host: ServiceHost, conn: Connection, timeout: float) -> None:
    """Ask the remote who it is; store the answer in ``host.peer_info`` and mark identify done."""
    try:
        async with asyncio.timeout(timeout):
            stream = await conn.open_stream([IDENTIFY_PROTOCOL])
            info = await _read_identify(stream)
            await stream.close()
        host.peer_info[conn.remote_peer_id] = info
    except (GlueberryError, TimeoutError) as exc:
        _log.debug("identify with %r failed: %s", conn, exc)
    finally:
        if not conn.identify_done.done():
            conn.identify_done.set_result(None)


async def push_identify(host: ServiceHost, conn: Connection, timeout: float) -> None:
    """Tell the remote our protocols changed (``/ipfs/id/push/1.0.0``)."""
    try:
        async with asyncio.timeout(timeout):
            stream = await conn.open_stream([IDENTIFY_PUSH_PROTOCOL])
            await stream.write(host.identify_info_for(conn).encode_delimited())
            await stream.close()
            await stream.read_all(1024)  # until the remote closes too (or resets)
    except (GlueberryError, TimeoutError) as exc:
        _log.debug("identify push to %r failed: %s", conn, exc)


async def ping(host: ServiceHost, peer_id: PeerID) -> float:
    conn = host.connection(peer_id)
    if conn is None:
        raise StreamClosed(f"not connected to {peer_id}", peer_id=str(peer_id))
    stream = await conn.open_stream([PING_PROTOCOL])
    try:
        payload = os.urandom(PING_SIZE)
        start = conn.loop.time()
        await stream.write(payload)
        answer = await stream.readexactly(PING_SIZE)
        rtt = conn.loop.time() - start
        if answer != payload:
            raise RemoteProtocolError("ping answer differs from the payload", peer_id=str(peer_id))
        return rtt
    finally:
        stream.reset()


async def _read_identify(stream: Stream) -> IdentifyInfo:
    """One varint-delimited identify message, read until the remote closes (bounded)."""
    data = await stream.read_all(MAX_IDENTIFY_SIZE + 10)
    length, pos = decode_uvarint(data)
    if length > MAX_IDENTIFY_SIZE or pos + length > len(data):
        raise RemoteProtocolError(f"identify message of {length} bytes does not fit what was sent")
    # go-libp2p may split a large message in several; the first holds everything we use
    return IdentifyInfo.decode(data[pos : pos + length])
