"""``make demo``: start a Glueberry node that listens on localhost and print how to reach it.

(The chat demo — gateway, chat backend and web page — replaces this once those parts land.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from glueberry.p2p.asyncio import Host, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.signer import LocalSigner


async def _echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def main() -> None:
    host = Host(LocalSigner(generate_private_key()))
    host.set_stream_handler("/echo/1.0.0", _echo)
    addrs = await host.listen(["/ip4/127.0.0.1/tcp/0"])
    print(f"peer ID: {host.peer_id}")
    for addr in addrs:
        print(f"listening on {addr}/p2p/{host.peer_id}")
    print("serving /echo/1.0.0, identify and ping; Ctrl-C stops")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await host.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
