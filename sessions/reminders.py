"""Reminders that reach people: "remind me" as a Web Push notification when the show opens.

A browser that allowed notifications posts its subscription with the broadcast it wants to hear about
(`PUT /api/v1/broadcasts/{id}/push-reminder`); a signed-in viewer's reminder (`reminders`) also reaches
every browser of theirs that subscribed. When the broadcast opens (its lobby, or live) the process that
made the move sends each reminder that has not been sent: one statement marks them taken and returns them
(`UPDATE … SET sent_at = … WHERE sent_at IS NULL RETURNING …`), so with several processes each reminder
is taken by exactly one, and sent once. A reminder set while the lobby is already open is sent when the
show goes live. What the push service said is kept on the row as soon as it answers; a subscription it no
longer knows (404/410) is deleted.

A process that stops between taking reminders and sending them would lose them, so a taken reminder whose
outcome was never written is taken again `push.resend_after_seconds` after it was taken, by the same kind of
conditional statement (only one process takes it again), and sent — while its broadcast is still open, and
at most `MAX_TAKES` times in all. The scheduler runs that sweep at each of its looks. A sender still at work
is never raced: while it has reminders it has not finished, it renews their `sent_at` every quarter of that
delay, and a reminder another process took again meanwhile (`takes` moved on) is left to that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import ForeignKey, String, UniqueConstraint, delete, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from livecommerce import i18n
from livecommerce.api import API, Api, Call, Strict
from livecommerce.auth import PUBLIC
from livecommerce.config import Config
from livecommerce.db import Base, UTCDateTime, utcnow
from livecommerce.errors import N_, Conflict, NotFound
from livecommerce.keys import AppKeys, state
from livecommerce.webpush import (
    PUSH,
    Delivery,
    Outcome,
    PushSubscription,
    Subscription,
    SubscriptionIn,
    check_subscription,
)

from . import planning
from .lifecycle import sweeps
from .models import STATE_LABELS, Broadcast, BroadcastState, Reminder
from .room import room_hooks

log = logging.getLogger("livecommerce.reminders")
S = BroadcastState
OPENING = (S.LOBBY, S.LIVE)
MAX_TAKES = 3  # a reminder is taken when its show opens, and taken again at most twice if never sent
RENEW_IDS = 500  # reminders renewed by one statement


class PushReminder(Base):
    """One browser to notify when one broadcast opens. `sent_at` is set by the process that takes it (and
    renewed while it is sending), `takes` counts the takes, `outcome` is written once the push service answered."""

    __tablename__ = "push_reminders"
    __table_args__ = (UniqueConstraint("broadcast_id", "subscription_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("push_subscriptions.id", ondelete="CASCADE"),
                                                 index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)  # sent, failed (gone: row deleted)
    takes: Mapped[int] = mapped_column(default=0, server_default="0")


def _insert(db: AsyncSession) -> Any:
    return pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert


# -- keeping reminders ------------------------------------------------------------------------------

async def _upcoming(db: AsyncSession, broadcast_id: int) -> Broadcast:
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound(N_("No broadcast with this id."), code="broadcast_not_found")
    if b.state not in (S.SCHEDULED, S.LOBBY):
        raise Conflict(N_("This broadcast is %(state)s: there is nothing to remind you of."), code="not_upcoming",
                       state=STATE_LABELS[b.state])
    return b


async def subscribe(db: AsyncSession, sub: Subscription, user_id: int | None, locale: str) -> int:
    """Keep a browser's subscription (one row per endpoint: its keys and language follow the latest post,
    and a visitor's subscription becomes the account's once they post it signed in). Returns its id."""
    values: dict[str, Any] = {"p256dh": sub.p256dh, "auth": sub.auth, "locale": locale}
    if user_id is not None:
        values["user_id"] = user_id
    stmt = _insert(db)(PushSubscription).values(endpoint=sub.endpoint, created_at=utcnow(), **values)
    stmt = stmt.on_conflict_do_update(index_elements=["endpoint"], set_=values).returning(PushSubscription.id)
    return int((await db.execute(stmt)).scalar_one())


async def remind(db: AsyncSession, broadcast_id: int, sub: Subscription, user_id: int | None, locale: str) -> None:
    """This browser is to be notified when the broadcast opens (a signed-in viewer's reminder is kept too)."""
    b = await _upcoming(db, broadcast_id)
    subscription_id = await subscribe(db, sub, user_id, locale)
    stmt = _insert(db)(PushReminder).values(broadcast_id=b.id, subscription_id=subscription_id, created_at=utcnow())
    await db.execute(stmt.on_conflict_do_nothing(index_elements=["broadcast_id", "subscription_id"]))
    if user_id is not None:
        await planning.remind(db, broadcast_id, user_id)


async def forget(db: AsyncSession, broadcast_id: int, endpoint: str, user_id: int | None) -> None:
    if await db.get(Broadcast, broadcast_id) is None:
        raise NotFound(N_("No broadcast with this id."), code="broadcast_not_found")
    ids = select(PushSubscription.id).where(PushSubscription.endpoint == endpoint).scalar_subquery()
    await db.execute(delete(PushReminder).where(PushReminder.broadcast_id == broadcast_id,
                                                PushReminder.subscription_id == ids))
    if user_id is not None:
        await planning.forget(db, broadcast_id, user_id)


# -- sending ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Due:
    reminder_id: int
    subscription_id: int
    subscription: Subscription
    locale: str
    take: int  # the row's `takes` as this take left it: the reminder is this sender's while the row says so


async def _due(db: AsyncSession, taken: list[tuple[int, int, int]]) -> list[Due]:
    """The taken rows (id, subscription, take) with their subscriptions."""
    if not taken:
        return []
    subs = {s.id: s for s in (await db.scalars(
        select(PushSubscription).where(PushSubscription.id.in_({sid for _, sid, _ in taken})))).all()}
    return [Due(rid, sid, subs[sid].subscription(), subs[sid].locale, take) for rid, sid, take in taken if sid in subs]


async def take_due(db: AsyncSession, broadcast_id: int, now: datetime) -> list[Due]:
    """The reminders of a broadcast that opens now, each taken by this call only: signed-in viewers'
    reminders become one row per browser of theirs (a unique row each), then every row not yet taken is
    marked sent in one conditional statement, which answers the rows it marked."""
    browsers = (select(literal(broadcast_id), PushSubscription.id, literal(now, UTCDateTime()))
                .join(Reminder, Reminder.user_id == PushSubscription.user_id)
                .where(Reminder.broadcast_id == broadcast_id))
    await db.execute(_insert(db)(PushReminder)
                     .from_select(["broadcast_id", "subscription_id", "created_at"], browsers)
                     .on_conflict_do_nothing(index_elements=["broadcast_id", "subscription_id"]))
    taken = (await db.execute(
        update(PushReminder).where(PushReminder.broadcast_id == broadcast_id, PushReminder.sent_at.is_(None))
        .values(sent_at=now, takes=PushReminder.takes + 1)
        .returning(PushReminder.id, PushReminder.subscription_id, PushReminder.takes)
        .execution_options(synchronize_session=False))).all()
    return await _due(db, [(rid, sid, take) for rid, sid, take in taken])


async def take_lost(db: AsyncSession, now: datetime, resend_after: float) -> dict[int, list[Due]]:
    """The reminders of open broadcasts taken more than `resend_after` seconds before `now` and never sent
    (no outcome: their sender stopped), each taken again by this call only — one conditional statement, as
    `take_due` — unless it was taken `MAX_TAKES` times already. By broadcast."""
    taken = (await db.execute(
        update(PushReminder).where(
            PushReminder.broadcast_id.in_(select(Broadcast.id).where(Broadcast.state.in_(OPENING))),
            PushReminder.outcome.is_(None), PushReminder.sent_at.is_not(None),
            PushReminder.sent_at < now - timedelta(seconds=resend_after), PushReminder.takes < MAX_TAKES)
        .values(sent_at=now, takes=PushReminder.takes + 1)
        .returning(PushReminder.broadcast_id, PushReminder.id, PushReminder.subscription_id, PushReminder.takes)
        .execution_options(synchronize_session=False))).all()
    by_broadcast: dict[int, list[Due]] = {}
    broadcast_of = {rid: bid for bid, rid, _, _ in taken}
    for d in await _due(db, [(rid, sid, take) for _, rid, sid, take in taken]):
        by_broadcast.setdefault(broadcast_of[d.reminder_id], []).append(d)
    return by_broadcast


async def renew(db: AsyncSession, held: Mapping[int, int], now: datetime) -> set[int]:
    """A sender keeps the reminders it has not finished (id → its take): each row still at that take gets
    `sent_at = now`, so no sweep takes it again. Returns the ids still held; the others were taken again by
    another process (this one was too slow to renew them), which sends them."""
    kept: set[int] = set()
    by_take: dict[int, list[int]] = {}
    for rid, take in held.items():
        by_take.setdefault(take, []).append(rid)
    for take, ids in by_take.items():
        for i in range(0, len(ids), RENEW_IDS):
            kept.update((await db.scalars(
                update(PushReminder).where(PushReminder.id.in_(ids[i:i + RENEW_IDS]), PushReminder.takes == take,
                                           PushReminder.outcome.is_(None))
                .values(sent_at=now).returning(PushReminder.id)
                .execution_options(synchronize_session=False))).all())
    return kept


def notification(b: Broadcast, opening: BroadcastState, config: Config) -> dict[str, Any]:
    """What the service worker shows, in the current language."""
    title = i18n.pick(b, "title")
    if opening is S.LIVE:
        body = i18n.gettext(N_("Live now. Tap to watch and shop."))
    else:
        body = i18n.gettext(N_("Starts at %(time)s. Tap to come in."),
                            time=i18n.format_time(b.starts_at, config.tz, "short"))
    return {"title": title, "body": body, "url": f"/live/{b.id}", "tag": f"broadcast-{b.id}",
            "broadcast_id": b.id, "state": opening.value}


@dataclass
class Report:
    sent: int = 0
    gone: int = 0
    failed: int = 0
    elsewhere: int = 0  # taken again by another process before this one sent them
    reminders: list[int] = field(default_factory=list)


async def send_reminders(app: web.Application, broadcast_id: int, opening: BroadcastState,
                         now: datetime | None = None) -> Report:
    """Send every reminder of a broadcast that opens, that no process has taken yet."""
    now = now or utcnow()
    async with app[AppKeys.db].begin() as db:
        due = await take_due(db, broadcast_id, now)
        b = await db.get(Broadcast, broadcast_id)
    if not due or b is None:
        return Report()
    return await deliver(app, b, opening, due, now)


async def _lost(app: web.Application, now: datetime) -> list[tuple[Broadcast, list[Due]]]:
    async with app[AppKeys.db].begin() as db:
        taken = await take_lost(db, now, app[AppKeys.config].push.resend_after_seconds)
        found = [(b, due) for bid, due in taken.items() if (b := await db.get(Broadcast, bid)) is not None]
    for b, due in found:
        log.warning("reminders taken again: their sender never sent them",
                    extra={"broadcast": b.id, "count": len(due)})
    return found


async def resend_lost(app: web.Application, now: datetime | None = None) -> list[Report]:
    """Take again the reminders a stopped process took and never sent (see `take_lost`), and send them."""
    now = now or utcnow()
    return [await deliver(app, b, b.state, due, now) for b, due in await _lost(app, now)]


async def sweep(app: web.Application, now: datetime) -> None:
    """The scheduler's sweep: the reminders lost by a stopped process are taken again now and sent in the
    background (the scheduler does not wait for push services)."""
    for b, due in await _lost(app, now):
        _in_background(app, deliver(app, b, b.state, due, now), b.id)


async def deliver(app: web.Application, b: Broadcast, opening: BroadcastState, due: list[Due],
                  now: datetime) -> Report:
    """Send the reminders this process took at `now`, writing each outcome as soon as it is known, and
    keeping hold of the others meanwhile (see `renew`)."""
    config = app[AppKeys.config]
    report = Report()
    catalogues = app[AppKeys.catalogues]
    payloads: dict[str, dict[str, Any]] = {}
    for locale in {d.locale for d in due}:
        loc = locale if locale in catalogues else config.i18n.default_locale
        i18n.activate(loc, catalogues[loc])
        payloads[locale] = notification(b, opening, config)
    sender = app[PUSH]
    loop = asyncio.get_running_loop()
    started = loop.time()

    def clock() -> datetime:  # `now`, moving on with the time spent here
        return now + timedelta(seconds=loop.time() - started)

    held = {d.reminder_id: d.take for d in due}  # taken by this process, not finished
    gate = asyncio.Semaphore(sender.workers)  # a reminder waits here, where it can still be given up

    async def one(d: Due) -> None:
        async with gate:
            if d.reminder_id not in held:
                report.elsewhere += 1
                return
            delivery = await sender.send(d.subscription, payloads[d.locale])
            try:
                await _record(app, d, delivery, report)
            except Exception:  # not written: it will be taken again and sent again
                log.exception("a reminder's outcome could not be written", extra={"broadcast": b.id})
            held.pop(d.reminder_id, None)

    async def keep() -> None:
        every = config.push.resend_after_seconds / 4
        while held:
            await asyncio.sleep(every)
            try:
                async with app[AppKeys.db].begin() as db:
                    kept = await renew(db, dict(held), clock())
            except Exception:
                log.exception("reminders could not be renewed", extra={"broadcast": b.id})
                continue
            for rid in [rid for rid in held if rid not in kept]:
                held.pop(rid, None)

    keeper = asyncio.create_task(keep(), name=f"reminders-keep-{b.id}")
    try:
        await asyncio.gather(*(one(d) for d in due))
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    log.info("reminders sent", extra={"broadcast": b.id, "state": opening.value, "sent": report.sent,
                                      "gone": report.gone, "failed": report.failed,
                                      "elsewhere": report.elsewhere})
    return report


async def _record(app: web.Application, d: Due, delivery: Delivery, report: Report) -> None:
    """What the push service said, on the row (a subscription it no longer knows is deleted)."""
    async with app[AppKeys.db].begin() as db:
        if delivery.outcome is Outcome.GONE:
            await db.execute(delete(PushReminder).where(PushReminder.subscription_id == d.subscription_id))
            await db.execute(delete(PushSubscription).where(PushSubscription.id == d.subscription_id))
        else:
            await db.execute(update(PushReminder).where(PushReminder.id == d.reminder_id)
                             .values(outcome=delivery.outcome.value).execution_options(synchronize_session=False))
    report.reminders.append(d.reminder_id)
    if delivery.outcome is Outcome.GONE:
        report.gone += 1
    elif delivery.outcome is Outcome.SENT:
        report.sent += 1
    else:
        report.failed += 1


@dataclass
class Sending:
    """The reminders being sent by this process, in the background."""

    tasks: set[asyncio.Task[Report]] = field(default_factory=set)


SENDING = web.AppKey("reminders_sending", Sending)


async def on_transition(app: web.Application, broadcast_id: int, new_state: BroadcastState, at: datetime) -> None:
    """A transition listener: when a broadcast opens, its reminders go out in the background (the move that
    opened it does not wait for push services)."""
    if new_state not in OPENING:
        return
    _in_background(app, send_reminders(app, broadcast_id, new_state), broadcast_id)


def _in_background(app: web.Application, sending: Coroutine[Any, Any, Report], broadcast_id: int) -> None:
    tasks = app[SENDING].tasks
    task = asyncio.create_task(sending, name=f"reminders-{broadcast_id}")
    tasks.add(task)
    task.add_done_callback(_finished(tasks, broadcast_id))


def _finished(tasks: set[asyncio.Task[Report]], broadcast_id: int) -> Any:
    def done(task: asyncio.Task[Report]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reminders failed", exc_info=task.exception(), extra={"broadcast": broadcast_id})

    return done


async def tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    """At shutdown, reminders being sent get a few seconds to finish."""
    app[SENDING] = Sending()
    yield
    pending = list(app[SENDING].tasks)
    if pending:
        _, late = await asyncio.wait(pending, timeout=5)
        for task in late:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- the API ----------------------------------------------------------------------------------------

class PushReminderIn(Strict):
    subscription: SubscriptionIn


class PushReminderDelete(Strict):
    endpoint: str = Field(min_length=1, max_length=2048)


class PushReminderOut(BaseModel):
    broadcast_id: int
    reminded: bool


def register_api(api: Api) -> None:
    @api.route("PUT", "/broadcasts/{broadcast_id}/push-reminder", access=PUBLIC, tag="reminders",
               body=PushReminderIn, response=PushReminderOut, errors=[404, 409],
               summary="Notify this browser (Web Push) when the broadcast opens")
    async def push_reminder_set(call: Call[PushReminderIn, None]) -> PushReminderOut:
        broadcast_id = call.param("broadcast_id")
        sub = check_subscription(call.body.subscription, call.app[AppKeys.config])
        user = state(call.request).user
        async with call.app[AppKeys.db].begin() as db:
            await remind(db, broadcast_id, sub, user.id if user else None, state(call.request).locale)
        return PushReminderOut(broadcast_id=broadcast_id, reminded=True)

    @api.route("DELETE", "/broadcasts/{broadcast_id}/push-reminder", access=PUBLIC, tag="reminders",
               body=PushReminderDelete, response=PushReminderOut, errors=[404],
               summary="No more notification to this browser for the broadcast")
    async def push_reminder_delete(call: Call[PushReminderDelete, None]) -> PushReminderOut:
        broadcast_id = call.param("broadcast_id")
        user = state(call.request).user
        async with call.app[AppKeys.db].begin() as db:
            await forget(db, broadcast_id, call.body.endpoint, user.id if user else None)
        return PushReminderOut(broadcast_id=broadcast_id, reminded=False)


def setup(app: web.Application) -> None:
    """Reminders in the app: their API, the transition listener that sends them, the scheduler's sweep that
    sends again those a stopped process lost, and their tasks' lifetime."""
    register_api(app[API])
    room_hooks(app).on_transition.append(on_transition)
    sweeps(app).append(sweep)
    app.cleanup_ctx.append(tasks_ctx)
