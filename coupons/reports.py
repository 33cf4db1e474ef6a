"""What staff read about coupons and giveaways: per drop the claims, the redemptions, the discount given and
the sales it brought; every giveaway with its entries, winners and proof."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.errors import N_
from livecommerce.models import Market, Merchant, Product
from orders.models import OrderStatus, Purchase
from sessions.models import Broadcast, BroadcastState
from sessions.report import Details, Metric, ReportPart, Totals

from . import claims, giveaways
from .models import (
    ClaimedCoupon,
    ClaimState,
    CouponDrop,
    DropState,
    Giveaway,
    GiveawayEntry,
    GiveawayState,
    GiveawayWinner,
)

COUNTED = (OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.PACKED, OrderStatus.DELIVERED)


async def drops(db: AsyncSession, limit: int = 500) -> list[dict[str, Any]]:
    """Every drop, newest first, with what it gave and what it brought. A purchase that used several coupons
    counts its sales once for each drop whose coupon it used; the discount is each coupon's own."""
    rows = (await db.execute(select(CouponDrop, Broadcast.title_ko)
                             .join(Broadcast, Broadcast.id == CouponDrop.broadcast_id)
                             .order_by(CouponDrop.id.desc()).limit(limit))).all()
    if not rows:
        return []
    ids = [d.id for d, _ in rows]
    given = dict((await db.execute(
        select(ClaimedCoupon.drop_id, func.coalesce(func.sum(ClaimedCoupon.discount), 0))
        .where(ClaimedCoupon.drop_id.in_(ids), ClaimedCoupon.state == ClaimState.REDEEMED)
        .group_by(ClaimedCoupon.drop_id))).all())
    primary = func.coalesce(ClaimedCoupon.redeemed_with, ClaimedCoupon.id)
    sales = dict((await db.execute(
        select(ClaimedCoupon.drop_id, func.coalesce(func.sum(Purchase.total), 0))
        .join(Purchase, Purchase.coupon_claim_id == primary)
        .where(ClaimedCoupon.drop_id.in_(ids), ClaimedCoupon.state == ClaimState.REDEEMED,
               Purchase.status.in_(COUNTED))
        .group_by(ClaimedCoupon.drop_id))).all())
    redeemed = dict((await db.execute(
        select(ClaimedCoupon.drop_id, func.count()).where(ClaimedCoupon.drop_id.in_(ids),
                                                          ClaimedCoupon.state == ClaimState.REDEEMED)
        .group_by(ClaimedCoupon.drop_id))).all())
    return [{"id": d.id, "broadcast_id": d.broadcast_id, "broadcast_title": title, "name_ko": d.name_ko,
             "name_en": d.name_en, "state": d.state.value, "quantity": d.quantity, "claimed": d.claimed,
             "redeemed": int(redeemed.get(d.id, 0)), "discount_given": int(given.get(d.id, 0)),
             "sales": int(sales.get(d.id, 0))} for d, title in rows]


async def staff_context(db: AsyncSession) -> dict[str, Any]:
    """The staff coupons page: templates, the broadcasts drops can be planned for, planned drops, the report."""
    coming = (await db.scalars(select(Broadcast).where(Broadcast.state.in_(
        [BroadcastState.SCHEDULED, BroadcastState.LOBBY, BroadcastState.LIVE])).order_by(Broadcast.starts_at)
        .limit(30))).all()
    planned = (await db.execute(select(CouponDrop, Broadcast).join(Broadcast, Broadcast.id == CouponDrop.broadcast_id)
                                .where(CouponDrop.state == DropState.PLANNED)
                                .order_by(Broadcast.starts_at, CouponDrop.planned_minute))).all()
    return {"templates": await claims.templates(db), "markets": (await db.scalars(select(Market))).all(),
            "merchants": (await db.scalars(select(Merchant).order_by(Merchant.id))).all(),
            "products": (await db.scalars(select(Product).order_by(Product.id))).all(),
            "broadcasts": coming, "planned": planned, "report": await drops(db)}


async def giveaways_context(db: AsyncSession) -> dict[str, Any]:
    """The staff giveaways page: every giveaway with its winners and their delivery details."""
    rows = (await db.execute(select(Giveaway, Broadcast.title_ko)
                             .join(Broadcast, Broadcast.id == Giveaway.broadcast_id)
                             .order_by(Giveaway.id.desc()).limit(200))).all()
    out = []
    for g, title in rows:
        out.append({"giveaway": g, "title": title, "winners": await giveaways.winners_of(db, g.id)})
    return {"giveaways": out}


__all__ = ["REPORT_PART", "drops", "giveaways_context", "staff_context"]


# -- in a broadcast's report --------------------------------------------------------------------------

DROPPED = (DropState.OPEN, DropState.CLOSED)  # drops viewers saw (not planned only, nor cancelled)


