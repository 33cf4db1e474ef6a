"""Pure rules of coupons, on plain data and tested without a server: what a coupon template may be,
when it can be claimed and used, what it takes off a cart, how that discount is shared out between
the lines (and so between the merchants), how several coupons combine, and which claimed coupon is
best for a cart.

Money is whole won (KRW) in `int`, never a float.

- **Minimum order** is judged on the *eligible subtotal*: the cart's lines that are in the coupon's
  scope, at the prices charged, before any coupon. A merchant's coupon "from 30,000 won" needs
  30,000 won of that merchant's goods, not of the whole cart.
- **Rounding** is always down to the whole won (floor): 15 % of 12,900 won is 1,935 won, 15 % of
  12,990 won is 1,948 won (not 1,948.5 → 1,949). A discount is never rounded up, so it never
  exceeds what the coupon promises.
- **Sharing out** a discount between lines uses the largest-remainder method, so the line shares add
  up exactly to the discount, no line gets more than its own total, and out-of-scope lines get 0.

No clock is read here: the moment `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from livecommerce.errors import N_

# -- errors ---------------------------------------------------------------------------------------


class CouponError(Exception):
    """A coupon rule refused something; `code` is stable, `message` an English msgid with
    `%(name)s` params (translated where it is shown), `params` the values for it."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        self.code = code
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)


class InvalidCoupon(CouponError):
    """A coupon template that cannot be (a percent of 120, a quantity of 0...)."""


class NotApplicable(CouponError):
    """The coupon does not apply to this cart. `reason` is the code: `out_of_scope` (nothing in the
    cart is covered) or `below_minimum` (then `min_spent` is the minimum and `params["missing"]`
    what is still to spend on eligible goods)."""

    def __init__(self, reason: str, message: str, *, min_spent: int | None = None, **params: Any) -> None:
        if min_spent is not None:
            params["min_spent"] = min_spent
        super().__init__(reason, message, **params)
        self.min_spent = min_spent

    @property
    def reason(self) -> str:
        return self.code


class NotCombinable(CouponError):
    """Several coupons were picked for one purchase and at least one of them stands alone."""


# -- the template ---------------------------------------------------------------------------------


class Kind(StrEnum):
    FIXED = "fixed"  # `value` won off
    PERCENT = "percent"  # `value` percent off (1 to 100), at most `max_discount` won when set


class Scope(StrEnum):
    ALL = "all"  # every product in the cart
    MERCHANT = "merchant"  # the products of one merchant (`merchant_id`)
    PRODUCTS = "products"  # some products (`product_ids`)


def kind_of(value: str) -> Kind:
    """The kind a form or a row names (a `Kind` is a string too); InvalidCoupon if none."""
    try:
        return Kind(value)
    except ValueError:
        raise InvalidCoupon("invalid_kind", N_("A coupon takes off a fixed amount or a percentage.")) from None


def scope_of(value: str) -> Scope:
    """The scope a form or a row names (a `Scope` is a string too); InvalidCoupon if none."""
    try:
        return Scope(value)
    except ValueError:
        raise InvalidCoupon("invalid_scope",
                            N_("A coupon covers everything, one merchant's products or some products.")) from None


@dataclass(frozen=True)
class Coupon:
    """A coupon template, as staff plan it before a broadcast. `id` identifies it (the template's,
    or the claimed coupon's) and breaks ties between equally good coupons.

    The claim window is `claim_minutes` after the coupon is dropped in the broadcast; the use window
    ends with the broadcast (`use_days` is None) or `use_days` days after the drop."""

    kind: Kind
    value: int  # won for FIXED, percent for PERCENT
    max_discount: int | None = None  # PERCENT only: the cap in won
    min_order: int = 0  # on the eligible subtotal
    scope: Scope = Scope.ALL
    merchant_id: int | None = None  # Scope.MERCHANT only
    product_ids: frozenset[int] = field(default_factory=frozenset)  # Scope.PRODUCTS only
    combinable: bool = False
    per_viewer_limit: int = 1
    quantity: int = 100  # how many can be claimed in all
    claim_minutes: int = 10
    use_days: int | None = None
    id: int = 0

    def __post_init__(self) -> None:
        # Values read from a form or a row arrive as plain strings and lists: make them the types.
        object.__setattr__(self, "kind", kind_of(self.kind))
        object.__setattr__(self, "scope", scope_of(self.scope))
        object.__setattr__(self, "product_ids", frozenset(self.product_ids))

    @classmethod
    def fixed(cls, amount: int, **options: Any) -> Coupon:
        """`amount` won off."""
        return cls(Kind.FIXED, amount, **options)

    @classmethod
    def percent(cls, percent: int, max_discount: int | None = None, **options: Any) -> Coupon:
        """`percent` % off, at most `max_discount` won when given."""
        return cls(Kind.PERCENT, percent, max_discount, **options)

    def covers(self, line: CartLine) -> bool:
        """Whether a cart line is in this coupon's scope."""
        if self.scope is Scope.MERCHANT:
            return line.merchant_id == self.merchant_id
        if self.scope is Scope.PRODUCTS:
            return line.product_id in self.product_ids
        return True


