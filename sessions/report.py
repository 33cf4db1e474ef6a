"""After a broadcast: its report. The room's own figures (peak viewers, chat messages, hearts, chat per
minute) come from here; the other domains add theirs as report parts (`report_parts`: sales and top
products from orders, coupons and giveaways from coupons), each read with a few aggregate queries for this
broadcast and its series' previous episodes together. What the figures add up to — minutes of the show,
counts per minute, the change against the episodes before, the chart's bars — is pure and tested alone."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.errors import N_, NotFound

from .models import Broadcast, BroadcastHost, BroadcastState, ChatMessage

__all__ = [
    "PREVIOUS_EPISODES",
    "REPORT_PARTS",
    "Bar",
    "Change",
    "Details",
    "Metric",
    "Report",
    "ReportPart",
    "Row",
    "bars",
    "build",
    "change",
    "comparison",
    "fill",
    "past_broadcasts",
    "per_minute",
    "report_parts",
    "show_minutes",
]

PREVIOUS_EPISODES = 4  # the series' episodes before this one, side by side in the comparison
MAX_MINUTES = 24 * 60


# -- pure ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # an English msgid
    money: bool = False  # whole won, shown as 12,900원
    optional: bool = False  # shown only where some episode has it (coupons, giveaways)


@dataclass(frozen=True)
class Change:
    delta: int
    percent: float | None  # None when there was nothing before to compare with


def change(now: int, before: int) -> Change:
    """How a figure moved since the episode before: by how much, and by what share of what it was."""
    delta = now - before
    return Change(delta, round(delta * 100 / before, 1) if before else None)


@dataclass(frozen=True)
class Row:
    """One figure of the comparison: this episode's value, the previous episodes' (newest first), and the
    change against the newest of them (None without one)."""

    metric: Metric
    value: int
    previous: tuple[int, ...]
    change: Change | None

    @property
    def shown(self) -> bool:
        return not self.metric.optional or any((self.value, *self.previous))


def comparison(metrics: Sequence[Metric], current: Mapping[str, int],
               previous: Sequence[Mapping[str, int]]) -> list[Row]:
    """Every figure of this episode beside the same figure of the previous ones (newest first)."""
    rows = []
    for m in metrics:
        value = int(current.get(m.key, 0))
        before = tuple(int(p.get(m.key, 0)) for p in previous)
        rows.append(Row(m, value, before, change(value, before[0]) if before else None))
    return rows


def show_minutes(started_at: datetime | None, ended_at: datetime | None, starts_at: datetime,
                 ends_at: datetime) -> int:
    """How many minutes the show's chart spans: from its real start to its real end (the planned hour when it
    never ran or is still running), at least one, at most a day."""
    start = started_at or starts_at
    end = ended_at or (ends_at if started_at is None or ends_at > start else start)
    seconds = (end - start).total_seconds()
    return max(1, min(MAX_MINUTES, math.ceil(seconds / 60)))


def per_minute(moments: Iterable[datetime], start: datetime) -> dict[int, int]:
    """How many of `moments` fell in each minute after `start` (minute 0 is the first); earlier ones are left
    out."""
    out: dict[int, int] = {}
    for moment in moments:
        seconds = (moment - start).total_seconds()
        if seconds < 0:
            continue
        minute = int(seconds // 60)
        out[minute] = out.get(minute, 0) + 1
    return out


def fill(values: Mapping[int, int], minutes: int) -> list[int]:
    """minute -> value as one value per minute of the show (0 where nothing happened); later minutes (after
    the show) are left out."""
    return [int(values.get(m, 0)) for m in range(minutes)]


@dataclass(frozen=True)
class Bar:
    minute: int
    value: int
    x: float
    y: float
    width: float
    height: float
    top: bool  # the best minute


def bars(values: Sequence[int], width: float = 640, height: float = 120) -> list[Bar]:
    """An SVG bar chart's bars for one value per minute, scaled to the largest; nothing when all are 0."""
    peak = max(values, default=0)
    if peak <= 0:
        return []
    slot = width / len(values)
    bar_width = max(1.0, slot * 0.8)
    out = []
    for minute, value in enumerate(values):
        h = round(height * value / peak, 1)
        out.append(Bar(minute, value, round(minute * slot + (slot - bar_width) / 2, 1), round(height - h, 1),
                       round(bar_width, 1), h, value == peak))
    return out


# -- the parts ----------------------------------------------------------------------------------

Totals = dict[int, dict[str, int]]  # broadcast id -> metric key -> value


