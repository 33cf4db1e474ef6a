"""What coupons and giveaways accept and send, over HTTP and the socket: validated on the way in, documented
(OpenAPI and docs/protocol.md) from the same models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from livecommerce.api import MAX_ID, Id, Strict

IdField = Field(ge=1, le=MAX_ID)


class TemplateIn(Strict):
    name_ko: str = Field(min_length=1, max_length=80)
    name_en: str = Field(default="", max_length=80)
    kind: Literal["fixed", "percent"]
    value: int = Field(ge=1, le=10_000_000, description="won for a fixed coupon, percent for a percent one")
    max_discount: int | None = Field(default=None, ge=1, le=10_000_000, description="percent coupons: the cap")
    min_order: int = Field(default=0, ge=0, le=100_000_000, description="on the products the coupon covers")
    scope: Literal["all", "merchant", "products"] = "all"
    merchant_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    product_ids: list[Id] = Field(default_factory=list, max_length=100)
    combinable: bool = False
    per_viewer_limit: int = Field(default=1, ge=1, le=100)
    quantity: int = Field(default=100, ge=1, le=1_000_000, description="coupons per drop, unless the drop says")
    claim_minutes: int = Field(default=10, ge=1, le=240)
    use_days: int | None = Field(default=None, ge=1, le=365, description="none: until the broadcast ends")


class TemplateOut(BaseModel):
    id: int
    market_id: int
    name_ko: str
    name_en: str
    kind: str
    value: int
    max_discount: int | None
    min_order: int
    scope: str
    merchant_id: int | None
    product_ids: str
    combinable: bool
    per_viewer_limit: int
    quantity: int
    claim_minutes: int
    use_days: int | None
    active: bool

    model_config = {"from_attributes": True}


class PlanIn(Strict):
    template_id: int = IdField
    minute: int = Field(ge=0, le=24 * 60, description="minute of the broadcast, from when it goes live")
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)


class DropOut(BaseModel):
    """`coupon:drop` (a room event): a coupon dropped in the room, to claim with one tap."""

    id: int
    broadcast_id: int
    name_ko: str
    name_en: str
    kind: str
    value: int
    max_discount: int | None
    min_order: int
    scope: str
    merchant_id: int | None
    product_ids: list[int]
    combinable: bool
    per_viewer_limit: int
    quantity: int
    claimed: int
    left: int
    redeemed: int = Field(default=0, description="coupons of this drop used by a purchase")
    state: str
    planned_minute: int | None
    dropped_at: str | None
    claim_closes_at: str | None = Field(description="the claim countdown ends here (ISO 8601, UTC)")
    use_days: int | None


class HeldOut(BaseModel):
    claim_id: int
    drop: DropOut
    state: str
    claimed_at: str
    use_ends_at: str | None


class ClaimOut(BaseModel):
    claim: HeldOut
    replayed: bool = False


# -- socket events -----------------------------------------------------------------------------------------

class ClaimIn(Strict):
    broadcast_id: int = IdField
    drop_id: int = IdField
    idempotency_key: str = Field(min_length=1, max_length=255)


class DropIn(Strict):
    broadcast_id: int = IdField
    template_id: int = IdField
    quantity: int | None = Field(default=None, ge=1, le=1_000_000, description="default: the coupon's quantity")


class GiveawayStartIn(Strict):
    broadcast_id: int = IdField
    prize_ko: str = Field(min_length=1, max_length=120)
    prize_en: str = Field(default="", max_length=120)
    winners: int = Field(default=1, ge=1, le=100)
    mode: Literal["button", "keyword", "buyers"] = "button"
    keyword: str = Field(default="", max_length=30)
    minutes: int = Field(default=3, ge=1, le=60, description="how long entries stay open")


class GiveawayRef(Strict):
    broadcast_id: int = IdField
    giveaway_id: int = IdField


class WinnerOut(BaseModel):
    rank: int
    number: int
    name: str = Field(description="masked: 김**")


class GiveawayOut(BaseModel):
    """`giveaway:open`, `giveaway:closed`, `giveaway:drawn` (room events): the giveaway as everyone may see it
    (the seed only once drawn)."""

    id: int
    broadcast_id: int
    prize_ko: str
    prize_en: str
    winners_count: int
    mode: str
    keyword: str
    state: str
    entries: int
    commitment: str = Field(description="SHA-256 of the secret seed, published when entries open")
    digest: str | None = Field(description="SHA-256 of the entry list, published when entries close")
    seed: str | None
    opened_at: str
    closes_at: str
    drawn_at: str | None
    winners: list[WinnerOut]
    verify_url: str


class CouponsLeftOut(BaseModel):
    """`coupons`: coupons left per open drop, coalesced (about once a second at most, after claims)."""

    broadcast_id: int
    left: dict[str, int] = Field(description="drop id → coupons left")


class EntriesOut(BaseModel):
    """`giveaway:entries`: entries so far, coalesced."""

    broadcast_id: int
    giveaway_id: int
    entries: int


class WonOut(BaseModel):
    """`you:won`: to a winner, with where to give their delivery details."""

    broadcast_id: int
    giveaway_id: int
    prize_ko: str
    prize_en: str
    number: int
    rank: int
    details_url: str


class WinnerDetailsIn(Strict):
    name: str = Field(min_length=1, max_length=60)
    phone: str = Field(min_length=9, max_length=20)
    postal_code: str = Field(min_length=5, max_length=5, pattern=r"^\d{5}$")
    address1: str = Field(min_length=1, max_length=200)
    address2: str = Field(default="", max_length=200)
