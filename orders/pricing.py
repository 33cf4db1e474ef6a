"""Where another domain prices a purchase (coupons take their discount off it) and takes back what a
purchase called off gave it (a coupon comes back to its owner), inside the purchase's own transaction.

- A **pricer** is called by `placing.place_purchase` after the line-up's prices and the stock were
  checked and before any row is written, on whichever unit of work the purchase runs on (asyncpg's
  own on PostgreSQL, SQLAlchemy elsewhere). It answers an `Adjustment` (a discount, shared out over
  the lines, and the coupon it redeems), or None; it may write in the same transaction (a coupon
  marked redeemed), and it refuses the purchase by raising a domain error (`AppError`): the
  transaction rolls back, nothing is written, and the refusal is kept with the Idempotency-Key like
  any other. One coupon per purchase: the first pricer that answers an adjustment decides it.
- A **releaser** is called when a purchase is called off as a whole (cancelled or refunded by a
  person, or cancelled because its transfer never came), in that transaction, with the coupon claim
  the purchase redeemed (None when it used none).

With nothing registered a purchase costs exactly what it did: no call, no statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from livecommerce.uow import UnitOfWork

from .rules import PricedLine

__all__ = [
    "PRICING",
    "Adjustment",
    "Pricer",
    "PricingContext",
    "PricingHooks",
    "Releaser",
    "check_adjustment",
    "price",
    "pricing_hooks",
    "release",
]


@dataclass(frozen=True)
class PricingContext:
    """What a pricer sees, inside the purchase's transaction."""

    user_id: int
    broadcast_id: int
    market_id: int
    lines: tuple[PricedLine, ...]  # in product order: product, stall, quantity, live and usual price, line_total
    subtotal: int  # the lines at their live prices
    coupon_claim_ids: tuple[int, ...]  # the claimed coupons the buyer picked (the order's `coupons`)
    suggest: bool  # the buyer asked for the best coupon to be picked for them (`suggest_coupon`)
    now: datetime


@dataclass(frozen=True)
class Adjustment:
    """What a pricer takes off: whole won, `0 <= discount <= subtotal`, shared out over the context's
    `lines` in the same order (`per_line` adds up to `discount`, no share above its line's total)."""

    discount: int
    per_line: tuple[int, ...]
    coupon_claim_id: int | None = None
    coupon_code: str | None = None


Pricer = Callable[[UnitOfWork, PricingContext], Awaitable[Adjustment | None]]
# (unit of work, purchase id, the coupon claim it redeemed or None, now)
Releaser = Callable[[UnitOfWork, int, int | None, datetime], Awaitable[None]]


@dataclass
class PricingHooks:
    """The pricers and releasers the domains registered (in their `setup`), called in that order."""

    pricers: list[Pricer] = field(default_factory=list)
    releasers: list[Releaser] = field(default_factory=list)


PRICING = web.AppKey("orders_pricing", PricingHooks)


def pricing_hooks(app: web.Application) -> PricingHooks:
    """The app's pricing hooks, made on first use (domains register into them in their `setup`)."""
    hooks = app.get(PRICING)
    if hooks is None:
        hooks = app[PRICING] = PricingHooks()
    return hooks


def check_adjustment(adjustment: Adjustment, ctx: PricingContext) -> None:
    """An adjustment that breaks its promises is a pricer's bug, not the buyer's: refuse to record it."""
    shares = adjustment.per_line
    if not 0 <= adjustment.discount <= ctx.subtotal:
        raise ValueError(f"a discount of {adjustment.discount} on a subtotal of {ctx.subtotal}")
    if len(shares) != len(ctx.lines) or sum(shares) != adjustment.discount:
        raise ValueError(f"the shares {shares} are not the discount {adjustment.discount} over {len(ctx.lines)} lines")
    if any(not 0 <= share <= line.line_total for share, line in zip(shares, ctx.lines, strict=True)):
        raise ValueError(f"a share of {shares} is outside its line's total")


async def price(uow: UnitOfWork, pricers: Sequence[Pricer], ctx: PricingContext) -> Adjustment | None:
    """Ask the pricers in turn; the first adjustment decides (checked). A pricer's domain error refuses
    the purchase (it propagates, and the caller's transaction rolls back)."""
    for pricer in pricers:
        adjustment = await pricer(uow, ctx)
        if adjustment is not None:
            check_adjustment(adjustment, ctx)
            return adjustment
    return None


async def release(uow: UnitOfWork, releasers: Sequence[Releaser], purchase_id: int, coupon_claim_id: int | None,
                  now: datetime) -> None:
    """A purchase was called off: every releaser, in the same transaction."""
    for releaser in releasers:
        await releaser(uow, purchase_id, coupon_claim_id, now)
