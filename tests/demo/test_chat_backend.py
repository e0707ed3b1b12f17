"""The chat backend of the web demo, driven by real python-sdk nodes over loopback.

Each member is a Glueberry node that connects to the backend, runs the Hello handshake and speaks
the chat protocol of web-demo/README.md on the encrypted ``chat`` stream, as a page does through
the gateway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from glueberry import fingerprint
from glueberry_demo.chat_backend import ChatBackend, read_or_create_key
from glueberry_demo.rooms import ChatLimits, ChatRooms
from tests.demo.conftest import Lobby, MakeBackend, MakeMember


class TestJoinAndChat:
    async def test_two_members_join_and_chat_both_ways(self, make_member: MakeMember) -> None:
        alice, bob = await make_member(), await make_member()
        welcome = await alice.join("lobby", "alice")
        assert welcome == {
            "t": "welcome",
            "room": "lobby",
            "members": [{"peer": alice.peer, "nick": "alice"}],
            "history": [],
        }
        welcome = await bob.join("lobby", "bob")
        assert welcome["members"] == [
            {"peer": alice.peer, "nick": "alice"},
            {"peer": bob.peer, "nick": "bob"},
        ]
        assert await alice.expect("joined") == {
            "t": "joined",
            "room": "lobby",
            "peer": bob.peer,
            "nick": "bob",
        }

        await alice.say("lobby", "a1", "hello bob ✓")
        for member in (alice, bob):  # the sender gets its own message back: its delivery receipt
            message = await member.expect("msg")
            assert {k: message[k] for k in ("room", "id", "from", "nick", "text")} == {
                "room": "lobby",
                "id": "a1",
                "from": alice.peer,
                "nick": "alice",
                "text": "hello bob ✓",
            }
            assert isinstance(message["ts"], int)
        await bob.say("lobby", "b1", "hi alice\nsecond line")
        first = await alice.expect("msg")
        assert (first["from"], first["text"]) == (bob.peer, "hi alice\nsecond line")
        assert (await bob.expect("msg"))["id"] == "b1"

    async def test_a_third_member_gets_the_history_in_order(
        self, lobby: Lobby, make_member: MakeMember
    ) -> None:
        alice, bob = lobby
        for i in range(3):
            await alice.say("lobby", f"a{i}", f"message {i}")
            await alice.expect("msg")
            await bob.expect("msg")
        carol = await make_member()
        welcome = await carol.join("lobby", "carol")
        assert [m["text"] for m in welcome["history"]] == ["message 0", "message 1", "message 2"]
        assert [m["nick"] for m in welcome["members"]] == ["alice", "bob", "carol"]
        stamps = [m["ts"] for m in welcome["history"]]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == 3

    async def test_history_keeps_the_last_50(self, make_member: MakeMember) -> None:
        alice = await make_member()
        await alice.join("lobby", "alice")
        for i in range(60):
            await alice.say("lobby", f"m{i}", f"n{i}")
        for _ in range(60):
            await alice.expect("msg")
        bob = await make_member()
        history = (await bob.join("lobby", "bob"))["history"]
        assert [m["text"] for m in history] == [f"n{i}" for i in range(10, 60)]

    async def test_rooms_are_separate(self, make_member: MakeMember) -> None:
        alice, bob = await make_member(), await make_member()
        await alice.join("red", "alice")
        await bob.join("blue", "bob")
        await alice.say("red", "r1", "only red")
        assert (await alice.expect("msg"))["text"] == "only red"
        await bob.nothing()

    async def test_rejoin_gets_a_fresh_welcome_and_a_new_nick_is_announced(self, lobby: Lobby) -> None:
        alice, bob = lobby
        await alice.say("lobby", "a1", "before")
        await alice.expect("msg")
        await bob.expect("msg")
        welcome = await bob.join("lobby", "bob")  # the same nick: nobody else hears of it
        assert [m["id"] for m in welcome["history"]] == ["a1"]
        assert len(welcome["members"]) == 2
        await alice.nothing()
        welcome = await bob.join("lobby", "robert")
        assert {"peer": bob.peer, "nick": "robert"} in welcome["members"]
        assert await alice.expect("joined") == {
            "t": "joined",
            "room": "lobby",
            "peer": bob.peer,
            "nick": "robert",
        }


class TestLeave:
    async def test_leave_message(self, lobby: Lobby) -> None:
        alice, bob = lobby
        await bob.send({"t": "leave", "room": "lobby"})
        left = {"t": "left", "room": "lobby", "peer": bob.peer, "nick": "bob"}
        assert await bob.expect("left") == left  # the leaver's confirmation
        assert await alice.expect("left") == left
        await bob.send({"t": "leave", "room": "lobby"})  # again: nothing happens
        await bob.nothing()
        await alice.say("lobby", "a1", "alone")
        await alice.expect("msg")
        await bob.nothing()

    async def test_a_member_leaves_when_its_peer_disconnects(
        self, backend: ChatBackend, make_member: MakeMember
    ) -> None:
        alice, bob = await make_member(), await make_member()
        await alice.join("lobby", "alice")
        await bob.join("lobby", "bob")
        await bob.join("other", "bob")
        await alice.expect("joined")
        await bob.disconnect()
        assert await alice.expect("left") == {"t": "left", "room": "lobby", "peer": bob.peer, "nick": "bob"}
        assert backend.rooms.members("lobby") == {alice.peer: "alice"}
        assert backend.rooms.rooms_of(bob.peer) == set()
        carol = await make_member()
        assert [m["nick"] for m in (await carol.join("lobby", "carol"))["members"]] == ["alice", "carol"]

    async def test_a_stopped_node_leaves_too(self, backend: ChatBackend, lobby: Lobby) -> None:
        alice, bob = lobby
        await bob.node.stop()
        assert (await alice.expect("left"))["peer"] == bob.peer

    async def test_reconnect_rejoin_catches_up(self, lobby: Lobby) -> None:
        alice, bob = lobby
        await bob.disconnect()
        await alice.expect("left")
        await alice.say("lobby", "a1", "while you were away")
        await alice.expect("msg")
        await bob.connect()
        welcome = await bob.join("lobby", "bob")
        assert [m["text"] for m in welcome["history"]] == ["while you were away"]
        assert (await alice.expect("joined"))["peer"] == bob.peer


class TestDeduplication:
    async def test_a_resent_id_is_delivered_once_and_echoed_to_its_sender(
        self, lobby: Lobby, make_member: MakeMember
    ) -> None:
        alice, bob = lobby
        await alice.say("lobby", "x1", "once")
        original = await alice.expect("msg")
        assert (await bob.expect("msg"))["id"] == "x1"
        await alice.say("lobby", "x1", "once")  # a resend after a reconnect
        assert await alice.expect("msg") == original  # the same message, the same ts
        await alice.say("lobby", "x2", "next")
        assert (await bob.expect("msg"))["id"] == "x2"  # bob never saw x1 twice
        bob_history = (await make_member()).join("lobby", "carol")
        assert [m["id"] for m in (await bob_history)["history"]] == ["x1", "x2"]

    async def test_ids_are_per_sender(self, lobby: Lobby) -> None:
        alice, bob = lobby
        await alice.say("lobby", "same", "from alice")
        await alice.expect("msg")
        await bob.expect("msg")
        await bob.say("lobby", "same", "from bob")
        assert (await alice.expect("msg"))["text"] == "from bob"

    def test_remembered_ids_are_bounded(self) -> None:
        rooms = ChatRooms(ChatLimits(remembered_ids=3, history=2))
        rooms.handle("p", b'{"t":"join","room":"r","nick":"n"}')
        for i in range(5):
            assert len(rooms.handle("p", b'{"t":"msg","room":"r","id":"%d","text":"t"}' % i)) == 1
        assert len(rooms.rooms["r"].seen) == 3
        assert len(rooms.rooms["r"].history) == 2
        again = rooms.handle("p", b'{"t":"msg","room":"r","id":"0","text":"t"}')  # forgotten: new
        assert again[0].message["ts"] > rooms.rooms["r"].history[0]["ts"]


BAD_INPUTS = [
    (b"not json", "bad_request"),
    (b"\xff\xfe", "bad_request"),
    (b"[1, 2]", "bad_request"),
    (b'{"room": "lobby"}', "bad_request"),
    (b'{"t": "dance"}', "bad_request"),
    (b'{"t": "join", "room": "Lobby", "nick": "a"}', "bad_request"),
    (b'{"t": "join", "room": "", "nick": "a"}', "bad_request"),
    (b'{"t": "join", "room": "' + b"a" * 33 + b'", "nick": "a"}', "bad_request"),
    (b'{"t": "join", "room": "lobby", "nick": "   "}', "bad_request"),
    (b'{"t": "join", "room": "lobby", "nick": "' + b"n" * 33 + b'"}', "bad_request"),
    (b'{"t": "join", "room": "lobby", "nick": "a\\u0007b"}', "bad_request"),
    (b'{"t": "join", "room": "lobby", "nick": 5}', "bad_request"),
    (b'{"t": "join", "room": ["lobby"], "nick": "a"}', "bad_request"),
    (b'{"t": "msg", "room": "lobby", "id": "1", "text": "not joined"}', "not_member"),
    (b'{"t": "leave", "room": "Not Valid"}', "bad_request"),
    (b'{"t": "join", "room": "lobby", "nick": "' + b"x" * 20000 + b'"}', "bad_request"),
]


class TestBadInput:
    @pytest.mark.parametrize(("data", "code"), BAD_INPUTS)
    async def test_bad_input_gets_an_error_and_the_backend_carries_on(
        self, make_member: MakeMember, data: bytes, code: str
    ) -> None:
        member = await make_member()
        await member.send(data)
        error = await member.expect("error")
        assert error["code"] == code
        assert isinstance(error["text"], str)
        assert error["text"]
        assert (await member.join("lobby", "fine"))["room"] == "lobby"

    async def test_bad_chat_messages(self, lobby: Lobby) -> None:
        alice, bob = lobby
        bad: list[dict[str, object]] = [
            {"t": "msg", "room": "lobby", "id": "1", "text": "x" * 2001},
            {"t": "msg", "room": "lobby", "id": "2", "text": ""},
            {"t": "msg", "room": "lobby", "id": "3", "text": " \n "},
            {"t": "msg", "room": "lobby", "id": "4", "text": "bell\x07"},
            {"t": "msg", "room": "lobby", "id": "5", "text": "\ud800"},
            {"t": "msg", "room": "lobby", "id": "6", "text": 42},
            {"t": "msg", "room": "lobby", "id": "", "text": "no id"},
            {"t": "msg", "room": "lobby", "id": "has space", "text": "bad id"},
            {"t": "msg", "room": "lobby", "id": "i" * 65, "text": "long id"},
            {"t": "msg", "room": "lobby", "text": "missing id"},
        ]
        for message in bad:
            await alice.send(message)
            error = await alice.expect("error")
            assert error["code"] == "bad_request", (message, error)
            if message.get("id") in ("1", "2", "3", "4", "5", "6"):
                assert error["id"] == message["id"]  # so that a page can mark that message failed
        await alice.say("lobby", "ok", "x" * 2000)  # the longest allowed
        assert len((await bob.expect("msg"))["text"]) == 2000
        await alice.expect("msg")
        await bob.say("lobby", "emoji", "👩‍👩‍👧 naïve ❤️")  # ZWJ sequences and accents are text
        assert (await alice.expect("msg"))["text"] == "👩‍👩‍👧 naïve ❤️"


class TestLimits:
    """Bounds of web-demo/README.md, exercised on the protocol core with small limits."""

    def test_room_full(self) -> None:
        rooms = ChatRooms(ChatLimits(max_members=2))
        for peer in ("a", "b"):
            assert rooms.handle(peer, b'{"t":"join","room":"r","nick":"n"}')[0].message["t"] == "welcome"
        error = rooms.handle("c", b'{"t":"join","room":"r","nick":"n"}')[0].message
        assert (error["t"], error["code"], error["room"]) == ("error", "room_full", "r")

    def test_max_rooms_forgets_the_quietest_empty_room(self) -> None:
        now = [1000.0]
        rooms = ChatRooms(ChatLimits(max_rooms=2), clock=lambda: now[0])
        rooms.handle("a", b'{"t":"join","room":"one","nick":"n"}')
        now[0] += 1
        rooms.handle("a", b'{"t":"join","room":"two","nick":"n"}')
        error = rooms.handle("a", b'{"t":"join","room":"three","nick":"n"}')[0].message
        assert error["code"] == "too_many_rooms"  # both in use
        rooms.handle("a", b'{"t":"leave","room":"one"}')
        rooms.handle("a", b'{"t":"leave","room":"two"}')
        assert rooms.handle("b", b'{"t":"join","room":"three","nick":"n"}')[0].message["t"] == "welcome"
        assert set(rooms.rooms) == {"two", "three"}

    def test_rooms_per_peer(self) -> None:
        rooms = ChatRooms(ChatLimits(max_rooms_per_peer=2))
        rooms.handle("a", b'{"t":"join","room":"one","nick":"n"}')
        rooms.handle("a", b'{"t":"join","room":"two","nick":"n"}')
        assert rooms.handle("a", b'{"t":"join","room":"one","nick":"n"}')[0].message["t"] == "welcome"
        error = rooms.handle("a", b'{"t":"join","room":"three","nick":"n"}')[0].message
        assert error["code"] == "too_many_joins"

    def test_nick_is_trimmed(self) -> None:
        rooms = ChatRooms()
        welcome = rooms.handle("a", b'{"t":"join","room":"r","nick":"  ann  "}')[0].message
        assert welcome["members"] == [{"peer": "a", "nick": "ann"}]


class TestRestart:
    async def test_a_restarted_backend_keeps_rooms_and_history_it_is_given(
        self, tmp_path: Path, make_backend: MakeBackend, make_member: MakeMember, backend: ChatBackend
    ) -> None:
        alice = await make_member()
        await alice.join("lobby", "alice")
        await alice.say("lobby", "a1", "remember me")
        await alice.expect("msg")
        port = backend.addrs[0].tcp_target()
        assert port is not None
        await backend.stop()
        assert backend.rooms.members("lobby") == {}  # nobody is connected to a stopped backend
        again = await make_backend(backend.rooms, f"/ip4/127.0.0.1/tcp/{port.port}")
        assert again.peer_id == backend.peer_id
        assert again.fingerprint == fingerprint(backend.peer_id)
        bob = await make_member(to=again)
        assert [m["id"] for m in (await bob.join("lobby", "bob"))["history"]] == ["a1"]


class TestCommandLine:
    async def test_prints_its_peer_id_and_address_and_stops_on_sigint(self, tmp_path: Path) -> None:
        key_file = tmp_path / "chat.key"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "glueberry_demo.chat_backend",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--key-file",
            str(key_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or lines[-1] != "Ctrl-C stops":
                lines.append((await proc.stdout.readline()).decode().strip())
        key, created = read_or_create_key(key_file)
        assert not created
        assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
        from glueberry import PeerID

        peer_id = str(PeerID.from_private_key(key))
        assert f"chat backend peer ID: {peer_id}" in lines
        assert any(
            line.startswith("listening on /ip4/127.0.0.1/tcp/") and line.endswith(peer_id) for line in lines
        )
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0

    def test_a_bad_key_file_is_refused(self, tmp_path: Path) -> None:
        key_file = tmp_path / "bad.key"
        key_file.write_text("not hex")
        with pytest.raises(ValueError, match="hex-encoded Ed25519 key"):
            read_or_create_key(key_file)
