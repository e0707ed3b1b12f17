"""A minimal client of the gateway protocol for load generation: auth, open, answer the sign
request, then raw data frames — no Glueberry crypto, so the load generator is as light as the
baseline's plain WebSocket client. (Applications use glueberry_gateway.client.)"""

from __future__ import annotations

from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from glueberry.p2p.keys import generate_private_key, public_key_bytes
from glueberry_gateway.protocol import control
from glueberry_gateway.protocol import frames as wire
from glueberry_gateway.protocol.auth import auth_message, is_noise_payload


class RawGatewayClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, origin: str, *, batch: bool = False) -> RawGatewayClient:
        key = generate_private_key()
        ws = await connect(
            url, subprotocols=[control.SUBPROTOCOL], origin=origin, compression=None, max_size=None
        )  # type: ignore[arg-type]
        challenge = orjson.loads(await ws.recv())
        nonce = control.b64d(challenge["nonce"], "nonce", size=32)
        signature = key.sign(auth_message(challenge["gateway"], origin, nonce))
        await ws.send(
            control.encode_json(
                "auth", version=1, public_key=public_key_bytes(key), signature=signature, batch=batch or None
            )
        )
        ready = orjson.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        client = cls(ws)
        client.key = key
        return client

    async def open(self, session: int, backend: str) -> None:
        await self.ws.send(control.encode_json("open", id=session, session=session, backend=backend))
        while True:
            msg: dict[str, Any] = orjson.loads(await self.ws.recv())
            if msg["type"] == "sign":
                payload = control.b64d(msg["payload"], "payload")
                assert is_noise_payload(payload)
                await self.ws.send(
                    control.encode_json("signature", id=msg["id"], signature=self.key.sign(payload))
                )
            elif msg["type"] == "opened":
                return
            else:
                raise RuntimeError(f"open failed: {msg}")

    async def round_trip(self, frame: bytes) -> None:
        await self.ws.send(frame)
        while isinstance(await self.ws.recv(), str):  # skip control notices
            pass

    async def window(self, frames: list[bytes], batch: bytes | None = None) -> None:
        """Send ``frames`` (as the one message ``batch`` when given), then wait for as many echoes,
        however the gateway packs them."""
        if batch is not None:
            await self.ws.send(batch)
        else:
            for frame in frames:
                await self.ws.send(frame)
        got = 0
        while got < len(frames):
            message = await self.ws.recv()
            if isinstance(message, bytes):
                got += len(wire.decode_batch(message, max_bytes=1 << 24)) if message[:1] == b"\x02" else 1

    async def close(self) -> None:
        await self.ws.close()
