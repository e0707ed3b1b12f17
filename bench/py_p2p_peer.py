"""A Python libp2p peer for the benchmarks: serves /echo/1.0.0 and /discard/1.0.0 (read to the
end, keep nothing, close) and prints one JSON line with its peer ID and address. Runs until stdin
closes."""

from __future__ import annotations

import asyncio
import json
import sys

from glueberry.p2p.asyncio import Host, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.signer import LocalSigner


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def discard(stream: Stream) -> None:
    while await stream.read():
        pass
    await stream.close()


async def main() -> None:
    host = Host(LocalSigner(generate_private_key()))
    host.set_stream_handler("/echo/1.0.0", echo)
    host.set_stream_handler("/discard/1.0.0", discard)
    addrs = await host.listen(["/ip4/127.0.0.1/tcp/0"])
    print(json.dumps({"peer_id": str(host.peer_id), "addrs": [str(a) for a in addrs]}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await host.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
