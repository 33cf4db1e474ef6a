"""Planning services: weekly series with their exceptions, one-off specials, hosts, partner channels,
line-ups and reminders. Every change is checked for conflicts before it is written: a host in two
overlapping broadcasts, two overlapping broadcasts on one channel, a line-up that sets aside more
stock than the product has."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.config import Config
from livecommerce.db import Base
from livecommerce.errors import N_, Conflict, NotFound, ValidationFailed
from livecommerce.models import Market, Product, Role, User

from .models import (
    STATE_LABELS,
    Broadcast,
    BroadcastHost,
    BroadcastState,
    ExceptionAction,
    LineupItem,
    PartnerChannel,
    Reminder,
    Series,
    SeriesException,
    SeriesHost,
)
from .schedule import (
    Exception_,
    Occurrence,
    Planned,
    ScheduleError,
    check_duration,
    check_reservation,
    check_rrule,
    conflicts,
    expand,
    format_local,
    local_to_utc,
    parse_local,
)

S = BroadcastState
ACTIVE = (S.SCHEDULED, S.LOBBY, S.LIVE, S.ENDED)  # states that occupy their hour


def invalid(exc: ScheduleError) -> ValidationFailed:
    return ValidationFailed.with_params(exc.message, exc.code, exc.params)


def _insert(db: AsyncSession) -> Callable[[type[Base]], postgresql.Insert | sqlite.Insert]:
    return pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert


# -- reading ------------------------------------------------------------------------------------

async def get_series(db: AsyncSession, series_id: int) -> Series:
    s = await db.scalar(select(Series).where(Series.id == series_id)
                        .options(selectinload(Series.hosts), selectinload(Series.exceptions)))
    if s is None:
        raise NotFound("No series with this id.", code="series_not_found")
    return s


async def list_series(db: AsyncSession) -> Sequence[Series]:
    return (await db.scalars(select(Series).options(selectinload(Series.hosts), selectinload(Series.exceptions))
                             .order_by(Series.id))).all()


def exceptions_of(series: Series) -> list[Exception_]:
    return [Exception_(e.occurrence_local, e.action is ExceptionAction.SKIP, e.new_start_local)
            for e in series.exceptions]


def occurrences(series: Series, start: datetime, end: datetime) -> list[Occurrence]:
    tz = ZoneInfo(series.timezone)
    return expand(series.rrule, parse_local(series.dtstart_local), tz, timedelta(minutes=series.duration_minutes),
                  start, end, until_local=parse_local(series.until_local) if series.until_local else None,
                  exceptions=exceptions_of(series))


# -- conflicts ----------------------------------------------------------------------------------

async def _planned_around(db: AsyncSession, start: datetime, end: datetime,
                          exclude_series: int | None = None) -> list[Planned]:
    q = (select(Broadcast).options(selectinload(Broadcast.hosts))
         .where(Broadcast.state.in_(ACTIVE), Broadcast.starts_at < end, Broadcast.ends_at > start))
    rows = (await db.scalars(q)).all()
    return [Planned(b.id, b.starts_at, b.ends_at, b.market_id, b.channel, frozenset(h.user_id for h in b.hosts),
                    b.title_ko) for b in rows if exclude_series is None or b.series_id != exclude_series]


async def refuse_conflicts(db: AsyncSession, candidates: Iterable[Planned], exclude_series: int | None = None) -> None:
    cands = list(candidates)
    if not cands:
        return
    start = min(c.starts_at for c in cands)
    end = max(c.ends_at for c in cands)
    others = await _planned_around(db, start, end, exclude_series)
    for c in cands:
        found = conflicts(c, others)
        if found:
            first = found[0]
            if first.kind == "host":
                host = await db.get(User, first.host_id)
                raise Conflict("%(host)s already hosts “%(other)s” at that time.", code="host_busy",
                               host=host.display_name if host else "?", other=first.other_title)
            raise Conflict("“%(other)s” is already on this channel at that time.", code="channel_busy",
                           other=first.other_title)


async def _check_hosts(db: AsyncSession, host_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(host_ids))
    if not ids:
        return []
    rows = (await db.scalars(select(User).where(User.id.in_(ids)))).all()
    found = {u.id: u for u in rows}
    for hid in ids:
        u = found.get(hid)
        if u is None or u.role not in (Role.HOST, Role.STAFF) or not u.is_active:
            raise ValidationFailed("User %(id)s is not a host.", code="not_a_host", id=hid)
    return ids


# -- series -------------------------------------------------------------------------------------

@dataclass
class SeriesInput:
    market_id: int
    title_ko: str
    title_en: str
    rrule: str
    dtstart_local: str
    duration_minutes: int
    until_local: str | None = None
    timezone: str = "Asia/Seoul"
    auto_live: bool = False
    stream_url: str = ""
    channel: str = "main"
    host_ids: Sequence[int] = ()


def _validate_series(data: SeriesInput, config: Config) -> None:
    try:
        tz = ZoneInfo(data.timezone)
    except Exception:
        raise ValidationFailed("Unknown time zone %(zone)s.", code="invalid_timezone", zone=data.timezone) from None
    try:
        check_duration(data.duration_minutes, config.schedule.max_duration_minutes)
        start = parse_local(data.dtstart_local)
        local_to_utc(start, tz)
        check_rrule(data.rrule, start)
        if data.until_local is not None and parse_local(data.until_local) <= start:
            raise ScheduleError("end_before_start", N_("The series must end after it starts."))
    except ScheduleError as exc:
        raise invalid(exc) from None


async def create_series(db: AsyncSession, data: SeriesInput, config: Config, now: datetime) -> Series:
    _validate_series(data, config)
    if await db.get(Market, data.market_id) is None:
        raise ValidationFailed("No market with this id.", code="market_not_found")
    hosts = await _check_hosts(db, data.host_ids)
    series = Series(market_id=data.market_id, title_ko=data.title_ko, title_en=data.title_en,
                    rrule=data.rrule.removeprefix("RRULE:"), timezone=data.timezone,
                    dtstart_local=data.dtstart_local, until_local=data.until_local,
                    duration_minutes=data.duration_minutes, auto_live=data.auto_live, stream_url=data.stream_url,
                    channel=data.channel, hosts=[SeriesHost(user_id=h) for h in hosts], exceptions=[])
    db.add(series)
    await db.flush()
    await ensure_broadcasts(db, series.id, now, config, check=True)
    return series


async def update_series(db: AsyncSession, series_id: int, changes: dict[str, Any], config: Config,
                        now: datetime) -> Series:
    """Change a series; its coming broadcasts that have not opened yet follow the change."""
    series = await get_series(db, series_id)
    host_ids = changes.pop("host_ids", None)
    merged = SeriesInput(
        market_id=series.market_id, title_ko=series.title_ko, title_en=series.title_en, rrule=series.rrule,
        dtstart_local=series.dtstart_local, duration_minutes=series.duration_minutes,
        until_local=series.until_local, timezone=series.timezone, auto_live=series.auto_live,
        stream_url=series.stream_url, channel=series.channel)
    for k, v in changes.items():
        setattr(merged, k, v)
    _validate_series(merged, config)
    for k, v in changes.items():
        setattr(series, k, v.removeprefix("RRULE:") if k == "rrule" and isinstance(v, str) else v)
    if host_ids is not None:
        ids = await _check_hosts(db, host_ids)
        series.hosts = [SeriesHost(user_id=h) for h in ids]
    await db.flush()
    await _follow_series(db, series, now, config)
    return series


async def _follow_series(db: AsyncSession, series: Series, now: datetime, config: Config) -> None:
    """Coming, unopened broadcasts of the series take its new times and details (or are cancelled
    when the rule no longer makes them); missing ones are created."""
    horizon = now + timedelta(weeks=config.schedule.weeks_ahead)
    occ = {o.key: o for o in occurrences(series, now, horizon)} if series.is_active else {}
    rows = (await db.scalars(select(Broadcast).options(selectinload(Broadcast.hosts)).where(
        Broadcast.series_id == series.id, Broadcast.state == S.SCHEDULED, Broadcast.starts_at > now))).all()
    host_ids = [h.user_id for h in series.hosts]
    moved: list[Planned] = []
    for b in rows:
        o = occ.get(b.occurrence_local or "")
        if o is None:
            b.state = S.CANCELLED
            continue
        b.starts_at, b.ends_at = o.starts_at, o.ends_at
        b.title_ko, b.title_en = series.title_ko, series.title_en
        b.stream_url, b.channel, b.auto_live = series.stream_url, series.channel, series.auto_live
        b.hosts = [BroadcastHost(user_id=h) for h in host_ids]
        moved.append(Planned(b.id, b.starts_at, b.ends_at, b.market_id, b.channel, frozenset(host_ids), b.title_ko))
    await db.flush()
    await refuse_conflicts(db, moved, exclude_series=series.id)
    await ensure_broadcasts(db, series.id, now, config, check=True)


async def ensure_broadcasts(db: AsyncSession, series_id: int, now: datetime, config: Config,
                            check: bool = False) -> int:
    """Create the series' broadcasts for the coming `schedule.weeks_ahead` weeks. Safe to run from
    several processes at once: (series, occurrence) is unique and a second insert does nothing."""
    series = await get_series(db, series_id)
    if not series.is_active:
        return 0
    horizon = now + timedelta(weeks=config.schedule.weeks_ahead)
    occ = occurrences(series, now, horizon)
    if not occ:
        return 0
    have = set((await db.scalars(select(Broadcast.occurrence_local).where(
        Broadcast.series_id == series.id, Broadcast.occurrence_local.in_([o.key for o in occ])))).all())
    missing = [o for o in occ if o.key not in have]
    host_ids = frozenset(h.user_id for h in series.hosts)
    if check and missing:
        await refuse_conflicts(db, [Planned(None, o.starts_at, o.ends_at, series.market_id, series.channel, host_ids,
                                            series.title_ko) for o in missing], exclude_series=series.id)
    ins = _insert(db)
    created = 0
    for o in missing:
        stmt = ins(Broadcast).values(
            market_id=series.market_id, series_id=series.id, occurrence_local=o.key, title_ko=series.title_ko,
            title_en=series.title_en, description_ko="", description_en="", state=S.SCHEDULED,
            starts_at=o.starts_at, ends_at=o.ends_at, stream_url=series.stream_url, embed_url="",
            channel=series.channel, auto_live=series.auto_live, peak_viewers=0, created_at=now,
        ).on_conflict_do_nothing(index_elements=["series_id", "occurrence_local"]).returning(Broadcast.id)
        new_id = (await db.execute(stmt)).scalar()
        if new_id is None:
            continue
        created += 1
        for h in host_ids:
            db.add(BroadcastHost(broadcast_id=new_id, user_id=h))
    await db.flush()
    return created


async def add_exception(db: AsyncSession, series_id: int, occurrence_local: str, action: ExceptionAction,
                        new_start_local: str | None, note: str, config: Config, now: datetime) -> SeriesException:
    """Skip one occurrence (a holiday) or move it to another time."""
    series = await get_series(db, series_id)
    tz = ZoneInfo(series.timezone)
    try:
        when = parse_local(occurrence_local)
        rule = check_rrule(series.rrule, parse_local(series.dtstart_local))
        if when not in rule.between(when - timedelta(seconds=1), when + timedelta(seconds=1), inc=True):
            raise ScheduleError("not_an_occurrence", N_("The series has no show at %(when)s."), when=occurrence_local)
        if action is ExceptionAction.MOVE:
            if not new_start_local:
                raise ScheduleError("new_time_required", N_("Give the new start time."))
            new_start = local_to_utc(parse_local(new_start_local), tz)
            if new_start <= now:
                raise ScheduleError("in_the_past", N_("A show cannot be moved into the past."))
        else:
            new_start_local = None
    except ScheduleError as exc:
        raise invalid(exc) from None
    existing = await db.scalar(select(Broadcast).options(selectinload(Broadcast.hosts)).where(
        Broadcast.series_id == series.id, Broadcast.occurrence_local == occurrence_local))
    if existing is not None and existing.state is not S.SCHEDULED:
        raise Conflict("This show is already %(state)s: it cannot be skipped or moved.", code="already_started",
                       state=STATE_LABELS[existing.state])
    exc_row = await db.scalar(select(SeriesException).where(
        SeriesException.series_id == series.id, SeriesException.occurrence_local == occurrence_local))
    if exc_row is None:
        exc_row = SeriesException(series_id=series.id, occurrence_local=occurrence_local, action=action,
                                  new_start_local=new_start_local, note=note)
        db.add(exc_row)
    else:
        exc_row.action, exc_row.new_start_local, exc_row.note = action, new_start_local, note
    if existing is not None:
        if action is ExceptionAction.SKIP:
            existing.state = S.CANCELLED
        else:
            assert new_start_local is not None
            start = local_to_utc(parse_local(new_start_local), tz)
            existing.starts_at = start
            existing.ends_at = start + timedelta(minutes=series.duration_minutes)
            await refuse_conflicts(db, [Planned(existing.id, existing.starts_at, existing.ends_at, existing.market_id,
                                                existing.channel, frozenset(h.user_id for h in existing.hosts),
                                                existing.title_ko)])
    await db.flush()
    return exc_row


# -- one broadcast ------------------------------------------------------------------------------

@dataclass
class BroadcastInput:
    market_id: int
    title_ko: str
    title_en: str
    starts_local: str
    duration_minutes: int
    timezone: str = "Asia/Seoul"
    description_ko: str = ""
    description_en: str = ""
    stream_url: str = ""
    embed_url: str = ""
    channel: str = "main"
    auto_live: bool = False
    host_ids: Sequence[int] = ()


def _slot(starts_local: str, duration: int, tz: str, config: Config, now: datetime) -> tuple[datetime, datetime]:
    try:
        check_duration(duration, config.schedule.max_duration_minutes)
        start = local_to_utc(parse_local(starts_local), ZoneInfo(tz))
    except ScheduleError as exc:
        raise invalid(exc) from None
    if start + timedelta(minutes=duration) <= now:
        raise ValidationFailed("This time has already passed.", code="in_the_past")
    return start, start + timedelta(minutes=duration)


async def create_special(db: AsyncSession, data: BroadcastInput, config: Config, now: datetime) -> Broadcast:
    """A one-off broadcast outside any series."""
    if await db.get(Market, data.market_id) is None:
        raise ValidationFailed("No market with this id.", code="market_not_found")
    start, end = _slot(data.starts_local, data.duration_minutes, data.timezone, config, now)
    hosts = await _check_hosts(db, data.host_ids)
    await refuse_conflicts(db, [Planned(None, start, end, data.market_id, data.channel, frozenset(hosts),
                                        data.title_ko)])
    b = Broadcast(market_id=data.market_id, title_ko=data.title_ko, title_en=data.title_en,
                  description_ko=data.description_ko, description_en=data.description_en, starts_at=start,
                  ends_at=end, stream_url=data.stream_url, embed_url=data.embed_url, channel=data.channel,
                  auto_live=data.auto_live, hosts=[BroadcastHost(user_id=h) for h in hosts], lineup=[], partners=[])
    db.add(b)
    await db.flush()
    return b


async def _broadcast(db: AsyncSession, broadcast_id: int) -> Broadcast:
    b = await db.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).options(
        selectinload(Broadcast.hosts), selectinload(Broadcast.lineup).selectinload(LineupItem.product),
        selectinload(Broadcast.partners)))
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    return b


async def update_broadcast(db: AsyncSession, broadcast_id: int, changes: dict[str, Any], config: Config,
                           now: datetime) -> Broadcast:
    b = await _broadcast(db, broadcast_id)
    # The recording comes after the show: it is the one thing an ended broadcast still takes.
    if b.state in (S.ENDED, S.MISSED, S.CANCELLED) and set(changes) - {"recording_url"}:
        raise Conflict("This broadcast is %(state)s: it can no longer be changed.", code="broadcast_closed",
                       state=STATE_LABELS[b.state])
    host_ids = changes.pop("host_ids", None)
    partners = changes.pop("partners", None)
    starts_local = changes.pop("starts_local", None)
    duration = changes.pop("duration_minutes", None)
    timezone = str(changes.pop("timezone", config.schedule.timezone))
    if starts_local is not None or duration is not None:
        if b.state is not S.SCHEDULED:
            raise Conflict("A broadcast's time can only change before its lobby opens.", code="already_open")
        tz = ZoneInfo(timezone)
        local = str(starts_local) if starts_local is not None else format_local(b.starts_at.astimezone(tz)
                                                                               .replace(tzinfo=None))
        minutes = int(duration) if duration is not None else int((b.ends_at - b.starts_at).total_seconds() // 60)
        b.starts_at, b.ends_at = _slot(local, minutes, timezone, config, now)
    for k, v in changes.items():
        setattr(b, k, v)
    if host_ids is not None:
        ids = await _check_hosts(db, host_ids)
        b.hosts = [BroadcastHost(user_id=h) for h in ids]
    if partners is not None:
        b.partners = [PartnerChannel(name=p["name"], url=p["url"], position=i) for i, p in enumerate(partners)]
    await db.flush()
    await refuse_conflicts(db, [Planned(b.id, b.starts_at, b.ends_at, b.market_id, b.channel,
                                        frozenset(h.user_id for h in b.hosts), b.title_ko)])
    return b


@dataclass
class LineupInput:
    product_id: int
    live_price: int
    stock_reserved: int


async def set_lineup(db: AsyncSession, broadcast_id: int, items: Sequence[LineupInput]) -> Broadcast:
    """Replace a broadcast's line-up, in running order."""
    b = await _broadcast(db, broadcast_id)
    if b.state in (S.ENDED, S.MISSED, S.CANCELLED):
        raise Conflict("This broadcast is %(state)s: it can no longer be changed.", code="broadcast_closed",
                       state=STATE_LABELS[b.state])
    ids = [i.product_id for i in items]
    if len(set(ids)) != len(ids):
        raise ValidationFailed("A product appears twice in the line-up.", code="duplicate_product")
    products = {p.id: p for p in (await db.scalars(select(Product).where(Product.id.in_(ids)))).all()}
    for item in items:
        p = products.get(item.product_id)
        if p is None or not p.is_active:
            raise ValidationFailed("No product with id %(id)s.", code="product_not_found", id=item.product_id)
        try:
            check_reservation(item.stock_reserved, p.stock)
        except ScheduleError as exc:
            raise Conflict.with_params(exc.message, exc.code, exc.params) from None
    await db.execute(delete(LineupItem).where(LineupItem.broadcast_id == b.id))
    for pos, item in enumerate(items):
        db.add(LineupItem(broadcast_id=b.id, product_id=item.product_id, position=pos, live_price=item.live_price,
                          stock_reserved=item.stock_reserved))
    await db.flush()
    db.expire(b)
    return await _broadcast(db, broadcast_id)


# -- reminders ----------------------------------------------------------------------------------

async def remind(db: AsyncSession, broadcast_id: int, user_id: int) -> None:
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    if b.state not in (S.SCHEDULED, S.LOBBY):
        raise Conflict("This broadcast is %(state)s: there is nothing to remind you of.", code="not_upcoming",
                       state=STATE_LABELS[b.state])
    stmt = _insert(db)(Reminder).values(broadcast_id=broadcast_id, user_id=user_id, created_at=b.created_at)
    await db.execute(stmt.on_conflict_do_nothing(index_elements=["broadcast_id", "user_id"]))


async def forget(db: AsyncSession, broadcast_id: int, user_id: int) -> None:
    if await db.get(Broadcast, broadcast_id) is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    await db.execute(delete(Reminder).where(Reminder.broadcast_id == broadcast_id, Reminder.user_id == user_id))


async def reminded_users(db: AsyncSession, broadcast_id: int) -> list[int]:
    return list((await db.scalars(select(Reminder.user_id).where(Reminder.broadcast_id == broadcast_id))).all())


async def my_reminders(db: AsyncSession, user_id: int) -> set[int]:
    return set((await db.scalars(select(Reminder.broadcast_id).where(Reminder.user_id == user_id))).all())
