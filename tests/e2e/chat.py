"""What a person does on the chat page, in the page's own terms (its data-testid attributes)."""

from __future__ import annotations

from playwright.async_api import Page, expect


async def open_chat(page: Page, url: str, *, nick: str, room: str) -> None:
    await page.goto(url)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    await page.get_by_test_id("nick-input").fill(nick)
    await page.get_by_test_id("room-input").fill(room)
    await page.get_by_test_id("join-button").click()
    await expect(page.get_by_test_id("app")).to_have_attribute("data-joined", room)


async def say(page: Page, text: str) -> None:
    box = page.get_by_test_id("message-input")
    await box.fill(text)
    await page.get_by_test_id("send-button").click()


async def sees(page: Page, text: str, *, count: int = 1) -> None:
    """``text`` is on the page exactly ``count`` times (no loss, no double)."""
    await expect(page.get_by_test_id("message-text").filter(has_text=text)).to_have_count(count)


async def sees_member(page: Page, nick: str) -> None:
    await expect(page.get_by_test_id("member").filter(has_text=nick)).to_have_count(1)
