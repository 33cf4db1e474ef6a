"""Each page of the live sale, at phone size (390×844) and desk size (1280×800): it loads with no console
error and no failed request, does not scroll sideways, axe-core finds no serious or critical accessibility
violation in it (nor any about its landmarks: two of one name, content outside them), and its screenshot is
saved for the gallery (`python -m tests.browser.gallery` writes docs/screens.md from them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from .conftest import WAIT_MS, Site, no_horizontal_scroll, screenshot, sign_in

expect.set_options(timeout=WAIT_MS)

AXE = Axe()  # axe-core as the package ships it: read from disk, injected into each page
SEVERE = ("serious", "critical")
# axe calls these "moderate"; they are kept out all the same: a page's landmarks are how a screen reader
# moves through it, and two of one name (a section and the table box in it, say) make that a guess
LANDMARK_RULES = re.compile(r"^(landmark-.+|region)$")


def accessible(page: Page) -> None:
    """axe-core finds no serious or critical violation in the page as it is now, and none about its
    landmarks. Motion is reduced while it looks (the stylesheet then stops its animations), so that a colour
    is judged at rest, not mid-fade."""
    page.emulate_media(reduced_motion="reduce")
    try:
        results = AXE.run(page).response
    finally:
        page.emulate_media(reduced_motion="no-preference")
    severe = [v for v in results["violations"] if v.get("impact") in SEVERE or LANDMARK_RULES.match(v["id"])]
    lines = []
    for v in severe:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
        for node in v["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {', '.join(map(str, node['target']))}: {summary}")
    assert not severe, f"{page.url}: accessibility violations\n" + "\n".join(lines)


FOCUS_SEEN = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const s = getComputedStyle(el);
    const ring = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2
        && !["transparent", "rgba(0, 0, 0, 0)"].includes(s.outlineColor);
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + (el.classList.length ? "." + [...el.classList].join(".") : "")
        + " “" + (el.getAttribute("aria-label") || el.textContent || "").trim().slice(0, 30) + "”";
    const keys = window.focusWalk || (window.focusWalk = new WeakMap());
    if (!keys.has(el)) keys.set(el, keys.n = (keys.n || 0) + 1);
    return {key: keys.get(el), name, ring, visible: el.matches(":focus-visible")};
}"""


def focus_visible(page: Page, stops: int = 80) -> None:
    """Walking the page with Tab, every control that takes the focus shows a clear ring (an outline at least
    2px wide) while it has it."""
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    seen: set[int] = set()
    unseen = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUS_SEEN)
        if stop is None:
            continue
        if stop["key"] in seen:
            break  # round the page once
        seen.add(stop["key"])
        if not (stop["ring"] and stop["visible"]):
            unseen.append(stop["name"])
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); delete window.focusWalk; }")
    assert seen, f"{page.url}: Tab reaches no control"
    assert not unseen, f"{page.url}: the focus is not visible on {unseen}"


def settle(page: Page) -> None:
    """Wait until the page's pictures have loaded (the lazy ones too), so that a screenshot is whole."""
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")


