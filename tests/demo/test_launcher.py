"""The demo launcher: the page served, the chat through the real gateway (with the Python gateway
client standing in for a browser), token mode, restarts of each part, the command line."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from glueberry import PeerID, generate_private_key
from glueberry_demo.launcher import BundleMissing, Demo, PortInUse, start_demo
from glueberry_gateway.client import GatewayClient, GatewayError, Session
from tests.helpers import free_port


def _static(tmp_path: Path, *, bundle: bool = True) -> Path:
    static = tmp_path / "static"
    (static / "vendor").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>chat</title>")
    if bundle:
        (static / "vendor" / "glueberry-client.js").write_text("export {};")
    return static


async def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    def fetch() -> tuple[int, bytes, dict[str, str]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    return await asyncio.to_thread(fetch)


async def _run_demo(port: int, static: Path) -> asyncio.subprocess.Process:
    """``python -m glueberry_demo --port PORT --static-dir STATIC``, its stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "glueberry_demo",
        "--port",
        str(port),
        "--static-dir",
        str(static),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


class Page:
    """What the web page does, with the Python client: connect, open "chat", handshake, join."""

    def __init__(self, session: Session, client: GatewayClient) -> None:
        self.session = session
        self.client = client

    @classmethod
    async def open(cls, demo: Demo, token: str | None = None) -> Page:
        origin = demo.url.rstrip("/")
        client = await GatewayClient.connect(
            demo.ws_url, identity=generate_private_key(), origin=origin, token=token
        )
        assert [b.name for b in client.backends] == ["chat"]
        session = await client.open("chat")
        await session.handshake(["chat"], name="test-page")
        assert str(session.backend_peer_id) == str(demo.backend_peer_id)
        return cls(session, client)

    async def send(self, message: dict[str, Any]) -> None:
        await self.session.send("chat", json.dumps(message).encode())

    async def expect(self, kind: str) -> dict[str, Any]:
        message = await self.session.receive(timeout=5)
        value: dict[str, Any] = json.loads(message.data)
        assert value["t"] == kind, value
        return value

    async def close(self) -> None:
        await self.client.close()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    async with start_demo(0, static_dir=_static(tmp_path), data_dir=tmp_path / "data") as running:
        yield running


class TestServing:
    async def test_serves_the_page_and_reports_itself(self, demo: Demo, tmp_path: Path) -> None:
        assert demo.port > 0
        assert demo.url == f"http://127.0.0.1:{demo.port}/"
        status, body, _ = await _get(demo.url)
        assert (status, body) == (200, b"<!doctype html><title>chat</title>")
        status, _, headers = await _get(demo.url + "vendor/glueberry-client.js")
        assert status == 200
        assert "javascript" in headers["content-type"]
        assert (await _get(demo.url + "token?peer=x"))[0] == 204  # no token needed
        assert demo.summary().splitlines()[0] == f"Glueberry chat demo: open {demo.url}"
        assert str(demo.backend_peer_id) in demo.summary()
        assert {p.name for p in (tmp_path / "data").iterdir()} >= {"backend.key", "gateway.key", "issuer.key"}
        assert demo.origins == (f"http://127.0.0.1:{demo.port}", f"http://localhost:{demo.port}")

    async def test_refuses_to_start_without_the_bundle(self, tmp_path: Path) -> None:
        demo = start_demo(0, static_dir=_static(tmp_path, bundle=False))
        with pytest.raises(BundleMissing, match="make demo"):
            await demo.start()

    async def test_a_busy_port_is_reported(self, tmp_path: Path) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            demo = start_demo(port, static_dir=_static(tmp_path))
            with pytest.raises(PortInUse, match=f"port {port} .* already in use"):
                await demo.start()

    async def test_keys_are_kept_in_the_data_dir(self, tmp_path: Path) -> None:
        static = _static(tmp_path)
        async with start_demo(0, static_dir=static, data_dir=tmp_path / "d") as first:
            ids = (first.backend_peer_id, first.gateway_peer_id)
        async with start_demo(0, static_dir=static, data_dir=tmp_path / "d") as second:
            assert (second.backend_peer_id, second.gateway_peer_id) == ids

    async def test_a_temporary_data_dir_is_deleted(self, tmp_path: Path) -> None:
        async with start_demo(0, static_dir=_static(tmp_path)) as demo:
            data = demo.data_dir
            assert (data / "backend.key").is_file()
        assert not data.exists()


