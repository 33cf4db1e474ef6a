"""The line-up as buying reads it: a broadcast, its market's order settings and each product on the
line-up with its live price and the units the show can still sell, in one statement (`read_lineup`);
and the line-up each process keeps for a moment (`LineupCache`), so a flash sale's refusals need no
read of their own."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from aiohttp import web
from sqlalchemy import Table, and_, bindparam, func, select

from livecommerce import i18n
from livecommerce.caches import Changed, Key, Watch
from livecommerce.errors import NotFound
from livecommerce.models import Product
from livecommerce.uow import UnitOfWork
from sessions.models import Broadcast, BroadcastState, LineupItem

from . import rules
from .connections import quick_read
from .models import LineupSale, MarketOrderSettings
from .rules import Offer

__all__ = [
    "LINEUPS",
    "WATCHES",
    "BroadcastInfo",
    "Lineup",
    "LineupCache",
    "OfferRow",
    "lineup_stock",
    "read_broadcast",
    "read_lineup",
    "read_offers",
]


@dataclass(frozen=True)
class BroadcastInfo:
    id: int
    market_id: int
    state: BroadcastState
    started_at: datetime | None
    recording_url: str = ""  # set: once ended, the replay sells at regular prices


@dataclass(frozen=True)
class OfferRow:
    offer: Offer
    name_ko: str
    name_en: str
    image: str
    unit_ko: str
    unit_en: str
    reserved: int
    sold: int


@dataclass(frozen=True)
class Lineup:
    info: BroadcastInfo
    offers: dict[int, OfferRow]  # active products only, in running order
    settings: MarketOrderSettings | None  # a detached copy; None: the market uses the defaults


# Built once: the broadcast, its market's order settings and its line-up with what is sold, in one
# statement (and, on PostgreSQL, outside any transaction: see `connections.quick_read`).
_B, _LI, _P, _LS, _MS = (cast(Table, m.__table__)
                         for m in (Broadcast, LineupItem, Product, LineupSale, MarketOrderSettings))
_SETTING_COLUMNS = [c for c in _MS.c if c.name != "updated_at"]
_LINEUP = (
    select(_B.c.market_id, _B.c.state, _B.c.started_at, _B.c.recording_url, _LI.c.product_id, _LI.c.live_price,
           _LI.c.stock_reserved,
           func.coalesce(_LS.c.sold, 0).label("sold"), _P.c.merchant_id, _P.c.price, _P.c.stock, _P.c.is_active,
           _P.c.name_ko, _P.c.name_en, _P.c.image, _P.c.unit_ko, _P.c.unit_en,
           *(c.label(f"ms_{c.name}") for c in _SETTING_COLUMNS))
    .select_from(_B.outerjoin(_MS, _MS.c.market_id == _B.c.market_id)
                 .outerjoin(_LI, _LI.c.broadcast_id == _B.c.id)
                 .outerjoin(_P, _P.c.id == _LI.c.product_id)
                 .outerjoin(_LS, and_(_LS.c.broadcast_id == _LI.c.broadcast_id, _LS.c.product_id == _LI.c.product_id)))
    .where(_B.c.id == bindparam("broadcast_id"))
    .order_by(_LI.c.position))


async def read_lineup(db: UnitOfWork, broadcast_id: int) -> Lineup:
    """The broadcast, its line-up's live prices and what each product has left for the show."""
    rows = (await db.execute(_LINEUP, {"broadcast_id": broadcast_id})).all()
    if not rows:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    first = rows[0]
    loc = i18n.current_locale.get()
    offers: dict[int, OfferRow] = {}
    for r in rows:
        if r.product_id is None or not r.is_active:
            continue
        name = (r.name_en if loc == "en" else r.name_ko) or r.name_ko
        offer = Offer(r.product_id, r.merchant_id, r.live_price, r.price, rules.stock_left(r.stock_reserved, r.sold,
                                                                                          r.stock), name)
        offers[r.product_id] = OfferRow(offer, r.name_ko, r.name_en, r.image, r.unit_ko, r.unit_en, r.stock_reserved,
                                        r.sold)
    info = BroadcastInfo(broadcast_id, first.market_id, BroadcastState(first.state), first.started_at,
                         first.recording_url or "")
    settings = None
    if first.ms_market_id is not None:
        settings = MarketOrderSettings(**{c.name: getattr(first, f"ms_{c.name}") for c in _SETTING_COLUMNS})
    return Lineup(info, offers, settings)


