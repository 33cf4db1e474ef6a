"""Planning through the API: series, exceptions, specials, hosts, line-ups and reminders; every
refusal is clear and changes nothing. Also the public schedule page and its iCalendar feed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from icalendar import Calendar
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import utcnow
from sessions.models import Broadcast, BroadcastState, LineupItem, Series
from tests.support import World, cookie_of, fresh, sign_in, socket_for

SEOUL = ZoneInfo("Asia/Seoul")
S = BroadcastState


def next_monday_local(hour: int = 19) -> str:
    now = utcnow().astimezone(SEOUL)
    days = (7 - now.weekday()) % 7 or 7
    day = (now + timedelta(days=days)).date()
    return f"{day.isoformat()}T{hour:02d}:00"


def series_body(world: World, **over: Any) -> dict[str, Any]:
    body = {"market_id": world.market.id, "title_ko": "월수 라이브", "title_en": "Mon/Wed live",
            "rrule": "FREQ=WEEKLY;BYDAY=MO,WE", "dtstart_local": next_monday_local(), "duration_minutes": 60,
            "host_ids": [world.host.id], "channel": "weekly"}
    body.update(over)
    return body


async def _count(db: AsyncSession, model: Any) -> int:
    return int(await (await fresh(db)).scalar(select(func.count()).select_from(model)) or 0)


async def test_staff_plan_a_weekly_series(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.post("/api/v1/series", json=series_body(world), headers={"X-CSRF-Token": token})
    assert resp.status == 201, await resp.text()
    series = await resp.json()
    await fresh(db)
    rows = (await db.scalars(select(Broadcast).where(Broadcast.series_id == series["id"])
                             .order_by(Broadcast.starts_at))).all()
    assert len(rows) in (7, 8)  # four weeks ahead of today, Mondays and Wednesdays
    local = [b.starts_at.astimezone(SEOUL) for b in rows]
    assert {d.strftime("%a %H:%M") for d in local} == {"Mon 19:00", "Wed 19:00"}
    assert all(b.ends_at - b.starts_at == timedelta(hours=1) for b in rows)
    # skip the first Wednesday, move the second Monday
    wed = next(b for b in rows if b.starts_at.astimezone(SEOUL).weekday() == 2)
    wed_id = wed.id
    resp = await client.post(f"/api/v1/series/{series['id']}/exceptions", headers={"X-CSRF-Token": token},
                             json={"occurrence_local": wed.occurrence_local, "action": "skip", "note": "휴일"})
    assert resp.status == 201, await resp.text()
    mondays = [b for b in rows if b.starts_at.astimezone(SEOUL).weekday() == 0]
    target = mondays[1]
    target_id = target.id
    new_local = (target.starts_at.astimezone(SEOUL) + timedelta(days=1, hours=1)).strftime("%Y-%m-%dT%H:%M")
    resp = await client.post(f"/api/v1/series/{series['id']}/exceptions", headers={"X-CSRF-Token": token},
                             json={"occurrence_local": target.occurrence_local, "action": "move",
                                   "new_start_local": new_local})
    assert resp.status == 201, await resp.text()
    assert len((await resp.json())["exceptions"]) == 2
    await fresh(db)
    assert (await db.get(Broadcast, wed_id)).state is S.CANCELLED  # type: ignore[union-attr]
    moved = await db.get(Broadcast, target_id)
    assert moved is not None and moved.starts_at.astimezone(SEOUL).strftime("%Y-%m-%dT%H:%M") == new_local


@pytest.mark.parametrize(("over", "code"), [
    ({"rrule": "FREQ=SOMETIMES"}, "invalid_rrule"),
    ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "invalid_rrule"),
    ({"until_local": "2020-01-01T00:00"}, "end_before_start"),
    ({"duration_minutes": 240}, "duration_too_long"),
    ({"timezone": "America/New_York", "dtstart_local": "2027-03-14T02:30"}, "nonexistent_time"),
    ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
    ({"host_ids": [999999]}, "not_a_host"),
    ({"dtstart_local": "next monday"}, "validation_failed"),
])
async def test_impossible_series_are_refused(client: TestClient, world: World, db: AsyncSession,
                                             over: dict[str, Any], code: str) -> None:
    token = await sign_in(client, "staff")
    before = await _count(db, Broadcast)
    resp = await client.post("/api/v1/series", json=series_body(world, **over), headers={"X-CSRF-Token": token})
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == code and err["message"]
    assert await _count(db, Series) == 0
    assert await _count(db, Broadcast) == before


async def test_conflicts_are_refused_with_the_reason(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    h = {"X-CSRF-Token": token}
    start = (utcnow() + timedelta(days=3)).astimezone(SEOUL).replace(minute=0, second=0, microsecond=0)
    local = start.strftime("%Y-%m-%dT%H:%M")
    special = {"market_id": world.market.id, "title_ko": "특집", "title_en": "Special", "starts_local": local,
               "duration_minutes": 60, "host_ids": [world.host.id]}
    resp = await client.post("/api/v1/broadcasts", json=special, headers=h)
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    before = await _count(db, Broadcast)
    half_later = (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    resp = await client.post("/api/v1/broadcasts", headers=h, json={
        **special, "title_ko": "겹침", "starts_local": half_later, "channel": "other"})
    assert resp.status == 409
    err = (await resp.json())["error"]
    assert err["code"] == "host_busy" and "특집" in err["message"]
    resp = await client.post("/api/v1/broadcasts", headers=h, json={
        **special, "title_ko": "같은 채널", "starts_local": half_later, "host_ids": [world.other_host.id]})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "channel_busy"
    assert await _count(db, Broadcast) == before
    # back to back is fine
    resp = await client.post("/api/v1/broadcasts", headers=h, json={
        **special, "title_ko": "다음", "starts_local": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")})
    assert resp.status == 201
    # a line-up that sets aside more than the stock
    resp = await client.put(f"/api/v1/broadcasts/{first['id']}/lineup", headers=h, json={"items": [
        {"product_id": world.products[2].id, "live_price": 9000, "stock_reserved": 6}]})  # stock is 5
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "reservation_exceeds_stock"
    assert await (await fresh(db)).scalar(select(func.count()).select_from(LineupItem).where(
        LineupItem.broadcast_id == first["id"])) == 0
    resp = await client.put(f"/api/v1/broadcasts/{first['id']}/lineup", headers=h, json={"items": [
        {"product_id": world.products[1].id, "live_price": 13900, "stock_reserved": 20},
        {"product_id": world.products[2].id, "live_price": 9000, "stock_reserved": 5}]})
    assert resp.status == 200, await resp.text()
    assert [i["product"]["id"] for i in (await resp.json())["lineup"]] == [world.products[1].id,
                                                                          world.products[2].id]


async def test_broadcast_details_hosts_and_partner_channels(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    resp = await client.patch(f"/api/v1/broadcasts/{world.scheduled.id}", headers={"X-CSRF-Token": token}, json={
        "stream_url": "https://video.example/live.m3u8", "host_ids": [world.host.id, world.other_host.id],
        "partners": [{"name": "네이버 쇼핑라이브", "url": "https://shopping.example/live/1"}]})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["stream_url"].endswith(".m3u8")
    assert body["partners"] == [{"name": "네이버 쇼핑라이브", "url": "https://shopping.example/live/1"}]
    page = await (await client.get(f"/live/{world.scheduled.id}")).text()
    assert 'class="partner-link" href="https://shopping.example/live/1"' in page
    resp = await client.patch(f"/api/v1/broadcasts/{world.scheduled.id}", headers={"X-CSRF-Token": token},
                              json={"partners": [{"name": "x", "url": "javascript:alert(1)"}]})
    assert resp.status == 422


@pytest.mark.parametrize(("target", "action", "code"), [
    ("scheduled", "end", "illegal_transition"),  # ending a broadcast that never started
    ("live", "go-live", "illegal_transition"),
])
async def test_transitions_that_are_not_allowed(client: TestClient, world: World, db: AsyncSession,
                                                target: str, action: str, code: str) -> None:
    token = await sign_in(client, "staff")
    b = getattr(world, target)
    resp = await client.post(f"/api/v1/broadcasts/{b.id}/{action}", headers={"X-CSRF-Token": token})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == code
    assert (await (await fresh(db)).get(Broadcast, b.id)).state is b.state  # type: ignore[union-attr]


async def test_going_live_on_a_cancelled_broadcast_and_too_early(client: TestClient, world: World,
                                                                 db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    h = {"X-CSRF-Token": token}
    resp = await client.post(f"/api/v1/broadcasts/{world.scheduled.id}/go-live", headers=h)
    assert resp.status == 409  # tomorrow: too early
    assert (await resp.json())["error"]["code"] == "too_early"
    resp = await client.post(f"/api/v1/broadcasts/{world.scheduled.id}/cancel", headers=h)
    assert resp.status == 200
    resp = await client.post(f"/api/v1/broadcasts/{world.scheduled.id}/go-live", headers=h)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "illegal_transition"
    assert (await (await fresh(db)).get(Broadcast, world.scheduled.id)).state is S.CANCELLED  # type: ignore[union-attr]


async def test_a_host_cannot_plan(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "host")
    resp = await client.post("/api/v1/series", json=series_body(world), headers={"X-CSRF-Token": token})
    assert resp.status == 403
    resp = await client.put(f"/api/v1/broadcasts/{world.live.id}/lineup", headers={"X-CSRF-Token": token},
                            json={"items": []})
    assert resp.status == 403
    assert await _count(db, Series) == 0


async def test_schedule_page_and_calendar_feed(client: TestClient, world: World) -> None:
    resp = await client.get("/schedule")
    assert resp.status == 200
    html = await resp.text()
    assert f'href="/live/{world.scheduled.id}"' in html and "webcal://" in html
    resp = await client.get("/schedule.ics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/calendar")
    cal = Calendar.from_ical(await resp.read())
    events = [c for c in cal.walk("VEVENT")]
    assert {str(e["summary"]) for e in events} >= {"라이브", "예정"}
    ev = next(e for e in events if str(e["summary"]) == "예정")
    assert ev["dtstart"].params["TZID"] == "Asia/Seoul"
    assert ev["dtstart"].dt.astimezone(UTC) == world.scheduled.starts_at
    assert str(ev["url"]).endswith(f"/live/{world.scheduled.id}")
    assert any(c.name == "VTIMEZONE" for c in cal.walk())


async def test_remind_me_tells_the_viewer_when_it_goes_live(server: TestServer, http: TestClient, world: World,
                                                           db: AsyncSession) -> None:
    token = await sign_in(http, "viewer")
    resp = await http.put(f"/api/v1/broadcasts/{world.scheduled.id}/reminder", headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["reminded"] is True
    resp = await http.put(f"/api/v1/broadcasts/{world.live.id}/reminder", headers={"X-CSRF-Token": token})
    assert resp.status == 409  # already live: nothing to remind of
    viewer = await socket_for(f"http://127.0.0.1:{server.port}", cookie_of(http))
    notes: asyncio.Queue[dict] = asyncio.Queue()
    viewer.on("reminder:live", notes.put, namespace="/live")
    try:
        b = await db.get(Broadcast, world.scheduled.id)
        assert b is not None
        b.starts_at = utcnow() + timedelta(minutes=5)  # into the lobby window
        await db.commit()
        staff = TestClient(server)
        await staff.start_server()
        try:
            token2 = await sign_in(staff, "staff")
            resp = await staff.post(f"/api/v1/broadcasts/{world.scheduled.id}/go-live",
                                    headers={"X-CSRF-Token": token2})
            assert resp.status == 200, await resp.text()
        finally:
            await staff.close()
        note = await asyncio.wait_for(notes.get(), 5)
        assert note["broadcast_id"] == world.scheduled.id and note["url"] == f"/live/{world.scheduled.id}"
    finally:
        await viewer.disconnect()
    _ = datetime
