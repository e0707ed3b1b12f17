"""Resume, the gateway's side (glueberry_gateway.server.resume, docs/gateway-protocol.md §6): the
per-session buffer of frames sent to the browser, the store where a dropped socket's sessions wait
(the in-memory one; other stores answer the same calls), and which sessions a resume gets back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.protocol.control import ResumeOutcome
from glueberry_gateway.protocol.errors import ProtocolViolation
from glueberry_gateway.server.resume import MemoryResumeStore, ResumeBuffer, reattach


def frames(*sizes: int) -> list[bytes]:
    return [bytes([i]) * size for i, size in enumerate(sizes)]


class TestResumeBuffer:
    def test_numbers_frames_and_keeps_the_newest_within_the_bound(self) -> None:
        buffer = ResumeBuffer(limit=250)
        buffer.append(frames(100, 100), attached=True)
        buffer.append(frames(100), attached=True)  # the first falls out
        assert buffer.sent == 3
        assert buffer.since(0) == frames(100, 100)[1:] + frames(100)
        assert buffer.since(2) == frames(100)
        assert not buffer.covers(0)  # frame 0 is gone
        assert buffer.covers(1)
        assert buffer.covers(3)  # nothing missed
        assert not buffer.covers(4)  # more than was ever sent

    def test_a_frame_the_browser_never_saw_falling_out_makes_resume_impossible(self) -> None:
        buffer = ResumeBuffer(limit=250)
        buffer.append(frames(100), attached=True)
        buffer.detach()
        buffer.append(frames(100, 100), attached=False)  # frame 0, seen, falls out: fine
        assert buffer.recoverable
        assert buffer.covers(1)
        buffer.append(frames(100), attached=False)  # frame 1, never seen, falls out
        assert not buffer.recoverable
        assert not buffer.covers(2)

    def test_an_empty_buffer_covers_exactly_what_was_sent(self) -> None:
        buffer = ResumeBuffer(limit=10)
        assert buffer.covers(0)
        assert buffer.since(0) == []
        buffer.append(frames(5), attached=True)
        buffer.clear()
        assert buffer.sent == 1
        assert buffer.covers(1)
        assert not buffer.covers(0)


@dataclass(eq=False)
class Kept:
    """A session as the store sees it (a BackendSession has these and much more)."""

    frames_in: int = 0
    closed: bool = False
    buffer: ResumeBuffer = field(default_factory=lambda: ResumeBuffer(1 << 20))


def peer() -> PeerID:
    return PeerID.from_private_key(generate_private_key())


class TestMemoryResumeStore:
    @pytest.fixture
    def ended(self) -> list[Kept]:
        return []

    async def test_kept_then_claimed_with_the_token(self, ended: list[Kept]) -> None:
        store: MemoryResumeStore[Kept] = MemoryResumeStore(30.0, ended.append)
        who, session = peer(), Kept()
        await store.keep(who, b"t" * 24, {1: session})
        assert store.waiting == 1
        assert await store.claim(peer(), b"t" * 24) == {}  # another browser: nothing
        with pytest.raises(ProtocolViolation) as info:
            await store.claim(who, b"x" * 24)
        assert info.value.code == Code.RESUME_FAILED
        assert store.waiting == 1  # a wrong token takes nothing away
        assert await store.claim(who, b"t" * 24) == {1: session}
        assert store.waiting == 0
        assert await store.claim(who, b"t" * 24) == {}  # single use
        assert ended == []

    async def test_the_grace_period_ends_them(self, ended: list[Kept]) -> None:
        store: MemoryResumeStore[Kept] = MemoryResumeStore(0.02, ended.append)
        session = Kept()
        await store.keep(peer(), b"t" * 24, {1: session})
        await asyncio.sleep(0.05)
        assert ended == [session]
        assert store.waiting == 0

    async def test_a_new_drop_or_a_new_socket_ends_what_waited(self, ended: list[Kept]) -> None:
        store: MemoryResumeStore[Kept] = MemoryResumeStore(30.0, ended.append)
        who, first, second = peer(), Kept(), Kept()
        await store.keep(who, b"a" * 24, {1: first})
        await store.keep(who, b"b" * 24, {2: second})  # the browser's next socket dropped too
        assert ended == [first]
        await store.forget(who)  # a socket came without a resume
        assert ended == [first, second]
        await store.keep(who, b"c" * 24, {3: Kept()})
        await store.close()
        assert len(ended) == 3
        assert store.waiting == 0


class TestReattach:
    def test_each_session_asked_for_is_recovered_or_not(self) -> None:
        fine = Kept(frames_in=7)
        fine.buffer.append(frames(10, 10), attached=True)
        closed = Kept(closed=True)
        lost = Kept()
        lost.buffer = ResumeBuffer(10)
        lost.buffer.append(frames(10, 10), attached=True)  # frame 0 fell out
        forgotten = Kept()
        kept = {1: fine, 2: closed, 3: lost, 4: forgotten}
        attached, outcomes, ended = reattach(kept, {1: 1, 2: 0, 3: 0, 5: 0})
        assert attached == {1: fine}
        assert outcomes == {
            1: ResumeOutcome(True, 7),
            2: ResumeOutcome(False),
            3: ResumeOutcome(False),
            5: ResumeOutcome(False),
        }
        assert set(map(id, ended)) == {id(closed), id(lost), id(forgotten)}
