"""One relayed session (glueberry_gateway.server.session.BackendSession) over a real libp2p
connection on loopback, with its browser side recorded (a BrowserLink that keeps what it is
given and acknowledges when the test says the browser took it): frames both ways, the backend's
window held until the browser's socket took its frames, stream limits and ends, and the resume
buffer while detached (docs/gateway-protocol.md §5–§7)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from glueberry.p2p.asyncio import Host, HostConfig, Stream
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.signer import LocalSigner
from glueberry.p2p.yamux import YamuxConfig
from glueberry.streams import protocol_id, stream_name_of
from glueberry.wire.framing import FrameDecoder, encode_frame
from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.protocol.errors import TooManyStreams
from glueberry_gateway.protocol.frames import data_header
from glueberry_gateway.server.session import Ack, BackendSession
from tests.helpers import wait_for

WINDOW = 256 * 1024


@dataclass(eq=False)
class Browser:
    """The BrowserLink of the session: what reached the browser's socket, and its acks."""

    take: bool = True  # the socket takes frames at once
    frames: list[bytes] = field(default_factory=list)
    waiting: list[Ack] = field(default_factory=list)
    streams_closed: list[str] = field(default_factory=list)
    closed: list[Code] = field(default_factory=list)

    def send_frames(self, frames: list[bytes], ack: Ack | None) -> None:
        self.frames += frames
        if ack is not None:
            if self.take:
                ack()
            else:
                self.waiting.append(ack)

    def stream_closed(self, session: BackendSession, name: str) -> None:
        self.streams_closed.append(name)

    def session_closed(self, session: BackendSession, code: Code, message: str) -> None:
        self.closed.append(code)

    def taken(self) -> None:
        for ack in self.waiting:
            ack()
        self.waiting.clear()


@dataclass
class Setup:
    backend: Host
    gateway_id: PeerID
    session: BackendSession
    browser: Browser
    backend_streams: asyncio.Queue[Stream]

    async def backend_opens(self, name: str = "chat") -> Stream:
        return await self.backend.new_stream(self.gateway_id, protocol_id(name), [])


def payloads(frames: list[bytes], name: str = "chat") -> list[bytes]:
    header = data_header(7, name)
    assert all(f.startswith(header) for f in frames)
    return [f[len(header) :] for f in frames]


@pytest.fixture
async def setup() -> AsyncIterator[Callable[..., Setup]]:
    config = HostConfig(yamux=YamuxConfig(receive_window=WINDOW))
    gateway = Host(LocalSigner(generate_private_key()), config)
    backend = Host(LocalSigner(generate_private_key()), config)
    backend_streams: asyncio.Queue[Stream] = asyncio.Queue()

    async def backend_handler(stream: Stream) -> None:
        backend_streams.put_nowait(stream)

    for name in ("chat", "files", "a", "b"):
        backend.set_stream_handler(protocol_id(name), backend_handler)
    addrs = await backend.listen(["/ip4/127.0.0.1/tcp/0"])
    conn = await gateway.dial(backend.peer_id, addrs)
    sessions: list[BackendSession] = []

    async def accept(stream: Stream) -> None:
        sessions[0].accept(stream)

    gateway.set_stream_matcher(lambda p: stream_name_of(p) is not None, accept)

    def make(**options: object) -> Setup:
        browser = Browser()
        options.setdefault("max_streams", 4)
        session = BackendSession(
            7, "chat", conn, browser, max_frame=1 << 20, resume_buffer_bytes=1024, **options
        )  # type: ignore[arg-type]
        sessions.append(session)
        return Setup(backend, gateway.peer_id, session, browser, backend_streams)

    yield make
    await gateway.close()
    await backend.close()


async def read_payloads(stream: Stream, count: int) -> list[bytes]:
    decoder = FrameDecoder(1 << 21)
    got: list[bytes] = []
    while len(got) < count:
        decoder.receive_data(await asyncio.wait_for(stream.read(), 5))
        got += [e.payload for e in decoder.events_received() if hasattr(e, "payload")]
    return got


