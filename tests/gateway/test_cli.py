"""The ``glueberry-gateway`` command (docs/gateway.md): keygen, peer-id, check, help, and a real
drain of a running process on SIGTERM (docs/gateway-protocol.md §8 ``drain``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.server.cli import build_parser, main
from glueberry_gateway.server.keyfile import read_key_file
from tests.gateway.raw_client import RawClient, http_get
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "gateway" / "gateway.example.toml"
BACKEND = "12D3KooWRNrU5yXJE2ga7u7HzySqVV1ZPcTGeMZDcaJabLzLqC1d"
ORIGIN = "http://test.local"


def _peer_id_of(path: Path) -> str:
    return str(PeerID.from_private_key(read_key_file(path)))


class TestKeygen:
    """docs/gateway.md "Quick start": keygen writes the 32-byte seed as hex, 0600, never overwrites."""

    def test_writes_hex_seed_with_mode_0600(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        key = tmp_path / "gateway.key"
        assert main(["keygen", "--out", str(key)]) == 0
        text = key.read_text().strip()
        assert len(text) == 64
        bytes.fromhex(text)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        out = capsys.readouterr().out
        assert _peer_id_of(key) in out

    def test_refuses_to_overwrite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        key = tmp_path / "gateway.key"
        assert main(["keygen", "--out", str(key)]) == 0
        before = key.read_text()
        capsys.readouterr()
        assert main(["keygen", "--out", str(key)]) == 1
        assert key.read_text() == before
        err = capsys.readouterr().err
        assert "already exists" in err
        assert "--force" in err

    def test_force_overwrites_and_tightens_the_mode(self, tmp_path: Path) -> None:
        key = tmp_path / "gateway.key"
        key.write_text("old")
        key.chmod(0o644)
        assert main(["keygen", "--out", str(key), "--force"]) == 0
        assert len(key.read_text().strip()) == 64
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    def test_the_settings_loader_reads_the_same_identity(self, tmp_path: Path) -> None:
        from glueberry_gateway.server.settings import load_settings

        key = tmp_path / "gateway.key"
        assert main(["keygen", "--out", str(key)]) == 0
        config = tmp_path / "gw.toml"
        config.write_text('identity_key_file = "gateway.key"\n')
        assert str(load_settings(config).peer_id) == _peer_id_of(key)


class TestPeerId:
    def test_prints_the_peer_id(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        key = tmp_path / "k"
        assert main(["keygen", "--out", str(key)]) == 0
        capsys.readouterr()
        assert main(["peer-id", "--key", str(key)]) == 0
        assert capsys.readouterr().out.strip() == _peer_id_of(key)

    def test_missing_or_bad_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["peer-id", "--key", str(tmp_path / "nope")]) == 1
        bad = tmp_path / "bad"
        bad.write_text("not hex")
        assert main(["peer-id", "--key", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "nope" in err
        assert "bad" in err
        assert "Traceback" not in err


class TestCheck:
    """``check`` validates like ``run`` and prints a summary; exit 0, or 2 with every problem."""

    def test_the_example_configuration_is_accepted(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["check", "--config", str(EXAMPLE)]) == 0
        out = capsys.readouterr().out
        assert "ws://127.0.0.1:8080/ws" in out
        assert BACKEND in out
        assert "12D3KooW" in out
        assert "a NEW identity at every start" in out

    def test_summary(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["keygen", "--out", str(tmp_path / "gateway.key")]) == 0
        config = tmp_path / "gw.toml"
        config.write_text(
            'identity_key_file = "gateway.key"\n'
            'listen = "[::1]:9000"\n'
            f'allowed_origins = ["{ORIGIN}"]\n'
            "[[backends]]\n"
            f'name = "chat"\npeer_id = "{BACKEND}"\naddrs = ["/ip4/10.0.0.2/tcp/4001"]\n'
            "[limits]\nmax_sessions = 4\n"
        )
        capsys.readouterr()
        assert main(["check", "--config", str(config)]) == 0
        captured = capsys.readouterr()
        out = captured.out
        assert "ws://[::1]:9000/ws" in out
        assert _peer_id_of(tmp_path / "gateway.key") in out
        assert "NEW identity" not in out
        assert "chat" in out
        assert "/ip4/10.0.0.2/tcp/4001" in out
        assert "max_sessions = 4 (default 16)" in out
        assert "max_streams" not in out  # only the limits that differ from the defaults
        assert ORIGIN in out
        assert captured.err == ""

    def test_warns_when_no_origin_is_allowed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "gw.toml"
        config.write_text('listen = "127.0.0.1:9000"\n')
        assert main(["check", "--config", str(config)]) == 0
        assert "allowed_origins is empty" in capsys.readouterr().err

    def test_every_problem_is_printed_and_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "gw.toml"
        config.write_text('listen = "nowhere"\ncolour = "blue"\n[limits]\nmax_sessoins = 3\n')
        assert main(["check", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert str(config) in err
        assert "listen" in err
        assert "colour" in err
        assert "limits.max_sessoins" in err
        assert "Traceback" not in err

    def test_problems_found_beyond_settings_validate(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "gw.toml"
        config.write_text('log_level = "LOUD"\n[tokens]\nalgorithms = ["none"]\nsecret = "s"\n')
        assert main(["check", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert "log_level" in err
        assert "tokens.algorithms" in err

    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["check", "--config", str(tmp_path / "absent.toml")]) == 2
        assert "absent.toml" in capsys.readouterr().err

    def test_run_refuses_a_bad_configuration_before_binding(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "gw.toml"
        config.write_text("[limits]\ndrain_timeout = -1\n")
        assert main(["--config", str(config)]) == 2
        assert "limits.drain_timeout" in capsys.readouterr().err


class TestHelp:
    def test_top_level_help_names_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for word in ("run", "check", "keygen", "peer-id", "--config", "docs/gateway.md", "exit status"):
            assert word in out

    @pytest.mark.parametrize("command", ["run", "check", "keygen", "peer-id"])
    def test_every_command_has_help(self, command: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: glueberry-gateway " + command in capsys.readouterr().out

    def test_no_arguments_prints_help_and_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert "usage:" in capsys.readouterr().err

    def test_the_parser_is_importable(self) -> None:
        assert build_parser().prog == "glueberry-gateway"


# A running process.


@dataclass
class RunningGateway:
    process: asyncio.subprocess.Process
    port: int
    drain_timeout: float
    stderr: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def _start(tmp_path: Path, *, drain_timeout: float) -> RunningGateway:
    port = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'allowed_origins = ["{ORIGIN}"]\n'
        "[limits]\n"
        f"drain_timeout = {drain_timeout}\n"
        "drain_reconnect_ms = 1000\n"
        "messages_per_second = 10000000\n"
        "bytes_per_second = 10000000000\n"
        "slow_consumer_timeout = 60\n"
        "outbound_queue_bytes = 100000000\n"
        "ping_interval = 600\n"
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as log:  # the child keeps its own descriptor
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "glueberry_gateway",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert f"ws://127.0.0.1:{port}/ws" in line.decode(), (line, stderr.read_text())
    assert "backends: none" in line.decode()
    return RunningGateway(process, port, drain_timeout, stderr)


@pytest.fixture
async def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningGateway]:
    gw = await _start(tmp_path, drain_timeout=getattr(request, "param", 3.0))
    try:
        yield gw
    finally:
        if gw.process.returncode is None:
            gw.process.kill()
            await gw.process.wait()


def _browser(ws: ClientConnection) -> RawClient:
    """The raw test browser on an open socket."""
    return RawClient(ws, generate_private_key(), ORIGIN)


async def _status(port: int, path: str) -> int:
    return (await http_get("127.0.0.1", port, path))[0]


async def _slow_consumer(gw: RunningGateway) -> ClientConnection:
    """A browser that authenticates, then sends data for a session it does not have and never
    reads the errors: its socket cannot be closed gracefully (the gateway's writer is stuck behind
    megabytes of unread errors), so the drain must wait for it, up to drain_timeout."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.port))
    ws = await connect(
        gw.url, sock=sock, subprotocols=["glueberry.v1"], origin=ORIGIN, ping_interval=None, max_queue=1
    )
    await _browser(ws).authenticate()
    frame = b"\x01\x00\x05\x01a"  # data on session 5, stream "a": a 70-byte error each
    for _ in range(100_000):  # ≈7 MB of errors: more than every buffer on the way
        await ws.send(frame)
    await asyncio.sleep(1.0)
    return ws


