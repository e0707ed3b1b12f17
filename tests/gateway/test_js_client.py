"""The TypeScript client (js-client/) against the gateway.

* ``test_codes_match``: ``js-client/src/codes.ts`` holds exactly the codes of
  :class:`glueberry_gateway.protocol.codes.Code` (names CamelCase <-> UPPER_SNAKE, same numbers).
* ``test_node_client_against_real_gateway``: a real gateway and a real python-sdk echo backend,
  and a Node script (js-client/test-integration/echo.mjs) that uses the built ``dist/`` with the
  ``ws`` package: auth, open (sign, handshake), encrypted echoes, a resume after a cut socket, a
  refused open. The dist is rebuilt first when it is missing or older than the sources.
* ``test_browser_bundle_in_chromium``: the single-file browser bundle in real Chromium (the
  browser's own WebSocket, ``location.origin``, an IndexedDB identity) against the same servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Route, async_playwright

from glueberry_gateway.protocol.codes import Code
from tests.gateway.conftest import ORIGIN, EchoBackend, MakeGateway

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js-client"
ECHO_SCRIPT = JS / "test-integration" / "echo.mjs"
BUILT = (JS / "dist" / "index.js", JS / "dist" / "browser" / "glueberry-client.js")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_codes_match() -> None:
    text = (JS / "src" / "codes.ts").read_text()
    block = re.search(r"export const CloseCode = \{\n(.*?)\n\} as const;", text, re.S)
    assert block is not None, "codes.ts must declare `export const CloseCode = { ... } as const;`"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    members = [re.fullmatch(r"  ([A-Z][A-Za-z0-9]*): (\d+), // \S.*", line) for line in lines]
    assert all(members), f"every member is `Name: number, // comment`: {lines}"
    ts = [(_snake(m.group(1)), int(m.group(2))) for m in members if m]
    assert ts == [(code.name, code.value) for code in Code]


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm (Node >= 20) is needed to build and run js-client")
    return npm


def _ensure_built() -> None:
    """``npm ci`` when node_modules lacks a dependency, ``npm run -w js-client build`` when the
    dist is missing or older than anything it is built from."""
    npm = _npm()
    if not (ROOT / "node_modules" / "ws").is_dir() or not (ROOT / "node_modules" / "esbuild").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True)
    sources = [*(JS / "src").rglob("*.ts"), *(JS / "scripts").glob("*.mjs"), JS / "package.json"]
    newest = max(path.stat().st_mtime for path in sources)
    if any(not path.exists() or path.stat().st_mtime < newest for path in BUILT):
        subprocess.run([npm, "run", "-w", "js-client", "build"], cwd=ROOT, check=True)


async def test_node_client_against_real_gateway(echo_backend: EchoBackend, make_gateway: MakeGateway) -> None:
    await asyncio.to_thread(_ensure_built)
    node = shutil.which("node")
    assert node is not None, "node is needed"
    gw = await make_gateway(echo_backend.backend("py"))
    env = {
        **os.environ,
        "GLUEBERRY_GATEWAY_URL": gw.url,
        "GLUEBERRY_ORIGIN": ORIGIN,
        "GLUEBERRY_BACKEND": "py",
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        str(ECHO_SCRIPT),
        cwd=JS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, f"echo.mjs exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"

    lines = out.splitlines()
    assert "echo:hello" in lines
    assert "echo:héllo wörld 🍓" in lines
    assert "echo:message 49" in lines
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["echoes"] == 56
    assert result["states"] == ["resuming 1006", "connected", "closed 1000"]
    # the backend got the plaintext (end to end through the relay; its handshake checked that the
    # browser's key is the peer ID the libp2p connection carries, which the browser signed for)
    assert ("chat", b"hello") in echo_backend.received
    assert ("chat", b"after the cut 2") in echo_backend.received
    assert ("files", bytes((i * 31) & 255 for i in range(200_000))) in echo_backend.received
    assert echo_backend.decryption_errors == []


_PAGE = """<!doctype html><body><script type="module">
import { CloseCode, GatewayError, GlueberryClient, IndexedDbIdentityStore, loadOrCreateIdentity }
  from '/glueberry-client.js';
const out = {};
try {
  const identity = await loadOrCreateIdentity(new IndexedDbIdentityStore({ name: 'test' }));
  const client = await GlueberryClient.connect(GATEWAY_URL, { identity, handshakeName: 'chromium' });
  out.state = client.state;
  const session = await client.open('py');
  out.peerName = session.peerName;
  const inbox = session[Symbol.asyncIterator]();
  await session.send('chat', 'hello from chromium');
  out.echo = (await inbox.next()).value.text;
  out.refused = await client.open('nope').catch((e) => e instanceof GatewayError && e.code === CloseCode.BackendUnknown);
  client.close();
  out.final = client.state;
} catch (e) {
  out.error = `${e} (${e && e.code})`;
}
document.body.dataset.result = JSON.stringify(out);
</script></body>"""


@pytest.mark.e2e
async def test_browser_bundle_in_chromium(echo_backend: EchoBackend, make_gateway: MakeGateway) -> None:
    await asyncio.to_thread(_ensure_built)
    chromium = shutil.which("chromium")
    assert chromium is not None, "Debian's chromium is needed (scripts/setup.sh installs it)"
    gw = await make_gateway(echo_backend.backend("py"))
    page_html = _PAGE.replace("GATEWAY_URL", json.dumps(gw.url))
    bundle = BUILT[1].read_text()

    async def serve(route: Route) -> None:  # the page, from the allowed origin
        if route.request.url.endswith("/glueberry-client.js"):
            await route.fulfill(body=bundle, content_type="text/javascript")
        else:
            await route.fulfill(body=page_html, content_type="text/html")

    async with async_playwright() as playwright:
        # a public origin may not reach 127.0.0.1 under Local Network Access: allowed for the test
        flags = (
            "LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights"
        )
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", f"--disable-features={flags}"]
        )
        try:
            page = await browser.new_page()
            logs: list[str] = []
            page.on("console", lambda message: logs.append(message.text))
            await page.route(f"{ORIGIN}/**", serve)
            await page.goto(f"{ORIGIN}/index.html")
            await page.wait_for_function("document.body.dataset.result !== undefined", timeout=20_000)
            result = json.loads(await page.evaluate("document.body.dataset.result"))
        finally:
            await browser.close()
    assert result == {
        "state": "connected",
        "peerName": "python-backend",
        "echo": "echo:hello from chromium",
        "refused": True,
        "final": "closed",
    }, (result, logs)
    assert ("chat", b"hello from chromium") in echo_backend.received
