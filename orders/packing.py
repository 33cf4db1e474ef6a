"""A stall's orders as a stall-keeper works through them: each order as one card (what to pack, for whom,
by when), one tap to pack or hand over every line of the stall in it, and a day's packing list to print
(each product's total, then the orders it goes into). The grouping is pure; the reads and the moves are
units of work on a database session (`db` first)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.errors import Conflict, Forbidden, ValidationFailed
from livecommerce.models import Product, Role, User

from . import rules
from .fulfilment import MERCHANT_MOVES, MerchantLine, get_purchase, move_line
from .models import OrderStatus, Purchase, PurchaseLine
from .pricing import Releaser

__all__ = [
    "OrderCard",
    "PackingItem",
    "PackingOrder",
    "day_bounds",
    "day_lines",
    "move_stall_lines",
    "order_cards",
    "packing_list",
    "stall_moves",
]

S = OrderStatus
CALLED_OFF = frozenset({S.CANCELLED, S.REFUNDED})


def stall_moves(lines: Iterable[PurchaseLine], method: str) -> list[OrderStatus]:
    """The moves a stall can make on its lines of one order with one tap (packed before delivered): a
    move is offered when at least one of the lines can make it."""
    possible = {m for li in lines for m in rules.allowed_moves(li.status, method) if m in MERCHANT_MOVES}
    return [m for m in (S.PACKED, S.DELIVERED) if m in possible]


@dataclass
class OrderCard:
    """One order as its stall sees it: the stall's lines in it only."""

    purchase: Purchase
    lines: list[MerchantLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        """What the stall is owed for its lines: their totals less their share of the order's coupon."""
        return sum(r.line.line_total - r.line.discount for r in self.lines)

    @property
    def moves(self) -> list[OrderStatus]:
        return stall_moves((r.line for r in self.lines), self.purchase.payment_method)

    @property
    def status(self) -> OrderStatus:
        return rules.purchase_status(r.line.status for r in self.lines)


def order_cards(rows: Sequence[MerchantLine]) -> list[OrderCard]:
    """A stall's lines grouped by order, in the order the rows come (newest order first)."""
    cards: dict[int, OrderCard] = {}
    for r in rows:
        cards.setdefault(r.purchase.id, OrderCard(r.purchase)).lines.append(r)
    return list(cards.values())


@dataclass(frozen=True)
class PackingOrder:
    purchase: Purchase
    line: PurchaseLine


@dataclass
class PackingItem:
    """One product on a day's packing list: how many in all, and the orders they go into."""

    product: Product
    quantity: int = 0
    orders: list[PackingOrder] = field(default_factory=list)


def packing_list(rows: Iterable[MerchantLine]) -> list[PackingItem]:
    """Lines still to hand over (not cancelled or refunded), by product (most units first, then by
    name), each with its orders oldest first."""
    items: dict[int, PackingItem] = {}
    for r in rows:
        if r.line.status in CALLED_OFF:
            continue
        item = items.setdefault(r.product.id, PackingItem(r.product))
        item.quantity += r.line.quantity
        item.orders.append(PackingOrder(r.purchase, r.line))
    for item in items.values():
        item.orders.sort(key=lambda o: (o.purchase.placed_at, o.purchase.id, o.line.id))
    return sorted(items.values(), key=lambda i: (-i.quantity, i.product.name_ko, i.product.id))


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """A local calendar day as the UTC moments it starts and ends at."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


async def day_lines(db: AsyncSession, merchant_id: int, start: datetime, end: datetime) -> list[MerchantLine]:
    """A stall's lines (never another stall's) of the orders placed in `[start, end)`, oldest first."""
    q = (select(PurchaseLine, Purchase, Product).join(Purchase, Purchase.id == PurchaseLine.purchase_id)
         .join(Product, Product.id == PurchaseLine.product_id)
         .where(PurchaseLine.merchant_id == merchant_id, Purchase.placed_at >= start, Purchase.placed_at < end)
         .order_by(Purchase.placed_at, Purchase.id, PurchaseLine.id))
    return [MerchantLine(li, p, prod) for li, p, prod in (await db.execute(q)).all()]


async def move_stall_lines(db: AsyncSession, actor: User, purchase_id: int, merchant_id: int | None,
                           wanted: OrderStatus, now: datetime, releasers: Sequence[Releaser] = ()) -> Purchase:
    """One tap on an order's card: every line of the stall in the order that can become `wanted` does
    (each by the same conditional move as a single line). A merchant moves their own stall's lines only;
    staff name the stall."""
    if wanted not in MERCHANT_MOVES:
        raise ValidationFailed("Choose packed or delivered.", code="invalid_status")
    if actor.role is Role.MERCHANT:
        if actor.merchant_id is None:
            raise Forbidden("Your account is not linked to a stall.", code="no_stall")
        merchant_id = actor.merchant_id
    elif actor.role is not Role.STAFF:
        raise Forbidden()
    if merchant_id is None:
        raise ValidationFailed("Choose a stall first.", code="stall_required")
    purchase = await get_purchase(db, purchase_id)
    mine = [li for li in purchase.lines if li.merchant_id == merchant_id]
    if not mine:
        raise Forbidden("This order has nothing from your stall.", code="not_your_order")
    movable = [li.id for li in mine if wanted in rules.allowed_moves(li.status, purchase.payment_method)]
    if not movable:
        raise Conflict("Nothing of your stall in this order can take that step now. Reload the page.",
                       code="illegal_status_move")
    for line_id in movable:
        purchase = await move_line(db, actor, line_id, wanted, now, releasers)
    return purchase
