"""Models of the orders API: they validate requests (Strict: an unknown field such as a price the
client made up is refused with 422) and generate the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from livecommerce import i18n
from livecommerce.api import MAX_ID, MAX_OFFSET, Patch, Strict, config_limit

from .addresses import LIMIT, QUERY_MAX, QUERY_MIN, QUERY_PATTERN
from .models import DELIVERY_LABELS, DeliveryOption, MarketOrderSettings, OrderStatus, Purchase
from .payments import METHOD_LABELS, instructions

HHMM = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"


IGNORED = "ignored: the server charges the line-up's live price, whatever is sent here"


class OrderLineIn(Strict):
    product_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=999, description="units; the server prices them at the live price",
                          json_schema_extra=config_limit("orders.max_quantity_per_line"))
    unit_price: Any = Field(default=None, exclude=True, description=IGNORED)
    price: Any = Field(default=None, exclude=True, description=IGNORED)


class PurchaseIn(Strict):
    """An order. The server prices every line from the line-up: a price a client sends (`unit_price`
    or `price` on a line, `subtotal` or `total` on the order) is ignored, and is not part of the
    request an Idempotency-Key is compared with. Coupons the buyer picked (or asked to be picked) are
    part of it only when there are some: an order without them is the same request as before they
    existed."""

    lines: list[OrderLineIn] = Field(min_length=1, max_length=50)
    subtotal: Any = Field(default=None, exclude=True, description=IGNORED)
    total: Any = Field(default=None, exclude=True, description=IGNORED)
    name: str = Field(min_length=1, max_length=40, description="who receives the order")
    phone: str = Field(min_length=9, max_length=20, description="a Korean mobile number, 010-1234-5678")
    postal_code: str = Field(pattern=r"^\d{5}$", description="5-digit postal code (decides two-hour delivery)")
    address1: str = Field(min_length=1, max_length=200, description="road address")
    address2: str = Field(default="", max_length=200, description="building, floor, door")
    note: str = Field(default="", max_length=200, description="for the courier")
    payment_method: str = Field(pattern=r"^[a-z_]{2,32}$", description="one of the checkout's payment_methods")
    delivery_option: DeliveryOption | None = Field(
        default=None, description="the option the buyer was quoted and confirms; if it no longer holds for this "
                                  "address and time, the order is refused (409) so the buyer sees the new promise")
    coupons: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=5, description="ids of the buyer's claimed coupons to use (the server "
                                                         "checks them)")
    suggest_coupon: bool = Field(default=False, description="let the server pick the buyer's best coupon")

    @model_serializer(mode="wrap")
    def _without_unpicked_coupons(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave the coupon fields out while they say nothing, so the fingerprint of an order without
        coupons (`model_dump`) is what it was before they existed."""
        data: dict[str, Any] = handler(self)
        if not self.coupons:
            data.pop("coupons", None)
        if not self.suggest_coupon:
            data.pop("suggest_coupon", None)
        return data


class SocketPurchaseIn(PurchaseIn):
    """The same order sent over the socket: the broadcast and the Idempotency-Key travel as fields.
    `order()` is the part that is fingerprinted, so a retry over HTTP of a socket purchase (or the
    reverse) with the same key is recognised."""

    broadcast_id: int = Field(ge=1, le=MAX_ID)
    idempotency_key: str = Field(min_length=1, max_length=255)

    def order(self) -> PurchaseIn:
        return PurchaseIn.model_validate(self.model_dump(exclude={"broadcast_id", "idempotency_key"}))


class PurchaseLineOut(BaseModel):
    id: int
    product_id: int
    merchant_id: int
    name_ko: str
    name_en: str
    quantity: int
    unit_price: int = Field(description="the live price charged, whole won")
    usual_price: int
    line_total: int
    discount: int = Field(description="this line's share of the order's discount")
    status: OrderStatus


class DeliveryOut(BaseModel):
    option: DeliveryOption
    label: str
    promise_at: datetime = Field(description="arrives by then (UTC)")
    promise_text: str
    fee: int


class PaymentOut(BaseModel):
    provider: str
    method: str
    label: str
    pay_by: datetime | None
    paid_at: datetime | None
    instructions: dict[str, str | int]


