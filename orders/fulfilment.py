"""After a purchase is placed: reading purchases (a buyer's, a stall's lines, the staff's lists), moving
their lines through `placed → paid → packed → delivered` (or `cancelled`/`refunded`) by conditional
UPDATEs, calling a purchase off with its units given back, payments (staff's confirmation, a gateway's
webhook), and the sweep that cancels bank transfers left unpaid after their deadline. Units of work on a
database session (`db` first); `releasers` (see `pricing`) run in the same transaction when a purchase
is called off as a whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.db import rowcount
from livecommerce.errors import Conflict, Forbidden, NotFound
from livecommerce.keys import AppKeys
from livecommerce.models import Merchant, Product, Role, User
from sessions.models import Broadcast

from . import rules
from .errors import refused
from .models import OrderStatus, Purchase, PurchaseLine
from .payments import PaymentEvent
from .placing import EventLine, PurchaseEvent, give_back, left_after, notify
from .pricing import PRICING, Releaser, release
from .rules import RuleError, masked_name

__all__ = [
    "MERCHANT_MOVES",
    "MerchantLine",
    "PurchaseFilter",
    "apply_payment_event",
    "broadcasts_of",
    "cancel_event",
    "cancel_purchase",
    "cancelled_event",
    "count_purchases",
    "expire_overdue",
    "expire_transfer",
    "get_purchase",
    "list_purchases",
    "mark_paid",
    "merchant_lines",
    "merchants_by_id",
    "move_line",
    "my_purchases",
    "overdue_transfers",
    "products_of",
]

log = logging.getLogger("livecommerce.orders")

S = OrderStatus


# -- reading purchases ----------------------------------------------------------------------------

def _with_lines() -> Any:
    return selectinload(Purchase.lines)


async def get_purchase(db: AsyncSession, purchase_id: int) -> Purchase:
    p = await db.scalar(select(Purchase).where(Purchase.id == purchase_id).options(_with_lines()))
    if p is None:
        raise NotFound("No order with this id.", code="purchase_not_found")
    return p


async def products_of(db: AsyncSession, purchases: Iterable[Purchase]) -> dict[int, Product]:
    ids = {li.product_id for p in purchases for li in p.lines}
    if not ids:
        return {}
    return {p.id: p for p in (await db.scalars(select(Product).where(Product.id.in_(ids)))).all()}


async def my_purchases(db: AsyncSession, user_id: int, limit: int = 50) -> Sequence[Purchase]:
    return (await db.scalars(select(Purchase).where(Purchase.user_id == user_id).options(_with_lines())
                             .order_by(Purchase.id.desc()).limit(limit))).all()


@dataclass(frozen=True)
class PurchaseFilter:
    broadcast_id: int | None = None
    merchant_id: int | None = None
    status: OrderStatus | None = None


def _filtered(q: Any, f: PurchaseFilter) -> Any:
    if f.broadcast_id is not None:
        q = q.where(Purchase.broadcast_id == f.broadcast_id)
    if f.status is not None:
        q = q.where(Purchase.status == f.status)
    if f.merchant_id is not None:
        q = q.where(Purchase.id.in_(select(PurchaseLine.purchase_id).where(PurchaseLine.merchant_id == f.merchant_id)))
    return q


async def list_purchases(db: AsyncSession, f: PurchaseFilter, limit: int = 100, offset: int = 0) -> Sequence[Purchase]:
    q = _filtered(select(Purchase).options(_with_lines()), f)
    return (await db.scalars(q.order_by(Purchase.id.desc()).limit(limit).offset(offset))).all()


async def count_purchases(db: AsyncSession, f: PurchaseFilter) -> int:
    return int(await db.scalar(_filtered(select(func.count()).select_from(Purchase), f)) or 0)


@dataclass(frozen=True)
class MerchantLine:
    line: PurchaseLine
    purchase: Purchase
    product: Product


async def merchant_lines(db: AsyncSession, merchant_id: int, *, status: OrderStatus | None = None,
                         broadcast_id: int | None = None, limit: int = 200) -> list[MerchantLine]:
    """A stall's lines (never another stall's), newest first, with the order they belong to."""
    q = (select(PurchaseLine, Purchase, Product).join(Purchase, Purchase.id == PurchaseLine.purchase_id)
         .join(Product, Product.id == PurchaseLine.product_id).where(PurchaseLine.merchant_id == merchant_id))
    if status is not None:
        q = q.where(PurchaseLine.status == status)
    if broadcast_id is not None:
        q = q.where(Purchase.broadcast_id == broadcast_id)
    rows = (await db.execute(q.order_by(PurchaseLine.id.desc()).limit(limit))).all()
    return [MerchantLine(li, p, prod) for li, p, prod in rows]


async def merchants_by_id(db: AsyncSession) -> dict[int, Merchant]:
    return {m.id: m for m in (await db.scalars(select(Merchant).order_by(Merchant.id))).all()}


async def broadcasts_of(db: AsyncSession, ids: set[int]) -> dict[int, Broadcast]:
    """The broadcasts purchases were made in, by id (for their titles)."""
    if not ids:
        return {}
    return {b.id: b for b in (await db.scalars(select(Broadcast).where(Broadcast.id.in_(ids)))).all()}


# -- changing status ------------------------------------------------------------------------------

MERCHANT_MOVES = frozenset({S.PACKED, S.DELIVERED})


def _rule(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RuleError as exc:
        raise refused(exc) from None


async def _set_line(db: AsyncSession, line: PurchaseLine, wanted: OrderStatus, now: datetime) -> None:
    result = await db.execute(update(PurchaseLine)
                              .where(PurchaseLine.id == line.id, PurchaseLine.status == line.status)
                              .values(status=wanted, updated_at=now).execution_options(synchronize_session=False))
    if rowcount(result) != 1:
        raise Conflict("Someone else changed this order first. Reload and try again.", code="status_changed")
    line.status = wanted


async def _after_lines_moved(db: AsyncSession, purchase: Purchase, now: datetime) -> None:
    purchase.status = rules.purchase_status(li.status for li in purchase.lines)
    if (not rules.prepaid(purchase.payment_method) and purchase.status is S.DELIVERED
            and purchase.paid_at is None):
        purchase.paid_at = now  # paid at the door
    purchase.updated_at = now
    await db.flush()


async def _call_off(db: AsyncSession, purchase: Purchase, target: OrderStatus, now: datetime,
                    releasers: Sequence[Releaser]) -> None:
    """Every line of `purchase` to `target` (cancelled or refunded), its units back, the releasers told."""
    for line in sorted(purchase.lines, key=lambda li: li.product_id):
        await _set_line(db, line, target, now)
    await give_back(db, purchase.broadcast_id, [(li.product_id, li.quantity) for li in purchase.lines])
    await _after_lines_moved(db, purchase, now)
    await release(db, releasers, purchase.id, purchase.coupon_claim_id, now)


async def move_line(db: AsyncSession, actor: User, line_id: int, wanted: OrderStatus, now: datetime,
                    releasers: Sequence[Releaser] = ()) -> Purchase:
    """A merchant packs or delivers one of their own lines; staff may move any line. The line that
    calls off the last of a purchase's lines calls the purchase off: the releasers run."""
    line = await db.get(PurchaseLine, line_id)
    if line is None:
        raise NotFound("No order line with this id.", code="line_not_found")
    if actor.role is Role.MERCHANT:
        if actor.merchant_id is None or line.merchant_id != actor.merchant_id:
            raise Forbidden("This order line is not for your stall.", code="not_your_line")
        if wanted not in MERCHANT_MOVES:
            raise Forbidden()
    elif actor.role is not Role.STAFF:
        raise Forbidden()
    purchase = await get_purchase(db, line.purchase_id)
    line = next(li for li in purchase.lines if li.id == line_id)
    _rule(lambda: rules.check_move(line.status, wanted, purchase.payment_method))
    await _set_line(db, line, wanted, now)
    if wanted in rules.RETURNS_STOCK:
        await give_back(db, purchase.broadcast_id, [(line.product_id, line.quantity)])
    await _after_lines_moved(db, purchase, now)
    if wanted in rules.RETURNS_STOCK and purchase.status in rules.RETURNS_STOCK:
        await release(db, releasers, purchase.id, purchase.coupon_claim_id, now)
    return purchase


