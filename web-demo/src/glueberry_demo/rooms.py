"""The chat protocol's state machine: rooms, members, history, de-duplication (no I/O).

:class:`ChatRooms` takes one decoded message from one peer and returns what to send to whom
(:class:`Outgoing`); :mod:`glueberry_demo.chat_backend` feeds it from a Glueberry node and sends
the results. The protocol is specified in ``web-demo/README.md`` ("The chat protocol"); in short,
JSON objects with a ``"t"`` field on the Glueberry stream ``chat``:

    client → backend   join {room, nick} · msg {room, id, text} · leave {room}
    backend → client   welcome {room, members, history} · msg {room, id, from, nick, text, ts}
                       joined {room, peer, nick} · left {room, peer, nick} · error {code, text}

Every input is bounded and checked; anything wrong becomes an ``error`` for that peer alone.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "STREAM",
    "ChatLimits",
    "ChatRooms",
    "ErrorCode",
    "Outgoing",
    "decode",
    "encode",
]

#: The Glueberry stream the chat protocol runs on.
STREAM: Final = "chat"

_ROOM = re.compile(r"[a-z0-9-]{1,32}")
# The message id: a client-chosen unique string. Printable ASCII without spaces keeps it safe to
# show and to use as an HTML attribute value.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,64}")
# Control characters other than tab and newline, and lone surrogates (JSON can carry "\ud800",
# which could not be encoded back to UTF-8).
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_MAX_INPUT_BYTES: Final = 16 * 1024


class ErrorCode:
    """The ``code`` of an ``error`` message (a string, so that a page can branch on it)."""

    BAD_REQUEST: Final = "bad_request"  # not JSON, not an object, unknown "t", a field missing or wrong
    NOT_MEMBER: Final = "not_member"  # "msg" to a room the peer has not joined: join, then resend
    ROOM_FULL: Final = "room_full"  # max_members reached
    TOO_MANY_ROOMS: Final = "too_many_rooms"  # max_rooms reached and none can be forgotten
    TOO_MANY_JOINS: Final = "too_many_joins"  # this peer is already in max_rooms_per_peer rooms


@dataclass(frozen=True, slots=True)
class ChatLimits:
    max_rooms: int = 100
    max_members: int = 200  # per room
    max_rooms_per_peer: int = 16
    history: int = 50  # messages kept per room, sent in "welcome"
    remembered_ids: int = 1000  # (sender, id) pairs remembered per room for de-duplication
    max_text: int = 2000  # characters (code points)
    max_nick: int = 32
    max_input_bytes: int = _MAX_INPUT_BYTES  # a client message larger than this is refused unparsed


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Send ``message`` (a JSON object) to ``peer`` (a peer ID string)."""

    peer: str
    message: dict[str, Any]


