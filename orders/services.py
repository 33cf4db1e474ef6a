"""Order services: units of work on a database session (`db` first). Stock is taken by conditional
UPDATEs in the purchase's own transaction (never read-then-write), a multi-line order takes every
line or none, and idempotency keys make a retried purchase answer the same without buying twice.

For the live room: `lineup_stock`, `broadcast_figures`, `masked_name`, and `PURCHASE_LISTENERS`:
listeners called after each committed purchase, cancellation or refund."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce import i18n
from livecommerce.config import Config
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError, Conflict, Forbidden, NotFound, ValidationFailed
from livecommerce.hot import NativeConnection
from livecommerce.keys import AppKeys
from livecommerce.models import Merchant, Product, Role, User
from sessions.models import Broadcast, BroadcastState, LineupItem

from . import rules
from .models import (
    DeliveryOption,
    IdempotencyKey,
    KeyState,
    LineupSale,
    MarketOrderSettings,
    OrderStatus,
    Purchase,
    PurchaseLine,
)
from .payments import PaymentEvent, PaymentProvider, offered
from .rules import (
    Basket,
    DeliveryQuote,
    DeliveryRules,
    Offer,
    Replay,
    RuleError,
    Wanted,
    masked_name,
)

log = logging.getLogger("livecommerce.orders")

S = OrderStatus
COUNTED = (S.PLACED, S.PAID, S.PACKED, S.DELIVERED)  # statuses that count as sales


# -- errors ---------------------------------------------------------------------------------------

_RULE_STATUS = {"sold_out": 409, "not_enough_stock": 409, "illegal_status_move": 409, "cannot_cancel": 409,
                "delivery_option_changed": 409}


def refused(exc: RuleError) -> AppError:
    """A rule's refusal as an answer: 409 when the state of things refuses it, 422 when the request does."""
    details = {"product_id": exc.params["product_id"]} if "product_id" in exc.params else None
    return AppError(exc.message, code=exc.code, status=_RULE_STATUS.get(exc.code, 422), details=details,
                    **exc.params)


class BroadcastNotLive(AppError):
    status = 409
    code = "broadcast_not_live"
    message = N_("You can buy only while the broadcast is live.")


class SoldOut(AppError):
    status = 409
    code = "sold_out"
    message = N_("Sorry, %(product)s just sold out.")


class IdempotencyKeyMissing(AppError):
    status = 400
    code = "idempotency_key_missing"
    message = N_("Send an Idempotency-Key header (1 to 255 characters) with every purchase.")


class IdempotencyKeyReused(AppError):
    status = 422
    code = "idempotency_key_reused"
    message = N_("This Idempotency-Key was already used for a different order.")


class IdempotencyInFlight(AppError):
    status = 409
    code = "idempotency_in_flight"
    message = N_("This order is still being placed. Wait a moment, then try again.")


class KeyLost(Exception):
    """The key was taken over by a retry after this attempt was presumed dead: do not commit."""


# A unit of work: an ORM session, a plain connection in a transaction, or asyncpg's own (`livecommerce.hot`).
Writes = AsyncSession | AsyncConnection | NativeConnection


def _dialect(db: Writes) -> str:
    return db.bind.dialect.name if isinstance(db, AsyncSession) else db.dialect.name


def _insert(db: Writes) -> Any:
    return pg_insert if _dialect(db) == "postgresql" else sqlite_insert


# -- settings -------------------------------------------------------------------------------------

async def order_settings(db: AsyncSession, market_id: int) -> MarketOrderSettings | None:
    return await db.get(MarketOrderSettings, market_id)


def delivery_rules(settings: MarketOrderSettings | None) -> DeliveryRules:
    if settings is None:
        return DeliveryRules()
    return DeliveryRules(two_hour_cutoff=settings.two_hour_cutoff, same_day_cutoff=settings.same_day_cutoff,
                         two_hour_prefixes=rules.parse_prefixes(settings.two_hour_postal_prefixes),
                         two_hour_fee=settings.two_hour_fee, same_day_fee=settings.same_day_fee,
                         next_day_fee=settings.next_day_fee)


