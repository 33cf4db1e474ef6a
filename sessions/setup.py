"""`setup(app)`: broadcasts in the app — the API and pages, the room's socket events, the scheduler and the
room's runtime (stream, limits, figures)."""

from __future__ import annotations

from aiohttp import web

from livecommerce.api import API

from . import events, views
from .lifecycle import scheduler_ctx
from .room import room_hooks, rooms_ctx


def setup(app: web.Application) -> None:
    room_hooks(app)  # other domains register into the room's hooks in their own setup
    views.register_api(app[API])
    views.register_pages(app)
    events.setup(app)
    app.cleanup_ctx.append(scheduler_ctx)
    app.cleanup_ctx.append(rooms_ctx)
