"""Broadcast routes: the viewer's pages (home, live sale page), the host console, staff's
broadcast list, and the broadcasts API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from livecommerce import i18n
from livecommerce.api import Api, Call, path_id
from livecommerce.auth import HOST, PUBLIC, SIGNED_IN, STAFF, access, request_origin
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError
from livecommerce.keys import AppKeys, signed_in_user, state
from livecommerce.models import Market, Role, User
from livecommerce.templating import page, render

from . import chat, ical, planning, report, services, staff_pages
from .lifecycle import poke_scheduler
from .models import Broadcast, BroadcastState, ChatMessage, ChatReport, ExceptionAction
from .room import ROOMS, push_transition
from .schemas import (
    BlockedWordsIn,
    BlockedWordsOut,
    BroadcastOut,
    BroadcastPatch,
    BroadcastsQuery,
    ExceptionIn,
    LineupIn,
    ReminderOut,
    SeriesIn,
    SeriesOut,
    SeriesPatch,
    SpecialIn,
    TransitionOut,
)


def register_api(api: Api) -> None:
    @api.route("GET", "/broadcasts", access=PUBLIC, tag="broadcasts", query=BroadcastsQuery,
               response=list[BroadcastOut], summary="Broadcasts that are coming, open or live")
    async def broadcasts(call: Call[None, BroadcastsQuery]) -> list[BroadcastOut]:
        q = call.query
        states = [q.state] if q.state else list(services.OPEN_STATES)
        async with call.app[AppKeys.reader]() as db:
            rows = await services.list_broadcasts(db, states=states, limit=q.limit)
            return [BroadcastOut.model_validate(b) for b in rows]

    @api.route("GET", "/broadcasts/{broadcast_id}", access=PUBLIC, tag="broadcasts", response=BroadcastOut,
               errors=[404], summary="One broadcast with its line-up")
    async def broadcast(call: Call[None, None]) -> BroadcastOut:
        async with call.app[AppKeys.reader]() as db:
            b = await services.get_broadcast(db, call.param("broadcast_id"), full=True)
            return BroadcastOut.model_validate(b)

    async def _move(call: Call[None, None], wanted: BroadcastState) -> TransitionOut:
        broadcast_id = call.param("broadcast_id")
        user: User = call.user
        async with call.app[AppKeys.db].begin() as db:
            await services.get_broadcast(db, broadcast_id)
            await services.check_host(db, broadcast_id, user.id, user.role)
            t = await services.host_move(db, broadcast_id, wanted, utcnow(), call.app[AppKeys.config])
        await push_transition(call.app, t.broadcast_id, t.state, t.at)
        return TransitionOut(broadcast_id=t.broadcast_id, state=t.state, at=t.at)

    @api.route("POST", "/broadcasts/{broadcast_id}/go-live", access=HOST, tag="broadcasts", response=TransitionOut,
               errors=[404, 409], summary="Go live (a host of this broadcast, or staff)")
    async def go_live(call: Call[None, None]) -> TransitionOut:
        return await _move(call, BroadcastState.LIVE)

    @api.route("POST", "/broadcasts/{broadcast_id}/end", access=HOST, tag="broadcasts", response=TransitionOut,
               errors=[404, 409], summary="End the broadcast (a host of this broadcast, or staff)")
    async def end(call: Call[None, None]) -> TransitionOut:
        return await _move(call, BroadcastState.ENDED)

    @api.route("POST", "/broadcasts/{broadcast_id}/cancel", access=STAFF, tag="schedule", response=TransitionOut,
               errors=[404, 409], summary="Cancel a broadcast that has not started (staff)")
    async def cancel(call: Call[None, None]) -> TransitionOut:
        broadcast_id = call.param("broadcast_id")
        async with call.app[AppKeys.db].begin() as db:
            t = await services.transition(db, broadcast_id, BroadcastState.CANCELLED, utcnow())
        await push_transition(call.app, t.broadcast_id, t.state, t.at)
        poke_scheduler(call.app)
        return TransitionOut(broadcast_id=t.broadcast_id, state=t.state, at=t.at)

    @api.route("GET", "/series", access=STAFF, tag="schedule", response=list[SeriesOut], summary="Every series")
    async def series_list(call: Call[None, None]) -> list[SeriesOut]:
        async with call.app[AppKeys.reader]() as db:
            return [SeriesOut.model_validate(s) for s in await planning.list_series(db)]

    @api.route("POST", "/series", access=STAFF, tag="schedule", body=SeriesIn, response=SeriesOut, status=201,
               errors=[409], summary="Create a weekly series; its broadcasts are created for the coming weeks")
    async def series_create(call: Call[SeriesIn, None]) -> SeriesOut:
        async with call.app[AppKeys.db].begin() as db:
            s = await planning.create_series(db, planning.SeriesInput(**call.body.model_dump()),
                                             call.app[AppKeys.config], utcnow())
            out = SeriesOut.model_validate(await planning.get_series(db, s.id))
        poke_scheduler(call.app)
        return out

    @api.route("PATCH", "/series/{series_id}", access=STAFF, tag="schedule", body=SeriesPatch, response=SeriesOut,
               errors=[404, 409], summary="Change a series; its coming broadcasts follow")
    async def series_update(call: Call[SeriesPatch, None]) -> SeriesOut:
        series_id = call.param("series_id")
        async with call.app[AppKeys.db].begin() as db:
            await planning.update_series(db, series_id, call.body.model_dump(exclude_unset=True),
                                         call.app[AppKeys.config], utcnow())
            out = SeriesOut.model_validate(await planning.get_series(db, series_id))
        poke_scheduler(call.app)
        return out

    @api.route("POST", "/series/{series_id}/exceptions", access=STAFF, tag="schedule", body=ExceptionIn,
               response=SeriesOut, status=201, errors=[404, 409], summary="Skip or move one occurrence")
    async def series_exception(call: Call[ExceptionIn, None]) -> SeriesOut:
        series_id = call.param("series_id")
        b = call.body
        async with call.app[AppKeys.db].begin() as db:
            await planning.add_exception(db, series_id, b.occurrence_local, ExceptionAction(b.action),
                                         b.new_start_local, b.note, call.app[AppKeys.config], utcnow())
            db.expire_all()
            out = SeriesOut.model_validate(await planning.get_series(db, series_id))
        poke_scheduler(call.app)
        return out

    @api.route("POST", "/broadcasts", access=STAFF, tag="schedule", body=SpecialIn, response=BroadcastOut,
               status=201, errors=[409], summary="Plan a one-off broadcast outside any series")
    async def special_create(call: Call[SpecialIn, None]) -> BroadcastOut:
        async with call.app[AppKeys.db].begin() as db:
            b = await planning.create_special(db, planning.BroadcastInput(**call.body.model_dump()),
                                              call.app[AppKeys.config], utcnow())
            out = BroadcastOut.model_validate(await services.get_broadcast(db, b.id, full=True))
        poke_scheduler(call.app)
        return out

    @api.route("PATCH", "/broadcasts/{broadcast_id}", access=STAFF, tag="schedule", body=BroadcastPatch,
               response=BroadcastOut, errors=[404, 409],
               summary="Change a broadcast: titles, stream, hosts, partner channels, time")
    async def broadcast_update(call: Call[BroadcastPatch, None]) -> BroadcastOut:
        broadcast_id = call.param("broadcast_id")
        changes = call.body.model_dump(exclude_unset=True)
        async with call.app[AppKeys.db].begin() as db:
            await planning.update_broadcast(db, broadcast_id, changes, call.app[AppKeys.config], utcnow())
            db.expire_all()
            out = BroadcastOut.model_validate(await services.get_broadcast(db, broadcast_id, full=True))
        poke_scheduler(call.app)
        return out

    @api.route("PUT", "/broadcasts/{broadcast_id}/lineup", access=STAFF, tag="schedule", body=LineupIn,
               response=BroadcastOut, errors=[404, 409], summary="Set the line-up, in running order")
    async def lineup_set(call: Call[LineupIn, None]) -> BroadcastOut:
        broadcast_id = call.param("broadcast_id")
        items = [planning.LineupInput(**i.model_dump()) for i in call.body.items]
        async with call.app[AppKeys.db].begin() as db:
            await planning.set_lineup(db, broadcast_id, items)
            db.expire_all()
            out = BroadcastOut.model_validate(await services.get_broadcast(db, broadcast_id, full=True))
        return out

    @api.route("PUT", "/broadcasts/{broadcast_id}/reminder", access=SIGNED_IN, tag="broadcasts",
               response=ReminderOut, errors=[404, 409], summary="Remind me when this broadcast goes live")
    async def reminder_set(call: Call[None, None]) -> ReminderOut:
        broadcast_id = call.param("broadcast_id")
        async with call.app[AppKeys.db].begin() as db:
            await planning.remind(db, broadcast_id, call.user.id)
        return ReminderOut(broadcast_id=broadcast_id, reminded=True)

    @api.route("DELETE", "/broadcasts/{broadcast_id}/reminder", access=SIGNED_IN, tag="broadcasts",
               response=ReminderOut, errors=[404], summary="No more reminder for this broadcast")
    async def reminder_delete(call: Call[None, None]) -> ReminderOut:
        broadcast_id = call.param("broadcast_id")
        async with call.app[AppKeys.db].begin() as db:
            await planning.forget(db, broadcast_id, call.user.id)
        return ReminderOut(broadcast_id=broadcast_id, reminded=False)


    @api.route("GET", "/chat/blocked-words", access=STAFF, tag="live room", response=BlockedWordsOut,
               summary="Words kept out of chat (staff)")
    async def blocked_words_get(call: Call[None, None]) -> BlockedWordsOut:
        async with call.app[AppKeys.reader]() as db:
            return BlockedWordsOut(words=await chat.blocked_words(db))

    @api.route("PUT", "/chat/blocked-words", access=STAFF, tag="live room", body=BlockedWordsIn,
               response=BlockedWordsOut, summary="Replace the blocked-word list (staff)")
    async def blocked_words_put(call: Call[BlockedWordsIn, None]) -> BlockedWordsOut:
        async with call.app[AppKeys.db].begin() as db:
            words = await chat.set_blocked_words(db, call.body.words)
        call.app[ROOMS].forget_words()
        return BlockedWordsOut(words=words)


def _broadcast_id(request: web.Request) -> int:
    return path_id(request, "broadcast_id", N_("No broadcast with this id."), "broadcast_not_found")


@access(PUBLIC)
@page("home.html")
async def home(request: web.Request) -> dict[str, Any]:
    async with request.app[AppKeys.reader]() as db:
        rows = await services.list_broadcasts(db, states=services.OPEN_STATES, since=utcnow(), limit=20)
        markets = (await db.scalars(select(Market).order_by(Market.id))).all()
    live = [b for b in rows if b.state is BroadcastState.LIVE]
    coming = [b for b in rows if b.state is not BroadcastState.LIVE]
    return {"live": live, "coming": coming, "markets": markets}


@access(PUBLIC)
@page("viewer/live.html")
async def live_page(request: web.Request) -> dict[str, Any]:
    async with request.app[AppKeys.reader]() as db:
        b = await services.get_broadcast(db, _broadcast_id(request), full=True)
    return {"b": b, "broadcast_json": BroadcastOut.model_validate(b).model_dump(mode="json")}


def _days(rows: list[Broadcast], tz: ZoneInfo) -> list[tuple[datetime, list[Broadcast]]]:
    """Broadcasts grouped by their local day, in order."""
    out: list[tuple[datetime, list[Broadcast]]] = []
    for b in rows:
        day = b.starts_at.astimezone(tz).date()
        if not out or out[-1][0].astimezone(tz).date() != day:
            out.append((b.starts_at, []))
        out[-1][1].append(b)
    return out


@access(PUBLIC)
@page("schedule.html")
async def schedule_page(request: web.Request) -> dict[str, Any]:
    config = request.app[AppKeys.config]
    now = utcnow()
    user = state(request).user
    async with request.app[AppKeys.reader]() as db:
        rows = list(await services.list_broadcasts(
            db, states=services.OPEN_STATES, since=now, until=now + timedelta(weeks=config.schedule.weeks_ahead),
            limit=200))
        reminded = await planning.my_reminders(db, user.id) if user else set()
    base = public_base(request)
    return {"days": _days(rows, config.tz), "reminded": reminded,
            "titles": {b.id: i18n.pick(b, "title") for b in rows},
            "webcal_url": "webcal" + base.removeprefix("https").removeprefix("http") + "/schedule.ics"}


def public_base(request: web.Request) -> str:
    config = request.app[AppKeys.config]
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    return request_origin(request, config.server.trust_proxy)


@access(PUBLIC)
async def schedule_ics(request: web.Request) -> web.Response:
    """The coming broadcasts (and the last week's) as an iCalendar feed."""
    config = request.app[AppKeys.config]
    now = utcnow()
    async with request.app[AppKeys.reader]() as db:
        rows = await services.list_broadcasts(
            db, states=list(BroadcastState), since=now - timedelta(weeks=1),
            until=now + timedelta(weeks=config.schedule.weeks_ahead), limit=500)
        markets = (await db.scalars(select(Market).order_by(Market.id))).all()
    base = public_base(request)
    name = markets[0].name_ko + " 라이브" if len(markets) == 1 else "livecommerce"
    body = ical.feed(rows, base_url=base, tz=config.tz, name=name, host=request.host.split(":")[0], now=now,
                     locale=state(request).locale)
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition": 'inline; filename="schedule.ics"',
                                 "Cache-Control": "public, max-age=300"})


