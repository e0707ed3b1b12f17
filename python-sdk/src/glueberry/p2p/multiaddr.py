"""Multiaddrs: ``/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…``, as text and in binary (for identify).

Spec: multiformats/multiaddr. We dial only TCP (``ip4|ip6|dns|dns4|dns6`` then ``tcp``), but decode
the other components go-libp2p advertises (QUIC, WebSocket, WebTransport, WebRTC, relay) so that a
Go peer's identify message can be read whole. The ``multiaddr`` package on PyPI was not used: it
pulls in trio, psutil and several multiformats packages for what is one table here.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Final

from .._varint import decode_uvarint, encode_uvarint
from ..exceptions import InvalidMultiaddr, InvalidPeerID, RemoteProtocolError
from .keys import PeerID

__all__ = ["Multiaddr", "TcpTarget"]

MAX_TEXT_LENGTH: Final = 1024
MAX_BINARY_LENGTH: Final = 1024
_VAR: Final = -1  # a length-prefixed value


@dataclass(frozen=True, slots=True)
class _Proto:
    code: int
    name: str
    size: int  # bytes of the binary value; 0 = no value; _VAR = varint length prefix


_PROTOCOLS: Final = [
    _Proto(4, "ip4", 4),
    _Proto(6, "tcp", 2),
    _Proto(273, "udp", 2),
    _Proto(41, "ip6", 16),
    _Proto(42, "ip6zone", _VAR),
    _Proto(53, "dns", _VAR),
    _Proto(54, "dns4", _VAR),
    _Proto(55, "dns6", _VAR),
    _Proto(56, "dnsaddr", _VAR),
    _Proto(421, "p2p", _VAR),
    _Proto(290, "p2p-circuit", 0),
    _Proto(460, "quic", 0),
    _Proto(461, "quic-v1", 0),
    _Proto(465, "webtransport", 0),
    _Proto(466, "certhash", _VAR),
    _Proto(477, "ws", 0),
    _Proto(478, "wss", 0),
    _Proto(448, "tls", 0),
    _Proto(449, "sni", _VAR),
    _Proto(280, "webrtc-direct", 0),
    _Proto(281, "webrtc", 0),
]
_BY_NAME: Final = {p.name: p for p in _PROTOCOLS} | {"ipfs": _Proto(421, "p2p", _VAR)}
_BY_CODE: Final = {p.code: p for p in _PROTOCOLS}
_TEXT_VALUED: Final = frozenset({"ip6zone", "dns", "dns4", "dns6", "dnsaddr", "sni"})
_HOST_NAMES: Final = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """Where to open a TCP connection for a multiaddr."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Multiaddr:
    """An immutable multiaddr: a tuple of ``(protocol, value)`` components, value "" when none."""

    components: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Multiaddr:
        """Parse the text form.

        Raises:
            InvalidMultiaddr: unknown protocol, missing or invalid value, or over 1024 characters.
        """
        if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
            raise InvalidMultiaddr(f"not a multiaddr (must be a string of at most {MAX_TEXT_LENGTH} chars)")
        if not text.startswith("/"):
            raise InvalidMultiaddr(f"multiaddr must start with '/': {text[:80]!r}")
        parts = text.rstrip("/").split("/")[1:]
        if not parts:
            raise InvalidMultiaddr("empty multiaddr")
        components: list[tuple[str, str]] = []
        i = 0
        while i < len(parts):
            name = parts[i]
            proto = _BY_NAME.get(name)
            if proto is None:
                raise InvalidMultiaddr(f"unknown multiaddr protocol {name[:40]!r} in {text[:80]!r}")
            value = ""
            if proto.size != 0:
                i += 1
                if i >= len(parts) or parts[i] == "":
                    raise InvalidMultiaddr(f"/{proto.name} needs a value in {text[:80]!r}")
                value = parts[i]
            components.append((proto.name, _normalise(proto, value)))
            i += 1
        return cls(tuple(components))

    @classmethod
    def from_bytes(cls, data: bytes) -> Multiaddr:
        """Parse the binary form (identify's ``listenAddrs`` and ``observedAddr``).

        Raises:
            InvalidMultiaddr: unknown protocol code, truncated, or invalid value.
        """
        if len(data) > MAX_BINARY_LENGTH:
            raise InvalidMultiaddr(f"binary multiaddr over {MAX_BINARY_LENGTH} bytes")
        components: list[tuple[str, str]] = []
        pos = 0
        try:
            while pos < len(data):
                code, pos = decode_uvarint(data, pos)
                proto = _BY_CODE.get(code)
                if proto is None:
                    raise InvalidMultiaddr(f"unknown multiaddr protocol code {code}")
                size = proto.size
                if size == _VAR:
                    size, pos = decode_uvarint(data, pos)
                if pos + size > len(data):
                    raise InvalidMultiaddr("truncated binary multiaddr")
                raw = data[pos : pos + size]
                pos += size
                components.append((proto.name, _value_from_bytes(proto, raw)))
        except RemoteProtocolError as exc:
            raise InvalidMultiaddr(f"malformed binary multiaddr: {exc}") from exc
        if not components:
            raise InvalidMultiaddr("empty multiaddr")
        return cls(tuple(components))

    def to_bytes(self) -> bytes:
        out = bytearray()
        for name, value in self.components:
            proto = _BY_NAME[name]
            out += encode_uvarint(proto.code)
            raw = _value_to_bytes(proto, value)
            if proto.size == _VAR:
                out += encode_uvarint(len(raw))
            out += raw
        return bytes(out)

    def __str__(self) -> str:
        return "".join(f"/{name}/{value}" if value else f"/{name}" for name, value in self.components)

    def __repr__(self) -> str:
        return f"Multiaddr({str(self)!r})"

    @property
    def peer_id(self) -> PeerID | None:
        """The ``/p2p/…`` component, if present (it must be last to mean the peer at this address)."""
        if self.components and self.components[-1][0] == "p2p":
            return PeerID.from_string(self.components[-1][1])
        return None

    def without_peer_id(self) -> Multiaddr:
        if self.components and self.components[-1][0] == "p2p":
            return Multiaddr(self.components[:-1])
        return self

    def with_peer_id(self, peer_id: PeerID) -> Multiaddr:
        return Multiaddr((*self.without_peer_id().components, ("p2p", str(peer_id))))

    def tcp_target(self) -> TcpTarget | None:
        """Host and port when this is ``/<ip4|ip6|dns|dns4|dns6>/…/tcp/N[/p2p/…]``, else None."""
        comps = self.without_peer_id().components
        if len(comps) != 2 or comps[0][0] not in _HOST_NAMES or comps[1][0] != "tcp":
            return None
        return TcpTarget(comps[0][1], int(comps[1][1]))

    @classmethod
    def from_tcp(cls, host: str, port: int) -> Multiaddr:
        """The multiaddr of a TCP socket address (IPv4 or IPv6 literal)."""
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        family = "ip4" if ip.version == 4 else "ip6"
        return cls(((family, str(ip)), ("tcp", str(port))))


