"""Pure rules of ordering, on plain data and tested without a server: pricing a basket from the
line-up, the delivery option and its promise, status moves, the idempotency fingerprint and who may
replay what, masking a buyer's name, and the checks on what a buyer types."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from livecommerce.errors import N_

from .models import DeliveryOption, KeyState, OrderStatus


class RuleError(Exception):
    """A rule refused something; `code` is stable, `message` an English msgid with `%(name)s` params."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        self.code = code
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)


# -- pricing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Offer:
    """A line-up item as the server knows it: the live price and what is left for the show."""

    product_id: int
    merchant_id: int
    live_price: int
    usual_price: int
    left: int
    name: str = ""  # in the buyer's language, for messages


@dataclass(frozen=True)
class Wanted:
    product_id: int
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    product_id: int
    merchant_id: int
    quantity: int
    unit_price: int
    usual_price: int

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity

    @property
    def saving(self) -> int:
        return max(0, self.usual_price - self.unit_price) * self.quantity


@dataclass(frozen=True)
class Basket:
    lines: tuple[PricedLine, ...]
    subtotal: int  # at live prices
    usual_total: int  # what the same would cost at the usual prices
    discount: int = 0  # a coupon's (later); taken off the subtotal
    delivery_fee: int = 0

    @property
    def savings(self) -> int:
        """What the live prices save against the usual ones (shown, not charged)."""
        return max(0, self.usual_total - self.subtotal)

    @property
    def total(self) -> int:
        return max(0, self.subtotal - self.discount) + self.delivery_fee


class SaleTerms(StrEnum):
    LIVE = "live"  # during the stream: the line-up's live price
    AFTER_SHOW = "after_show"  # the show is over and its replay is on: the product's regular price


def sale_terms(state: str, recording_url: str) -> SaleTerms | None:
    """Whether a broadcast sells now, and at which price: at the live price while it is live; once it has
    ended, at the regular price for as long as its recording is on its page (the replay); else not at all.
    The live price is a reward for watching live, never for watching the replay."""
    if state == "live":
        return SaleTerms.LIVE
    if state == "ended" and recording_url:
        return SaleTerms.AFTER_SHOW
    return None


def price_basket(wanted: Sequence[Wanted], offers: Mapping[int, Offer], *, max_quantity: int,
                 check_stock: bool = True, terms: SaleTerms = SaleTerms.LIVE) -> Basket:
    """Price every line from the line-up's live price (after the show: the product's regular price); the
    client never names a price. Refuses an empty basket, a product twice, a product not on the line-up, a
    quantity outside 1..max_quantity, and (with `check_stock`) more than is left."""
    if not wanted:
        raise RuleError("empty_order", N_("Choose at least one product."))
    seen: set[int] = set()
    lines: list[PricedLine] = []
    for w in wanted:
        if w.product_id in seen:
            raise RuleError("duplicate_product", N_("A product appears twice in the order."))
        seen.add(w.product_id)
        offer = offers.get(w.product_id)
        if offer is None:
            raise RuleError("not_on_lineup", N_("This product is not on the broadcast's line-up."))
        if not 1 <= w.quantity <= max_quantity:
            raise RuleError("invalid_quantity", N_("You can buy 1 to %(max)s of each product."), max=max_quantity)
        if check_stock and w.quantity > offer.left:
            if offer.left <= 0:
                raise RuleError("sold_out", N_("Sorry, %(product)s just sold out."), product=offer.name,
                                product_id=offer.product_id)
            raise RuleError("not_enough_stock", N_("Only %(left)s of %(product)s left."), left=offer.left,
                            product=offer.name, product_id=offer.product_id)
        price = offer.live_price if terms is SaleTerms.LIVE else offer.usual_price
        lines.append(PricedLine(offer.product_id, offer.merchant_id, w.quantity, price, offer.usual_price))
    lines.sort(key=lambda line: line.product_id)  # the order in which stock rows are locked
    return Basket(tuple(lines), sum(li.line_total for li in lines),
                  sum(li.usual_price * li.quantity for li in lines))


def stock_left(reserved: int, sold: int, product_stock: int) -> int:
    """Units a show can still sell: what it set aside less what it sold, and never more than the
    product has."""
    return max(0, min(reserved - sold, product_stock))


# -- delivery -----------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def parse_cutoff(value: str) -> int:
    """A local "HH:MM" as minutes after midnight; "24:00" is the whole day, "00:00" never."""
    if not _HHMM.match(value):
        raise RuleError("invalid_cutoff", N_("A cut-off is a time like 11:00 (00:00 to 24:00)."))
    hh, mm = value.split(":")
    return int(hh) * 60 + int(mm)