class TestRelay:
    async def test_browser_to_backend_opens_the_stream_lazily(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        await s.session.send("chat", b"one")
        await s.session.send("chat", memoryview(b"two"))
        stream = await asyncio.wait_for(s.backend_streams.get(), 5)
        assert await read_payloads(stream, 2) == [b"one", b"two"]
        assert s.session.frames_in == 2

    async def test_try_send_goes_only_when_nothing_waits(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        assert not s.session.try_send("chat", b"one")  # no stream yet: send() opens it
        assert s.session.frames_in == 0  # nothing done, nothing counted
        await s.session.send("chat", b"one")
        assert s.session.try_send("chat", b"two")  # open, window free: it went
        assert not s.session.try_send("other", b"x")
        stream = await asyncio.wait_for(s.backend_streams.get(), 5)
        assert await read_payloads(stream, 2) == [b"one", b"two"]
        assert s.session.frames_in == 2
        stream.reset()  # the backend resets it: try_send leaves the error to send()
        await asyncio.sleep(0.1)
        assert not s.session.try_send("chat", b"three")
        assert s.session.frames_in == 2

    async def test_backend_to_browser_as_data_frames(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        stream = await s.backend_opens()
        await stream.write(encode_frame(b"hello") + encode_frame(b"world"))
        assert await wait_for(lambda: len(s.browser.frames) == 2, 5)
        assert payloads(s.browser.frames) == [b"hello", b"world"]
        assert s.session.frames_out == 2

    async def test_the_backend_waits_for_the_browsers_socket(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        s.browser.take = False
        stream = await s.backend_opens()
        chunk = encode_frame(b"z" * 50_000)

        async def write_all() -> None:  # 500 kB, more than the window
            for _ in range(10):
                await stream.write(chunk)

        writes = asyncio.ensure_future(write_all())
        await asyncio.sleep(0.2)
        assert not writes.done()  # stalled on its window: nothing piles up at the gateway
        s.browser.take = True
        s.browser.taken()
        await asyncio.wait_for(writes, 5)
        assert await wait_for(lambda: len(s.browser.frames) == 10, 5)

    async def test_the_newest_stream_of_a_name_is_sent_on(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        await s.session.send("chat", b"first")
        ours = await asyncio.wait_for(s.backend_streams.get(), 5)
        theirs = await s.backend_opens()
        await theirs.write(encode_frame(b"hi"))
        assert await wait_for(lambda: len(s.browser.frames) == 1, 5)
        await s.session.send("chat", b"second")
        assert await read_payloads(theirs, 1) == [b"second"]
        assert await read_payloads(ours, 1) == [b"first"]

    async def test_max_streams(self, setup: Callable[..., Setup]) -> None:
        s = setup(max_streams=2)
        await s.session.send("a", b"x")
        await s.session.send("b", b"x")
        with pytest.raises(TooManyStreams):
            await s.session.send("files", b"x")
        extra = await s.backend_opens("files")  # one the backend opens is refused too
        assert await wait_for(lambda: extra.is_reset, 5)
        assert s.session.frames_in == 3  # every frame read counts, sent or refused

    async def test_the_tap_sees_both_ways(self, setup: Callable[..., Setup]) -> None:
        seen: list[tuple[str, str, bytes]] = []

        def tap(direction: str, session: int, stream: str, payload: bytes) -> bytes:
            seen.append((direction, stream, payload))
            return payload.upper()

        s = setup(tap=tap)
        await s.session.send("chat", b"up")
        stream = await asyncio.wait_for(s.backend_streams.get(), 5)
        assert await read_payloads(stream, 1) == [b"UP"]
        await stream.write(encode_frame(b"down"))
        assert await wait_for(lambda: len(s.browser.frames) == 1, 5)
        assert payloads(s.browser.frames) == [b"DOWN"]
        assert seen == [("to_backend", "chat", b"up"), ("to_browser", "chat", b"down")]


class TestEnds:
    async def test_the_browser_hears_of_a_name_whose_last_stream_ended(
        self, setup: Callable[..., Setup]
    ) -> None:
        s = setup()
        await s.session.send("chat", b"x")
        ours = await asyncio.wait_for(s.backend_streams.get(), 5)
        theirs = await s.backend_opens()
        await theirs.write(encode_frame(b"y"))
        assert await wait_for(lambda: len(s.browser.frames) == 1, 5)
        await theirs.close()
        await asyncio.sleep(0.05)
        assert s.browser.streams_closed == []  # ours is still open
        await ours.close()
        assert await wait_for(lambda: s.browser.streams_closed == ["chat"], 5)

    async def test_bad_framing_from_the_backend_ends_that_stream(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        stream = await s.backend_opens()
        await stream.write(encode_frame(b"before") + b"\xff" * 9 + b"\x7f")
        assert await wait_for(lambda: s.browser.streams_closed == ["chat"], 5)
        assert payloads(s.browser.frames) == [b"before"]  # delivered, as Go and the SDK do
        assert await wait_for(lambda: stream.is_reset, 5)

    async def test_backend_lost_is_told_once(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        s.session.backend_lost()
        s.session.backend_lost()
        assert s.browser.closed == [Code.BACKEND_CLOSED]


class TestDetached:
    async def test_frames_wait_in_the_buffer_and_are_sent_again(self, setup: Callable[..., Setup]) -> None:
        s = setup()
        stream = await s.backend_opens()
        await stream.write(encode_frame(b"seen"))
        assert await wait_for(lambda: len(s.browser.frames) == 1, 5)
        s.session.detach()
        await stream.write(encode_frame(b"missed 1") + encode_frame(b"missed 2"))
        assert await wait_for(lambda: s.session.frames_out == 3, 5)  # the backend may send on
        assert s.session.buffer.covers(1)
        later = Browser()
        s.session.attach(later)
        s.session.replay(1)
        assert payloads(later.frames) == [b"missed 1", b"missed 2"]

    async def test_frames_the_browser_never_saw_fall_out(self, setup: Callable[..., Setup]) -> None:
        s = setup()  # a 1 KiB buffer
        stream = await s.backend_opens()
        s.session.detach()
        await stream.write(encode_frame(b"a" * 600) + encode_frame(b"b" * 600))
        assert await wait_for(lambda: s.session.frames_out == 2, 5)
        assert not s.session.buffer.covers(0)
        assert not s.session.buffer.recoverable
