"""A gateway's socket core and a browser's client core joined in memory (after h11's
``ConnectionPair``): what one side produces is fed to the other, no socket, no clock but the one
the test moves. The test plays the gateway's driver: it answers the server core's events itself
(:meth:`CorePair.authenticate`, :meth:`CorePair.open`), so each rule of the protocol is checked
on the two real cores that implement it.

To extend: add a step as a method that feeds one side and returns what the other saw; keep the
driver's answers explicit in the test that needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multiaddr import Multiaddr
from glueberry.p2p.signer import NOISE_SIGNATURE_PREFIX
from glueberry_gateway.client.core import ClientProtocol
from glueberry_gateway.client.events import ClientEvent
from glueberry_gateway.protocol.codes import CloseSocket
from glueberry_gateway.server.core import ServerProtocol
from glueberry_gateway.server.events import AuthAccepted, OpenRequested, ServerEvent, SignatureAnswered
from glueberry_gateway.server.metrics import Metrics
from glueberry_gateway.server.policy import SettingsPolicy
from glueberry_gateway.server.settings import Backend, Settings

ORIGIN = "https://app.test"


@dataclass(eq=False)
class FakeSession:
    """What a driver keeps per session (the core never looks inside)."""

    number: int


def backend(name: str = "chat") -> Backend:
    return Backend(
        name, PeerID.from_private_key(generate_private_key()), (Multiaddr.parse("/ip4/127.0.0.1/tcp/1"),)
    )


@dataclass(eq=False)
class CorePair:
    settings: Settings
    now: float = 1000.0
    identity: Ed25519PrivateKey = field(default_factory=generate_private_key)
    client_options: dict[str, Any] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    server_events: list[ServerEvent[FakeSession]] = field(default_factory=list)
    client_events: list[ClientEvent] = field(default_factory=list)
    server_closed: CloseSocket | None = None
    client_closed: CloseSocket | None = None

    def __post_init__(self) -> None:
        self.gateway_peer_id = self.settings.peer_id
        self.server: ServerProtocol[FakeSession] = ServerProtocol(
            SettingsPolicy(self.settings),
            self.settings.limits,
            self.metrics,
            gateway_peer_id=str(self.gateway_peer_id),
            origin=self.client_options.pop("upgrade_origin", ORIGIN),
            now=self.now,
        )
        self.client = ClientProtocol(self.identity, ORIGIN, **self.client_options)

    # Moving what each side produces to the other.

    def to_client(self) -> list[str]:
        """Feed the client what the server produced; returns the text messages moved."""
        texts = []
        for item in self.server.data_to_send():
            if isinstance(item, CloseSocket):
                self.server_closed = item
                self.client.connection_closed(int(item.code), item.reason)
            else:
                texts.append(item)
                self.client.receive_text(item)
        self.client_events += self.client.events_received()
        return texts

    def to_server(self) -> list[str | bytes]:
        """Feed the server what the client produced; returns the messages moved."""
        moved: list[str | bytes] = []
        for item in self.client.data_to_send():
            if isinstance(item, CloseSocket):
                self.client_closed = item
                self.server.connection_lost(item.code)
            elif isinstance(item, str):
                moved.append(item)
                self.server.receive_text(item, self.now)
            else:
                moved.append(item)
                self.server.receive_binary(item, self.now)
        self.server_events += self.server.events_received()
        return moved

    def take_server_events(self) -> list[ServerEvent[FakeSession]]:
        events, self.server_events = self.server_events, []
        return events

    def take_client_events(self) -> list[ClientEvent]:
        events, self.client_events = self.client_events, []
        return events

    # The steps of a socket's life, with the driver's answers.

    def authenticate(self) -> AuthAccepted:
        self.to_client()  # the challenge
        self.to_server()  # auth
        (accepted,) = [e for e in self.take_server_events() if isinstance(e, AuthAccepted)]
        self.server.accept({}, None)
        self.to_client()  # ready
        self.take_client_events()
        return accepted

    def open(self, backend_name: str = "chat") -> tuple[int, FakeSession]:
        """Open a session through the whole exchange (open, sign, opened)."""
        number = self.client.open(backend_name)
        self.to_server()
        (request,) = [e for e in self.take_server_events() if isinstance(e, OpenRequested)]
        signature = self.sign(number, NOISE_SIGNATURE_PREFIX + os.urandom(32))
        assert signature is not None
        session = FakeSession(number)
        self.server.session_opened(request.id, number, request.backend, session)
        self.to_client()
        return number, session

    def sign(self, number: int, payload: bytes) -> bytes | None:
        """The gateway asks the browser to sign ``payload`` for session ``number``."""
        sign_id = self.server.request_signature(number, payload)
        self.to_client()
        self.to_server()
        (answer,) = [e for e in self.take_server_events() if isinstance(e, SignatureAnswered)]
        assert answer.id == sign_id
        return answer.signature
