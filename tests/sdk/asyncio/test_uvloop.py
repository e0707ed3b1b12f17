"""The host runs on uvloop too (its transports are not asyncio.Transport subclasses)."""

from __future__ import annotations

import asyncio

import uvloop

from glueberry.p2p.asyncio import Host, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.signer import LocalSigner


async def _echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def _round_trip() -> bytes:
    a = Host(LocalSigner(generate_private_key()))
    b = Host(LocalSigner(generate_private_key()))
    b.set_stream_handler("/echo/1.0.0", _echo)
    addrs = await b.listen(["/ip4/127.0.0.1/tcp/0"])
    try:
        stream = await a.new_stream(b.peer_id, "/echo/1.0.0", addrs)
        await stream.write(b"over uvloop")
        await stream.close()
        return await asyncio.wait_for(stream.read_all(100), 5)
    finally:
        await a.close()
        await b.close()


def test_echo_over_uvloop() -> None:
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_round_trip()) == b"over uvloop"
    finally:
        loop.close()
