"""The scheduler: runs inside the server and moves every broadcast through its hour by itself.

It sleeps until the next move is due (woken early when staff change the schedule), never polls
every second. Each move is a conditional UPDATE whose WHERE names the states it may come from, so
when several server processes run a scheduler, exactly one of them makes each move and only that one
tells the room. After a restart the first tick catches up from the database: a broadcast that should
have ended while the server was down is ended, with the time it should have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from aiohttp import web
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from livecommerce.db import rowcount, utcnow
from livecommerce.keys import AppKeys

from . import planning, services
from .models import Broadcast, BroadcastState, Series
from .schedule import ACTION_STATE, Action, Slot, Timing, step, wake_at

log = logging.getLogger("livecommerce.scheduler")
S = BroadcastState


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Wait `seconds`, or less if `wake` is set."""


class SystemClock:
    """The machine's clock. A sleep is measured on the monotonic clock, in slices of at most `slice_seconds`;
    when the wall clock jumps meanwhile (set by hand, an NTP step, a virtual machine resumed) by more than
    `jump_seconds`, it ends early, so the moves due at the new time are made at once rather than at the
    wake-up planned from the old one."""

    def __init__(self, slice_seconds: float = 5.0, jump_seconds: float = 2.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.slice_seconds = slice_seconds
        self.jump_seconds = jump_seconds
        self.wall = wall

    def now(self) -> datetime:
        return utcnow()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, seconds)
        while (left := end - loop.time()) > 0:
            wall, mono = self.wall(), loop.time()
            try:
                await asyncio.wait_for(wake.wait(), timeout=min(left, self.slice_seconds))
                return
            except TimeoutError:
                pass
            if clock_jumped(self.wall() - wall, loop.time() - mono, self.jump_seconds):
                log.info("the wall clock jumped: looking at the schedule again")
                return


def clock_jumped(wall_elapsed: float, monotonic_elapsed: float, tolerance: float) -> bool:
    """Whether the wall clock moved apart from the monotonic one by more than `tolerance` seconds."""
    return abs(wall_elapsed - monotonic_elapsed) > tolerance


Sweep = Callable[[web.Application, datetime], Awaitable[None]]
SWEEPS = web.AppKey("scheduler_sweeps", list[Sweep])


def sweeps(app: web.Application) -> list[Sweep]:
    """Work the scheduler does at each look after the moves, with the time of the look (the reminders add
    theirs in their setup): at least every `max_sleep` seconds, so no sweep needs a loop of its own."""
    found = app.get(SWEEPS)
    if found is None:
        found = app[SWEEPS] = []
    return found


@dataclass(frozen=True)
class Done:
    broadcast_id: int
    action: Action
    at: datetime


def timing(config: Config) -> Timing:
    sc = config.schedule
    return Timing.minutes(sc.lobby_minutes, sc.warn_minutes, sc.grace_minutes)


def slot_of(b: Broadcast) -> Slot:
    return Slot(b.state, b.starts_at, b.ends_at, b.auto_live, b.warned_at is not None)


async def apply(db: AsyncSession, broadcast_id: int, action: Action, at: datetime) -> bool:
    """Make one move if nobody has made it yet; True if this call made it."""
    if action is not Action.WARN:
        return await services.move(db, broadcast_id, ACTION_STATE[action], at)
    result = await db.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.state == S.LIVE, Broadcast.warned_at.is_(None))
        .values(warned_at=at)
        .execution_options(synchronize_session=False))
    return rowcount(result) == 1


