"""The pure rules of coupons, without a server: templates and their mistakes, the claim and use
windows, the discount of one coupon and its rounding, sharing it out between lines and merchants,
several coupons at once, and the best coupon for a cart; with properties checked by hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupons import rules
from coupons.rules import (
    Applied,
    Coupon,
    InvalidCoupon,
    Kind,
    Line,
    NotApplicable,
    NotCombinable,
    Scope,
    application_order,
    apply,
    best_coupon,
    cart_total,
    check_combination,
    claim_closes_at,
    claim_open,
    discount,
    eligible_subtotal,
    per_merchant,
    problems,
    split,
    split_weights,
    usable,
    use_ends_at,
    validate,
)
from orders.rules import Offer, Wanted, price_basket

PROPERTIES = settings(max_examples=300, deadline=None, database=None)
DROP = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)  # 19:05 in Seoul

DUMPLINGS = Line(product_id=1, merchant_id=10, unit_price=9900, quantity=2)  # 19,800
SESAME_OIL = Line(product_id=2, merchant_id=20, unit_price=13900, quantity=1)  # 13,900
PERILLA_OIL = Line(product_id=3, merchant_id=20, unit_price=5000, quantity=3)  # 15,000
CART = [DUMPLINGS, SESAME_OIL, PERILLA_OIL]  # 48,700


def only(price: int, *, product_id: int = 1, merchant_id: int = 10) -> list[Line]:
    return [Line(product_id, merchant_id, price, 1)]


# -- templates ------------------------------------------------------------------------------------

def test_a_valid_template_is_returned_as_it_is() -> None:
    coupon = Coupon.percent(15, max_discount=5000, min_order=30000, scope=Scope.MERCHANT, merchant_id=10)
    assert validate(coupon) is coupon
    assert problems(coupon) == []
    assert (coupon.combinable, coupon.per_viewer_limit) == (False, 1)


@pytest.mark.parametrize(("coupon", "code"), [
    (Coupon.percent(0), "invalid_percent"),
    (Coupon.percent(101), "invalid_percent"),
    (Coupon.percent(-5), "invalid_percent"),
    (Coupon.percent(10, max_discount=0), "invalid_max_discount"),
    (Coupon.percent(10, max_discount=-1000), "invalid_max_discount"),
    (Coupon.fixed(0), "invalid_amount"),
    (Coupon.fixed(-3000), "invalid_amount"),
    (Coupon.fixed(3000, max_discount=1000), "cap_not_allowed"),
    (Coupon.fixed(3000, min_order=-1), "invalid_minimum"),
    (Coupon.fixed(3000, quantity=0), "invalid_quantity"),
    (Coupon.fixed(3000, per_viewer_limit=0), "invalid_per_viewer_limit"),
    (Coupon.fixed(3000, scope=Scope.PRODUCTS), "no_products"),
    (Coupon.fixed(3000, scope=Scope.MERCHANT), "missing_merchant"),
    (Coupon.fixed(3000, merchant_id=10), "scope_mismatch"),
    (Coupon.fixed(3000, scope=Scope.MERCHANT, merchant_id=10, product_ids={1}), "scope_mismatch"),
    (Coupon.fixed(3000, claim_minutes=0), "invalid_claim_window"),
    (Coupon.fixed(3000, use_days=0), "invalid_use_window"),
])
def test_a_bad_template_is_refused_with_its_reason(coupon: Coupon, code: str) -> None:
    with pytest.raises(InvalidCoupon) as info:
        validate(coupon)
    assert info.value.code == code
    assert info.value.message  # an English msgid for the catalogue
    assert [p.code for p in problems(coupon)] == [code]


def test_every_mistake_is_listed_for_the_form() -> None:
    coupon = Coupon.percent(150, quantity=0, per_viewer_limit=0, scope=Scope.PRODUCTS)
    assert [p.code for p in problems(coupon)] == [
        "invalid_percent", "no_products", "invalid_per_viewer_limit", "invalid_quantity"]


def test_values_from_a_form_or_a_row_become_their_types() -> None:
    coupon = Coupon("percent", 10, scope="products", product_ids=[2, 3, 2])  # type: ignore[arg-type]
    assert coupon.kind is Kind.PERCENT and coupon.scope is Scope.PRODUCTS
    assert coupon.product_ids == frozenset({2, 3})
    with pytest.raises(InvalidCoupon) as info:
        Coupon("half", 10)  # type: ignore[arg-type]
    assert info.value.code == "invalid_kind"
    with pytest.raises(InvalidCoupon) as info:
        Coupon(Kind.FIXED, 10, scope="market")  # type: ignore[arg-type]
    assert info.value.code == "invalid_scope"


def test_a_cart_line_refuses_a_negative_price_or_no_quantity() -> None:
    with pytest.raises(ValueError):
        Line(1, 10, -1, 1)
    with pytest.raises(ValueError):
        Line(1, 10, 1000, 0)
    assert Line(1, 10, 0, 2).line_total == 0


# -- windows --------------------------------------------------------------------------------------

def test_the_claim_window_is_minutes_after_the_drop() -> None:
    closes = claim_closes_at(DROP, 10)
    assert closes == DROP + timedelta(minutes=10)
    assert not claim_open(DROP - timedelta(seconds=1), DROP, 10)
    assert claim_open(DROP, DROP, 10)
    assert claim_open(closes - timedelta(microseconds=1), DROP, 10)
    assert not claim_open(closes, DROP, 10)


def test_the_end_of_the_broadcast_closes_the_claims() -> None:
    ended = DROP + timedelta(minutes=4)
    assert claim_open(ended - timedelta(seconds=1), DROP, 10, broadcast_ended_at=ended)
    assert not claim_open(ended, DROP, 10, broadcast_ended_at=ended)


def test_a_coupon_for_the_broadcast_is_usable_until_it_ends() -> None:
    assert use_ends_at(DROP, None, None) is None
    assert usable(DROP + timedelta(hours=5), DROP, None, None)  # still going
    ended = DROP + timedelta(minutes=50)
    assert use_ends_at(DROP, None, ended) == ended
    assert usable(ended - timedelta(seconds=1), DROP, None, ended)
    assert not usable(ended, DROP, None, ended)
    assert not usable(DROP - timedelta(seconds=1), DROP, None, None)


def test_a_coupon_for_n_days_is_usable_n_days_after_the_drop() -> None:
    ended = DROP + timedelta(minutes=50)
    assert use_ends_at(DROP, 3, ended) == DROP + timedelta(days=3)
    assert usable(DROP + timedelta(days=2), DROP, 3, ended)  # after the broadcast
    assert not usable(DROP + timedelta(days=3), DROP, 3, ended)


# -- one coupon -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("percent", "subtotal", "expected"), [
    (15, 12900, 1935),
    (15, 12990, 1948),  # 1,948.5: floored
    (10, 9999, 999),  # 999.9: floored
    (33, 100, 33),
    (100, 12345, 12345),
    (1, 99, 0),  # 0.99: nothing
])
def test_a_percentage_is_floored_to_the_won(percent: int, subtotal: int, expected: int) -> None:
    assert discount(Coupon.percent(percent), only(subtotal)) == expected


def test_a_percentage_is_capped() -> None:
    assert discount(Coupon.percent(10, max_discount=20000), only(300000)) == 20000
    assert discount(Coupon.percent(10, max_discount=20000), only(150000)) == 15000


def test_a_fixed_amount_never_exceeds_the_eligible_subtotal() -> None:
    assert discount(Coupon.fixed(5000), only(30000)) == 5000
    assert discount(Coupon.fixed(5000), only(3000)) == 3000
    merchant20 = Coupon.fixed(50000, scope=Scope.MERCHANT, merchant_id=20)
    assert discount(merchant20, CART) == 28900  # only merchant 20's goods


def test_the_minimum_order_is_judged_on_the_eligible_subtotal() -> None:
    coupon = Coupon.fixed(3000, min_order=30000, scope=Scope.MERCHANT, merchant_id=20)
    assert cart_total(CART) == 48700
    assert eligible_subtotal(coupon, CART) == 28900
    with pytest.raises(NotApplicable) as info:
        discount(coupon, CART)
    assert info.value.reason == "below_minimum"
    assert info.value.min_spent == 30000
    assert info.value.params == {"min_spent": 30000, "missing": 1100}
    assert discount(coupon, [*CART, Line(4, 20, 1100, 1)]) == 3000  # exactly the minimum


def test_a_coupon_for_nothing_in_the_cart_is_out_of_scope() -> None:
    for coupon in (Coupon.fixed(1000, scope=Scope.MERCHANT, merchant_id=99),
                   Coupon.percent(10, scope=Scope.PRODUCTS, product_ids={7, 8}),
                   Coupon.fixed(1000)):
        lines = [] if coupon.scope is Scope.ALL else CART
        with pytest.raises(NotApplicable) as info:
            discount(coupon, lines)
        assert info.value.reason == "out_of_scope"


def test_a_product_coupon_counts_only_its_products() -> None:
    coupon = Coupon.percent(20, scope=Scope.PRODUCTS, product_ids={1, 3})
    assert eligible_subtotal(coupon, CART) == 34800
    assert discount(coupon, CART) == 6960


def test_the_order_rules_priced_lines_are_cart_lines_too() -> None:
    offers = {1: Offer(1, 10, live_price=9900, usual_price=12900, left=30)}
    basket = price_basket([Wanted(1, 3)], offers, max_quantity=10)
    assert discount(Coupon.percent(15), basket.lines) == 29700 * 15 // 100


# -- sharing out ----------------------------------------------------------------------------------

def test_largest_remainders_make_the_shares_add_up() -> None:
    assert split_weights(1000, [1000, 1000, 1000]) == [334, 333, 333]
    assert split_weights(10, [5, 3, 2]) == [5, 3, 2]
    assert split_weights(7, [10, 0, 10]) == [4, 0, 3]
    assert split_weights(0, [3, 4]) == [0, 0]
    assert split_weights(5, [2, 2, 1]) == [2, 2, 1]  # all of it: each line its whole total


def test_a_share_too_large_or_negative_is_refused() -> None:
    with pytest.raises(ValueError):
        split_weights(11, [5, 5])
    with pytest.raises(ValueError):
        split_weights(-1, [5, 5])
    with pytest.raises(ValueError):
        split_weights(1, [5, -5])


def test_a_discount_is_shared_between_the_lines_it_covers() -> None:
    coupon = Coupon.fixed(3000, scope=Scope.MERCHANT, merchant_id=20)
    shares = split(3000, CART, coupon)
    assert shares == [0, 1443, 1557]  # 3000 × 13900 / 28900 = 1442.9, 3000 × 15000 / 28900 = 1557.09
    assert per_merchant(CART, shares) == {10: 0, 20: 3000}
    everything = split(4870, CART)
    assert everything == [1980, 1390, 1500]
    assert per_merchant(CART, everything) == {10: 1980, 20: 2890}


# -- several coupons ------------------------------------------------------------------------------

def test_a_coupon_that_stands_alone_cannot_be_combined() -> None:
    alone = Coupon.fixed(1000, id=1)
    together = Coupon.percent(10, combinable=True, id=2)
    check_combination([alone])
    check_combination([together, Coupon.fixed(500, combinable=True, id=3)])
    with pytest.raises(NotCombinable) as info:
        check_combination([together, alone])
    assert info.value.code == "not_combinable"
    assert info.value.params == {"coupon_id": 1}
    with pytest.raises(NotCombinable):
        apply([alone, together], CART)


def test_fixed_amounts_come_before_percentages() -> None:
    fixed = Coupon.fixed(5000, combinable=True, id=1)
    percent = Coupon.percent(10, combinable=True, id=2)
    lines = only(50000)
    applied = apply([percent, fixed], lines)
    assert [(c.id, off) for c, off in applied.discounts] == [(1, 5000), (2, 4500)]
    assert applied.total == 9500
    assert application_order([Coupon.percent(5, id=5), Coupon.percent(20, id=6), Coupon.fixed(100, id=7),
                              Coupon.fixed(900, id=8)]) == [
        Coupon.fixed(900, id=8), Coupon.fixed(100, id=7), Coupon.percent(20, id=6), Coupon.percent(5, id=5)]


def test_combined_coupons_never_take_more_than_the_cart() -> None:
    coupons = [Coupon.fixed(30000, combinable=True, id=1), Coupon.fixed(30000, combinable=True, id=2),
               Coupon.percent(100, combinable=True, id=3)]
    applied = apply(coupons, CART)
    assert applied.total == cart_total(CART) == 48700
    assert [off for _, off in applied.discounts] == [30000, 18700, 0]
    assert applied.per_line == tuple(line.line_total for line in CART)


def test_each_minimum_is_judged_on_the_cart_before_any_coupon() -> None:
    big = Coupon.fixed(40000, combinable=True, id=1)
    needs_40000 = Coupon.percent(10, min_order=40000, combinable=True, id=2)
    applied = apply([big, needs_40000], CART)
    assert [off for _, off in applied.discounts] == [40000, 870]  # 10 % of the 8,700 left
    with pytest.raises(NotApplicable) as info:
        apply([big, Coupon.fixed(1000, min_order=50000, combinable=True, id=3)], CART)
    assert info.value.reason == "below_minimum"


def test_no_coupon_takes_nothing_off() -> None:
    assert apply([], CART) == Applied((), (0, 0, 0))


# -- the best coupon ------------------------------------------------------------------------------

def test_the_best_coupon_takes_the_most_off() -> None:
    claimed = [Coupon.fixed(3000, id=1), Coupon.percent(10, id=2),
               Coupon.fixed(9000, min_order=60000, id=3),  # below its minimum
               Coupon.fixed(9000, scope=Scope.MERCHANT, merchant_id=99, id=4)]  # out of scope
    assert best_coupon(claimed, CART) == Coupon.percent(10, id=2)  # 4,870


def test_a_tie_goes_to_the_lower_id() -> None:
    claimed = [Coupon.fixed(4870, id=9), Coupon.percent(10, id=4), Coupon.fixed(4870, id=7)]
    assert best_coupon(claimed, CART) == Coupon.percent(10, id=4)
    twins = [Coupon.fixed(1000, min_order=1), Coupon.fixed(1000, min_order=2)]
    assert best_coupon(twins, CART) is twins[0]


def test_no_best_coupon_when_none_applies_or_none_takes_anything() -> None:
    assert best_coupon([], CART) is None
    assert best_coupon([Coupon.fixed(1000, min_order=10**6)], CART) is None
    assert best_coupon([Coupon.percent(1)], only(99)) is None


# -- properties -----------------------------------------------------------------------------------

lines_st = st.lists(
    st.builds(Line, product_id=st.integers(1, 6), merchant_id=st.integers(1, 3),
              unit_price=st.integers(0, 300_000), quantity=st.integers(1, 10)),
    max_size=8)


@st.composite
def coupons_st(draw: st.DrawFn, combinable: bool | None = None) -> Coupon:
    scope = draw(st.sampled_from(Scope))
    options = {
        "min_order": draw(st.integers(0, 100_000)),
        "scope": scope,
        "merchant_id": draw(st.integers(1, 3)) if scope is Scope.MERCHANT else None,
        "product_ids": draw(st.frozensets(st.integers(1, 6), min_size=1)) if scope is Scope.PRODUCTS else frozenset(),
        "combinable": draw(st.booleans()) if combinable is None else combinable,
        "id": draw(st.integers(0, 50)),
    }
    if draw(st.booleans()):
        coupon = Coupon.fixed(draw(st.integers(1, 200_000)), **options)
    else:
        coupon = Coupon.percent(draw(st.integers(1, 100)), draw(st.none() | st.integers(1, 100_000)), **options)
    return validate(coupon)


@PROPERTIES
@given(coupons_st(), lines_st)
def test_a_discount_is_between_0_and_the_eligible_subtotal(coupon: Coupon, lines: list[Line]) -> None:
    subtotal = eligible_subtotal(coupon, lines)
    in_scope = any(coupon.covers(line) for line in lines)
    try:
        off = discount(coupon, lines)
    except NotApplicable as exc:
        assert exc.reason == ("out_of_scope" if not in_scope else "below_minimum")
        assert in_scope is False or subtotal < coupon.min_order
        return
    assert in_scope and subtotal >= coupon.min_order
    assert 0 <= off <= subtotal <= cart_total(lines)
    if coupon.kind is Kind.FIXED:
        assert off == min(coupon.value, subtotal)
    else:
        assert off * 100 <= subtotal * coupon.value < (off + 1) * 100 or off == coupon.max_discount
        assert coupon.max_discount is None or off <= coupon.max_discount


@PROPERTIES
@given(coupons_st(), lines_st)
def test_the_split_adds_up_and_no_line_gets_more_than_its_total(coupon: Coupon, lines: list[Line]) -> None:
    try:
        off = discount(coupon, lines)
    except NotApplicable:
        return
    shares = split(off, lines, coupon)
    assert sum(shares) == off
    for line, share in zip(lines, shares, strict=True):
        assert 0 <= share <= line.line_total
        if not coupon.covers(line):
            assert share == 0
    merchants = per_merchant(lines, shares)
    assert sum(merchants.values()) == off
    for merchant_id, share in merchants.items():
        assert share <= sum(li.line_total for li in lines if li.merchant_id == merchant_id)


@PROPERTIES
@given(st.lists(st.integers(0, 10**9), max_size=12), st.data())
def test_largest_remainders_are_exact_and_proportional(weights: list[int], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(weights)))
    shares = split_weights(amount, weights)
    assert sum(shares) == amount
    total = sum(weights)
    for w, share in zip(weights, shares, strict=True):
        assert 0 <= share <= w
        if total:
            assert abs(share * total - amount * w) < total  # less than one won from the exact share


@PROPERTIES
@given(st.lists(coupons_st(combinable=True), min_size=1, max_size=4), lines_st)
def test_combined_coupons_stay_within_the_cart(coupons: list[Coupon], lines: list[Line]) -> None:
    try:
        applied = apply(coupons, lines)
    except NotApplicable:
        return
    assert 0 <= applied.total <= cart_total(lines)
    assert applied.total == sum(off for _, off in applied.discounts)
    for line, share in zip(lines, applied.per_line, strict=True):
        assert 0 <= share <= line.line_total
        if not any(c.covers(line) for c in coupons):
            assert share == 0
    for coupon, off in applied.discounts:
        assert 0 <= off <= discount(coupon, lines)  # taken on what is left, never more than alone
    assert sum(applied.per_merchant(lines).values()) == applied.total


@PROPERTIES
@given(coupons_st(), lines_st)
def test_one_coupon_applied_is_its_discount_split(coupon: Coupon, lines: list[Line]) -> None:
    try:
        off = discount(coupon, lines)
    except NotApplicable:
        return
    applied = apply([coupon], lines)
    assert applied.total == off
    assert list(applied.per_line) == split(off, lines, coupon)


@PROPERTIES
@given(st.lists(coupons_st(), max_size=5), lines_st)
def test_the_best_coupon_is_never_beaten(claimed: list[Coupon], lines: list[Line]) -> None:
    offs = []
    for coupon in claimed:
        try:
            offs.append(discount(coupon, lines))
        except NotApplicable:
            pass
    best = best_coupon(claimed, lines)
    if not offs or max(offs) == 0:
        assert best is None
    else:
        assert best is not None and discount(best, lines) == max(offs)


def test_a_planned_drop_is_due_from_the_minute_of_the_live_stream() -> None:
    started = datetime(2026, 12, 7, 10, 3, tzinfo=UTC)  # went live three minutes late
    assert not rules.planned_due(started, 20, started + timedelta(minutes=19, seconds=59))
    assert rules.planned_due(started, 20, started + timedelta(minutes=20))
    assert rules.planned_due(started, 0, started)