def parse_prefixes(text: str) -> tuple[str, ...]:
    """"045, 046" -> ("045", "046"): postal-code prefixes of 1 to 5 digits."""
    out: list[str] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        if not re.fullmatch(r"\d{1,5}", part):
            raise RuleError("invalid_area", N_("The delivery area is a list of postal-code prefixes like 045, 046."))
        out.append(part)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class DeliveryRules:
    """A market's delivery options. The two-hour area is a list of postal-code prefixes: Korean
    postal codes (5 digits) are assigned by district, so "045" and "046" cover Seoul's Jung-gu."""

    two_hour_cutoff: str = "11:00"
    same_day_cutoff: str = "15:00"
    two_hour_prefixes: tuple[str, ...] = ()
    two_hour_fee: int = 4000
    same_day_fee: int = 3000
    next_day_fee: int = 0

    def in_area(self, postal_code: str | None) -> bool:
        if not postal_code:
            return False
        return any(postal_code.startswith(p) for p in self.two_hour_prefixes)


@dataclass(frozen=True)
class DeliveryQuote:
    option: DeliveryOption
    promise_at: datetime  # UTC: the latest moment the order arrives
    fee: int
    in_area: bool  # the address is in the two-hour area (even if the cut-off has passed)


TWO_HOURS = timedelta(hours=2)


def delivery_choices(rules: DeliveryRules, postal_code: str | None, now: datetime,
                     tz: ZoneInfo) -> list[DeliveryQuote]:
    """Every option an order placed `now` can have, fastest first, decided on the local (Asia/Seoul)
    clock: two-hour delivery before the morning cut-off inside the area, same-day before the day's
    cut-off, next day always. A buyer may take a slower one (to pay a smaller fee). Same-day arrives by
    the end of the local day, next day by the end of the next."""
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    in_area = rules.in_area(postal_code)
    out: list[DeliveryQuote] = []
    if in_area and minute < parse_cutoff(rules.two_hour_cutoff):
        promise = now + TWO_HOURS
        # round up to the next ten minutes: "by 15:20", not "by 15:13:47"
        seconds = math.ceil(promise.timestamp() / 600) * 600
        promise = datetime.fromtimestamp(seconds, tz=promise.tzinfo)
        out.append(DeliveryQuote(DeliveryOption.TWO_HOUR, promise, rules.two_hour_fee, in_area))
    if minute < parse_cutoff(rules.same_day_cutoff):
        end = datetime.combine(local.date(), time(23, 59), tzinfo=tz)
        out.append(DeliveryQuote(DeliveryOption.SAME_DAY, end.astimezone(now.tzinfo), rules.same_day_fee, in_area))
    end = datetime.combine(local.date() + timedelta(days=1), time(23, 59), tzinfo=tz)
    out.append(DeliveryQuote(DeliveryOption.NEXT_DAY, end.astimezone(now.tzinfo), rules.next_day_fee, in_area))
    return out


def quote_delivery(rules: DeliveryRules, postal_code: str | None, now: datetime, tz: ZoneInfo) -> DeliveryQuote:
    """The fastest option an order placed `now` can have (see `delivery_choices`)."""
    return delivery_choices(rules, postal_code, now, tz)[0]


def choose_delivery(rules: DeliveryRules, wanted: DeliveryOption | None, postal_code: str | None, now: datetime,
                    tz: ZoneInfo) -> DeliveryQuote:
    """The option the buyer chose, if an order placed `now` can still have it; the fastest one when they
    chose none. Refused as `check_delivery_choice` refuses when it no longer holds."""
    choices = delivery_choices(rules, postal_code, now, tz)
    for choice in choices:
        if choice.option is wanted:
            return choice
    check_delivery_choice(wanted, choices[0])
    return choices[0]


def check_delivery_choice(wanted: DeliveryOption | None, quote: DeliveryQuote) -> None:
    """The buyer confirms the option they were shown; if it no longer holds (the address is outside
    the two-hour area, or a cut-off passed meanwhile), refuse, so they see the new promise first."""
    if wanted is None or wanted is quote.option:
        return
    if wanted is DeliveryOption.TWO_HOUR and not quote.in_area:
        raise RuleError("outside_delivery_area",
                        N_("Two-hour delivery does not reach this address: it is outside the market's delivery area."))
    raise RuleError("delivery_option_changed",
                    N_("The delivery option for an order placed now has changed. Check the new promise and "
                       "confirm again."))


# -- payment ------------------------------------------------------------------------------------

COD = "cod"  # pay on delivery (만나서 결제): nothing is paid until the goods arrive
BANK_TRANSFER = "bank_transfer"  # 무통장입금: paid before packing, confirmed by staff


def prepaid(method: str) -> bool:
    """Every method but pay on delivery is paid before the goods are packed."""
    return method != COD


# -- status moves -------------------------------------------------------------------------------

S = OrderStatus
FINAL = frozenset({S.DELIVERED, S.CANCELLED, S.REFUNDED})
RETURNS_STOCK = frozenset({S.CANCELLED, S.REFUNDED})
FLOW = (S.PLACED, S.PAID, S.PACKED, S.DELIVERED)


