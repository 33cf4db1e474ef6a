"""Coupon templates, drops and claims: units of work on a database session (`db` first).

A claim is exact under any number of simultaneous taps on any number of processes because the database
decides it: the drop's counter moves by `UPDATE … SET claimed = claimed + 1 WHERE claimed < quantity AND
state = 'open' AND claim_closes_at > now` (the row count says who got one), and the claim row's unique
`(drop, viewer, seq)` with `seq <= per_viewer_limit` keeps a viewer within their limit; a refusal rolls the
counter back in the same transaction. `claimed` never goes down, so "all claimed" seen once stays true."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Delete, Update, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import rowcount
from livecommerce.errors import N_, AppError, Conflict, NotFound, ValidationFailed
from livecommerce.models import Merchant, Product, User
from sessions.models import Broadcast, BroadcastState

from . import rules
from .models import ClaimedCoupon, ClaimState, CouponDrop, CouponTemplate, CouponTerms, DropState

D = DropState
TERM_FIELDS = ("kind", "value", "max_discount", "min_order", "scope", "merchant_id", "product_ids", "combinable",
               "per_viewer_limit", "claim_minutes", "use_days")


def coupon_of(terms: CouponTerms, *, id: int = 0, quantity: int | None = None) -> rules.Coupon:
    """The pure coupon a template or a drop describes."""
    ids = frozenset(int(x) for x in terms.product_ids.split(",") if x.strip()) if terms.product_ids else frozenset()
    return rules.Coupon(kind=rules.Kind(terms.kind), value=terms.value, max_discount=terms.max_discount,
                        min_order=terms.min_order, scope=rules.Scope(terms.scope), merchant_id=terms.merchant_id,
                        product_ids=ids, combinable=terms.combinable, per_viewer_limit=terms.per_viewer_limit,
                        quantity=quantity if quantity is not None else getattr(terms, "quantity", 1),
                        claim_minutes=terms.claim_minutes, use_days=terms.use_days, id=id)


def refused(exc: rules.CouponError) -> AppError:
    """A rule's refusal as the error a person reads."""
    status = 409 if exc.code in ("not_combinable",) else 422
    return AppError(exc.message, code=exc.code, status=status, **exc.params)


# -- templates ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateInput:
    name_ko: str
    name_en: str
    kind: str
    value: int
    max_discount: int | None = None
    min_order: int = 0
    scope: str = "all"
    merchant_id: int | None = None
    product_ids: tuple[int, ...] = ()
    combinable: bool = False
    per_viewer_limit: int = 1
    quantity: int = 100
    claim_minutes: int = 10
    use_days: int | None = None


async def save_template(db: AsyncSession, market_id: int, data: TemplateInput,
                        template_id: int | None = None) -> CouponTemplate:
    """Create or change a template, after checking its terms (every problem is reported at once) and that its
    merchant and products belong to the market."""
    if not data.name_ko.strip():
        raise ValidationFailed(N_("Give the coupon a name."), code="name_missing")
    try:
        coupon = rules.Coupon(kind=rules.kind_of(data.kind), value=data.value, max_discount=data.max_discount,
                              min_order=data.min_order, scope=rules.scope_of(data.scope),
                              merchant_id=data.merchant_id, product_ids=frozenset(data.product_ids),
                              combinable=data.combinable, per_viewer_limit=data.per_viewer_limit,
                              quantity=data.quantity, claim_minutes=data.claim_minutes, use_days=data.use_days)
    except rules.CouponError as exc:
        raise refused(exc) from None
    problems = rules.problems(coupon)
    if problems:
        first = problems[0]
        raise ValidationFailed(first.message, code=first.code,
                               details=[{"code": p.code, "message": p.message} for p in problems], **first.params)
    if data.merchant_id is not None:
        m = await db.get(Merchant, data.merchant_id)
        if m is None or m.market_id != market_id:
            raise ValidationFailed(N_("This merchant is not in the market."), code="merchant_not_found")
    if data.product_ids:
        found = (await db.scalars(select(Product.id).join(Merchant, Merchant.id == Product.merchant_id)
                                  .where(Product.id.in_(data.product_ids), Merchant.market_id == market_id))).all()
        if set(found) != set(data.product_ids):
            raise ValidationFailed(N_("Some of these products are not in the market."), code="product_not_found")
    if template_id is None:
        t = CouponTemplate(market_id=market_id)
        db.add(t)
    else:
        t = await get_template(db, template_id)
    t.name_ko, t.name_en = data.name_ko.strip(), data.name_en.strip()
    t.kind, t.value = coupon.kind.value, coupon.value
    t.max_discount, t.min_order = coupon.max_discount, coupon.min_order
    t.scope, t.merchant_id = coupon.scope.value, coupon.merchant_id
    t.product_ids = ",".join(str(i) for i in sorted(coupon.product_ids))
    t.combinable, t.per_viewer_limit, t.quantity = coupon.combinable, coupon.per_viewer_limit, coupon.quantity
    t.claim_minutes, t.use_days = coupon.claim_minutes, coupon.use_days
    await db.flush()
    return t


