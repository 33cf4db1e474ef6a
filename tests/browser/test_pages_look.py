"""Each page of the live sale, at phone size (390×844) and desk size (1280×800): it loads with no console
error and no failed request, does not scroll sideways, and its screenshot is saved for the gallery
(`python -m tests.browser.gallery` writes docs/screens.md from them)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import WAIT_MS, Site, no_horizontal_scroll, screenshot, sign_in

expect.set_options(timeout=WAIT_MS)


def settle(page: Page) -> None:
    """Wait until the page's pictures have loaded (the lazy ones too), so that a screenshot is whole."""
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")


def look(page: Page, name: str) -> None:
    settle(page)
    no_horizontal_scroll(page)
    screenshot(page, name)


@pytest.mark.parametrize("size", ["phone", "desk"])
def test_the_viewer_pages(site: Site, contexts: Any, size: str) -> None:
    page = contexts(size).new_page()
    page.goto(site.url + "/")
    look(page, f"home-{size}")
    page.goto(f"{site.url}/live/{site.live_id}")
    expect(page.locator("#conn-status")).to_have_attribute("data-status", "connected")
    look(page, f"live-guest-{size}")
    page.click("#lineup-open")
    expect(page.locator("#lineup-sheet")).to_be_visible()
    page.locator("#lineup-sheet [data-buy]").first.click()
    expect(page.locator("#buy-sheet")).to_be_visible()
    expect(page.locator("#buy-sheet a[href^='/join']")).to_be_visible()  # a guest is asked to join first
    screenshot(page, f"live-buy-guest-{size}", full=False)
    page.goto(f"{site.url}/live/{site.live_id}/buy")
    look(page, f"buy-page-guest-{size}")
    page.goto(f"{site.url}/live/{site.ended_id}")
    expect(page.locator("#player-overlay")).to_contain_text("종료")
    expect(page.locator("#live-page a[href^='/join']")).to_have_count(0)  # nothing to join in an ended show
    expect(page.locator("[data-buy]")).to_have_count(0)
    look(page, f"live-ended-{size}")
    page.goto(f"{site.url}/live/{site.live_id}?lang=en")
    expect(page.locator("#lineup-open")).to_contain_text("Line-up")
    expect(page.locator(".product-card .live-price").first).to_contain_text("₩")
    look(page, f"live-english-{size}")
    page.goto(f"{site.url}/live/{site.live_id}?lang=ko")

    sign_in(page, site.url, "sora", f"/live/{site.live_id}")
    expect(page.locator("#chat-input")).to_be_enabled()
    look(page, f"live-signed-in-{size}")
    page.click("#lineup-open")
    expect(page.locator("#lineup-sheet")).to_be_visible()
    screenshot(page, f"live-lineup-sheet-{size}", full=False)
    page.locator("#lineup-sheet [data-buy]").nth(2).click()
    expect(page.locator("#buy-sheet .buy-item:visible")).to_have_count(1)
    page.fill("#buy-postal", "04524")
    expect(page.locator("#buy-options .option-choice").first).to_be_visible()
    screenshot(page, f"live-buy-sheet-{size}", full=False)
    page.keyboard.press("Escape")
    expect(page.locator("#buy-sheet")).to_be_hidden()
    page.goto(f"{site.url}/live/{site.live_id}/buy?product={site.product_ids[1]}")
    expect(page.locator(f"#buy-qty-{site.product_ids[1]}")).to_have_text("1")
    look(page, f"buy-page-{size}")
    page.goto(site.url + "/orders")
    look(page, f"orders-{size}")


@pytest.mark.parametrize("size", ["phone", "desk"])
def test_the_console(site: Site, contexts: Any, size: str) -> None:
    page = contexts(size).new_page()
    sign_in(page, site.url, "host", f"/host/broadcasts/{site.live_id}")
    expect(page.locator("#conn-status")).to_have_attribute("data-status", "connected")
    figures = page.locator(".console-links a[href$='/figures']")
    go_live = page.locator("#go-live")
    assert figures.bounding_box()["y"] >= go_live.bounding_box()["y"] + go_live.bounding_box()["height"] + 8  # type: ignore[index]
    look(page, f"console-{size}")
    page.goto(f"{site.url}/host/broadcasts/{site.live_id}/figures")
    look(page, f"console-figures-{size}")
