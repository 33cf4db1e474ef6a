"""What the sales add up to: the host console's figures for a broadcast (orders, revenue, units per
product, buyers against viewers, sales per minute of the stream) and the staff's export of orders as a
CSV that Excel opens. Revenue is the goods at the prices charged, net of each line's share of the
discount, without delivery fees; cancelled and refunded orders and lines do not count."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce import i18n
from livecommerce.db import utcnow
from livecommerce.errors import N_, NotFound
from livecommerce.models import Product
from sessions.models import Broadcast

from . import rules
from .fulfilment import PurchaseFilter, broadcasts_of, list_purchases, merchants_by_id, products_of
from .lineup import read_offers
from .models import DELIVERY_LABELS, STATUS_LABELS, OrderStatus, Purchase, PurchaseLine
from .payments import METHOD_LABELS

__all__ = ["COUNTED", "CSV_COLUMNS", "Figures", "ProductFigures", "broadcast_figures", "orders_csv"]

S = OrderStatus
COUNTED = (S.PLACED, S.PAID, S.PACKED, S.DELIVERED)  # statuses that count as sales
MAX_MINUTES = 24 * 60


@dataclass(frozen=True)
class ProductFigures:
    product_id: int
    name_ko: str
    name_en: str
    units: int
    revenue: int
    reserved: int
    left: int


@dataclass(frozen=True)
class Figures:
    broadcast_id: int
    state: str
    orders: int
    revenue: int  # goods sold at live prices, less discounts (no delivery fees)
    units: int
    buyers: int
    viewers: int  # the broadcast's peak viewer count
    conversion: float | None  # buyers / viewers
    products: list[ProductFigures]
    minutes: list[rules.MinuteBucket]  # sales per minute of the stream
    at: datetime


async def broadcast_figures(db: AsyncSession, broadcast_id: int, now: datetime | None = None) -> Figures:
    """The host console's figures: orders, revenue, units per product, buyers against viewers, and
    sales per minute of the stream. Cancelled and refunded orders do not count."""
    now = now or utcnow()
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    counted = and_(Purchase.broadcast_id == broadcast_id, Purchase.status.in_(COUNTED))
    net = PurchaseLine.line_total - PurchaseLine.discount  # a line's revenue: its share of the discount off
    totals = (await db.execute(select(func.count(Purchase.id),
                                      func.coalesce(func.sum(Purchase.subtotal - Purchase.discount), 0),
                                      func.count(func.distinct(Purchase.user_id))).where(counted))).one()
    per_product = {r.product_id: (int(r.units), int(r.revenue)) for r in (await db.execute(
        select(PurchaseLine.product_id, func.sum(PurchaseLine.quantity).label("units"),
               func.sum(net).label("revenue"))
        .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
        .where(counted, PurchaseLine.status.in_(COUNTED)).group_by(PurchaseLine.product_id))).all()}
    minute = (Purchase.stream_second // 60).label("minute")
    per_minute = (await db.execute(
        select(minute, func.count(func.distinct(Purchase.id)), func.sum(PurchaseLine.quantity), func.sum(net))
        .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
        .where(counted, PurchaseLine.status.in_(COUNTED)).group_by(minute))).all()
    offers = await read_offers(db, broadcast_id)
    products = [ProductFigures(pid, r.name_ko, r.name_en, *per_product.get(pid, (0, 0)), r.reserved, r.offer.left)
                for pid, r in offers.items()]
    listed = set(offers)
    if set(per_product) - listed:  # sold, then taken off the line-up
        extra = (await db.scalars(select(Product).where(Product.id.in_(set(per_product) - listed)))).all()
        products += [ProductFigures(p.id, p.name_ko, p.name_en, *per_product[p.id], 0, 0) for p in extra]
    until = min(now, b.ended_at) if b.ended_at else now
    up_to = rules.stream_second(until, b.started_at) // 60 if b.started_at else -1
    minutes = rules.fill_minutes(((int(m), int(o), int(u or 0), int(r or 0)) for m, o, u, r in per_minute),
                                 min(up_to, MAX_MINUTES))
    orders, revenue, buyers = int(totals[0]), int(totals[1]), int(totals[2])
    viewers = int(b.peak_viewers or 0)
    return Figures(broadcast_id, b.state.value, orders, revenue, sum(p.units for p in products), buyers, viewers,
                   round(buyers / viewers, 4) if viewers else None, products, minutes[: MAX_MINUTES + 1], now)


# -- the export -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    N_("Order number"), N_("Placed at"), N_("Broadcast"), N_("Second of stream"), N_("Order status"), N_("Buyer"),
    N_("Phone"), N_("Postal code"), N_("Address"), N_("Product"), N_("Stall"), N_("Quantity"), N_("Live price"),
    N_("Usual price"), N_("Line total"), N_("Line discount"), N_("Line status"), N_("Delivery"), N_("Arrives by"),
    N_("Payment"), N_("Paid at"), N_("Subtotal"), N_("Discount"), N_("Delivery fee"), N_("Total"), N_("Note"),
)


async def orders_csv(db: AsyncSession, f: PurchaseFilter, tz: ZoneInfo, loc: str) -> str:
    """The filtered orders, one row per line (a stall's own lines only, when filtered by stall), in the
    reader's language, every text cell safe from formula injection. Each line shows its total and its
    share of the order's discount, so a stall's revenue is the one less the other."""
    rows = await list_purchases(db, f, limit=100_000)
    products = await products_of(db, rows)
    merchants = await merchants_by_id(db)
    titles = await broadcasts_of(db, {p.broadcast_id for p in rows})
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow([i18n.gettext(c) for c in CSV_COLUMNS])

    def text(value: str) -> str:
        return rules.spreadsheet_safe(value)

    def when(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if moment else ""

    for p in rows:
        b = titles.get(p.broadcast_id)
        for li in p.lines:
            if f.merchant_id is not None and li.merchant_id != f.merchant_id:
                continue
            prod = products.get(li.product_id)
            m = merchants.get(li.merchant_id)
            out.writerow([
                p.id, when(p.placed_at), text(i18n.pick(b, "title", loc)) if b else p.broadcast_id, p.stream_second,
                i18n.gettext(STATUS_LABELS[p.status]), text(p.contact_name), text(p.contact_phone), p.postal_code,
                text(f"{p.address1} {p.address2}".strip()),
                text(i18n.pick(prod, "name", loc)) if prod else li.product_id,
                text(i18n.pick(m, "name", loc)) if m else li.merchant_id, li.quantity, li.unit_price, li.usual_price,
                li.line_total, li.discount, i18n.gettext(STATUS_LABELS[li.status]),
                i18n.gettext(DELIVERY_LABELS[p.delivery_option]),
                when(p.delivery_promise_at), i18n.gettext(METHOD_LABELS.get(p.payment_method, p.payment_method)),
                when(p.paid_at), p.subtotal, p.discount, p.delivery_fee, p.total, text(p.note)])
    return buf.getvalue()
