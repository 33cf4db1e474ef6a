"""Purchases in the live room: each purchase made during the stream appears in the room's feed with a
masked name ("김** bought sesame oil ×2", batched under load with the rest of the room's events), the stock
left is pushed to viewers (coalesced, about once a second), and the host's console gets the figures."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from livecommerce.keys import AppKeys
from sessions.room import NAMESPACE, moderators_room, publish, room

from .figures import broadcast_figures
from .lineup import lineup_stock
from .placing import PurchaseEvent
from .schemas import FiguresOut


class SalesVersions:
    """A version per broadcast, bumped by each committed sale or cancellation: in Redis when it is configured
    (every process sees the bump), in memory otherwise. Each process pushes the stock when the version it
    last pushed is behind."""

    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._local: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._pushed_at: dict[int, float] = {}

    def _key(self, broadcast_id: int) -> str:
        return f"{self.prefix}room:{broadcast_id}:sales"

    async def bump(self, broadcast_id: int) -> None:
        if self.redis is not None:
            await self.redis.incr(self._key(broadcast_id))
        else:
            self._local[broadcast_id] = self._local.get(broadcast_id, 0) + 1

    async def version(self, broadcast_id: int) -> int:
        if self.redis is not None:
            return int(await self.redis.get(self._key(broadcast_id)) or 0)
        return self._local.get(broadcast_id, 0)

    async def due(self, broadcast_id: int, min_interval: float = 1.0) -> bool:
        """True (once) when the sales changed since this process last pushed, at most every `min_interval` s."""
        version = await self.version(broadcast_id)
        now = time.monotonic()
        if version == self._seen.get(broadcast_id, 0) or now - self._pushed_at.get(broadcast_id, 0) < min_interval:
            return False
        self._seen[broadcast_id] = version
        self._pushed_at[broadcast_id] = now
        return True


SALES = web.AppKey("orders_sales_versions", SalesVersions)


def sales_versions(app: web.Application) -> SalesVersions:
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
    app[SALES] = SalesVersions(app.get(AppKeys.redis), app[AppKeys.config].redis.prefix)
    yield
