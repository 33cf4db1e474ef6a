"""The console's page: the hour's clock always in sight, the spotlight's keys with their hint, the sales with
their per-minute chart, and the report's link once the show has ended."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import utcnow
from sessions.models import Broadcast, BroadcastState
from tests.support import World, sign_in


async def test_a_live_console_shows_the_clock_the_keys_and_the_sales(client: TestClient, world: World) -> None:
    await sign_in(client, "host")
    html = await (await client.get(f"/host/broadcasts/{world.live.id}?lang=en")).text()
    clock = html.split('id="console-clock"')[1].split("</p>")[0]
    assert "hidden" not in clock.split(">")[0] and 'data-warn="300"' in clock
    assert f'data-until="{world.live.ends_at.isoformat()}"' in clock and "Time left in the hour" in clock
    assert 'id="console-keys"' in html and "<kbd>J</kbd>" in html and "next product" in html
    assert 'id="figures"' in html and 'id="figures-chart"' in html and "js/figures.js" in html
    assert 'id="report-link"' in html and 'id="report-link" href="/host/broadcasts/' in html
    assert html.split('id="report-link"')[1].split(">")[0].endswith("hidden")  # not before the end
    figures = await client.get(f"/api/v1/broadcasts/{world.live.id}/figures")
    assert figures.status == 200 and "minutes" in await figures.json()


async def test_an_ended_console_links_its_report(client: TestClient, world: World, db: AsyncSession) -> None:
    await db.execute(update(Broadcast).where(Broadcast.id == world.live.id).values(
        state=BroadcastState.ENDED, ended_at=world.live.starts_at + timedelta(minutes=60)))
    await db.commit()
    await sign_in(client, "host")
    html = await (await client.get(f"/host/broadcasts/{world.live.id}?lang=en")).text()
    link = html.split('id="report-link"')[1].split(">")[0]
    assert f'href="/host/broadcasts/{world.live.id}/report"' in link and "hidden" not in link
    assert 'id="console-keys"' not in html
    assert html.split('id="console-clock"')[1].split(">")[0].rstrip().endswith("hidden")
    assert (await client.get(f"/host/broadcasts/{world.live.id}/report")).status == 200


async def test_hosts_and_staff_find_the_reports_of_past_shows(client: TestClient, world: World,
                                                               db: AsyncSession) -> None:
    await db.execute(update(Broadcast).where(Broadcast.id == world.live.id).values(
        state=BroadcastState.ENDED, ended_at=world.live.starts_at + timedelta(minutes=60)))
    await db.commit()
    await sign_in(client, "host")
    html = await (await client.get("/host")).text()
    assert f'href="/host/broadcasts/{world.live.id}/report"' in html
    await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": await _token(client)})
    await sign_in(client, "host2")  # hosts the scheduled one only
    assert f'/broadcasts/{world.live.id}/report"' not in await (await client.get("/host")).text()
    await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": await _token(client)})
    await sign_in(client, "staff")
    assert f'href="/staff/broadcasts/{world.live.id}/report"' in await (await client.get("/staff")).text()
    seoul = ZoneInfo("Asia/Seoul")
    today = utcnow().astimezone(seoul).date()
    if world.live.starts_at.astimezone(seoul).date() >= today - timedelta(days=today.weekday()):
        schedule = await (await client.get("/staff/schedule")).text()  # this week's shows, the ended ones too
        assert f'href="/staff/broadcasts/{world.live.id}/report"' in schedule


async def _token(client: TestClient) -> str:
    return str((await (await client.get("/api/v1/auth/session")).json())["csrf_token"])
