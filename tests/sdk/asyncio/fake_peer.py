"""A libp2p dialler that misbehaves on purpose, over a real TCP socket.

What it fakes: the dialling side of a libp2p connection, stage by stage (multistream-select for
security, Noise XX, multistream-select for the muxer, raw yamux frames), so a test can stop at
any stage and send bytes a correct peer never would. Noise is played by the independent
``noiseprotocol`` package, which lets the payload (identity key, signature) be anything at all.
It lists no stream muxer in its payload, so the muxer is negotiated with multistream-select.

How to extend it: add a method for the stage you need that writes the offending bytes with
:meth:`FakePeer.send_raw` (before Noise) or :meth:`FakePeer.send_plain` (inside Noise), and let
the test wait for :meth:`FakePeer.closed_by_remote`. Real peers (our Host, go-libp2p) are for
everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from glueberry._varint import encode_uvarint
from glueberry.p2p import _protobuf as pb
from glueberry.p2p.keys import generate_private_key, public_key_bytes, public_key_to_protobuf
from glueberry.p2p.multistream import encode_message
from glueberry.p2p.signer import NOISE_SIGNATURE_PREFIX

YAMUX_DATA, YAMUX_WINDOW_UPDATE, YAMUX_PING, YAMUX_GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def yamux_frame(
    stream_id: int, *, type_: int = YAMUX_DATA, flags: int = 0, length: int | None = None, data: bytes = b""
) -> bytes:
    return struct.pack(">BBHII", 0, type_, flags, stream_id, len(data) if length is None else length) + data


class FakePeer:
    def __init__(self, identity: Ed25519PrivateKey | None = None) -> None:
        self.identity = identity or generate_private_key()
        self.static = X25519PrivateKey.generate()
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.noise: Any = None
        self._plain = bytearray()  # decrypted bytes not yet consumed

    async def connect(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)

    async def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    # Raw stage.

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_raw(self, n: int, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def closed_by_remote(self, timeout: float = 5.0) -> bool:
        """True once the remote closed the socket (whatever it sent before is discarded)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    async def negotiate_security(self) -> None:
        await self.send_raw(encode_message("/multistream/1.0.0") + encode_message("/noise"))
        expected = encode_message("/multistream/1.0.0") + encode_message("/noise")
        assert await self.read_raw(len(expected)) == expected

    # Noise stage.

    def payload(self, *, signature: bytes | None = None) -> bytes:
        static_pub = self.static.public_key().public_bytes_raw()
        sig = self.identity.sign(NOISE_SIGNATURE_PREFIX + static_pub) if signature is None else signature
        key = public_key_to_protobuf(public_key_bytes(self.identity))
        return pb.encode_bytes_field(1, key) + pb.encode_bytes_field(2, sig)

    async def noise_handshake(self, *, payload: bytes | None = None) -> None:
        """Run XX as initiator; ``payload`` replaces our msg3 payload (e.g. a bad signature)."""
        conn: Any = NoiseConnection.from_name(b"Noise_XX_25519_ChaChaPoly_SHA256")
        conn.set_as_initiator()
        conn.set_keypair_from_private_bytes(Keypair.STATIC, self.static.private_bytes_raw())
        conn.start_handshake()
        await self._send_noise(bytes(conn.write_message(b"")))
        (length,) = struct.unpack(">H", await self.read_raw(2))
        conn.read_message(await self.read_raw(length))
        await self._send_noise(bytes(conn.write_message(self.payload() if payload is None else payload)))
        self.noise = conn

    async def _send_noise(self, message: bytes) -> None:
        await self.send_raw(struct.pack(">H", len(message)) + message)

    async def send_plain(self, data: bytes) -> None:
        for off in range(0, len(data), 65519):
            await self._send_noise(bytes(self.noise.encrypt(data[off : off + 65519])))

    async def read_plain(self, n: int, timeout: float = 5.0) -> bytes:
        while len(self._plain) < n:
            (length,) = struct.unpack(">H", await self.read_raw(2, timeout))
            self._plain += self.noise.decrypt(await self.read_raw(length, timeout))
        data = bytes(self._plain[:n])
        del self._plain[:n]
        return data

    async def negotiate_muxer(self) -> None:
        await self.send_plain(encode_message("/multistream/1.0.0") + encode_message("/yamux/1.0.0"))
        expected = encode_message("/multistream/1.0.0") + encode_message("/yamux/1.0.0")
        assert await self.read_plain(len(expected)) == expected

    async def upgrade(self, host: str, port: int) -> None:
        await self.connect(host, port)
        await self.negotiate_security()
        await self.noise_handshake()
        await self.negotiate_muxer()

    # yamux stage.

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, int, int, int, bytes]:
        """(type, flags, stream id, length, data) of the next yamux frame."""
        header = await self.read_plain(12, timeout)
        _, type_, flags, sid, length = struct.unpack(">BBHII", header)
        data = await self.read_plain(length, timeout) if type_ == YAMUX_DATA else b""
        return type_, flags, sid, length, data

    async def open_stream(self, stream_id: int, protocol: str, data: bytes = b"") -> None:
        """SYN + multistream proposal (+ pipelined data) in one Data frame."""
        proposal = encode_message("/multistream/1.0.0") + encode_message(protocol) + data
        await self.send_plain(yamux_frame(stream_id, flags=SYN, data=proposal))

    async def frames_until(self, stream_id: int, flag: int, timeout: float = 5.0) -> bytes:
        """Data received on ``stream_id`` until a frame with ``flag`` on it arrives."""
        out = bytearray()
        while True:
            _, flags, sid, _, data = await self.read_frame(timeout)
            if sid == stream_id:
                out += data
                if flags & flag:
                    return bytes(out)


def varint(n: int) -> bytes:
    return encode_uvarint(n)
