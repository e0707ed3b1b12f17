"""Bad input over real loopback TCP: each attack ends its own connection (or stream) with a typed
error, counted by the host, while the host and a well-behaved connection carry on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from glueberry.exceptions import ConnectionFailed, LocalProtocolError, PeerIDMismatch
from glueberry.p2p.asyncio import Connection, Host, HostConfig, Stream
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multistream import encode_message
from glueberry.p2p.signer import LocalSigner
from glueberry.p2p.yamux import YamuxConfig
from tests.sdk.asyncio.fake_peer import (
    ACK,
    FIN,
    RST,
    SYN,
    YAMUX_GO_AWAY,
    YAMUX_WINDOW_UPDATE,
    FakePeer,
    yamux_frame,
)

WINDOW = 256 * 1024


async def _echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def _reset(stream: Stream) -> None:
    await stream.readexactly(1)
    stream.reset()


async def _never_read(stream: Stream) -> None:
    await asyncio.sleep(3600)


@dataclass
class Setup:
    host: Host
    good: Connection
    port: int
    fakes: list[FakePeer] = field(default_factory=list)

    async def assert_still_serving(self) -> None:
        """The well-behaved connection still echoes."""
        stream = await self.good.open_stream(["/echo/1.0.0"])
        await stream.write(b"still here")
        await stream.close()
        assert await asyncio.wait_for(stream.read_all(100), 5) == b"still here"

    async def wait_error(self, name: str) -> None:
        for _ in range(100):
            if self.host.connection_errors.get(name):
                return
            await asyncio.sleep(0.02)
        pytest.fail(f"no {name} counted; errors: {self.host.connection_errors}")


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    config = HostConfig(yamux=YamuxConfig(receive_window=WINDOW))
    host = Host(LocalSigner(generate_private_key()), config)
    host.set_stream_handler("/echo/1.0.0", _echo)
    host.set_stream_handler("/reset/1.0.0", _reset)
    host.set_stream_handler("/slow/1.0.0", _never_read)
    (addr,) = await host.listen(["/ip4/127.0.0.1/tcp/0"])
    other = Host(LocalSigner(generate_private_key()))
    good = await other.dial(host.peer_id, [addr])
    target = addr.tcp_target()
    assert target is not None
    setup = Setup(host, good, target.port)
    yield setup
    for peer in setup.fakes:
        await peer.close()
    await other.close()
    await host.close()


async def fake(setup: Setup) -> FakePeer:
    peer = FakePeer()
    setup.fakes.append(peer)
    await peer.connect("127.0.0.1", setup.port)
    return peer


async def upgraded(setup: Setup) -> FakePeer:
    peer = FakePeer()
    setup.fakes.append(peer)
    await peer.upgrade("127.0.0.1", setup.port)
    return peer


class TestMultistreamAttacks:
    async def test_malformed_line(self, setup: Setup) -> None:
        peer = await fake(setup)
        await peer.send_raw(b"\x13/multistream/1.0.0X")
        assert await peer.closed_by_remote()
        await setup.wait_error("RemoteProtocolError")
        await setup.assert_still_serving()

    async def test_over_long_line(self, setup: Setup) -> None:
        peer = await fake(setup)
        await peer.send_raw(encode_message("/multistream/1.0.0") + b"\xff\x7f" + b"a" * 20000)
        assert await peer.closed_by_remote()
        await setup.wait_error("FrameTooLarge")
        await setup.assert_still_serving()

    async def test_unknown_security_protocol_gets_na(self, setup: Setup) -> None:
        peer = await fake(setup)
        await peer.send_raw(encode_message("/multistream/1.0.0") + encode_message("/tls/1.0.0"))
        answer = encode_message("/multistream/1.0.0") + encode_message("na")
        assert await peer.read_raw(len(answer)) == answer
        peer.writer.close()
        await setup.wait_error("ConnectionClosed")
        await setup.assert_still_serving()

    async def test_silent_peer_is_dropped_after_the_upgrade_timeout(self) -> None:
        host = Host(LocalSigner(generate_private_key()), HostConfig(upgrade_timeout=0.3))
        (addr,) = await host.listen(["/ip4/127.0.0.1/tcp/0"])
        target = addr.tcp_target()
        assert target is not None
        peer = FakePeer()
        await peer.connect(target.host, target.port)
        assert await peer.closed_by_remote(timeout=3)
        await peer.close()
        await host.close()


class TestNoiseAttacks:
    async def test_bad_identity_signature(self, setup: Setup) -> None:
        peer = await fake(setup)
        await peer.negotiate_security()
        await peer.noise_handshake(payload=peer.payload(signature=b"\x00" * 64))
        assert await peer.closed_by_remote()
        await setup.wait_error("InvalidSignature")
        await setup.assert_still_serving()

    async def test_largest_noise_message_of_garbage(self, setup: Setup) -> None:
        """A 65535-byte message (the 2-byte length's limit) that is not a valid msg3."""
        peer = await fake(setup)
        await peer.negotiate_security()
        await peer.send_raw(b"\x00\x20" + b"\x01" * 32)  # msg1: an ephemeral key
        (length,) = (int.from_bytes(await peer.read_raw(2), "big"),)
        await peer.read_raw(length)
        await peer.send_raw(b"\xff\xff" + b"\x00" * 65535)
        assert await peer.closed_by_remote()
        await setup.wait_error("NoiseDecryptError")
        await setup.assert_still_serving()

    async def test_truncated_noise_message_then_eof(self, setup: Setup) -> None:
        peer = await fake(setup)
        await peer.negotiate_security()
        await peer.send_raw(b"\x00\x20" + b"\x01" * 10)
        peer.writer.write_eof()
        assert await peer.closed_by_remote()
        await setup.wait_error("RemoteProtocolError")
        await setup.assert_still_serving()

    async def test_dialled_peer_id_differs(self, setup: Setup) -> None:
        """We dial the host's address expecting someone else: the dial fails, nothing else does."""
        dialler = Host(LocalSigner(generate_private_key()))
        someone_else = PeerID.from_private_key(generate_private_key())
        with pytest.raises(PeerIDMismatch):
            await dialler.dial(someone_else, setup.host.addrs)
        with pytest.raises(ConnectionFailed):
            await dialler.dial(someone_else, [])
        conn = await dialler.dial(setup.host.peer_id, setup.host.addrs)
        assert conn.is_open
        await dialler.close()
        await setup.assert_still_serving()


class TestYamuxAttacks:
    async def test_bad_version(self, setup: Setup) -> None:
        peer = await upgraded(setup)
        await peer.send_plain(b"\x01" + yamux_frame(1, flags=SYN)[1:])
        assert await peer.closed_by_remote()
        await setup.wait_error("MuxerProtocolError")
        await setup.assert_still_serving()

    async def test_unknown_type(self, setup: Setup) -> None:
        peer = await upgraded(setup)
        await peer.send_plain(yamux_frame(1, type_=7, flags=SYN))
        assert await peer.closed_by_remote()
        await setup.wait_error("MuxerProtocolError")
        await setup.assert_still_serving()

    async def test_wrong_stream_id_parity(self, setup: Setup) -> None:
        peer = await upgraded(setup)
        await peer.send_plain(yamux_frame(2, type_=YAMUX_WINDOW_UPDATE, flags=SYN))
        assert await peer.closed_by_remote()
        await setup.wait_error("MuxerProtocolError")
        await setup.assert_still_serving()

    async def test_window_overflow(self, setup: Setup) -> None:
        """A handler that never reads: the window fills; a sender that ignores it is cut off."""
        peer = await upgraded(setup)
        await peer.open_stream(1, "/slow/1.0.0")
        await peer.send_plain(yamux_frame(1, data=b"\x00" * (WINDOW + 1)))
        assert await peer.closed_by_remote()
        await setup.wait_error("FlowControlError")
        await setup.assert_still_serving()

    async def test_goaway_is_sent_on_protocol_error(self, setup: Setup) -> None:
        peer = await upgraded(setup)
        await peer.send_plain(yamux_frame(1, type_=9))
        while True:
            type_, _, sid, length, _ = await peer.read_frame()
            if type_ == YAMUX_GO_AWAY:
                assert (sid, length) == (0, 1)  # protocol error
                break
        assert await peer.closed_by_remote()

    async def test_data_on_a_reset_stream_is_dropped_and_the_connection_lives(self, setup: Setup) -> None:
        peer = await upgraded(setup)
        await peer.open_stream(1, "/reset/1.0.0", data=b"x")
        await peer.frames_until(1, RST)
        await peer.send_plain(yamux_frame(1, data=b"late data"))
        await peer.open_stream(3, "/echo/1.0.0", data=b"ping")
        await peer.send_plain(yamux_frame(3, type_=YAMUX_WINDOW_UPDATE, flags=FIN))
        got = await peer.frames_until(3, FIN)
        assert got.endswith(b"ping")
        await setup.assert_still_serving()

    async def test_a_stream_opened_and_reset_in_one_read_ends_alone(self, setup: Setup) -> None:
        """SYN, proposal and RST arrive together: our negotiation answers have nowhere to go,
        which must cost the stream only, not the connection."""
        peer = await upgraded(setup)
        proposal = encode_message("/multistream/1.0.0") + encode_message("/echo/1.0.0")
        await peer.send_plain(
            yamux_frame(1, flags=SYN, data=proposal) + yamux_frame(1, type_=YAMUX_WINDOW_UPDATE, flags=RST)
        )
        await peer.open_stream(3, "/echo/1.0.0", data=b"ping")
        await peer.send_plain(yamux_frame(3, type_=YAMUX_WINDOW_UPDATE, flags=FIN))
        got = await peer.frames_until(3, FIN)
        assert got.endswith(b"ping")
        assert setup.host.connection_errors == {}

    async def test_stream_limit_refuses_excess_streams_only(self) -> None:
        config = HostConfig(yamux=YamuxConfig(max_streams=4, receive_window=WINDOW))
        host = Host(LocalSigner(generate_private_key()), config)
        host.set_stream_handler("/slow/1.0.0", _never_read)
        (addr,) = await host.listen(["/ip4/127.0.0.1/tcp/0"])
        target = addr.tcp_target()
        assert target is not None
        peer = FakePeer()
        await peer.upgrade(target.host, target.port)
        for sid in (1, 3, 5, 7, 9):
            await peer.open_stream(sid, "/slow/1.0.0")
        # the host's own identify stream counts too, so at most three of ours fit
        acked: set[int] = set()
        refused: set[int] = set()
        while len(acked | refused) < 5:
            _, flags, sid, _, _ = await peer.read_frame()
            if sid % 2 == 1 and flags & ACK:
                acked.add(sid)
            if sid % 2 == 1 and flags & RST:
                refused.add(sid)
        assert {1, 3} <= acked
        assert len(refused) >= 2
        assert not acked & refused
        assert not await peer.closed_by_remote(timeout=0.3)  # the connection itself lives
        await peer.close()
        await host.close()


class _WrongSigner(LocalSigner):
    """Signs with another key than the one it names: its Noise proof cannot verify."""

    async def sign(self, message: bytes) -> bytes:
        return generate_private_key().sign(message)


async def test_a_signer_whose_proof_does_not_verify_is_refused_before_any_connection() -> None:
    listener = Host(LocalSigner(generate_private_key()))
    addrs = await listener.listen(["/ip4/127.0.0.1/tcp/0"])
    dialler = Host(LocalSigner(generate_private_key()))
    wrong = Host(_WrongSigner(generate_private_key()))
    try:
        with pytest.raises(LocalProtocolError, match="does not verify"):
            await dialler.dial(listener.peer_id, addrs, signer=_WrongSigner(generate_private_key()))
        with pytest.raises(LocalProtocolError, match="does not verify"):
            await wrong.listen(["/ip4/127.0.0.1/tcp/0"])
        assert listener.connections() == []  # nothing reached the listener
        conn = await dialler.dial(listener.peer_id, addrs)  # the host's own proof is fine
        assert conn.remote_peer_id == listener.peer_id
    finally:
        for host in (dialler, wrong, listener):
            await host.close()