SETTING_FIELDS = ("two_hour_cutoff", "same_day_cutoff", "two_hour_postal_prefixes", "two_hour_fee", "same_day_fee",
                  "next_day_fee", "bank_name", "bank_account", "bank_holder", "transfer_hours", "cod_enabled")


async def save_order_settings(db: AsyncSession, market_id: int, changes: Mapping[str, Any],
                              now: datetime) -> MarketOrderSettings:
    """Create or change a market's order settings; cut-offs and the area are checked."""
    from livecommerce.models import Market

    if await db.get(Market, market_id) is None:
        raise NotFound("No market with this id.", code="market_not_found")
    try:
        for name in ("two_hour_cutoff", "same_day_cutoff"):
            if name in changes:
                rules.parse_cutoff(str(changes[name]))
        if "two_hour_postal_prefixes" in changes:
            changes = {**changes, "two_hour_postal_prefixes": ",".join(
                rules.parse_prefixes(str(changes["two_hour_postal_prefixes"])))}
    except RuleError as exc:
        raise refused(exc) from None
    settings = await db.get(MarketOrderSettings, market_id)
    if settings is None:
        settings = MarketOrderSettings(market_id=market_id)
        db.add(settings)
    for name, value in changes.items():
        if name in SETTING_FIELDS:
            setattr(settings, name, value)
    settings.updated_at = now
    await db.flush()
    return settings


async def seed_demo_order_settings(db: AsyncSession, market_id: int) -> MarketOrderSettings:
    """The demo market's order settings: two-hour delivery in Seoul's Jung-gu and Jongno-gu (postal
    codes 030–032 and 045–046) until 11:00, same day until 20:00 (so evening shows deliver today),
    bank transfer to a demo account, and pay on delivery. Safe to call again."""
    return await save_order_settings(db, market_id, {
        "two_hour_cutoff": "11:00", "same_day_cutoff": "20:00",
        "two_hour_postal_prefixes": "030,031,032,045,046",
        "two_hour_fee": 4000, "same_day_fee": 3000, "next_day_fee": 0,
        "bank_name": "한마음은행", "bank_account": "000-0000-0000-00", "bank_holder": "한마음시장 상인회(데모)",
        "transfer_hours": 24, "cod_enabled": True}, utcnow())


# -- reading the line-up --------------------------------------------------------------------------

@dataclass(frozen=True)
class BroadcastInfo:
    id: int
    market_id: int
    state: BroadcastState
    started_at: datetime | None


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


# Built once: the broadcast, its market's order settings and its line-up with what is sold, in one
# statement (and, on PostgreSQL, outside any transaction: see `quick_read`).
_B, _LI, _P = Broadcast.__table__, LineupItem.__table__, Product.__table__  # type: ignore[attr-defined]
_LS, _K = LineupSale.__table__, IdempotencyKey.__table__  # type: ignore[attr-defined]
_MS = MarketOrderSettings.__table__  # type: ignore[attr-defined]
_SETTING_COLUMNS = [c for c in _MS.c if c.name != "updated_at"]
_LINEUP = (
    select(_B.c.market_id, _B.c.state, _B.c.started_at, _LI.c.product_id, _LI.c.live_price, _LI.c.stock_reserved,
           func.coalesce(_LS.c.sold, 0).label("sold"), _P.c.merchant_id, _P.c.price, _P.c.stock, _P.c.is_active,
           _P.c.name_ko, _P.c.name_en, _P.c.image, _P.c.unit_ko, _P.c.unit_en,
           *(c.label(f"ms_{c.name}") for c in _SETTING_COLUMNS))
    .select_from(_B.outerjoin(_MS, _MS.c.market_id == _B.c.market_id)
                 .outerjoin(_LI, _LI.c.broadcast_id == _B.c.id)
                 .outerjoin(_P, _P.c.id == _LI.c.product_id)
                 .outerjoin(_LS, and_(_LS.c.broadcast_id == _LI.c.broadcast_id, _LS.c.product_id == _LI.c.product_id)))
    .where(_B.c.id == bindparam("broadcast_id"))
    .order_by(_LI.c.position))
