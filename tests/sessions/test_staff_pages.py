"""The staff's schedule pages: the calendar, weekly series (with shows skipped or moved), one-off
specials, a broadcast's details and line-up, cancelling; refusals keep what was typed and change
nothing; only staff get in, and only with the form's CSRF token."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.db import utcnow
from sessions.models import (
    Broadcast,
    BroadcastHost,
    BroadcastState,
    ExceptionAction,
    LineupItem,
    PartnerChannel,
    Series,
    SeriesException,
)
from tests.support import World, fresh, sign_in

SEOUL = ZoneInfo("Asia/Seoul")
Form = list[tuple[str, str]]


def local_now() -> datetime:
    return utcnow().astimezone(SEOUL)


def tomorrow() -> date:
    return (local_now() + timedelta(days=1)).date()


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A Seoul wall-clock time as UTC."""
    return datetime.combine(day, time(hh, mm), tzinfo=SEOUL).astimezone(UTC)


def series_form(world: World, token: str, **over: object) -> Form:
    """A Monday/Wednesday 19:00 series from tomorrow, hosted by `world.host`, on its own channel."""
    values: dict[str, object] = {
        "market_id": str(world.market.id), "title_ko": "월수 라이브", "title_en": "Mon-Wed live",
        "weekdays": ["MO", "WE"], "start_time": "19:00", "rrule": "", "first_date": tomorrow().isoformat(),
        "end_date": "", "duration_minutes": "60", "stream_url": "https://example.com/live.m3u8",
        "channel": "series", "host_ids": [str(world.host.id)], "csrf_token": token,
    }
    values.update(over)
    out: Form = []
    for k, v in values.items():
        if v is None:
            continue
        for item in v if isinstance(v, list) else [v]:
            out.append((k, str(item)))
    return out


def special_form(world: World, token: str, starts: datetime, **over: object) -> Form:
    values: dict[str, object] = {
        "market_id": str(world.market.id), "title_ko": "특별 방송", "title_en": "Special",
        "starts_local": starts.astimezone(SEOUL).strftime("%Y-%m-%dT%H:%M"), "duration_minutes": "60",
        "stream_url": "", "embed_url": "", "channel": "special", "host_ids": [str(world.host.id)],
        "csrf_token": token,
    }
    values.update(over)
    out: Form = []
    for k, v in values.items():
        for item in v if isinstance(v, list) else [v]:
            out.append((k, str(item)))
    return out


def expected_mon_wed(first: date, now: datetime, weeks: int = 4) -> list[datetime]:
    """The Monday and Wednesday 19:00 (Seoul) shows from `first` that start in [now, now + weeks)."""
    out = []
    for n in range(weeks * 7 + 2):
        day = first + timedelta(days=n)
        start = at(day, 19)
        if day.weekday() in (0, 2) and now <= start < now + timedelta(weeks=weeks):
            out.append(start)
    return out


async def count(db: AsyncSession, model: type) -> int:
    await fresh(db)
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def series_broadcasts(db: AsyncSession, series_id: int) -> list[Broadcast]:
    await fresh(db)
    rows = list((await db.scalars(select(Broadcast).options(selectinload(Broadcast.hosts))
                                  .where(Broadcast.series_id == series_id).order_by(Broadcast.starts_at))).all())
    db.expunge_all()  # the rows keep what they were read with
    return rows


