"""Tables for coupons and giveaways. A coupon template is what staff prepare; a drop is one release of it in
a broadcast (its terms copied, so a later edit of the template changes no coupon already out); a claim is
one viewer's coupon, redeemed by at most one purchase. A giveaway is a prize drawn among its entries, with
the commitment published when entries open and the seed when the draw is made. Money is whole won; times
are UTC."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from livecommerce.db import Base, UTCDateTime, utcnow
from livecommerce.errors import N_


class DropState(enum.StrEnum):
    PLANNED = "planned"  # staff planned it for a minute of the broadcast; the scheduler drops it
    OPEN = "open"  # viewers can claim it until its claim window closes or none are left
    CLOSED = "closed"
    CANCELLED = "cancelled"


class ClaimState(enum.StrEnum):
    CLAIMED = "claimed"
    REDEEMED = "redeemed"


class EntryMode(enum.StrEnum):
    BUTTON = "button"  # tap "enter"
    KEYWORD = "keyword"  # type the keyword in chat
    BUYERS = "buyers"  # every buyer of this broadcast is entered


class GiveawayState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # the list of entries is fixed and its digest published
    DRAWN = "drawn"
    CANCELLED = "cancelled"


DROP_LABELS: dict[DropState, str] = {
    DropState.PLANNED: N_("planned"), DropState.OPEN: N_("open"), DropState.CLOSED: N_("closed"),
    DropState.CANCELLED: N_("cancelled"),
}
GIVEAWAY_LABELS: dict[GiveawayState, str] = {
    GiveawayState.OPEN: N_("entries open"), GiveawayState.CLOSED: N_("entries closed"),
    GiveawayState.DRAWN: N_("drawn"), GiveawayState.CANCELLED: N_("cancelled"),
}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e],
                validate_strings=True)


class CouponTerms:
    """The terms a template and a drop share (the drop's are a copy taken when it is made)."""

    kind: Mapped[str] = mapped_column(String(10))  # "fixed" or "percent"
    value: Mapped[int] = mapped_column(Integer)  # won, or percent
    max_discount: Mapped[int | None] = mapped_column(Integer, default=None)
    min_order: Mapped[int] = mapped_column(Integer, default=0)
    scope: Mapped[str] = mapped_column(String(10), default="all")  # "all", "merchant" or "products"
    merchant_id: Mapped[int | None] = mapped_column(Integer, default=None)
    product_ids: Mapped[str] = mapped_column(String(500), default="")  # comma-separated, for scope "products"
    combinable: Mapped[bool] = mapped_column(Boolean, default=False)
    per_viewer_limit: Mapped[int] = mapped_column(Integer, default=1)
    claim_minutes: Mapped[int] = mapped_column(Integer, default=10)
    use_days: Mapped[int | None] = mapped_column(Integer, default=None)  # None: until the broadcast ends


class CouponTemplate(CouponTerms, Base):
    __tablename__ = "coupon_templates"
    __table_args__ = (
        CheckConstraint("value > 0 AND min_order >= 0 AND quantity > 0 AND per_viewer_limit > 0",
                        name="terms_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), index=True)
    name_ko: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(80), default="")
    quantity: Mapped[int] = mapped_column(Integer, default=100)  # per drop, unless the drop says otherwise
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class CouponDrop(CouponTerms, Base):
    """One release of a template in a broadcast. `claimed` only ever moves by a conditional UPDATE
    (`claimed < quantity`), so it can never pass `quantity`."""

    __tablename__ = "coupon_drops"
    __table_args__ = (
        CheckConstraint("claimed >= 0 AND claimed <= quantity", name="claimed_within_quantity"),
        CheckConstraint("redeemed >= 0 AND redeemed <= claimed", name="redeemed_within_claimed"),
        UniqueConstraint("broadcast_id", "planned_minute", "template_id", name="one_plan_per_minute"),
        Index("ix_coupon_drops_due", "state", "planned_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_templates.id", ondelete="RESTRICT"), index=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    name_ko: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(80), default="")
    state: Mapped[DropState] = mapped_column(_enum(DropState, "drop_state"), default=DropState.OPEN)
    quantity: Mapped[int] = mapped_column(Integer)
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)
    planned_minute: Mapped[int | None] = mapped_column(Integer, default=None)  # minute of the broadcast
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    claim_closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class ClaimedCoupon(Base):
    """One viewer's coupon. `(drop_id, user_id, seq)` is unique with `1 <= seq <= per_viewer_limit`, so a
    viewer never holds more than the limit, however many taps race."""

    __tablename__ = "coupon_claims"
    __table_args__ = (
        UniqueConstraint("drop_id", "user_id", "seq", name="one_per_slot"),
        CheckConstraint("seq >= 1", name="seq_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    drop_id: Mapped[int] = mapped_column(ForeignKey("coupon_drops.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[ClaimState] = mapped_column(_enum(ClaimState, "claim_state"),
                                              default=ClaimState.CLAIMED)
    # Redeemed by the purchase whose `coupon_claim_id` is this claim, or (a coupon combined with others) is
    # the claim named here.
    redeemed_with: Mapped[int | None] = mapped_column(Integer, default=None)
    discount: Mapped[int] = mapped_column(Integer, default=0)  # what it took off, once redeemed
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    use_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)


class Giveaway(Base):
    __tablename__ = "giveaways"
    __table_args__ = (
        CheckConstraint("winners > 0", name="winners_positive"),
        CheckConstraint("entries >= 0", name="entries_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    prize_ko: Mapped[str] = mapped_column(String(120))
    prize_en: Mapped[str] = mapped_column(String(120), default="")
    winners: Mapped[int] = mapped_column(Integer, default=1)
    mode: Mapped[EntryMode] = mapped_column(_enum(EntryMode, "entry_mode"), default=EntryMode.BUTTON)
    keyword: Mapped[str] = mapped_column(String(30), default="")
    state: Mapped[GiveawayState] = mapped_column(_enum(GiveawayState, "giveaway_state"),
                                                 default=GiveawayState.OPEN)
    entries: Mapped[int] = mapped_column(Integer, default=0)  # entry numbers are 1..entries
    commitment: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str] = mapped_column(String(64))  # secret until the draw
    digest: Mapped[str | None] = mapped_column(String(64), default=None)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class GiveawayEntry(Base):
    __tablename__ = "giveaway_entries"
    __table_args__ = (
        UniqueConstraint("giveaway_id", "user_id", name="one_entry_each"),
        UniqueConstraint("giveaway_id", "number", name="one_number_each"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    giveaway_id: Mapped[int] = mapped_column(ForeignKey("giveaways.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)


class GiveawayWinner(Base):
    __tablename__ = "giveaway_winners"
    __table_args__ = (
        UniqueConstraint("giveaway_id", "rank", name="one_per_rank"),
        UniqueConstraint("giveaway_id", "user_id", name="one_prize_each"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    giveaway_id: Mapped[int] = mapped_column(ForeignKey("giveaways.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    # The winner's delivery details, filled in from their notice.
    contact_name: Mapped[str] = mapped_column(String(60), default="")
    contact_phone: Mapped[str] = mapped_column(String(20), default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    address1: Mapped[str] = mapped_column(String(200), default="")
    address2: Mapped[str] = mapped_column(String(200), default="")
    details_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