Reads = AsyncSession | AsyncConnection


@dataclass(frozen=True)
class Lineup:
    info: BroadcastInfo
    offers: dict[int, OfferRow]  # active products only, in running order
    settings: MarketOrderSettings | None  # a detached copy; None: the market uses the defaults


async def read_lineup(db: Reads, broadcast_id: int) -> Lineup:
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
    info = BroadcastInfo(broadcast_id, first.market_id, BroadcastState(first.state), first.started_at)
    settings = None
    if first.ms_market_id is not None:
        settings = MarketOrderSettings(**{c.name: getattr(first, f"ms_{c.name}") for c in _SETTING_COLUMNS})
    return Lineup(info, offers, settings)


async def read_broadcast(db: Reads, broadcast_id: int) -> BroadcastInfo:
    return (await read_lineup(db, broadcast_id)).info


async def read_offers(db: Reads, broadcast_id: int, product_ids: Iterable[int] | None = None) -> dict[int, OfferRow]:
    """The line-up's active products with their live prices and what is left for the show."""
    offers = (await read_lineup(db, broadcast_id)).offers
    if product_ids is None:
        return offers
    wanted = set(product_ids)
    return {pid: r for pid, r in offers.items() if pid in wanted}


async def lineup_stock(db: Reads, broadcast_id: int) -> dict[int, int]:
    """product id -> units the show can still sell (0: sold out), for every product on the line-up."""
    return {pid: row.offer.left for pid, row in (await read_offers(db, broadcast_id)).items()}


# -- placing a purchase ---------------------------------------------------------------------------

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


PurchaseListener = Callable[[web.Application, PurchaseEvent], Awaitable[None]]
PURCHASE_LISTENERS = web.AppKey("purchase_listeners", list[PurchaseListener])


async def notify(app: web.Application, event: PurchaseEvent) -> None:
    """Call every listener, after the commit. One listener failing does not stop the others, and never
    changes the answer the buyer gets (the purchase is already recorded)."""
    for listener in list(app.get(PURCHASE_LISTENERS, [])):
        try:
            await listener(app, event)
        except Exception:
            log.exception("purchase listener failed", extra={"purchase": event.purchase_id,
                                                             "broadcast": event.broadcast_id})


@dataclass(frozen=True)
class Checked:
    basket: Basket  # priced from the line-up, with the delivery fee
    quote: DeliveryQuote
    provider: str  # the payment provider that offers the chosen method


def check_order(lineup: Lineup, order: OrderInput, *, max_quantity: int,
                providers: Mapping[str, PaymentProvider], now: datetime, tz: ZoneInfo) -> Checked:
    """Everything a read can refuse: the broadcast is not live, the basket is wrong, a product is sold
    out as far as the read can tell (the conditional UPDATE decides for real), the payment method is
    not offered, the delivery option the buyer confirmed no longer holds."""
    if lineup.info.state is not BroadcastState.LIVE:
        raise BroadcastNotLive()
    methods = offered(providers, lineup.settings)
    try:
        rules.normalize_phone(order.phone)
        rules.check_postal_code(order.postal_code)
        basket = rules.price_basket(order.lines, {pid: r.offer for pid, r in lineup.offers.items()},
                                    max_quantity=max_quantity)
        if order.payment_method not in methods:
            raise ValidationFailed("This payment method is not offered here.", code="payment_method_unavailable")
        quote = rules.quote_delivery(delivery_rules(lineup.settings), order.postal_code, now, tz)
        rules.check_delivery_choice(order.delivery_option, quote)
    except RuleError as exc:
        raise refused(exc) from None
    return Checked(Basket(basket.lines, basket.subtotal, basket.usual_total, 0, quote.fee), quote,
                   methods[order.payment_method])


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


