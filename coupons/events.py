"""Coupons' and giveaways' socket events on `/live`: a viewer claims a coupon and enters a giveaway; the host
drops a coupon and starts, closes and draws a giveaway. Each answers after its commit, then the room hears."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecommerce.auth import HOST, SIGNED_IN
from livecommerce.db import utcnow
from livecommerce.errors import N_, Conflict, NotFound, Unauthenticated
from livecommerce.keys import AppKeys
from livecommerce.models import User
from livecommerce.realtime import EventGroup, ServerEvent, SocketUser, event, live_parts
from sessions import services as broadcasts

from . import claiming, claims, giveaways, live
from .models import EntryMode
from .redemption import REDEMPTION_ERRORS
from .schemas import (
    ClaimIn,
    CouponsLeftOut,
    DropIn,
    DropOut,
    EntriesOut,
    GiveawayOut,
    GiveawayRef,
    GiveawayStartIn,
    WonOut,
)


async def _user(group: EventGroup, who: SocketUser) -> User:
    assert who.user_id is not None
    user = await group.app[AppKeys.accounts].get(group.app[AppKeys.hot], who.user_id, who.epoch)
    if user is None:
        raise Unauthenticated()
    return user


async def _host(group: EventGroup, who: SocketUser, broadcast_id: int) -> User:
    user = await _user(group, who)
    async with group.app[AppKeys.reader]() as db:
        await broadcasts.get_broadcast(db, broadcast_id)
        await broadcasts.check_host(db, broadcast_id, user.id, user.role)
    return user


class CouponEvents(EventGroup):
    """Claim a dropped coupon with one tap; the host drops one."""

    @event("coupon:claim", access=SIGNED_IN, payload=ClaimIn,
           errors=("coupon_not_found", "all_claimed", "claim_closed", "already_claimed", "viewers_only",
                   "idempotency_key_missing", "idempotency_key_reused", "idempotency_in_flight"))
    async def claim(self, sid: str, who: SocketUser, p: ClaimIn) -> dict[str, Any]:
        """Claim one of a drop's coupons: first come, first served, never more than the drop's quantity nor
        the viewer's limit. Carries an Idempotency-Key like a purchase: a retry answers the same. The answer
        is `{claim, replayed}`."""
        user = await _user(self, who)
        answer = await claiming.claim_once(self.app, user, p.drop_id, p.idempotency_key)
        return answer.data()

    @event("host:coupon_drop", access=HOST, payload=DropIn,
           errors=("broadcast_not_found", "not_your_broadcast", "broadcast_not_live", "coupon_not_found",
                   "invalid_quantity"))
    async def drop(self, sid: str, who: SocketUser, p: DropIn) -> dict[str, Any]:
        """Drop a coupon into the live broadcast: every viewer sees it at once, with the number left and the
        claim countdown."""
        user = await _host(self, who, p.broadcast_id)
        async with self.app[AppKeys.db].begin() as db:
            d = await claims.drop_now(db, p.broadcast_id, p.template_id, user, utcnow(), p.quantity)
            out = claims.drop_out(d)
        await live.dropped(self.app, d)
        return out


class GiveawayEvents(EventGroup):
    """Enter a giveaway; the host starts, closes and draws it."""

    @event("giveaway:enter", access=SIGNED_IN, payload=GiveawayRef,
           errors=("giveaway_not_found", "giveaway_closed", "already_entered", "cannot_enter", "buyers_only"))
    async def enter(self, sid: str, who: SocketUser, p: GiveawayRef) -> dict[str, Any]:
        """Enter a giveaway (once). The answer is your entry number: check it in the published list after
        the draw."""
        user = await _user(self, who)
        async with self.app[AppKeys.db].begin() as db:
            g = await giveaways.get_giveaway(db, p.giveaway_id)
            if g.broadcast_id != p.broadcast_id:
                raise NotFound(N_("No such giveaway."), code="giveaway_not_found")
            entry = await giveaways.enter(db, p.giveaway_id, user, utcnow())
            number = entry.number
        await live.entered(self.app, p.broadcast_id)
        return {"giveaway_id": p.giveaway_id, "number": number}

    @event("host:giveaway_start", access=HOST, payload=GiveawayStartIn,
           errors=("broadcast_not_found", "not_your_broadcast", "broadcast_not_live", "prize_missing",
                   "invalid_winners", "invalid_minutes", "keyword_missing"))
    async def start(self, sid: str, who: SocketUser, p: GiveawayStartIn) -> dict[str, Any]:
        """Start a giveaway: entries open now for `minutes`, and the commitment to the draw's secret seed is
        published."""
        user = await _host(self, who, p.broadcast_id)
        spec = giveaways.GiveawayInput(p.prize_ko, p.prize_en, p.winners, EntryMode(p.mode), p.keyword, p.minutes)
        async with self.app[AppKeys.db].begin() as db:
            g = await giveaways.start(db, p.broadcast_id, user, spec, utcnow())
        await live.giveaway_changed(self.app, g, "giveaway:open")
        return giveaways.public(g)

    @event("host:giveaway_close", access=HOST, payload=GiveawayRef,
           errors=("broadcast_not_found", "not_your_broadcast", "giveaway_not_found", "giveaway_closed"))
    async def close(self, sid: str, who: SocketUser, p: GiveawayRef) -> dict[str, Any]:
        """Close entries now: the list of entries is fixed and its digest published."""
        await _host(self, who, p.broadcast_id)
        async with self.app[AppKeys.db].begin() as db:
            g = await giveaways.close(db, p.giveaway_id, utcnow())
            if g is None:
                raise Conflict(N_("This giveaway is closed."), code="giveaway_closed")
        await live.giveaway_changed(self.app, g, "giveaway:closed")
        return giveaways.public(g)

    @event("host:giveaway_draw", access=HOST, payload=GiveawayRef,
           errors=("broadcast_not_found", "not_your_broadcast", "giveaway_not_found", "already_drawn",
                   "no_entries", "too_many_winners"))
    async def draw(self, sid: str, who: SocketUser, p: GiveawayRef) -> dict[str, Any]:
        """Draw the winners (once): announced to the room with the seed, so that anyone can verify the draw."""
        await _host(self, who, p.broadcast_id)
        async with self.app[AppKeys.db].begin() as db:
            g, winners = await giveaways.draw_winners(db, p.giveaway_id, utcnow())
        await live.giveaway_changed(self.app, g, "giveaway:drawn")
        await live.winners_told(self.app, g, winners)
        async with self.app[AppKeys.reader]() as db:
            return giveaways.public(g, await giveaways.winners_of(db, g.id))


def setup(app: web.Application) -> None:
    """Coupons' part of `/live`: the event groups, and the events they send (for the protocol document)."""
    parts = live_parts(app)
    parts.groups += [CouponEvents, GiveawayEvents]
    parts.server_events += [
        ServerEvent("coupons", CouponsLeftOut, "the room's members"),
        ServerEvent("coupons:figures", None, "the console (after `host:watch`): claimed and quantity per open drop"),
        ServerEvent("giveaway:entries", EntriesOut, "the room's members"),
        ServerEvent("you:won", WonOut, "the winner"),
        ServerEvent("you:entered", None, "a viewer entered by typing a giveaway's keyword in chat: "
                                         "`{broadcast_id, giveaway_id, number}`"),
    ]
    parts.payload_models += [DropOut, GiveawayOut]
    parts.add_errors("buy", REDEMPTION_ERRORS)