@dataclass(frozen=True)
class Details:
    """What a part shows of this broadcast alone: values per minute (name -> minute -> value) for the chart,
    and its own section (JSON-ready data, rendered by `template` with the data as `part`)."""

    series: dict[str, dict[int, int]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    template: str = ""


@dataclass(frozen=True)
class ReportPart:
    """A domain's share of the report: its figures for several broadcasts at once (the comparison), and its
    details for one."""

    name: str
    metrics: tuple[Metric, ...]
    totals: Callable[[AsyncSession, Sequence[Broadcast]], Awaitable[Totals]]
    details: Callable[[AsyncSession, Broadcast], Awaitable[Details]]


REPORT_PARTS = web.AppKey("report_parts", list[ReportPart])


def report_parts(app: web.Application) -> list[ReportPart]:
    """The app's report parts, the room's own first (domains append theirs in their `setup`)."""
    parts = app.get(REPORT_PARTS)
    if parts is None:
        parts = app[REPORT_PARTS] = [ROOM_PART]
    return parts


async def _room_totals(db: AsyncSession, broadcasts: Sequence[Broadcast]) -> Totals:
    ids = [b.id for b in broadcasts]
    chat = dict((await db.execute(
        select(ChatMessage.broadcast_id, func.count()).where(ChatMessage.broadcast_id.in_(ids),
                                                             ChatMessage.deleted_at.is_(None))
        .group_by(ChatMessage.broadcast_id))).all())
    return {b.id: {"peak_viewers": int(b.peak_viewers or 0), "chat_messages": int(chat.get(b.id, 0)),
                   "hearts": int(b.hearts or 0)} for b in broadcasts}


async def _room_details(db: AsyncSession, b: Broadcast) -> Details:
    rows = (await db.execute(select(ChatMessage.created_at, ChatMessage.deleted_at)
                             .where(ChatMessage.broadcast_id == b.id))).all()
    start = b.started_at or b.starts_at
    return Details(series={"chat": per_minute((r.created_at for r in rows if r.deleted_at is None), start)},
                   data={"removed": sum(1 for r in rows if r.deleted_at is not None)})


ROOM_PART = ReportPart("room", (Metric("peak_viewers", N_("Peak viewers")),
                                Metric("chat_messages", N_("Chat messages")), Metric("hearts", N_("Hearts"))),
                       _room_totals, _room_details)


# -- the report ---------------------------------------------------------------------------------

@dataclass
class Report:
    broadcast: Broadcast
    minutes: int  # the chart's span
    metrics: list[Metric]
    figures: dict[str, int]
    series: dict[str, list[int]]  # name -> one value per minute of the show
    details: dict[str, Details]  # part name -> its details
    previous: list[Broadcast]  # the series' episodes before, newest first
    rows: list[Row]


async def previous_episodes(db: AsyncSession, b: Broadcast, limit: int = PREVIOUS_EPISODES) -> list[Broadcast]:
    """The same series' ended broadcasts before this one, newest first."""
    if b.series_id is None:
        return []
    return list((await db.scalars(
        select(Broadcast).where(Broadcast.series_id == b.series_id, Broadcast.state == BroadcastState.ENDED,
                                Broadcast.starts_at < b.starts_at)
        .order_by(Broadcast.starts_at.desc()).limit(limit))).all())


async def past_broadcasts(db: AsyncSession, user_id: int, *, any_host: bool = False,
                          limit: int = 5) -> list[Broadcast]:
    """The latest ended broadcasts a host hosted (every host's, for staff), newest first: where their reports
    are."""
    q = select(Broadcast).where(Broadcast.state == BroadcastState.ENDED)
    if not any_host:
        q = q.join(BroadcastHost, BroadcastHost.broadcast_id == Broadcast.id).where(BroadcastHost.user_id == user_id)
    return list((await db.scalars(q.order_by(Broadcast.starts_at.desc()).limit(limit))).all())


async def build(db: AsyncSession, parts: Sequence[ReportPart], broadcast_id: int) -> Report:
    """The report of one broadcast: every part's figures for it and its previous episodes (one call per part
    for all of them), and every part's details for it."""
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    previous = await previous_episodes(db, b)
    episodes = [b, *previous]
    totals: dict[int, dict[str, int]] = {e.id: {} for e in episodes}
    details: dict[str, Details] = {}
    metrics: list[Metric] = []
    for part in parts:
        for bid, values in (await part.totals(db, episodes)).items():
            totals.setdefault(bid, {}).update(values)
        details[part.name] = await part.details(db, b)
        metrics.extend(part.metrics)
    minutes = show_minutes(b.started_at, b.ended_at, b.starts_at, b.ends_at)
    series = {name: fill(values, minutes) for d in details.values() for name, values in d.series.items()}
    return Report(b, minutes, metrics, totals[b.id], series, details, previous,
                  comparison(metrics, totals[b.id], [totals[e.id] for e in previous]))
