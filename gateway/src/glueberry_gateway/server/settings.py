"""Gateway settings: a dataclass with documented defaults, loaded from TOML and validated.

Example ``gateway.toml``::

    identity_key_file = "gateway.key"          # from `glueberry-gateway keygen`
    listen = "127.0.0.1:8080"
    allowed_origins = ["http://127.0.0.1:8080"]
    static_dir = "web-demo/static"            # optional: serve a web app at /

    [[backends]]
    name = "chat"
    peer_id = "12D3KooW…"
    addrs = ["/ip4/127.0.0.1/tcp/4001"]

    [tokens]                                  # optional
    required = true
    algorithms = ["EdDSA"]
    public_key_file = "issuer.pem"

    [limits]
    max_sessions = 16
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import InvalidConfig, InvalidKey, InvalidMultiaddr, InvalidPeerID
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.multiaddr import Multiaddr

from .keyfile import read_key_file
from .tokens import TokenVerifier

__all__ = ["Backend", "Limits", "Settings", "TokenSettings", "load_settings"]

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("json", "text")


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    peer_id: PeerID
    addrs: tuple[Multiaddr, ...]


@dataclass(slots=True)
class Limits:
    max_sockets: int = 10_000
    max_sockets_per_ip: int = 64
    connection_rate_per_ip: int = 120  # new sockets per minute per IP
    max_sessions: int = 16  # per socket
    max_streams: int = 16  # per session
    messages_per_second: float = 1000.0  # per socket, browser -> gateway
    bytes_per_second: float = 4 * 1024 * 1024  # per socket, browser -> gateway
    max_frame_bytes: int = (1 << 20) + 96  # a 1 MiB message + Glueberry overhead (28) + our header (≤ 68)
    max_control_bytes: int = 16 * 1024
    outbound_queue_bytes: int = 4 * 1024 * 1024  # per socket, gateway -> browser
    slow_consumer_timeout: float = 10.0
    auth_timeout: float = 10.0
    challenge_ttl: float = 10.0
    sign_timeout: float = 10.0
    handshake_timeout: float = 10.0  # dial + libp2p upgrade of a backend connection
    idle_timeout: float = 300.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    resume_grace: float = 30.0
    resume_buffer_bytes: int = 256 * 1024  # per session
    backend_window: int = 256 * 1024  # yamux receive window per backend stream
    drain_timeout: float = 10.0  # SIGTERM: sessions get this long to close
    drain_reconnect_ms: int = 2000  # browsers are told to come back after up to this (jittered)
    token_refresh_notice: float = 30.0


@dataclass(slots=True)
class TokenSettings:
    required: bool = False
    algorithms: tuple[str, ...] = ("EdDSA",)
    key: str | bytes | None = None  # PEM public key, or the HS256 secret
    issuer: str | None = None
    audience: str | None = None

    def key_problems(self) -> list[str]:
        """A key that cannot verify the chosen algorithms: every token would fail."""
        problems: list[str] = []
        if isinstance(self.key, bytes) and set(self.algorithms) & {"EdDSA", "ES256", "RS256"}:
            try:
                serialization.load_pem_public_key(self.key)
            except ValueError:
                problems.append("tokens.public_key_file: not a PEM public key (-----BEGIN PUBLIC KEY-----)")
        if isinstance(self.key, str) and set(self.algorithms) - {"HS256"}:
            problems.append(
                "tokens.secret: a secret only works with HS256; use public_key_file for the others"
            )
        return problems


@dataclass(slots=True)
class Settings:
    identity: Ed25519PrivateKey = field(default_factory=generate_private_key)
    identity_file: Path | None = None  # where ``identity`` came from; None: made at this start
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    path: str = "/ws"
    allowed_origins: tuple[str, ...] = ()
    backends: tuple[Backend, ...] = ()
    static_dir: Path | None = None
    tokens: TokenSettings = field(default_factory=TokenSettings)
    limits: Limits = field(default_factory=Limits)
    log_format: str = "json"  # json | text
    log_level: str = "INFO"

    @property
    def peer_id(self) -> PeerID:
        return PeerID.from_private_key(self.identity)

    def backend(self, name_or_peer: str) -> Backend | None:
        for backend in self.backends:
            if name_or_peer in (backend.name, str(backend.peer_id)):
                return backend
        return None

    def validate(self) -> None:
        """Raises InvalidConfig listing every problem, each naming its key."""
        _raise_problems(self.problems())

    def problems(self) -> list[str]:
        problems: list[str] = []
        if not 0 < self.listen_port < 65536:
            problems.append("listen: the port must be 1-65535")
        if not self.path.startswith("/"):
            problems.append("path: must start with '/'")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            problems.append("backends: names must be unique")
        for backend in self.backends:
            if not backend.addrs:
                problems.append(f"backends.{backend.name}: at least one address is needed")
            for addr in backend.addrs:
                if addr.tcp_target() is None:
                    problems.append(f"backends.{backend.name}: {addr} is not a TCP multiaddr")
        for origin in self.allowed_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                problems.append(f"allowed_origins: {origin!r} is not an http(s) origin")
        if self.tokens.required and self.tokens.key is None:
            problems.append("tokens: required = true needs a key (public_key_file or secret)")
        for f in fields(self.limits):
            if getattr(self.limits, f.name) <= 0:
                problems.append(f"limits.{f.name}: must be positive")
        if self.log_format not in LOG_FORMATS:
            problems.append("log_format: json or text")
        if self.log_level.upper() not in LOG_LEVELS:
            problems.append(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL")
        allowed = TokenVerifier.ALLOWED
        if not self.tokens.algorithms or not set(self.tokens.algorithms) <= allowed:
            problems.append(f"tokens.algorithms: a non-empty subset of {', '.join(sorted(allowed))}")
        problems += self.tokens.key_problems()
        if self.static_dir is not None and not self.static_dir.is_dir():
            problems.append(f"static_dir: {self.static_dir} is not a directory")
        return problems


_TOP_KEYS = {
    "identity_key_file",
    "listen",
    "path",
    "allowed_origins",
    "backends",
    "static_dir",
    "tokens",
    "limits",
    "log_format",
    "log_level",
}


def load_settings(path: str | Path) -> Settings:
    """Read and validate a TOML settings file; paths in it are relative to the file.

    Raises:
        InvalidConfig: with every problem found, each naming its key.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InvalidConfig(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}") from exc
    return settings_from_dict(raw, base=path.parent)


