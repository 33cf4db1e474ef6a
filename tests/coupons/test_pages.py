"""The coupon and giveaway pages: each renders for those allowed and refuses the others, escapes what people
typed, speaks English on request, and the proof page carries the proof for the browser to check; the live
page, the buy sheet and the console carry their coupon and giveaway parts."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claims, draw, giveaways
from coupons.models import CouponDrop, CouponTemplate, EntryMode, Giveaway
from livecommerce.db import utcnow
from livecommerce.models import User
from tests.support import World, sign_in

SCRIPT = "<script>alert(1)</script>"


def no_inline_script(html: str) -> bool:
    return re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))[^>]*>", html) is None


def json_block(html: str, block_id: str) -> Any:
    found = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>', html, re.S)
    assert found, f"no #{block_id} block"
    return json.loads(found.group(1))


async def _giveaway(units: async_sessionmaker[AsyncSession], world: World, prize: str = "참기름 한 병",
                    winners: int = 2) -> Giveaway:
    async with units.begin() as db:
        host = await db.get(User, world.host.id)
        assert host is not None
        return await giveaways.start(db, world.live.id, host, giveaways.GiveawayInput(
            prize, "A bottle of sesame oil", winners, EntryMode.BUTTON, "", 3), utcnow())


async def _drawn(units: async_sessionmaker[AsyncSession], world: World, fans: list[User],
                 prize: str = "참기름 한 병") -> tuple[Giveaway, list[int]]:
    g = await _giveaway(units, world, prize)
    for fan in fans:
        async with units.begin() as db:
            user = await db.get(User, fan.id)
            assert user is not None
            await giveaways.enter(db, g.id, user, utcnow())
    async with units.begin() as db:
        g, won = await giveaways.draw_winners(db, g.id, utcnow())
        return g, [w.user_id for w in won]


async def test_the_proof_page_is_public_and_embeds_the_proof(
        client: TestClient, units: async_sessionmaker[AsyncSession], world: World, crowd: list[User]) -> None:
    g, _ = await _drawn(units, world, crowd[:5])
    resp = await client.get(f"/giveaways/{g.id}/verify")
    assert resp.status == 200
    html = await resp.text()
    proof = json_block(html, "proof-data")
    assert proof["id"] == g.id and proof["state"] == "drawn" and proof["seed"]
    numbers = [e["number"] for e in proof["entry_list"]]
    assert sorted(numbers) == [1, 2, 3, 4, 5]
    assert proof["digest"] == draw.entries_digest(numbers)
    assert draw.verify(proof["seed"], proof["commitment"], numbers, proof["digest"],
                       [w["number"] for w in proof["winners"]], proof["winners_count"]).ok
    assert proof["commitment"] in html and proof["seed"] in html and proof["digest"] in html
    assert "참기름 한 병" in html and "브라우저에서 검증" in html and "내 응모 번호 확인" in html
    assert f"livecommerce giveaway verify --giveaway {g.id} --url" in html
    assert "/static/js/draw.js" in html and "/static/js/verify.js" in html and no_inline_script(html)
    assert 'id="verify-i18n"' in html
    assert "팬" in html and "팬0" not in html  # masked names only
    assert (await client.get("/giveaways/999999/verify")).status == 404
    en = await (await client.get(f"/giveaways/{g.id}/verify?lang=en")).text()
    assert "Verify in my browser" in en and "A bottle of sesame oil" in en and "Check my entry number" in en


async def test_the_proof_page_before_the_draw_keeps_the_seed_secret(
        client: TestClient, units: async_sessionmaker[AsyncSession], world: World) -> None:
    g = await _giveaway(units, world)
    html = await (await client.get(f"/giveaways/{g.id}/verify")).text()
    proof = json_block(html, "proof-data")
    assert proof["seed"] is None and proof["entry_list"] == [] and proof["state"] == "open"
    assert g.seed not in html
    assert re.search(r'id="verify-run"[^>]*disabled', html)


async def test_a_prize_is_escaped_everywhere(client: TestClient, units: async_sessionmaker[AsyncSession],
                                             world: World, crowd: list[User]) -> None:
    g, winners = await _drawn(units, world, crowd[:3], prize=SCRIPT)
    html = await (await client.get(f"/giveaways/{g.id}/verify")).text()
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert json_block(html, "proof-data")["prize_ko"] == SCRIPT  # the JSON block escapes "<" itself
    winner = next(u for u in crowd if u.id == winners[0])
    await sign_in(client, winner.username)
    html = await (await client.get(f"/giveaways/{g.id}/won")).text()
    assert SCRIPT not in html and "&lt;script&gt;" in html
    staff = await (await _staff(client)).get("/staff/giveaways")
    html = await staff.text()
    assert SCRIPT not in html and "&lt;script&gt;" in html


async def _staff(client: TestClient) -> TestClient:
    client.session.cookie_jar.clear()
    await sign_in(client, "staff")
    return client


async def test_the_winners_page_is_for_the_winner(client: TestClient, units: async_sessionmaker[AsyncSession],
                                                  world: World, crowd: list[User]) -> None:
    g, winners = await _drawn(units, world, crowd[:4])
    assert (await client.get(f"/giveaways/{g.id}/won", allow_redirects=False)).status in (401, 303)
    loser = next(u for u in crowd[:4] if u.id not in winners)
    await sign_in(client, loser.username)
    assert (await client.get(f"/giveaways/{g.id}/won")).status == 403
    client.session.cookie_jar.clear()
    winner = next(u for u in crowd if u.id == winners[0])
    token = await sign_in(client, winner.username)
    resp = await client.get(f"/giveaways/{g.id}/won")
    assert resp.status == 200
    html = await resp.text()
    assert 'id="won-form"' in html and f'data-giveaway="{g.id}"' in html and f'data-csrf="{token}"' in html
    for name in ("name", "phone", "postal_code", "address1", "address2"):
        assert f'name="{name}"' in html
    assert "축하" in html and "/static/js/won.js" in html and no_inline_script(html)
    # the postcode finder beside the postal code fills it and the address, then waits in the detail field
    assert 'id="won-postcode-open"' in html and "우편번호 찾기" in html and "/static/js/postcode.js" in html
    assert 'data-postal="won-postal" data-address="won-address1" data-detail="won-address2"' in html
    resp = await client.post(f"/api/v1/giveaways/{g.id}/winner-details", json={
        "name": "김민지", "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
        "address2": "3층"}, headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    html = await (await client.get(f"/giveaways/{g.id}/won?lang=en")).text()
    assert "Congratulations" in html and 'value="04524"' in html and "We have your delivery details" in html


async def test_the_staff_coupons_page(client: TestClient, db: AsyncSession, world: World,
                                      coupon_3000: CouponTemplate, open_drop: CouponDrop) -> None:
    assert (await client.get("/staff/coupons", allow_redirects=False)).status in (401, 303)
    await sign_in(client, "viewer")
    assert (await client.get("/staff/coupons")).status == 403
    assert (await client.get("/staff/coupons.csv")).status == 403
    client.session.cookie_jar.clear()
    await sign_in(client, "staff")
    t = await claims.save_template(db, world.market.id, claims.TemplateInput(
        name_ko=SCRIPT, name_en="Script", kind="percent", value=15, max_discount=5000, min_order=30000,
        scope="products", product_ids=(world.products[1].id,)))
    await db.commit()
    staff = await db.get(User, world.staff.id)
    assert staff is not None
    planned = await claims.plan_drop(db, world.scheduled.id, coupon_3000.id, 20, staff, utcnow(), quantity=300)
    await db.commit()
    resp = await client.get("/staff/coupons")
    assert resp.status == 200
    html = await resp.text()
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'id="template-form"' in html and 'id="plan-form"' in html and 'id="report-table"' in html
    for field in ("name_ko", "name_en", "kind", "value", "max_discount", "min_order", "scope", "merchant_id",
                  "product_ids", "combinable", "per_viewer_limit", "quantity", "claim_minutes", "use_days"):
        assert f'name="{field}"' in html, field
    assert "3,000원 할인" in html and "15% 할인 (최대 5,000원)" in html and "30,000원 이상 구매 시" in html
    assert f'data-cancel-drop="{planned.id}"' in html and "300" in html
    assert 'class="chart-bar"' in html and 'href="/staff/coupons.csv"' in html
    edit = re.search(rf"data-edit-template='([^']*\"id\": {t.id}[^']*)'", html)
    assert edit is not None
    assert json.loads(unescape(edit.group(1)))["name_ko"] == SCRIPT
    assert "/static/js/staff-coupons.js" in html and no_inline_script(html)
    assert 'href="/staff/coupons"' in html and 'href="/staff/giveaways"' in html  # in the menu
    en = await (await client.get("/staff/coupons?lang=en")).text()
    assert "₩3,000 off" in en and "15% off (up to ₩5,000)" in en and "Plan a drop" in en
    assert (await client.get("/staff/coupons.csv")).status == 200
    assert 'href="/staff/coupons"' in await (await client.get("/staff")).text()


async def test_the_staff_giveaways_page(client: TestClient, units: async_sessionmaker[AsyncSession], world: World,
                                        crowd: list[User]) -> None:
    g, winners = await _drawn(units, world, crowd[:3])
    await sign_in(client, "host")
    assert (await client.get("/staff/giveaways")).status == 403
    client.session.cookie_jar.clear()
    await sign_in(client, "staff")
    html = await (await client.get("/staff/giveaways")).text()
    assert f'id="giveaway-{g.id}"' in html and f'href="/giveaways/{g.id}/verify"' in html
    winner = next(u for u in crowd if u.id == winners[0])
    assert winner.display_name in html and "아직" in html  # full names for staff; no details given yet
    en = await (await client.get("/staff/giveaways?lang=en")).text()
    assert "Not given yet" in en and "A bottle of sesame oil" in en


async def test_the_live_page_carries_coupons_and_the_giveaway(client: TestClient, world: World) -> None:
    html = await (await client.get(f"/live/{world.live.id}")).text()
    assert 'id="coupon-drops"' in html and 'id="giveaway"' in html and 'id="won-notice"' in html
    strings = json_block(html, "promos-i18n")
    assert strings["claim"] == "받기" and strings["claimed"] == "받음" and strings["all_claimed"] == "마감"
    assert json_block(html, "i18n")["coupon_fixed"] == "{amount} 할인"
    for js in ("coupons.js", "promos.js", "live.js", "buy.js"):
        assert f"/static/js/{js}" in html
        assert (await client.get(f"/static/js/{js}")).status == 200
    assert html.count("/static/js/coupons.js") == 1 and no_inline_script(html)
    en = json_block(await (await client.get(f"/live/{world.live.id}?lang=en")).text(), "promos-i18n")
    assert en["claim"] == "Claim" and en["how_keyword"] == "Type #{keyword} in the chat to enter"


async def test_the_buy_sheet_offers_the_coupons(client: TestClient, world: World) -> None:
    await sign_in(client, "viewer")
    html = await (await client.get(f"/live/{world.live.id}/buy")).text()
    assert 'id="buy-coupons"' in html and 'id="buy-coupon-row"' in html and 'id="buy-done-coupon"' in html
    assert f'data-merchant="{world.merchant.id}"' in html
    assert "/static/js/coupons.js" in html  # on its own page the sheet brings the coupon maths
    strings = json_block(html, "buy-i18n")
    assert "coupon_best" in strings and "{amount}" in strings["done_discount"]


async def test_the_console_has_the_coupon_and_giveaway_panels(client: TestClient, world: World) -> None:
    await sign_in(client, "host")
    html = await (await client.get(f"/host/broadcasts/{world.live.id}")).text()
    assert 'id="drop-form"' in html and 'id="giveaway-form"' in html and 'id="gw-draw"' in html
    assert "지금 뿌리기" in html and "추첨" in html
    assert json_block(html, "promo-i18n")["gw_open"] == "응모 중"
    assert "/static/js/coupons.js" in html and no_inline_script(html)
    en = await (await client.get(f"/host/broadcasts/{world.live.id}?lang=en")).text()
    assert "Drop now" in en and "Start" in en