class Scheduler:
    def __init__(self, app: web.Application, clock: Clock | None = None, max_sleep: float = 60.0) -> None:
        self.app = app
        self.clock: Clock = clock or SystemClock()
        self.max_sleep = max_sleep
        self._wake = asyncio.Event()
        self._stopped = False
        self.last_sleep: float | None = None

    def poke(self) -> None:
        """Something changed (a new series, a moved show): look again now."""
        self._wake.set()

    @property
    def config(self) -> Config:
        return self.app[AppKeys.config]

    async def plan_ahead(self, now: datetime) -> int:
        """Create the broadcasts of every active series for the coming weeks (idempotent)."""
        created = 0
        async with self.app[AppKeys.reader]() as db:
            series_ids = list((await db.scalars(select(Series.id).where(Series.is_active.is_(True)))).all())
        for sid in series_ids:
            async with self.app[AppKeys.db].begin() as db:
                created += await planning.ensure_broadcasts(db, sid, now, self.config)
        return created

    async def _candidates(self, now: datetime) -> list[Broadcast]:
        t = timing(self.config)
        async with self.app[AppKeys.reader]() as db:
            rows = await db.scalars(select(Broadcast).where(
                Broadcast.state.in_([S.SCHEDULED, S.LOBBY, S.LIVE]),
                or_(Broadcast.state == S.LIVE, Broadcast.starts_at <= now + t.lobby)))
            return list(rows.all())

    async def tick(self) -> list[Done]:
        """Make every move that is due now; tell each room about the moves this process made."""
        from .room import push_transition, push_warning

        now = self.clock.now()
        await self.plan_ahead(now)
        t = timing(self.config)
        done: list[Done] = []
        for b in await self._candidates(now):
            slot = slot_of(b)
            for _ in range(4):  # a long downtime may need several moves: lobby → missed, warn → end
                s = step(slot, t, now)
                if s is None:
                    break
                async with self.app[AppKeys.db].begin() as db:
                    made = await apply(db, b.id, s.action, s.at)
                if not made:
                    break  # another process made it (or the host did): it tells the room
                done.append(Done(b.id, s.action, s.at))
                log.info("broadcast moved", extra={"broadcast": b.id, "action": s.action.value,
                                                    "at": s.at.isoformat()})
                if s.action is Action.WARN:
                    await push_warning(self.app, b.id, b.ends_at, now)
                    slot = Slot(slot.state, slot.starts_at, slot.ends_at, slot.auto_live, True)
                else:
                    state = ACTION_STATE[s.action]
                    await push_transition(self.app, b.id, state, s.at)
                    slot = Slot(state, slot.starts_at, slot.ends_at, slot.auto_live, slot.warned)
        for sweep in sweeps(self.app):
            try:
                await sweep(self.app, now)
            except Exception:  # the moves are made: a failed sweep is tried again at the next look
                log.exception("scheduler sweep failed", extra={"sweep": getattr(sweep, "__qualname__", "")})
        return done

    async def next_wake(self, now: datetime) -> datetime | None:
        t = timing(self.config)
        horizon = now + timedelta(days=2)
        async with self.app[AppKeys.reader]() as db:
            rows = (await db.scalars(select(Broadcast).where(
                Broadcast.state.in_([S.SCHEDULED, S.LOBBY, S.LIVE]), Broadcast.starts_at <= horizon))).all()
        times = [w for b in rows if (w := wake_at(slot_of(b), t, now)) is not None]
        return min(times) if times else None

    async def run(self) -> None:
        while not self._stopped:
            try:
                await self.tick()
                now = self.clock.now()
                wake = await self.next_wake(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed; trying again shortly")
                wake = None
                now = self.clock.now()
                await self.clock.sleep(5.0, self._wake)
                continue
            delay = self.max_sleep if wake is None else min(self.max_sleep, (wake - now).total_seconds())
            self.last_sleep = max(0.0, delay)
            self._wake.clear()
            await self.clock.sleep(self.last_sleep, self._wake)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


SCHEDULER = web.AppKey("scheduler", Scheduler)


def poke_scheduler(app: web.Application) -> None:
    """The schedule changed: this process's scheduler looks again now instead of at its planned wake-up."""
    scheduler = app.get(SCHEDULER)
    if scheduler is not None:
        scheduler.poke()


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the scheduler beside the server (cleanup_ctx); `schedule.run_scheduler = false` turns it off."""
    scheduler = Scheduler(app)
    app[SCHEDULER] = scheduler
    task = None
    if app[AppKeys.config].schedule.run_scheduler:
        task = asyncio.create_task(scheduler.run(), name="livecommerce-scheduler")
    yield
    scheduler.stop()
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
