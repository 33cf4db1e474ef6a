"""Checking and placing a purchase: everything a read of the line-up can refuse (`check_order`), the
purchase written in its own transaction with its stock taken by conditional UPDATEs (`place_purchase`:
never read-then-write, a multi-line order takes every line or none), units given back (`give_back`),
the listeners told after each commit (`PURCHASE_LISTENERS`), and the flash sale's admission, which
lets no more buyers write at once than there are units (`Admission`, `admit`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import Table, bindparam, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from livecommerce.config import Config
from livecommerce.errors import AppError, Unavailable, ValidationFailed
from livecommerce.models import Product, User
from livecommerce.uow import UnitOfWork, dialect_name
from sessions.models import LineupItem

from . import rules
from .errors import BroadcastNotLive, SoldOut, refused
from .keys import KEY_CHECKS
from .lineup import LINEUPS, Lineup, read_lineup, read_offers
from .models import DeliveryOption, LineupSale, MarketOrderSettings, OrderStatus, Purchase, PurchaseLine
from .payments import PaymentProvider, offered
from .pricing import Pricer, PricingContext, price
from .rules import Basket, DeliveryQuote, RuleError, Wanted, masked_name
from .settings import delivery_rules

__all__ = [
    "ADMISSION",
    "PURCHASE_LISTENERS",
    "Admission",
    "Checked",
    "EventLine",
    "OrderInput",
    "Placed",
    "PurchaseEvent",
    "PurchaseListener",
    "Ticket",
    "admit",
    "check_order",
    "give_back",
    "left_after",
    "notify",
    "place_purchase",
    "precheck",
    "take_stock",
]

log = logging.getLogger("livecommerce.orders")


@dataclass(frozen=True)
class OrderInput:
    lines: Sequence[Wanted]
    name: str
    phone: str
    postal_code: str
    address1: str
    address2: str
    note: str
    payment_method: str
    delivery_option: DeliveryOption | None = None  # what the buyer was quoted and confirms
    coupons: tuple[int, ...] = ()  # the claimed coupons the buyer picked (for the pricers)
    suggest_coupon: bool = False  # pick the best coupon for the buyer (for the pricers)


# -- telling the room -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventLine:
    product_id: int
    quantity: int
    unit_price: int
    name_ko: str = ""  # on a "placed" event: for the room's feed, with no read of its own
    name_en: str = ""


@dataclass(frozen=True)
class PurchaseEvent:
    """What the live room needs after a purchase commits (kind "placed") or gives its units back
    (kind "cancelled" or "refunded")."""

    kind: str
    purchase_id: int
    broadcast_id: int
    user_id: int
    buyer: str  # masked: "김**"
    lines: tuple[EventLine, ...]
    total: int
    stream_second: int
    stock_left: dict[int, int]  # product id -> units left for the show, as of this commit
    at: datetime
    coupon_claim_id: int | None = None  # the coupon the purchase redeemed (given back when it is called off)


PurchaseListener = Callable[[web.Application, PurchaseEvent], Awaitable[None]]
PURCHASE_LISTENERS = web.AppKey("purchase_listeners", list[PurchaseListener])


async def notify(app: web.Application, event: PurchaseEvent) -> None:
    """Call every listener, after the commit. One listener failing does not stop the others, and never
    changes the answer the buyer gets (the purchase is already recorded)."""
    for listener in list(app.get(PURCHASE_LISTENERS) or ()):
        try:
            await listener(app, event)
        except Unavailable:  # Redis away: the room is not told of this purchase; it stands all the same
            log.warning("purchase not told to the room: Redis did not answer",
                        extra={"purchase": event.purchase_id, "broadcast": event.broadcast_id})
        except Exception:
            log.exception("purchase listener failed", extra={"purchase": event.purchase_id,
                                                             "broadcast": event.broadcast_id})


# -- checking ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checked:
    basket: Basket  # priced from the line-up, with the delivery fee
    quote: DeliveryQuote
    provider: str  # the payment provider that offers the chosen method


def check_order(lineup: Lineup, order: OrderInput, *, max_quantity: int,
                providers: Mapping[str, PaymentProvider], now: datetime, tz: ZoneInfo) -> Checked:
    """Everything a read can refuse: the broadcast is not live (nor ended with its replay on: then the
    regular prices apply, `rules.sale_terms`), the basket is wrong, a product is sold out as far as the
    read can tell (the conditional UPDATE decides for real), the payment method is not offered, the
    delivery option the buyer chose no longer holds."""
    terms = rules.sale_terms(lineup.info.state, lineup.info.recording_url)
    if terms is None:
        raise BroadcastNotLive()
    methods = offered(providers, lineup.settings)
    try:
        rules.normalize_phone(order.phone)
        rules.check_postal_code(order.postal_code)
        basket = rules.price_basket(order.lines, {pid: r.offer for pid, r in lineup.offers.items()},
                                    max_quantity=max_quantity, terms=terms)
        if order.payment_method not in methods:
            raise ValidationFailed("This payment method is not offered here.", code="payment_method_unavailable")
        quote = rules.choose_delivery(delivery_rules(lineup.settings), order.delivery_option, order.postal_code,
                                      now, tz)
    except RuleError as exc:
        raise refused(exc) from None
    return Checked(Basket(basket.lines, basket.subtotal, basket.usual_total, 0, quote.fee), quote,
                   methods[order.payment_method])


# -- taking and giving back stock ---------------------------------------------------------------------

_LS, _LI, _P = (cast(Table, m.__table__) for m in (LineupSale, LineupItem, Product))

# Built once (a purchase runs them on the hot rows every flash sale buyer queues on).
_TAKE_FOR_SHOW = (
    update(_LS)
    .where(_LS.c.broadcast_id == bindparam("b"), _LS.c.product_id == bindparam("p"),
           _LS.c.sold + bindparam("n") <= select(_LI.c.stock_reserved)
           .where(_LI.c.broadcast_id == bindparam("b"), _LI.c.product_id == bindparam("p")).scalar_subquery())
    .values(sold=_LS.c.sold + bindparam("n")).returning(_LS.c.sold))
_TAKE_FROM_PRODUCT = (update(_P).where(_P.c.id == bindparam("p"), _P.c.stock >= bindparam("n"))
                      .values(stock=_P.c.stock - bindparam("n")).returning(_P.c.stock))
# On PostgreSQL both in one statement: the counter's row stays locked for one round trip fewer.
_SHOW_TAKEN = _TAKE_FOR_SHOW.cte("show_taken")
_PRODUCT_TAKEN = (update(_P).where(_P.c.id == bindparam("p"), _P.c.stock >= bindparam("n"),
                                   exists(select(_SHOW_TAKEN.c.sold)))
                  .values(stock=_P.c.stock - bindparam("n")).returning(_P.c.stock).cte("product_taken"))
_TAKE_BOTH = select(select(_SHOW_TAKEN.c.sold).scalar_subquery().label("sold"),
                    select(_PRODUCT_TAKEN.c.stock).scalar_subquery().label("stock"))
_FIRST_SALE = {name: ins(_LS).values(broadcast_id=bindparam("b"), product_id=bindparam("p"), sold=0)
               .on_conflict_do_nothing(index_elements=["broadcast_id", "product_id"])
               for name, ins in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}


async def take_stock(db: UnitOfWork, broadcast_id: int, lines: Sequence[rules.PricedLine],
                     names: Mapping[int, str], reserved: Mapping[int, int] | None = None) -> dict[int, int]:
    """Take every line's units from the show's allowance and from the product's stock, by conditional
    UPDATEs (a row comes back only if the units were there). Rows are locked in product order
    everywhere (`price_basket` sorts the lines), the show's counter before the product, so two
    purchases cannot deadlock. On a refusal the caller's transaction rolls back: a multi-line order
    takes all its lines or none. Returns what each product has left for the show (when `reserved` is
    given)."""
    take = _take_together if dialect_name(db) == "postgresql" else _take_apart
    sold, stock = await take(db, broadcast_id, lines, names)
    if reserved is None:
        return {}
    return {pid: rules.stock_left(reserved.get(pid, 0), sold[pid], stock[pid]) for pid in sold}


Taken = tuple[dict[int, int], dict[int, int]]  # product id -> sold for the show, and -> the product's stock


def _sold_out(line: rules.PricedLine, names: Mapping[int, str]) -> SoldOut:
    return SoldOut(product=names.get(line.product_id, "?"), details={"product_id": line.product_id})


async def _take_together(db: UnitOfWork, broadcast_id: int, lines: Sequence[rules.PricedLine],
                         names: Mapping[int, str]) -> Taken:
    """PostgreSQL: each line's two UPDATEs in one statement, so the counter's row stays locked for one
    round trip fewer."""
    sold: dict[int, int] = {}
    stock: dict[int, int] = {}
    for line in lines:
        params = {"b": broadcast_id, "p": line.product_id, "n": line.quantity}
        row = (await db.execute(_TAKE_BOTH, params)).one()
        if row.sold is None:  # the show's first sale of this product makes its counter row
            await db.execute(_FIRST_SALE["postgresql"], params)
            row = (await db.execute(_TAKE_BOTH, params)).one()
        if row.sold is None or row.stock is None:  # the transaction rolls back what was taken
            raise _sold_out(line, names)
        sold[line.product_id], stock[line.product_id] = row.sold, row.stock
    return sold, stock


async def _take_apart(db: UnitOfWork, broadcast_id: int, lines: Sequence[rules.PricedLine],
                      names: Mapping[int, str]) -> Taken:
    """Elsewhere (SQLite, whose writer holds the whole database anyway): every counter, then every product."""
    sold: dict[int, int] = {}
    stock: dict[int, int] = {}
    for line in lines:
        params = {"b": broadcast_id, "p": line.product_id, "n": line.quantity}
        row = (await db.execute(_TAKE_FOR_SHOW, params)).first()
        if row is None:  # the show's first sale of this product makes its counter row
            await db.execute(_FIRST_SALE[dialect_name(db)], params)
            row = (await db.execute(_TAKE_FOR_SHOW, params)).first()
        if row is None:
            raise _sold_out(line, names)
        sold[line.product_id] = row[0]
    for line in lines:
        row = (await db.execute(_TAKE_FROM_PRODUCT, {"p": line.product_id, "n": line.quantity})).first()
        if row is None:
            raise _sold_out(line, names)
        stock[line.product_id] = row[0]
    return sold, stock


async def give_back(db: UnitOfWork, broadcast_id: int, items: Iterable[tuple[int, int]]) -> None:
    """A cancelled or refunded line returns its units to the show and to the product."""
    ordered = sorted(items)
    for product_id, quantity in ordered:
        await db.execute(update(LineupSale)
                         .where(LineupSale.broadcast_id == broadcast_id, LineupSale.product_id == product_id,
                                LineupSale.sold >= quantity)
                         .values(sold=LineupSale.sold - quantity).execution_options(synchronize_session=False))
    for product_id, quantity in ordered:
        await db.execute(update(Product).where(Product.id == product_id).values(stock=Product.stock + quantity)
                         .execution_options(synchronize_session=False))


async def left_after(db: UnitOfWork, broadcast_id: int, product_ids: Sequence[int]) -> dict[int, int]:
    """What the products have left for the show, as this unit of work sees it."""
    rows = await read_offers(db, broadcast_id, product_ids)
    return {pid: r.offer.left for pid, r in rows.items()}


# -- placing ----------------------------------------------------------------------------------------

@dataclass
class Placed:
    purchase: Purchase
    basket: Basket
    quote: DeliveryQuote
    settings: MarketOrderSettings | None
    names: dict[int, tuple[str, str]]  # product id -> (ko, en)
    reserved: dict[int, int]  # product id -> units the show set aside
    event: PurchaseEvent | None = None  # once the stock is taken


_PU, _PL = cast(Table, Purchase.__table__), cast(Table, PurchaseLine.__table__)
_NEW_PURCHASE = insert(_PU).returning(_PU.c.id)
_NEW_LINES = insert(_PL).returning(_PL.c.id, sort_by_parameter_order=True)
_PAY_BY = update(_PU).where(_PU.c.id == bindparam("i")).values(pay_by=bindparam("by"))


def _columns(obj: Any) -> dict[str, Any]:
    """The column values set on a new ORM object, to insert it as a plain statement (the unset ones
    take their column defaults)."""
    state = obj.__dict__
    return {c.key: state[c.key] for c in obj.__table__.columns if c.key in state}


async def place_purchase(db: UnitOfWork, *, user: User, broadcast_id: int, order: OrderInput, now: datetime,
                         config: Config, providers: Mapping[str, PaymentProvider],
                         answer: Callable[[Placed], Awaitable[None]] | None = None,
                         pricers: Sequence[Pricer] = ()) -> Placed:
    """Record one purchase made during a live stream: priced by the server from the line-up (less what
    the `pricers` take off, see `pricing`), its delivery option decided now, its payment started, its
    stock taken atomically. Raises an `AppError` (and the caller's transaction rolls back, so nothing
    is written) when it cannot be made.

    The purchase rows are written first and the stock taken last, with `answer` (storing the response)
    in between the two and the commit right after: the product's hot rows stay locked for as few
    round trips as possible, which is what a flash sale's buyers queue on. The rows are written as
    plain statements (the returned `Placed.purchase` is a new object filled in, not one a session
    tracks), which costs a fraction of an ORM flush on the path every sale takes."""
    lineup = await read_lineup(db, broadcast_id)
    checked = check_order(lineup, order, max_quantity=config.orders.max_quantity_per_line, providers=providers,
                          now=now, tz=config.tz)
    basket, quote, info = checked.basket, checked.quote, lineup.info
    shares = (0,) * len(basket.lines)
    coupon: dict[str, Any] = {}  # set only when a coupon is redeemed: the INSERT stays the same otherwise
    if pricers:
        adjustment = await price(db, pricers, PricingContext(
            user.id, broadcast_id, info.market_id, basket.lines, basket.subtotal, tuple(order.coupons),
            order.suggest_coupon, now))
        if adjustment is not None:
            basket = dataclasses.replace(basket, discount=adjustment.discount)
            shares = adjustment.per_line
            coupon = {"coupon_claim_id": adjustment.coupon_claim_id, "coupon_code": adjustment.coupon_code}
    purchase = Purchase(
        broadcast_id=broadcast_id, market_id=info.market_id, user_id=user.id,
        stream_second=rules.stream_second(now, info.started_at), status=OrderStatus.PLACED, subtotal=basket.subtotal,
        discount=basket.discount, delivery_fee=basket.delivery_fee, total=basket.total,
        delivery_option=quote.option, delivery_promise_at=quote.promise_at,
        payment_provider=checked.provider, payment_method=order.payment_method,
        contact_name=order.name, contact_phone=rules.normalize_phone(order.phone), postal_code=order.postal_code,
        address1=order.address1, address2=order.address2, note=order.note, placed_at=now, updated_at=now, **coupon,
        lines=[PurchaseLine(product_id=li.product_id, merchant_id=li.merchant_id, quantity=li.quantity,
                            unit_price=li.unit_price, usual_price=li.usual_price, line_total=li.line_total,
                            discount=share, status=OrderStatus.PLACED, updated_at=now)
               for li, share in zip(basket.lines, shares, strict=True)])
    purchase.id = (await db.execute(_NEW_PURCHASE, _columns(purchase))).scalar_one()
    for line in purchase.lines:
        line.purchase_id = purchase.id
    ids = (await db.execute(_NEW_LINES, [_columns(line) for line in purchase.lines])).scalars().all()
    for line, line_id in zip(purchase.lines, ids, strict=True):
        line.id = line_id
    start = providers[checked.provider].start(purchase, lineup.settings, now)
    if start.pay_by is not None:
        purchase.pay_by = start.pay_by
        await db.execute(_PAY_BY, {"i": purchase.id, "by": start.pay_by})
    placed = Placed(purchase, basket, quote, lineup.settings,
                    {pid: (r.name_ko, r.name_en) for pid, r in lineup.offers.items()},
                    {pid: r.reserved for pid, r in lineup.offers.items()})
    if answer is not None:
        await answer(placed)
    left = await take_stock(db, broadcast_id, basket.lines, {pid: r.offer.name for pid, r in lineup.offers.items()},
                            placed.reserved)
    placed.event = PurchaseEvent("placed", purchase.id, broadcast_id, user.id, masked_name(user.display_name),
                                 tuple(EventLine(li.product_id, li.quantity, li.unit_price,
                                                 *placed.names.get(li.product_id, ("", ""))) for li in basket.lines),
                                 purchase.total, purchase.stream_second, left, now, purchase.coupon_claim_id)
    return placed


# -- the flash sale's admission ---------------------------------------------------------------------

async def precheck(app: web.Application, user_id: int, key: str, broadcast_id: int, order: OrderInput, *,
                   config: Config, providers: Mapping[str, PaymentProvider], now: datetime) -> Lineup | None:
    """Before anything is written, refuse what the line-up refuses (not live, sold out, a wrong basket),
    recording nothing, unless the key is already stored (a retry: the claim decides what it gets, and
    None is returned). The line-up comes from `LINEUPS`: during a flash sale most attempts are refused
    with a single indexed read of their key."""
    lineup = await app[LINEUPS].get(app, broadcast_id)
    try:
        check_order(lineup, order, max_quantity=config.orders.max_quantity_per_line, providers=providers, now=now,
                    tz=config.tz)
    except AppError:
        if await app[KEY_CHECKS].known(user_id, key):
            return None
        raise
    return lineup


class Admission:
    """The units this process is buying right now, per broadcast and product. An attempt goes on to
    write only while the line-up (as `LINEUPS` last read it) has units for it beyond those already in
    flight here; otherwise it waits until they settle and is checked again, so that when a few units
    meet thousands of buyers, the buyers who could not get one are told "sold out" after one read
    instead of each running a purchase that the database must refuse. The database stays the judge:
    several processes each admit up to what is left, and their conditional UPDATEs decide."""

    WAIT_SECONDS = 10.0  # after this, an attempt goes on and lets the database decide
    WRITERS = 4  # attempts writing at once per product: the others queue in order, off the event loop

    def __init__(self) -> None:
        self._pending: dict[tuple[int, int], int] = {}
        self._settled: dict[tuple[int, int], asyncio.Event] = {}
        self._writers: dict[tuple[int, int], asyncio.Semaphore] = {}

    def enter(self, broadcast_id: int, wanted: Sequence[Wanted], lineup: Lineup) -> Ticket | asyncio.Event:
        """A ticket to go on (release it when done), or an event to wait for before checking again."""
        units: dict[int, int] = {}
        for w in wanted:
            units[w.product_id] = units.get(w.product_id, 0) + w.quantity
        for pid, n in units.items():
            row = lineup.offers.get(pid)
            k = (broadcast_id, pid)
            pending = self._pending.get(k, 0)
            if row is not None and row.offer.left - pending < n:
                if pending == 0:  # nothing to wait for: checking again refuses it
                    done = asyncio.Event()
                    done.set()
                    return done
                return self._settled.setdefault(k, asyncio.Event())
        taken = [((broadcast_id, pid), n) for pid, n in sorted(units.items())]
        for k, n in taken:
            self._pending[k] = self._pending.get(k, 0) + n
        return Ticket(self, taken)

    async def _write(self, taken: Sequence[tuple[tuple[int, int], int]]) -> list[asyncio.Semaphore]:
        """A writer's place for each product (in product order, so two orders cannot wait on each other).
        Few attempts writing at once keeps the one holding the product's rows from waiting its turn on
        the event loop behind dozens of others, which is what makes a sale of a few units slow."""
        held: list[asyncio.Semaphore] = []
        try:
            for k, _ in taken:
                sem = self._writers.get(k)
                if sem is None:
                    sem = self._writers[k] = asyncio.Semaphore(self.WRITERS)
                await sem.acquire()
                held.append(sem)
        except BaseException:
            for sem in held:
                sem.release()
            raise
        return held

    def _leave(self, taken: Sequence[tuple[tuple[int, int], int]]) -> None:
        for k, n in taken:
            left = self._pending.get(k, 0) - n
            if left > 0:
                self._pending[k] = left
                continue
            self._pending.pop(k, None)
            self._writers.pop(k, None)
            settled = self._settled.pop(k, None)
            if settled is not None:
                settled.set()

    def in_flight(self, broadcast_id: int, product_id: int) -> int:
        return self._pending.get((broadcast_id, product_id), 0)


class Ticket:
    def __init__(self, admission: Admission | None, taken: Sequence[tuple[tuple[int, int], int]]) -> None:
        self._admission = admission
        self._taken = taken
        self._held: list[asyncio.Semaphore] = []

    async def write(self) -> None:
        """Wait for a writer's place (see `Admission._write`)."""
        if self._admission is not None:
            self._held = await self._admission._write(self._taken)

    def release(self) -> None:
        for sem in self._held:
            sem.release()
        self._held = []
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission._leave(self._taken)


ADMISSION = web.AppKey("orders_admission", Admission)


async def admit(app: web.Application, user_id: int, key: str, broadcast_id: int, order: OrderInput, *,
                config: Config, providers: Mapping[str, PaymentProvider], now: datetime) -> Ticket:
    """`precheck`, then a place among the attempts this process is writing (see `Admission`)."""
    admission = app[ADMISSION]
    deadline = time.monotonic() + admission.WAIT_SECONDS
    while True:
        lineup = await precheck(app, user_id, key, broadcast_id, order, config=config, providers=providers,
                                now=now)
        if lineup is None:  # a retry: its stored answer decides
            return Ticket(None, ())
        gate = admission.enter(broadcast_id, order.lines, lineup)
        if isinstance(gate, Ticket):
            return gate
        try:
            await asyncio.wait_for(gate.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return Ticket(None, ())
