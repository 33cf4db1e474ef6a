"""Coupons and giveaways in the live room: what a joining viewer gets (the open drops, their own coupons, the
giveaway and their entry), what the room hears (a drop, its close, the coupons left and the entries so far,
coalesced; a giveaway opening, closing and drawn; a winner's notice), and the timer that makes the planned
drops and closes what is due — every process runs it, the conditional moves make each change once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.caches import KeptReads
from livecommerce.db import utcnow
from livecommerce.errors import Unavailable
from livecommerce.keys import AppKeys
from livecommerce.realtime import SocketUser
from orders.placing import PurchaseEvent
from sessions.models import BroadcastState
from sessions.room import NAMESPACE, Versions, moderators_room, publish, publish_or_take_back, room, user_room

from . import claims, giveaways
from .models import CouponDrop, Giveaway, GiveawayWinner

log = logging.getLogger("livecommerce.coupons")


class CouponsLive:
    """Per app: the versions that say when the coupons left and the entries changed, and the timer."""

    def __init__(self, app: web.Application) -> None:
        config = app[AppKeys.config]
        redis = app.get(AppKeys.redis)
        every = config.coupons.push_interval_ms / 1000
        self.claims = Versions(redis, config.redis.prefix, "claims", min_interval=every)
        self.entries = Versions(redis, config.redis.prefix, "entries", min_interval=every)
        self.task: asyncio.Task[None] | None = None


LIVE = web.AppKey("coupons_live", CouponsLive)


async def open_keywords(app: web.Application, broadcast_id: int) -> list[tuple[int, str]]:
    """A broadcast's open keyword giveaways, `(id, keyword)`."""
    async with app[AppKeys.reader]() as db:
        return [(g.id, g.keyword or "") for g in await giveaways.open_in(db, broadcast_id, keyword_only=True)]


# Each broadcast's open keyword giveaways, so that a chat message costs no read unless it carries a keyword:
# kept on the app's caches watching the giveaways (forgotten after a commit that changes one, here at once, on
# the other processes through Redis); an entry it lets through is checked again in the entry's own transaction.
KEYWORDS = web.AppKey("coupons_keywords", KeptReads[list[tuple[int, str]]])


# -- pushed to the room ------------------------------------------------------------------------------------

async def dropped(app: web.Application, d: CouponDrop, planned: bool = False) -> None:
    """After the commit: every viewer sees the drop at once (a room event: recovered on reconnect). When the
    room cannot be told (Redis away), the drop is taken back while nobody has claimed it and the host is
    answered `unavailable` (a planned drop goes back to its plan and the timer makes it again): a drop is
    seen by the room or does not stand. One a viewer claimed meanwhile stands (joining viewers see it)."""
    await publish_or_take_back(app, d.broadcast_id, "coupon:drop", claims.drop_out(d),
                               lambda db: claims.take_back(db, d.id, planned))


async def drops_closed(app: web.Application, closed: list[CouponDrop]) -> None:
    """Drops whose claim window ended. Not told (Redis away), they are closed all the same: their countdown
    ends in every page at the same time, and a late tap is refused `claim_closed`."""
    for d in closed:
        try:
            await publish(app, d.broadcast_id, "coupon:closed", {"id": d.id})
        except Unavailable:
            log.warning("a drop's close the room could not be told of", extra={"broadcast": d.broadcast_id})


async def claimed(app: web.Application, broadcast_id: int) -> None:
    await app[LIVE].claims.bump(broadcast_id)


async def entered(app: web.Application, broadcast_id: int) -> None:
    await app[LIVE].entries.bump(broadcast_id)


async def giveaway_changed(app: web.Application, g: Giveaway, event: str) -> None:
    """After the commit: the room hears it. A start the room cannot be told of (Redis away) is taken back while
    nobody has entered, and the host answered `unavailable`. A close or a draw stands (it is fixed by then,
    and the draw is made once): a viewer sees it when they join again, and the log says it was not told."""
    async with app[AppKeys.reader]() as db:
        winners = await giveaways.winners_of(db, g.id)

    async def take_back(db: AsyncSession) -> bool:
        return event == "giveaway:open" and await giveaways.take_back(db, g.id)

    await publish_or_take_back(app, g.broadcast_id, event, giveaways.public(g, winners), take_back)


async def winners_told(app: web.Application, g: Giveaway, winners: list[GiveawayWinner]) -> None:
    """Each winner's sockets get a notice with the form for their delivery details."""
    sio = app[AppKeys.sio]
    for w in winners:
        await sio.emit("you:won", {"broadcast_id": g.broadcast_id, "giveaway_id": g.id, "prize_ko": g.prize_ko,
                                   "prize_en": g.prize_en, "number": w.number, "rank": w.rank,
                                   "details_url": f"/giveaways/{g.id}/won"},
                       room=user_room(w.user_id), namespace=NAMESPACE)


async def on_purchase(app: web.Application, event: PurchaseEvent) -> None:
    """A purchase that redeemed a coupon (or gave one back): the console's redemptions move."""
    if event.coupon_claim_id is not None:
        await app[LIVE].claims.bump(event.broadcast_id)