async def _report_totals(db: AsyncSession, broadcasts: Sequence[Broadcast]) -> Totals:
    """Drops, claims and redemptions, giveaway entries and winners, per broadcast: four aggregate queries."""
    ids = [b.id for b in broadcasts]
    drops_of = {r[0]: (int(r[1]), int(r[2] or 0)) for r in (await db.execute(
        select(CouponDrop.broadcast_id, func.count(CouponDrop.id), func.sum(CouponDrop.claimed))
        .where(CouponDrop.broadcast_id.in_(ids), CouponDrop.state.in_(DROPPED))
        .group_by(CouponDrop.broadcast_id))).all()}
    redeemed = dict((await db.execute(
        select(CouponDrop.broadcast_id, func.count(ClaimedCoupon.id))
        .join(ClaimedCoupon, ClaimedCoupon.drop_id == CouponDrop.id)
        .where(CouponDrop.broadcast_id.in_(ids), ClaimedCoupon.state == ClaimState.REDEEMED)
        .group_by(CouponDrop.broadcast_id))).all())
    entries = dict((await db.execute(
        select(Giveaway.broadcast_id, func.count(GiveawayEntry.id))
        .join(GiveawayEntry, GiveawayEntry.giveaway_id == Giveaway.id)
        .where(Giveaway.broadcast_id.in_(ids)).group_by(Giveaway.broadcast_id))).all())
    winners = dict((await db.execute(
        select(Giveaway.broadcast_id, func.count(GiveawayWinner.id))
        .join(GiveawayWinner, GiveawayWinner.giveaway_id == Giveaway.id)
        .where(Giveaway.broadcast_id.in_(ids)).group_by(Giveaway.broadcast_id))).all())
    return {bid: {"coupon_drops": drops_of.get(bid, (0, 0))[0], "coupons_claimed": drops_of.get(bid, (0, 0))[1],
                  "coupons_redeemed": int(redeemed.get(bid, 0)), "giveaway_entries": int(entries.get(bid, 0)),
                  "giveaway_winners": int(winners.get(bid, 0))} for bid in ids}


async def _report_details(db: AsyncSession, b: Broadcast) -> Details:
    """Each drop of the broadcast (claims, redemptions, discount given) and each giveaway (entries, winners)."""
    rows = (await db.scalars(select(CouponDrop).where(CouponDrop.broadcast_id == b.id,
                                                      CouponDrop.state.in_(DROPPED))
                             .order_by(CouponDrop.dropped_at, CouponDrop.id))).all()
    ids = [d.id for d in rows]
    used = {r[0]: (int(r[1]), int(r[2] or 0)) for r in (await db.execute(
        select(ClaimedCoupon.drop_id, func.count(ClaimedCoupon.id), func.sum(ClaimedCoupon.discount))
        .where(ClaimedCoupon.drop_id.in_(ids), ClaimedCoupon.state == ClaimState.REDEEMED)
        .group_by(ClaimedCoupon.drop_id))).all()} if ids else {}
    shows = (await db.scalars(select(Giveaway).where(Giveaway.broadcast_id == b.id,
                                                     Giveaway.state != GiveawayState.CANCELLED)
                              .order_by(Giveaway.opened_at, Giveaway.id))).all()
    gids = [g.id for g in shows]
    entries = dict((await db.execute(select(GiveawayEntry.giveaway_id, func.count(GiveawayEntry.id))
                                     .where(GiveawayEntry.giveaway_id.in_(gids))
                                     .group_by(GiveawayEntry.giveaway_id))).all()) if gids else {}
    winners = dict((await db.execute(select(GiveawayWinner.giveaway_id, func.count(GiveawayWinner.id))
                                     .where(GiveawayWinner.giveaway_id.in_(gids))
                                     .group_by(GiveawayWinner.giveaway_id))).all()) if gids else {}
    return Details(data={
        "drops": [{"id": d.id, "name_ko": d.name_ko, "name_en": d.name_en, "quantity": d.quantity,
                   "claimed": d.claimed, "redeemed": used.get(d.id, (0, 0))[0],
                   "discount_given": used.get(d.id, (0, 0))[1]} for d in rows],
        "giveaways": [{"id": g.id, "prize_ko": g.prize_ko, "prize_en": g.prize_en, "state": g.state.value,
                       "entries": int(entries.get(g.id, 0)), "winners": int(winners.get(g.id, 0))} for g in shows],
    }, template="staff/_report_promotions.html")


REPORT_PART = ReportPart("promotions", (
    Metric("coupon_drops", N_("Coupon drops"), optional=True),
    Metric("coupons_claimed", N_("Coupons claimed"), optional=True),
    Metric("coupons_redeemed", N_("Coupons used"), optional=True),
    Metric("giveaway_entries", N_("Giveaway entries"), optional=True),
    Metric("giveaway_winners", N_("Giveaway winners"), optional=True),
), _report_totals, _report_details)
