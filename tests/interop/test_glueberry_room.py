"""The chat room server of build/glueberry-peer (``--on-message room``) against our Python node.

A real Go glueberry v1.2.10 node runs the rooms; Python Glueberry nodes (the Hello / PubKey /
Complete handshake, stream "chat") are its clients and speak the JSON chat protocol of
tests/interop/README.md ("Chat rooms"). Each backend → client message arrives in the order the
backend produced it (one sender per client), so the tests read replies strictly in sequence.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from glueberry.auto_handshake import HelloHandshakeHandler
from glueberry.config import Config
from glueberry.events import ConnectionState, EventSubscription
from glueberry.node import Node
from glueberry.p2p.keys import PeerID, generate_private_key
from tests.helpers import wait_state
from tests.interop.conftest import StartPeer
from tests.interop.goproc import GoPeer

pytestmark = pytest.mark.interop

Msg = dict[str, Any]


@dataclass
class ChatClient:
    """A Python Glueberry node in the role of the web chat page."""

    node: Node
    go: GoPeer
    nick: str
    events: EventSubscription
    _ids: int = field(default=0)

    @property
    def peer(self) -> str:
        return str(self.node.peer_id)

    @property
    def go_id(self) -> PeerID:
        return PeerID.from_string(self.go.peer_id)

    async def send_raw(self, data: bytes) -> None:
        await self.node.send(self.go_id, "chat", data)

    async def send(self, **message: object) -> None:
        await self.send_raw(json.dumps(message).encode())

    async def recv(self, timeout: float = 10.0) -> Msg:
        msg = await self.node.receive(timeout=timeout)
        assert msg.stream_name == "chat"
        assert str(msg.peer_id) == self.go.peer_id
        decoded: Msg = json.loads(msg.data)
        return decoded

    async def expect(self, kind: str, timeout: float = 10.0) -> Msg:
        msg = await self.recv(timeout)
        assert msg["t"] == kind, msg
        return msg

    async def quiet(self, seconds: float = 0.5) -> None:
        """Nothing arrives for ``seconds``."""
        try:
            got = await self.node.receive(timeout=seconds)
        except TimeoutError:
            return
        pytest.fail(f"{self.nick} got an unexpected message: {got.data!r}")

    async def join(self, room: str = "lobby", nick: str | None = None) -> Msg:
        await self.send(t="join", room=room, nick=nick or self.nick)
        welcome = await self.expect("welcome")
        assert welcome["room"] == room
        return welcome

    async def say(self, text: str, room: str = "lobby", msg_id: str | None = None) -> str:
        if msg_id is None:
            self._ids += 1
            msg_id = f"{self.nick}-{self._ids}"
        await self.send(t="msg", room=room, id=msg_id, text=text)
        return msg_id

    async def error(self, data: bytes | Msg, code: str) -> Msg:
        """Send ``data`` (raw bytes or a message) and return the error it earns, which must carry
        ``code``."""
        await (self.send_raw(data) if isinstance(data, bytes) else self.send(**data))
        reply = await self.expect("error")
        assert reply["code"] == code, (data, reply)
        assert {"t", "code", "text"} <= set(reply) <= {"t", "code", "text", "room", "id"}
        assert isinstance(reply["text"], str)
        assert reply["text"]
        return reply


MakeClient = Callable[..., Awaitable[ChatClient]]


@pytest.fixture
async def server(start_glueberry: StartPeer) -> GoPeer:
    return await start_glueberry(
        "--on-message", "room", "--streams", "chat", "--name", "go-chat", name="rooms"
    )


@pytest.fixture
async def make_client(tmp_path: Path, server: GoPeer) -> AsyncIterator[MakeClient]:
    """Python nodes that dial the room server and finish the handshake (``await make_client("alice")``)."""
    nodes: list[Node] = []

    async def make(nick: str, **options: object) -> ChatClient:
        config = Config(
            generate_private_key(),
            tmp_path / f"{nick}-{len(nodes)}.json",
            ["/ip4/127.0.0.1/tcp/0"],
            max_messages_per_second=0,
            **options,  # type: ignore[arg-type]
        )
        node = Node(config, handshake=HelloHandshakeHandler(streams=["chat"], name=nick))
        await node.start()
        nodes.append(node)
        events = node.events()
        node.add_peer(server.peer_id, server.addrs)
        await wait_state(events, ConnectionState.ESTABLISHED, timeout=10)
        await server.wait_state(node.peer_id)
        return ChatClient(node, server, nick, events)

    yield make
    for node in nodes:
        if node._started:
            await node.stop()


async def _lobby(make_client: MakeClient, *nicks: str) -> list[ChatClient]:
    """Clients that joined "lobby" in order, each having read its welcome and every joined."""
    clients: list[ChatClient] = []
    for nick in nicks:
        client = await make_client(nick)
        await client.join()
        for earlier in clients:
            joined = await earlier.expect("joined")
            assert joined == {"t": "joined", "room": "lobby", "peer": client.peer, "nick": nick}
        clients.append(client)
    return clients


def _check_msg(msg: Msg, sender: ChatClient, msg_id: str, text: str, room: str = "lobby") -> None:
    assert msg["t"] == "msg"
    assert set(msg) == {"t", "room", "id", "from", "nick", "text", "ts"}
    assert (msg["room"], msg["id"], msg["from"], msg["nick"], msg["text"]) == (
        room,
        msg_id,
        sender.peer,
        sender.nick,
        text,
    )
    assert isinstance(msg["ts"], int)
    assert abs(msg["ts"] - time.time() * 1000) < 60_000


class TestChat:
    async def test_ready_and_welcome_of_an_empty_room(self, server: GoPeer, make_client: MakeClient) -> None:
        assert server.ready["on_message"] == "room"
        assert server.ready["streams"] == ["chat"]
        assert server.ready["name"] == "go-chat"
        alice = await make_client("alice")
        handler = alice.node._handshake
        assert isinstance(handler, HelloHandshakeHandler)
        assert handler.peer_names[alice.go_id] == "go-chat"
        welcome = await alice.join()
        assert welcome == {
            "t": "welcome",
            "room": "lobby",
            "members": [{"peer": alice.peer, "nick": "alice"}],
            "history": [],
        }

    async def test_two_members_each_see_both_messages(self, make_client: MakeClient) -> None:
        alice = await make_client("alice")
        bob = await make_client("bob")
        assert (await alice.join())["members"] == [{"peer": alice.peer, "nick": "alice"}]
        welcome = await bob.join()
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

        a1 = await alice.say("hello from alice ✓ <b>&</b>")
        for client in (alice, bob):  # every member, the sender included
            _check_msg(await client.recv(), alice, a1, "hello from alice ✓ <b>&</b>")
        b1 = await bob.say("hi alice\nsecond line")
        for client in (alice, bob):
            _check_msg(await client.recv(), bob, b1, "hi alice\nsecond line")
        await alice.quiet(0.3)
        await bob.quiet(0.1)

    async def test_late_joiner_gets_the_history(self, server: GoPeer, make_client: MakeClient) -> None:
        alice, bob = await _lobby(make_client, "alice", "bob")
        seen = []
        for sender, text in ((alice, "one"), (bob, "two"), (alice, "three")):
            msg_id = await sender.say(text)
            got = [await c.recv() for c in (alice, bob)]
            assert got[0] == got[1]
            _check_msg(got[0], sender, msg_id, text)
            seen.append(got[0])
        carol = await make_client("carol")
        welcome = await carol.join()
        assert welcome["history"] == seen
        assert [m["nick"] for m in welcome["members"]] == ["alice", "bob", "carol"]
        for client in (alice, bob):
            assert (await client.expect("joined"))["peer"] == carol.peer
        c1 = await carol.say("hello, I read what you said")
        for client in (alice, bob, carol):
            _check_msg(await client.recv(), carol, c1, "hello, I read what you said")
        rooms = await server.request("rooms", room="lobby")
        assert rooms["rooms"][0]["history"] == 4
        assert [m["nick"] for m in rooms["rooms"][0]["members"]] == ["alice", "bob", "carol"]

    async def test_history_keeps_the_last_50(self, make_client: MakeClient) -> None:
        (alice,) = await _lobby(make_client, "alice")
        for i in range(60):
            await alice.say(f"message {i}")
        for i in range(60):
            assert (await alice.expect("msg"))["text"] == f"message {i}"
        bob = await make_client("bob")
        history = (await bob.join())["history"]
        assert [m["text"] for m in history] == [f"message {i}" for i in range(10, 60)]

    async def test_rooms_are_separate(self, make_client: MakeClient) -> None:
        alice, bob = await _lobby(make_client, "alice", "bob")
        welcome = await alice.join("dev-1", nick="al")
        assert welcome["members"] == [{"peer": alice.peer, "nick": "al"}]
        msg_id = await alice.say("only in dev-1", room="dev-1")
        msg = await alice.recv()
        assert (msg["room"], msg["nick"], msg["id"]) == ("dev-1", "al", msg_id)
        await bob.quiet(0.3)
        refused = await bob.error({"t": "msg", "room": "dev-1", "id": "x", "text": "hi"}, "not_member")
        assert (refused["room"], refused["id"]) == ("dev-1", "x")
        assert "not a member" in refused["text"]

    async def test_rejoin_renames(self, make_client: MakeClient) -> None:
        alice, bob = await _lobby(make_client, "alice", "bob")
        welcome = await bob.join(nick="robert")
        assert welcome["members"] == [
            {"peer": alice.peer, "nick": "alice"},
            {"peer": bob.peer, "nick": "robert"},
        ]
        assert await alice.expect("joined") == {
            "t": "joined",
            "room": "lobby",
            "peer": bob.peer,
            "nick": "robert",
        }
        await bob.join(nick="robert")  # same nick: a welcome again, nobody else told
        await alice.quiet(0.3)


class TestLeaving:
    async def test_leave(self, server: GoPeer, make_client: MakeClient) -> None:
        alice, bob, carol = await _lobby(make_client, "alice", "bob", "carol")
        await bob.send(t="leave", room="lobby")
        left = {"t": "left", "room": "lobby", "peer": bob.peer, "nick": "bob"}
        for client in (alice, carol, bob):  # the others, and bob as the acknowledgement
            assert await client.expect("left") == left
        msg_id = await alice.say("bob is gone")
        for client in (alice, carol):
            _check_msg(await client.recv(), alice, msg_id, "bob is gone")
        await bob.quiet(0.3)
        refused = await bob.error({"t": "msg", "room": "lobby", "id": "late", "text": "hey"}, "not_member")
        assert (refused["room"], refused["id"]) == ("lobby", "late")
        await bob.send(t="leave", room="lobby")  # leaving again: nothing happens
        await bob.quiet(0.3)
        rooms = await server.request("rooms")
        assert [m["nick"] for m in rooms["rooms"][0]["members"]] == ["alice", "carol"]
        # bob can come back, and sees what was said meanwhile
        welcome = await bob.join()
        assert [m["nick"] for m in welcome["members"]] == ["alice", "carol", "bob"]
        assert welcome["history"][-1]["text"] == "bob is gone"

    async def test_disconnected_peer_leaves_every_room(self, server: GoPeer, make_client: MakeClient) -> None:
        """The backend's Disconnected event for a member (here: the backend disconnects it) makes
        it leave all its rooms; the others get ``left``."""
        alice, bob = await _lobby(make_client, "alice", "bob")
        await alice.join("side")
        await bob.join("side")
        assert (await alice.expect("joined"))["room"] == "side"
        await server.request("disconnect", peer_id=bob.peer)
        await server.wait_event("state", lambda e: e["peer_id"] == bob.peer and e["state"] == "Disconnected")
        got = {(m["t"], m["room"], m["peer"], m["nick"]) for m in [await alice.recv(), await alice.recv()]}
        assert got == {("left", "lobby", bob.peer, "bob"), ("left", "side", bob.peer, "bob")}
        rooms = await server.request("rooms")
        assert {r["room"]: [m["nick"] for m in r["members"]] for r in rooms["rooms"]} == {
            "lobby": ["alice"],
            "side": ["alice"],
        }
        # bob's node redials by itself; the new session starts outside every room
        await server.wait_state(bob.peer)
        await wait_state(bob.events, ConnectionState.ESTABLISHED, timeout=10)
        await bob.error({"t": "msg", "room": "lobby", "id": "b", "text": "back"}, "not_member")
        await bob.join()
        assert (await alice.expect("joined"))["peer"] == bob.peer

    async def test_a_vanished_peer_stays_a_member_without_a_disconnected_event(
        self, server: GoPeer, make_client: MakeClient
    ) -> None:
        """Go's blind spot (README "What Go does"): a client that goes away without the backend
        noticing raises no Disconnected event, so it stays in the room. What is sent to it is
        lost: the send either fails (``send_error``, after a failed redial) or "succeeds" on the
        dead connection, depending on whether Go has noticed the closed connection yet."""
        alice, bob = await _lobby(make_client, "alice", "bob")
        await bob.node.stop()
        for i in range(3):
            msg_id = await alice.say(f"anyone there? ({i})")
            _check_msg(await alice.recv(), alice, msg_id, f"anyone there? ({i})")
            await asyncio.sleep(0.2)
        await alice.quiet(0.3)  # in particular, no "left"
        rooms = await server.request("rooms")
        assert [m["nick"] for m in rooms["rooms"][0]["members"]] == ["alice", "bob"]
        room_events = [e for e in server.event_history if e.get("event") == "room"]
        assert not any(e["action"] == "left" for e in room_events)
        assert all(e["peer_id"] == bob.peer for e in room_events if e["action"] == "send_error")


class TestBadInput:
    async def test_invalid_input_gets_an_error_and_the_server_carries_on(
        self, server: GoPeer, make_client: MakeClient
    ) -> None:
        (alice,) = await _lobby(make_client, "alice")
        bad: list[tuple[bytes | Msg, str]] = [
            (b"not json", "bad JSON"),
            (b"", "bad JSON"),
            (b"[1, 2]", "bad JSON"),
            (b"null", "bad JSON"),
            (b'"join"', "bad JSON"),
            (b'{"t": "join", "room": "lobby", "nick": "\xff"}', "UTF-8"),
            ({"room": "lobby"}, 'missing "t"'),
            ({"t": 5}, '"t" must be a string'),
            ({"t": "dance", "room": "lobby"}, "unknown message type"),
            ({"t": "join", "nick": "x"}, 'missing "room"'),
            ({"t": "join", "room": "Lobby", "nick": "x"}, "room name"),
            ({"t": "join", "room": "", "nick": "x"}, "room name"),
            ({"t": "join", "room": "a" * 33, "nick": "x"}, "room name"),
            ({"t": "join", "room": "lob by", "nick": "x"}, "room name"),
            ({"t": "join", "room": "lobby_2", "nick": "x"}, "room name"),
            ({"t": "join", "room": "lobby"}, 'missing "nick"'),
            ({"t": "join", "room": "lobby", "nick": ""}, "nick"),
            ({"t": "join", "room": "lobby", "nick": "n" * 33}, "nick"),
            ({"t": "join", "room": "lobby", "nick": "bell\x07"}, "non-printable"),
            ({"t": "join", "room": "lobby", "nick": "tab\there"}, "non-printable"),
            ({"t": "join", "room": "lobby", "nick": ["x"]}, '"nick" must be a string'),
            ({"t": "msg", "room": "lobby", "text": "no id"}, 'missing "id"'),
            ({"t": "msg", "room": "lobby", "id": "", "text": "empty id"}, "id"),
            ({"t": "msg", "room": "lobby", "id": 7, "text": "numeric id"}, '"id" must be a string'),
            ({"t": "msg", "room": "lobby", "id": "x"}, 'missing "text"'),
            ({"t": "msg", "room": "lobby", "id": "x", "text": "é" * 2001}, "at most 2000"),
            (b"{" * 70_000, "too large"),
        ]
        for data, expected in bad:
            reply = await alice.error(data, "bad_request")
            assert expected in reply["text"], (data, reply)
        # the room and the id are named when they were valid
        reply = await alice.error({"t": "msg", "room": "lobby", "id": "x", "text": "é" * 2001}, "bad_request")
        assert (reply["room"], reply["id"]) == ("lobby", "x")
        reply = await alice.error({"t": "join", "room": "Lobby", "nick": "x"}, "bad_request")
        assert "room" not in reply
        reply = await alice.error({"t": "msg", "room": "elsewhere", "id": "x", "text": "hi"}, "not_member")
        assert (reply["room"], reply["id"]) == ("elsewhere", "x")
        await alice.send(t="leave", room="elsewhere")  # not an error: leaving is idempotent
        assert server.running
        # at the limits, and after all that, everything still works
        await alice.quiet(0.2)
        text = "é" * 2000
        msg_id = await alice.say(text, msg_id="i" * 64)
        _check_msg(await alice.recv(), alice, msg_id, text)
        assert (await alice.join("z" * 32, nick="ñ" * 32))["members"] == [
            {"peer": alice.peer, "nick": "ñ" * 32}
        ]
        errors = [e for e in server.event_history if e.get("event") == "room" and e["action"] == "error"]
        assert len(errors) == len(bad) + 3

    async def test_errors_go_only_to_the_sender(self, make_client: MakeClient) -> None:
        alice, bob = await _lobby(make_client, "alice", "bob")
        assert "bad JSON" in (await bob.error(b"{", "bad_request"))["text"]
        await alice.quiet(0.3)

    async def test_room_limit(self, server: GoPeer, make_client: MakeClient) -> None:
        """At most 100 rooms: a 101st is refused while all are occupied; an emptied room gives
        its slot (and its history) up to a new one."""
        (alice,) = await _lobby(make_client, "alice")
        for i in range(99):
            await alice.send(t="join", room=f"r-{i}", nick="alice")
        for i in range(99):
            assert (await alice.expect("welcome"))["room"] == f"r-{i}"
        refused = await alice.error({"t": "join", "room": "one-more", "nick": "alice"}, "too_many_rooms")
        assert refused["room"] == "one-more"
        assert "too many rooms" in refused["text"]
        await alice.send(t="leave", room="r-0")
        await alice.expect("left")
        await alice.join("one-more")
        rooms = {r["room"] for r in (await server.request("rooms"))["rooms"]}
        assert len(rooms) == 100
        assert "one-more" in rooms
        assert "r-0" not in rooms


class TestDuplicates:
    async def test_resent_id_is_delivered_once(self, make_client: MakeClient) -> None:
        alice, bob = await _lobby(make_client, "alice", "bob")
        await alice.say("first", msg_id="m-1")
        await alice.say("first, again", msg_id="m-1")  # a retry: not delivered again...
        await alice.say("second", msg_id="m-2")
        _check_msg(await alice.recv(), alice, "m-1", "first")
        _check_msg(await alice.recv(), alice, "m-1", "first")  # ...but the sender gets the stored copy
        _check_msg(await alice.recv(), alice, "m-2", "second")
        _check_msg(await bob.recv(), alice, "m-1", "first")
        _check_msg(await bob.recv(), alice, "m-2", "second")  # not the retry
        await alice.quiet(0.3)
        # ids are per sender and per room
        await bob.say("bob's own m-1", msg_id="m-1")
        for client in (alice, bob):
            _check_msg(await client.recv(), bob, "m-1", "bob's own m-1")
        await alice.join("other")
        await alice.say("m-1 in another room", room="other", msg_id="m-1")
        _check_msg(await alice.recv(), alice, "m-1", "m-1 in another room", room="other")
        await alice.say("still a retry", msg_id="m-2")
        _check_msg(await alice.recv(), alice, "m-2", "second")  # the stored copy, to alice alone
        await alice.quiet(0.3)
        await bob.quiet(0.1)