class TestDrain:
    """docs/gateway-protocol.md §8: on SIGTERM the gateway sends ``drain`` with a jittered delay,
    closes with 1001, refuses new sockets (readyz 503) and exits 0 within drain_timeout + ~3 s."""

    async def test_sigterm_drains_then_exits_0(self, gateway: RunningGateway) -> None:
        assert await _status(gateway.port, "/readyz") == 200
        slow = await _slow_consumer(gateway)
        async with connect(
            gateway.url, subprotocols=["glueberry.v1"], origin=ORIGIN, ping_interval=None
        ) as browser:
            await _browser(browser).read_challenge()
            start = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)

            drain = json.loads(await asyncio.wait_for(browser.recv(), 5))
            assert drain["type"] == "drain"
            assert 1000 // 4 <= drain["reconnect_after_ms"] <= 1000
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(browser.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            told = time.monotonic() - start

            # The slow consumer holds the drain open: the process still answers, but not ready.
            assert await _status(gateway.port, "/readyz") == 503
            assert await _status(gateway.port, "/healthz") == 200
            async with connect(
                gateway.url, subprotocols=["glueberry.v1"], origin=ORIGIN, ping_interval=None
            ) as late:
                refusal = json.loads(await asyncio.wait_for(late.recv(), 5))
                assert refusal["type"] == "error"
                assert refusal["code"] == 1001
                with pytest.raises(ConnectionClosed) as refused:
                    await asyncio.wait_for(late.recv(), 5)
                assert refused.value.rcvd is not None
                assert refused.value.rcvd.code == 1001

        returncode = await asyncio.wait_for(gateway.process.wait(), gateway.drain_timeout + 10)
        elapsed = time.monotonic() - start
        slow.transport.abort()
        log = gateway.stderr.read_text()
        assert returncode == 0, log
        assert told < 1.0, f"browsers were told after {told:.2f}s"
        assert elapsed < gateway.drain_timeout + 4.0, f"exited {elapsed:.2f}s after SIGTERM"
        assert elapsed >= gateway.drain_timeout - 0.5, "the slow consumer should have held the drain"
        events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
        assert "drain_start" in events
        print(f"drain: told after {told:.3f}s, exited after {elapsed:.3f}s")  # shown with -s

    async def test_drain_of_well_behaved_browsers_is_quick(self, gateway: RunningGateway) -> None:
        async with connect(
            gateway.url, subprotocols=["glueberry.v1"], origin=ORIGIN, ping_interval=None
        ) as browser:
            await _browser(browser).authenticate()
            start = time.monotonic()
            gateway.process.send_signal(signal.SIGINT)
            assert json.loads(await asyncio.wait_for(browser.recv(), 5))["type"] == "drain"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(browser.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        returncode = await asyncio.wait_for(gateway.process.wait(), gateway.drain_timeout + 10)
        elapsed = time.monotonic() - start
        assert returncode == 0, gateway.stderr.read_text()
        assert elapsed < 2.0, f"exited {elapsed:.2f}s after SIGINT"
        print(f"drain (well-behaved browser): exited after {elapsed:.3f}s")

    @pytest.mark.parametrize("gateway", [60.0], indirect=True)  # the drain_timeout
    async def test_a_second_signal_stops_at_once(self, gateway: RunningGateway) -> None:
        slow = await _slow_consumer(gateway)
        start = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert await _status(gateway.port, "/readyz") == 503
        gateway.process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(gateway.process.wait(), 10)
        elapsed = time.monotonic() - start
        slow.transport.abort()
        assert returncode == 128 + signal.SIGTERM, gateway.stderr.read_text()
        assert elapsed < 5.0, f"exited {elapsed:.2f}s after the first signal"


def test_the_server_process_keeps_collector_pauses_rare() -> None:
    """What is loaded at start is frozen out of full collections, which wait for 100 middle ones."""
    import gc

    from glueberry_gateway.server.cli import _quiet_collector

    before = gc.get_threshold()
    try:
        _quiet_collector()
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (before[0], before[1], 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