def problems(coupon: Coupon) -> list[InvalidCoupon]:
    """Everything wrong with a template, in the order of its fields (empty when it is valid), so a
    staff form can show every mistake at once."""
    out: list[InvalidCoupon] = []

    def bad(code: str, message: str, **params: Any) -> None:
        out.append(InvalidCoupon(code, message, **params))

    if coupon.kind is Kind.FIXED:
        if coupon.value < 1:
            bad("invalid_amount", N_("A fixed discount is at least 1 won."))
        if coupon.max_discount is not None:
            bad("cap_not_allowed", N_("Only a percent discount has a maximum discount."))
    else:
        if not 1 <= coupon.value <= 100:
            bad("invalid_percent", N_("A percent discount is 1 to 100 percent."))
        if coupon.max_discount is not None and coupon.max_discount < 1:
            bad("invalid_max_discount", N_("The maximum discount is at least 1 won."))
    if coupon.min_order < 0:
        bad("invalid_minimum", N_("The minimum order cannot be negative."))
    if coupon.scope is Scope.MERCHANT:
        if coupon.merchant_id is None:
            bad("missing_merchant", N_("Choose the merchant whose products the coupon covers."))
    elif coupon.merchant_id is not None:
        bad("scope_mismatch", N_("Only a merchant's coupon names a merchant."))
    if coupon.scope is Scope.PRODUCTS:
        if not coupon.product_ids:
            bad("no_products", N_("Choose at least one product for the coupon."))
    elif coupon.product_ids:
        bad("scope_mismatch", N_("Only a coupon for some products lists products."))
    if coupon.per_viewer_limit < 1:
        bad("invalid_per_viewer_limit", N_("Each viewer can claim the coupon at least once."))
    if coupon.quantity < 1:
        bad("invalid_quantity", N_("A coupon is given out at least once."))
    if coupon.claim_minutes < 1:
        bad("invalid_claim_window", N_("The claim window is at least 1 minute."))
    if coupon.use_days is not None and coupon.use_days < 1:
        bad("invalid_use_window", N_("A coupon is usable for at least 1 day, or until the broadcast ends."))
    return out


def validate(coupon: Coupon) -> Coupon:
    """The template itself when it is valid; otherwise its first problem is raised."""
    found = problems(coupon)
    if found:
        raise found[0]
    return coupon


# -- windows --------------------------------------------------------------------------------------


def claim_closes_at(dropped_at: datetime, claim_minutes: int) -> datetime:
    """The moment a dropped coupon can no longer be claimed."""
    return dropped_at + timedelta(minutes=claim_minutes)


def planned_due(started_at: datetime, minute: int, now: datetime) -> bool:
    """A drop planned for `minute` of a broadcast is due once that minute of the live stream has come
    (counted from when the broadcast really went live, not from its scheduled start)."""
    return now >= started_at + timedelta(minutes=minute)


def claim_open(now: datetime, dropped_at: datetime, claim_minutes: int, *,
               broadcast_ended_at: datetime | None = None) -> bool:
    """A coupon is claimed during `claim_minutes` after its drop, and only while the broadcast goes
    on: the end of the broadcast closes the claims too."""
    if now < dropped_at or now >= claim_closes_at(dropped_at, claim_minutes):
        return False
    return broadcast_ended_at is None or now < broadcast_ended_at


