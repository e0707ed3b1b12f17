"""A python-sdk libp2p peer that echoes Glueberry streams byte for byte without decrypting them:
the backend of the gateway's relay-only benchmark (what the gateway costs, not the backend's
crypto). Serves /glueberry/stream/<any>/1.0.0. Prints one JSON line, runs until stdin closes."""

from __future__ import annotations

import asyncio
import json
import sys

from glueberry.p2p.asyncio import Host, HostConfig, Stream
from glueberry.p2p.keys import generate_private_key
from glueberry.p2p.signer import LocalSigner
from glueberry.streams import stream_name_of


async def echo(stream: Stream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.close()


async def main() -> None:
    host = Host(
        LocalSigner(generate_private_key()), HostConfig(max_connections=50_000, max_pending_connections=1024)
    )
    host.set_stream_matcher(lambda p: stream_name_of(p) is not None, echo)
    addrs = await host.listen(["/ip4/127.0.0.1/tcp/0"])
    print(json.dumps({"peer_id": str(host.peer_id), "addrs": [str(a) for a in addrs]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await host.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
