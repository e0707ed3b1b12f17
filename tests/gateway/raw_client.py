"""A hand-driven browser for bad-input tests: a plain ``websockets`` connection whose every message
the test chooses, so it can break the protocol on purpose (docs/gateway-protocol.md).

It knows just enough to get somewhere before misbehaving: answer the challenge (§3), open a
session answering ``sign`` (§5.1), and run the Hello/PubKey/Complete handshake with the backend by
hand (PROTOCOL.md §10) so that the backend talks to it. Nothing here hides what the gateway sent:
:meth:`RawClient.until_closed` returns every control message and the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from glueberry.handshake import FinalizeRequested, HelloHandshake, PrepareRequested, SendMessage
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from glueberry.wire.cipher import StreamCipher, shared_key
from glueberry_gateway.protocol import control
from glueberry_gateway.protocol import frames as wire
from glueberry_gateway.protocol.auth import auth_message, is_noise_payload

__all__ = ["Closed", "RawClient", "RawSession", "http_get"]

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Closed:
    """How a socket ended: the close code received (None: no close frame) and the control
    messages that came before it, in order."""

    code: int | None
    reason: str
    messages: list[Json]

    @property
    def errors(self) -> list[Json]:
        return [m for m in self.messages if m.get("type") == "error"]


@dataclass
class RawSession:
    """A session opened by hand; :meth:`RawClient.handshake` fills in the stream key."""

    number: int
    backend_peer_id: PeerID
    cipher: StreamCipher | None = None


@dataclass
class RawClient:
    ws: ClientConnection
    identity: Ed25519PrivateKey
    origin: str
    challenge: Json | None = None
    ready: Json | None = None
    frames: deque[wire.DataFrame] = field(default_factory=deque)  # binary frames read meanwhile
    binary_messages: int = 0  # binary WebSocket messages read (a batch is one, §5.6)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        origin: str,
        identity: Ed25519PrivateKey | None = None,
        subprotocols: Sequence[str] = (control.SUBPROTOCOL,),
        source_ip: str | None = None,
        max_queue: int = 16,
        receive_buffer: int | None = None,
    ) -> RawClient:
        """Open the WebSocket; nothing is read yet.

        Args:
            subprotocols: the subprotocols to offer (default ``glueberry.v1``; empty: none).
            source_ip: bind the client end to this loopback address (127.0.0.x) so that the
                gateway's per-IP limits see another address.
            max_queue: websockets' read buffer in frames; once full it stops reading the socket.
            receive_buffer: SO_RCVBUF of the client socket (a small one makes a stalled reader
                fill the path quickly).
        """
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.bind((source_ip or "127.0.0.1", 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
            ws = await connect(
                url,
                sock=sock,
                subprotocols=[Subprotocol(p) for p in subprotocols] or None,
                origin=Origin(origin),
                compression=None,
                max_size=None,
                max_queue=max_queue,
                open_timeout=5,
                close_timeout=2,
                ping_interval=None,
            )
        except BaseException:
            sock.close()
            raise
        return cls(ws, identity or generate_private_key(), origin)

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.identity)

    @property
    def peer_id(self) -> PeerID:
        return PeerID.from_private_key(self.identity)

    # ---- sending ------------------------------------------------------------------------------

    async def send_json(self, kind: str, **fields: Any) -> None:
        await self.ws.send(control.encode_json(kind, **fields))

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def send_binary(self, data: bytes) -> None:
        await self.ws.send(data)

    async def send_data(self, session: int, stream: str, payload: bytes) -> None:
        await self.ws.send(wire.encode_data_frame(session, stream, payload))

    # ---- receiving ----------------------------------------------------------------------------

    async def next_control(self, kind: str | None = None, *, timeout: float = 5.0) -> Json:
        """The next control message (of type ``kind`` if given; others before it are skipped),
        keeping data frames in :attr:`frames`. Raises ConnectionClosed or TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.recv()
                if isinstance(message, bytes):
                    self._keep(message)
                    continue
                obj = orjson.loads(message)
                if kind is None or obj["type"] == kind:
                    return obj

    async def next_frame(self, *, timeout: float = 5.0) -> wire.DataFrame:
        """The next data frame (control messages in between are skipped)."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                message = await self.ws.recv()
                if isinstance(message, bytes):
                    self._keep(message)
            return self.frames.popleft()

    def _keep(self, message: bytes) -> None:
        self.binary_messages += 1
        if message[:1] == bytes((wire.BATCH_KIND,)):
            frames = wire.decode_batch(message, max_bytes=1 << 24)
        else:
            frames = [memoryview(message)]
        self.frames.extend(wire.decode_data_frame(f, max_bytes=1 << 24) for f in frames)

    async def until_closed(self, *, timeout: float = 5.0) -> Closed:
        """Read everything until the gateway closes the socket."""
        messages: list[Json] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await self.ws.recv()
                    if isinstance(message, str):
                        messages.append(orjson.loads(message))
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "", messages)

    async def is_open(self, *, timeout: float = 5.0) -> bool:
        """An application ping answered: the socket is alive and still served."""
        ping_id = int.from_bytes(os.urandom(3), "big") + 1
        try:
            await self.send_json("ping", id=ping_id)
            while True:
                pong = await self.next_control("pong", timeout=timeout)
                if pong["id"] == ping_id:
                    return True
        except ConnectionClosed:
            return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)

    # ---- authentication (§3) ------------------------------------------------------------------

    async def read_challenge(self) -> Json:
        if self.challenge is None:
            self.challenge = await self.next_control("challenge")
        return self.challenge

    def sign_challenge(self, challenge: Json, *, origin: str | None = None) -> bytes:
        nonce = control.b64d(challenge["nonce"], "nonce", size=32)
        message = auth_message(challenge["gateway"], origin or self.origin, nonce)
        return self.identity.sign(message)

    async def send_auth(
        self, *, token: str | None = None, signature: bytes | None = None, **extra: Any
    ) -> None:
        """Answer the challenge (read first if needed); ``signature`` overrides the right one."""
        challenge = await self.read_challenge()
        if signature is None:
            signature = self.sign_challenge(challenge)
        fields: dict[str, Any] = {"version": control.PROTOCOL_VERSION, "public_key": self.public_key}
        fields |= {"signature": signature, "token": token} | extra
        await self.send_json("auth", **fields)

    async def authenticate(self, *, token: str | None = None, **extra: Any) -> Json:
        await self.send_auth(token=token, **extra)
        self.ready = await self.next_control("ready")
        return self.ready

    # ---- sessions (§5) ------------------------------------------------------------------------

    async def answer_sign(self, *, refuse: bool = False) -> Json:
        """Wait for the gateway's ``sign`` and sign it (only a Noise payload), or refuse."""
        request = await self.next_control("sign")
        payload = control.b64d(request["payload"], "payload")
        if refuse or not is_noise_payload(payload):
            await self.send_json("sign_refused", id=request["id"])
        else:
            await self.send_json("signature", id=request["id"], signature=self.identity.sign(payload))
        return request

    async def open(self, backend: str, *, session: int = 1, request_id: int = 1) -> RawSession:
        """Open a session, answering ``sign``; raises AssertionError with the gateway's answer if
        it is not ``opened``."""
        await self.send_json("open", id=request_id, session=session, backend=backend)
        await self.answer_sign()
        answer = await self.next_control()
        while answer["type"] not in ("opened", "error"):
            answer = await self.next_control()
        assert answer["type"] == "opened", answer
        assert (answer["id"], answer["session"]) == (request_id, session)
        return RawSession(session, PeerID.from_string(answer["peer_id"]))

    async def handshake(self, session: RawSession, *, timeout: float = 5.0) -> None:
        """Hello/PubKey/Complete as initiator, by hand, frame by frame (PROTOCOL.md §10)."""
        handshake = HelloHandshake(
            local_public_key=self.public_key,
            remote_peer_id=session.backend_peer_id,
            name="raw",
            initiator=True,
        )
        for message in handshake.start():
            await self.send_data(session.number, "handshake", message)
        done = False
        async with asyncio.timeout(timeout):
            while not done:
                frame = await self.next_frame()
                if frame.session != session.number or frame.stream != "handshake":
                    continue
                for action in handshake.receive(bytes(frame.payload)).actions:
                    if isinstance(action, PrepareRequested):
                        session.cipher = StreamCipher(shared_key(self.identity, action.public_key))
                    elif isinstance(action, SendMessage):
                        await self.send_data(session.number, "handshake", action.data)
                    elif isinstance(action, FinalizeRequested):
                        done = True

    async def roundtrip(self, session: RawSession, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send ``data`` encrypted on "chat" and return the decrypted answer on that session."""
        assert session.cipher is not None, "handshake first"
        await self.send_data(session.number, "chat", session.cipher.encrypt(data))
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next_frame()
                if frame.session == session.number and frame.stream == "chat":
                    return session.cipher.decrypt(bytes(frame.payload))


async def http_get(host: str, port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """A bare HTTP/1.1 GET (no client library needed): the status code and the body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body
