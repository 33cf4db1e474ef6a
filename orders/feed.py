"""Purchases in the live room: each purchase made during the stream appears in the room's feed with a
masked name ("김** bought sesame oil ×2", batched under load with the rest of the room's events), the stock
left is pushed to viewers (coalesced, about once a second), and the host's console gets the figures."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecommerce.keys import AppKeys
from sessions.room import NAMESPACE, Versions, moderators_room, publish, room

from .figures import broadcast_figures
from .lineup import lineup_stock
from .placing import PurchaseEvent
from .schemas import FiguresOut

SALES = web.AppKey("orders_sales_versions", Versions)  # bumped by each committed sale or cancellation


def sales_versions(app: web.Application) -> Versions:
    sales = app.get(SALES)
    if sales is None:
        raise RuntimeError("the sales versions are made at startup (orders.feed.sales_ctx)")
    return sales


async def on_purchase(app: web.Application, event: PurchaseEvent) -> None:
    """Registered as a purchase listener: runs after the purchase's commit."""
    await sales_versions(app).bump(event.broadcast_id)
    if event.kind != "placed":
        return
    lines = [{"product_id": ln.product_id, "quantity": ln.quantity, "name_ko": ln.name_ko, "name_en": ln.name_en}
             for ln in event.lines]
    await publish(app, event.broadcast_id, "purchase", {"buyer": event.buyer, "lines": lines,
                                                        "at": event.at.isoformat()})


async def on_tick(app: web.Application, broadcast_id: int) -> None:
    """Registered on the room's ticker: when the broadcast's sales changed, push the stock left."""
    if await sales_versions(app).due(broadcast_id):
        await push_sales(app, broadcast_id)


async def push_sales(app: web.Application, broadcast_id: int) -> None:
    """Stock left to the room, figures to the console. Both are read from the database, which is the truth."""
    manager = app[AppKeys.sio].manager
    moderators = moderators_room(broadcast_id)
    async with app[AppKeys.reader]() as db:
        left = await lineup_stock(db, broadcast_id)
        figures: dict[str, Any] | None = None
        if manager.rooms.get(NAMESPACE, {}).get(moderators):
            figures = FiguresOut.model_validate(await broadcast_figures(db, broadcast_id)).model_dump(mode="json")
    manager.write_room("stock", {"broadcast_id": broadcast_id, "left": {str(k): v for k, v in left.items()}},
                       NAMESPACE, room(broadcast_id))
    if figures is not None:
        manager.write_room("figures", figures, NAMESPACE, moderators)


async def sales_ctx(app: web.Application) -> Any:
    """cleanup_ctx: the sales versions, on the app's Redis when there is one."""
    app[SALES] = Versions(app.get(AppKeys.redis), app[AppKeys.config].redis.prefix, "sales")
    yield
