"""The ``glueberry-gateway`` command: run the gateway, check a configuration, manage its key.

Run serves :func:`glueberry_gateway.server.app.create_app` with uvicorn. The one thing it changes in
uvicorn is shutdown: uvicorn closes every WebSocket with 1012 *before* the app's lifespan shutdown
runs, which would cut browsers off without the ``drain`` message. So :class:`GatewayServer` takes
over SIGTERM/SIGINT: the first one runs :meth:`Gateway.drain` (readyz turns 503, new sockets are
refused, each browser gets ``drain`` with a jittered delay and a 1001 close, backend legs close)
and only then lets uvicorn stop; a second one stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator, Sequence
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Final, NoReturn

import uvicorn
from starlette.applications import Starlette

from glueberry.exceptions import InvalidConfig, InvalidKey
from glueberry.p2p.keys import PeerID, generate_private_key

from .. import __version__
from .app import create_app
from .gateway import Gateway
from .keyfile import read_key_file, write_key_file
from .logs import configure_logging
from .settings import Limits, Settings, load_settings

__all__ = ["GatewayServer", "build_parser", "main", "uvicorn_config"]

_log = logging.getLogger("glueberry_gateway")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # an I/O problem: the key file exists, cannot be written, ...
EXIT_CONFIG: Final = 2  # the command line or the configuration is wrong (as argparse does)

#: After the drain, how long uvicorn waits for connections that are still open (sockets that
#: ignored the drain) before cancelling them. The process exits within drain_timeout + ~3 s.
STRAGGLER_GRACE_SECONDS: Final = 2
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class _Exit(Exception):  # control flow: main() turns it into the exit status
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    print(f"glueberry-gateway: error: {message}", file=sys.stderr)
    raise _Exit(code)


# Settings.


def _load(path: str) -> Settings:
    try:
        settings = load_settings(path)
    except InvalidConfig as exc:
        _fail(f"{path}: {exc}")
    return settings


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listen_url(settings: Settings) -> str:
    return f"ws://{_host_for_url(settings.listen_host)}:{settings.listen_port}{settings.path}"


def _backends_line(settings: Settings) -> str:
    if not settings.backends:
        return "none"
    return ", ".join(f"{b.name}={b.peer_id}" for b in settings.backends)


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration the CLI uses (exposed so that tests and embedders can reuse it)."""
    limits = settings.limits
    return uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # payloads are ciphertext: nothing to compress
        ws_max_size=max(limits.max_frame_bytes, limits.max_control_bytes) + 1024,
        ws_ping_interval=limits.ping_interval,
        ws_ping_timeout=limits.ping_timeout,
        loop="uvloop",
        lifespan="on",
        log_config=None,  # logs.configure_logging owns the handlers
        access_log=False,
        timeout_graceful_shutdown=STRAGGLER_GRACE_SECONDS,
    )


# Running.


class GatewayServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains the gateway before uvicorn shuts down.

    ``exit_code`` is 0 after a drain, 1 if the drain failed, and 128 + the signal number when a
    second signal cut the drain short.
    """

    def __init__(self, config: uvicorn.Config, gateway: Gateway, *, banner: str | None = None) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.banner = banner
        self.exit_code = EXIT_OK
        self._signals_seen = 0
        self._drain_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.banner:
            print(self.banner, flush=True)  # after the bind: a supervisor can wait for this line

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's version re-raises the captured signal after shutdown, so the process dies *by*
        # it; a gateway that drained cleanly exits 0 instead. Like uvicorn we use signal.signal
        # (not loop.add_signal_handler) so that a second signal is seen even if the loop is stuck.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._loop = asyncio.get_running_loop()
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler. It runs between two bytecodes of the main thread, maybe inside the
        event loop's own code, so it only sets flags and uses thread-safe calls."""
        self._signals_seen += 1
        loop = self._loop
        if self._signals_seen == 1 and not self.should_exit and loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._start_drain, sig)
            return
        self.exit_code = 128 + sig
        self.force_exit = True
        self.should_exit = True
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._stop_drain, sig)
        # If the loop is stuck, nothing above happens: the process still ends, a little later.
        watchdog = threading.Timer(STRAGGLER_GRACE_SECONDS + 3, os._exit, (self.exit_code,))
        watchdog.daemon = True
        watchdog.start()

    def _start_drain(self, sig: int) -> None:
        _log.info(
            "%s: draining for up to %gs; send it again to stop at once",
            signal.Signals(sig).name,
            self.gateway.settings.limits.drain_timeout,
            extra={"event": "drain_start", "sockets": len(self.gateway.sockets)},
        )
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    def _stop_drain(self, sig: int) -> None:
        _log.warning(
            "%s again: stopping without waiting", signal.Signals(sig).name, extra={"event": "forced_exit"}
        )
        if self._drain_task is not None:
            self._drain_task.cancel()

    async def _drain_then_exit(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Gateway.drain bounds itself by drain_timeout; the margin covers closing the backend host.
        bound = self.gateway.settings.limits.drain_timeout + 1.0
        try:
            async with asyncio.timeout(bound):
                await self.gateway.drain()
        except TimeoutError:
            _log.warning("the drain did not finish within %gs; stopping anyway", bound)
        except Exception:
            _log.exception("the drain failed; stopping anyway")
            self.exit_code = EXIT_FAILURE
        else:
            left = len(self.gateway.sockets)
            extra = {"event": "drain_done", "sockets": left, "seconds": round(loop.time() - start, 3)}
            if left:
                _log.warning(
                    "drain_timeout reached: cutting %d socket(s) that did not close", left, extra=extra
                )
            else:
                _log.info("drained in %.2fs", loop.time() - start, extra=extra)
        finally:
            self.should_exit = True  # uvicorn's main loop notices within 0.1 s


def _run(config_path: str) -> int:
    settings = _load(config_path)
    configure_logging(settings)  # the settings were checked: it cannot refuse them
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    _quiet_collector()
    identity = "" if settings.identity_file is not None else " (ephemeral identity)"
    banner = (
        f"glueberry-gateway {__version__} listening on {listen_url(settings)} "
        f"peer {settings.peer_id}{identity} backends: {_backends_line(settings)}"
    )
    server = GatewayServer(uvicorn_config(app, settings), gateway, banner=banner)
    server.run()
    return server.exit_code


def _quiet_collector() -> None:
    """Keep the cyclic garbage collector's pauses short and rare. Its full collections walk every
    live object: ~180 per session, ~0.14 ms of pause per open session. What is loaded at start
    (modules, the app) never dies: freeze it out of those walks. Sessions leave no cycles behind
    (their objects go by reference count), so a full collection may wait for 100 middle ones
    instead of 10."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


# Other commands.


def _check(config_path: str) -> int:
    settings = _load(config_path)
    ephemeral = settings.identity_file is None
    out: list[str] = [f"{config_path}: OK"]
    out.append(f"  listen     {listen_url(settings)}  (also /healthz, /readyz, /metrics)")
    out.append(
        f"  peer ID    {settings.peer_id}"
        + ("  (no identity_key_file: a NEW identity at every start)" if ephemeral else "")
    )
    out.append(f"  origins    {', '.join(settings.allowed_origins) or '(none)'}")
    tokens = settings.tokens
    if tokens.key is None:
        out.append("  tokens     not configured (a browser that sends one is refused)")
    else:
        out.append(
            f"  tokens     {'required' if tokens.required else 'optional'}; "
            f"algorithms {', '.join(tokens.algorithms)}"
            + (f"; issuer {tokens.issuer}" if tokens.issuer else "")
            + (f"; audience {tokens.audience}" if tokens.audience else "")
        )
    if settings.backends:
        for i, b in enumerate(settings.backends):
            label = "backends" if i == 0 else ""
            out.append(f"  {label:<10} {b.name}  {b.peer_id}  {' '.join(str(a) for a in b.addrs)}")
    else:
        out.append("  backends   (none: browsers can authenticate but not open sessions)")
    if settings.static_dir is not None:
        out.append(f"  static     {settings.static_dir} at /")
    out.append(f"  logs       {settings.log_format}, {settings.log_level}")
    defaults = Limits()
    changed = [
        f"{f.name} = {getattr(settings.limits, f.name)} (default {getattr(defaults, f.name)})"
        for f in fields(Limits)
        if getattr(settings.limits, f.name) != getattr(defaults, f.name)
    ]
    out.append(f"  limits     {changed[0] if changed else 'all defaults'}")
    out.extend(f"             {line}" for line in changed[1:])
    print("\n".join(out))
    if not settings.allowed_origins:
        print(
            "warning: allowed_origins is empty, so every browser is refused (4007); "
            'list your page\'s origin, e.g. allowed_origins = ["https://app.example"]',
            file=sys.stderr,
        )
    return EXIT_OK


def _keygen(out: str, force: bool) -> int:
    path = Path(out)
    key = generate_private_key()
    try:
        write_key_file(path, key, force=force)
    except FileExistsError:
        _fail(f"{path} already exists; keep it (it is this gateway's identity) or pass --force", EXIT_FAILURE)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILURE)
    print(f"wrote {path} (mode 0600)")
    print(f"peer ID {PeerID.from_private_key(key)}")
    return EXIT_OK


def _peer_id(key_path: str) -> int:
    try:
        key = read_key_file(Path(key_path))
    except OSError as exc:
        _fail(f"cannot read {key_path}: {exc.strerror or exc}", EXIT_FAILURE)
    except InvalidKey as exc:
        _fail(f"{key_path}: {exc}")
    print(PeerID.from_private_key(key))
    return EXIT_OK


# The command line.

_DESCRIPTION = """\
A WebSocket gateway that lets web pages talk to Glueberry peers ("backends").
Browsers authenticate with their own Ed25519 key; the gateway relays their
end-to-end encrypted sessions to the backends listed in its configuration and
cannot read them. Full guide: docs/gateway.md.
"""

_EPILOG = """\
first steps:
  glueberry-gateway keygen --out gateway.key     make the gateway's identity
  glueberry-gateway check --config gateway.toml  validate the configuration
  glueberry-gateway --config gateway.toml        run it (Ctrl+C drains, twice stops)

exit status: 0 ok (also after a drain), 1 I/O problem (e.g. the key file exists),
2 invalid configuration or command line, 3 could not start (e.g. the port is in use),
128 + the signal number after a forced stop (a second signal).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glueberry-gateway",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        dest="top_config",
        metavar="FILE",
        help="run the gateway with this TOML configuration (the same as `run --config FILE`)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    run = commands.add_parser(
        "run",
        help="serve browsers (the default when only --config is given)",
        description="Serve browsers until SIGTERM or Ctrl+C. The first signal drains: new "
        "sockets are refused, /readyz answers 503, every browser is told to reconnect "
        "after a jittered delay and closed with 1001, within limits.drain_timeout. A "
        "second signal stops at once.",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration")

    check = commands.add_parser(
        "check",
        help="validate a configuration and print a summary",
        description="Load and validate the configuration like `run` would, print what the gateway "
        "would do (listen URL, peer ID, backends, limits that differ from the defaults) "
        "and exit 0, or print every problem and exit 2.",
    )
    check.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration")

    keygen = commands.add_parser(
        "keygen",
        help="create the gateway's Ed25519 identity key file",
        description="Create a new Ed25519 identity: the 32-byte seed as 64 hex characters, in a "
        "file only you can read (mode 0600). Point identity_key_file at it. The peer ID "
        "printed is what browsers see as the gateway; keep the file to keep the ID.",
    )
    keygen.add_argument(
        "--out", default="gateway.key", metavar="FILE", help="where to write it (default: gateway.key)"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    peer_id = commands.add_parser(
        "peer-id",
        help="print the peer ID of a key file",
        description="Print the libp2p peer ID (12D3KooW...) of a key file made by `keygen`.",
    )
    peer_id.add_argument("--key", required=True, metavar="FILE", help="the key file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            if args.top_config is None:
                parser.print_help(sys.stderr)
                return EXIT_CONFIG
            return _run(args.top_config)
        if args.top_config is not None:
            parser.error("give --config after the command, e.g. `check --config FILE`")
        if args.command == "run":
            return _run(args.config)
        if args.command == "check":
            return _check(args.config)
        if args.command == "keygen":
            return _keygen(args.out, args.force)
        if args.command == "peer-id":
            return _peer_id(args.key)
        parser.error(f"unknown command {args.command}")  # unreachable: argparse checks choices
    except _Exit as exc:
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
