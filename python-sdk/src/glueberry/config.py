"""Node configuration: Go glueberry's ``Config`` with its defaults, plus our limits.

Durations are seconds (floats). Where Go treats 0 as "use the default" (``applyDefaults``), so do
we, so a Go user's habits carry over; ``validate()`` reports every problem with the field name.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .exceptions import InvalidConfig, InvalidStreamName
from .p2p.multiaddr import Multiaddr
from .wire.framing import GO_MAX_FRAME_SIZE

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HANDSHAKE_STREAM",
    "Config",
    "DecryptionErrorCallback",
    "validate_stream_name",
    "validate_stream_names",
]

HANDSHAKE_STREAM = "handshake"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

# (peer ID string, error) — called when an encrypted frame fails to authenticate.
DecryptionErrorCallback = Callable[[str, Exception], None]

_GO_DEFAULTS = {
    "handshake_timeout": 30.0,
    "reconnect_base_delay": 1.0,
    "reconnect_max_delay": 300.0,
    "reconnect_max_attempts": 10,
    "failed_handshake_cooldown": 60.0,
    "event_buffer_size": 100,
    "message_buffer_size": 1000,
    "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
    "max_stream_name_length": 64,
    "max_metadata_size": 4096,
}


@dataclass(slots=True)
class Config:
    """What a :class:`~glueberry.Node` needs. Only ``private_key``, ``address_book_path`` and
    ``listen_addrs`` are required; everything else has Go's default (0 means "default", as in Go).

    Attributes mirror Go's ``Config`` (``HandshakeTimeout`` → ``handshake_timeout`` …). The
    ``max_*`` limits and rates at the end are ours (Go's roadmap item 1.1.3): each refusal raises
    or counts a :class:`~glueberry.exceptions.LimitExceeded` with the limit's name.
    """

    private_key: Ed25519PrivateKey | bytes
    address_book_path: str | os.PathLike[str]
    listen_addrs: Sequence[Multiaddr | str]

    handshake_timeout: float = 0
    reconnect_base_delay: float = 0
    reconnect_max_delay: float = 0
    reconnect_max_attempts: int = 0
    failed_handshake_cooldown: float = 0
    event_buffer_size: int = 0
    message_buffer_size: int = 0
    max_message_size: int = 0
    max_stream_name_length: int = 0
    max_metadata_size: int = 0
    on_decryption_error: DecryptionErrorCallback | None = None

    # Our limits. 0 or None = unlimited where noted.
    max_peers: int = 256  # peers with a live connection (inbound and outbound)
    max_pending_connections: int = 64  # inbound connections still securing
    max_streams_per_peer: int = 64  # yamux streams open on one connection
    max_messages_per_second: float = 10_000.0  # per peer, received (token bucket; 0 = unlimited)
    max_connection_attempts_per_minute: int = 30  # per peer, inbound (0 = unlimited)
    dial_timeout: float = 30.0  # Go hard-codes 30 s
    agent_version: str = ""  # identify agent version; "" = glueberry-py/<version>

    def with_defaults(self) -> Config:
        """A copy with Go's defaults in place of zeros (Go's ``applyDefaults``)."""
        updates = {name: default for name, default in _GO_DEFAULTS.items() if not getattr(self, name)}
        return replace(self, **updates)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise :class:`InvalidConfig` naming every field that is wrong."""
        problems: list[str] = []
        key: object = self.private_key
        if isinstance(key, bytes | bytearray):
            if len(key) not in (32, 64):
                problems.append(
                    f"private_key: expected a 32-byte seed or 64-byte Go key, got {len(key)} bytes"
                )
        elif not isinstance(key, Ed25519PrivateKey):
            problems.append("private_key: must be an Ed25519PrivateKey or its bytes")
        if not self.address_book_path or not str(self.address_book_path).strip():
            problems.append("address_book_path: required (the JSON file the address book lives in)")
        elif Path(self.address_book_path).is_dir():
            problems.append(f"address_book_path: {self.address_book_path} is a directory")
        if not self.listen_addrs:
            problems.append("listen_addrs: at least one address is required, e.g. /ip4/0.0.0.0/tcp/4001")
        for addr in self.listen_addrs:
            try:
                maddr = addr if isinstance(addr, Multiaddr) else Multiaddr.parse(addr)
            except ValueError as exc:
                problems.append(f"listen_addrs: {exc}")
                continue
            if maddr.tcp_target() is None:
                problems.append(f"listen_addrs: {maddr} is not /ip4|ip6/…/tcp/N (only TCP is supported)")
        for f in fields(self):
            value = getattr(self, f.name)
            numeric = f.name in _GO_DEFAULTS or f.name.startswith("max_") or f.name == "dial_timeout"
            if numeric and isinstance(value, int | float) and value < 0:
                problems.append(f"{f.name}: cannot be negative")
        if self.reconnect_max_delay and self.reconnect_max_delay < self.reconnect_base_delay:
            problems.append("reconnect_max_delay: cannot be less than reconnect_base_delay")
        for name in ("max_peers", "max_pending_connections", "max_streams_per_peer"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        if self.dial_timeout <= 0:
            problems.append("dial_timeout: must be positive")
        if self.max_message_size > GO_MAX_FRAME_SIZE:
            problems.append("max_message_size: at most 64 MiB (the Go reader's frame limit)")
        if problems:
            raise InvalidConfig("invalid node configuration:\n  - " + "\n  - ".join(problems))


_VALID_NAMES: dict[tuple[str, int], None] = {}  # names already checked (bounded cache)


def validate_stream_name(name: str, max_length: int = 64) -> None:
    """Go's ``ValidateStreamName``: 1..max_length UTF-8 bytes of letters, digits, '-' and '_'.

    Letters and digits are Unicode ones, as Go's ``unicode.IsLetter``/``IsDigit`` (L*, Nd).
    """
    if (name, max_length) in _VALID_NAMES:
        return  # on every send: keep it cheap
    _check_stream_name(name, max_length)
    if len(_VALID_NAMES) >= 1024:
        _VALID_NAMES.clear()
    _VALID_NAMES[(name, max_length)] = None


def _check_stream_name(name: str, max_length: int) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidStreamName("stream name cannot be empty", stream=str(name) if name else None)
    size = len(name.encode())
    if max_length > 0 and size > max_length:
        raise InvalidStreamName(f"stream name is {size} bytes, more than {max_length}", stream=name[:80])
    for i, ch in enumerate(name):
        if ch in "-_":
            continue
        category = unicodedata.category(ch)
        if not (category.startswith("L") or category == "Nd"):
            raise InvalidStreamName(
                f"invalid character {ch!r} at position {i} (letters, digits, '-' and '_' only)",
                stream=name[:80],
            )


def validate_stream_names(names: Sequence[str], max_length: int = 64) -> None:
    if isinstance(names, str) or not names:
        raise InvalidStreamName("no stream names given (a list such as ['messages'] is needed)")
    for name in names:
        validate_stream_name(name, max_length)
        if name == HANDSHAKE_STREAM:
            raise InvalidStreamName("'handshake' is reserved for the handshake stream", stream=name)
