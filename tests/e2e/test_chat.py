"""The chat demo in real Chromium, through the real gateway, to real Python and Go backends.

Each test starts the demo (glueberry_demo.launcher: chat backend + gateway serving the page) on a
free port and drives one browser context per person.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from playwright.async_api import Request, expect

from glueberry_demo.launcher import ExternalBackend, start_demo
from tests.e2e.chat import open_chat, say, sees, sees_member
from tests.e2e.conftest import ARTIFACTS, NewPage
from tests.interop.conftest import StartPeer

pytestmark = pytest.mark.e2e

FAST = {"drain_reconnect_ms": 300, "resume_grace": 5}


class TestChat:
    async def test_two_people_chat_both_ways(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            ada, grace = await new_person(), await new_person()
            await open_chat(ada, demo.url, nick="Ada", room="lobby")
            await open_chat(grace, demo.url, nick="Grace", room="lobby")
            await sees_member(ada, "Grace")
            await sees_member(grace, "Ada")
            await say(ada, "Hello Grace, can you read me?")
            await sees(grace, "Hello Grace, can you read me?")
            await say(grace, "Loud and clear, Ada.")
            await sees(ada, "Loud and clear, Ada.")
            # both see the same backend, by its fingerprint
            fp_ada = await ada.get_by_test_id("backend-fingerprint").inner_text()
            fp_grace = await grace.get_by_test_id("backend-fingerprint").inner_text()
            assert fp_ada == fp_grace
            assert fp_ada.count("-") == 3

    async def test_a_third_joins_and_gets_the_history(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            ada, grace = await new_person(), await new_person()
            await open_chat(ada, demo.url, nick="Ada", room="design")
            await open_chat(grace, demo.url, nick="Grace", room="design")
            await say(ada, "Morning! Did everyone see the new build?")
            await say(grace, "Yes, the fingerprints match on my phone too.")
            await say(ada, "Shipping it.")
            linus = await new_person()
            await open_chat(linus, demo.url, nick="Linus", room="design")
            for text in ("Morning! Did everyone see the new build?", "Shipping it."):
                await sees(linus, text)
            await sees(linus, "Yes, the fingerprints match on my phone too.")
            await sees_member(ada, "Linus")
            await say(linus, "Hi all, just joined, catching up on the history now.")
            await sees(ada, "Hi all, just joined, catching up on the history now.")
            await expect(ada.get_by_test_id("member")).to_have_count(3)
            ARTIFACTS.mkdir(exist_ok=True)
            await ada.screenshot(path=str(ARTIFACTS / "chat.png"))

    async def test_reloading_keeps_the_identity(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            page = await new_person()
            await open_chat(page, demo.url, nick="Ada", room="lobby")
            peer = await page.get_by_test_id("own-peer-id").inner_text()
            assert peer.startswith("12D3KooW")
            await say(page, "before the reload")
            await sees(page, "before the reload")
            await page.reload()
            await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
            assert await page.get_by_test_id("own-peer-id").inner_text() == peer
            await expect(page.get_by_test_id("app")).to_have_attribute("data-joined", "lobby")
            await sees(page, "before the reload")  # from the history, not doubled


class TestFailures:
    async def test_gateway_restart_pages_resume_without_losing_a_message(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            ada, grace = await new_person(), await new_person()
            await open_chat(ada, demo.url, nick="Ada", room="lobby")
            await open_chat(grace, demo.url, nick="Grace", room="lobby")
            await say(ada, "just before the restart")
            await sees(grace, "just before the restart")

            restart = asyncio.ensure_future(demo.restart_gateway(drain=True, downtime=2.0))
            await expect(ada.get_by_test_id("status")).not_to_have_attribute("data-state", "connected")
            await say(ada, "written while the gateway was down")
            await say(grace, "Grace also wrote while it was down")
            await restart

            for page in (ada, grace):
                await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
                await sees(page, "written while the gateway was down")
                await sees(page, "Grace also wrote while it was down")
                await sees(page, "just before the restart")

    async def test_gateway_crash_loses_nothing_either(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            ada, grace = await new_person(), await new_person()
            await open_chat(ada, demo.url, nick="Ada", room="lobby")
            await open_chat(grace, demo.url, nick="Grace", room="lobby")
            restart = asyncio.ensure_future(demo.restart_gateway(drain=False, downtime=1.5))
            await expect(ada.get_by_test_id("status")).not_to_have_attribute("data-state", "connected")
            await say(ada, "sent into the void")
            await restart
            await sees(grace, "sent into the void")
            await sees(ada, "sent into the void")

    async def test_backend_stops_the_page_says_so_then_recovers(self, new_person: NewPage) -> None:
        async with start_demo(port=0, gateway_limits=FAST) as demo:
            page = await new_person()
            await open_chat(page, demo.url, nick="Ada", room="lobby")
            await demo.stop_backend()
            status = page.get_by_test_id("status")
            await expect(status).not_to_have_attribute("data-state", "connected")
            await expect(page.get_by_test_id("error")).to_be_visible()
            down_text = (await status.inner_text()) + " " + (await page.get_by_test_id("error").inner_text())
            assert "backend" in down_text.lower() or "chat" in down_text.lower(), down_text
            await say(page, "queued while the backend was down")
            await demo.start_backend()
            await expect(status).to_have_attribute("data-state", "connected", timeout=30_000)
            await sees(page, "queued while the backend was down")
            await expect(page.get_by_test_id("error")).to_be_hidden()


class TestTokens:
    async def test_a_page_whose_token_expires_refreshes_it(self, new_person: NewPage) -> None:
        async with start_demo(
            port=0, token_ttl=4, gateway_limits={**FAST, "token_refresh_notice": 2}
        ) as demo:
            page = await new_person()
            tokens: list[str] = []

            def count(request: Request) -> None:
                if "/token" in request.url:
                    tokens.append(request.url)

            page.on("request", count)
            await open_chat(page, demo.url, nick="Ada", room="lobby")
            await say(page, "with the first token")
            await sees(page, "with the first token")
            await asyncio.sleep(9)  # two lifetimes of a token
            await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
            await say(page, "with a refreshed token")
            await sees(page, "with a refreshed token")
            assert len(tokens) >= 2  # the page fetched new tokens before the old ones expired


class TestGoBackend:
    async def test_the_page_talks_to_the_go_glueberry_backend_through_a_blind_gateway(
        self, new_person: NewPage, start_glueberry: StartPeer
    ) -> None:
        go = await start_glueberry("--on-message", "room", "--streams", "chat", "--name", "go-chat")
        backend = ExternalBackend(go.peer_id, tuple(go.addrs))
        seen: list[bytes] = []

        def record(direction: str, session: int, stream: str, payload: bytes) -> bytes:
            seen.append(payload)
            return payload

        async with start_demo(port=0, backend=backend, gateway_limits=FAST) as demo:
            assert demo.gateway is not None
            demo.gateway.tap = record  # every payload the gateway relays, both ways
            ada, grace = await new_person(), await new_person()
            await open_chat(ada, demo.url, nick="Ada", room="gophers")
            await open_chat(grace, demo.url, nick="Grace", room="gophers")
            await expect(ada.get_by_test_id("backend-peer-id")).to_have_text(go.peer_id)
            secret = f"browser to Go, secret {os.urandom(6).hex()}"
            await say(ada, secret)
            await sees(grace, secret)
            reply = f"and back, secret {os.urandom(6).hex()}"
            await say(grace, reply)
            await sees(ada, reply)
            rooms = await go.request("rooms")
            assert any(r["room"] == "gophers" and len(r["members"]) == 2 for r in rooms["rooms"])
            # the relay carried the conversation and could read none of it
            assert seen
            for text in (secret, reply, "gophers", "Ada", "Grace"):
                for form in (text.encode(), base64.b64encode(text.encode())):
                    assert not any(form in payload for payload in seen), text