def settings_from_dict(raw: dict[str, Any], *, base: Path = Path()) -> Settings:
    problems: list[str] = []
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
    settings = Settings()
    if "identity_key_file" in raw:
        key_path = base / str(raw["identity_key_file"])
        try:
            settings.identity = read_key_file(key_path)
            settings.identity_file = key_path
        except (OSError, InvalidKey) as exc:
            problems.append(f"identity_key_file: cannot load {key_path}: {exc}")
    listen = str(raw.get("listen", "127.0.0.1:8080"))
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        problems.append(f"listen: expected host:port, got {listen!r}")
    else:
        settings.listen_host, settings.listen_port = host.strip("[]"), int(port)
    settings.path = str(raw.get("path", "/ws"))
    origins = raw.get("allowed_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        problems.append("allowed_origins: a list of origins such as 'https://app.example'")
    else:
        settings.allowed_origins = tuple(o.rstrip("/") for o in origins)
    backends = []
    raw_backends = raw.get("backends", [])
    if not isinstance(raw_backends, list):
        problems.append("backends: an array of tables ([[backends]])")
        raw_backends = []
    for i, item in enumerate(raw_backends):
        where = f"backends[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "peer_id", "addrs"}:
            problems.append(f"{where}: needs name, peer_id and addrs only")
            continue
        try:
            backends.append(
                Backend(
                    str(item["name"]),
                    PeerID.from_string(str(item["peer_id"])),
                    tuple(Multiaddr.parse(str(a)) for a in item["addrs"]),
                )
            )
        except KeyError as exc:
            problems.append(f"{where}: missing {exc.args[0]}")
        except (InvalidPeerID, InvalidMultiaddr, TypeError) as exc:
            problems.append(f"{where}: {exc}")
    settings.backends = tuple(backends)
    if "static_dir" in raw:
        settings.static_dir = base / str(raw["static_dir"])
    tokens = raw.get("tokens", {})
    if not isinstance(tokens, dict):
        problems.append("tokens: a table ([tokens])")
        tokens = {}
    if tokens:
        algorithms = tokens.get("algorithms", ["EdDSA"])
        t = TokenSettings(
            required=bool(tokens.get("required", False)),
            algorithms=tuple(str(a) for a in algorithms) if isinstance(algorithms, list) else (),
            issuer=tokens.get("issuer"),
            audience=tokens.get("audience"),
        )
        if "public_key_file" in tokens:
            try:
                t.key = (base / str(tokens["public_key_file"])).read_bytes()
            except OSError as exc:
                problems.append(f"tokens.public_key_file: {exc}")
        elif "secret" in tokens:
            t.key = str(tokens["secret"])
        unknown_t = set(tokens) - {
            "required",
            "algorithms",
            "issuer",
            "audience",
            "public_key_file",
            "secret",
        }
        if unknown_t:
            problems.append(f"tokens: unknown keys {', '.join(sorted(unknown_t))}")
        settings.tokens = t
    limits = raw.get("limits", {})
    if not isinstance(limits, dict):
        problems.append("limits: a table ([limits])")
        limits = {}
    known = {f.name: f for f in fields(Limits)}
    for key, value in limits.items():
        if key not in known:
            problems.append(f"limits.{key}: unknown limit")
        elif not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"limits.{key}: must be a number")
        else:
            setattr(settings.limits, key, value)
    settings.log_format = str(raw.get("log_format", "json"))
    settings.log_level = str(raw.get("log_level", "INFO")).upper()
    problems.extend(settings.problems())
    _raise_problems(problems)
    return settings


def _raise_problems(problems: list[str]) -> None:
    if problems:
        raise InvalidConfig("invalid gateway settings:\n  - " + "\n  - ".join(problems))
