"""`setup(app)`: broadcasts in the app — the API and pages, the room's socket events, the scheduler and the
room's runtime (stream, limits, figures)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from livecommerce.api import API
from livecommerce.caches import KeptReads, Watch
from livecommerce.keys import AppKeys

from . import events, ingest, reminders, replay, report, report_views, views
from .lifecycle import scheduler_ctx
from .room import room_hooks, rooms_ctx


def setup(app: web.Application) -> None:
    room_hooks(app)  # other domains register into the room's hooks in their own setup
    report.report_parts(app)  # and add their parts to a broadcast's report
    views.register_api(app[API])
    views.register_pages(app)
    report_views.register_api(app[API])
    replay.register_api(app[API])
    report_views.register_pages(app)
    reminders.setup(app)
    events.setup(app)
    app.cleanup_ctx.append(scheduler_ctx)
    app.cleanup_ctx.append(rooms_ctx)
    app[AppKeys.caches].keep(app, ingest.RULES, KeptReads(ingest.load_rules), "chat_rules",
                             Watch("broadcasts", "id"), Watch("room_sanctions", "broadcast_id"))
    app[AppKeys.caches].keep(app, events.SNAPSHOTS, KeptReads(events.load_snapshot), "room_snapshots",
                             *events.SNAPSHOT_WATCHES)
    app[ingest.WRITER] = ingest.ChatWriter(app)
    app.cleanup_ctx.append(chat_writer_ctx)


async def chat_writer_ctx(app: web.Application) -> AsyncIterator[None]:
    """At shutdown, the chat messages already accepted are written and sent before the room closes."""
    yield
    chat_writer = app[ingest.WRITER]
    task = chat_writer._task
    if task is not None and chat_writer.writing:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)
    await chat_writer.close()