def allowed_moves(current: OrderStatus, method: str) -> frozenset[OrderStatus]:
    """`placed → paid → packed → delivered`, or `cancelled` before anything was paid, or `refunded`
    once it was. Pay on delivery skips `paid`: `placed → packed → delivered` (paid at the door)."""
    pre = prepaid(method)
    if current is S.PLACED:
        return frozenset({S.PAID, S.CANCELLED}) if pre else frozenset({S.PACKED, S.CANCELLED})
    if current is S.PAID:
        return frozenset({S.PACKED, S.REFUNDED})
    if current is S.PACKED:
        return frozenset({S.DELIVERED, S.REFUNDED if pre else S.CANCELLED})
    return frozenset()


def check_move(current: OrderStatus, wanted: OrderStatus, method: str) -> None:
    if wanted not in allowed_moves(current, method):
        raise RuleError("illegal_status_move", N_("An order line that is %(current)s cannot become %(wanted)s."),
                        current=current.value, wanted=wanted.value)


def purchase_status(line_statuses: Iterable[OrderStatus]) -> OrderStatus:
    """A purchase is as far as its least advanced line; cancelled or refunded when all its lines are."""
    statuses = list(line_statuses)
    active = [s for s in statuses if s not in RETURNS_STOCK]
    if not active:
        return S.REFUNDED if S.REFUNDED in statuses else S.CANCELLED
    return min(active, key=FLOW.index)


def cancel_target(line_statuses: Iterable[OrderStatus], method: str) -> OrderStatus:
    """Calling off a whole purchase: `cancelled` if nothing was paid, `refunded` if it was. Refused
    once a line was delivered or called off already."""
    statuses = list(line_statuses)
    if not statuses or any(s in FINAL for s in statuses):
        raise RuleError("cannot_cancel", N_("This order can no longer be cancelled."))
    paid = prepaid(method) and any(s in (S.PAID, S.PACKED) for s in statuses)
    return S.REFUNDED if paid else S.CANCELLED


# -- idempotency ---------------------------------------------------------------------------------

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def parse_idempotency_key(header: str | None) -> str | None:
    """The draft's key is a Structured Field string (`"8e03…"`); a bare token is accepted too.
    Returns None when the header is missing or not 1 to 255 visible ASCII characters."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value if _KEY.match(value) else None


def fingerprint(method: str, path: str, body: Any) -> str:
    """The request's fingerprint: the same JSON with keys in another order or other spacing gives
    the same hash; any other value does not."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


class Replay(StrEnum):
    NEW = "new"  # nobody has used the key: go ahead
    REPLAY = "replay"  # finished: answer with the stored response
    IN_FLIGHT = "in_flight"  # another request with this key is running: 409
    TAKE_OVER = "take_over"  # an attempt started long ago and never finished (a crash): run again
    MISMATCH = "mismatch"  # the key was used for another request: 422


def decide_replay(state: KeyState, stored_fingerprint: str, sent_fingerprint: str, started_at: datetime,
                  now: datetime, lock_seconds: int) -> Replay:
    """What a request that finds its key already stored gets. An attempt still "in progress" after
    `lock_seconds` is taken to have died (its purchase never committed, or it would be "done")."""
    if stored_fingerprint != sent_fingerprint:
        return Replay.MISMATCH
    if state is KeyState.DONE:
        return Replay.REPLAY
    if now - started_at >= timedelta(seconds=lock_seconds):
        return Replay.TAKE_OVER
    return Replay.IN_FLIGHT


# -- people --------------------------------------------------------------------------------------

def masked_name(display_name: str) -> str:
    """"김민지" -> "김**": the first character and a star for each other one (at least one), so the
    room can say who bought without saying who it was."""
    name = "".join(display_name.split())
    if not name:
        return "*"
    return name[0] + "*" * max(1, len(name) - 1)


_PHONE = re.compile(r"^(01[016789])-?(\d{3,4})-?(\d{4})$")


def normalize_phone(value: str) -> str:
    """A Korean mobile number, written with or without dashes: "01012345678" -> "010-1234-5678"."""
    m = _PHONE.match(re.sub(r"[\s.]", "", value))
    if not m:
        raise RuleError("invalid_phone", N_("Enter a mobile number like 010-1234-5678."))
    return "-".join(m.groups())


def check_postal_code(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"\d{5}", value):
        raise RuleError("invalid_postal_code", N_("A postal code is 5 digits, like 04524."))
    return value


def stream_second(now: datetime, started_at: datetime | None) -> int:
    """The second of the stream a purchase was made in."""
    if started_at is None:
        return 0
    return max(0, int((now - started_at).total_seconds()))


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): a leading = + - @ or tab is
    quoted with an apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class MinuteBucket:
    minute: int
    orders: int = 0
    units: int = 0
    revenue: int = 0


def fill_minutes(rows: Iterable[tuple[int, int, int, int]], up_to_minute: int) -> list[MinuteBucket]:
    """(minute, orders, units, revenue) rows -> one bucket per minute from 0 to the last one."""
    by_minute = {m: MinuteBucket(m, o, u, r) for m, o, u, r in rows if m >= 0}
    last = max([up_to_minute, *by_minute])
    return [by_minute.get(m, MinuteBucket(m)) for m in range(0, last + 1)]
