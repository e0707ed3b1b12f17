"""Streams over real sockets, and what they hold once they are over. Read through a data callback
(no task per stream, as the gateway relays them): the data and the end arrive in order, then the
callback is let go. Read with read(): the reset is raised without tying the stream into a cycle.
Either way an owner that holds its stream is freed at once, not by a later garbage collection."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator

import pytest

from glueberry.exceptions import StreamReset
from glueberry.p2p.asyncio import Host, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.signer import LocalSigner

PROTOCOL = "/test/callback/1.0.0"


class Owner:
    """Holds its stream, and the stream's callback holds it: a cycle while the stream lives."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.received: list[bytes] = []
        self.ended = asyncio.get_running_loop().create_future()
        stream.set_data_callback(self.on_data)

    def on_data(self, data: bytes) -> None:
        if not data:
            self.ended.set_result(None)
            return
        self.received.append(data)
        self.stream.acknowledge(len(data))


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
async def hosts() -> AsyncIterator[tuple[Host, Host, asyncio.Queue[Owner]]]:
    owners: asyncio.Queue[Owner] = asyncio.Queue()
    server, client = Host(LocalSigner(generate_private_key())), Host(LocalSigner(generate_private_key()))

    async def handler(stream: Stream) -> None:
        owners.put_nowait(Owner(stream))

    server.set_stream_handler(PROTOCOL, handler)
    addrs = await server.listen(["/ip4/127.0.0.1/tcp/0"])
    await client.dial(server.peer_id, addrs)
    yield server, client, owners
    await client.close()
    await server.close()


async def open_to_owner(
    hosts: tuple[Host, Host, asyncio.Queue[Owner]], *chunks: bytes
) -> tuple[Stream, Owner]:
    """Open a stream from the client, write ``chunks``, and return it with the server's owner."""
    server, client, owners = hosts
    stream = await client.new_stream(server.peer_id, [PROTOCOL])
    for chunk in chunks:
        await stream.write(chunk)
    return stream, await asyncio.wait_for(owners.get(), 5)


async def test_data_then_the_end_and_the_owner_is_freed(
    hosts: tuple[Host, Host, asyncio.Queue[Owner]], no_gc: None
) -> None:
    stream, owner = await open_to_owner(hosts, b"one", b"two")
    stream.close_write()
    await asyncio.wait_for(owner.ended, 5)
    assert b"".join(owner.received) == b"onetwo"
    owner.stream.close_write()  # both ways over: the connection forgets the stream
    await asyncio.sleep(0.05)
    gone = weakref.ref(owner)
    del owner
    assert gone() is None  # freed by its reference count, with the collector off


async def test_a_reset_ends_it_and_the_owner_is_freed(
    hosts: tuple[Host, Host, asyncio.Queue[Owner]], no_gc: None
) -> None:
    stream, owner = await open_to_owner(hosts, b"half")
    stream.reset()
    await asyncio.wait_for(owner.ended, 5)
    gone = weakref.ref(owner)
    del owner
    assert gone() is None


async def test_a_reader_that_saw_the_reset_leaves_no_cycle(
    hosts: tuple[Host, Host, asyncio.Queue[Owner]], no_gc: None
) -> None:
    server, client, _ = hosts
    seen: asyncio.Queue[Stream] = asyncio.Queue()

    async def reader(stream: Stream) -> None:
        while await read_or_reset(stream):
            pass
        with pytest.raises(StreamReset):
            await stream.read()  # raised again: the same failure, each time
        seen.put_nowait(stream)

    async def read_or_reset(stream: Stream) -> bool:
        try:
            return bool(await stream.read())
        except StreamReset:
            return False

    server.set_stream_handler("/test/reader/1.0.0", reader)
    stream = await client.new_stream(server.peer_id, ["/test/reader/1.0.0"])
    await stream.write(b"data")
    stream.reset()
    remote = await asyncio.wait_for(seen.get(), 5)
    await asyncio.sleep(0.05)
    gone = weakref.ref(remote)
    del remote
    assert gone() is None