async def take_stock(db: Writes, broadcast_id: int, lines: Sequence[rules.PricedLine],
                     names: Mapping[int, str], reserved: Mapping[int, int] | None = None) -> dict[int, int]:
    """Take every line's units from the show's allowance and from the product's stock, by conditional
    UPDATEs (a row comes back only if the units were there). Rows are locked in product order
    everywhere (`price_basket` sorts the lines), the show's counter before the product, so two
    purchases cannot deadlock. On a refusal the caller's transaction rolls back: a multi-line order
    takes all its lines or none. Returns what each product has left for the show (when `reserved` is
    given)."""
    take = _take_together if _dialect(db) == "postgresql" else _take_apart
    sold, stock = await take(db, broadcast_id, lines, names)
    if reserved is None:
        return {}
    return {pid: rules.stock_left(reserved.get(pid, 0), sold[pid], stock[pid]) for pid in sold}


Taken = tuple[dict[int, int], dict[int, int]]  # product id -> sold for the show, and -> the product's stock


def _sold_out(line: rules.PricedLine, names: Mapping[int, str]) -> SoldOut:
    return SoldOut(product=names.get(line.product_id, "?"), details={"product_id": line.product_id})


async def _take_together(db: Writes, broadcast_id: int, lines: Sequence[rules.PricedLine],
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


async def _take_apart(db: Writes, broadcast_id: int, lines: Sequence[rules.PricedLine],
                      names: Mapping[int, str]) -> Taken:
    """Elsewhere (SQLite, whose writer holds the whole database anyway): every counter, then every product."""
    sold: dict[int, int] = {}
    stock: dict[int, int] = {}
    for line in lines:
        params = {"b": broadcast_id, "p": line.product_id, "n": line.quantity}
        row = (await db.execute(_TAKE_FOR_SHOW, params)).first()
        if row is None:  # the show's first sale of this product makes its counter row
            await db.execute(_FIRST_SALE[_dialect(db)], params)
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


async def give_back(db: AsyncSession, broadcast_id: int, items: Iterable[tuple[int, int]]) -> None:
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


@dataclass
class Placed:
    purchase: Purchase
    basket: Basket
    quote: DeliveryQuote
    settings: MarketOrderSettings | None
    names: dict[int, tuple[str, str]]  # product id -> (ko, en)
    reserved: dict[int, int]  # product id -> units the show set aside
    event: PurchaseEvent | None = None  # once the stock is taken


_PU, _PL = Purchase.__table__, PurchaseLine.__table__  # type: ignore[attr-defined]
_NEW_PURCHASE = insert(_PU).returning(_PU.c.id)
_NEW_LINES = insert(_PL).returning(_PL.c.id, sort_by_parameter_order=True)
_PAY_BY = update(_PU).where(_PU.c.id == bindparam("i")).values(pay_by=bindparam("by"))


def _columns(obj: Any) -> dict[str, Any]:
    """The column values set on a new ORM object, to insert it as a plain statement (the unset ones
    take their column defaults)."""
    state = obj.__dict__
    return {c.key: state[c.key] for c in obj.__table__.columns if c.key in state}


async def place_purchase(db: Writes, *, user: User, broadcast_id: int, order: OrderInput, now: datetime,
                         config: Config, providers: Mapping[str, PaymentProvider],
                         answer: Callable[[Placed], Awaitable[None]] | None = None) -> Placed:
    """Record one purchase made during a live stream: priced by the server from the line-up, its
    delivery option decided now, its payment started, its stock taken atomically. Raises an
    `AppError` (and the caller's transaction rolls back, so nothing is written) when it cannot be made.

    The purchase rows are written first and the stock taken last, with `answer` (storing the response)
    in between the two and the commit right after: the product's hot rows stay locked for as few
    round trips as possible, which is what a flash sale's buyers queue on. The rows are written as
    plain statements (the returned `Placed.purchase` is a new object filled in, not one a session
    tracks), which costs a fraction of an ORM flush on the path every sale takes."""
    lineup = await read_lineup(db, broadcast_id)
    checked = check_order(lineup, order, max_quantity=config.orders.max_quantity_per_line, providers=providers,
                          now=now, tz=config.tz)
    basket, quote, info = checked.basket, checked.quote, lineup.info
    purchase = Purchase(
        broadcast_id=broadcast_id, market_id=info.market_id, user_id=user.id,
        stream_second=rules.stream_second(now, info.started_at), status=S.PLACED, subtotal=basket.subtotal,
        discount=basket.discount, delivery_fee=basket.delivery_fee, total=basket.total,
        delivery_option=quote.option, delivery_promise_at=quote.promise_at,
        payment_provider=checked.provider, payment_method=order.payment_method,
        contact_name=order.name, contact_phone=rules.normalize_phone(order.phone), postal_code=order.postal_code,
        address1=order.address1, address2=order.address2, note=order.note, placed_at=now, updated_at=now,
        lines=[PurchaseLine(product_id=li.product_id, merchant_id=li.merchant_id, quantity=li.quantity,
                            unit_price=li.unit_price, usual_price=li.usual_price, line_total=li.line_total,
                            status=S.PLACED, updated_at=now) for li in basket.lines])
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
                                 purchase.total, purchase.stream_second, left, now)
    return placed


