"""The postcode finder in a real browser, on a phone (390×844): from the live page's buy sheet a viewer opens
"find postcode", types a road name, presses Enter, picks the address among the results, and the postal code
and the address are filled in, the delivery options follow the postal code and the cursor waits in the detail
field. With the keyboard alone, no sideways scroll, and no serious accessibility violation in the panel."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .conftest import WAIT_MS, Site, no_horizontal_scroll, screenshot, sign_in
from .test_pages_look import accessible

expect.set_options(timeout=WAIT_MS)


def test_a_buyer_finds_the_postcode_in_the_buy_sheet(site: Site, contexts: Any) -> None:
    page = contexts("phone").new_page()
    sign_in(page, site.url, "sora", f"/live/{site.live_id}")
    page.click("#lineup-open")
    page.locator("#lineup-sheet [data-buy]").first.click()
    expect(page.locator("#buy-sheet .buy-item:visible")).to_have_count(1)
    expect(page.locator("#buy-address")).to_be_visible()  # a new browser: no address kept from last time

    opener = page.locator("#buy-postcode-open")
    expect(opener).to_have_text("우편번호 찾기")
    expect(opener).to_have_attribute("aria-expanded", "false")
    opener.click()
    panel = page.locator("#buy-postcode-panel")
    expect(panel).to_be_visible()
    expect(opener).to_have_attribute("aria-expanded", "true")
    field = page.locator("#buy-postcode-q")
    expect(field).to_be_focused()
    status = page.locator("#buy-postcode-status")

    # too little to search by: said at once, nothing asked of the server
    page.keyboard.type("세")
    page.keyboard.press("Enter")
    expect(status).to_contain_text("2자 이상")
    expect(page.locator("#buy-sheet")).to_be_visible()  # Enter searched: it did not send the order form

    field.fill("없는도로명 999")
    page.keyboard.press("Enter")
    expect(status).to_contain_text("찾는 주소가 없어요")

    field.fill("")
    page.keyboard.type("세종대로")
    page.keyboard.press("Enter")
    rows = page.locator("#buy-postcode-results .postcode-result")
    expect(rows).to_have_count(5)
    expect(status).to_contain_text("5개")
    city_hall = rows.filter(has_text="세종대로 110")
    expect(city_hall).to_contain_text("04524")
    expect(city_hall.locator(".postcode-jibun")).to_contain_text("지번 서울특별시 중구 태평로1가 31")
    no_horizontal_scroll(page)
    page.evaluate("() => document.getElementById('buy-postal').scrollIntoView({block: 'center'})")
    screenshot(page, "live-buy-postcode-phone", full=False)
    accessible(page)

    # the results are buttons: reached with Tab, picked with Enter
    field.focus()
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent").count("세종대로 110"):
            break
    expect(city_hall).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#buy-postal")).to_have_value("04524")
    expect(page.locator("#buy-address1")).to_have_value("서울특별시 중구 세종대로 110")
    expect(page.locator("#buy-address2")).to_be_focused()
    expect(panel).to_be_hidden()
    expect(opener).to_have_attribute("aria-expanded", "false")
    # the delivery quote heard the postal code change: the options for 04524 (Jung-gu) are offered
    expect(page.locator("#buy-options .option-choice").first).to_be_visible()
    no_horizontal_scroll(page)

    # Escape closes the panel, not the sheet around it
    opener.click()
    expect(field).to_be_focused()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(opener).to_be_focused()
    expect(page.locator("#buy-sheet")).to_be_visible()
