"""Start the whole demo in one process: the chat backend, the gateway (serving the page), and in
token mode a demo token issuer.

    async with start_demo(port=0, token_ttl=60) as demo:
        print(demo.url)                # http://127.0.0.1:PORT/
        await demo.restart_gateway()   # same key, same port: pages resume or reopen
        await demo.stop_backend()      # pages see their session close...
        await demo.start_backend()     # ...and reopen it (same key, port and room history)

``python -m glueberry_demo`` (:mod:`glueberry_demo.__main__`) is the command-line front end.

The gateway runs in this event loop under uvicorn, on a socket bound here first, so that a busy
port is reported clearly (:class:`PortInUse`) and a restarted gateway gets the same port.
Stopping it drains first (browsers are told to come back, then closed with 1001), as the
``glueberry-gateway`` command does on SIGTERM, unless ``drain=False`` (a crash, as far as pages can
tell: uvicorn closes the sockets with 1012).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from glueberry import GlueberryError, Multiaddr, PeerID, fingerprint
from glueberry_gateway.server.app import create_app
from glueberry_gateway.server.cli import uvicorn_config
from glueberry_gateway.server.gateway import Gateway
from glueberry_gateway.server.settings import Backend, Settings, TokenSettings

from .chat_backend import ChatBackend, read_or_create_key
from .rooms import ChatRooms

__all__ = [
    "BACKEND_NAME",
    "BUNDLE",
    "STATIC_DIR",
    "BundleMissing",
    "Demo",
    "ExternalBackend",
    "PortInUse",
    "start_demo",
]

_log = logging.getLogger("glueberry_demo")

#: web-demo/static: the page (index.html, style.css, app.js and the modules it imports, vendor/).
STATIC_DIR: Final = Path(__file__).resolve().parents[2] / "static"
#: The browser bundle of js-client, copied by ``npm run -w web-demo build``.
BUNDLE: Final = Path("vendor") / "glueberry-client.js"
#: The name the gateway gives the chat backend (the page opens the first backend by default).
BACKEND_NAME: Final = "chat"


class PortInUse(Exception):
    """The gateway's port is taken."""


class BundleMissing(Exception):
    """static/vendor/glueberry-client.js has not been built."""


@dataclass(frozen=True, slots=True)
class ExternalBackend:
    """A chat backend that runs elsewhere (e.g. a Go one): its peer ID and multiaddrs."""

    peer_id: str
    addrs: tuple[str, ...]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the launcher (or the test) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(slots=True)
class _RunningGateway:
    gateway: Gateway
    server: _Server
    task: asyncio.Task[None]


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (0: a free port). Raises PortInUse."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUse(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"port {port} on {host} is already in use ({exc.strerror}): stop whatever uses it, "
            f"or choose another port with --port (e.g. --port {port + 1})"
        ) from None
    return sock


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _origins(host: str, port: int, extra: Sequence[str]) -> tuple[str, ...]:
    origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified or ipaddress.ip_address(host).is_loopback:
            host = ""
    if host and host != "localhost":
        origins.append(f"http://{_url_host(host)}:{port}")
    origins.extend(o.rstrip("/") for o in extra)
    return tuple(dict.fromkeys(origins))


