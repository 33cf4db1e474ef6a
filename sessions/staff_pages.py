"""Staff's schedule pages: a calendar of the coming weeks, weekly series (with shows skipped or
moved), one-off specials, and one broadcast's details, partner channels and line-up.

Handlers read the form, check what a person can get wrong (numbers, empty titles, addresses),
call the planning services, and either redirect (303) or show the form again with the reason
and what was typed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce import i18n
from livecommerce.api import path_id
from livecommerce.auth import STAFF, access
from livecommerce.config import Config
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError, NotFound, ValidationFailed
from livecommerce.keys import AppKeys
from livecommerce.models import Market, Merchant, Product, Role, User
from livecommerce.templating import render

from . import planning, services
from .lifecycle import poke_scheduler
from .models import Broadcast, BroadcastHost, BroadcastState, ExceptionAction, LineupItem, Series
from .room import push_transition
from .schedule import LOCAL_FORMAT, ScheduleError, format_local, weekly_rrule
from .wording import CHANNELS, channel_name, series_in_words

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DEFAULT_WEEKS = 4
MAX_WEEKS = 12
OCCURRENCE_WEEKS = 4
PARTNER_ROWS = 5
UNPLACED = 10**9  # a line-up row without a running-order number goes last

# Field names as the forms label them; errors name the field the same way.
F_MARKET = N_("Market")
F_TITLE_KO = N_("Title (Korean)")
F_TITLE_EN = N_("Title (English)")
F_DESCRIPTION_KO = N_("Description (Korean)")
F_DESCRIPTION_EN = N_("Description (English)")
F_START_TIME = N_("Start time")
F_FIRST_DATE = N_("First show")
F_END_DATE = N_("Last day")
F_DURATION = N_("Duration (minutes)")
F_STREAM_URL = N_("Stream URL")
F_EMBED_URL = N_("Embed URL")
F_RECORDING_URL = N_("Recording URL")
F_CHANNEL = N_("Channel")
F_RRULE = N_("RRULE")
F_STARTS = N_("Starts")
F_HOSTS = N_("Hosts")
F_NEW_START = N_("New start")
F_NOTE = N_("Note")
F_PARTNER_NAME = N_("Partner name")
F_PARTNER_URL = N_("Partner URL")

_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d", re.ASCII)
_INT = re.compile(r"[+-]?\d{1,9}", re.ASCII)
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_WEEKLY = re.compile(r"FREQ=WEEKLY;BYDAY=((?:MO|TU|WE|TH|FR|SA|SU)(?:,(?:MO|TU|WE|TH|FR|SA|SU))*);"
                     r"BYHOUR=(\d{1,2});BYMINUTE=(\d{1,2});BYSECOND=0", re.ASCII)

Form = Mapping[str, Any]


# -- reading what was typed ---------------------------------------------------------------------

def _get(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _all(form: Any, name: str) -> list[str]:
    getall = getattr(form, "getall", None)
    values = getall(name, []) if getall else ([form[name]] if name in form else [])
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _checked(form: Form, name: str) -> bool:
    return _get(form, name) not in ("", "0", "off", "false")


def _text(value: str, label: str, max_len: int, *, required: bool = False) -> str:
    if required and not value:
        raise ValidationFailed("%(field)s is required.", code="required", field=label)
    if len(value) > max_len:
        raise ValidationFailed("%(field)s is too long (at most %(max)s characters).", code="too_long",
                               field=label, max=max_len)
    return value


def _int(value: str, label: str, *, minimum: int | None = None) -> int:
    if not _INT.fullmatch(value):
        raise ValidationFailed("%(field)s must be a whole number.", code="not_a_number", field=label)
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValidationFailed("%(field)s must be %(min)s or more.", code="too_small", field=label, min=minimum)
    return number


def _url(value: str, label: str) -> str:
    _text(value, label, 500)
    if value and not _URL.fullmatch(value):
        raise ValidationFailed("%(field)s must be a web address starting with http:// or https://.",
                               code="invalid_url", field=label)
    return value


def _date(value: str, label: str) -> str:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValidationFailed("%(field)s must be a date like 2026-11-30.", code="invalid_date", field=label)


def _time(value: str, label: str) -> str:
    if len(value) == 8 and value.endswith(":00"):  # HH:MM:SS from some browsers
        value = value[:5]
    if not _TIME.fullmatch(value):
        raise ValidationFailed("%(field)s must be a time like 19:00.", code="invalid_time", field=label)
    return value


def _local(value: str, label: str) -> str:
    """A `datetime-local` value as `YYYY-MM-DDTHH:MM` (browsers may add `:00` seconds)."""
    text = value.replace(" ", "T")
    if len(text) == 19 and text.endswith(":00"):
        text = text[:16]
    try:
        if len(text) != 16 or not text.isascii():
            raise ValueError(text)
        datetime.strptime(text, LOCAL_FORMAT)
    except ValueError:
        raise ValidationFailed("%(field)s must be a date and time like 2026-11-30T19:00.", code="invalid_time",
                               field=label) from None
    return text


def _ids(form: Form, name: str, label: str) -> list[int]:
    return sorted({_int(v, label, minimum=1) for v in _all(form, name)})


def _message(exc: AppError) -> str:
    return i18n.gettext(exc.message, **exc.params)


# -- small lookups ------------------------------------------------------------------------------

def _series_id(request: web.Request) -> int:
    return path_id(request, "series_id", N_("No series with this id."), "series_not_found")


def _broadcast_id(request: web.Request) -> int:
    return path_id(request, "broadcast_id", N_("No broadcast with this id."), "broadcast_not_found")


async def _markets(db: AsyncSession) -> Sequence[Market]:
    return (await db.scalars(select(Market).order_by(Market.id))).all()


async def _host_choices(db: AsyncSession) -> Sequence[User]:
    """Who may host: active hosts and staff."""
    return (await db.scalars(select(User).where(User.role.in_([Role.HOST, Role.STAFF]), User.is_active.is_(True),
                                                User.is_guest.is_(False))
                             .order_by(User.role, User.display_name, User.id))).all()


def _config(request: web.Request) -> Config:
    return request.app[AppKeys.config]


def _tz(request: web.Request) -> ZoneInfo:
    return _config(request).tz


def _local_of(moment: datetime, tz: ZoneInfo) -> str:
    return format_local(moment.astimezone(tz).replace(tzinfo=None))


def _aware_local(text: str, tz: ZoneInfo) -> datetime | None:
    """A stored local wall-clock time, as an aware moment for the `localtime` filter."""
    try:
        return datetime.strptime(text, LOCAL_FORMAT).replace(tzinfo=tz)
    except (TypeError, ValueError):
        return None


# -- the schedule -------------------------------------------------------------------------------

@dataclass
class Day:
    date: date
    moment: datetime  # local midnight, aware
    today: bool
    past: bool
    broadcasts: list[Broadcast]


def _weeks(value: str | None) -> int:
    if value and value.isdecimal():
        return max(1, min(MAX_WEEKS, int(value)))
    return DEFAULT_WEEKS


@access(STAFF)
async def schedule_page(request: web.Request) -> web.StreamResponse:
    tz = _tz(request)
    weeks = _weeks(request.query.get("weeks"))
    now = utcnow()
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    first = datetime.combine(monday, time(0), tzinfo=tz)
    last = datetime.combine(monday + timedelta(weeks=weeks), time(0), tzinfo=tz)
    async with request.app[AppKeys.reader]() as db:
        rows = (await db.scalars(
            select(Broadcast)
            .options(selectinload(Broadcast.hosts).selectinload(BroadcastHost.user), selectinload(Broadcast.lineup))
            .where(Broadcast.starts_at >= first.astimezone(UTC), Broadcast.starts_at < last.astimezone(UTC))
            .order_by(Broadcast.starts_at, Broadcast.id))).all()
        series = await planning.list_series(db)
        host_ids = {h.user_id for s in series for h in s.hosts}
        users = {u.id: u for u in (await db.scalars(select(User).where(User.id.in_(host_ids)))).all()} \
            if host_ids else {}
        markets = {m.id: m for m in await _markets(db)}
    by_day: dict[date, list[Broadcast]] = {}
    for b in rows:
        by_day.setdefault(b.starts_at.astimezone(tz).date(), []).append(b)
    calendar = []
    for w in range(weeks):
        days = []
        for d in range(7):
            day = monday + timedelta(weeks=w, days=d)
            days.append(Day(day, datetime.combine(day, time(0), tzinfo=tz), day == today, day < today,
                            by_day.get(day, [])))
        calendar.append(days)
    series_rows = [{
        "s": s,
        "words": series_in_words(s.rrule, s.dtstart_local, s.duration_minutes),
        "first": _aware_local(s.dtstart_local, ZoneInfo(s.timezone)),
        "until": _aware_local(s.until_local, ZoneInfo(s.timezone)) if s.until_local else None,
        "hosts": [users[h.user_id].display_name for h in s.hosts if h.user_id in users],
        "market": markets.get(s.market_id),
    } for s in series]
    return render(request, "staff/schedule.html", {
        "weeks": weeks, "week_choices": sorted({1, 2, 4, 8, 12, weeks}), "calendar": calendar, "broadcasts": rows,
        "series_rows": series_rows, "today": today, "now": now,
    })


# -- series -------------------------------------------------------------------------------------

def _series_defaults(config: Config, markets: Sequence[Market], tz: ZoneInfo) -> dict[str, Any]:
    sc = config.schedule
    return {
        "market_id": str(markets[0].id) if markets else "", "title_ko": "", "title_en": "",
        "weekdays": list(sc.weekdays), "start_time": sc.start_time, "rrule": "",
        "first_date": utcnow().astimezone(tz).date().isoformat(), "end_date": "",
        "duration_minutes": str(sc.duration_minutes), "auto_live": False, "stream_url": "", "channel": "main",
        "host_ids": [], "is_active": True,
    }


def _series_form_of(s: Series) -> dict[str, Any]:
    start_time = s.dtstart_local[11:16]
    weekdays: list[str] = []
    rrule = s.rrule
    m = _WEEKLY.fullmatch(s.rrule)
    if m and f"{int(m.group(2)):02d}:{int(m.group(3)):02d}" == start_time:
        weekdays, rrule = m.group(1).split(","), ""
    return {
        "market_id": str(s.market_id), "title_ko": s.title_ko, "title_en": s.title_en, "weekdays": weekdays,
        "start_time": start_time, "rrule": rrule, "first_date": s.dtstart_local[:10],
        "end_date": s.until_local[:10] if s.until_local else "", "duration_minutes": str(s.duration_minutes),
        "auto_live": s.auto_live, "stream_url": s.stream_url, "channel": s.channel,
        "host_ids": [str(h.user_id) for h in s.hosts], "is_active": s.is_active,
    }


def _series_form_echo(form: Form) -> dict[str, Any]:
    return {
        "market_id": _get(form, "market_id"), "title_ko": _get(form, "title_ko"), "title_en": _get(form, "title_en"),
        "weekdays": [d for d in _all(form, "weekdays") if d in WEEKDAYS], "start_time": _get(form, "start_time"),
        "rrule": _get(form, "rrule"), "first_date": _get(form, "first_date"), "end_date": _get(form, "end_date"),
        "duration_minutes": _get(form, "duration_minutes"), "auto_live": _checked(form, "auto_live"),
        "stream_url": _get(form, "stream_url"), "channel": _get(form, "channel"),
        "host_ids": _all(form, "host_ids"), "is_active": _checked(form, "is_active"),
    }


def _series_values(form: Form, *, with_market: bool) -> dict[str, Any]:
    """The series fields the services take, from the form; ValidationFailed names what is wrong."""
    out: dict[str, Any] = {}
    if with_market:
        out["market_id"] = _int(_get(form, "market_id"), F_MARKET, minimum=1)
    out["title_ko"] = _text(_get(form, "title_ko"), F_TITLE_KO, 120, required=True)
    out["title_en"] = _text(_get(form, "title_en"), F_TITLE_EN, 120) or out["title_ko"]
    start_time = _time(_get(form, "start_time"), F_START_TIME)
    rrule = _text(_get(form, "rrule"), F_RRULE, 500)
    if not rrule:
        days = set(_all(form, "weekdays"))
        weekdays = [d for d in WEEKDAYS if d in days]
        if not weekdays:
            raise ValidationFailed("Choose at least one weekday, or write an RRULE.", code="weekdays_required")
        rrule = weekly_rrule(weekdays, start_time)
    out["rrule"] = rrule
    out["dtstart_local"] = f"{_date(_get(form, 'first_date'), F_FIRST_DATE)}T{start_time}"
    end_date = _get(form, "end_date")
    out["until_local"] = f"{_date(end_date, F_END_DATE)}T23:59" if end_date else None
    out["duration_minutes"] = _int(_get(form, "duration_minutes"), F_DURATION)
    out["auto_live"] = _checked(form, "auto_live")
    out["stream_url"] = _url(_get(form, "stream_url"), F_STREAM_URL)
    out["channel"] = _text(_get(form, "channel"), F_CHANNEL, 64) or "main"
    out["host_ids"] = _ids(form, "host_ids", F_HOSTS)
    return out


async def _series_page(request: web.Request, series_id: int | None, f: dict[str, Any] | None = None, *,
                       error: str | None = None, exc_error: str | None = None,
                       exc_form: dict[str, str] | None = None, status: int = 200) -> web.Response:
    config = _config(request)
    now = utcnow()
    async with request.app[AppKeys.reader]() as db:
        markets = await _markets(db)
        hosts = await _host_choices(db)
        series: Series | None = None
        occurrences: list[dict[str, Any]] = []
        exceptions: list[dict[str, Any]] = []
        if series_id is not None:
            series = await planning.get_series(db, series_id)
            tz = ZoneInfo(series.timezone)
            try:
                occ = planning.occurrences(series, now, now + timedelta(weeks=OCCURRENCE_WEEKS))
            except ScheduleError:
                occ = []
            keys = [o.key for o in occ]
            made = {b.occurrence_local: b for b in (await db.scalars(select(Broadcast).where(
                Broadcast.series_id == series.id, Broadcast.occurrence_local.in_(keys)))).all()} if keys else {}
            occurrences = [{"o": o, "b": made.get(o.key), "original": _aware_local(o.key, tz),
                            "local": _local_of(o.starts_at, tz)} for o in occ]
            exceptions = [{"e": e, "original": _aware_local(e.occurrence_local, tz),
                           "new": _aware_local(e.new_start_local, tz) if e.new_start_local else None}
                          for e in series.exceptions]
    if f is None:
        f = _series_form_of(series) if series is not None else _series_defaults(config, markets, config.tz)
    return render(request, "staff/series_form.html", {
        "series": series, "f": f, "markets": markets, "hosts": hosts, "weekdays": WEEKDAYS, "error": error,
        "occurrences": occurrences, "exceptions": exceptions, "exc_error": exc_error, "exc_form": exc_form or {},
        "max_duration": config.schedule.max_duration_minutes, "occurrence_weeks": OCCURRENCE_WEEKS,
    }, status)


@access(STAFF)
async def series_new(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return await _series_page(request, None)
    form = await request.post()
    config = _config(request)
    try:
        values = _series_values(form, with_market=True)
        data = planning.SeriesInput(timezone=config.schedule.timezone, **values)
        async with request.app[AppKeys.db].begin() as db:
            await planning.create_series(db, data, config, utcnow())
    except AppError as exc:
        return await _series_page(request, None, _series_form_echo(form), error=_message(exc), status=exc.status)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther("/staff/schedule")


@access(STAFF)
async def series_edit(request: web.Request) -> web.StreamResponse:
    series_id = _series_id(request)
    if request.method != "POST":
        return await _series_page(request, series_id)
    form = await request.post()
    config = _config(request)
    try:
        changes = _series_values(form, with_market=False)
        changes["is_active"] = _checked(form, "is_active")
        async with request.app[AppKeys.db].begin() as db:
            await planning.update_series(db, series_id, changes, config, utcnow())
    except AppError as exc:
        return await _series_page(request, series_id, _series_form_echo(form), error=_message(exc),
                                  status=exc.status)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther("/staff/schedule")


@access(STAFF)
async def series_exception(request: web.Request) -> web.StreamResponse:
    series_id = _series_id(request)
    form = await request.post()
    config = _config(request)
    typed = {k: _get(form, k) for k in ("occurrence_local", "action", "new_start_local", "note")}
    try:
        occurrence = _local(typed["occurrence_local"], F_STARTS)
        try:
            action = ExceptionAction(typed["action"])
        except ValueError:
            raise ValidationFailed("Choose to skip or to move the show.", code="invalid_action") from None
        new_start = None
        if action is ExceptionAction.MOVE:
            new_start = _local(_text(typed["new_start_local"], F_NEW_START, 16, required=True), F_NEW_START)
        note = _text(typed["note"], F_NOTE, 200)
        async with request.app[AppKeys.db].begin() as db:
            await planning.add_exception(db, series_id, occurrence, action, new_start, note, config, utcnow())
    except AppError as exc:
        return await _series_page(request, series_id, exc_error=_message(exc), exc_form=typed, status=exc.status)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther(f"/staff/series/{series_id}")


# -- one broadcast ------------------------------------------------------------------------------

def _special_defaults(config: Config, markets: Sequence[Market], tz: ZoneInfo) -> dict[str, Any]:
    start = (utcnow().astimezone(tz) + timedelta(days=1)).replace(second=0, microsecond=0)
    hh, _, mm = config.schedule.start_time.partition(":")
    start = start.replace(hour=int(hh), minute=int(mm))
    return {
        "market_id": str(markets[0].id) if markets else "", "title_ko": "", "title_en": "", "description_ko": "",
        "description_en": "", "starts_local": format_local(start.replace(tzinfo=None)),
        "duration_minutes": str(config.schedule.duration_minutes), "stream_url": "", "embed_url": "",
        "channel": "main", "auto_live": False, "host_ids": [],
        "partners": [{"name": "", "url": ""} for _ in range(PARTNER_ROWS)],
    }


def _broadcast_form_of(b: Broadcast, tz: ZoneInfo) -> dict[str, Any]:
    partners = [{"name": p.name, "url": p.url} for p in b.partners][:PARTNER_ROWS]
    partners += [{"name": "", "url": ""} for _ in range(PARTNER_ROWS - len(partners))]
    return {
        "market_id": str(b.market_id), "title_ko": b.title_ko, "title_en": b.title_en,
        "description_ko": b.description_ko, "description_en": b.description_en,
        "starts_local": _local_of(b.starts_at, tz),
        "duration_minutes": str(int((b.ends_at - b.starts_at).total_seconds() // 60)),
        "stream_url": b.stream_url, "embed_url": b.embed_url, "channel": b.channel, "auto_live": b.auto_live,
        "host_ids": [str(h.user_id) for h in b.hosts], "partners": partners,
    }


def _broadcast_form_echo(form: Form) -> dict[str, Any]:
    out: dict[str, Any] = {k: _get(form, k) for k in (
        "market_id", "title_ko", "title_en", "description_ko", "description_en", "starts_local",
        "duration_minutes", "stream_url", "embed_url", "channel")}
    out["auto_live"] = _checked(form, "auto_live")
    out["host_ids"] = _all(form, "host_ids")
    out["partners"] = [{"name": _get(form, f"partner_name_{i}"), "url": _get(form, f"partner_url_{i}")}
                       for i in range(PARTNER_ROWS)]
    return out


def _broadcast_details(form: Form) -> dict[str, Any]:
    """Titles, descriptions, addresses, channel, auto go-live and hosts, as the services take them."""
    out: dict[str, Any] = {}
    out["title_ko"] = _text(_get(form, "title_ko"), F_TITLE_KO, 120, required=True)
    out["title_en"] = _text(_get(form, "title_en"), F_TITLE_EN, 120) or out["title_ko"]
    out["description_ko"] = _text(_get(form, "description_ko"), F_DESCRIPTION_KO, 5000)
    out["description_en"] = _text(_get(form, "description_en"), F_DESCRIPTION_EN, 5000)
    out["stream_url"] = _url(_get(form, "stream_url"), F_STREAM_URL)
    out["embed_url"] = _url(_get(form, "embed_url"), F_EMBED_URL)
    out["channel"] = _text(_get(form, "channel"), F_CHANNEL, 64) or "main"
    out["auto_live"] = _checked(form, "auto_live")
    out["host_ids"] = _ids(form, "host_ids", F_HOSTS)
    return out


def _partners(form: Form) -> list[dict[str, str]]:
    out = []
    for i in range(PARTNER_ROWS):
        name = _text(_get(form, f"partner_name_{i}"), F_PARTNER_NAME, 80)
        url = _url(_get(form, f"partner_url_{i}"), F_PARTNER_URL)
        if not name and not url:
            continue
        if not name or not url:
            raise ValidationFailed("Partner channel %(n)s needs both a name and a web address.",
                                   code="partner_incomplete", n=i + 1)
        out.append({"name": name, "url": url})
    return out


async def _load_broadcast(db: AsyncSession, broadcast_id: int) -> Broadcast:
    b = await db.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).options(
        selectinload(Broadcast.hosts).selectinload(BroadcastHost.user),
        selectinload(Broadcast.lineup).selectinload(LineupItem.product),
        selectinload(Broadcast.partners), selectinload(Broadcast.market)))
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    return b


def _lineup_rows(b: Broadcast, products: Iterable[tuple[Product, Merchant]]) -> list[dict[str, Any]]:
    current = {item.product_id: item for item in b.lineup}
    rows: list[dict[str, Any]] = []
    for p, merchant in products:
        item = current.get(p.id)
        if not p.is_active and item is None:
            continue
        rows.append({
            "p": p, "merchant": merchant, "included": item is not None,
            "price": str(item.live_price if item else p.price), "reserved": str(item.stock_reserved if item else 0),
            "position": str(item.position + 1) if item else "",
        })
    rows.sort(key=lambda r: (not r["included"], int(r["position"]) if r["position"] else 0))
    return rows


def _lineup_echo(rows: list[dict[str, Any]], form: Form) -> None:
    for r in rows:
        pid = r["p"].id
        r["included"] = _checked(form, f"include_{pid}")
        r["price"] = _get(form, f"price_{pid}")
        r["reserved"] = _get(form, f"reserved_{pid}")
        r["position"] = _get(form, f"position_{pid}")


def _lineup_items(rows: list[dict[str, Any]], form: Form) -> list[planning.LineupInput]:
    """The checked rows, in running order (rows without a number keep their place, after the numbered)."""
    chosen: list[tuple[int, int, planning.LineupInput]] = []
    for index, r in enumerate(rows):
        p: Product = r["p"]
        if not _checked(form, f"include_{p.id}"):
            continue
        name = i18n.pick(p, "name")
        price, reserved, position = (_get(form, f"{k}_{p.id}") for k in ("price", "reserved", "position"))
        if not _INT.fullmatch(price) or int(price) < 0:
            raise ValidationFailed("The live price of %(product)s must be a whole number of won, 0 or more.",
                                   code="invalid_price", product=name)
        if not _INT.fullmatch(reserved or "0") or int(reserved or "0") < 0:
            raise ValidationFailed("The stock set aside for %(product)s must be a whole number, 0 or more.",
                                   code="invalid_reservation", product=name)
        if position and not _INT.fullmatch(position):
            raise ValidationFailed("The running order of %(product)s must be a whole number.",
                                   code="invalid_position", product=name)
        chosen.append((int(position) if position else UNPLACED, index,
                       planning.LineupInput(p.id, int(price), int(reserved or "0"))))
    chosen.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in chosen]


async def _market_products(db: AsyncSession, market_id: int) -> list[tuple[Product, Merchant]]:
    rows = (await db.execute(select(Product, Merchant).join(Merchant, Product.merchant_id == Merchant.id)
                             .where(Merchant.market_id == market_id).order_by(Merchant.id, Product.id))).all()
    return [(p, m) for p, m in rows]


async def _broadcast_page(request: web.Request, broadcast_id: int, f: dict[str, Any] | None = None, *,
                          error: str | None = None, lineup_form: Form | None = None,
                          lineup_error: str | None = None, recording: tuple[str, str] | None = None,
                          status: int = 200) -> web.Response:
    tz = _tz(request)
    async with request.app[AppKeys.reader]() as db:
        b = await _load_broadcast(db, broadcast_id)
        hosts = await _host_choices(db)
        rows = _lineup_rows(b, await _market_products(db, b.market_id))
        series = await db.get(Series, b.series_id) if b.series_id is not None else None
    if lineup_form is not None:
        _lineup_echo(rows, lineup_form)
    return render(request, "staff/broadcast_form.html", {
        "b": b, "f": f or _broadcast_form_of(b, tz), "hosts": hosts, "rows": rows, "series": series,
        "error": error, "lineup_error": lineup_error, "saved": request.query.get("saved", ""),
        "recording_url": recording[0] if recording else b.recording_url,
        "recording_error": recording[1] if recording else None,
        "editable": b.state not in (BroadcastState.ENDED, BroadcastState.MISSED, BroadcastState.CANCELLED),
        "time_editable": b.state is BroadcastState.SCHEDULED,
        "cancellable": b.state in (BroadcastState.SCHEDULED, BroadcastState.LOBBY),
        "max_duration": _config(request).schedule.max_duration_minutes,
    }, status)


async def _special_page(request: web.Request, f: dict[str, Any] | None = None, *, error: str | None = None,
                        status: int = 200) -> web.Response:
    config = _config(request)
    async with request.app[AppKeys.reader]() as db:
        markets = await _markets(db)
        hosts = await _host_choices(db)
    return render(request, "staff/broadcast_form.html", {
        "b": None, "f": f or _special_defaults(config, markets, config.tz), "markets": markets, "hosts": hosts,
        "rows": [], "series": None, "error": error, "lineup_error": None, "saved": "", "editable": True,
        "time_editable": True, "cancellable": False, "max_duration": config.schedule.max_duration_minutes,
    }, status)


@access(STAFF)
async def broadcast_new(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return await _special_page(request)
    form = await request.post()
    config = _config(request)
    try:
        values = _broadcast_details(form)
        values["market_id"] = _int(_get(form, "market_id"), F_MARKET, minimum=1)
        values["starts_local"] = _local(_text(_get(form, "starts_local"), F_STARTS, 19, required=True), F_STARTS)
        values["duration_minutes"] = _int(_get(form, "duration_minutes"), F_DURATION)
        data = planning.BroadcastInput(timezone=config.schedule.timezone, **values)
        async with request.app[AppKeys.db].begin() as db:
            b = await planning.create_special(db, data, config, utcnow())
            new_id = b.id
    except AppError as exc:
        return await _special_page(request, _broadcast_form_echo(form), error=_message(exc), status=exc.status)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther(f"/staff/broadcasts/{new_id}?saved=created")


@access(STAFF)
async def broadcast_edit(request: web.Request) -> web.StreamResponse:
    broadcast_id = _broadcast_id(request)
    if request.method != "POST":
        return await _broadcast_page(request, broadcast_id)
    form = await request.post()
    config = _config(request)
    tz = config.tz
    try:
        changes: dict[str, object] = dict(_broadcast_details(form))
        changes["partners"] = _partners(form)
        async with request.app[AppKeys.db].begin() as db:
            b = await db.get(Broadcast, broadcast_id)
            if b is None:
                raise NotFound("No broadcast with this id.", code="broadcast_not_found")
            if b.state is BroadcastState.SCHEDULED and ("starts_local" in form or "duration_minutes" in form):
                starts_local = _local(_text(_get(form, "starts_local"), F_STARTS, 19, required=True), F_STARTS)
                duration = _int(_get(form, "duration_minutes"), F_DURATION)
                if starts_local != _local_of(b.starts_at, tz):
                    changes["starts_local"] = starts_local
                if duration != int((b.ends_at - b.starts_at).total_seconds() // 60):
                    changes["duration_minutes"] = duration
            await planning.update_broadcast(db, broadcast_id, changes, config, utcnow())
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _broadcast_page(request, broadcast_id, _broadcast_form_echo(form), error=_message(exc),
                                     status=exc.status)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther(f"/staff/broadcasts/{broadcast_id}?saved=details")


@access(STAFF)
async def broadcast_lineup(request: web.Request) -> web.StreamResponse:
    broadcast_id = _broadcast_id(request)
    form = await request.post()
    try:
        async with request.app[AppKeys.db].begin() as db:
            b = await _load_broadcast(db, broadcast_id)
            rows = _lineup_rows(b, await _market_products(db, b.market_id))
            items = _lineup_items(rows, form)
            await planning.set_lineup(db, broadcast_id, items)
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _broadcast_page(request, broadcast_id, lineup_form=form, lineup_error=_message(exc),
                                     status=exc.status)
    raise web.HTTPSeeOther(f"/staff/broadcasts/{broadcast_id}?saved=lineup#lineup")


@access(STAFF)
async def broadcast_cancel(request: web.Request) -> web.StreamResponse:
    broadcast_id = _broadcast_id(request)
    try:
        async with request.app[AppKeys.db].begin() as db:
            t = await services.transition(db, broadcast_id, BroadcastState.CANCELLED, utcnow())
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _broadcast_page(request, broadcast_id, error=_message(exc), status=exc.status)
    await push_transition(request.app, t.broadcast_id, t.state, t.at)
    poke_scheduler(request.app)
    raise web.HTTPSeeOther(f"/staff/broadcasts/{broadcast_id}?saved=cancelled")


@access(STAFF)
async def broadcast_recording(request: web.Request) -> web.StreamResponse:
    """The show's recording (any time, the show over included): its page plays it back once it has ended."""
    broadcast_id = _broadcast_id(request)
    form = await request.post()
    typed = _get(form, "recording_url")
    try:
        url = _url(typed, F_RECORDING_URL)
        async with request.app[AppKeys.db].begin() as db:
            await planning.update_broadcast(db, broadcast_id, {"recording_url": url}, _config(request), utcnow())
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _broadcast_page(request, broadcast_id, recording=(typed, _message(exc)), status=exc.status)
    raise web.HTTPSeeOther(f"/staff/broadcasts/{broadcast_id}?saved=recording#recording")