async def cancel_purchase(db: AsyncSession, actor: User, purchase_id: int, now: datetime,
                          releasers: Sequence[Releaser] = ()) -> Purchase:
    """Call off a whole purchase: its units go back to the show and the product. A buyer may cancel
    their own order until it is paid or packed; staff may cancel (or refund) any order not delivered."""
    purchase = await get_purchase(db, purchase_id)
    if actor.role is not Role.STAFF:
        if purchase.user_id != actor.id:
            raise NotFound("No order with this id.", code="purchase_not_found")
        if any(li.status is not S.PLACED for li in purchase.lines):
            raise Conflict("This order is already being prepared; ask the market to cancel it.",
                           code="cannot_cancel")
    target = _rule(lambda: rules.cancel_target([li.status for li in purchase.lines], purchase.payment_method))
    await _call_off(db, purchase, target, now, releasers)
    return purchase


async def overdue_transfers(db: AsyncSession, now: datetime, limit: int = 100) -> list[int]:
    """Bank-transfer orders still waiting for their money after their `pay_by`, oldest first."""
    rows = await db.scalars(select(Purchase.id).where(Purchase.status == S.PLACED, Purchase.pay_by.is_not(None),
                                                      Purchase.pay_by < now)
                            .order_by(Purchase.pay_by, Purchase.id).limit(limit))
    return list(rows)


