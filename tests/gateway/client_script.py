"""A scripted gateway around one client core (sans I/O), and the backend behind it: the
in-memory setting of the client core's tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import DecryptionFailed
from glueberry.handshake import (
    FinalizeRequested,
    HandshakeMachine,
    HelloHandshake,
    PrepareRequested,
    SendMessage,
)
from glueberry.p2p.keys import PeerID, public_key_bytes
from glueberry.wire.cipher import StreamCipher, shared_key
from glueberry_gateway.client.core import ClientProtocol
from glueberry_gateway.client.events import ClientEvent, HandshakeCompleted, SessionOpened
from glueberry_gateway.protocol.auth import NOISE_PREFIX
from glueberry_gateway.protocol.codes import CloseSocket
from glueberry_gateway.protocol.control import Auth, Open, decode_client_message
from glueberry_gateway.protocol.control import encode_json as encode
from glueberry_gateway.protocol.frames import decode_batch, decode_data_frame, encode_data_frame

#: Makes the backend's end of the handshake: (its key, the client's peer ID) -> a responder.
Responder = Callable[[Ed25519PrivateKey, PeerID], HandshakeMachine]


ORIGIN = "http://127.0.0.1:8080"


def msg(kind: str, **fields: Any) -> str:
    return encode(kind, **fields)


def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def peer(k: Ed25519PrivateKey) -> PeerID:
    return PeerID.from_private_key(k)


class FakeBackend:
    """The backend behind the gateway: a handshake responder (HelloHandshake by default) and
    the Glueberry cipher."""

    def __init__(
        self,
        client_peer: PeerID,
        *,
        send_complete: bool = True,
        echo: bool = True,
        responder: Responder | None = None,
        identity: Ed25519PrivateKey | None = None,
    ) -> None:
        self.key = identity or key()
        self.peer_id = peer(self.key)
        self.handshake: HandshakeMachine = (
            responder(self.key, client_peer)
            if responder is not None
            else HelloHandshake(
                local_public_key=public_key_bytes(self.key),
                remote_peer_id=client_peer,
                name="backend",
                initiator=False,
            )
        )
        self.cipher: StreamCipher | None = None
        self.received: list[tuple[str, bytes]] = []
        self.finalized = False
        self.decryption_errors = 0
        self.send_complete = send_complete
        self.echo = echo

    def on_frame(self, stream: str, payload: bytes) -> list[tuple[str, bytes]]:
        """What the backend sends back for one frame from the client."""
        if stream == "handshake":
            out = []
            for action in self.handshake.receive(payload).actions:
                if isinstance(action, PrepareRequested):
                    self.cipher = StreamCipher(shared_key(self.key, action.public_key))
                elif isinstance(action, SendMessage):
                    if action.data != b"\x03" or self.send_complete:
                        out.append(("handshake", action.data))
                elif isinstance(action, FinalizeRequested):
                    self.finalized = True
            return out
        assert self.cipher is not None
        try:
            plaintext = self.cipher.decrypt(payload)
        except DecryptionFailed:
            self.decryption_errors += 1  # Go drops the frame and reads on (PROTOCOL.md §8.5)
            return []
        self.received.append((stream, plaintext))
        return [(stream, self.cipher.encrypt(b"echo:" + plaintext))] if self.echo else []


class Script:
    """A scripted gateway around one client core."""

    def __init__(self, *, token: str | None = None, **options: Any) -> None:
        self.gateway_key = key()
        self.gateway = peer(self.gateway_key)
        self.identity = key()
        self.core = ClientProtocol(self.identity, ORIGIN, token=token, **options)
        self.nonce = os.urandom(32)
        self.resume_token = os.urandom(24)
        self.backend = FakeBackend(self.core.peer_id)

    def ready_fields(self, **extra: Any) -> dict[str, Any]:
        return {
            "peer_id": str(self.core.peer_id),
            "resume_token": self.resume_token,
            "resume_grace": 30,
            "backends": [{"name": "chat", "peer_id": str(self.backend.peer_id)}],
            "limits": {
                "max_sessions": 16,
                "max_streams": 16,
                "max_frame_bytes": 1048640,
                "max_control_bytes": 16384,
            },
            **extra,
        }

    def challenge(self) -> Auth:
        self.core.receive_text(
            msg("challenge", version=1, nonce=self.nonce, gateway=str(self.gateway), expires_in=10)
        )
        (text,) = self.core.data_to_send()
        assert isinstance(text, str)
        auth = decode_client_message(text)
        assert isinstance(auth, Auth)
        return auth

    def authenticate(self, **extra: Any) -> list[ClientEvent]:
        self.challenge()
        self.core.receive_text(msg("ready", **self.ready_fields(**extra)))
        return self.core.events_received()

    def open(self, number_hint: str = "chat") -> int:
        number = self.core.open(number_hint)
        (text,) = self.core.data_to_send()
        request = decode_client_message(str(text))
        assert isinstance(request, Open)
        self.core.receive_text(msg("sign", id=900001, session=number, payload=NOISE_PREFIX + os.urandom(32)))
        self.core.data_to_send()
        self.core.receive_text(
            msg("opened", id=request.id, session=number, backend="chat", peer_id=str(self.backend.peer_id))
        )
        events = self.core.events_received()
        assert SessionOpened(number, "chat", self.backend.peer_id) in events
        return number

    def relay(self, number: int, backend: FakeBackend | None = None) -> list[str | CloseSocket]:
        """Carry the client's data frames to the backend and its answers back, until quiet.
        Returns the control messages (and closes) the client queued meanwhile."""
        backend = backend or self.backend
        control: list[str | CloseSocket] = []
        for _ in range(100):
            items = self.core.data_to_send()
            if not items:
                return control
            for item in items:
                if isinstance(item, bytes):
                    batch = decode_batch(item, max_bytes=1 << 21) if item[0] == 0x02 else [item]
                    for data in batch:
                        frame = decode_data_frame(data, max_bytes=1 << 21)
                        assert frame.session == number
                        for stream, payload in backend.on_frame(frame.stream, bytes(frame.payload)):
                            self.core.receive_binary(encode_data_frame(number, stream, payload))
                else:
                    control.append(item)
        raise AssertionError("relay did not settle")

    def established(self) -> int:
        self.authenticate()
        number = self.open()
        self.core.start_handshake(number, streams=["chat"], name="alice")
        self.relay(number)
        events = self.core.events_received()
        assert HandshakeCompleted(number, public_key_bytes(self.backend.key)) in events
        return number

    def from_backend(self, number: int, stream: str, plaintext: bytes) -> None:
        assert self.backend.cipher is not None
        self.core.receive_binary(encode_data_frame(number, stream, self.backend.cipher.encrypt(plaintext)))
