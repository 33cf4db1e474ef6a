"""A live show in real browsers, as people go through it: the host spotlights a product, two viewers chat
with each other (on two server processes when Redis is configured), the host deletes one message from the
console without a browser dialog, a viewer claims the dropped coupon and buys from the bottom sheet with
a delivery option of their choice and sees the order with the discount, another enters the giveaway and
sees the winners after the draw."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from .conftest import WAIT_MS, Site, no_horizontal_scroll, screenshot, sign_in

expect.set_options(timeout=WAIT_MS)


def in_room(page: Page) -> None:
    expect(page.locator("#conn-status")).to_have_attribute("data-status", "connected")
    expect(page.locator("#chat-input")).to_be_enabled()


def say(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-send")


def chat_line(page: Page, text: str) -> Any:
    return page.locator("#chat .chat-msg", has_text=text)


def test_a_live_show_from_spotlight_to_purchase_and_draw(site: Site, contexts: Any) -> None:
    live = f"/live/{site.live_id}"
    host = contexts("desk").new_page()
    sign_in(host, site.url, "host", f"/host/broadcasts/{site.live_id}")
    expect(host.locator("#conn-status")).to_have_attribute("data-status", "connected")

    mina = contexts("phone").new_page()
    sign_in(mina, site.url, "mina", live)
    in_room(mina)
    joon = contexts("phone").new_page()
    sign_in(joon, site.other_url, "joon", live)  # the other server process when there are two
    in_room(joon)

    # the host puts the first product in the spotlight: each viewer sees it as a card with a buy button
    first = site.product_ids[0]
    host.click(f".spot-btn[data-product='{first}']")
    for page in (mina, joon):
        expect(page.locator("#spotlight")).to_be_visible()
        expect(page.locator("#spotlight-name")).to_have_text("고기 손만두 20개")
        expect(page.locator("#spotlight-buy")).to_have_attribute("data-buy", str(first))

    # two viewers chat with each other
    say(mina, "만두 맛있어 보여요!")
    expect(chat_line(joon, "만두 맛있어 보여요!")).to_be_visible()
    say(joon, "사려고요 ㅎㅎ 광고 링크 http://spam.example")
    expect(chat_line(mina, "광고 링크")).to_be_visible()

    # the host deletes joon's message in the page: a reason to pick, a few seconds to undo, then it is gone
    host.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a browser dialog: {d.message}")))
    message = host.locator("#chat .chat-msg", has_text="광고 링크")
    message.locator(".chat-more").click()
    message.get_by_role("button", name="삭제").click()
    message.locator(".chat-reasons [data-reason='스팸·광고']").click()
    expect(message.locator(".chat-undo")).to_be_visible()
    screenshot(host, "console-moderation-undo-desk")
    expect(chat_line(mina, "광고 링크")).to_have_count(0)
    expect(chat_line(joon, "광고 링크")).to_have_count(0)
    expect(chat_line(mina, "만두 맛있어 보여요!")).to_be_visible()

    # an action undone is not done: muting mina, then undo
    kept = host.locator("#chat .chat-msg", has_text="만두 맛있어 보여요!")
    kept.locator(".chat-more").click()
    kept.get_by_role("button", name="10분 채팅 금지").click()
    kept.locator(".chat-undo").click()
    expect(host.locator("#chat-feedback")).to_contain_text("되돌렸어요")
    say(mina, "아직 말할 수 있어요")
    expect(chat_line(joon, "아직 말할 수 있어요")).to_be_visible()

    # mina claims the coupon the host dropped
    coupon = mina.locator(f".coupon-card[data-drop='{site.drop_id}']")
    coupon.locator(".coupon-claim").click()
    expect(coupon).to_have_attribute("data-state", "claimed")

    # and buys the spotlighted dumplings from the bottom sheet, the video still above it
    mina.click("#spotlight-buy")
    sheet = mina.locator("#buy-sheet")
    expect(sheet).to_be_visible()
    expect(mina.locator(f".buy-item[data-product='{first}']")).to_be_visible()
    expect(mina.locator(".buy-item:visible")).to_have_count(1)
    # the video stays in sight above the sheet
    assert mina.evaluate("""() => {
        const video = document.querySelector('.player').getBoundingClientRect();
        const panel = document.querySelector('#buy-sheet .sheet-panel').getBoundingClientRect();
        return video.top >= 0 && video.height > 150 && video.bottom <= panel.top + 1;
    }""")
    mina.locator(f"[data-step='1'][data-for='{first}']").click()
    expect(mina.locator(f"#buy-qty-{first}")).to_have_text("2")
    expect(mina.locator("#buy-coupons-field")).to_be_visible()
    expect(mina.locator("#buy-coupon-row")).to_be_visible()  # the best coupon, estimated
    mina.fill("#buy-phone", "010-2345-6789")
    mina.fill("#buy-postal", "04524")
    mina.fill("#buy-address1", "서울 중구 세종대로 110")
    options = mina.locator("#buy-options input[name=delivery_option]")
    expect(options.last).to_have_value("next_day")
    chosen = mina.locator("#buy-options .option-choice", has=mina.locator("input[value=next_day]"))
    chosen.click()
    expect(mina.locator("#buy-fee")).to_have_text(re.compile("무료|0원"))
    # 9,900원 × 2 = 19,800원, less the 3,000원 coupon, free next-day delivery
    expect(mina.locator("#buy-total")).to_have_text("16,800원")
    screenshot(mina, "live-buy-sheet-coupon-phone", full=False)
    mina.click("#buy-confirm")
    expect(mina.locator("#buy-done")).to_be_visible()
    expect(mina.locator("#buy-done-text")).to_contain_text("16,800원")
    expect(mina.locator("#buy-done-coupon")).to_contain_text("3,000원")
    no_horizontal_scroll(mina)

    # the order, with the discount and the delivery chosen
    mina.goto(f"{site.url}/orders")
    order = mina.locator(".order-card").filter(has_text="고기 손만두 20개").first
    expect(order.locator(".order-totals")).to_contain_text("쿠폰 −3,000원")
    expect(order.locator(".order-totals")).to_contain_text("16,800원")
    expect(order).to_contain_text("익일 배송")
    screenshot(mina, "orders-after-purchase-phone")

    # the next visit offers the address used last time
    mina.goto(site.url + live)
    in_room(mina)
    mina.locator(f".product-card [data-buy='{first}']").click()
    expect(mina.locator("#buy-saved")).to_be_visible()
    expect(mina.locator("#buy-saved-text")).to_contain_text("04524")
    mina.click("#buy-sheet .sheet-close")
    expect(mina.locator("#buy-sheet")).to_be_hidden()

    # sora enters the giveaway; the host closes it and draws; sora sees that she won
    sora = contexts("phone").new_page()
    sign_in(sora, site.url, "sora", live)
    in_room(sora)
    sora.locator("#giveaway .giveaway-enter").click()
    expect(sora.locator("#giveaway .giveaway-number")).to_be_visible()
    host.click("#gw-close")
    expect(host.locator("#gw-draw")).to_be_enabled()
    host.click("#gw-draw")
    expect(host.locator("#gw-draw")).to_have_class(re.compile("is-confirming"))
    host.click("#gw-draw")  # the second tap confirms: no browser dialog
    winners = sora.locator("#giveaway .giveaway-winners")
    expect(winners).to_be_visible()
    expect(winners.locator(".giveaway-winner.is-me")).to_have_count(1)
    expect(sora.locator("#won-notice")).to_be_visible()
    screenshot(sora, "live-giveaway-won-phone")
    for page in (host, mina, joon, sora):
        no_horizontal_scroll(page)

    # the broadcast's report (the figures so far, as after the show) counts mina's purchase, her coupon and the
    # giveaway's entry and winner
    host.goto(f"{site.url}/host/broadcasts/{site.live_id}/report")
    expect(host.locator(f"#report-products tr[data-product='{first}']")).to_contain_text("16,800원")
    expect(host.locator(".report-figure[data-metric='coupons_redeemed'] dd").first).not_to_have_text("0")
    expect(host.locator(".report-figure[data-metric='giveaway_winners'] dd").first).not_to_have_text("0")
    expect(host.locator(".report-chart[data-series='revenue'] rect.report-bar").first).to_be_attached()
    no_horizontal_scroll(host)


def test_the_room_reconnects_by_itself(site: Site, contexts: Any) -> None:
    ctx = contexts("phone")
    page = ctx.new_page()
    sign_in(page, site.url, "joon", f"/live/{site.live_id}")
    in_room(page)
    ctx.set_offline(True)
    page.evaluate("() => window.dispatchEvent(new Event('offline'))")
    expect(page.locator("#conn-status")).to_have_attribute("data-status", "reconnecting")
    expect(page.locator("#conn-status")).to_be_visible()
    ctx.set_offline(False)
    expect(page.locator("#conn-status")).to_have_attribute("data-status", "connected")
    expect(page.locator("#chat-banner")).to_be_hidden()
    in_room(page)
