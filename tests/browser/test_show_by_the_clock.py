"""A show from its scheduling to its report, with the servers' clock moved forward instead of waited for:
staff create a special broadcast and its line-up in the staff pages; a viewer waits on its page before the
start; when the clock reaches the lobby the server opens it by itself and the host goes live from the console;
two viewers chat and the host removes a message in the page; one buys the spotlighted product from the bottom
sheet, paying on delivery; the stall-keeper marks the order packed on a phone; when the clock passes the hour
the server ends the show by itself, every open page says so, and the report counts the purchase. On SQLite
(one process) and on PostgreSQL + Redis (two processes: the host and one viewer on one, staff, the other
viewer and the stall-keeper on the other)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import BACKENDS

from .conftest import WAIT_MS, Clock, Site, no_horizontal_scroll, running_site, screenshot, sign_in

expect.set_options(timeout=WAIT_MS)
SEOUL = ZoneInfo("Asia/Seoul")
# A move the server makes by itself is seen after its scheduler's next look (it notices a clock set forward
# within five seconds) and its tick (a few seconds on a loaded machine): waited for, never timed.
BY_ITSELF_MS = 90_000


@pytest.fixture(scope="module", params=BACKENDS)
def clocked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            chromium_path: str) -> Iterator[tuple[Site, Clock]]:
    if not Clock.LIBRARY.exists():
        pytest.skip(f"{Clock.LIBRARY} is missing (scripts/test installs Debian's faketime)")
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"clocked-{backend}")
    clock = Clock(workdir / "clock")
    with running_site(backend, workdir, clock, log_level="INFO") as site:  # its moves in the log
        yield site, clock


def state_of(page: Page) -> Any:
    return expect(page.locator("#live-page"))


def test_a_show_scheduled_in_the_staff_pages_opens_sells_and_ends_by_the_clock(
        clocked: tuple[Site, Clock], contexts: Any, tmp_path: Path) -> None:
    site, clock = clocked
    start = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=20)
    local = start.astimezone(SEOUL)
    first = site.product_ids[0]  # 고기 손만두 20개, from the stall the "merchant" account keeps

    # staff schedule a special broadcast, hosted by 두리, on the second channel, from a phone
    staff = contexts("phone").new_page()
    sign_in(staff, site.other_url, "staff", "/staff/broadcasts/new")
    staff.select_option("#channel", "second")
    staff.fill("#title_ko", "번개 라이브: 손만두 특가")
    staff.fill("#title_en", "Flash live: dumpling deals")
    staff.fill("#starts_local", local.strftime("%Y-%m-%dT%H:%M"))
    staff.fill("#duration_minutes", "60")
    staff.locator("label.choice", has_text="쇼호스트 두리").locator("input[name=host_ids]").check()
    no_horizontal_scroll(staff)
    staff.get_by_role("button", name="특별 방송 만들기").click()
    staff.wait_for_url(re.compile(r"/staff/broadcasts/\d+\?saved=created"))
    broadcast_id = int(re.findall(r"/staff/broadcasts/(\d+)", staff.url)[0])
    expect(staff.locator(".notice-success")).to_be_visible()

    # and its line-up: the dumplings at a live price, 20 set aside
    staff.check(f"#include_{first}")
    staff.fill(f"input[name=price_{first}]", "8900")
    staff.fill(f"input[name=reserved_{first}]", "20")
    staff.fill(f"input[name=position_{first}]", "1")
    staff.get_by_role("button", name="편성 상품 저장").click()
    staff.wait_for_url(re.compile(r"saved=lineup"))
    expect(staff.locator("#lineup-title .count")).to_have_text("1")
    screenshot(staff, "staff-special-broadcast-lineup-phone")

    # a viewer waits on the show's page: not open yet, a countdown to the start
    live = f"/live/{broadcast_id}"
    mina = contexts("phone").new_page()
    sign_in(mina, site.url, "mina", live)
    state_of(mina).to_have_attribute("data-state", "scheduled")
    expect(mina.locator("#live-page")).to_contain_text("번개 라이브: 손만두 특가")
    screenshot(mina, "live-before-the-start-phone")

    # the clock reaches five minutes before the start: the server opens the lobby by itself
    clock.move_to(start - timedelta(minutes=5))
    state_of(mina).to_have_attribute("data-state", "lobby", timeout=BY_ITSELF_MS)

    # the host goes live from the console (a desk), spotlights the dumplings
    host = contexts("desk").new_page()
    sign_in(host, site.url, "duri", f"/host/broadcasts/{broadcast_id}")
    expect(host.locator("#conn-status")).to_have_attribute("data-status", "connected")
    expect(host.locator("#go-live")).to_be_enabled()
    host.click("#go-live")
    state_of(mina).to_have_attribute("data-state", "live")
    expect(mina.locator("#chat-input")).to_be_enabled()
    host.click(f".spot-btn[data-product='{first}']")
    expect(mina.locator("#spotlight-buy")).to_have_attribute("data-buy", str(first))

    # a second viewer, on the other process when there are two, chats with mina; the host removes a message
    # from the console, in the page, with a reason
    joon = contexts("phone").new_page()
    sign_in(joon, site.other_url, "joon", live)
    expect(joon.locator("#chat-input")).to_be_enabled()
    expect(joon.locator("#spotlight-buy")).to_have_attribute("data-buy", str(first))
    mina.fill("#chat-input", "만두 두 팩 살게요!")
    mina.click("#chat-send")
    expect(joon.locator("#chat .chat-msg", has_text="만두 두 팩 살게요!")).to_be_visible()
    joon.fill("#chat-input", "싸게 팝니다 http://spam.example")
    joon.click("#chat-send")
    expect(mina.locator("#chat .chat-msg", has_text="싸게 팝니다")).to_be_visible()
    host.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a browser dialog: {d.message}")))
    message = host.locator("#chat .chat-msg", has_text="싸게 팝니다")
    message.locator(".chat-more").click()
    message.get_by_role("button", name="삭제").click()
    message.locator(".chat-reasons [data-reason='스팸·광고']").click()
    for page in (mina, joon):
        expect(page.locator("#chat .chat-msg", has_text="싸게 팝니다")).to_have_count(0)
    expect(joon.locator("#chat .chat-msg", has_text="만두 두 팩 살게요!")).to_be_visible()

    # mina buys two from the bottom sheet, same-day or next-day as she picks, paying on delivery
    mina.click("#spotlight-buy")
    expect(mina.locator("#buy-sheet")).to_be_visible()
    mina.locator(f"[data-step='1'][data-for='{first}']").click()
    expect(mina.locator(f"#buy-qty-{first}")).to_have_text("2")
    mina.fill("#buy-phone", "010-2345-6789")
    mina.fill("#buy-postal", "04524")
    mina.fill("#buy-address1", "서울 중구 세종대로 110")
    mina.locator("#buy-options .option-choice", has=mina.locator("input[value=next_day]")).click()
    mina.locator("#buy-methods .choice", has=mina.locator("input[value=cod]")).click()
    expect(mina.locator("#buy-total")).to_have_text("17,800원")  # 8,900원 × 2, free next-day delivery
    mina.click("#buy-confirm")
    expect(mina.locator("#buy-done")).to_be_visible()
    expect(mina.locator("#buy-done-text")).to_contain_text("17,800원")
    mina.click("#buy-sheet .sheet-close")

    # the stall-keeper, on a phone, sees the order as a card and marks it packed with one tap
    keeper = contexts("phone").new_page()
    sign_in(keeper, site.other_url, "merchant", "/merchant/orders")
    card = keeper.locator(".pack-card", has_text="고기 손만두 20개").filter(has_text="010-2345-6789")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("× 2")
    no_horizontal_scroll(keeper)
    card.get_by_role("button", name="포장 완료 처리").click()
    card = keeper.locator(".pack-card", has_text="010-2345-6789")
    expect(card).to_have_attribute("data-status", "packed")
    screenshot(keeper, "merchant-orders-packed-phone")

    # the hour is nearly up: the server warns the room five minutes before
    clock.move_to(start + timedelta(minutes=56))
    expect(mina.locator("#ending-message")).to_be_visible(timeout=BY_ITSELF_MS)
    expect(host.locator("#console-clock")).to_have_attribute("data-urgent", "")  # on the server's time

    # the hour and its three minutes' grace pass: the server ends the show by itself; the open pages say so
    clock.move_to(start + timedelta(minutes=63, seconds=5))
    state_of(mina).to_have_attribute("data-state", "ended", timeout=BY_ITSELF_MS)
    expect(mina.locator("#ended-line")).to_be_visible()
    expect(mina.locator("#ending-message")).to_be_hidden()  # "ends in 4 minutes" is gone with the show
    expect(mina.locator("#spotlight")).to_be_hidden()
    expect(mina.locator("#chat-input")).to_be_disabled()
    expect(host.locator("#report-link")).to_be_visible()
    expect(host.locator("#go-live")).to_be_disabled()
    expect(host.locator("#end-broadcast")).to_be_disabled()
    screenshot(mina, "live-ended-by-the-clock-phone")

    # the report, from the console's link: the order, its revenue and its units
    host.click("#report-link")
    host.wait_for_url(re.compile(rf"/host/broadcasts/{broadcast_id}/report"))
    expect(host.locator(".report-figure[data-metric='orders'] dd").first).to_have_text("1")
    expect(host.locator(f"#report-products tr[data-product='{first}']")).to_contain_text("17,800원")
    expect(host.locator("#report")).not_to_contain_text("방송이 아직 끝나지 않았습니다")
    screenshot(host, "report-after-the-hour-desk")

    # staff see it ended in the schedule's page of the broadcast, with the report linked
    staff.goto(f"{site.other_url}/staff/broadcasts/{broadcast_id}")
    expect(staff.get_by_role("link", name="방송 리포트").first).to_be_visible()
    state_of(joon).to_have_attribute("data-state", "ended")
    for page in (staff, mina, joon, host, keeper):
        no_horizontal_scroll(page)
    assert datetime.now(UTC) < start, "the show ran on the moved clock, not on the real one"