async def get_template(db: AsyncSession, template_id: int) -> CouponTemplate:
    t = await db.get(CouponTemplate, template_id)
    if t is None:
        raise NotFound(N_("No such coupon."), code="coupon_not_found")
    return t


async def templates(db: AsyncSession, market_id: int | None = None, active_only: bool = False) -> list[CouponTemplate]:
    q = select(CouponTemplate).order_by(CouponTemplate.id)
    if market_id is not None:
        q = q.where(CouponTemplate.market_id == market_id)
    if active_only:
        q = q.where(CouponTemplate.active.is_(True))
    return list((await db.scalars(q)).all())


# -- drops -------------------------------------------------------------------------------------------------

def _copy_terms(t: CouponTemplate, d: CouponDrop) -> None:
    for name in TERM_FIELDS:
        setattr(d, name, getattr(t, name))
    d.name_ko, d.name_en = t.name_ko, t.name_en


async def _broadcast(db: AsyncSession, broadcast_id: int) -> Broadcast:
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound(N_("No such broadcast."), code="broadcast_not_found")
    return b


def _quantity(quantity: int | None, t: CouponTemplate) -> int:
    q = t.quantity if quantity is None else quantity
    if not 1 <= q <= 1_000_000:
        raise ValidationFailed(N_("A drop gives out 1 to 1,000,000 coupons."), code="invalid_quantity")
    return q


async def _usable_template(db: AsyncSession, b: Broadcast, template_id: int) -> CouponTemplate:
    t = await get_template(db, template_id)
    if t.market_id != b.market_id or not t.active:
        raise NotFound(N_("No such coupon."), code="coupon_not_found")
    return t


async def drop_now(db: AsyncSession, broadcast_id: int, template_id: int, by: User, now: datetime,
                   quantity: int | None = None) -> CouponDrop:
    """The host drops a coupon into the live broadcast: claimable at once, for its claim window."""
    b = await _broadcast(db, broadcast_id)
    if b.state is not BroadcastState.LIVE:
        raise Conflict(N_("Coupons are dropped while the broadcast is live."), code="broadcast_not_live")
    t = await _usable_template(db, b, template_id)
    d = CouponDrop(template_id=t.id, broadcast_id=b.id, state=D.OPEN, quantity=_quantity(quantity, t), claimed=0,
                   redeemed=0, dropped_at=now, claim_closes_at=rules.claim_closes_at(now, t.claim_minutes),
                   created_by=by.id, created_at=now)
    _copy_terms(t, d)
    db.add(d)
    await db.flush()
    return d


async def take_back(db: AsyncSession, drop_id: int, planned: bool) -> bool:
    """A drop the room could not be told of, taken back while nobody has claimed it: a drop made now is
    deleted, a planned one goes back to its plan (the timer makes it again). False when a viewer claimed it
    meanwhile (one who joined saw it): it stands."""
    stmt: Update | Delete
    if planned:
        stmt = (update(CouponDrop).where(CouponDrop.id == drop_id, CouponDrop.claimed == 0,
                                         CouponDrop.state == D.OPEN)
                .values(state=D.PLANNED, dropped_at=None, claim_closes_at=None))
    else:
        stmt = delete(CouponDrop).where(CouponDrop.id == drop_id, CouponDrop.claimed == 0)
    return rowcount(await db.execute(stmt.execution_options(synchronize_session=False))) == 1