def look(page: Page, name: str) -> None:
    settle(page)
    no_horizontal_scroll(page)
    accessible(page)
    screenshot(page, name)
    focus_visible(page)


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
    accessible(page)
    screenshot(page, f"live-buy-guest-{size}", full=False)
    page.goto(f"{site.url}/live/{site.live_id}/buy")
    look(page, f"buy-page-guest-{size}")
    page.goto(f"{site.url}/live/{site.ended_id}")
    expect(page.locator("#player-overlay")).to_contain_text("종료")
    expect(page.locator("#live-page a[href^='/join']")).to_have_count(0)  # nothing to join in an ended show
    expect(page.locator("[data-buy]")).to_have_count(0)
    look(page, f"live-ended-{size}")
    page.goto(f"{site.url}/live/{site.replay_id}")
    expect(page.locator("#replay-video")).to_be_visible()
    expect(page.locator("#replay-note")).to_be_visible()
    expect(page.locator(".product-buy").first).to_be_enabled()  # on sale at the regular price
    expect(page.locator("#live-page a[href^='/join']")).to_have_count(0)
    page.evaluate("""() => { const v = document.getElementById('replay-video');
        Object.defineProperty(v, 'currentTime', {get: () => 185, configurable: true});
        v.dispatchEvent(new Event('timeupdate')); }""")  # at 3:05 of the recording: minutes 0 to 3 said
    expect(page.locator("#replay-chat .chat-msg")).to_have_count(4)
    look(page, f"live-replay-{size}")
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
    accessible(page)
    screenshot(page, f"live-lineup-sheet-{size}", full=False)
    page.locator("#lineup-sheet [data-buy]").nth(2).click()
    expect(page.locator("#buy-sheet .buy-item:visible")).to_have_count(1)
    page.fill("#buy-postal", "04524")
    expect(page.locator("#buy-options .option-choice").first).to_be_visible()
    accessible(page)
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
    expect(page.locator("#console-clock")).to_be_visible()  # the hour's end, in a corner of the window
    expect(page.locator("#console-keys")).to_be_visible()
    expect(page.locator("#figures-chart rect, #figures-chart text").first).to_be_attached()
    look(page, f"console-{size}")
    if size == "desk":  # the keys move the spotlight along the running order, and 0 clears it
        spots = page.locator(".spot-btn")
        expect(spots.first).to_be_enabled()
        page.evaluate("document.activeElement && document.activeElement.blur()")  # the look's Tab walk ends in a field
        if page.locator(".spot-btn[aria-pressed='true']").count():  # a spotlight left by an earlier test
            page.keyboard.press("0")
            expect(page.locator(".spot-btn[aria-pressed='true']")).to_have_count(0)
            expect(page.locator(".spot-btn:disabled")).to_have_count(0)
        page.keyboard.press("j")
        expect(spots.nth(0)).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".spot-btn:disabled")).to_have_count(0)  # the move is answered: keys act again
        page.keyboard.press("ArrowRight")
        expect(spots.nth(1)).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".spot-btn:disabled")).to_have_count(0)  # the move is answered: keys act again
        page.keyboard.press("k")
        expect(spots.nth(0)).to_have_attribute("aria-pressed", "true")
        expect(page.locator(".spot-btn:disabled")).to_have_count(0)  # the move is answered: keys act again
        page.focus("#notice-input")
        page.keyboard.press("j")  # typing in a field is typing, not a shortcut
        expect(spots.nth(0)).to_have_attribute("aria-pressed", "true")
        page.locator("body").click(position={"x": 5, "y": 300})
        page.keyboard.press("0")
        expect(spots.nth(0)).to_have_attribute("aria-pressed", "false")
    page.goto(f"{site.url}/host/broadcasts/{site.live_id}/figures")
    look(page, f"console-figures-{size}")
    page.goto(f"{site.url}/host/broadcasts/{site.ended_id}/report")
    expect(page.locator(".report-figure").first).to_be_visible()
    look(page, f"report-{size}")


def _no_menu_entry_cut_off(page: Page) -> None:
    """Every entry of the menu is on the screen, not off its edge."""
    cut = page.evaluate("""() => [...document.querySelectorAll('.nav-list > li, .staff-subnav-list > li')]
        .filter(li => { const r = li.getBoundingClientRect(); return r.left < -0.5 || r.right > innerWidth + 0.5; })
        .map(li => li.textContent.trim())""")
    assert cut == [], f"{page.url}: menu entries off the screen: {cut}"


def _no_overlap(page: Page, selector: str) -> None:
    """No two of the elements overlap (buttons side by side or stacked, never on top of each other)."""
    overlaps = page.evaluate("""(sel) => {
        const boxes = [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect());
        let n = 0;
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], b = boxes[j];
          if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) n++;
        }
        return n; }""", selector)
    assert overlaps == 0, f"{page.url}: {overlaps} overlapping {selector}"


def _cards_on_a_phone(page: Page, table: str, size: str) -> None:
    """A table of the design system's cards: on a phone each row is a card that fits the screen, each cell
    led by its column's name and the row's actions at least 44px tall; on a desk a table."""
    seen = page.evaluate("""(sel) => {
        const table = document.querySelector(sel), box = table.closest('.table-scroll');
        const cells = [...table.querySelectorAll('tbody td[data-label]')];
        const says = td => getComputedStyle(td, '::before').content === JSON.stringify(td.dataset.label);
        const actions = [...table.querySelectorAll('tbody .cell-actions a, tbody .cell-actions .btn')]
            .map(e => e.getBoundingClientRect()).filter(r => r.width > 0);
        return {display: getComputedStyle(table).display, sideways: box.scrollWidth - box.clientWidth,
                labelled: cells.filter(says).length,
                cells: cells.length, actions: actions.length, short: actions.filter(r => r.height < 44).length};
    }""", table)
    assert seen["cells"] and seen["actions"], f"{page.url}: {table} has no labelled cells or no actions: {seen}"
    if size == "phone":
        assert seen["display"] == "block" and seen["sideways"] <= 0, f"{page.url}: {table} is no cards: {seen}"
        assert seen["labelled"] == seen["cells"] and seen["short"] == 0, f"{page.url}: {table}'s cards: {seen}"
    else:
        assert seen["display"] == "table" and seen["labelled"] == 0, f"{page.url}: {table} is no table: {seen}"