async def create_series(client: TestClient, world: World, token: str, db: AsyncSession, **over: object) -> Series:
    resp = await client.post("/staff/series/new", data=series_form(world, token, **over), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/staff/schedule"
    await fresh(db)
    s = await db.scalar(select(Series).order_by(Series.id.desc()))
    assert s is not None
    db.expunge(s)  # keeps what it was read with, whatever the test reads next
    return s


# -- series ----------------------------------------------------------------------------------

async def test_staff_creates_a_weekly_series_and_its_broadcasts_appear(client: TestClient, world: World,
                                                                       db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.get("/staff/series/new")
    assert resp.status == 200
    html = await resp.text()
    assert 'name="csrf_token"' in html and 'value="MO" checked' in html and 'value="WE" checked' in html
    assert 'value="TU" checked' not in html and 'value="19:00"' in html

    before = utcnow()
    s = await create_series(client, world, token, db)
    assert s.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=19;BYMINUTE=0;BYSECOND=0"
    assert s.dtstart_local == f"{tomorrow().isoformat()}T19:00"
    assert s.until_local is None and s.duration_minutes == 60 and s.channel == "series"
    assert s.stream_url == "https://example.com/live.m3u8" and s.title_en == "Mon-Wed live"

    rows = await series_broadcasts(db, s.id)
    assert [b.starts_at for b in rows] == expected_mon_wed(tomorrow(), before)
    assert len(rows) >= 7  # four weeks ahead, from tomorrow: seven or eight Mondays and Wednesdays
    for b in rows:
        local = b.starts_at.astimezone(SEOUL)
        assert local.weekday() in (0, 2) and (local.hour, local.minute) == (19, 0)
        assert b.ends_at - b.starts_at == timedelta(minutes=60)
        assert b.state is BroadcastState.SCHEDULED and b.title_ko == "월수 라이브" and b.channel == "series"
        assert [h.user_id for h in b.hosts] == [world.host.id]

    # the calendar (and the list under it) show them, with the world's own broadcasts
    resp = await client.get("/staff/schedule")
    assert resp.status == 200
    html = await resp.text()
    today = local_now().date()
    calendar_end = today - timedelta(days=today.weekday()) + timedelta(weeks=4)  # Monday, four weeks on
    shown = [b for b in rows if b.starts_at.astimezone(SEOUL).date() < calendar_end]
    assert html.count('class="chip"') == len(shown) + 2
    for b in [*shown, world.live, world.scheduled]:
        assert f'href="/staff/broadcasts/{b.id}"' in html
        assert f'href="/live/{b.id}"' in html
    assert "월수 라이브" in html and "BYDAY=MO,WE" in html and f'href="/staff/series/{s.id}"' in html
    # one week only: fewer chips; nonsense falls back to the default
    html = await (await client.get("/staff/schedule?weeks=1")).text()
    assert html.count('class="chip"') < len(rows) + 2
    assert (await client.get("/staff/schedule?weeks=abc")).status == 200
    assert (await client.get("/staff/schedule?weeks=400")).status == 200
    assert (await client.get("/staff/schedule?weeks=²")).status == 200


async def test_an_advanced_rrule_is_used_instead_of_the_days(client: TestClient, world: World,
                                                            db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    s = await create_series(client, world, token, db, rrule="FREQ=WEEKLY;BYDAY=FR", weekdays=["MO"],
                            start_time="20:30")
    assert s.rrule == "FREQ=WEEKLY;BYDAY=FR"
    rows = await series_broadcasts(db, s.id)
    assert rows and all(b.starts_at.astimezone(SEOUL).weekday() == 4 for b in rows)
    assert all(b.starts_at.astimezone(SEOUL).strftime("%H:%M") == "20:30" for b in rows)
    # the edit page shows the rule in the advanced field
    html = await (await client.get(f"/staff/series/{s.id}")).text()
    assert 'value="FREQ=WEEKLY;BYDAY=FR"' in html


@pytest.mark.parametrize(("over", "message"), [
    ({"rrule": "FREQ=SOMETIMES;BYDAY=MO"}, "This RRULE cannot be read"),
    ({"rrule": "FREQ=HOURLY"}, "A series repeats daily, weekly or monthly."),
    ({"end_date": "PAST"}, "The series must end after it starts."),
    ({"duration_minutes": "181"}, "A broadcast lasts at most 180 minutes."),
    ({"duration_minutes": "an hour"}, "Duration (minutes) must be a whole number."),
    ({"title_ko": "  "}, "Title (Korean) is required."),
    ({"weekdays": []}, "Choose at least one weekday, or write an RRULE."),
    ({"first_date": "2026-02-30"}, "First show must be a date like 2026-11-30."),
    ({"start_time": "25:00"}, "Start time must be a time like 19:00."),
    ({"stream_url": "javascript:alert(1)"}, "Stream URL must be a web address"),
    ({"market_id": "999999"}, "No market with this id."),
    ({"host_ids": [str(10**6)]}, "is not a host."),
])
async def test_a_series_that_cannot_be_is_refused_and_nothing_is_made(
        client: TestClient, world: World, db: AsyncSession, over: dict[str, object], message: str) -> None:
    token = await sign_in(client, "staff")
    await client.get("/staff/schedule?lang=en")
    if over.get("end_date") == "PAST":
        over = {"end_date": (tomorrow() - timedelta(days=7)).isoformat()}
    resp = await client.post("/staff/series/new", data=series_form(world, token, title_en="Kept as typed", **over),
                             allow_redirects=False)
    assert resp.status == 422
    html = await resp.text()
    assert message in html
    assert 'value="Kept as typed"' in html  # the form keeps what was typed
    assert await count(db, Series) == 0
    assert await count(db, Broadcast) == 2


async def test_a_series_whose_host_is_busy_is_refused(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    await client.get("/staff/schedule?lang=en")
    day = tomorrow() + timedelta(days=2)  # away from the world's own broadcasts
    # a special that day at 19:00, hosted by `host`
    resp = await client.post("/staff/broadcasts/new", data=special_form(world, token, at(day, 19)),
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    # the same host in an overlapping special (another channel): refused
    resp = await client.post("/staff/broadcasts/new",
                             data=special_form(world, token, at(day, 19, 30), channel="other", title_ko="겹침"),
                             allow_redirects=False)
    assert resp.status == 409
    html = await resp.text()
    assert "호스트 already hosts “특별 방송” at that time." in html
    assert 'value="겹침"' in html
    # a series whose first show falls on the special, with the same host: refused, nothing made
    weekday = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][day.weekday()]
    resp = await client.post("/staff/series/new", data=series_form(world, token, weekdays=[weekday], channel="other"),
                             allow_redirects=False)
    assert resp.status == 409
    assert "already hosts “특별 방송” at that time." in await resp.text()
    assert await count(db, Series) == 0
    assert await count(db, Broadcast) == 3
    # the same special's channel: refused too (channel busy), even with another host
    resp = await client.post("/staff/broadcasts/new",
                             data=special_form(world, token, at(day, 19, 30), host_ids=[str(world.other_host.id)]),
                             allow_redirects=False)
    assert resp.status == 409
    assert "is already on this channel at that time." in await resp.text()
    assert await count(db, Broadcast) == 3


async def test_editing_a_series_moves_its_coming_shows(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    s = await create_series(client, world, token, db)
    html = await (await client.get(f"/staff/series/{s.id}")).text()
    assert 'value="MO" checked' in html and 'value="월수 라이브"' in html
    resp = await client.post(f"/staff/series/{s.id}",
                             data=series_form(world, token, start_time="20:00", title_ko="새 이름", is_active="1"),
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/staff/schedule"
    rows = [b for b in await series_broadcasts(db, s.id) if b.state is BroadcastState.SCHEDULED]
    assert rows and all(b.starts_at.astimezone(SEOUL).strftime("%H:%M") == "20:00" for b in rows)
    assert all(b.title_ko == "새 이름" for b in rows)
    # a duration over the limit on the edit form: refused, nothing changes
    resp = await client.post(f"/staff/series/{s.id}", data=series_form(world, token, duration_minutes="500"),
                             allow_redirects=False)
    assert resp.status == 422
    await fresh(db)
    again = await db.get(Series, s.id)
    assert again is not None and again.duration_minutes == 60 and again.title_ko == "새 이름"
    assert (await client.get("/staff/series/999999")).status == 404


async def test_skip_and_move_one_show(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    await client.get("/staff/schedule?lang=en")
    s = await create_series(client, world, token, db)
    first, second, third = (await series_broadcasts(db, s.id))[:3]
    html = await (await client.get(f"/staff/series/{s.id}")).text()
    assert f'name="occurrence_local" value="{first.occurrence_local}"' in html

    # skip: its broadcast is cancelled, the exception remembers why
    resp = await client.post(f"/staff/series/{s.id}/exceptions", data={
        "occurrence_local": first.occurrence_local, "action": "skip", "note": "추석 연휴", "csrf_token": token},
        allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/staff/series/{s.id}"
    await fresh(db)
    assert (await db.get(Broadcast, first.id)).state is BroadcastState.CANCELLED  # type: ignore[union-attr]
    exc = await db.scalar(select(SeriesException).where(SeriesException.series_id == s.id))
    assert exc is not None and exc.action is ExceptionAction.SKIP and exc.note == "추석 연휴"

    # move: its start changes, the hour stays
    assert second.occurrence_local is not None
    new_local = f"{second.occurrence_local[:10]}T21:30"
    resp = await client.post(f"/staff/series/{s.id}/exceptions", data={
        "occurrence_local": second.occurrence_local, "action": "move", "new_start_local": new_local,
        "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    await fresh(db)
    moved = await db.get(Broadcast, second.id)
    assert moved is not None and moved.state is BroadcastState.SCHEDULED
    assert moved.starts_at == at(date.fromisoformat(new_local[:10]), 21, 30)
    assert moved.ends_at - moved.starts_at == timedelta(minutes=60)
    html = await (await client.get(f"/staff/series/{s.id}")).text()
    assert "Skipped" in html and "Moved" in html and "추석 연휴" in html

    # a new time that is not a time, or in the past: refused with 422, nothing changes
    for bad in ("soon", "2020-01-06T19:00", ""):
        resp = await client.post(f"/staff/series/{s.id}/exceptions", data={
            "occurrence_local": third.occurrence_local, "action": "move", "new_start_local": bad,
            "csrf_token": token}, allow_redirects=False)
        assert resp.status == 422, bad
        assert 'class="notice notice-error"' in await resp.text()
    resp = await client.post(f"/staff/series/{s.id}/exceptions", data={
        "occurrence_local": third.occurrence_local, "action": "explode", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 422
    await fresh(db)
    untouched = await db.get(Broadcast, third.id)
    assert untouched is not None and untouched.starts_at == third.starts_at
    assert untouched.state is BroadcastState.SCHEDULED
    assert await count(db, SeriesException) == 2


# -- one broadcast ---------------------------------------------------------------------------

async def test_a_special_is_created_from_the_form(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.get("/staff/broadcasts/new")
    assert resp.status == 200 and 'type="datetime-local"' in await resp.text()
    starts = at(tomorrow(), 11)
    resp = await client.post("/staff/broadcasts/new",
                             data=special_form(world, token, starts, duration_minutes="90", auto_live="1"),
                             allow_redirects=False)
    assert resp.status == 303
    await fresh(db)
    b = await db.scalar(select(Broadcast).options(selectinload(Broadcast.hosts))
                        .where(Broadcast.title_ko == "특별 방송"))
    assert b is not None and resp.headers["Location"].startswith(f"/staff/broadcasts/{b.id}")
    assert b.series_id is None and b.starts_at == starts and b.ends_at == starts + timedelta(minutes=90)
    assert b.auto_live is True and b.channel == "special" and [h.user_id for h in b.hosts] == [world.host.id]
    # in the past, or over the limit: 422, nothing more
    for over in ({"starts_local": "2020-01-01T10:00"}, {"duration_minutes": "999"}, {"duration_minutes": "-5"},
                 {"starts_local": "tomorrow"}, {"embed_url": "ftp://x"}):
        resp = await client.post("/staff/broadcasts/new", data=special_form(world, token, starts + timedelta(days=2),
                                                                             **over), allow_redirects=False)
        assert resp.status == 422, over
    assert await count(db, Broadcast) == 3


async def test_editing_a_broadcast(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    b_id = world.scheduled.id
    html = await (await client.get(f"/staff/broadcasts/{b_id}")).text()
    assert 'name="partner_name_4"' in html and "고기만두" in html and 'name="include_' in html
    new_start = at(tomorrow() + timedelta(days=2), 15)
    data = {
        "title_ko": "바뀐 제목", "title_en": "New title", "description_ko": "설명", "description_en": "",
        "stream_url": "https://example.com/s.m3u8", "embed_url": "", "channel": "main", "auto_live": "1",
        "host_ids": str(world.host.id), "starts_local": new_start.astimezone(SEOUL).strftime("%Y-%m-%dT%H:%M"),
        "duration_minutes": "45", "partner_name_0": "네이버 쇼핑라이브", "partner_url_0": "https://shoppinglive.naver.com/x",
        "partner_name_1": "", "partner_url_1": "", "csrf_token": token,
    }
    resp = await client.post(f"/staff/broadcasts/{b_id}", data=data, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    await fresh(db)
    b = await db.scalar(select(Broadcast).where(Broadcast.id == b_id)
                        .options(selectinload(Broadcast.hosts), selectinload(Broadcast.partners)))
    assert b is not None
    assert (b.title_ko, b.title_en, b.description_ko, b.auto_live) == ("바뀐 제목", "New title", "설명", True)
    assert b.starts_at == new_start and b.ends_at == new_start + timedelta(minutes=45)
    assert [h.user_id for h in b.hosts] == [world.host.id]
    assert [(p.name, p.url) for p in b.partners] == [("네이버 쇼핑라이브", "https://shoppinglive.naver.com/x")]

    # onto the live broadcast's hour, on its channel: refused with 409, the typed title is kept
    clash = utcnow().astimezone(SEOUL) + timedelta(minutes=20)
    resp = await client.post(f"/staff/broadcasts/{b_id}", data={
        **data, "title_ko": "겹치는 제목", "starts_local": clash.strftime("%Y-%m-%dT%H:%M"), "host_ids": ""},
        allow_redirects=False)
    assert resp.status == 409
    html = await resp.text()
    assert 'value="겹치는 제목"' in html
    # a half-filled partner row: 422
    resp = await client.post(f"/staff/broadcasts/{b_id}", data={**data, "partner_name_1": "쿠팡"},
                             allow_redirects=False)
    assert resp.status == 422
    await fresh(db)
    b = await db.get(Broadcast, b_id)
    assert b is not None and b.title_ko == "바뀐 제목" and b.starts_at == new_start
    assert await count(db, PartnerChannel) == 1
    assert (await client.get("/staff/broadcasts/999999")).status == 404


async def test_the_lineup_form(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    await client.get("/staff/schedule?lang=en")
    b_id = world.scheduled.id
    p0, p1, p2 = world.products  # stock 100, 50, 5
    url = f"/staff/broadcasts/{b_id}/lineup"

    # more than the product has: refused with the service's 409, nothing saved, the form keeps the rows
    resp = await client.post(url, data={
        f"include_{p2.id}": "1", f"price_{p2.id}": "14000", f"reserved_{p2.id}": "6", f"position_{p2.id}": "1",
        "csrf_token": token}, allow_redirects=False)
    assert resp.status == 409
    html = await resp.text()
    assert "Only 5 in stock: cannot set aside 6 for the show." in html
    assert f'name="reserved_{p2.id}" value="6"' in html
    await fresh(db)
    assert await count(db, LineupItem) == 2  # the live broadcast's two

    for bad in ({f"price_{p0.id}": "-1"}, {f"price_{p0.id}": "free"}, {f"reserved_{p0.id}": "1.5"},
                {f"position_{p0.id}": "first"}):
        form = {f"include_{p0.id}": "1", f"price_{p0.id}": "9900", f"reserved_{p0.id}": "1",
                f"position_{p0.id}": "1", "csrf_token": token, **bad}
        resp = await client.post(url, data=form, allow_redirects=False)
        assert resp.status == 422, bad
    assert await count(db, LineupItem) == 2

    # a valid line-up, saved in running order (the unticked row is left out)
    resp = await client.post(url, data={
        f"include_{p1.id}": "1", f"price_{p1.id}": "15000", f"reserved_{p1.id}": "10", f"position_{p1.id}": "2",
        f"include_{p2.id}": "1", f"price_{p2.id}": "14000", f"reserved_{p2.id}": "5", f"position_{p2.id}": "1",
        f"price_{p0.id}": "9900", f"reserved_{p0.id}": "99", f"position_{p0.id}": "3",
        "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    await fresh(db)
    items = (await db.scalars(select(LineupItem).where(LineupItem.broadcast_id == b_id)
                              .order_by(LineupItem.position))).all()
    assert [(i.product_id, i.position, i.live_price, i.stock_reserved) for i in items] == [
        (p2.id, 0, 14000, 5), (p1.id, 1, 15000, 10)]
    html = await (await client.get(f"/staff/broadcasts/{b_id}")).text()
    assert f'name="include_{p2.id}" value="1" checked' in html and f'name="include_{p0.id}" value="1" data' in html


async def test_cancelling_a_broadcast(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.post(f"/staff/broadcasts/{world.scheduled.id}/cancel", data={"csrf_token": token},
                             allow_redirects=False)
    assert resp.status == 303
    # a live broadcast cannot be cancelled: 409, it stays live
    resp = await client.post(f"/staff/broadcasts/{world.live.id}/cancel", data={"csrf_token": token},
                             allow_redirects=False)
    assert resp.status == 409
    await fresh(db)
    assert (await db.get(Broadcast, world.scheduled.id)).state is BroadcastState.CANCELLED  # type: ignore[union-attr]
    assert (await db.get(Broadcast, world.live.id)).state is BroadcastState.LIVE  # type: ignore[union-attr]
    # a cancelled broadcast can no longer be changed
    html = await (await client.get(f"/staff/broadcasts/{world.scheduled.id}")).text()
    assert f"/staff/broadcasts/{world.scheduled.id}/cancel" not in html
    resp = await client.post(f"/staff/broadcasts/{world.scheduled.id}/lineup", data={
        f"include_{world.products[0].id}": "1", f"price_{world.products[0].id}": "1",
        f"reserved_{world.products[0].id}": "1", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 409


# -- who may ---------------------------------------------------------------------------------

async def _paths(client: TestClient, world: World, db: AsyncSession) -> tuple[list[str], list[str]]:
    token = await sign_in(client, "staff")
    s = await create_series(client, world, token, db)
    await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    client.session.cookie_jar.clear()
    b = world.scheduled.id
    gets = ["/staff/schedule", "/staff/series/new", f"/staff/series/{s.id}", "/staff/broadcasts/new",
            f"/staff/broadcasts/{b}"]
    posts = ["/staff/series/new", f"/staff/series/{s.id}", f"/staff/series/{s.id}/exceptions",
             "/staff/broadcasts/new", f"/staff/broadcasts/{b}", f"/staff/broadcasts/{b}/lineup",
             f"/staff/broadcasts/{b}/cancel"]
    return gets, posts


@pytest.mark.parametrize("username", ["viewer", "host"])
async def test_only_staff_get_in(client: TestClient, world: World, db: AsyncSession, username: str) -> None:
    gets, posts = await _paths(client, world, db)
    series_before = await count(db, Series)
    broadcasts_before = await count(db, Broadcast)
    token = await sign_in(client, username)
    for path in gets:
        assert (await client.get(path)).status == 403, path
    for path in posts:
        form = [*series_form(world, token), ("action", "skip"), ("occurrence_local", "2030-01-07T19:00")]
        resp = await client.post(path, data=form, allow_redirects=False)
        assert resp.status == 403, path
    assert await count(db, Series) == series_before
    assert await count(db, Broadcast) == broadcasts_before
    assert (await db.get(Broadcast, world.scheduled.id)).state is BroadcastState.SCHEDULED  # type: ignore[union-attr]
    assert await count(db, SeriesException) == 0


async def test_a_form_without_its_csrf_token_is_refused(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    form = [(k, v) for k, v in series_form(world, token) if k != "csrf_token"]
    resp = await client.post("/staff/series/new", data=form, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post("/staff/series/new", data=[*form, ("csrf_token", "not-the-token")],
                             allow_redirects=False)
    assert resp.status == 403
    resp = await client.post(f"/staff/broadcasts/{world.scheduled.id}/cancel", data={}, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post(f"/staff/broadcasts/{world.scheduled.id}/lineup",
                             data={f"include_{world.products[0].id}": "1"}, allow_redirects=False)
    assert resp.status == 403
    assert await count(db, Series) == 0
    assert await count(db, Broadcast) == 2
    assert (await db.get(Broadcast, world.scheduled.id)).state is BroadcastState.SCHEDULED  # type: ignore[union-attr]
    assert await count(db, LineupItem) == 2


async def test_every_schedule_page_is_for_staff(client: TestClient) -> None:
    from sessions import staff_pages

    routes = [r for r in client.app.router.routes() if str(r.resource.canonical).startswith(
        ("/staff/schedule", "/staff/series", "/staff/broadcasts"))]
    assert len(routes) >= 12
    for route in routes:
        assert getattr(route.handler, "__access__", None) is staff_pages.STAFF, route
    assert BroadcastHost  # imported for the relationship the pages load


async def test_the_schedule_says_the_rule_in_words(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    await create_series(client, world, token, db)
    html = await (await client.get("/staff/schedule?lang=en")).text()
    assert "Every Mon, Wed 19:00–20:00" in html
    html = await (await client.get("/staff/schedule?lang=ko")).text()
    assert "매주 월·수 19:00–20:00" in html
    assert "<code class=\"rrule\">" not in html  # the raw rule only when words cannot say it
    s = await create_series(client, world, token, db, channel="main", title_ko="메인 시리즈", weekdays=["TU"],
                            start_time="20:30", duration_minutes="90")
    html = await (await client.get(f"/staff/series/{s.id}")).text()
    assert "매주 화 20:30–22:00" in html and "FREQ=WEEKLY" not in html.split('id="rrule"')[0]
    # channels by name, not by code; a code without a name as it is
    assert '<option value="main" selected>메인 채널</option>' in html
    assert '<option value="special">특집 채널</option>' in html
    html = await (await client.get("/staff/schedule")).text()
    assert ">메인 채널</td>" in html and ">series</td>" in html and "<code>main</code>" not in html
    html = await (await client.get("/staff/schedule?lang=en")).text()
    assert ">Main channel</td>" in html and "Every Tue 20:30–22:00" in html


async def test_the_chat_page_names_report_reasons(client: TestClient, world: World, db: AsyncSession) -> None:
    from sessions.models import ChatMessage, ChatReport

    msg = ChatMessage(broadcast_id=world.live.id, user_id=world.viewer.id, author_name="시청자", author_role="viewer",
                      text="광고 링크", deleted_at=utcnow(), delete_reason="spam")
    db.add(msg)
    await db.flush()
    db.add_all([ChatReport(message_id=msg.id, reporter_id=world.host.id, reason="off_topic"),
                ChatReport(message_id=msg.id, reporter_id=world.staff.id, reason="직접 쓴 이유")])
    await db.commit()
    await sign_in(client, "staff")
    html = await (await client.get("/staff/chat")).text()
    assert ">방송과 무관</td>" in html and "(스팸·광고)" in html
    assert ">off_topic<" not in html and "(spam)" not in html and "직접 쓴 이유" in html
    assert 'class="btn btn-primary"' in html and 'class="button"' not in html
    html = await (await client.get("/staff/chat?lang=en")).text()
    assert ">Off topic</td>" in html and "(Spam or advertising)" in html
