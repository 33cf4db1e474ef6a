"""`setup(app)`: coupons and giveaways in the app — the API and pages, the socket events, the room's join
snapshot part and listeners (ticker, transitions, chat keywords), the pricer and the give-back inside the
purchase's transaction, and the timer that makes the planned drops."""

from __future__ import annotations

from aiohttp import web

from livecommerce.caches import KeptReads, Watch
from livecommerce.keys import AppKeys
from orders.placing import PURCHASE_LISTENERS
from orders.pricing import pricing_hooks
from sessions.report import report_parts
from sessions.room import room_hooks

from . import claiming, events, live, redemption, reports, views


def setup(app: web.Application) -> None:
    views.register(app)
    events.setup(app)
    hooks = room_hooks(app)
    hooks.snapshot_parts.append(live.snapshot)
    hooks.on_tick.append(live.on_tick)
    hooks.on_transition.append(live.on_transition)
    hooks.on_chat.append(live.on_chat)
    app[PURCHASE_LISTENERS].append(live.on_purchase)
    pricing = pricing_hooks(app)
    pricing.pricers.append(redemption.price)
    pricing.releasers.append(redemption.give_back)
    report_parts(app).append(reports.REPORT_PART)
    app[AppKeys.caches].keep(app, live.KEYWORDS, KeptReads(live.open_keywords), "giveaway_keywords",
                             Watch("giveaways", "broadcast_id"))
    app.cleanup_ctx.append(live.live_ctx)
    app.cleanup_ctx.append(claiming.gate_ctx)