class Demo:
    """The running demo. Build it with :func:`start_demo`; use it as an async context manager
    (or ``await demo.start()`` / ``await demo.close()``).

    Attributes:
        port: the gateway's port (known once started when 0 was asked for).
        rooms: the chat rooms, kept across :meth:`stop_backend` / :meth:`start_backend`.
        backend: the Python chat backend while it runs (None with an external backend).
    """

    def __init__(
        self,
        *,
        port: int = 8080,
        host: str = "127.0.0.1",
        token_ttl: float | None = None,
        backend: ExternalBackend | None = None,
        data_dir: Path | None = None,
        static_dir: Path = STATIC_DIR,
        origins: Sequence[str] = (),
        gateway_limits: dict[str, float] | None = None,
        require_bundle: bool = True,
    ) -> None:
        if token_ttl is not None and token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self.port = port
        self.host = host
        self.token_ttl = token_ttl
        self.external = backend
        self.static_dir = static_dir
        self.extra_origins = tuple(origins)
        self.gateway_limits = dict(gateway_limits or {})
        self.require_bundle = require_bundle
        self.rooms = ChatRooms()
        self.backend: ChatBackend | None = None
        self._data_dir = data_dir
        self._temp_dir: Path | None = None
        self._backend_port = 0
        self._gateway: _RunningGateway | None = None
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._started = False

    # What the demo is.

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("the demo is not started")
        return self._data_dir

    @property
    def url(self) -> str:
        """Where to point a browser: ``http://127.0.0.1:PORT/``."""
        return f"http://{_url_host(self.host)}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{_url_host(self.host)}:{self.port}/ws"

    @property
    def backend_peer_id(self) -> PeerID:
        if self.external is not None:
            return PeerID.from_string(self.external.peer_id)
        return PeerID.from_private_key(self._key("backend"))

    @property
    def backend_addrs(self) -> tuple[Multiaddr, ...]:
        if self.external is not None:
            return tuple(Multiaddr.parse(a) for a in self.external.addrs)
        return (Multiaddr.parse(f"/ip4/127.0.0.1/tcp/{self._backend_port}"),)

    @property
    def gateway_peer_id(self) -> PeerID:
        return PeerID.from_private_key(self._key("gateway"))

    @property
    def gateway(self) -> Gateway | None:
        """The running gateway (None while stopped)."""
        return self._gateway.gateway if self._gateway is not None else None

    @property
    def origins(self) -> tuple[str, ...]:
        return _origins(self.host, self.port, self.extra_origins)

    def summary(self) -> str:
        """What the command line prints once everything runs."""
        backend = self.backend_peer_id
        lines = [
            f"Glueberry chat demo: open {self.url}",
            f"  chat backend  {backend}  fingerprint {fingerprint(backend)}"
            + (" (external)" if self.external is not None else ""),
            f"                {' '.join(str(a) for a in self.backend_addrs)}",
            f"  gateway       {self.gateway_peer_id}  {self.ws_url}",
        ]
        if self.token_ttl is not None:
            lines.append(
                f"  tokens        required; {self.url}token?peer=<peer ID> issues them ({self.token_ttl:g} s)"
            )
        where = "a temporary directory, deleted at exit" if self._temp_dir is not None else "kept"
        lines.append(f"  keys          {self.data_dir} ({where})")
        return "\n".join(lines)

    # Lifecycle.

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the demo is already started")
        bundle = self.static_dir / BUNDLE
        if self.require_bundle and not bundle.is_file():
            raise BundleMissing(
                f"{bundle} is missing: build the browser library and copy it with `make demo`, "
                "or `npm run -w js-client build && npm run -w web-demo build`"
            )
        if self._data_dir is None:
            self._temp_dir = self._data_dir = Path(tempfile.mkdtemp(prefix="glueberry-demo-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in ("backend", "gateway", "issuer"):
                self._keys[name], _ = read_or_create_key(self._data_dir / f"{name}.key")
            if self.external is None:
                await self.start_backend()
            await self.start_gateway()
        except BaseException:
            await self._stop_all()
            raise
        self._started = True

    async def close(self) -> None:
        """Drain the gateway, stop the backend, delete a temporary data directory."""
        await self._stop_all()
        self._started = False

    async def _stop_all(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_gateway()
        with contextlib.suppress(Exception):
            await self.stop_backend()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = self._data_dir = None

    async def __aenter__(self) -> Demo:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # The chat backend.

    async def start_backend(self) -> ChatBackend:
        """Start the Python chat backend (same key, same port as before, same rooms)."""
        if self.external is not None:
            raise RuntimeError("this demo uses an external backend")
        if self.backend is not None:
            raise RuntimeError("the chat backend is already running")
        listen = f"/ip4/127.0.0.1/tcp/{self._backend_port}"
        backend = ChatBackend(
            self._key("backend"), listen, self.data_dir / "backend-peers.json", rooms=self.rooms
        )
        await backend.start()
        target = backend.addrs[0].tcp_target()
        assert target is not None
        self._backend_port = target.port
        self.backend = backend
        return backend

    async def stop_backend(self) -> None:
        """Stop the Python chat backend; pages lose their sessions and retry until it is back."""
        backend, self.backend = self.backend, None
        if backend is not None:
            await backend.stop()

    # The gateway.

    async def start_gateway(self) -> Gateway:
        """Start the gateway on the demo's port (the first start picks it when 0)."""
        if self._gateway is not None:
            raise RuntimeError("the gateway is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        try:
            settings = self._settings()
            gateway = Gateway(settings)
            app = create_app(settings, gateway=gateway)
            # /token issues tokens in token mode; otherwise it says "none needed" (204) so that
            # the page does not have to guess from a 404.
            app.router.routes.insert(0, Route("/token", self._token_endpoint, methods=["GET"]))
            server = _Server(uvicorn_config(app, settings))
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            async with asyncio.timeout(10):
                while not server.started:
                    if task.done():
                        task.result()
                        raise RuntimeError("the gateway stopped while starting")
                    await asyncio.sleep(0.01)
        except BaseException:
            sock.close()
            raise
        self._gateway = _RunningGateway(gateway, server, task)
        return gateway

    async def stop_gateway(self, *, drain: bool = True) -> None:
        """Stop the gateway. ``drain``: tell every page to come back later and close it with 1001
        (as on SIGTERM); otherwise uvicorn just closes the sockets (1012)."""
        running, self._gateway = self._gateway, None
        if running is None:
            return
        if drain:
            with contextlib.suppress(Exception):
                await running.gateway.drain()
        running.server.should_exit = True
        try:
            async with asyncio.timeout(15):
                await running.task
        except TimeoutError:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        finally:
            await running.gateway.close()  # idempotent; the lifespan normally did it

    async def restart_gateway(self, *, drain: bool = True, downtime: float = 0.0) -> Gateway:
        """Stop the gateway and start a new one with the same key and port after ``downtime``."""
        await self.stop_gateway(drain=drain)
        if downtime:
            await asyncio.sleep(downtime)
        return await self.start_gateway()

    # Tokens.

    def issue_token(self, peer_id: str, ttl: float | None = None) -> tuple[str, int]:
        """A demo token for ``peer_id`` (EdDSA JWT: sub, iat, exp, backends) and its expiry."""
        now = time.time()
        expires = int(now + (ttl if ttl is not None else self.token_ttl or 300))
        claims = {"sub": peer_id, "iat": int(now), "exp": expires, "backends": [BACKEND_NAME]}
        return jwt.encode(claims, self._key("issuer"), algorithm="EdDSA"), expires

    async def _token_endpoint(self, request: Request) -> Response:
        if self.token_ttl is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        peer = request.query_params.get("peer", "")
        try:
            fingerprint(peer)  # an Ed25519 peer ID, or InvalidPeerID
        except GlueberryError:
            return JSONResponse({"error": "?peer= must be an Ed25519 peer ID (12D3KooW…)"}, status_code=400)
        token, expires = self.issue_token(peer)
        _log.info("issued a token for %s until %s", peer, time.strftime("%H:%M:%S", time.localtime(expires)))
        return JSONResponse({"token": token, "expires_at": expires}, headers={"Cache-Control": "no-store"})

    # Helpers.

    def _key(self, name: str) -> Ed25519PrivateKey:
        try:
            return self._keys[name]
        except KeyError:
            raise RuntimeError("the demo is not started") from None

    def _settings(self) -> Settings:
        settings = Settings(
            identity=self._key("gateway"),
            listen_host=self.host,
            listen_port=self.port,
            allowed_origins=self.origins,
            backends=(Backend(BACKEND_NAME, self.backend_peer_id, self.backend_addrs),),
            static_dir=self.static_dir,
            log_format="text",
            log_level="INFO",
        )
        if self.token_ttl is not None:
            public = self._key("issuer").public_key()
            settings.tokens = TokenSettings(
                required=True,
                algorithms=("EdDSA",),
                key=public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            )
            # Ask pages for a new token a third of the lifetime before expiry (30 s at most).
            settings.limits.token_refresh_notice = max(1.0, min(30.0, self.token_ttl / 3))
        limits: Any = settings.limits
        for name, value in self.gateway_limits.items():
            if not hasattr(limits, name):
                raise ValueError(f"unknown gateway limit {name!r}")
            setattr(limits, name, value)
        settings.validate()
        return settings


def start_demo(
    port: int = 0,
    *,
    token_ttl: float | None = None,
    backend: ExternalBackend | None = None,
    host: str = "127.0.0.1",
    data_dir: Path | None = None,
    static_dir: Path = STATIC_DIR,
    origins: Sequence[str] = (),
    gateway_limits: dict[str, float] | None = None,
    require_bundle: bool = True,
) -> Demo:
    """The demo, ready to start: ``async with start_demo(port=0) as demo: …``.

    Args:
        port: the gateway's (and the page's) port; 0 picks a free one (see ``demo.port``).
        token_ttl: seconds; when given, the gateway requires tokens and ``/token?peer=`` issues them.
        backend: an existing chat backend to use instead of starting the Python one.
        host: the interface to listen on.
        data_dir: where the keys live (kept); default a temporary directory deleted at close.
        static_dir: the page to serve.
        origins: more page origins to allow (127.0.0.1 and localhost on the port always are).
        gateway_limits: overrides of :class:`glueberry_gateway.server.settings.Limits` fields
            (e.g. ``{"resume_grace": 2, "drain_reconnect_ms": 200}``).
        require_bundle: refuse to start without static/vendor/glueberry-client.js.
    """
    return Demo(
        port=port,
        host=host,
        token_ttl=token_ttl,
        backend=backend,
        data_dir=data_dir,
        static_dir=static_dir,
        origins=origins,
        gateway_limits=gateway_limits,
        require_bundle=require_bundle,
    )
