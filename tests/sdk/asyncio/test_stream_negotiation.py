"""Stream negotiation over real loopback TCP, from the driver's side: the timeouts it keeps, and
what an opener of a stream sees when the remote answers, stays silent, refuses or resets.

The remote is the misbehaving dialler of ``fake_peer.py``: the host opens streams towards it and
it answers (or not) with hand-written multistream bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from glueberry.exceptions import NegotiationFailed, StreamReset
from glueberry.p2p.asyncio import Connection, Host, HostConfig, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.multistream import HEADER, NA, encode_message
from glueberry.p2p.signer import LocalSigner
from tests.sdk.asyncio.fake_peer import FIN, RST, SYN, YAMUX_DATA, YAMUX_WINDOW_UPDATE, FakePeer, yamux_frame

TIMEOUT = 0.3
ECHO = "/echo/1.0.0"
WANTED = "/wanted/1.0.0"


async def _echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    host = Host(
        LocalSigner(generate_private_key()),
        HostConfig(negotiation_timeout=TIMEOUT, identify_timeout=TIMEOUT),
    )
    host.set_stream_handler(ECHO, _echo)
    await host.listen(["/ip4/127.0.0.1/tcp/0"])
    yield host
    await host.close()


@pytest.fixture
async def peer(host: Host) -> AsyncIterator[FakePeer]:
    target = host.addrs[0].tcp_target()
    assert target is not None
    peer = FakePeer()
    await peer.upgrade(target.host, target.port)
    yield peer
    await peer.close()


def connection_of(host: Host) -> Connection:
    (conn,) = host.connections()
    assert conn.is_open
    return conn


async def proposal_stream(peer: FakePeer, protocol: str) -> int:
    """The id of the stream on which the host proposes ``protocol`` (other streams, such as the
    host's identify, are skipped)."""
    proposal = encode_message(protocol)
    while True:
        type_, _, sid, _, data = await peer.read_frame()
        if type_ == YAMUX_DATA and proposal in data:
            return sid


async def data_until(peer: FakePeer, stream_id: int, tail: bytes) -> bytes:
    """What the host sent on ``stream_id`` until it ends with ``tail``."""
    out = bytearray()
    while not out.endswith(tail):
        _, _, sid, _, data = await peer.read_frame()
        if sid == stream_id:
            out += data
    return bytes(out)


async def assert_still_echoes(peer: FakePeer, stream_id: int) -> None:
    await peer.open_stream(stream_id, ECHO, data=b"ping")
    await peer.send_plain(yamux_frame(stream_id, type_=YAMUX_WINDOW_UPDATE, flags=FIN))
    assert (await peer.frames_until(stream_id, FIN)).endswith(b"ping")


class TestOpening:
    """What ``Connection.open_stream`` returns or raises."""

    async def test_agreed_with_data_pipelined_behind_the_answer(self, host: Host, peer: FakePeer) -> None:
        opening = asyncio.ensure_future(connection_of(host).open_stream([WANTED]))
        sid = await proposal_stream(peer, WANTED)
        await peer.send_plain(yamux_frame(sid, data=encode_message(HEADER) + encode_message(WANTED) + b"hi"))
        stream = await opening
        assert (stream.protocol, stream.outbound, stream.stream_id) == (WANTED, True, sid)
        assert await stream.read() == b"hi"

    async def test_refused_raises_negotiation_failed_and_resets(self, host: Host, peer: FakePeer) -> None:
        opening = asyncio.ensure_future(connection_of(host).open_stream([WANTED]))
        sid = await proposal_stream(peer, WANTED)
        await peer.send_plain(yamux_frame(sid, data=encode_message(HEADER) + encode_message(NA)))
        with pytest.raises(NegotiationFailed):
            await opening
        await peer.frames_until(sid, RST)

    async def test_no_answer_raises_negotiation_failed_after_the_timeout(
        self, host: Host, peer: FakePeer
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(NegotiationFailed, match="no answer"):
            await connection_of(host).open_stream([WANTED])
        assert loop.time() - start >= TIMEOUT * 0.9
        sid = await proposal_stream(peer, WANTED)
        await peer.frames_until(sid, RST)

    async def test_a_reset_by_the_remote_raises_stream_reset(self, host: Host, peer: FakePeer) -> None:
        opening = asyncio.ensure_future(connection_of(host).open_stream([WANTED]))
        sid = await proposal_stream(peer, WANTED)
        await peer.send_plain(yamux_frame(sid, type_=YAMUX_WINDOW_UPDATE, flags=RST, length=5))
        with pytest.raises(StreamReset, match="remote, code 5"):
            await opening

    async def test_cancelling_the_opener_resets_the_stream(self, host: Host, peer: FakePeer) -> None:
        conn = connection_of(host)
        opening = asyncio.ensure_future(conn.open_stream([WANTED]))
        sid = await proposal_stream(peer, WANTED)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await peer.frames_until(sid, RST)
        assert conn.is_open

    async def test_the_end_of_the_connection_fails_the_opener(self, host: Host, peer: FakePeer) -> None:
        opening = asyncio.ensure_future(connection_of(host).open_stream([WANTED]))
        await proposal_stream(peer, WANTED)
        await peer.close()
        with pytest.raises(StreamReset, match="connection closed"):
            await opening


class TestAccepting:
    """The remote's streams: the handler gets them once agreed; silent ones are reset in time."""

    async def test_a_stream_that_never_proposes_is_reset_after_the_timeout(
        self, host: Host, peer: FakePeer
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await peer.send_plain(yamux_frame(1, flags=SYN, data=encode_message(HEADER)))
        await peer.frames_until(1, RST, timeout=TIMEOUT * 10)
        assert loop.time() - start >= TIMEOUT * 0.9
        await assert_still_echoes(peer, 3)

    async def test_an_agreed_stream_outlives_the_timeout(self, host: Host, peer: FakePeer) -> None:
        await peer.open_stream(1, ECHO, data=b"one")
        await data_until(peer, 1, b"one")
        await asyncio.sleep(TIMEOUT * 2)
        await peer.send_plain(yamux_frame(1, data=b"two", flags=FIN))
        assert (await peer.frames_until(1, FIN)).endswith(b"two")
