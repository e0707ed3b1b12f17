"""A load generator that does the real client work — auth, open with the browser's signature,
the Hello/PubKey/Complete handshake, Glueberry encryption and decryption of every message — with
the sans-I/O :class:`~glueberry_gateway.client.core.ClientProtocol` driven straight from one
``websockets`` connection, without the tasks and queues of ``GatewayClient``. The full-stack
benchmark uses it so that the load generator costs about what the baseline's plain WebSocket
client costs, and the figure measures the servers. (Applications use glueberry_gateway.client.)"""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from glueberry.p2p.keys import generate_private_key
from glueberry_gateway.client.core import ClientProtocol
from glueberry_gateway.client.events import Authenticated, HandshakeCompleted, MessageReceived, SessionOpened
from glueberry_gateway.protocol import control
from glueberry_gateway.protocol.codes import CloseSocket


class CoreGatewayClient:
    def __init__(self, ws: ClientConnection, core: ClientProtocol) -> None:
        self.ws = ws
        self.core = core
        self.session = 0

    @classmethod
    async def connect(cls, url: str, origin: str, backend: str, stream: str) -> CoreGatewayClient:
        """Connect, authenticate, open a session to ``backend`` and complete its handshake."""
        ws = await connect(
            url,
            subprotocols=[Subprotocol(control.SUBPROTOCOL)],
            origin=Origin(origin),
            compression=None,
            max_size=None,
        )
        client = cls(ws, ClientProtocol(generate_private_key(), origin))
        await client._until(Authenticated)
        client.session = client.core.open(backend)
        await client._flush()
        await client._until(SessionOpened)
        client.core.start_handshake(client.session, streams=[stream], name="bench")
        await client._flush()
        await client._until(HandshakeCompleted)
        return client

    async def _flush(self) -> None:
        for item in self.core.data_to_send():
            if isinstance(item, CloseSocket):
                raise RuntimeError(f"the client core closed the socket: {item}")
            await self.ws.send(item)

    async def _until(self, kind: type) -> None:
        """Feed the core what arrives, answering as it asks, until it reports a ``kind`` event."""
        while True:
            message = await self.ws.recv()
            if isinstance(message, str):
                self.core.receive_text(message)
            else:
                self.core.receive_binary(message)
            events = self.core.events_received()
            await self._flush()
            if any(isinstance(e, kind) for e in events):
                return

    async def window(self, stream: str, payloads: list[bytes]) -> None:
        """Send ``payloads`` (several in one batch message when the gateway takes batches), then
        wait until as many messages came back decrypted."""
        for payload in payloads:
            self.core.send_data(self.session, stream, payload)
        await self._flush()
        got = 0
        while got < len(payloads):
            message = await self.ws.recv()
            if isinstance(message, str):
                self.core.receive_text(message)
            else:
                self.core.receive_binary(message)
            got += sum(isinstance(e, MessageReceived) for e in self.core.events_received())

    async def close(self) -> None:
        await self.ws.close()
