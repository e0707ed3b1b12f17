"""Playwright fixtures: real Debian Chromium (Playwright's own browser download cannot work here)
driving the real demo page, served by the real gateway, to a real chat backend."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-results"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def built_bundle() -> Path:
    """web-demo/static/vendor/glueberry-client.js, built when missing (never skipped)."""
    bundle = ROOT / "web-demo" / "static" / "vendor" / "glueberry-client.js"
    if not bundle.is_file():
        for workspace in ("js-client", "web-demo"):
            subprocess.run(
                ["npm", "run", "--silent", "-w", workspace, "build"], cwd=ROOT, check=True, timeout=600
            )
    assert bundle.is_file()
    return bundle


@pytest.fixture
async def browser(built_bundle: Path) -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium is not None, "Debian's chromium is needed: scripts/setup.sh installs it"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


NewPage = Callable[[], Awaitable[Page]]


@pytest.fixture
async def new_person(browser: Browser) -> AsyncIterator[NewPage]:
    """A new browser context per person: its own IndexedDB, so its own identity."""
    contexts: list[BrowserContext] = []

    async def make() -> Page:
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: print(f"page error: {exc}"))
        return page

    yield make
    for context in contexts:
        await context.close()


# A real Go glueberry backend (tests/interop/conftest.py).
from tests.interop.conftest import glueberry_peer_binary, start_glueberry  # noqa: E402

__all__ = ["glueberry_peer_binary", "start_glueberry"]
