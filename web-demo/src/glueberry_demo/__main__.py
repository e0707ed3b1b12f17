"""``python -m glueberry_demo`` (``make demo``): the chat backend, the gateway and the page, in one
process, until Ctrl-C.

It builds nothing: the page needs the browser bundle ``web-demo/static/vendor/glueberry-client.js``
(``make demo`` builds and copies it). Keys are generated in a temporary directory unless
``--data-dir`` keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from glueberry import GlueberryError, Multiaddr, PeerID

from .launcher import STATIC_DIR, BundleMissing, ExternalBackend, PortInUse, start_demo

EXIT_OK = 0
EXIT_BUNDLE = 1
EXIT_USAGE = 2
EXIT_START = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m glueberry_demo",
        description="Run the Glueberry chat demo: a chat backend (a Glueberry peer), the WebSocket "
        "gateway, and the web page it serves. Open the printed address in two browser windows.",
    )
    parser.add_argument("--port", type=int, default=8080, help="the page's and gateway's port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="the interface to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the keys (backend, gateway, token issuer) here; default: a temporary directory",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        metavar="SECONDS",
        help="token mode: the gateway requires a token, which the page gets from /token (demo issuer)",
    )
    parser.add_argument(
        "--backend-peer-id", metavar="PEER_ID", help="use this running chat backend instead of starting one"
    )
    parser.add_argument(
        "--backend-addr",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="its address, e.g. /ip4/127.0.0.1/tcp/4001 (repeatable; with --backend-peer-id)",
    )
    parser.add_argument(
        "--origin",
        action="append",
        default=[],
        help="another page origin to allow, e.g. http://192.168.1.5:8080 (repeatable)",
    )
    parser.add_argument("--static-dir", type=Path, default=STATIC_DIR, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the gateway and nodes do")
    return parser


def _external(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExternalBackend | None:
    if args.backend_peer_id is None and not args.backend_addr:
        return None
    if args.backend_peer_id is None or not args.backend_addr:
        parser.error("--backend-peer-id and --backend-addr go together")
    try:
        PeerID.from_string(args.backend_peer_id)
        for addr in args.backend_addr:
            if Multiaddr.parse(addr).tcp_target() is None:
                parser.error(f"--backend-addr {addr}: not /ip4|ip6/…/tcp/PORT")
    except (GlueberryError, ValueError) as exc:
        parser.error(str(exc))
    return ExternalBackend(args.backend_peer_id, tuple(args.backend_addr))


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    quiet = logging.INFO if verbose else logging.WARNING
    for name in ("glueberry", "glueberry_gateway", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


async def _run(args: argparse.Namespace, external: ExternalBackend | None) -> int:
    demo = start_demo(
        args.port,
        host=args.host,
        token_ttl=args.token_ttl,
        backend=external,
        data_dir=args.data_dir,
        static_dir=args.static_dir,
        origins=args.origin,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print("\nstopping (the gateway tells pages to come back later); Ctrl-C again to quit now")
            stop.set()
        else:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await demo.start()
    except BundleMissing as exc:
        print(f"glueberry_demo: {exc}", file=sys.stderr)
        return EXIT_BUNDLE
    except PortInUse as exc:
        print(f"glueberry_demo: {exc}", file=sys.stderr)
        return EXIT_START
    except (GlueberryError, OSError, ValueError) as exc:
        print(f"glueberry_demo: cannot start: {exc}", file=sys.stderr)
        return EXIT_START
    try:
        print(demo.summary())
        print("Ctrl-C stops.", flush=True)
        await stop.wait()
    finally:
        await demo.close()
    print("stopped")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0-65535")
    if args.token_ttl is not None and args.token_ttl <= 0:
        parser.error("--token-ttl must be positive")
    external = _external(args, parser)
    _configure_logging(args.verbose)
    try:
        return asyncio.run(_run(args, external))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
