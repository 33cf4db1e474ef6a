"""Broadcast routes: the viewer's pages (home, live sale page), the host console, staff's
broadcast list, and the broadcasts API."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from livecommerce.api import Api, Call
from livecommerce.auth import HOST, PUBLIC, STAFF, access
from livecommerce.db import utcnow
from livecommerce.errors import NotFound
from livecommerce.keys import AppKeys, state
from livecommerce.models import Market, User
from livecommerce.templating import page

from . import services
from .events import push_transition
from .models import BroadcastState
from .schemas import BroadcastOut, BroadcastsQuery, TransitionOut


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
            t = await services.transition(db, broadcast_id, wanted, utcnow())
        await push_transition(call.app, t)
        return TransitionOut(broadcast_id=t.broadcast_id, state=t.state, at=t.at)

    @api.route("POST", "/broadcasts/{broadcast_id}/go-live", access=HOST, tag="broadcasts", response=TransitionOut,
               errors=[404, 409], summary="Go live (a host of this broadcast, or staff)")
    async def go_live(call: Call[None, None]) -> TransitionOut:
        return await _move(call, BroadcastState.LIVE)

    @api.route("POST", "/broadcasts/{broadcast_id}/end", access=HOST, tag="broadcasts", response=TransitionOut,
               errors=[404, 409], summary="End the broadcast (a host of this broadcast, or staff)")
    async def end(call: Call[None, None]) -> TransitionOut:
        return await _move(call, BroadcastState.ENDED)


def _user(request: web.Request) -> User:
    user = state(request).user
    assert user is not None  # the access rule let only signed-in users through
    return user


def _broadcast_id(request: web.Request) -> int:
    raw = request.match_info["broadcast_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    return int(raw)


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


@access(HOST)
@page("host/index.html")
async def host_index(request: web.Request) -> dict[str, Any]:
    async with request.app[AppKeys.reader]() as db:
        rows = await services.host_broadcasts(db, _user(request))
    return {"broadcasts": rows}


@access(HOST)
@page("host/console.html")
async def host_console(request: web.Request) -> dict[str, Any]:
    user = _user(request)
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
    r.add_get("/host", host_index, name="host_index")
    r.add_get("/host/broadcasts/{broadcast_id}", host_console, name="host_console")
    r.add_get("/staff", staff_index, name="staff_index")