async def expire_transfer(db: AsyncSession, purchase_id: int, now: datetime,
                          releasers: Sequence[Releaser] = ()) -> Purchase | None:
    """Cancel one overdue transfer, giving its units back; None if it was paid or changed meanwhile.
    Each line moves by a conditional UPDATE, so two processes sweeping at once cancel it once."""
    purchase = await get_purchase(db, purchase_id)
    if purchase.status is not S.PLACED or purchase.pay_by is None or purchase.pay_by >= now:
        return None
    await _call_off(db, purchase, S.CANCELLED, now, releasers)
    return purchase


async def expire_overdue(app: web.Application, now: datetime) -> int:
    """One sweep: cancel the overdue transfers (each in its own transaction) and tell the room that
    their units are back. Returns how many were cancelled here."""
    releasers = app[PRICING].releasers
    async with app[AppKeys.reader]() as db:
        ids = await overdue_transfers(db, now)
    done = 0
    for purchase_id in ids:
        try:
            async with app[AppKeys.db].begin() as db:
                purchase = await expire_transfer(db, purchase_id, now, releasers)
                event = await cancelled_event(db, purchase, now) if purchase is not None else None
        except Conflict:  # paid, cancelled or swept by someone else first
            continue
        if event is not None:
            done += 1
            log.info("unpaid transfer cancelled", extra={"purchase": purchase_id, "broadcast": event.broadcast_id})
            await notify(app, event)
    return done


# -- payments ---------------------------------------------------------------------------------------

async def mark_paid(db: AsyncSession, purchase_id: int, now: datetime, *, ref: str | None = None,
                    amount: int | None = None) -> Purchase:
    """The money arrived (staff saw the transfer, or a gateway said so): every placed line becomes
    paid. Paying an order that is already paid changes nothing, so a webhook sent twice pays once."""
    purchase = await get_purchase(db, purchase_id)
    if not rules.prepaid(purchase.payment_method):
        raise Conflict("Orders paid on delivery are paid when they are delivered.", code="paid_on_delivery")
    if amount is not None and amount != purchase.total:
        raise Conflict("The amount paid (%(paid)s) is not the order's total (%(total)s).", code="amount_mismatch",
                       paid=amount, total=purchase.total)
    placed = [li for li in purchase.lines if li.status is S.PLACED]
    if not placed:
        if purchase.paid_at is not None:
            return purchase  # already paid
        raise Conflict("This order can no longer be paid.", code="cannot_pay")
    for line in placed:
        await _set_line(db, line, S.PAID, now)
    purchase.paid_at = now
    if ref is not None:
        purchase.payment_ref = ref
    await _after_lines_moved(db, purchase, now)
    return purchase


async def apply_payment_event(db: AsyncSession, event: PaymentEvent, now: datetime) -> Purchase | None:
    """A gateway's verified webhook. Only "paid" changes anything; the provider must be the purchase's."""
    purchase = await get_purchase(db, event.purchase_id)
    if purchase.payment_provider != event.provider:
        raise Conflict("This order is not paid through that provider.", code="wrong_provider")
    if event.status != "paid":
        log.info("payment event ignored", extra={"purchase": event.purchase_id, "status": event.status})
        return None
    return await mark_paid(db, event.purchase_id, now, ref=event.ref, amount=event.amount)


# -- telling the room -------------------------------------------------------------------------------

def cancel_event(purchase: Purchase, user: User | None, left: dict[int, int], now: datetime) -> PurchaseEvent:
    return PurchaseEvent(purchase.status.value, purchase.id, purchase.broadcast_id, purchase.user_id,
                         masked_name(user.display_name) if user else "*",
                         tuple(EventLine(li.product_id, li.quantity, li.unit_price) for li in purchase.lines),
                         purchase.total, purchase.stream_second, left, now, purchase.coupon_claim_id)


async def cancelled_event(db: AsyncSession, purchase: Purchase, now: datetime) -> PurchaseEvent:
    buyer = await db.get(User, purchase.user_id)
    left = await left_after(db, purchase.broadcast_id, [li.product_id for li in purchase.lines])
    return cancel_event(purchase, buyer, left, now)