@pytest.mark.parametrize("size", ["phone", "desk"])
def test_the_stall_and_staff_pages(site: Site, contexts: Any, size: str) -> None:
    import io
    import uuid

    from PIL import Image

    buyer = contexts(size).new_page()
    sign_in(buyer, site.url, "joon", "/orders")
    token = buyer.request.get(f"{site.url}/api/v1/auth/session").json()["csrf_token"]
    resp = buyer.request.post(f"{site.url}/api/v1/broadcasts/{site.live_id}/purchases", data={
        "lines": [{"product_id": pid, "quantity": 1} for pid in site.product_ids[:3]], "name": "박준호",
        "phone": "010-2222-3333", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
        "address2": "3층", "note": "경비실에 맡겨 주세요", "payment_method": "cod"},
        headers={"X-CSRF-Token": token, "Idempotency-Key": str(uuid.uuid4())})
    assert resp.status == 201, resp.text()
    order_id = resp.json()["id"]

    page = contexts(size).new_page()
    sign_in(page, site.url, "merchant", "/merchant/orders")
    card = page.locator(f"#order-{order_id}")
    expect(card).to_be_visible()
    expect(card).to_contain_text("박준호")
    expect(page.locator("h1")).to_have_text(page.locator(".nav-link[aria-current=page]").inner_text())
    _no_menu_entry_cut_off(page)
    look(page, f"merchant-orders-{size}")
    card.locator("button[type=submit]").first.click()  # one tap: packed
    expect(page.locator(f"#order-{order_id}")).to_have_attribute("data-status", "packed")
    expect(page.locator(f"#order-{order_id} button[type=submit]")).to_have_count(1)  # next: handed over
    page.click("a[href^='/merchant/packing']")
    expect(page.locator("#packing-list")).to_be_visible()
    look(page, f"merchant-packing-{size}")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator(".staff-head-actions")).to_be_hidden()
    page.emulate_media(media="screen")

    staff = contexts(size).new_page()
    sign_in(staff, site.url, "staff", "/staff/schedule")
    expect(staff.locator("code.rrule")).to_have_count(0)
    expect(staff.locator(".cell-rule").first).to_contain_text("매주")
    _no_menu_entry_cut_off(staff)
    look(staff, f"staff-schedule-{size}")
    staff.goto(f"{site.url}/staff/orders")
    expect(staff.locator("#staff-orders")).to_be_visible()
    _no_overlap(staff, "#staff-orders .row-actions .btn")
    _cards_on_a_phone(staff, "#staff-orders", size)
    look(staff, f"staff-orders-{size}")
    staff.goto(f"{site.url}/staff/chat")
    expect(staff.locator("form .btn-primary")).to_be_visible()
    accessible(staff)
    staff.goto(f"{site.url}/staff")
    _cards_on_a_phone(staff, "#main table", size)
    look(staff, f"staff-broadcasts-{size}")
    staff.goto(f"{site.url}/staff/catalogue")
    expect(staff.locator("#catalogue-products .cat-item").first).to_be_visible()
    look(staff, f"staff-catalogue-{size}")
    # a picture uploaded from the product's page comes back shrunk, in the catalogue
    staff.goto(f"{site.url}/staff/catalogue/products/{site.product_ids[0]}")
    png = io.BytesIO()
    Image.new("RGB", (1600, 1200), (240, 120, 60)).save(png, "PNG")
    staff.set_input_files("#picture", files=[{"name": "photo.png", "mimeType": "image/png",
                                              "buffer": png.getvalue()}])
    look(staff, f"staff-product-{size}")
    staff.locator("form.form-card button[type=submit]").first.click()
    item = staff.locator(f"#product-{site.product_ids[0]} img.cat-thumb")
    expect(item).to_have_attribute("src", re.compile(r"^/media/products/[0-9a-f]{32}\.webp$"))
    item.scroll_into_view_if_needed()  # a lazy picture loads once it is in sight
    staff.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=item.element_handle())
    assert item.evaluate("(img) => img.naturalWidth") == 1200
    staff.goto(f"{site.url}/schedule")
    expect(staff.locator("a.button, button.button")).to_have_count(0)
    look(staff, f"schedule-staff-{size}")


@pytest.mark.parametrize("size", ["phone", "desk"])
def test_the_other_pages_are_accessible(site: Site, contexts: Any, size: str) -> None:
    """The pages the tests above do not look at: no serious or critical axe-core violation, a focus ring on
    each control, no sideways scroll."""
    guest = contexts(size).new_page()
    for path in ("/join", "/login", "/schedule"):
        guest.goto(site.url + path)
        expect(guest.locator("h1").first).to_be_visible()
        no_horizontal_scroll(guest)
        accessible(guest)
        focus_visible(guest)
    staff = contexts(size).new_page()
    sign_in(staff, site.url, "staff", "/staff")
    staff.goto(site.url + "/staff/schedule")
    series = staff.locator("a[href^='/staff/series/']:not([href$='/new'])").first.get_attribute("href")
    assert series, "the demo market has a weekly series"
    for path in ("/staff/broadcasts/new", "/staff/series/new", "/staff/catalogue/products/new",
                 "/staff/catalogue/stalls/new", "/staff/catalogue/accounts/new", f"/staff/broadcasts/{site.live_id}",
                 f"/staff/broadcasts/{site.ended_id}", f"/staff/broadcasts/{site.ended_id}/report", series,
                 "/staff/coupons", "/staff/giveaways", "/host"):
        staff.goto(site.url + path)
        expect(staff.locator("h1").first).to_be_visible()
        no_horizontal_scroll(staff)
        accessible(staff)
        focus_visible(staff)