@access(STAFF)
async def staff_chat(request: web.Request) -> web.Response:
    """Blocked words and the latest reports."""
    error = None
    status = 200
    if request.method == "POST":
        form = await request.post()
        words = [w for w in str(form.get("words", "")).splitlines()]
        try:
            async with request.app[AppKeys.db].begin() as db:
                await chat.set_blocked_words(db, words)
        except AppError as exc:
            error, status = i18n.gettext(exc.message, **exc.params), exc.status
        else:
            request.app[ROOMS].forget_words()
            raise web.HTTPSeeOther("/staff/chat")
    async with request.app[AppKeys.reader]() as db:
        words = await chat.blocked_words(db)
        reports = (await db.execute(
            select(ChatReport, ChatMessage).join(ChatMessage, ChatReport.message_id == ChatMessage.id)
            .order_by(ChatReport.id.desc()).limit(100))).all()
    return render(request, "staff/chat.html", {"words": words, "reports": reports, "error": error}, status)


@access(HOST)
@page("host/index.html")
async def host_index(request: web.Request) -> dict[str, Any]:
    user = signed_in_user(request)
    async with request.app[AppKeys.reader]() as db:
        rows = await services.host_broadcasts(db, user)
        past = await report.past_broadcasts(db, user.id, any_host=user.role is Role.STAFF)
    return {"broadcasts": rows, "past": past}


