"""`setup(app)`: purchases in the app — the API and pages, the payment providers, the `buy` socket event,
and the sales feed in the room (a purchase listener and a room-ticker listener)."""

from __future__ import annotations

from aiohttp import web

from livecommerce.api import API
from sessions.room import room_hooks

from . import events, feed, services, views


def setup(app: web.Application) -> None:
    views.register(app, app[API])
    events.setup(app)
    app[services.PURCHASE_LISTENERS].append(feed.on_purchase)
    room_hooks(app).on_tick.append(feed.on_tick)
    app.cleanup_ctx.append(feed.sales_ctx)
