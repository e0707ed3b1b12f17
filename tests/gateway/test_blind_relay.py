"""The gateway relays sessions it cannot read or forge.

Every byte it handles is recorded: the WebSocket messages in both directions (an ASGI wrapper
around the real app) and every payload it relays to and from the backend (its tap). None of them
may contain a message's plaintext, the stream key, or the browser's private key, in raw or
base64 form. A frame the gateway alters is rejected by the receiver, whichever way it travels.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography.hazmat.primitives import serialization

from glueberry.p2p.keys import generate_private_key
from glueberry.wire.cipher import shared_key
from tests.gateway.conftest import STREAMS, EchoBackend, MakeClient, MakeGateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Recorder:
    """Keeps every buffer the gateway handled."""

    def __init__(self) -> None:
        self.buffers: list[bytes] = []

    def wrap(self, app: App) -> App:
        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            async def rec_receive() -> Message:
                message = await receive()
                self._keep(message)
                return message

            async def rec_send(message: Message) -> None:
                self._keep(message)
                await send(message)

            await app(scope, rec_receive, rec_send)

        return recorded

    def _keep(self, message: Message) -> None:
        for key in ("bytes", "text"):
            value = message.get(key)
            if isinstance(value, bytes):
                self.buffers.append(value)
            elif isinstance(value, str):
                self.buffers.append(value.encode())

    def tap(self, direction: str, session: int, stream: str, payload: bytes) -> bytes:
        self.buffers.append(payload)
        return payload

    def contains(self, secret: bytes) -> bool:
        forms = {
            secret,
            base64.urlsafe_b64encode(secret).rstrip(b"="),
            base64.b64encode(secret).rstrip(b"="),
            secret.hex().encode(),
        }
        return any(form in buf for buf in self.buffers for form in forms)


async def test_no_plaintext_no_stream_key_no_private_key(
    echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
) -> None:
    recorder = Recorder()
    gw = await make_gateway(echo_backend.backend(), tap=recorder.tap, wrap=recorder.wrap)
    identity = generate_private_key()
    client = await make_client(gw.url, identity=identity)
    session = await client.open("py")
    await session.handshake(STREAMS)
    secrets = [os.urandom(24) for _ in range(20)]
    for secret in secrets:
        await session.send("chat", secret)
        assert (await session.receive(timeout=5)).data == b"echo:" + secret
    pushed = os.urandom(24)
    await echo_backend.node.send(client.peer_id, "files", pushed)
    assert (await session.receive(timeout=5)).data == pushed

    assert recorder.buffers, "the recorder saw nothing: the test would prove nothing"
    assert any(len(b) > 40 for b in recorder.buffers)  # it did see the encrypted frames
    for secret in [*secrets, pushed]:
        assert not recorder.contains(secret)
    stream_key = shared_key(identity, echo_backend.node.public_key)
    assert not recorder.contains(stream_key)
    seed = identity.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert not recorder.contains(seed)
    # the relay did carry the browser's real identity to the backend
    assert echo_backend.node.connection_state(client.peer_id).name == "ESTABLISHED"


async def test_a_frame_altered_in_the_gateway_is_rejected_both_ways(
    echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
) -> None:
    flip = {"to_backend": False, "to_browser": False}

    def tamper(direction: str, session: int, stream: str, payload: bytes) -> bytes:
        if flip[direction] and stream != "handshake":
            flip[direction] = False
            return payload[:-1] + bytes([payload[-1] ^ 0x01])
        return payload

    gw = await make_gateway(echo_backend.backend(), tap=tamper)
    client = await make_client(gw.url)
    session = await client.open("py")
    await session.handshake(STREAMS)

    # browser -> backend: the backend drops the altered frame and its callback fires
    flip["to_backend"] = True
    await session.send("chat", b"altered on the way in")
    await session.send("chat", b"intact")
    assert (await session.receive(timeout=5)).data == b"echo:intact"
    assert ("chat", b"altered on the way in") not in echo_backend.received
    assert echo_backend.decryption_errors == [str(client.peer_id)]

    # backend -> browser: the browser drops it and counts it
    flip["to_browser"] = True
    await echo_backend.node.send(client.peer_id, "chat", b"altered on the way out")
    await echo_backend.node.send(client.peer_id, "chat", b"intact too")
    assert (await session.receive(timeout=5)).data == b"intact too"
    assert session.decryption_errors == 1