def _normalise(proto: _Proto, value: str) -> str:
    """Validate a text value and return its canonical form."""
    name = proto.name
    if proto.size == 0:
        return ""
    try:
        if name == "ip4":
            return str(ipaddress.IPv4Address(value))
        if name == "ip6":
            return str(ipaddress.IPv6Address(value))
        if name in ("tcp", "udp"):
            if not value.isdigit() or int(value) > 65535:
                raise InvalidMultiaddr(f"/{name} port must be 0-65535, got {value[:20]!r}")
            return str(int(value))
        if name == "p2p":
            return str(PeerID.from_string(value))
    except (ValueError, InvalidPeerID) as exc:
        raise InvalidMultiaddr(f"invalid /{name} value {value[:80]!r}: {exc}") from exc
    if name in _TEXT_VALUED:
        if len(value.encode()) > 255:
            raise InvalidMultiaddr(f"/{name} value longer than 255 bytes")
        return value
    if name == "certhash":
        _certhash_bytes(value)
        return value
    raise InvalidMultiaddr(f"/{name} takes no value")  # pragma: no cover - table covers every sized proto


def _value_to_bytes(proto: _Proto, value: str) -> bytes:
    name = proto.name
    if name == "ip4":
        return ipaddress.IPv4Address(value).packed
    if name == "ip6":
        return ipaddress.IPv6Address(value).packed
    if name in ("tcp", "udp"):
        return int(value).to_bytes(2, "big")
    if name == "p2p":
        return PeerID.from_string(value).multihash
    if name == "certhash":
        return _certhash_bytes(value)
    return value.encode()


def _value_from_bytes(proto: _Proto, raw: bytes) -> str:
    name = proto.name
    try:
        if proto.size == 0:
            return ""
        if name == "ip4":
            return str(ipaddress.IPv4Address(raw))
        if name == "ip6":
            return str(ipaddress.IPv6Address(raw))
        if name in ("tcp", "udp"):
            return str(int.from_bytes(raw, "big"))
        if name == "p2p":
            return str(PeerID(raw))
        if name == "certhash":
            return "u" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return raw.decode()
    except (ValueError, InvalidPeerID) as exc:
        raise InvalidMultiaddr(f"invalid binary /{name} value: {exc}") from exc


def _certhash_bytes(value: str) -> bytes:
    # multibase: we read the base64url form ('u') that go-libp2p writes.
    if not value.startswith("u"):
        raise InvalidMultiaddr("certhash must be multibase base64url ('u…')")
    body = value[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise InvalidMultiaddr(f"certhash is not base64url: {exc}") from exc