@access(HOST)
@page("host/console.html")
async def host_console(request: web.Request) -> dict[str, Any]:
    user = signed_in_user(request)
    broadcast_id = _broadcast_id(request)
    async with request.app[AppKeys.reader]() as db:
        b = await services.get_broadcast(db, broadcast_id, full=True)
        await services.check_host(db, broadcast_id, user.id, user.role)
    return {"b": b, "broadcast_json": BroadcastOut.model_validate(b).model_dump(mode="json")}


@access(STAFF)
@page("staff/index.html")
async def staff_index(request: web.Request) -> dict[str, Any]:
    async with request.app[AppKeys.reader]() as db:
        rows = await services.list_broadcasts(db, limit=100)
    return {"broadcasts": rows}


def register_pages(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home, name="home")
    r.add_get("/live/{broadcast_id}", live_page, name="live")
    r.add_get("/schedule", schedule_page, name="schedule")
    r.add_get("/schedule.ics", schedule_ics, name="schedule_ics")
    r.add_get("/host", host_index, name="host_index")
    r.add_get("/host/broadcasts/{broadcast_id}", host_console, name="host_console")
    r.add_get("/staff", staff_index, name="staff_index")
    r.add_route("*", "/staff/chat", staff_chat, name="staff_chat")
    staff_pages.register(app)