async def plan_drop(db: AsyncSession, broadcast_id: int, template_id: int, minute: int, by: User, now: datetime,
                    quantity: int | None = None) -> CouponDrop:
    """Staff plan a drop for a minute of the broadcast ("at minute 20, 500 coupons"): the scheduler drops
    it then, exactly once."""
    b = await _broadcast(db, broadcast_id)
    if b.state not in (BroadcastState.SCHEDULED, BroadcastState.LOBBY, BroadcastState.LIVE):
        raise Conflict(N_("Drops are planned for a broadcast still to come or live."), code="broadcast_closed")
    length = int((b.ends_at - b.starts_at).total_seconds() // 60)
    if not 0 <= minute < max(1, length):
        raise ValidationFailed(N_("Pick a minute within the broadcast (0 to %(last)s)."), code="invalid_minute",
                               last=max(0, length - 1))
    t = await _usable_template(db, b, template_id)
    d = CouponDrop(template_id=t.id, broadcast_id=b.id, state=D.PLANNED, quantity=_quantity(quantity, t),
                   claimed=0, redeemed=0, planned_minute=minute, created_by=by.id, created_at=now)
    _copy_terms(t, d)
    db.add(d)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict(N_("This coupon is already planned for that minute."), code="already_planned") from None
    return d


async def cancel_planned(db: AsyncSession, drop_id: int) -> bool:
    moved = await db.execute(update(CouponDrop).where(CouponDrop.id == drop_id, CouponDrop.state == D.PLANNED)
                             .values(state=D.CANCELLED).execution_options(synchronize_session=False))
    return bool(rowcount(moved))


async def due_planned(db: AsyncSession, now: datetime, limit: int = 50) -> list[int]:
    """Planned drops whose minute has come in a live broadcast (counted from when it really started)."""
    rows = await db.execute(select(CouponDrop.id, CouponDrop.planned_minute, Broadcast.started_at)
                            .join(Broadcast, Broadcast.id == CouponDrop.broadcast_id)
                            .where(CouponDrop.state == D.PLANNED, Broadcast.state == BroadcastState.LIVE)
                            .order_by(CouponDrop.planned_minute, CouponDrop.id).limit(limit))
    out = []
    for drop_id, minute, started_at in rows.all():
        if started_at is not None and rules.planned_due(started_at, minute or 0, now):
            out.append(drop_id)
    return out


async def release_planned(db: AsyncSession, drop_id: int, now: datetime) -> CouponDrop | None:
    """Open a planned drop; None when another process opened it first (exactly once)."""
    d = await db.get(CouponDrop, drop_id)
    if d is None:
        return None
    moved = await db.execute(update(CouponDrop).where(CouponDrop.id == drop_id, CouponDrop.state == D.PLANNED)
                             .values(state=D.OPEN, dropped_at=now, planned_at=now,
                                     claim_closes_at=rules.claim_closes_at(now, d.claim_minutes))
                             .execution_options(synchronize_session=False))
    if rowcount(moved) != 1:
        return None
    await db.refresh(d)
    return d


async def close_due(db: AsyncSession, now: datetime) -> list[CouponDrop]:
    """Close the open drops whose claim window passed or whose broadcast ended, and cancel the planned drops
    of broadcasts that ended or will not happen. Returns the drops this call closed."""
    rows = await db.scalars(select(CouponDrop).join(Broadcast, Broadcast.id == CouponDrop.broadcast_id)
                            .where(CouponDrop.state == D.OPEN)
                            .where((CouponDrop.claim_closes_at <= now) | (Broadcast.state != BroadcastState.LIVE)))
    closed = []
    for d in rows.all():
        moved = await db.execute(update(CouponDrop).where(CouponDrop.id == d.id, CouponDrop.state == D.OPEN)
                                 .values(state=D.CLOSED).execution_options(synchronize_session=False))
        if rowcount(moved) == 1:
            closed.append(d)
    ended = select(Broadcast.id).where(Broadcast.state.in_(
        [BroadcastState.ENDED, BroadcastState.MISSED, BroadcastState.CANCELLED]))
    await db.execute(update(CouponDrop).where(CouponDrop.state == D.PLANNED, CouponDrop.broadcast_id.in_(ended))
                     .values(state=D.CANCELLED).execution_options(synchronize_session=False))
    return closed


async def open_drops(db: AsyncSession, broadcast_id: int) -> list[CouponDrop]:
    return list((await db.scalars(select(CouponDrop).where(CouponDrop.broadcast_id == broadcast_id,
                                                           CouponDrop.state == D.OPEN)
                                  .order_by(CouponDrop.id))).all())


async def drops_of(db: AsyncSession, broadcast_id: int) -> list[CouponDrop]:
    return list((await db.scalars(select(CouponDrop).where(CouponDrop.broadcast_id == broadcast_id)
                                  .order_by(CouponDrop.id))).all())


async def counts(db: AsyncSession, broadcast_id: int) -> dict[int, tuple[int, int, int]]:
    """The drops of a broadcast that are out: drop id → (claimed, quantity, redeemed)."""
    rows = await db.execute(select(CouponDrop.id, CouponDrop.claimed, CouponDrop.quantity, CouponDrop.redeemed)
                            .where(CouponDrop.broadcast_id == broadcast_id,
                                   CouponDrop.state.in_([D.OPEN, D.CLOSED])))
    return {i: (c, q, r) for i, c, q, r in rows.all()}


def drop_out(d: Any) -> dict[str, Any]:
    """A drop as the room and the console see it (from the mapped row, or a plain row of the table)."""
    return {
        "id": d.id, "broadcast_id": d.broadcast_id, "name_ko": d.name_ko, "name_en": d.name_en, "kind": d.kind,
        "value": d.value, "max_discount": d.max_discount, "min_order": d.min_order, "scope": d.scope,
        "merchant_id": d.merchant_id,
        "product_ids": [int(x) for x in d.product_ids.split(",") if x] if d.product_ids else [],
        "combinable": d.combinable, "per_viewer_limit": d.per_viewer_limit, "quantity": d.quantity,
        "claimed": d.claimed, "left": max(0, d.quantity - d.claimed), "redeemed": d.redeemed, "state": str(d.state),
        "planned_minute": d.planned_minute,
        "dropped_at": d.dropped_at.isoformat() if d.dropped_at else None,
        "claim_closes_at": d.claim_closes_at.isoformat() if d.claim_closes_at else None,
        "use_days": d.use_days,
    }


# -- claims ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Held:
    """A claimed coupon with its drop's terms, as the buyer and the pricer see it."""

    claim: ClaimedCoupon
    drop: CouponDrop

    @property
    def coupon(self) -> rules.Coupon:
        return coupon_of(self.drop, id=self.claim.id, quantity=self.drop.quantity)


async def held_by(db: AsyncSession, user_id: int, *, broadcast_id: int | None = None,
                  claim_ids: Sequence[int] | None = None, usable_at: datetime | None = None) -> list[Held]:
    """A viewer's claimed (unused) coupons; with `usable_at`, only those whose use window is open then."""
    q = (select(ClaimedCoupon, CouponDrop).join(CouponDrop, CouponDrop.id == ClaimedCoupon.drop_id)
         .where(ClaimedCoupon.user_id == user_id, ClaimedCoupon.state == ClaimState.CLAIMED)
         .order_by(ClaimedCoupon.id))
    if broadcast_id is not None:
        q = q.where(CouponDrop.broadcast_id == broadcast_id)
    if claim_ids is not None:
        q = q.where(ClaimedCoupon.id.in_(list(claim_ids)))
    out = [Held(c, d) for c, d in (await db.execute(q)).all()]
    if usable_at is not None:
        ended = {b.id: b.ended_at for b in (await db.scalars(select(Broadcast).where(
            Broadcast.id.in_({h.drop.broadcast_id for h in out})))).all()} if out else {}
        out = [h for h in out if rules.usable(usable_at, h.drop.dropped_at or h.claim.claimed_at, h.drop.use_days,
                                              ended.get(h.drop.broadcast_id))]
    return out


def held_out(h: Held) -> dict[str, Any]:
    return {"claim_id": h.claim.id, "drop": drop_out(h.drop), "state": h.claim.state.value,
            "claimed_at": h.claim.claimed_at.isoformat(),
            "use_ends_at": h.claim.use_ends_at.isoformat() if h.claim.use_ends_at else None}
