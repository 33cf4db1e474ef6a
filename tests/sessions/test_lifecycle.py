"""The scheduler, driven by an injected clock (never real sleeps): broadcasts open, go live, warn
and end by themselves; each move is made exactly once even with two server processes; a restarted
server catches up from the database."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.db import make_engine, make_sessionmaker
from sessions.lifecycle import SCHEDULER, Scheduler, SystemClock, clock_jumped
from sessions.models import Broadcast, BroadcastHost, BroadcastState
from sessions.planning import SeriesInput, create_series
from sessions.schedule import Action
from tests.support import World, fresh, socket_for

S = BroadcastState
# Monday 30 November 2026, 19:00 in Seoul.
MONDAY_7PM = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class FakeClock:
    """Time moves only when the test says so; `sleep` returns when the time it waits for has come
    (or the scheduler is woken)."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self.sleeps: list[float] = []
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)
        self._moved.set()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        self.sleeps.append(seconds)
        target = self._now + timedelta(seconds=seconds)
        while self._now < target and not wake.is_set():
            self._moved.clear()
            moved = asyncio.ensure_future(self._moved.wait())
            woken = asyncio.ensure_future(wake.wait())
            _, pending = await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()


async def _series(config: Config, world: World, now: datetime, auto_live: bool = True) -> int:
    engine = make_engine(config.database)
    try:
        async with make_sessionmaker(engine).begin() as db:
            s = await create_series(db, SeriesInput(
                market_id=world.market.id, title_ko="월수 라이브", title_en="Mon/Wed live",
                rrule="FREQ=WEEKLY;BYDAY=MO,WE", dtstart_local="2026-11-30T19:00", duration_minutes=60,
                auto_live=auto_live, host_ids=[world.host.id], channel="weekly"), config, now)
            return s.id
    finally:
        await engine.dispose()


async def _first(db: AsyncSession, series_id: int) -> Broadcast:
    b = await (await fresh(db)).scalar(select(Broadcast).where(Broadcast.series_id == series_id)
                                       .order_by(Broadcast.starts_at))
    assert b is not None
    return b


def _mine(done: list, broadcast_id: int) -> list[Action]:  # type: ignore[type-arg]
    """The moves made on one broadcast (the world has broadcasts of its own)."""
    return [d.action for d in done if d.broadcast_id == broadcast_id]