class PurchaseOut(BaseModel):
    id: int
    broadcast_id: int
    status: OrderStatus
    stream_second: int = Field(description="the second of the stream the order was placed in")
    placed_at: datetime
    lines: list[PurchaseLineOut]
    subtotal: int = Field(description="at live prices")
    savings: int = Field(description="what the live prices saved against the usual ones")
    discount: int = Field(description="a coupon's discount (each line has its share)")
    coupon_code: str | None = Field(description="the code of the coupon redeemed, if any")
    delivery_fee: int
    total: int
    delivery: DeliveryOut
    payment: PaymentOut
    name: str
    phone: str
    postal_code: str
    address1: str
    address2: str
    note: str


class QuoteQuery(Strict):
    postal_code: str | None = Field(default=None, pattern=r"^\d{5}$")


class QuoteOut(BaseModel):
    option: DeliveryOption
    label: str
    promise_at: datetime
    promise_text: str
    fee: int
    in_area: bool = Field(description="the postal code is in the two-hour area")
    options: list[DeliveryOut] = Field(default_factory=list, description="every option an order placed now can "
                                       "have, fastest first (the first is the one above); the buyer may choose one")


class AddressQueryIn(Strict):
    """A postcode search. Read as it was typed (not trimmed: the document's limits hold for what is sent);
    a query outside them is refused with 400 and a message a person reads (`addresses.parse_query`)."""

    model_config = ConfigDict(str_strip_whitespace=False)

    q: str = Field(description="a road, a building, a dong or a postal code (five digits), as typed: at least "
                               f"{QUERY_MIN} Hangul syllables, letters or digits, at most {QUERY_MAX} characters; "
                               "every word must be in the address",
                   json_schema_extra={"minLength": QUERY_MIN, "maxLength": QUERY_MAX, "pattern": QUERY_PATTERN})


class AddressOut(BaseModel):
    postal_code: str = Field(description="five digits")
    road_address: str = Field(description="the road address, e.g. 서울특별시 중구 세종대로 110")
    jibun_address: str | None = Field(description="the lot-number address, when known")
    building_name: str | None = Field(description="the building's name, when it has one")


class AddressSearchOut(BaseModel):
    results: list[AddressOut] = Field(description=f"at most {LIMIT}, best first: the postal code asked for, then "
                                                  "the shortest road address")
    truncated: bool = Field(description="more addresses matched than are given: type more of the address")


class CheckoutItemOut(BaseModel):
    product_id: int
    name_ko: str
    name_en: str
    image: str
    unit_ko: str
    unit_en: str
    live_price: int
    usual_price: int
    left: int = Field(description="units the show can still sell (0: sold out)")


class PaymentMethodOut(BaseModel):
    method: str
    label: str


class CheckoutOut(BaseModel):
    broadcast_id: int
    state: str
    open: bool = Field(description="purchases are accepted now (the broadcast is live, or ended with its replay on)")
    after_show: bool = Field(default=False, description="the show is over and its replay sells at the regular "
                                                        "price: each item's live_price is then its usual_price")
    items: list[CheckoutItemOut]
    payment_methods: list[PaymentMethodOut]
    max_quantity: int


class StockItemOut(BaseModel):
    product_id: int
    left: int


class ProductFiguresOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: int
    name_ko: str
    name_en: str
    units: int
    revenue: int
    reserved: int
    left: int


class MinuteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    minute: int
    orders: int
    units: int
    revenue: int


class FiguresOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    broadcast_id: int
    state: str
    orders: int
    revenue: int = Field(description="goods at live prices less discounts, whole won (no delivery fees)")
    units: int
    buyers: int
    viewers: int = Field(description="peak viewers")
    conversion: float | None = Field(description="buyers / viewers")
    products: list[ProductFiguresOut]
    minutes: list[MinuteOut] = Field(description="sales per minute of the stream")
    at: datetime


class LineStatusIn(Strict):
    status: Literal["packed", "delivered", "cancelled", "refunded"]


class PurchasesQuery(Strict):
    broadcast_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    merchant_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: OrderStatus | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class MerchantLinesQuery(Strict):
    broadcast_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: OrderStatus | None = None


class MerchantLineOut(BaseModel):
    line: PurchaseLineOut
    purchase_id: int
    broadcast_id: int
    placed_at: datetime
    purchase_status: OrderStatus
    payment_method: str
    delivery: DeliveryOut
    name: str
    phone: str
    postal_code: str
    address1: str
    address2: str
    note: str


