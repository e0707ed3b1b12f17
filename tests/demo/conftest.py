"""Fixtures for the chat demo tests: a real chat backend and real python-sdk nodes as members."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glueberry import Config, ConnectionState, HelloHandshakeHandler, Node, generate_private_key
from glueberry_demo.chat_backend import ChatBackend
from glueberry_demo.rooms import ChatRooms
from tests.helpers import wait_state


@dataclass
class Member:
    """A chat member: a python-sdk node connected to the backend, speaking the chat protocol."""

    node: Node
    backend: ChatBackend

    @property
    def peer(self) -> str:
        return str(self.node.peer_id)

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self.node.send(self.backend.peer_id, "chat", data)

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.node.receive(timeout)
        assert message.stream_name == "chat"
        value: dict[str, Any] = json.loads(message.data)
        return value

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.receive(timeout)
        assert message["t"] == kind, message
        return message

    async def nothing(self, wait: float = 0.3) -> None:
        """Nothing arrives within ``wait`` seconds."""
        try:
            extra = await self.receive(wait)
        except TimeoutError:
            return
        pytest.fail(f"unexpected message {extra}")

    async def join(self, room: str, nick: str) -> dict[str, Any]:
        await self.send({"t": "join", "room": room, "nick": nick})
        return await self.expect("welcome")

    async def say(self, room: str, message_id: str, text: str) -> None:
        await self.send({"t": "msg", "room": room, "id": message_id, "text": text})

    async def connect(self) -> None:
        events = self.node.events(peer_ids=[self.backend.peer_id], states=[ConnectionState.ESTABLISHED])
        with events:
            self.node.add_peer(self.backend.peer_id, self.backend.addrs)
            await wait_state(events, ConnectionState.ESTABLISHED, timeout=10)

    async def disconnect(self) -> None:
        self.node.remove_peer(self.backend.peer_id)  # no automatic reconnection
        await self.node.disconnect(self.backend.peer_id)


MakeBackend = Callable[..., Awaitable[ChatBackend]]
MakeMember = Callable[..., Awaitable[Member]]
Lobby = tuple[Member, Member]


@pytest.fixture
async def make_backend(tmp_path: Path) -> AsyncIterator[MakeBackend]:
    backends: list[ChatBackend] = []

    async def make(rooms: ChatRooms | None = None, listen: str = "/ip4/127.0.0.1/tcp/0") -> ChatBackend:
        key = backends[0].node.config.private_key if backends else generate_private_key()
        backend = ChatBackend(key, listen, tmp_path / f"backend-{len(backends)}.json", rooms=rooms)
        await backend.start()
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.stop()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> ChatBackend:
    return await make_backend()


@pytest.fixture
async def make_member(tmp_path: Path, backend: ChatBackend) -> AsyncIterator[MakeMember]:
    members: list[Member] = []

    async def make(*, connect: bool = True, to: ChatBackend | None = None) -> Member:
        config = Config(
            generate_private_key(),
            tmp_path / f"member-{len(members)}.json",
            ["/ip4/127.0.0.1/tcp/0"],
            max_messages_per_second=0,
        )
        node = Node(config, handshake=HelloHandshakeHandler(streams=["chat"], name=f"m{len(members)}"))
        await node.start()
        member = Member(node, to or backend)
        members.append(member)
        if connect:
            await member.connect()
        return member

    yield make
    for member in members:
        if member.node._started:
            await member.node.stop()


@pytest.fixture
async def lobby(make_member: MakeMember) -> Lobby:
    """Alice and Bob, both in room "lobby"; Alice has been told that Bob joined."""
    alice, bob = await make_member(), await make_member()
    await alice.join("lobby", "alice")
    await bob.join("lobby", "bob")
    await alice.expect("joined")
    return alice, bob
