"""A Python Glueberry node for the benchmarks, in its own process.

    python bench/py_node_peer.py count|echo

Prints one JSON line {"peer_id", "addrs"}; then reads JSON lines on stdin:
{"expect": N} answers {"received": N, "elapsed_s": …} once N more messages arrived (count mode).
In echo mode every message is sent back on its stream. Ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from glueberry.auto_handshake import HelloHandshakeHandler
from glueberry.config import Config
from glueberry.node import Node
from glueberry.p2p.keys import generate_private_key


async def main(mode: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    config = Config(
        generate_private_key(),
        tmp / "book.json",
        ["/ip4/127.0.0.1/tcp/0"],
        max_messages_per_second=0,
        message_buffer_size=10_000,
        max_peers=50_000,  # the gateway benchmark connects thousands of browsers to one backend
        max_pending_connections=1024,
        max_connection_attempts_per_minute=0,
    )
    node = Node(config, handshake=HelloHandshakeHandler(streams=["bench"], name=f"py-{mode}"))
    await node.start()
    print(json.dumps({"peer_id": str(node.peer_id), "addrs": [str(a) for a in node.addrs]}), flush=True)
    counter = {"n": 0}
    waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def consume() -> None:
        async for message in node.messages():
            if mode == "echo":
                await node.send(message.peer_id, message.stream_name, message.data)
                continue
            counter["n"] += 1
            for target, fut in list(waiters):
                if counter["n"] >= target and not fut.done():
                    fut.set_result(None)

    consumer = asyncio.ensure_future(consume())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        start = time.perf_counter()
        fut: asyncio.Future[None] = loop.create_future()
        waiters.append((counter["n"] + int(request["expect"]), fut))
        await fut
        print(
            json.dumps({"received": request["expect"], "elapsed_s": time.perf_counter() - start}), flush=True
        )
    consumer.cancel()
    await node.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