async def _left_after(db: AsyncSession, broadcast_id: int, product_ids: Sequence[int]) -> dict[int, int]:
    rows = await read_offers(db, broadcast_id, product_ids)
    return {pid: r.offer.left for pid, r in rows.items()}


# -- idempotency keys -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    outcome: Replay
    key_id: int
    token: str
    status_code: int | None = None
    body: str | None = None


_CLAIM = {name: ins(_K).values(user_id=bindparam("u"), key=bindparam("k"), fingerprint=bindparam("f"),
                               state=bindparam("st"), token=bindparam("t"), created_at=bindparam("at"),
                               started_at=bindparam("at"))
          .on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(_K.c.id)
          for name, ins in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
_COMPLETE = (update(_K).where(_K.c.id == bindparam("i"), _K.c.token == bindparam("t"), _K.c.state == bindparam("was"))
             .values(state=bindparam("st"), status_code=bindparam("sc"), response_body=bindparam("body"),
                     purchase_id=bindparam("pid")))


async def claim_key(db: Writes, user_id: int, key: str, fingerprint: str, now: datetime,
                    lock_seconds: int) -> Claim:
    """Insert the key as "in progress" (its own transaction: the unique constraint decides which of
    two requests is first), or say what the stored one means for this request."""
    token = secrets.token_hex(16)
    stmt = _CLAIM[_dialect(db)]
    params = {"u": user_id, "k": key, "f": fingerprint, "st": KeyState.IN_PROGRESS, "t": token, "at": now}
    for _ in range(3):  # a row purged between the insert and the read: insert again
        new_id = (await db.execute(stmt, params)).scalar()
        if new_id is not None:
            return Claim(Replay.NEW, new_id, token)
        row = (await db.execute(select(IdempotencyKey.id, IdempotencyKey.state, IdempotencyKey.fingerprint,
                                       IdempotencyKey.token, IdempotencyKey.started_at, IdempotencyKey.status_code,
                                       IdempotencyKey.response_body)
                                .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))).first()
        if row is None:
            continue
        outcome = rules.decide_replay(KeyState(row.state), row.fingerprint, fingerprint, row.started_at, now,
                                      lock_seconds)
        if outcome is Replay.TAKE_OVER:
            taken = await db.execute(update(IdempotencyKey)
                                     .where(IdempotencyKey.id == row.id, IdempotencyKey.token == row.token,
                                            IdempotencyKey.state == KeyState.IN_PROGRESS)
                                     .values(token=token, started_at=now)
                                     .execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                log.warning("idempotency key taken over after a stale attempt", extra={"user": user_id})
                return Claim(Replay.NEW, row.id, token)
            return Claim(Replay.IN_FLIGHT, row.id, "")
        return Claim(outcome, row.id, "", row.status_code, row.response_body)
    return Claim(Replay.IN_FLIGHT, 0, "")


async def complete_key(db: Writes, claim: Claim, status_code: int, body: str,
                       purchase_id: int | None) -> None:
    """Store the answer, in the same transaction as the purchase. Only the attempt that holds the key
    may: if a retry took it over, raise `KeyLost` so this attempt's purchase rolls back."""
    result = await db.execute(_COMPLETE, {"i": claim.key_id, "t": claim.token, "was": KeyState.IN_PROGRESS,
                                          "st": KeyState.DONE, "sc": status_code, "body": body, "pid": purchase_id})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise KeyLost()


async def release_key(db: Writes, claim: Claim) -> None:
    """An attempt that failed on our side: free the key so the buyer can retry at once."""
    await db.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim.key_id,
                                                  IdempotencyKey.token == claim.token,
                                                  IdempotencyKey.state == KeyState.IN_PROGRESS))