class TestChatThroughTheGateway:
    async def test_two_pages_chat(self, demo: Demo) -> None:
        alice, bob = await Page.open(demo), await Page.open(demo)
        await alice.send({"t": "join", "room": "lobby", "nick": "alice"})
        await alice.expect("welcome")
        await bob.send({"t": "join", "room": "lobby", "nick": "bob"})
        assert len((await bob.expect("welcome"))["members"]) == 2
        await alice.expect("joined")
        await bob.send({"t": "msg", "room": "lobby", "id": "b1", "text": "hi alice"})
        assert (await alice.expect("msg"))["text"] == "hi alice"
        assert (await bob.expect("msg"))["id"] == "b1"
        await alice.close()
        assert (await bob.expect("left"))["nick"] == "alice"
        await bob.close()

    async def test_gateway_restart_keeps_keys_and_port(self, demo: Demo) -> None:
        port, gateway_id = demo.port, demo.gateway_peer_id
        page = await Page.open(demo)
        await page.send({"t": "join", "room": "lobby", "nick": "alice"})
        await page.expect("welcome")
        await page.send({"t": "msg", "room": "lobby", "id": "1", "text": "before"})
        await page.expect("msg")
        await demo.restart_gateway()
        assert (demo.port, demo.gateway_peer_id) == (port, gateway_id)
        with pytest.raises(GatewayError):  # the old session is gone (SessionClosed or GatewayClosed)
            await page.session.receive(timeout=5)
        again = await Page.open(demo)
        await again.send({"t": "join", "room": "lobby", "nick": "alice"})
        assert [m["text"] for m in (await again.expect("welcome"))["history"]] == ["before"]
        await again.close()

    async def test_backend_restart_keeps_rooms_and_history(self, demo: Demo) -> None:
        page = await Page.open(demo)
        await page.send({"t": "join", "room": "lobby", "nick": "alice"})
        await page.expect("welcome")
        await page.send({"t": "msg", "room": "lobby", "id": "1", "text": "kept"})
        await page.expect("msg")
        backend_id = demo.backend_peer_id
        await demo.stop_backend()
        assert demo.backend is None
        with pytest.raises(GatewayError):  # the session closes with the backend
            await page.session.receive(timeout=5)
        with pytest.raises(GatewayError):  # nobody answers while it is down
            await page.client.open("chat")
        await demo.start_backend()
        assert demo.backend_peer_id == backend_id
        session = await page.client.open("chat")
        await session.handshake(["chat"])
        again = Page(session, page.client)
        await again.send({"t": "join", "room": "lobby", "nick": "alice"})
        assert [m["text"] for m in (await again.expect("welcome"))["history"]] == ["kept"]
        await page.close()


class TestTokens:
    async def test_token_mode(self, tmp_path: Path) -> None:
        async with start_demo(0, static_dir=_static(tmp_path), token_ttl=60) as demo:
            key = generate_private_key()
            peer = str(PeerID.from_private_key(key))
            status, body, headers = await _get(f"{demo.url}token?peer={peer}")
            assert status == 200
            assert headers["cache-control"] == "no-store"
            answer = json.loads(body)
            claims = jwt.decode(answer["token"], options={"verify_signature": False})
            assert claims["sub"] == peer
            assert claims["backends"] == ["chat"]
            assert claims["exp"] == answer["expires_at"]
            assert 55 <= claims["exp"] - claims["iat"] <= 61
            assert (await _get(f"{demo.url}token?peer=nonsense"))[0] == 400
            assert (await _get(f"{demo.url}token"))[0] == 400

            origin = demo.url.rstrip("/")
            with pytest.raises(GatewayError) as refused:  # no token: refused
                await GatewayClient.connect(demo.ws_url, identity=key, origin=origin)
            assert refused.value.code == 4005
            client = await GatewayClient.connect(
                demo.ws_url, identity=key, origin=origin, token=answer["token"]
            )
            session = await client.open("chat")
            await session.handshake(["chat"])
            await session.send("chat", b'{"t":"join","room":"tokens","nick":"t"}')
            assert json.loads((await session.receive(timeout=5)).data)["t"] == "welcome"
            await client.close()


class TestCommandLine:
    async def test_runs_prints_the_address_and_stops_on_ctrl_c(self, tmp_path: Path) -> None:
        port = free_port()
        proc = await _run_demo(port, _static(tmp_path))
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = (await proc.stdout.readline()).decode().strip()
        assert first == f"Glueberry chat demo: open http://127.0.0.1:{port}/"
        assert (await _get(f"http://127.0.0.1:{port}/"))[0] == 200
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0

    async def test_missing_bundle_says_make_demo(self, tmp_path: Path) -> None:
        proc = await _run_demo(0, _static(tmp_path, bundle=False))
        _, err = await proc.communicate()
        assert proc.returncode == 1
        assert b"make demo" in err

    async def test_busy_port_is_said_clearly(self, tmp_path: Path) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            proc = await _run_demo(port, _static(tmp_path))
            _, err = await proc.communicate()
        assert proc.returncode == 3
        assert f"port {port} on 127.0.0.1 is already in use".encode() in err
        assert b"--port" in err
