"""Purchases in the live room: each purchase made during the stream appears in the room's feed with a
masked name ("김** bought sesame oil ×2", batched under load with the rest of the room's events), the stock
left is pushed to viewers (coalesced, a few times a second), and the host's console gets the figures."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecommerce.keys import AppKeys
from orders import services as orders
from orders.schemas import FiguresOut

from .room import NAMESPACE, ROOM_PREFIX, ROOMS, RoomRuntime


async def on_purchase(app: web.Application, event: orders.PurchaseEvent) -> None:
    """Registered as a purchase listener: runs after the purchase's commit."""
    from .events import publish

    rt = app[ROOMS]
    await rt.sales_changed(event.broadcast_id)
    if event.kind != "placed":
        return
    lines = [{"product_id": ln.product_id, "quantity": ln.quantity, "name_ko": ln.name_ko, "name_en": ln.name_en}
             for ln in event.lines]
    await publish(app, event.broadcast_id, "purchase", {"buyer": event.buyer, "lines": lines,
                                                        "at": event.at.isoformat()})


async def push_sales(app: web.Application, rt: RoomRuntime, broadcast_id: int, moderators: str) -> None:
    """Called by the room's ticker when the broadcast's sales changed: stock left to the room, figures to
    the console. Both are read from the database, which is the truth."""
    manager = app[AppKeys.sio].manager
    async with app[AppKeys.reader]() as db:
        left = await orders.lineup_stock(db, broadcast_id)
        figures: dict[str, Any] | None = None
        if manager.rooms.get(NAMESPACE, {}).get(moderators):
            figures = FiguresOut.model_validate(await orders.broadcast_figures(db, broadcast_id)).model_dump(
                mode="json")
    manager.write_room("stock", {"broadcast_id": broadcast_id, "left": {str(k): v for k, v in left.items()}},
                       NAMESPACE, f"{ROOM_PREFIX}{broadcast_id}")
    if figures is not None:
        manager.write_room("figures", figures, NAMESPACE, moderators)


def register(app: web.Application) -> None:
    app[orders.PURCHASE_LISTENERS].append(on_purchase)
