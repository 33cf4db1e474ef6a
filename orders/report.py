"""Sales in a broadcast's report (a `sessions.report` part): orders, revenue net of discounts, units and
buyers for the broadcast and its previous episodes in two aggregate queries, and for the broadcast itself
the sales per minute of the show, the top products and what its replay sold after the show."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.errors import N_
from sessions.models import Broadcast
from sessions.report import Details, Metric, ReportPart, Totals

from .figures import COUNTED, ProductFigures, broadcast_figures
from .models import Purchase, PurchaseLine

__all__ = ["SALES_PART", "top_products"]

TOP = 5


def top_products(products: Sequence[ProductFigures], n: int = TOP) -> list[ProductFigures]:
    """The products that sold, best revenue first (then most units, then running order), at most `n`."""
    sold = [(i, p) for i, p in enumerate(products) if p.units > 0]
    sold.sort(key=lambda ip: (-ip[1].revenue, -ip[1].units, ip[0]))
    return [p for _, p in sold[:n]]


async def _totals(db: AsyncSession, broadcasts: Sequence[Broadcast]) -> Totals:
    ids = [b.id for b in broadcasts]
    counted = and_(Purchase.broadcast_id.in_(ids), Purchase.status.in_(COUNTED))
    heads = {r[0]: r for r in (await db.execute(
        select(Purchase.broadcast_id, func.count(Purchase.id), func.coalesce(func.sum(Purchase.subtotal
                                                                                     - Purchase.discount), 0),
               func.count(func.distinct(Purchase.user_id)))
        .where(counted).group_by(Purchase.broadcast_id))).all()}
    units = dict((await db.execute(
        select(Purchase.broadcast_id, func.sum(PurchaseLine.quantity))
        .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
        .where(counted, PurchaseLine.status.in_(COUNTED)).group_by(Purchase.broadcast_id))).all())
    out: Totals = {}
    for bid in ids:
        row = heads.get(bid)
        out[bid] = {"orders": int(row[1]) if row else 0, "revenue": int(row[2]) if row else 0,
                    "buyers": int(row[3]) if row else 0, "units": int(units.get(bid) or 0)}
    return out


async def _details(db: AsyncSession, b: Broadcast) -> Details:
    f = await broadcast_figures(db, b.id)
    after = (0, 0)
    if b.ended_at is not None:  # bought from the replay, at the regular price
        row = (await db.execute(
            select(func.count(Purchase.id), func.coalesce(func.sum(Purchase.subtotal - Purchase.discount), 0))
            .where(Purchase.broadcast_id == b.id, Purchase.status.in_(COUNTED),
                   Purchase.placed_at > b.ended_at))).one()
        after = (int(row[0]), int(row[1]))
    top = [{"product_id": p.product_id, "name_ko": p.name_ko, "name_en": p.name_en, "units": p.units,
            "revenue": p.revenue} for p in top_products(f.products)]
    return Details(series={"orders": {m.minute: m.orders for m in f.minutes},
                           "revenue": {m.minute: m.revenue for m in f.minutes}},
                   data={"top_products": top, "after_show_orders": after[0], "after_show_revenue": after[1]},
                   template="orders/_report.html")


SALES_PART = ReportPart("sales", (Metric("orders", N_("Orders")), Metric("revenue", N_("Revenue"), money=True),
                                  Metric("units", N_("Units sold")), Metric("buyers", N_("Buyers"))),
                        _totals, _details)