class OrderSettingsIn(Patch):
    two_hour_cutoff: str | None = Field(default=None, pattern=HHMM, description='local "HH:MM"; "00:00": never')
    same_day_cutoff: str | None = Field(default=None, pattern=HHMM, description='local "HH:MM"; "24:00": all day')
    two_hour_postal_prefixes: str | None = Field(default=None, max_length=500,
                                                 description="postal-code prefixes, comma-separated")
    two_hour_fee: int | None = Field(default=None, ge=0, le=1_000_000)
    same_day_fee: int | None = Field(default=None, ge=0, le=1_000_000)
    next_day_fee: int | None = Field(default=None, ge=0, le=1_000_000)
    bank_name: str | None = Field(default=None, max_length=40)
    bank_account: str | None = Field(default=None, max_length=40, description="empty: no bank transfer")
    bank_holder: str | None = Field(default=None, max_length=60)
    transfer_hours: int | None = Field(default=None, ge=1, le=24 * 14)
    cod_enabled: bool | None = None


class OrderSettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    market_id: int
    two_hour_cutoff: str
    same_day_cutoff: str
    two_hour_postal_prefixes: str
    two_hour_fee: int
    same_day_fee: int
    next_day_fee: int
    bank_name: str
    bank_account: str
    bank_holder: str
    transfer_hours: int
    cod_enabled: bool


# -- building answers ------------------------------------------------------------------------------

Names = dict[int, tuple[str, str]]  # product id -> (Korean name, English name)


def delivery_out(option: DeliveryOption, promise_at: datetime, fee: int, tz: ZoneInfo) -> DeliveryOut:
    """The option and its promise as the buyer reads them, in their language, on the Seoul clock."""
    if option is DeliveryOption.TWO_HOUR:
        text = i18n.gettext("Arrives by %(time)s", time=i18n.format_time(promise_at, tz, "medium"))
    else:
        text = i18n.gettext("Arrives on %(date)s", date=i18n.format_time(promise_at, tz, "date"))
    return DeliveryOut(option=option, label=i18n.gettext(DELIVERY_LABELS[option]), promise_at=promise_at,
                       promise_text=text, fee=fee)


def line_out(line: Any, names: Names) -> PurchaseLineOut:
    ko, en = names.get(line.product_id, ("", ""))
    return PurchaseLineOut(id=line.id, product_id=line.product_id, merchant_id=line.merchant_id, name_ko=ko,
                           name_en=en, quantity=line.quantity, unit_price=line.unit_price,
                           usual_price=line.usual_price, line_total=line.line_total, discount=line.discount,
                           status=line.status)


def purchase_out(p: Purchase, names: Names, settings: MarketOrderSettings | None, tz: ZoneInfo) -> PurchaseOut:
    savings = sum(max(0, li.usual_price - li.unit_price) * li.quantity for li in p.lines)
    return PurchaseOut(
        id=p.id, broadcast_id=p.broadcast_id, status=p.status, stream_second=p.stream_second, placed_at=p.placed_at,
        lines=[line_out(li, names) for li in p.lines], subtotal=p.subtotal, savings=savings, discount=p.discount,
        coupon_code=p.coupon_code, delivery_fee=p.delivery_fee, total=p.total,
        delivery=delivery_out(p.delivery_option, p.delivery_promise_at, p.delivery_fee, tz),
        payment=PaymentOut(provider=p.payment_provider, method=p.payment_method,
                           label=i18n.gettext(METHOD_LABELS.get(p.payment_method, p.payment_method)),
                           pay_by=p.pay_by, paid_at=p.paid_at, instructions=instructions(p, settings)),
        name=p.contact_name, phone=p.contact_phone, postal_code=p.postal_code, address1=p.address1,
        address2=p.address2, note=p.note)


class WebhookOut(BaseModel):
    purchase_id: int
    status: str = Field(description="the order's status after the event, or \"ignored\" (not a payment)")


class StockOut(BaseModel):
    """`stock`: units each line-up product can still sell (0: sold out), coalesced (about once a second at
    most, after sales)."""

    broadcast_id: int
    left: dict[str, int] = Field(description="product id → units left")
