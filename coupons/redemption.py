"""Redeeming coupons at purchase: the pricer that orders calls inside the purchase's transaction, and the
give-back when a purchase is called off. Written against the typed unit of work (Core statements only), so
it runs unchanged on the flash sale's asyncpg path and on SQLAlchemy sessions.

A coupon is redeemed exactly once however many purchases race with it: the move `claimed → redeemed` is a
conditional UPDATE whose WHERE names the state it leaves, and a purchase whose move found nothing is refused
(its transaction, with everything it wrote, rolls back). Several coupons that combine are redeemed together:
the first is the purchase's `coupon_claim_id`, the others name it in `redeemed_with`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update

from livecommerce.errors import N_, AppError
from livecommerce.uow import UnitOfWork
from orders.pricing import Adjustment, PricingContext
from sessions.models import Broadcast

from . import rules
from .models import ClaimedCoupon, ClaimState, CouponDrop

# declarative classes map a Table; SQLAlchemy types `__table__` as any FromClause
_C, _D, _B = (cast(Table, m.__table__) for m in (ClaimedCoupon, CouponDrop, Broadcast))

_HELD = (select(_C.c.id, _C.c.user_id, _C.c.state, _C.c.claimed_at, _C.c.use_ends_at, _D.c.id.label("drop_id"),
                _D.c.kind, _D.c.value, _D.c.max_discount, _D.c.min_order, _D.c.scope, _D.c.merchant_id,
                _D.c.product_ids, _D.c.combinable, _D.c.per_viewer_limit, _D.c.quantity, _D.c.claim_minutes,
                _D.c.use_days, _D.c.dropped_at, _D.c.name_ko, _B.c.market_id, _B.c.ended_at)
         .select_from(_C.join(_D, _D.c.id == _C.c.drop_id).join(_B, _B.c.id == _D.c.broadcast_id)))
_BY_ID = _HELD.where(_C.c.id == bindparam("i"))  # one by one: a buyer picks a few, and no list type is portable
_BY_OWNER = _HELD.where(_C.c.user_id == bindparam("u"), _C.c.state == ClaimState.CLAIMED.value).order_by(_C.c.id)
_REDEEM = (update(_C).where(_C.c.id == bindparam("i"), _C.c.user_id == bindparam("u"),
                            _C.c.state == ClaimState.CLAIMED.value)
           .values(state=ClaimState.REDEEMED.value, redeemed_at=bindparam("at"), discount=bindparam("d"),
                   redeemed_with=bindparam("w"))
           .returning(_C.c.drop_id))
_COUNT_REDEEMED = update(_D).where(_D.c.id == bindparam("dr")).values(redeemed=_D.c.redeemed + 1)
_REDEEMED_WITH = _HELD.where(or_(_C.c.id == bindparam("c"), _C.c.redeemed_with == bindparam("c")),
                             _C.c.state == ClaimState.REDEEMED.value)
_GIVE_BACK = (update(_C).where(_C.c.id == bindparam("i"), _C.c.state == ClaimState.REDEEMED.value)
              .values(state=ClaimState.CLAIMED.value, redeemed_at=None, discount=0, redeemed_with=None)
              .returning(_C.c.drop_id))
_COUNT_BACK = update(_D).where(_D.c.id == bindparam("dr"), _D.c.redeemed > 0).values(redeemed=_D.c.redeemed - 1)


class CouponRefused(AppError):
    """A coupon picked at purchase cannot be used: the purchase is refused, nothing is written."""


# What the pricer may refuse a purchase with (the `buy` event and the purchase route answer them).
REDEMPTION_ERRORS = ("coupon_not_found", "not_your_coupon", "coupon_used", "coupon_expired", "out_of_scope",
                     "below_minimum", "not_combinable")


def _refuse(code: str, message: str, **params: object) -> CouponRefused:
    return CouponRefused.with_params(message, code, params)


@dataclass(frozen=True)
class HeldRow:
    id: int
    user_id: int
    state: str
    drop_id: int
    market_id: int
    coupon: rules.Coupon
    usable: bool


def _held(r: Any, now: datetime) -> HeldRow:
    """A claimed coupon read as a plain row (SQLAlchemy's or asyncpg's: both answer `row.name`)."""
    ids = frozenset(int(x) for x in (r.product_ids or "").split(",") if x.strip())
    coupon = rules.Coupon(kind=rules.Kind(r.kind), value=r.value, max_discount=r.max_discount,
                          min_order=r.min_order, scope=rules.Scope(r.scope), merchant_id=r.merchant_id,
                          product_ids=ids, combinable=r.combinable, per_viewer_limit=r.per_viewer_limit,
                          quantity=r.quantity, claim_minutes=r.claim_minutes, use_days=r.use_days, id=r.id)
    usable = rules.usable(now, r.dropped_at or r.claimed_at, r.use_days, r.ended_at)
    return HeldRow(r.id, r.user_id, str(r.state), r.drop_id, r.market_id, coupon, usable)


def check_picked(picked: Sequence[HeldRow], wanted: Sequence[int], ctx: PricingContext) -> None:
    """Every coupon the buyer picked is theirs, unused, still usable and for this market; they combine."""
    found = {h.id: h for h in picked}
    for claim_id in wanted:
        h = found.get(claim_id)
        if h is None:
            raise _refuse("coupon_not_found", N_("This coupon does not exist."))
        if h.user_id != ctx.user_id:
            raise _refuse("not_your_coupon", N_("This coupon belongs to someone else."))
        if h.state != ClaimState.CLAIMED.value:
            raise _refuse("coupon_used", N_("This coupon has already been used."))
        if not h.usable:
            raise _refuse("coupon_expired", N_("This coupon has expired."))
        if h.market_id != ctx.market_id:
            raise _refuse("out_of_scope", N_("This coupon is for another market."))
    try:
        rules.check_combination([h.coupon for h in picked])
    except rules.CouponError as exc:
        raise _refuse(exc.code, exc.message, **exc.params) from None


async def price(uow: UnitOfWork, ctx: PricingContext) -> Adjustment | None:
    """The coupons pricer: the picked coupons (or, asked for, the best one the buyer holds) taken off the
    purchase, split over its lines, and marked redeemed in the same transaction. No coupon asked for: None,
    with no statement run."""
    if not ctx.coupon_claim_ids and not ctx.suggest:
        return None
    if ctx.coupon_claim_ids:
        wanted = list(dict.fromkeys(ctx.coupon_claim_ids))
        rows = [(await uow.execute(_BY_ID, {"i": i})).first() for i in wanted]
        picked = [_held(r, ctx.now) for r in rows if r is not None]
        check_picked(picked, wanted, ctx)
        coupons = [h.coupon for h in picked]
        try:
            applied = rules.apply(coupons, ctx.lines)
        except rules.CouponError as exc:
            raise _refuse(exc.code, exc.message, **exc.params) from None
    else:
        owned = (await uow.execute(_BY_OWNER, {"u": ctx.user_id})).all()
        candidates = [h for h in (_held(r, ctx.now) for r in owned) if h.usable and h.market_id == ctx.market_id]
        best = rules.best_coupon([h.coupon for h in candidates], ctx.lines)
        if best is None:
            return None
        picked = [h for h in candidates if h.id == best.id]
        applied = rules.apply([best], ctx.lines)
    if applied.total <= 0:
        return None
    by_id = {h.id: h for h in picked}
    primary = applied.discounts[0][0].id
    for coupon, amount in applied.discounts:
        h = by_id[coupon.id]
        got = (await uow.execute(_REDEEM, {"i": h.id, "u": ctx.user_id, "at": ctx.now, "d": amount,
                                           "w": None if h.id == primary else primary})).first()
        if got is None:  # another purchase redeemed it first
            raise _refuse("coupon_used", N_("This coupon has already been used."))
        await uow.execute(_COUNT_REDEEMED, {"dr": h.drop_id})
    names = (await uow.execute(select(_D.c.name_ko).where(_D.c.id == by_id[primary].drop_id))).scalar()
    return Adjustment(discount=applied.total, per_line=tuple(applied.per_line), coupon_claim_id=primary,
                      coupon_code=str(names or "")[:40] or None)


async def give_back(uow: UnitOfWork, purchase_id: int, coupon_claim_id: int | None, now: datetime) -> None:
    """A purchase called off gives its coupons back to their owner while their use window is still open (a
    coupon that expired meanwhile stays used up)."""
    if coupon_claim_id is None:
        return
    rows = (await uow.execute(_REDEEMED_WITH, {"c": coupon_claim_id})).all()
    for row in rows:
        h = _held(row, now)
        if not h.usable:
            continue
        back = (await uow.execute(_GIVE_BACK, {"i": h.id})).first()
        if back is not None:
            await uow.execute(_COUNT_BACK, {"dr": h.drop_id})
