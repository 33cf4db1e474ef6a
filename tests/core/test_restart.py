"""The whole server restarted during a live broadcast, for real: `livecommerce serve` (its scheduler on, no
warning and no grace, so that a show ends at its hour exactly) is killed with `kill -9` while a broadcast is
live and started again on the same port. The broadcast goes on and still ends on time; a broadcast whose hour
ended while the server was down is ended on restart at the time it should have ended (the scheduler catches up
from the database); a viewer whose connection the kill cut joins again with `since` and gets what it missed —
exactly that when the room's stream outlives the process (Redis), else the full state, said so, with every
message in its chat. On PostgreSQL and Redis when the run has them, else on the SQLite file."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from livecommerce.db import utcnow
from sessions.models import Broadcast, BroadcastHost, BroadcastState
from tests.processes import Served, until
from tests.support import PASSWORD, Viewer, World, fresh, socket_for

from ..conftest import PG_URL, SECRET

LIVE_AFTER = 8.0  # seconds the show has left when the server is killed (at least; more if it starts slowly)


@pytest.fixture
def backend() -> str:
    """Once, on PostgreSQL (and Redis) when the run has them, else on the SQLite file."""
    return "postgres" if PG_URL else "sqlite"


def serve_config(config: Config, workdir: Path) -> str:
    redis = f'[redis]\nurl = "{config.redis.url}"\nprefix = "{config.redis.prefix}"\n' if config.redis.url else ""
    return ("[server]\n"
            f'secret_key = "{SECRET}"\n'
            f'secret_key_file = "{workdir / "secret"}"\n'
            "[database]\n"
            f'url = "{config.database.url}"\n'
            f"{redis}"
            "[schedule]\n"
            "run_scheduler = true\nlobby_minutes = 0\nwarn_minutes = 0\ngrace_minutes = 0\n"
            "[logging]\n"
            'level = "WARNING"\n')


async def sign_in(base: str, username: str) -> tuple[aiohttp.ClientSession, str]:
    http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get("/api/v1/auth/session") as resp:
        token = (await resp.json())["csrf_token"]
    async with http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD},
                         headers={"X-CSRF-Token": token}) as resp:
        assert resp.status == 200, await resp.text()
    return http, next(c.value for c in http.cookie_jar if c.key == "lc_session")


async def say(host: Viewer, bid: int, text: str) -> dict[str, Any]:
    ack = await host.call("chat:send", {"broadcast_id": bid, "text": text})
    assert ack["ok"], ack
    return dict(ack["data"])


async def state_of(db: AsyncSession, bid: int) -> tuple[BroadcastState, Any]:
    await fresh(db)
    b = (await db.execute(select(Broadcast.state, Broadcast.ended_at).where(Broadcast.id == bid))).one()
    return b.state, b.ended_at


async def test_a_server_killed_and_started_again_during_a_show_ends_it_on_time_and_viewers_resume(
        config: Config, world: World, db: AsyncSession, tmp_path: Path) -> None:
    bid = world.live.id
    now = utcnow().replace(microsecond=0)
    other = Broadcast(market_id=world.market.id, title_ko="두번째", title_en="Second", state=BroadcastState.LIVE,
                      starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(minutes=55),
                      started_at=now - timedelta(minutes=5), lineup=[], hosts=[BroadcastHost(user_id=world.host.id)])
    db.add(other)
    await db.commit()
    other_id = other.id

    server = Served(tmp_path, serve_config(config, tmp_path))
    launched = time.monotonic()
    await server.start()
    start_took = time.monotonic() - launched
    http, cookie = await sign_in(server.base, "host")
    viewers: list[Viewer] = []
    try:
        host = Viewer(await socket_for(server.base, cookie))
        viewer = Viewer(await socket_for(server.base))
        viewers += [host, viewer]
        for v in viewers:
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        before = [await say(host, bid, f"재시작 전 {i}") for i in range(3)]
        await viewer.wait_for(lambda: len(viewer.chat_texts()) == 3)
        seen = {"epoch": viewer.events[-1]["e"], "offset": viewer.last}

        server.kill()
        killed = time.monotonic()
        # While it is down, the shows' hours are moved as staff could: the second one's passes before the
        # server is back, the first one's comes after (with room for a slow start).
        other_ends_at = utcnow().replace(microsecond=0)
        ends_at = other_ends_at + timedelta(seconds=max(LIVE_AFTER, 3 * start_took))
        await db.execute(update(Broadcast).where(Broadcast.id == other_id).values(ends_at=other_ends_at))
        await db.execute(update(Broadcast).where(Broadcast.id == bid).values(ends_at=ends_at))
        await db.commit()
        await asyncio.sleep(1.0)
        assert (await state_of(db, bid))[0] is BroadcastState.LIVE
        assert (await state_of(db, other_id))[0] is BroadcastState.LIVE  # nobody was there to end it
        await server.start()
        down_for = time.monotonic() - killed
        # caught up from the database: ended, at the time it should have been
        state, ended_at = await until(lambda: state_of(db, other_id), lambda s: s[0] is BroadcastState.ENDED, 30)
        assert ended_at == other_ends_at

        # the show goes on: the host (the same cookie) talks, the viewer comes back with what it saw last
        host = Viewer(await socket_for(server.base, cookie))
        viewers.append(host)
        assert (await host.call("join", {"broadcast_id": bid}))["ok"]
        after = [await say(host, bid, f"재시작 후 {i}") for i in range(2)]
        viewer = Viewer(await socket_for(server.base))
        viewers.append(viewer)
        back = await viewer.call("join", {"broadcast_id": bid, "since": seen})
        assert back["ok"], back
        data = back["data"]
        if data["recovered"]:  # the room's stream outlived the process: exactly what was missed
            missed = [e["d"]["id"] for e in data["events"] if e["t"] == "chat"]
            assert missed == [m["id"] for m in after], data["events"]
        else:  # a new stream: the full state, said so, with every message in its chat
            assert data["reason"] == "epoch", data
            ids = [m["id"] for m in data["chat"]]
            assert [m["id"] for m in before + after] == ids[-5:], ids

        # … and still ends on time, told to the room
        ended = asyncio.Event()
        viewer.sio.on("broadcast:state", lambda d: ended.set() if d["state"] == "ended" else None,
                      namespace="/live")
        remaining = (ends_at - utcnow()).total_seconds()
        assert remaining > 0, "the show ended before the server was back: make LIVE_AFTER longer"
        await asyncio.wait_for(ended.wait(), remaining + 30)
        state, ended_at = await state_of(db, bid)
        assert state is BroadcastState.ENDED and ended_at == ends_at
        told_late = (utcnow() - ends_at).total_seconds()
        how = "exactly what it missed" if data["recovered"] else "the full state"
        print(f"\ndown for {down_for:.1f} s; the viewer resumed with {how}; the show ended {told_late:.2f} s "
              "after its hour")
        assert not server.failures(), server.failures()
    finally:
        for v in viewers:
            await v.sio.disconnect()
        await http.close()
        server.stop()
