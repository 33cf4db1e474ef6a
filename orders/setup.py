"""`setup(app)`: purchases in the app — the API and pages with their error statuses, the payment providers,
the pricing hooks other domains fill, what keeps a flash sale fast (the kept line-up, the admission, the key
checks), the postcode search's recent answers, the `buy` socket event, the sales feed in the room (a purchase
listener and a room-ticker listener), and the background work: purging old Idempotency-Keys, cancelling bank
transfers left unpaid."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from livecommerce.api import API
from livecommerce.db import utcnow, writer
from livecommerce.keys import AppKeys
from sessions.report import report_parts
from sessions.room import room_hooks

from . import events, feed, views
from .address_book import ADDRESS_SEARCHES, SearchCache
from .address_book import WATCHES as ADDRESS_WATCHES
from .connections import QUICK_READS, WRITES
from .fulfilment import expire_overdue
from .keys import KEY_CHECKS, KEY_RELEASES, KeyChecks, KeyReleases, purge_keys
from .lineup import LINEUPS, WATCHES, LineupCache
from .payments import PAYMENT_PROVIDERS, default_providers
from .placing import ADMISSION, PURCHASE_LISTENERS, Admission
from .pricing import pricing_hooks
from .report import SALES_PART

log = logging.getLogger("livecommerce.orders")


def setup(app: web.Application) -> None:
    app[PAYMENT_PROVIDERS] = default_providers()
    app[PURCHASE_LISTENERS] = []
    pricing_hooks(app)  # made now, for the domains after this one to fill in their `setup`
    app[AppKeys.caches].keep(app, LINEUPS, LineupCache(app[AppKeys.config].orders.lineup_cache_seconds), "lineups",
                             *WATCHES)
    app[AppKeys.caches].keep(app, ADDRESS_SEARCHES, SearchCache(), "addresses", *ADDRESS_WATCHES)
    app[ADMISSION] = Admission()
    views.register(app, app[API])
    events.setup(app)
    report_parts(app).append(SALES_PART)
    app[PURCHASE_LISTENERS].append(feed.on_purchase)
    room_hooks(app).on_tick.append(feed.on_tick)
    app.cleanup_ctx.append(orders_ctx)
    app.cleanup_ctx.append(feed.sales_ctx)


async def orders_ctx(app: web.Application) -> AsyncIterator[None]:
    """On startup (after the database is open): the engines and checks purchases use. Then each process
    deletes expired idempotency keys every `orders.purge_interval_minutes`, and cancels bank transfers
    left unpaid after their deadline every `orders.expire_interval_seconds`."""
    cfg = app[AppKeys.config].orders
    engine = app[AppKeys.engine]
    app[WRITES] = writer(engine)
    if engine.dialect.name == "postgresql":
        app[QUICK_READS] = engine.execution_options(isolation_level="AUTOCOMMIT")
    app[KEY_CHECKS] = KeyChecks(app)
    app[KEY_RELEASES] = KeyReleases(app)

    async def purge() -> None:
        while True:
            await asyncio.sleep(cfg.purge_interval_minutes * 60)
            try:
                async with app[AppKeys.db].begin() as db:
                    n = await purge_keys(db, utcnow(), cfg.idempotency_retention_hours)
                if n:
                    log.info("idempotency keys purged", extra={"count": n})
            except Exception:
                log.exception("purging idempotency keys failed")

    async def sweep() -> None:
        while True:
            await asyncio.sleep(cfg.expire_interval_seconds)
            try:
                await expire_overdue(app, utcnow())
            except Exception:
                log.exception("cancelling unpaid transfers failed")

    tasks = [asyncio.create_task(purge())] if cfg.purge_interval_minutes > 0 else []
    if cfg.expire_interval_seconds > 0:
        tasks.append(asyncio.create_task(sweep()))
    yield
    await app[KEY_RELEASES].close()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
