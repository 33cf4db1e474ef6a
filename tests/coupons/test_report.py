"""A broadcast's report through the real app: the room's figures, the sales (net of a coupon), the coupons
and giveaways, per minute, and the series' previous episode beside it — exact values from known purchases,
chat and claims; and who may read it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from coupons.models import CouponDrop, Giveaway, GiveawayEntry, GiveawayState, GiveawayWinner
from livecommerce.db import utcnow
from sessions.models import Broadcast, BroadcastHost, BroadcastState, ChatMessage, LineupItem, Series
from tests.orders.support import buy, order
from tests.support import World, browser_session, sign_in


async def _series_with_previous(db: AsyncSession, world: World) -> int:
    """The live broadcast made an episode of a series, whose previous episode (a week before) is live for now,
    so purchases can be made in it; returns its id."""
    s = Series(market_id=world.market.id, title_ko="월수 라이브", title_en="Mon-Wed live", rrule="FREQ=WEEKLY;BYDAY=MO",
               dtstart_local="2026-11-02T19:00", duration_minutes=60)
    db.add(s)
    await db.flush()
    start = world.live.starts_at - timedelta(days=7)
    prev = Broadcast(market_id=world.market.id, series_id=s.id, title_ko="지난주", title_en="Last week",
                     state=BroadcastState.LIVE, starts_at=start, ends_at=start + timedelta(hours=1), started_at=start,
                     peak_viewers=40, hearts=100, hosts=[BroadcastHost(user_id=world.host.id)],
                     lineup=[LineupItem(product_id=world.products[0].id, position=0, live_price=9900,
                                        stock_reserved=10)])
    db.add(prev)
    await db.execute(update(Broadcast).where(Broadcast.id == world.live.id).values(series_id=s.id, peak_viewers=50,
                                                                                   hearts=120))
    await db.commit()
    return prev.id


async def _end(db: AsyncSession, broadcast_id: int, minutes: int) -> None:
    b = await db.get(Broadcast, broadcast_id)
    assert b is not None and b.started_at is not None
    await db.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(
        state=BroadcastState.ENDED, ended_at=b.started_at + timedelta(minutes=minutes)))
    await db.commit()


async def test_the_report_adds_up_a_show_and_compares_it_with_the_last_episode(
        server: TestServer, http: TestClient, world: World, db: AsyncSession, open_drop: CouponDrop) -> None:
    prev_id = await _series_with_previous(db, world)
    token = await sign_in(http, "viewer")
    # last week: one order of 3 dumplings at the live price, 29,700원
    status, body, _ = await buy(http, token, prev_id, order(world, lines=[
        {"product_id": world.products[0].id, "quantity": 3}]))
    assert status == 201, body
    await _end(db, prev_id, 60)
    db.add_all([ChatMessage(broadcast_id=prev_id, user_id=world.viewer.id, author_name="시청자", author_role="viewer",
                            text=f"지난주 {i}", created_at=world.live.starts_at - timedelta(days=7, minutes=-i))
                for i in range(4)])
    # this week: a coupon claimed and used on 2 dumplings (19,800 − 3,000), then a bottle of sesame oil (13,900)
    resp = await http.post(f"/api/v1/drops/{open_drop.id}/claims", headers={"X-CSRF-Token": token,
                                                                             "Idempotency-Key": "c-1"})
    assert resp.status == 201, await resp.text()
    claim_id = (await resp.json())["claim_id"]
    status, body, _ = await buy(http, token, world.live.id, order(world, coupons=[claim_id]))
    assert status == 201 and body["discount"] == 3000, body
    status, body, _ = await buy(http, token, world.live.id, order(world, lines=[
        {"product_id": world.products[1].id, "quantity": 1}]))
    assert status == 201, body
    start = world.live.started_at
    assert start is not None
    # five messages in minutes 0, 0, 2, 3 and 3; the one in minute 2 removed by the host
    for i, seconds in enumerate((5, 50, 130, 185, 190)):
        db.add(ChatMessage(broadcast_id=world.live.id, user_id=world.viewer.id, author_name="시청자",
                           author_role="viewer", text=f"안녕 {i}", created_at=start + timedelta(seconds=seconds),
                           deleted_at=start + timedelta(seconds=140) if seconds == 130 else None))
    g = Giveaway(broadcast_id=world.live.id, prize_ko="참기름 한 병", prize_en="A bottle of sesame oil", winners=1,
                 commitment="0" * 64, seed="1" * 64, state=GiveawayState.DRAWN,
                 closes_at=utcnow())
    db.add(g)
    await db.flush()
    db.add_all([GiveawayEntry(giveaway_id=g.id, user_id=u.id, number=n)
                for n, u in enumerate((world.viewer, world.staff), start=1)])
    db.add(GiveawayWinner(giveaway_id=g.id, user_id=world.viewer.id, number=1, rank=1))
    await db.commit()
    await _end(db, world.live.id, 60)

    async with browser_session(server) as host:
        await sign_in(host, "host")  # type: ignore[arg-type]
        resp = await host.get(f"/api/v1/broadcasts/{world.live.id}/report")
        assert resp.status == 200, await resp.text()
        r = await resp.json()
        html = await (await host.get(f"/host/broadcasts/{world.live.id}/report")).text()

    figures = {f["key"]: f for f in r["figures"]}
    values = {k: f["value"] for k, f in figures.items()}
    assert values == {"peak_viewers": 50, "chat_messages": 4, "hearts": 120, "orders": 2, "revenue": 30700,
                      "units": 3, "buyers": 1, "coupon_drops": 1, "coupons_claimed": 1, "coupons_redeemed": 1,
                      "giveaway_entries": 2, "giveaway_winners": 1}
    assert figures["revenue"]["money"] is True
    assert figures["revenue"]["previous"] == [29700] and figures["revenue"]["change"] == 1000
    assert figures["revenue"]["change_percent"] == 3.4
    assert figures["chat_messages"]["previous"] == [4] and figures["chat_messages"]["change"] == 0
    assert figures["peak_viewers"]["change"] == 10 and figures["peak_viewers"]["change_percent"] == 25.0
    assert figures["coupon_drops"]["previous"] == [0] and figures["coupon_drops"]["change_percent"] is None
    assert [p["broadcast_id"] for p in r["previous"]] == [prev_id]
    assert r["minutes"] == 60
    chat = r["per_minute"]["chat"]
    assert len(chat) == 60 and chat[:4] == [2, 0, 0, 2] and sum(chat) == 4
    assert r["details"]["room"]["removed"] == 1
    # both purchases were made in minute 10 of the stream (it started ten minutes before the test)
    assert sum(r["per_minute"]["orders"]) == 2 and sum(r["per_minute"]["revenue"]) == 30700
    assert r["per_minute"]["revenue"][10] == 30700
    sales = r["details"]["sales"]
    assert [(p["product_id"], p["units"], p["revenue"]) for p in sales["top_products"]] == [
        (world.products[0].id, 2, 16800), (world.products[1].id, 1, 13900)]
    assert (sales["after_show_orders"], sales["after_show_revenue"]) == (0, 0)
    promos = r["details"]["promotions"]
    assert [(d["claimed"], d["redeemed"], d["discount_given"]) for d in promos["drops"]] == [(1, 1, 3000)]
    assert [(x["entries"], x["winners"]) for x in promos["giveaways"]] == [(2, 1)]

    # the page shows the same, in Korean by default
    assert "30,700원" in html and "29,700원" in html and "고기만두" in html and "참기름 한 병" in html
    assert 'data-metric="giveaway_entries"' in html and "<svg" in html
    assert f'href="/host/broadcasts/{prev_id}/report"' in html


async def test_a_report_without_a_series_or_coupons_says_so(http: TestClient, world: World, db: AsyncSession) -> None:
    await _end(db, world.live.id, 45)
    await sign_in(http, "staff")
    html = await (await http.get(f"/staff/broadcasts/{world.live.id}/report")).text()
    assert "이 시리즈의 지난 방송이 없어 비교할 수 없습니다." in html or "No earlier episode" in html
    assert 'data-metric="coupon_drops"' not in html  # no coupon in this show nor before it
    r = await (await http.get(f"/api/v1/broadcasts/{world.live.id}/report")).json()
    assert r["minutes"] == 45 and r["previous"] == []
    assert {f["key"]: f["value"] for f in r["figures"]}["orders"] == 0


@pytest.mark.parametrize("who", ["viewer", "merchant", "host2", None])
async def test_only_staff_and_its_hosts_read_a_report(http: TestClient, world: World, who: str | None) -> None:
    if who:
        await sign_in(http, who)
    resp = await http.get(f"/api/v1/broadcasts/{world.live.id}/report")
    assert resp.status == (401 if who is None else 403)
    page: Any = await http.get(f"/host/broadcasts/{world.live.id}/report", allow_redirects=False)
    assert page.status in ((401, 302, 303) if who is None else (403,))
    page = await http.get(f"/staff/broadcasts/{world.live.id}/report", allow_redirects=False)
    assert page.status in ((401, 302, 303) if who is None else (403,))


async def test_a_fall_in_revenue_reads_as_one(http: TestClient, world: World, db: AsyncSession) -> None:
    prev_id = await _series_with_previous(db, world)
    token = await sign_in(http, "viewer")
    status, body, _ = await buy(http, token, prev_id, order(world))  # 19,800원 last week, nothing this week
    assert status == 201, body
    await _end(db, prev_id, 60)
    await _end(db, world.live.id, 60)
    await sign_in(http, "staff")
    html = await (await http.get(f"/staff/broadcasts/{world.live.id}/report?lang=en")).text()
    row = html.split('<tr data-metric="revenue">')[1].split("</tr>")[0]
    assert "₩0" in row and "₩19,800" in row and "−₩19,800 (-100.0%)" in row
