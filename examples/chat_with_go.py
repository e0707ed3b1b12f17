"""Chat with a Go Glueberry peer from the terminal.

    python examples/chat_with_go.py --peer 12D3KooW… --addr /ip4/127.0.0.1/tcp/4001 [--name alice]

It starts a Python Glueberry node, dials the Go peer, runs the Hello / PubKey / Complete
handshake (the pattern of the Go glueberry examples, and of tests/interop's glueberry-peer with
`--handshake auto`), then sends every line you type on the "chat" stream and prints what the peer
sends. Try it against the interop peer:

    make setup
    build/glueberry-peer --handshake auto --streams chat --on-message echo --name gopher
    # copy its peer_id and addrs from the "ready" line, then:
    .venv/bin/python examples/chat_with_go.py --peer <peer_id> --addr <addr>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from glueberry import (
    Config,
    ConnectionState,
    HelloHandshakeHandler,
    Node,
    PeerID,
    fingerprint,
    generate_private_key,
)


async def chat(peer: str, addr: str, name: str, listen: str) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="glueberry-chat-"))
    config = Config(generate_private_key(), data_dir / "peers.json", [listen])
    handler = HelloHandshakeHandler(streams=["chat"], name=name)
    peer_id = PeerID.from_string(peer)
    async with Node(config, handshake=handler) as node:
        print(f"me: {node.peer_id} ({fingerprint(node.peer_id)})", flush=True)
        events = node.events(peer_ids=[peer_id])
        node.add_peer(peer_id, [addr])
        async with asyncio.timeout(30):
            async for event in events:
                if event.state is ConnectionState.ESTABLISHED:
                    break
                if event.error is not None:
                    print(f"{event.state}: {event.error}", flush=True)
        them = handler.peer_names.get(peer_id) or str(peer_id)
        print(f"connected to {them} ({fingerprint(peer_id)}); type and press Enter", flush=True)

        async def show() -> None:
            async for message in node.messages():
                text = message.data.decode(errors="replace")
                print(f"{them}> {text}", flush=True)

        printer = asyncio.ensure_future(show())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            text = line.decode().rstrip("\n")
            if text:
                await node.send(peer_id, "chat", text.encode())
        await asyncio.sleep(0.5)  # let the last answers arrive
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer", required=True, help="the Go peer's ID (12D3KooW…)")
    parser.add_argument("--addr", required=True, help="its multiaddr, e.g. /ip4/127.0.0.1/tcp/4001")
    parser.add_argument("--name", default="python", help="the name sent in our Hello")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    args = parser.parse_args()
    sys.exit(asyncio.run(chat(args.peer, args.addr, args.name, args.listen)))


if __name__ == "__main__":
    main()