class _Refused(Exception):
    def __init__(self, code: str, text: str, **context: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.context = context


@dataclass(slots=True)
class _Room:
    name: str
    history_size: int
    members: dict[str, str] = field(default_factory=dict)  # peer -> nick, in joining order
    history: deque[dict[str, Any]] = field(init=False)
    seen: OrderedDict[tuple[str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    last_ts: int = 0
    last_active: float = 0.0

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)


def encode(message: dict[str, Any]) -> bytes:
    """One protocol message as compact UTF-8 JSON."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes, max_bytes: int = _MAX_INPUT_BYTES) -> dict[str, Any]:
    """Parse one client message. Raises ValueError (with a reason for people) if it is not a JSON
    object with a string ``"t"``."""
    if len(data) > max_bytes:
        raise ValueError(f"message of {len(data)} bytes is larger than {max_bytes}")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not UTF-8 JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise ValueError('not a JSON object with a "t" field')
    return value


class ChatRooms:
    """Every room of one backend. Not thread-safe; call from one task.

    Args:
        limits: the bounds (the defaults are the protocol's).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, limits: ChatLimits | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or ChatLimits()
        self._clock = clock
        self.rooms: dict[str, _Room] = {}
        self._joined: dict[str, set[str]] = {}  # peer -> the rooms it is in

    # Queries.

    def members(self, room: str) -> dict[str, str]:
        """peer -> nick of a room (empty when the room does not exist)."""
        found = self.rooms.get(room)
        return dict(found.members) if found is not None else {}

    def rooms_of(self, peer: str) -> set[str]:
        return set(self._joined.get(peer, ()))

    @property
    def peers(self) -> set[str]:
        """Every peer that is a member of some room."""
        return set(self._joined)

    # Events.

    def handle(self, peer: str, data: bytes) -> list[Outgoing]:
        """One message from ``peer``: what to send, in order. Never raises for bad input."""
        try:
            message = decode(data, self.limits.max_input_bytes)
            kind = message["t"]
            if kind == "join":
                return self._join(peer, message)
            if kind == "msg":
                return self._message(peer, message)
            if kind == "leave":
                return self._leave(peer, message)
            raise _Refused(ErrorCode.BAD_REQUEST, f"unknown message type {kind[:32]!r}")
        except ValueError as exc:
            return [_error(peer, ErrorCode.BAD_REQUEST, str(exc))]
        except _Refused as exc:
            return [_error(peer, exc.code, exc.text, **exc.context)]

    def peer_gone(self, peer: str) -> list[Outgoing]:
        """The peer disconnected: it leaves every room; the others are told."""
        out: list[Outgoing] = []
        for name in sorted(self._joined.get(peer, ())):
            out.extend(self._remove(self.rooms[name], peer, tell_leaver=False))
        return out

    def forget_members(self) -> None:
        """Empty every member list but keep rooms and history (a backend restart: nobody is
        connected any more; the pages rejoin)."""
        for room in self.rooms.values():
            room.members.clear()
        self._joined.clear()

    # Messages.

    def _join(self, peer: str, message: dict[str, Any]) -> list[Outgoing]:
        name = self._room_name(message)
        nick = self._nick(message)
        room = self.rooms.get(name)
        out: list[Outgoing] = []
        if room is not None and peer in room.members:
            # A rejoin (e.g. after a reconnect): a fresh welcome, and the others learn a new nick.
            if room.members[peer] != nick:
                room.members[peer] = nick
                joined = {"t": "joined", "room": name, "peer": peer, "nick": nick}
                out.extend(Outgoing(p, joined) for p in room.members if p != peer)
        else:
            if len(self._joined.get(peer, ())) >= self.limits.max_rooms_per_peer:
                raise _Refused(
                    ErrorCode.TOO_MANY_JOINS,
                    f"you are in {self.limits.max_rooms_per_peer} rooms already; leave one first",
                    room=name,
                )
            if room is None:
                room = self._create(name)
            if len(room.members) >= self.limits.max_members:
                raise _Refused(ErrorCode.ROOM_FULL, f"room {name} is full", room=name)
            room.members[peer] = nick
            self._joined.setdefault(peer, set()).add(name)
            joined = {"t": "joined", "room": name, "peer": peer, "nick": nick}
            out.extend(Outgoing(p, joined) for p in room.members if p != peer)
        room.last_active = self._clock()
        welcome = {
            "t": "welcome",
            "room": name,
            "members": [{"peer": p, "nick": n} for p, n in room.members.items()],
            "history": list(room.history),
        }
        return [Outgoing(peer, welcome), *out]

    def _message(self, peer: str, message: dict[str, Any]) -> list[Outgoing]:
        name = self._room_name(message)
        message_id = message.get("id")
        if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
            raise _Refused(ErrorCode.BAD_REQUEST, '"id" must be 1-64 printable ASCII characters', room=name)
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Refused(
                ErrorCode.BAD_REQUEST, '"text" must be a non-empty string', room=name, id=message_id
            )
        if len(text) > self.limits.max_text:
            raise _Refused(
                ErrorCode.BAD_REQUEST,
                f"text of {len(text)} characters is longer than {self.limits.max_text}",
                room=name,
                id=message_id,
            )
        if _BAD_TEXT.search(text):
            raise _Refused(
                ErrorCode.BAD_REQUEST, "text contains control characters", room=name, id=message_id
            )
        room = self.rooms.get(name)
        if room is None or peer not in room.members:
            raise _Refused(ErrorCode.NOT_MEMBER, f"join room {name} first", room=name, id=message_id)
        key = (peer, message_id)
        earlier = room.seen.get(key)
        if earlier is not None:
            # A resend (the sender did not see its message come back): the others have it
            # already; the sender gets it again so that it can clear its outbox.
            room.seen.move_to_end(key)
            return [Outgoing(peer, earlier)]
        ts = max(int(self._clock() * 1000), room.last_ts + 1)  # strictly increasing in a room
        room.last_ts = ts
        room.last_active = self._clock()
        chat = {
            "t": "msg",
            "room": name,
            "id": message_id,
            "from": peer,
            "nick": room.members[peer],
            "text": text,
            "ts": ts,
        }
        room.history.append(chat)
        room.seen[key] = chat
        while len(room.seen) > self.limits.remembered_ids:
            room.seen.popitem(last=False)
        return [Outgoing(p, chat) for p in room.members]

    def _leave(self, peer: str, message: dict[str, Any]) -> list[Outgoing]:
        room = self.rooms.get(self._room_name(message))
        if room is None or peer not in room.members:
            return []  # idempotent: leaving a room one is not in changes nothing
        room.last_active = self._clock()
        return self._remove(room, peer, tell_leaver=True)

    # Helpers.

    def _remove(self, room: _Room, peer: str, *, tell_leaver: bool) -> list[Outgoing]:
        left = {"t": "left", "room": room.name, "peer": peer, "nick": room.members[peer]}
        recipients = [p for p in room.members if tell_leaver or p != peer]
        del room.members[peer]
        rooms = self._joined.get(peer)
        if rooms is not None:
            rooms.discard(room.name)
            if not rooms:
                del self._joined[peer]
        return [Outgoing(p, left) for p in recipients]

    def _create(self, name: str) -> _Room:
        if len(self.rooms) >= self.limits.max_rooms:
            # Forget the empty room that was quiet longest (its history goes with it).
            empty = [r for r in self.rooms.values() if not r.members]
            if not empty:
                raise _Refused(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"the backend has {self.limits.max_rooms} rooms in use; try an existing one",
                    room=name,
                )
            del self.rooms[min(empty, key=lambda r: r.last_active).name]
        room = self.rooms[name] = _Room(name, self.limits.history)
        return room

    def _room_name(self, message: dict[str, Any]) -> str:
        name = message.get("room")
        if not isinstance(name, str) or not _ROOM.fullmatch(name):
            raise _Refused(ErrorCode.BAD_REQUEST, '"room" must be 1-32 characters of a-z, 0-9 and "-"')
        return name

    def _nick(self, message: dict[str, Any]) -> str:
        nick = message.get("nick")
        if not isinstance(nick, str):
            raise _Refused(ErrorCode.BAD_REQUEST, '"nick" must be a string')
        nick = nick.strip()
        if not 1 <= len(nick) <= self.limits.max_nick or not nick.isprintable():
            raise _Refused(
                ErrorCode.BAD_REQUEST, f'"nick" must be 1-{self.limits.max_nick} printable characters'
            )
        return nick


def _error(peer: str, code: str, text: str, **context: str) -> Outgoing:
    return Outgoing(peer, {"t": "error", "code": code, "text": text, **context})
