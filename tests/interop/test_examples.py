"""examples/chat_with_go.py against the real Go glueberry (the interop peer in echo mode)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.interop.conftest import StartPeer

pytestmark = pytest.mark.interop
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat_with_go.py"


async def test_chat_with_go_example(start_glueberry: StartPeer) -> None:
    go = await start_glueberry("--streams", "chat", "--name", "gopher", "--on-message", "echo")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--peer",
        go.peer_id,
        "--addr",
        go.addrs[0],
        "--name",
        "pytest",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"hello go\nsecond line\n"), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "connected to gopher" in text
    assert "gopher> hello go" in text
    assert "gopher> second line" in text
