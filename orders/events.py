"""Orders' socket events on `/live`: buying during the stream, over the socket."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecommerce.auth import SIGNED_IN
from livecommerce.errors import Unauthenticated
from livecommerce.keys import AppKeys
from livecommerce.realtime import EventGroup, ServerEvent, SocketUser, event, live_parts

from . import buying
from .schemas import SocketPurchaseIn, StockOut


class BuyEvents(EventGroup):
    """Buy at the live price from the room."""

    @event("buy", access=SIGNED_IN, payload=SocketPurchaseIn,
           errors=("broadcast_not_found", "broadcast_not_live", "sold_out", "not_enough_stock", "not_on_lineup",
                   "invalid_quantity", "duplicate_product", "empty_order", "invalid_phone", "invalid_postal_code",
                   "outside_delivery_area", "delivery_option_changed", "payment_method_unavailable",
                   "idempotency_key_missing", "idempotency_key_reused", "idempotency_in_flight"))
    async def buy(self, sid: str, who: SocketUser, p: SocketPurchaseIn) -> dict[str, Any]:
        """Buy at the live price while the broadcast is live: the order of `POST
        /api/v1/broadcasts/{id}/purchases`, with the broadcast and the Idempotency-Key as fields. A retry with
        the same key, over the socket or over HTTP, answers the same and buys nothing more. The answer is
        `{purchase, replayed}`; a refusal stored with the key comes back as the same error every time."""
        assert who.user_id is not None
        user = await self.app[AppKeys.accounts].get(self.app[AppKeys.hot], who.user_id, who.epoch)
        if user is None:
            raise Unauthenticated()
        result = await buying.purchase_once(self.app, user, p.broadcast_id, p.order(), p.idempotency_key)
        if isinstance(result, buying.Refused):  # told as an error acknowledgement, the same on every retry
            raise result.error
        return {"purchase": result.purchase, "replayed": result.replayed}


def setup(app: web.Application) -> None:
    """Orders' part of `/live`: the `buy` event, and the events the sales feed sends."""
    parts = live_parts(app)
    parts.groups.append(BuyEvents)
    parts.server_events += [
        ServerEvent("stock", StockOut, "the room's members"),
        ServerEvent("figures", None,
                    "the console (after `host:watch`): the figures of `GET /api/v1/broadcasts/{id}/figures`"),
    ]