async def read_broadcast(db: UnitOfWork, broadcast_id: int) -> BroadcastInfo:
    return (await read_lineup(db, broadcast_id)).info


async def read_offers(db: UnitOfWork, broadcast_id: int,
                      product_ids: Iterable[int] | None = None) -> dict[int, OfferRow]:
    """The line-up's active products with their live prices and what is left for the show."""
    offers = (await read_lineup(db, broadcast_id)).offers
    if product_ids is None:
        return offers
    wanted = set(product_ids)
    return {pid: r for pid, r in offers.items() if pid in wanted}


async def lineup_stock(db: UnitOfWork, broadcast_id: int) -> dict[int, int]:
    """product id -> units the show can still sell (0: sold out), for every product on the line-up."""
    return {pid: row.offer.left for pid, row in (await read_offers(db, broadcast_id)).items()}


# -- the kept line-up -------------------------------------------------------------------------------

class LineupCache:
    """Each broadcast's line-up as read at most `ttl` seconds ago, per language, for refusing purchase
    attempts without a read of their own. An attempt it lets through is checked again inside its own
    transaction, so a stale entry can only refuse, for at most `ttl`, what has just become possible
    on another process (units given back, the show going live, a new line-up). Concurrent callers
    share one read. The app's caches tell it (`forget`) after every commit that touches a broadcast, a
    line-up, a product, the show's sales or a market's order settings, on any process; a purchase made
    here tells it what it left (`sold`)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[int, str], tuple[float, Lineup]] = {}
        self._reading: dict[tuple[int, str], asyncio.Task[Lineup]] = {}
        self._generation = 0

    async def get(self, app: web.Application, broadcast_id: int) -> Lineup:
        if self.ttl <= 0:
            async with quick_read(app) as db:
                return await read_lineup(db, broadcast_id)
        k = (broadcast_id, i18n.current_locale.get())
        hit = self._entries.get(k)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        task = self._reading.get(k)
        if task is None:
            task = asyncio.ensure_future(self._read(app, k))
            self._reading[k] = task
        return await asyncio.shield(task)

    async def _read(self, app: web.Application, k: tuple[int, str]) -> Lineup:
        generation = self._generation
        try:
            async with quick_read(app) as db:
                lineup = await read_lineup(db, k[0])
            if self._generation == generation:  # nothing was committed here meanwhile
                if len(self._entries) >= 10_000:
                    self._entries.clear()
                self._entries[k] = (self.clock() + self.ttl, lineup)
            return lineup
        finally:
            self._reading.pop(k, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def forget(self, changed: Changed) -> None:
        """A commit changed what some line-ups hold (see `WATCHES`): drop them; a read in flight may be from
        before the commit, so it is not kept either."""
        ids: set[Key] = set()
        for keys in changed.values():
            if keys is None:
                self.clear()
                return
            ids |= keys
        self._generation += 1
        for k in [k for k in self._entries if k[0] in ids]:
            del self._entries[k]

    def sold(self, broadcast_id: int, left: Mapping[int, int]) -> None:
        """A purchase committed here: what its products have left now, as its UPDATEs returned them.
        Units only go down when buying (they come back through a cancellation, which clears), so
        of two purchases told in either order the smaller figure is the newer."""
        self._generation += 1  # a read begun before this commit must not be kept
        for k, (expires, lineup) in list(self._entries.items()):
            if k[0] != broadcast_id or not any(pid in lineup.offers for pid in left):
                continue
            offers = dict(lineup.offers)
            for pid, n in left.items():
                row = offers.get(pid)
                if row is not None and n < row.offer.left:
                    offers[pid] = dataclasses.replace(row, offer=dataclasses.replace(row.offer, left=n))
            self._entries[k] = (expires, dataclasses.replace(lineup, offers=offers))


# What a line-up is read from: the app's caches forget the kept line-ups after a commit that changed one of
# these (here at once, on the other processes through Redis); the keys are broadcast ids where a column names
# them, else every line-up is dropped.
WATCHES = (Watch("broadcasts", "id"), Watch("lineup_items", "broadcast_id"), Watch("lineup_sales", "broadcast_id"),
           Watch("products"), Watch("market_order_settings"))


LINEUPS = web.AppKey("orders_lineups", LineupCache)
