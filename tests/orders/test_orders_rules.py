"""The pure rules of ordering, without a server: pricing from the line-up, the delivery option on
the Seoul clock, status moves, the idempotency fingerprint and replay decision, masking, and the
checks on what buyers type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orders.models import DeliveryOption, KeyState, OrderStatus
from orders.rules import (
    BANK_TRANSFER,
    COD,
    DeliveryRules,
    Offer,
    Replay,
    RuleError,
    Wanted,
    allowed_moves,
    cancel_target,
    check_delivery_choice,
    check_move,
    check_postal_code,
    choose_delivery,
    decide_replay,
    delivery_choices,
    fill_minutes,
    fingerprint,
    masked_name,
    normalize_phone,
    parse_cutoff,
    parse_idempotency_key,
    parse_prefixes,
    price_basket,
    purchase_status,
    quote_delivery,
    spreadsheet_safe,
    stock_left,
    stream_second,
)

SEOUL = ZoneInfo("Asia/Seoul")
S = OrderStatus
OFFERS = {
    1: Offer(1, 10, live_price=9900, usual_price=12900, left=30, name="고기만두"),
    2: Offer(2, 20, live_price=13900, usual_price=18000, left=2, name="참기름"),
    3: Offer(3, 20, live_price=5000, usual_price=5000, left=0, name="들기름"),
}


def seoul(day: int, hh: int, mm: int = 0) -> datetime:
    """A Seoul wall-clock moment in November 2026, as UTC."""
    return datetime(2026, 11, day, hh, mm, tzinfo=SEOUL).astimezone(UTC)


# -- pricing -------------------------------------------------------------------------------------

def test_lines_are_priced_from_the_lineup_live_price() -> None:
    basket = price_basket([Wanted(2, 2), Wanted(1, 3)], OFFERS, max_quantity=10)
    assert [(li.product_id, li.unit_price, li.quantity, li.line_total) for li in basket.lines] == [
        (1, 9900, 3, 29700), (2, 13900, 2, 27800)]  # in product order: the order rows are locked in
    assert basket.subtotal == 57500
    assert basket.usual_total == 3 * 12900 + 2 * 18000
    assert basket.savings == basket.usual_total - 57500
    assert basket.total == 57500  # no coupon, no delivery fee yet
    assert [li.merchant_id for li in basket.lines] == [10, 20]


@pytest.mark.parametrize(("wanted", "code"), [
    ([], "empty_order"),
    ([Wanted(1, 1), Wanted(1, 2)], "duplicate_product"),
    ([Wanted(99, 1)], "not_on_lineup"),
    ([Wanted(1, 0)], "invalid_quantity"),
    ([Wanted(1, 11)], "invalid_quantity"),
    ([Wanted(2, 3)], "not_enough_stock"),
    ([Wanted(3, 1)], "sold_out"),
])
def test_baskets_that_cannot_be_bought(wanted: list[Wanted], code: str) -> None:
    with pytest.raises(RuleError) as info:
        price_basket(wanted, OFFERS, max_quantity=10)
    assert info.value.code == code


def test_a_refusal_names_the_product() -> None:
    with pytest.raises(RuleError) as info:
        price_basket([Wanted(2, 3)], OFFERS, max_quantity=10)
    assert info.value.params == {"left": 2, "product": "참기름", "product_id": 2}
    assert str(info.value) == "Only 2 of 참기름 left."


def test_without_the_stock_check_the_update_decides() -> None:
    basket = price_basket([Wanted(3, 1)], OFFERS, max_quantity=10, check_stock=False)
    assert basket.subtotal == 5000


@pytest.mark.parametrize(("reserved", "sold", "stock", "left"), [
    (30, 0, 100, 30), (30, 28, 100, 2), (30, 30, 100, 0), (30, 10, 5, 5), (30, 31, 100, 0), (0, 0, 100, 0)])
def test_stock_left_for_the_show(reserved: int, sold: int, stock: int, left: int) -> None:
    assert stock_left(reserved, sold, stock) == left


# -- delivery ------------------------------------------------------------------------------------

RULES = DeliveryRules(two_hour_cutoff="11:00", same_day_cutoff="15:00", two_hour_prefixes=("045", "046"),
                      two_hour_fee=4000, same_day_fee=3000, next_day_fee=0)


def test_two_hour_delivery_in_the_area_before_the_morning_cutoff() -> None:
    q = quote_delivery(RULES, "04524", seoul(30, 10, 13), SEOUL)
    assert q.option is DeliveryOption.TWO_HOUR and q.fee == 4000 and q.in_area
    assert q.promise_at == seoul(30, 12, 20)  # two hours later, rounded up to ten minutes


def test_the_cutoff_minute_itself_is_too_late() -> None:
    assert quote_delivery(RULES, "04524", seoul(30, 10, 59), SEOUL).option is DeliveryOption.TWO_HOUR
    q = quote_delivery(RULES, "04524", seoul(30, 11, 0), SEOUL)
    assert q.option is DeliveryOption.SAME_DAY and q.in_area


def test_outside_the_area_same_day_before_the_day_cutoff_then_next_day() -> None:
    q = quote_delivery(RULES, "48058", seoul(30, 9, 0), SEOUL)  # Busan
    assert q.option is DeliveryOption.SAME_DAY and not q.in_area and q.fee == 3000
    assert q.promise_at == seoul(30, 23, 59)
    q = quote_delivery(RULES, "04524", seoul(30, 19, 30), SEOUL)  # an evening show
    assert q.option is DeliveryOption.NEXT_DAY and q.fee == 0
    assert q.promise_at == datetime(2026, 12, 1, 23, 59, tzinfo=SEOUL)


def test_the_clock_is_seoul_not_utc() -> None:
    # 23:30 UTC on the 29th is 08:30 on the 30th in Seoul: before the morning cut-off.
    now = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert quote_delivery(RULES, "04524", now, SEOUL).option is DeliveryOption.TWO_HOUR
    # 06:30 UTC is 15:30 in Seoul: past the day's cut-off, though it is morning in UTC.
    assert quote_delivery(RULES, "04524", datetime(2026, 11, 30, 6, 30, tzinfo=UTC),
                          SEOUL).option is DeliveryOption.NEXT_DAY


def test_no_postal_code_is_never_in_the_area() -> None:
    assert quote_delivery(RULES, None, seoul(30, 9), SEOUL).option is DeliveryOption.SAME_DAY
    assert quote_delivery(DeliveryRules(), "04524", seoul(30, 9), SEOUL).option is DeliveryOption.SAME_DAY


def test_all_day_and_never_cutoffs() -> None:
    always = DeliveryRules(two_hour_cutoff="24:00", same_day_cutoff="24:00", two_hour_prefixes=("0",))
    assert quote_delivery(always, "04524", seoul(30, 23, 59), SEOUL).option is DeliveryOption.TWO_HOUR
    never = DeliveryRules(two_hour_cutoff="00:00", same_day_cutoff="00:00", two_hour_prefixes=("0",))
    assert quote_delivery(never, "04524", seoul(30, 0, 0), SEOUL).option is DeliveryOption.NEXT_DAY


def test_the_option_the_buyer_confirmed_must_still_hold() -> None:
    inside = quote_delivery(RULES, "04524", seoul(30, 10), SEOUL)
    check_delivery_choice(None, inside)
    check_delivery_choice(DeliveryOption.TWO_HOUR, inside)
    outside = quote_delivery(RULES, "48058", seoul(30, 10), SEOUL)
    with pytest.raises(RuleError) as info:
        check_delivery_choice(DeliveryOption.TWO_HOUR, outside)
    assert info.value.code == "outside_delivery_area"
    too_late = quote_delivery(RULES, "04524", seoul(30, 11, 5), SEOUL)
    with pytest.raises(RuleError) as info:
        check_delivery_choice(DeliveryOption.TWO_HOUR, too_late)
    assert info.value.code == "delivery_option_changed"


def test_the_buyer_may_choose_a_slower_option_that_still_holds() -> None:
    morning = delivery_choices(RULES, "04524", seoul(30, 10), SEOUL)
    assert [(c.option, c.fee) for c in morning] == [
        (DeliveryOption.TWO_HOUR, 4000), (DeliveryOption.SAME_DAY, 3000), (DeliveryOption.NEXT_DAY, 0)]
    assert morning[0] == quote_delivery(RULES, "04524", seoul(30, 10), SEOUL)
    assert morning[2].promise_at == datetime(2026, 12, 1, 23, 59, tzinfo=SEOUL)  # the end of the next day
    busan = delivery_choices(RULES, "48058", seoul(30, 10), SEOUL)
    assert [c.option for c in busan] == [DeliveryOption.SAME_DAY, DeliveryOption.NEXT_DAY]
    evening = delivery_choices(RULES, "04524", seoul(30, 19, 30), SEOUL)
    assert [c.option for c in evening] == [DeliveryOption.NEXT_DAY]
    chosen = choose_delivery(RULES, DeliveryOption.NEXT_DAY, "04524", seoul(30, 10), SEOUL)
    assert (chosen.option, chosen.fee) == (DeliveryOption.NEXT_DAY, 0)
    assert choose_delivery(RULES, None, "04524", seoul(30, 10), SEOUL).option is DeliveryOption.TWO_HOUR
    with pytest.raises(RuleError) as info:
        choose_delivery(RULES, DeliveryOption.SAME_DAY, "04524", seoul(30, 19, 30), SEOUL)
    assert info.value.code == "delivery_option_changed"
    with pytest.raises(RuleError) as info:
        choose_delivery(RULES, DeliveryOption.TWO_HOUR, "48058", seoul(30, 10), SEOUL)
    assert info.value.code == "outside_delivery_area"


@pytest.mark.parametrize(("value", "minutes"), [("00:00", 0), ("11:00", 660), ("23:59", 1439), ("24:00", 1440)])
def test_cutoffs(value: str, minutes: int) -> None:
    assert parse_cutoff(value) == minutes


@pytest.mark.parametrize("value", ["24:01", "25:00", "7:00", "noon", ""])
def test_impossible_cutoffs(value: str) -> None:
    with pytest.raises(RuleError):
        parse_cutoff(value)


def test_area_prefixes() -> None:
    assert parse_prefixes(" 045, 046 045\n030") == ("045", "046", "030")
    assert parse_prefixes("") == ()
    with pytest.raises(RuleError):
        parse_prefixes("045, Jung-gu")


# -- status moves --------------------------------------------------------------------------------

def test_prepaid_orders_are_paid_before_packing() -> None:
    assert allowed_moves(S.PLACED, BANK_TRANSFER) == {S.PAID, S.CANCELLED}
    assert allowed_moves(S.PAID, BANK_TRANSFER) == {S.PACKED, S.REFUNDED}
    assert allowed_moves(S.PACKED, BANK_TRANSFER) == {S.DELIVERED, S.REFUNDED}
    with pytest.raises(RuleError) as info:
        check_move(S.PLACED, S.PACKED, BANK_TRANSFER)
    assert info.value.code == "illegal_status_move"


def test_pay_on_delivery_skips_paid() -> None:
    assert allowed_moves(S.PLACED, COD) == {S.PACKED, S.CANCELLED}
    assert allowed_moves(S.PACKED, COD) == {S.DELIVERED, S.CANCELLED}
    check_move(S.PLACED, S.PACKED, COD)
    with pytest.raises(RuleError):
        check_move(S.PLACED, S.PAID, COD)


@pytest.mark.parametrize("final", [S.DELIVERED, S.CANCELLED, S.REFUNDED])
def test_final_statuses_go_nowhere(final: OrderStatus) -> None:
    assert allowed_moves(final, BANK_TRANSFER) == frozenset()
    assert allowed_moves(final, COD) == frozenset()


def test_a_purchase_is_as_far_as_its_least_advanced_line() -> None:
    assert purchase_status([S.PACKED, S.PAID]) is S.PAID
    assert purchase_status([S.DELIVERED, S.DELIVERED]) is S.DELIVERED
    assert purchase_status([S.CANCELLED, S.CANCELLED]) is S.CANCELLED
    assert purchase_status([S.REFUNDED, S.REFUNDED]) is S.REFUNDED


def test_calling_off_a_purchase() -> None:
    assert cancel_target([S.PLACED, S.PLACED], BANK_TRANSFER) is S.CANCELLED
    assert cancel_target([S.PAID, S.PACKED], BANK_TRANSFER) is S.REFUNDED
    assert cancel_target([S.PACKED], COD) is S.CANCELLED  # nothing was paid yet
    for statuses in ([S.DELIVERED, S.PACKED], [S.CANCELLED], []):
        with pytest.raises(RuleError):
            cancel_target(statuses, BANK_TRANSFER)


# -- idempotency ---------------------------------------------------------------------------------

def test_the_fingerprint_ignores_key_order_and_spacing_but_not_values() -> None:
    a = fingerprint("POST", "/api/v1/broadcasts/1/purchases", {"lines": [{"product_id": 1, "quantity": 2}], "x": "가"})
    b = fingerprint("post", "/api/v1/broadcasts/1/purchases", {"x": "가", "lines": [{"quantity": 2, "product_id": 1}]})
    assert a == b and len(a) == 64
    assert a != fingerprint("POST", "/api/v1/broadcasts/1/purchases", {"lines": [{"product_id": 1, "quantity": 3}],
                                                                       "x": "가"})
    assert a != fingerprint("POST", "/api/v1/broadcasts/2/purchases", {"lines": [{"product_id": 1, "quantity": 2}],
                                                                       "x": "가"})


@pytest.mark.parametrize(("header", "key"), [
    ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    ("abc123", "abc123"), (' "k" ', "k"), (None, None), ("", None), ('""', None), ("a b", None),
    ("x" * 256, None), ("키", None)])
def test_idempotency_key_header(header: str | None, key: str | None) -> None:
    assert parse_idempotency_key(header) == key


def test_what_a_request_that_finds_its_key_gets() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    fresh, stale = now - timedelta(seconds=5), now - timedelta(seconds=60)
    assert decide_replay(KeyState.DONE, "a", "b", fresh, now, 60) is Replay.MISMATCH
    assert decide_replay(KeyState.IN_PROGRESS, "a", "b", stale, now, 60) is Replay.MISMATCH
    assert decide_replay(KeyState.DONE, "a", "a", stale, now, 60) is Replay.REPLAY
    assert decide_replay(KeyState.IN_PROGRESS, "a", "a", fresh, now, 60) is Replay.IN_FLIGHT
    assert decide_replay(KeyState.IN_PROGRESS, "a", "a", stale, now, 60) is Replay.TAKE_OVER


# -- people and cells ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "masked"), [
    ("김민지", "김**"), ("김", "김*"), ("참기름 러버", "참****"), ("Alice", "A****"), ("  ", "*")])
def test_masked_names(name: str, masked: str) -> None:
    assert masked_name(name) == masked


@pytest.mark.parametrize(("raw", "phone"), [
    ("01012345678", "010-1234-5678"), ("010-1234-5678", "010-1234-5678"), ("010 1234 5678", "010-1234-5678"),
    ("011-123-4567", "011-123-4567")])
def test_mobile_numbers(raw: str, phone: str) -> None:
    assert normalize_phone(raw) == phone


@pytest.mark.parametrize("raw", ["02-123-4567", "0101234", "010-1234-56789", "phone"])
def test_not_mobile_numbers(raw: str) -> None:
    with pytest.raises(RuleError) as info:
        normalize_phone(raw)
    assert info.value.code == "invalid_phone"


def test_postal_codes() -> None:
    assert check_postal_code(" 04524 ") == "04524"
    for bad in ("4524", "045245", "0452a"):
        with pytest.raises(RuleError):
            check_postal_code(bad)


def test_cells_a_spreadsheet_would_run() -> None:
    assert spreadsheet_safe("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert spreadsheet_safe("+82") == "'+82" and spreadsheet_safe("@x") == "'@x" and spreadsheet_safe("-1") == "'-1"
    assert spreadsheet_safe("김민지") == "김민지" and spreadsheet_safe("") == ""


def test_sales_per_minute_fill_the_quiet_minutes() -> None:
    buckets = fill_minutes([(0, 1, 2, 19800), (3, 2, 2, 27800)], 4)
    assert [(b.minute, b.orders, b.revenue) for b in buckets] == [
        (0, 1, 19800), (1, 0, 0), (2, 0, 0), (3, 2, 27800), (4, 0, 0)]
    assert fill_minutes([], -1) == []


def test_the_second_of_the_stream() -> None:
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert stream_second(start + timedelta(minutes=12, seconds=5, milliseconds=900), start) == 725
    assert stream_second(start - timedelta(seconds=3), start) == 0
    assert stream_second(start, None) == 0
