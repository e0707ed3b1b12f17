"""The identify message (``/ipfs/id/1.0.0`` and ``/ipfs/id/push/1.0.0``).

Spec: libp2p/specs ``identify/README.md``. go-libp2p runs identify on every new connection and waits
for it before opening streams (PROTOCOL.md §2.2), so a peer that answers quickly saves Go up to 5 s.
The answering side writes one varint-length-delimited protobuf and closes the stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .._varint import encode_uvarint
from ..exceptions import InvalidKey, InvalidMultiaddr, RemoteProtocolError
from . import _protobuf as pb
from .keys import public_key_from_protobuf, public_key_to_protobuf
from .multiaddr import Multiaddr

__all__ = [
    "IDENTIFY_PROTOCOL",
    "IDENTIFY_PUSH_PROTOCOL",
    "MAX_IDENTIFY_SIZE",
    "PROTOCOL_VERSION",
    "IdentifyInfo",
]

IDENTIFY_PROTOCOL = "/ipfs/id/1.0.0"
IDENTIFY_PUSH_PROTOCOL = "/ipfs/id/push/1.0.0"
PROTOCOL_VERSION = "ipfs/0.1.0"
# go-libp2p caps a signed identify message at 8 KiB and reads at most a few; allow some slack.
MAX_IDENTIFY_SIZE = 64 * 1024
_MAX_ENTRIES = 256

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """What a peer says about itself. ``public_key`` is the raw Ed25519 key (None if absent/other)."""

    protocol_version: str = PROTOCOL_VERSION
    agent_version: str = ""
    public_key: bytes | None = None
    listen_addrs: tuple[Multiaddr, ...] = ()
    observed_addr: Multiaddr | None = None
    protocols: tuple[str, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        """The protobuf message, without the length prefix."""
        out = bytearray()
        if self.public_key is not None:
            out += pb.encode_bytes_field(1, public_key_to_protobuf(self.public_key))
        for addr in self.listen_addrs:
            out += pb.encode_bytes_field(2, addr.to_bytes())
        for protocol in self.protocols:
            out += pb.encode_bytes_field(3, protocol.encode())
        if self.observed_addr is not None:
            out += pb.encode_bytes_field(4, self.observed_addr.to_bytes())
        out += pb.encode_bytes_field(5, self.protocol_version.encode())
        out += pb.encode_bytes_field(6, self.agent_version.encode())
        return bytes(out)

    def encode_delimited(self) -> bytes:
        body = self.encode()
        return encode_uvarint(len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> IdentifyInfo:
        """Parse an identify message; addresses we cannot parse are skipped, not fatal.

        Raises:
            RemoteProtocolError: malformed protobuf, too large, or too many entries.
        """
        if len(data) > MAX_IDENTIFY_SIZE:
            raise RemoteProtocolError(f"identify message over {MAX_IDENTIFY_SIZE} bytes")
        fields = pb.decode_fields(data, max_fields=4 * _MAX_ENTRIES)
        key_bytes = pb.single_bytes(fields, 1)
        public_key = None
        if key_bytes is not None:
            try:
                public_key = public_key_from_protobuf(key_bytes)
            except InvalidKey:
                _log.debug("identify: peer sent a key we do not support")
        listen = []
        for raw in pb.repeated_bytes(fields, 2)[:_MAX_ENTRIES]:
            try:
                listen.append(Multiaddr.from_bytes(raw))
            except InvalidMultiaddr:
                _log.debug("identify: skipped an address we cannot parse")
        observed = None
        observed_raw = pb.single_bytes(fields, 4)
        if observed_raw:
            try:
                observed = Multiaddr.from_bytes(observed_raw)
            except InvalidMultiaddr:
                _log.debug("identify: skipped an observed address we cannot parse")
        protocols = [_text(raw) for raw in pb.repeated_bytes(fields, 3)[:_MAX_ENTRIES]]
        return cls(
            protocol_version=_text(pb.single_bytes(fields, 5, b"") or b""),
            agent_version=_text(pb.single_bytes(fields, 6, b"") or b""),
            public_key=public_key,
            listen_addrs=tuple(listen),
            observed_addr=observed,
            protocols=tuple(protocols),
        )


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("identify: a string field is not UTF-8") from exc