async def stored_answer(db: AsyncSession, key_id: int) -> Claim | None:
    row = await db.get(IdempotencyKey, key_id)
    if row is None or row.state is not KeyState.DONE:
        return None
    return Claim(Replay.REPLAY, row.id, "", row.status_code, row.response_body)


async def purge_keys(db: AsyncSession, now: datetime, retention_hours: int) -> int:
    """Forget keys older than the retention (at least 24 hours), finished or not."""
    result = await db.execute(delete(IdempotencyKey).where(
        IdempotencyKey.created_at < now - timedelta(hours=retention_hours)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- buying once, over HTTP or the socket -----------------------------------------------------------

QUICK_READS = web.AppKey("orders_quick_reads", AsyncEngine)
WRITES = web.AppKey("orders_writes", AsyncEngine)  # purchases' transactions (BEGIN IMMEDIATE on SQLite)


@contextlib.asynccontextmanager
async def quick_read(app: web.Application) -> AsyncIterator[Reads]:
    """For a read that is one statement: on PostgreSQL a connection in autocommit (no BEGIN and
    ROLLBACK round trips: a flash sale reads once per attempt); on SQLite the usual reader."""
    engine = app.get(QUICK_READS)
    if engine is None:
        async with app[AppKeys.reader]() as db:
            yield db
        return
    async with engine.connect() as conn:
        yield conn


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
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Someone else changed this order first. Reload and try again.", code="status_changed")
    line.status = wanted


async def _after_lines_moved(db: AsyncSession, purchase: Purchase, now: datetime) -> None:
    purchase.status = rules.purchase_status(li.status for li in purchase.lines)
    if (not rules.prepaid(purchase.payment_method) and purchase.status is S.DELIVERED
            and purchase.paid_at is None):
        purchase.paid_at = now  # paid at the door
    purchase.updated_at = now
    await db.flush()


async def move_line(db: AsyncSession, actor: User, line_id: int, wanted: OrderStatus, now: datetime) -> Purchase:
    """A merchant packs or delivers one of their own lines; staff may move any line."""
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
    return purchase


async def cancel_purchase(db: AsyncSession, actor: User, purchase_id: int, now: datetime) -> Purchase:
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
    for line in sorted(purchase.lines, key=lambda li: li.product_id):
        await _set_line(db, line, target, now)
    await give_back(db, purchase.broadcast_id, [(li.product_id, li.quantity) for li in purchase.lines])
    await _after_lines_moved(db, purchase, now)
    return purchase


async def overdue_transfers(db: AsyncSession, now: datetime, limit: int = 100) -> list[int]:
    """Bank-transfer orders still waiting for their money after their `pay_by`, oldest first."""
    rows = await db.scalars(select(Purchase.id).where(Purchase.status == S.PLACED, Purchase.pay_by.is_not(None),
                                                      Purchase.pay_by < now)
                            .order_by(Purchase.pay_by, Purchase.id).limit(limit))
    return list(rows)


async def expire_transfer(db: AsyncSession, purchase_id: int, now: datetime) -> Purchase | None:
    """Cancel one overdue transfer, giving its units back; None if it was paid or changed meanwhile.
    Each line moves by a conditional UPDATE, so two processes sweeping at once cancel it once."""
    purchase = await get_purchase(db, purchase_id)
    if purchase.status is not S.PLACED or purchase.pay_by is None or purchase.pay_by >= now:
        return None
    for line in sorted(purchase.lines, key=lambda li: li.product_id):
        await _set_line(db, line, S.CANCELLED, now)
    await give_back(db, purchase.broadcast_id, [(li.product_id, li.quantity) for li in purchase.lines])
    await _after_lines_moved(db, purchase, now)
    return purchase


async def expire_overdue(app: web.Application, now: datetime) -> int:
    """One sweep: cancel the overdue transfers (each in its own transaction) and tell the room that
    their units are back. Returns how many were cancelled here."""
    async with app[AppKeys.reader]() as db:
        ids = await overdue_transfers(db, now)
    done = 0
    for purchase_id in ids:
        try:
            async with app[AppKeys.db].begin() as db:
                purchase = await expire_transfer(db, purchase_id, now)
                event = await cancelled_event(db, purchase, now) if purchase is not None else None
        except Conflict:  # paid, cancelled or swept by someone else first
            continue
        if event is not None:
            done += 1
            log.info("unpaid transfer cancelled", extra={"purchase": purchase_id, "broadcast": event.broadcast_id})
            await notify(app, event)
    return done


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


def cancel_event(purchase: Purchase, user: User | None, left: dict[int, int], now: datetime) -> PurchaseEvent:
    return PurchaseEvent(purchase.status.value, purchase.id, purchase.broadcast_id, purchase.user_id,
                         masked_name(user.display_name) if user else "*",
                         tuple(EventLine(li.product_id, li.quantity, li.unit_price) for li in purchase.lines),
                         purchase.total, purchase.stream_second, left, now)


async def cancelled_event(db: AsyncSession, purchase: Purchase, now: datetime) -> PurchaseEvent:
    buyer = await db.get(User, purchase.user_id)
    left = await _left_after(db, purchase.broadcast_id, [li.product_id for li in purchase.lines])
    return cancel_event(purchase, buyer, left, now)


# -- figures for the host -------------------------------------------------------------------------

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


MAX_MINUTES = 24 * 60


async def broadcast_figures(db: AsyncSession, broadcast_id: int, now: datetime | None = None) -> Figures:
    """The host console's figures: orders, revenue, units per product, buyers against viewers, and
    sales per minute of the stream. Cancelled and refunded orders do not count."""
    now = now or utcnow()
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    counted = and_(Purchase.broadcast_id == broadcast_id, Purchase.status.in_(COUNTED))
    totals = (await db.execute(select(func.count(Purchase.id),
                                      func.coalesce(func.sum(Purchase.subtotal - Purchase.discount), 0),
                                      func.count(func.distinct(Purchase.user_id))).where(counted))).one()
    per_product = {r.product_id: (int(r.units), int(r.revenue)) for r in (await db.execute(
        select(PurchaseLine.product_id, func.sum(PurchaseLine.quantity).label("units"),
               func.sum(PurchaseLine.line_total).label("revenue"))
        .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
        .where(counted, PurchaseLine.status.in_(COUNTED)).group_by(PurchaseLine.product_id))).all()}
    minute = (Purchase.stream_second // 60).label("minute")
    per_minute = (await db.execute(
        select(minute, func.count(func.distinct(Purchase.id)), func.sum(PurchaseLine.quantity),
               func.sum(PurchaseLine.line_total))
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


async def merchants_by_id(db: AsyncSession) -> dict[int, Merchant]:
    return {m.id: m for m in (await db.scalars(select(Merchant).order_by(Merchant.id))).all()}


__all__ = [
    "PURCHASE_LISTENERS",
    "Figures",
    "PurchaseEvent",
    "PurchaseListener",
    "broadcast_figures",
    "lineup_stock",
    "masked_name",
    "seed_demo_order_settings",
]