async def on_tick(app: web.Application, broadcast_id: int) -> None:
    """The room's ticker: push the coupons left and the entries so far when they changed."""
    live = app[LIVE]
    manager = app[AppKeys.sio].manager
    if await live.claims.due(broadcast_id):
        async with app[AppKeys.reader]() as db:
            counts = await claims.counts(db, broadcast_id)
        left = {str(i): max(0, q - c) for i, (c, q, _) in counts.items()}
        manager.write_room("coupons", {"broadcast_id": broadcast_id, "left": left}, NAMESPACE, room(broadcast_id))
        manager.write_room("coupons:figures", {"broadcast_id": broadcast_id, "drops": {
            str(i): {"claimed": c, "quantity": q, "redeemed": r} for i, (c, q, r) in counts.items()}}, NAMESPACE,
            moderators_room(broadcast_id))
    if await live.entries.due(broadcast_id):
        async with app[AppKeys.reader]() as db:
            for g in await giveaways.open_in(db, broadcast_id):
                manager.write_room("giveaway:entries", {"broadcast_id": broadcast_id, "giveaway_id": g.id,
                                                        "entries": g.entries}, NAMESPACE, room(broadcast_id))


async def snapshot(app: web.Application, broadcast_id: int, who: SocketUser) -> dict[str, Any]:
    """The join snapshot's part: open drops, the viewer's own coupons for this broadcast, the giveaway."""
    async with app[AppKeys.reader]() as db:
        drops = [claims.drop_out(d) for d in await claims.open_drops(db, broadcast_id)]
        mine = [claims.held_out(h) for h in await claims.held_by(db, who.user_id, broadcast_id=broadcast_id)] \
            if who.user_id is not None else []
        g = await giveaways.latest_in(db, broadcast_id)
        giveaway = None
        if g is not None:
            giveaway = giveaways.public(g, await giveaways.winners_of(db, g.id))
            entry = await giveaways.entry_of(db, g.id, who.user_id) if who.user_id is not None else None
            giveaway["my_entry"] = entry.number if entry is not None else None
    return {"coupons": {"open": drops, "mine": mine}, "giveaway": giveaway}


async def on_transition(app: web.Application, broadcast_id: int, state: BroadcastState, at: datetime) -> None:
    """When a broadcast ends (or will not happen), close its drops and its giveaway at once."""
    if state in (BroadcastState.ENDED, BroadcastState.MISSED, BroadcastState.CANCELLED):
        await run_due(app, at)


async def on_chat(app: web.Application, broadcast_id: int, who: SocketUser, text: str) -> None:
    """A keyword giveaway: typing the keyword in chat enters (once; later messages change nothing). The open
    keyword giveaways are kept (`KEYWORDS`): a message without a keyword reads nothing."""
    if who.user_id is None:
        return
    matching = [gid for gid, keyword in await app[KEYWORDS].get(app, broadcast_id)
                if giveaways.keyword_matches(keyword, text)]
    for gid in matching:
        user = await app[AppKeys.accounts].get(app[AppKeys.hot], who.user_id, None)
        if user is None or not giveaways.may_enter(user):
            return
        try:
            async with app[AppKeys.db].begin() as db:
                g = await db.get(Giveaway, gid)
                if g is None:
                    continue
                entry = await giveaways.add_entry(db, g, user.id, utcnow())
                number = entry.number
        except Exception as exc:  # already entered, or closed meanwhile: the chat message stands
            log.debug("keyword entry refused", extra={"giveaway": gid, "reason": getattr(exc, "code", "")})
            continue
        await entered(app, broadcast_id)
        await app[AppKeys.sio].emit("you:entered", {"broadcast_id": broadcast_id, "giveaway_id": gid,
                                                    "number": number},
                                    room=user_room(user.id), namespace=NAMESPACE)


# -- the timer ---------------------------------------------------------------------------------------------

async def run_due(app: web.Application, now: datetime) -> None:
    """Open the planned drops whose minute has come, close the drops and giveaways that are due."""
    async with app[AppKeys.reader]() as db:
        due = await claims.due_planned(db, now)
    for drop_id in due:
        async with app[AppKeys.db].begin() as db:
            d = await claims.release_planned(db, drop_id, now)
        if d is not None:
            with contextlib.suppress(Unavailable):  # back to its plan: made again at the next tick
                await dropped(app, d, planned=True)
    async with app[AppKeys.db].begin() as db:
        closed = await claims.close_due(db, now)
    await drops_closed(app, closed)
    async with app[AppKeys.reader]() as db:
        ids = await giveaways.due_to_close(db, now)
    for gid in ids:
        async with app[AppKeys.db].begin() as db:
            g = await giveaways.close(db, gid, now)
        if g is not None:
            await giveaway_changed(app, g, "giveaway:closed")


async def run(app: web.Application) -> None:
    interval = app[AppKeys.config].coupons.timer_interval_ms / 1000
    while True:
        await asyncio.sleep(interval)
        try:
            await run_due(app, utcnow())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("coupon timer failed")


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the versions (on the app's Redis when there is one) and the timer."""
    live = app[LIVE] = CouponsLive(app)
    if app[AppKeys.config].schedule.run_scheduler:  # off in tests, which drive `run_due` with their own clock
        live.task = asyncio.create_task(run(app), name="livecommerce-coupons-timer")
    yield
    if live.task is not None:
        live.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await live.task
