"""Through a real gateway to real backends: a python-sdk node and the real Go glueberry.

auth -> open -> Hello/PubKey/Complete with the backend (through the relay) -> encrypted messages
both ways; several sessions on one socket; messages the backend starts; resume after a cut socket.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from glueberry.exceptions import NegotiationFailed
from glueberry.p2p.keys import generate_private_key
from glueberry.wire.framing import frame_header
from glueberry_gateway.client import GatewayClient, Session
from glueberry_gateway.server.settings import Backend
from tests.gateway.conftest import ORIGIN, STREAMS, EchoBackend, MakeClient, MakeGateway
from tests.gateway.raw_client import RawClient
from tests.gateway.tcp_proxy import TcpProxy
from tests.interop.conftest import StartPeer


async def open_session(client: GatewayClient, backend: str) -> Session:
    session = await client.open(backend)
    await session.handshake(STREAMS, name="browser")
    return session


class TestPythonBackend:
    async def test_messages_both_ways(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        gw = await make_gateway(echo_backend.backend())
        client = await make_client(gw.url)
        assert [b.name for b in client.backends] == ["py"]
        session = await open_session(client, "py")
        assert str(session.backend_peer_id) == str(echo_backend.node.peer_id)
        assert session.peer_name == "python-backend"
        await session.send("chat", b"hello")
        reply = await session.receive(timeout=5)
        assert (reply.stream, reply.data) == ("chat", b"echo:hello")
        # the backend saw the browser's real identity, and its plaintext
        assert echo_backend.node.connection_state(client.peer_id).name == "ESTABLISHED"
        assert ("chat", b"hello") in echo_backend.received

    async def test_many_messages_in_order_and_a_large_one(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        gw = await make_gateway(echo_backend.backend())
        client = await make_client(gw.url)
        session = await open_session(client, "py")
        for i in range(500):
            await session.send("chat", i.to_bytes(4, "big"))
        for i in range(500):
            assert (await session.receive(timeout=5)).data == b"echo:" + i.to_bytes(4, "big")
        big = os.urandom(1 << 20)
        await session.send("files", big[:-5])  # the echo adds 5 bytes: stay within 1 MiB
        assert (await session.receive(timeout=10)).data == b"echo:" + big[:-5]

    async def test_backend_speaks_first_on_a_new_stream(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        gw = await make_gateway(echo_backend.backend())
        client = await make_client(gw.url)
        session = await open_session(client, "py")
        await echo_backend.node.send(client.peer_id, "files", b"pushed by the backend")
        message = await session.receive(timeout=5)
        assert (message.stream, message.data) == ("files", b"pushed by the backend")

    async def test_a_backend_stream_named_outside_ascii_is_refused_and_the_session_lives(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        # Go allows Unicode letters in stream names; the browser protocol carries ASCII names only.
        gw = await make_gateway(echo_backend.backend())
        client = await make_client(gw.url)
        session = await open_session(client, "py")
        host = echo_backend.node._host
        assert host is not None

        async def open_write_read() -> bytes:
            stream = await host.new_stream(client.peer_id, "/glueberry/stream/café/1.0.0")
            await stream.write(b"\x05hello")  # negotiation may be lazy: the answer comes with data
            return await asyncio.wait_for(stream.read(), 5)

        with pytest.raises(NegotiationFailed):
            await open_write_read()
        await session.send("chat", b"still here")
        assert (await session.receive(timeout=5)).data == b"echo:still here"

    async def test_malformed_backend_framing_ends_the_stream_after_the_frames_before_it(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway
    ) -> None:
        # Go and the SDK deliver the frames they decoded before a framing error; so does the relay.
        gw = await make_gateway(echo_backend.backend())
        raw = await RawClient.connect(gw.url, origin=ORIGIN)
        try:
            await raw.authenticate()
            session = await raw.open("py")
            await raw.handshake(session)
            host = echo_backend.node._host
            assert host is not None
            stream = await host.new_stream(raw.peer_id, "/glueberry/stream/files/1.0.0")
            await stream.write(frame_header(5) + b"first" + b"\x00")  # an outer length of 0: malformed
            frame = await raw.next_frame()
            assert (frame.session, frame.stream, bytes(frame.payload)) == (1, "files", b"first")
            notice = await raw.next_control("stream_closed")
            assert (notice["session"], notice["stream"]) == (1, "files")
            assert await raw.roundtrip(session, b"still here") == b"echo:still here"
        finally:
            await raw.close()

    async def test_several_sessions_on_one_socket_and_several_sockets(
        self,
        echo_backend: EchoBackend,
        second_backend: EchoBackend,
        make_gateway: MakeGateway,
        make_client: MakeClient,
    ) -> None:
        gw = await make_gateway(echo_backend.backend("one"), second_backend.backend("two"))
        clients = [await make_client(gw.url) for _ in range(3)]
        sessions = [await open_session(c, name) for c in clients for name in ("one", "two")]
        await asyncio.gather(*(s.send("chat", f"s{i}".encode()) for i, s in enumerate(sessions)))
        for i, s in enumerate(sessions):
            assert (await s.receive(timeout=5)).data == f"echo:s{i}".encode()

    async def test_a_second_session_of_the_same_identity_takes_over(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        """Glueberry is per peer: a backend sees one peer per identity and sends on its newest
        stream. A second session (another tab with the same key) handshakes again and from then
        on receives what the backend sends."""
        gw = await make_gateway(echo_backend.backend())
        identity = generate_private_key()
        first = await open_session(await make_client(gw.url, identity=identity), "py")
        await first.send("chat", b"from the first tab")
        assert (await first.receive(timeout=5)).data == b"echo:from the first tab"
        second = await open_session(await make_client(gw.url, identity=identity), "py")
        await second.send("chat", b"from the second tab")
        assert (await second.receive(timeout=5)).data == b"echo:from the second tab"
        await first.send("chat", b"first again")  # still delivered to the backend...
        assert (await second.receive(timeout=5)).data == b"echo:first again"  # ...answered to the newest


class TestGoBackend:
    async def test_messages_both_ways_with_real_go_glueberry(
        self, start_glueberry: StartPeer, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        go = await start_glueberry(
            "--streams", ",".join(STREAMS), "--name", "go-backend", "--on-message", "echo"
        )
        from glueberry.p2p.keys import PeerID
        from glueberry.p2p.multiaddr import Multiaddr

        backend = Backend("go", PeerID.from_string(go.peer_id), tuple(Multiaddr.parse(a) for a in go.addrs))
        gw = await make_gateway(backend)
        client = await make_client(gw.url)
        session = await open_session(client, "go")
        assert session.peer_name == "go-backend"
        await go.wait_event("state", lambda e: e["state"] == "Established", timeout=10)
        for i in range(100):
            await session.send("chat", b"to go %d" % i)
        for i in range(100):
            assert (await session.receive(timeout=5)).data == b"to go %d" % i
        summary = await go.request("summary", peer_id=str(client.peer_id), stream="chat")
        assert summary["count"] == 100  # Go decrypted every one: same key, same frames
        await go.request("send", peer_id=str(client.peer_id), stream="files", hex=b"from go".hex())
        message = await session.receive(timeout=5)
        assert (message.stream, message.data) == ("files", b"from go")


class TestResume:
    async def test_cut_socket_resumes_without_losing_a_frame(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        gw = await make_gateway(echo_backend.backend())
        proxy = await TcpProxy("127.0.0.1", gw.port).start()
        identity = generate_private_key()
        client = await make_client(f"ws://127.0.0.1:{proxy.port}/ws", identity=identity)
        session = await open_session(client, "py")
        await session.send("chat", b"before")
        assert (await session.receive(timeout=5)).data == b"echo:before"
        proxy.cut()  # the network drops; the gateway keeps the session for resume_grace
        await asyncio.sleep(0.2)
        for i in range(20):  # the backend keeps talking meanwhile
            await echo_backend.node.send(client.peer_id, "chat", b"while away %d" % i)
        await asyncio.sleep(0.2)
        await client.resume()
        for i in range(20):
            assert (await session.receive(timeout=5)).data == b"while away %d" % i
        await session.send("chat", b"after")
        assert (await session.receive(timeout=5)).data == b"echo:after"
        await proxy.close()

    async def test_resume_too_late_reports_not_recovered(
        self, echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
    ) -> None:
        gw = await make_gateway(echo_backend.backend(), resume_grace=0.3)
        proxy = await TcpProxy("127.0.0.1", gw.port).start()
        client = await make_client(f"ws://127.0.0.1:{proxy.port}/ws")
        session = await open_session(client, "py")
        proxy.cut()
        await asyncio.sleep(0.8)
        await client.resume()
        assert session.closed
        assert gw.gateway.metrics.resumes.labels("lost")._value.get() >= 1
        await proxy.close()


def test_origin_constant_is_allowed() -> None:
    assert ORIGIN.startswith("http://")
