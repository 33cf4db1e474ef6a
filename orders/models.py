"""Tables for orders: purchases and their lines (prices as charged), the units each show has sold,
idempotency keys, each market's order settings, and the address book the buy sheet's postcode search
reads. Money is whole won; times are UTC."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from livecommerce.db import Base, UTCDateTime, utcnow
from livecommerce.errors import N_


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    PAID = "paid"
    PACKED = "packed"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


STATUS_LABELS: dict[OrderStatus, str] = {
    OrderStatus.PLACED: N_("placed"),
    OrderStatus.PAID: N_("paid"),
    OrderStatus.PACKED: N_("packed"),
    OrderStatus.DELIVERED: N_("delivered"),
    OrderStatus.CANCELLED: N_("cancelled"),
    OrderStatus.REFUNDED: N_("refunded"),
}


class DeliveryOption(enum.StrEnum):
    TWO_HOUR = "two_hour"
    SAME_DAY = "same_day"
    NEXT_DAY = "next_day"


DELIVERY_LABELS: dict[DeliveryOption, str] = {
    DeliveryOption.TWO_HOUR: N_("Two-hour delivery"),
    DeliveryOption.SAME_DAY: N_("Same-day delivery"),
    DeliveryOption.NEXT_DAY: N_("Next-day delivery"),
}


class KeyState(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e],
                validate_strings=True)


class MarketOrderSettings(Base):
    """How a market takes orders: its delivery options and how buyers may pay. A market without a
    row takes orders with the defaults below (no two-hour area, pay on delivery only)."""

    __tablename__ = "market_order_settings"
    __table_args__ = (
        CheckConstraint("two_hour_fee >= 0 AND same_day_fee >= 0 AND next_day_fee >= 0", name="fees_not_negative"),
        CheckConstraint("transfer_hours > 0", name="transfer_hours_positive"),
    )

    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), primary_key=True)
    # Local wall-clock cut-offs "HH:MM" ("24:00": all day, "00:00": never), in schedule.timezone.
    two_hour_cutoff: Mapped[str] = mapped_column(String(5), default="11:00")
    same_day_cutoff: Mapped[str] = mapped_column(String(5), default="15:00")
    # The two-hour area: postal-code prefixes, comma-separated ("045,046" = Seoul Jung-gu).
    two_hour_postal_prefixes: Mapped[str] = mapped_column(String(500), default="")
    two_hour_fee: Mapped[int] = mapped_column(Integer, default=4000)
    same_day_fee: Mapped[int] = mapped_column(Integer, default=3000)
    next_day_fee: Mapped[int] = mapped_column(Integer, default=0)
    # Bank transfer (무통장입금) is offered when an account is set.
    bank_name: Mapped[str] = mapped_column(String(40), default="")
    bank_account: Mapped[str] = mapped_column(String(40), default="")
    bank_holder: Mapped[str] = mapped_column(String(60), default="")
    transfer_hours: Mapped[int] = mapped_column(Integer, default=24)
    cod_enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LineupSale(Base):
    """Units of a product sold in one broadcast. Taken by a conditional UPDATE that never lets `sold`
    pass the line-up's `stock_reserved`; cancellations and refunds give units back."""

    __tablename__ = "lineup_sales"
    __table_args__ = (CheckConstraint("sold >= 0", name="sold_not_negative"),)

    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    sold: Mapped[int] = mapped_column(Integer, default=0)


class Purchase(Base):
    """One order placed during a stream: who, when in the stream, what at which price, how it is
    delivered and paid. Its status is the least advanced status of its lines."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("payment_provider", "payment_ref"),
        CheckConstraint("stream_second >= 0", name="stream_second_not_negative"),
        CheckConstraint("subtotal >= 0 AND discount >= 0 AND delivery_fee >= 0 AND total >= 0",
                        name="amounts_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="RESTRICT"), index=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    stream_second: Mapped[int] = mapped_column(Integer)  # now - broadcast.started_at, in whole seconds
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"), index=True)
    subtotal: Mapped[int] = mapped_column(Integer)  # the lines at their live prices
    # The claimed coupon this purchase redeemed and what it took off (a pricer's, see `orders.pricing`);
    # each line keeps its share of the discount.
    coupon_claim_id: Mapped[int | None] = mapped_column(Integer, default=None)
    coupon_code: Mapped[str | None] = mapped_column(String(40), default=None)
    discount: Mapped[int] = mapped_column(Integer, default=0)
    delivery_fee: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer)  # subtotal - discount + delivery_fee
    delivery_option: Mapped[DeliveryOption] = mapped_column(_enum(DeliveryOption, "delivery_option"))
    delivery_promise_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payment_provider: Mapped[str] = mapped_column(String(32), default="offline")
    payment_method: Mapped[str] = mapped_column(String(32))
    payment_ref: Mapped[str | None] = mapped_column(String(120), default=None)  # the gateway's id
    pay_by: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)  # bank transfer deadline
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    contact_name: Mapped[str] = mapped_column(String(40))
    contact_phone: Mapped[str] = mapped_column(String(20))
    postal_code: Mapped[str] = mapped_column(String(5))
    address1: Mapped[str] = mapped_column(String(200))
    address2: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(String(200), default="")
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    lines: Mapped[list[PurchaseLine]] = relationship(lazy="raise", order_by="PurchaseLine.id",
                                                     cascade="all, delete-orphan")


class PurchaseLine(Base):
    """One product of a purchase, at the live price it was charged. Merchants pack and deliver their
    own lines, so each line has its own status."""

    __tablename__ = "purchase_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0 AND usual_price >= 0 AND line_total >= 0", name="prices_not_negative"),
        CheckConstraint("discount >= 0 AND discount <= line_total", name="discount_within_line"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)  # the live price charged
    usual_price: Mapped[int] = mapped_column(Integer)  # the product's usual price at the time
    line_total: Mapped[int] = mapped_column(Integer)
    # This line's share of the purchase's discount (a coupon's): its revenue is line_total - discount.
    discount: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IdempotencyKey(Base):
    """An `Idempotency-Key` a viewer sent (IETF httpapi draft): the first request with a key wins the
    unique constraint; its response is kept so a retry gets the same answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and canonical body
    state: Mapped[KeyState] = mapped_column(_enum(KeyState, "idempotency_state"))
    # The attempt that holds the key: a retry that takes over a stale attempt sets a new token, and
    # only the holder's purchase may commit (the completing UPDATE checks it).
    token: Mapped[str] = mapped_column(String(32))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Address(Base):
    """A delivery address as the postcode search finds it: its postal code, its road address and, when
    known, its lot-number (jibun) address and building name. `search_text` is all of it normalised
    (`addresses.search_text`), matched word by word with LIKE: on PostgreSQL a trigram index serves those
    (pg_trgm, which the migration enables); a query of five digits reads the postal code's index instead.
    Filled by `livecommerce addresses import`; an address is one row (postal code and road address)."""

    __tablename__ = "addresses"
    __table_args__ = (
        UniqueConstraint("postal_code", "road_address"),
        CheckConstraint("length(postal_code) = 5", name="postal_code_five_digits"),
        Index("ix_addresses_search_text", "search_text", postgresql_using="gin",
              postgresql_ops={"search_text": "gin_trgm_ops"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    postal_code: Mapped[str] = mapped_column(String(5))
    road_address: Mapped[str] = mapped_column(String(200))
    jibun_address: Mapped[str | None] = mapped_column(String(200), default=None)
    building_name: Mapped[str | None] = mapped_column(String(100), default=None)
    search_text: Mapped[str] = mapped_column(Text)