async def _started(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_the_server_runs_the_hour_by_itself(config: Config, world: World, db: AsyncSession) -> None:
    clock = FakeClock(MONDAY_7PM - timedelta(hours=2))
    series_id = await _series(config, world, clock.now())
    app = create_app(config)
    server = await _started(app)
    try:
        scheduler: Scheduler = app[SCHEDULER]
        scheduler.clock = clock
        b = await _first(db, series_id)
        assert b.starts_at == MONDAY_7PM and b.state is S.SCHEDULED
        viewer = await socket_for(f"http://127.0.0.1:{server.port}")
        states: asyncio.Queue[dict] = asyncio.Queue()
        viewer.on("broadcast:state", states.put, namespace="/live")
        viewer.on("broadcast:ending", states.put, namespace="/live")
        assert (await viewer.call("join", {"broadcast_id": b.id}, namespace="/live", timeout=5))["ok"]

        assert _mine(await scheduler.tick(), b.id) == []
        clock.advance(minutes=105)  # 18:45: the lobby opens
        assert _mine(await scheduler.tick(), b.id) == [Action.OPEN_LOBBY]
        assert (await asyncio.wait_for(states.get(), 5))["state"] == "lobby"
        clock.advance(minutes=15)  # 19:00: live
        assert _mine(await scheduler.tick(), b.id) == [Action.GO_LIVE]
        assert (await asyncio.wait_for(states.get(), 5))["state"] == "live"
        clock.advance(minutes=55)  # 19:55: the host is warned
        assert _mine(await scheduler.tick(), b.id) == [Action.WARN]
        warning = await asyncio.wait_for(states.get(), 5)
        assert warning["seconds_left"] == 300
        assert _mine(await scheduler.tick(), b.id) == []  # warned once only
        clock.advance(minutes=8)  # 20:03: the hour plus the grace
        assert _mine(await scheduler.tick(), b.id) == [Action.END]
        assert (await asyncio.wait_for(states.get(), 5))["state"] == "ended"
        await viewer.disconnect()
        b = await _first(db, series_id)
        assert b.state is S.ENDED
        assert b.started_at == MONDAY_7PM
        assert b.ended_at == MONDAY_7PM + timedelta(minutes=63)
        assert b.warned_at == MONDAY_7PM + timedelta(minutes=55)
    finally:
        await server.close()


async def test_the_loop_sleeps_until_the_next_move(config: Config, world: World, db: AsyncSession) -> None:
    clock = FakeClock(MONDAY_7PM - timedelta(hours=1))
    series_id = await _series(config, world, clock.now())
    app = create_app(config)
    server = await _started(app)
    scheduler: Scheduler = app[SCHEDULER]
    scheduler.clock = clock
    scheduler.max_sleep = 24 * 3600
    task = asyncio.create_task(scheduler.run())
    try:
        for _ in range(100):
            if clock.sleeps:
                break
            await asyncio.sleep(0.01)
        assert clock.sleeps == [45 * 60]  # from 18:00 straight to the lobby at 18:45: no polling
        clock.advance(minutes=45)
        for _ in range(200):
            if len(clock.sleeps) >= 2:
                break
            await asyncio.sleep(0.01)
        assert (await _first(db, series_id)).state is S.LOBBY
        assert clock.sleeps[1] == 15 * 60  # then to the start
        # staff change the schedule: the scheduler looks again at once
        scheduler.poke()
        for _ in range(200):
            if len(clock.sleeps) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(clock.sleeps) == 3
    finally:
        scheduler.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()


async def test_two_processes_make_each_move_exactly_once(config: Config, world: World, db: AsyncSession) -> None:
    clock = FakeClock(MONDAY_7PM - timedelta(hours=2))
    series_id = await _series(config, world, clock.now())
    apps = [create_app(config), create_app(config)]
    servers = [await _started(a) for a in apps]
    try:
        schedulers = [a[SCHEDULER] for a in apps]
        for s in schedulers:
            s.clock = clock
        # both plan ahead at once: one broadcast per occurrence
        await asyncio.gather(*(s.plan_ahead(clock.now()) for s in schedulers))
        await fresh(db)
        count = await db.scalar(select(func.count()).select_from(Broadcast).where(Broadcast.series_id == series_id))
        assert count == 8  # four weeks of Mondays and Wednesdays
        made: list[tuple[int, Action]] = []
        for minutes in (105, 15, 55, 8):
            clock.advance(minutes=minutes)
            results = await asyncio.gather(*(s.tick() for s in schedulers))
            made += [(d.broadcast_id, d.action) for r in results for d in r]
        first = await _first(db, series_id)
        made = [(bid, a) for bid, a in made if bid == first.id]
        assert sorted(a.value for _, a in made) == sorted(
            a.value for a in (Action.OPEN_LOBBY, Action.GO_LIVE, Action.WARN, Action.END))
        assert first.state is S.ENDED
    finally:
        for srv in servers:
            await srv.close()


async def test_a_restart_in_the_middle_still_ends_on_time(config: Config, world: World, db: AsyncSession) -> None:
    """The server went down during the live hour and came back two hours later."""
    live = await db.get(Broadcast, world.live.id)
    assert live is not None
    started = live.started_at
    app = create_app(config)
    server = await _started(app)
    try:
        scheduler: Scheduler = app[SCHEDULER]
        clock = FakeClock(live.ends_at + timedelta(hours=2))
        scheduler.clock = clock
        done = await scheduler.tick()
        moves = {(d.broadcast_id, d.action) for d in done}
        assert (world.live.id, Action.END) in moves
        b = await (await fresh(db)).get(Broadcast, world.live.id)
        assert b is not None and b.state is S.ENDED
        assert b.ended_at == b.ends_at + timedelta(minutes=config.schedule.grace_minutes)
        assert b.started_at == started
        # the scheduled one (a day later in the world) is untouched
        other = await db.get(Broadcast, world.scheduled.id)
        assert other is not None and other.state is S.SCHEDULED
    finally:
        await server.close()


async def test_a_show_nobody_started_is_missed(config: Config, world: World, db: AsyncSession) -> None:
    clock = FakeClock(MONDAY_7PM - timedelta(minutes=10))
    series_id = await _series(config, world, clock.now(), auto_live=False)
    app = create_app(config)
    server = await _started(app)
    try:
        scheduler: Scheduler = app[SCHEDULER]
        scheduler.clock = clock
        b = await _first(db, series_id)
        assert _mine(await scheduler.tick(), b.id) == [Action.OPEN_LOBBY]
        clock.advance(minutes=12)  # 19:02: within the grace
        assert _mine(await scheduler.tick(), b.id) == []
        clock.advance(minutes=1)  # 19:03
        assert _mine(await scheduler.tick(), b.id) == [Action.MARK_MISSED]
        b = await _first(db, series_id)
        assert b.state is S.MISSED and b.started_at is None
        hosts = await db.scalars(select(BroadcastHost.user_id).where(BroadcastHost.broadcast_id == b.id))
        assert list(hosts) == [world.host.id]  # the series' host was assigned
    finally:
        await server.close()


def test_a_clock_jump_is_the_wall_clock_parting_from_the_monotonic_one() -> None:
    assert not clock_jumped(5.0, 5.0, 2.0)
    assert not clock_jumped(6.5, 5.0, 2.0)  # drift and scheduling noise are not a jump
    assert clock_jumped(605.0, 5.0, 2.0)  # set forward ten minutes
    assert clock_jumped(-55.0, 5.0, 2.0)  # set back a minute


async def test_the_system_clock_stops_sleeping_when_the_wall_clock_is_set() -> None:
    loop = asyncio.get_running_loop()
    offset = [0.0]
    clock = SystemClock(slice_seconds=0.02, wall=lambda: loop.time() + offset[0])
    never = asyncio.Event()

    # nobody touches the clock: the whole sleep is slept
    started = loop.time()
    await clock.sleep(0.1, never)
    assert loop.time() - started >= 0.1

    # set forward ten minutes while it sleeps for an hour: it returns after the slice that saw it
    sleeping = asyncio.create_task(clock.sleep(3600, never))
    await asyncio.sleep(0.05)
    assert not sleeping.done()
    offset[0] += 600
    await asyncio.wait_for(sleeping, timeout=60)

    # and the scheduler's wake-up still ends it at once
    woken = asyncio.Event()
    sleeping = asyncio.create_task(clock.sleep(3600, woken))
    woken.set()
    await asyncio.wait_for(sleeping, timeout=60)