def use_ends_at(dropped_at: datetime, use_days: int | None, broadcast_ended_at: datetime | None) -> datetime | None:
    """The moment a claimed coupon can no longer be used: `use_days` days after the drop, or, when
    `use_days` is None, the end of the broadcast (None while it goes on: no end is known yet)."""
    if use_days is not None:
        return dropped_at + timedelta(days=use_days)
    return broadcast_ended_at


def usable(now: datetime, dropped_at: datetime, use_days: int | None, broadcast_ended_at: datetime | None) -> bool:
    """Whether a claimed coupon can be used at `now` (from its drop to the end of its use window)."""
    if now < dropped_at:
        return False
    ends = use_ends_at(dropped_at, use_days, broadcast_ended_at)
    return ends is None or now < ends


# -- the cart -------------------------------------------------------------------------------------


class CartLine(Protocol):
    """What the coupon rules read from a cart line; `Line` here and the order rules' priced lines both
    fit."""

    @property
    def product_id(self) -> int: ...

    @property
    def merchant_id(self) -> int: ...

    @property
    def line_total(self) -> int: ...


@dataclass(frozen=True)
class Line:
    """A cart line at the price charged (the live price), in whole won."""

    product_id: int
    merchant_id: int
    unit_price: int
    quantity: int

    def __post_init__(self) -> None:
        if self.unit_price < 0 or self.quantity < 1:
            raise ValueError("a cart line has a price of 0 won or more and a quantity of 1 or more")

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


def cart_total(lines: Iterable[CartLine]) -> int:
    return sum(line.line_total for line in lines)


def eligible_subtotal(coupon: Coupon, lines: Iterable[CartLine]) -> int:
    """The total of the lines in the coupon's scope."""
    return sum(line.line_total for line in lines if coupon.covers(line))


def _amount_off(coupon: Coupon, subtotal: int) -> int:
    """What the coupon takes off `subtotal` won of eligible goods (floored, capped, never more than
    the subtotal)."""
    if coupon.kind is Kind.FIXED:
        off = coupon.value
    else:
        off = subtotal * coupon.value // 100  # floor: never a won more than the percentage
        if coupon.max_discount is not None:
            off = min(off, coupon.max_discount)
    return max(0, min(off, subtotal))


def check_applies(coupon: Coupon, lines: Sequence[CartLine]) -> int:
    """The eligible subtotal when the coupon applies to the cart; `NotApplicable` otherwise."""
    if not any(coupon.covers(line) for line in lines):
        raise NotApplicable("out_of_scope", N_("This coupon does not cover anything in your cart."))
    subtotal = eligible_subtotal(coupon, lines)
    if subtotal < coupon.min_order:
        raise NotApplicable("below_minimum",
                            N_("Spend at least %(min_spent)s won on the products this coupon covers to use it."),
                            min_spent=coupon.min_order, missing=coupon.min_order - subtotal)
    return subtotal


def discount(coupon: Coupon, lines: Sequence[CartLine]) -> int:
    """What the coupon alone takes off the cart, in whole won.

    Fixed: the amount, but never more than the eligible subtotal. Percent: the eligible subtotal
    times the percentage, floored to the won, then capped at `max_discount`. Raises `NotApplicable`
    (`out_of_scope` or `below_minimum`) when it does not apply."""
    return _amount_off(coupon, check_applies(coupon, lines))


# -- sharing a discount out -----------------------------------------------------------------------


