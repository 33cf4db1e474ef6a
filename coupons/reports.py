"""What staff read about coupons and giveaways: per drop the claims, the redemptions, the discount given and
the sales it brought; every giveaway with its entries, winners and proof."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.models import Market, Merchant, Product
from orders.models import OrderStatus, Purchase
from sessions.models import Broadcast, BroadcastState

from . import claims, giveaways
from .models import ClaimedCoupon, ClaimState, CouponDrop, DropState, Giveaway

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


__all__ = ["drops", "giveaways_context", "staff_context"]