def channel_choices(current: str = "") -> list[tuple[str, str]]:
    """The channels to choose from, by name: the market's, and the one given if it is another."""
    codes = [*CHANNELS, *([current] if current and current not in CHANNELS else [])]
    return [(code, channel_name(code)) for code in codes]


def register(app: web.Application) -> None:
    """Add the staff's schedule pages (every route for staff only), and the words the pages say codes in."""
    env = aiohttp_jinja2.get_env(app)
    env.filters["channel_name"] = channel_name
    env.globals["series_in_words"] = series_in_words
    env.globals["channel_choices"] = channel_choices
    r = app.router
    r.add_get("/staff/schedule", schedule_page, name="staff_schedule")
    r.add_get("/staff/series/new", series_new, name="staff_series_new")
    r.add_post("/staff/series/new", series_new)
    r.add_get(r"/staff/series/{series_id:\d+}", series_edit, name="staff_series")
    r.add_post(r"/staff/series/{series_id:\d+}", series_edit)
    r.add_post(r"/staff/series/{series_id:\d+}/exceptions", series_exception, name="staff_series_exceptions")
    r.add_get("/staff/broadcasts/new", broadcast_new, name="staff_broadcast_new")
    r.add_post("/staff/broadcasts/new", broadcast_new)
    r.add_get(r"/staff/broadcasts/{broadcast_id:\d+}", broadcast_edit, name="staff_broadcast")
    r.add_post(r"/staff/broadcasts/{broadcast_id:\d+}", broadcast_edit)
    r.add_post(r"/staff/broadcasts/{broadcast_id:\d+}/lineup", broadcast_lineup, name="staff_broadcast_lineup")
    r.add_post(r"/staff/broadcasts/{broadcast_id:\d+}/cancel", broadcast_cancel, name="staff_broadcast_cancel")
    r.add_post(r"/staff/broadcasts/{broadcast_id:\d+}/recording", broadcast_recording,
               name="staff_broadcast_recording")