def split_weights(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` shared in proportion to `weights` by the largest-remainder method: each gets the
    floor of its exact share, and the won left over go one each to the largest remainders (the
    earlier position first on a tie). The shares add up to `amount` exactly, and none is more than
    its weight, as long as `amount` is at most the sum of the weights."""
    if amount < 0 or any(w < 0 for w in weights):
        raise ValueError("an amount and its weights are 0 or more")
    total = sum(weights)
    if amount > total:
        raise ValueError(f"cannot share {amount} over weights adding up to {total}")
    if amount == 0:
        return [0] * len(weights)
    shares: list[int] = []
    remainders: list[tuple[int, int]] = []
    for i, w in enumerate(weights):
        q, r = divmod(amount * w, total)
        shares.append(q)
        remainders.append((-r, i))
    # The leftover is the sum of the fractional parts, so it is smaller than the number of
    # positions with a non-zero remainder: only those get a won, and floor + 1 <= weight for them.
    for _, i in sorted(remainders)[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def split(discount: int, lines: Sequence[CartLine], coupon: Coupon | None = None) -> list[int]:
    """A discount shared out between the lines, in the lines' order, in proportion to their totals
    (largest remainder: the shares add up exactly to `discount`, none exceeds its line's total).
    With `coupon`, only the lines in its scope take a share and the others get 0."""
    weights = [line.line_total if coupon is None or coupon.covers(line) else 0 for line in lines]
    return split_weights(discount, weights)


def per_merchant(lines: Sequence[CartLine], shares: Sequence[int]) -> dict[int, int]:
    """Line shares (from `split`) added up by merchant: what each merchant's goods were discounted,
    merchants in the order they first appear in the cart."""
    if len(lines) != len(shares):
        raise ValueError("one share per line")
    out: dict[int, int] = {}
    for line, share in zip(lines, shares, strict=True):
        out[line.merchant_id] = out.get(line.merchant_id, 0) + share
    return out


# -- several coupons ------------------------------------------------------------------------------


def check_combination(coupons: Sequence[Coupon]) -> None:
    """One coupon is always fine; two or more only when every one of them is combinable."""
    if len(coupons) < 2:
        return
    alone = [c for c in coupons if not c.combinable]
    if alone:
        raise NotCombinable("not_combinable", N_("This coupon cannot be used together with another coupon."),
                            coupon_id=alone[0].id)


def application_order(coupons: Iterable[Coupon]) -> list[Coupon]:
    """The order in which `apply` takes coupons: fixed amounts first (the larger first), then
    percentages (the larger first), then by id."""
    return sorted(coupons, key=lambda c: (c.kind is not Kind.FIXED, -c.value, c.id))


@dataclass(frozen=True)
class Applied:
    """Coupons applied to a cart: what each took off (in the order applied), the total, and the
    share of each line (in the cart's order; adding up to `total`)."""

    discounts: tuple[tuple[Coupon, int], ...]
    per_line: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.per_line)

    def per_merchant(self, lines: Sequence[CartLine]) -> dict[int, int]:
        return per_merchant(lines, self.per_line)


def apply(coupons: Sequence[Coupon], lines: Sequence[CartLine]) -> Applied:
    """Several coupons on one cart (refused when `check_combination` refuses them).

    Each coupon's minimum order is judged on the cart as it is (the eligible subtotal before any
    coupon); then the coupons are taken in `application_order`, each on what is left to pay of the
    lines it covers: a fixed amount is taken off the remaining eligible subtotal, a percentage is a
    percentage of it (floored, capped). Each coupon's discount is shared out between its lines at
    once, so no line ever goes below 0 and the total discount never exceeds the cart total.
    Raises `NotCombinable` or `NotApplicable` (for the first coupon that does not apply)."""
    check_combination(coupons)
    for coupon in coupons:
        check_applies(coupon, lines)
    left = [line.line_total for line in lines]
    applied: list[tuple[Coupon, int]] = []
    for coupon in application_order(coupons):
        weights = [left[i] if coupon.covers(line) else 0 for i, line in enumerate(lines)]
        off = _amount_off(coupon, sum(weights))
        for i, share in enumerate(split_weights(off, weights)):
            left[i] -= share
        applied.append((coupon, off))
    per_line = tuple(line.line_total - rest for line, rest in zip(lines, left, strict=True))
    return Applied(tuple(applied), per_line)


def best_coupon(claimed: Iterable[Coupon], lines: Sequence[CartLine]) -> Coupon | None:
    """Of a viewer's claimed (and usable) coupons, the one that takes the most off this cart alone:
    on a tie, the lower `id`, then the earlier one given. None when none applies or none takes
    anything off (a coupon is not spent for 0 won)."""
    best: tuple[int, int, int] | None = None
    chosen: Coupon | None = None
    for position, coupon in enumerate(claimed):
        try:
            off = discount(coupon, lines)
        except NotApplicable:
            continue
        if off <= 0:
            continue
        key = (-off, coupon.id, position)
        if best is None or key < best:
            best, chosen = key, coupon
    return chosen

