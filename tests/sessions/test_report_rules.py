"""The report's pure figures: minutes of the show, counts per minute, the change against the episode before,
the comparison and the chart's bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sessions.report import Change, Metric, bars, change, comparison, fill, per_minute, show_minutes

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_the_change_is_the_difference_and_its_share_of_what_it_was() -> None:
    assert change(120, 100) == Change(20, 20.0)
    assert change(90, 120) == Change(-30, -25.0)
    assert change(5, 0) == Change(5, None)  # nothing before: no percentage
    assert change(0, 0) == Change(0, None)
    assert change(30700, 29700) == Change(1000, 3.4)


def test_the_comparison_puts_each_figure_beside_the_previous_episodes() -> None:
    metrics = [Metric("orders", "Orders"), Metric("revenue", "Revenue", money=True),
               Metric("coupon_drops", "Coupon drops", optional=True)]
    rows = comparison(metrics, {"orders": 12, "revenue": 150000}, [{"orders": 10, "revenue": 200000}, {"orders": 3}])
    assert [(r.metric.key, r.value, r.previous) for r in rows] == [
        ("orders", 12, (10, 3)), ("revenue", 150000, (200000, 0)), ("coupon_drops", 0, (0, 0))]
    assert rows[0].change == Change(2, 20.0) and rows[1].change == Change(-50000, -25.0)
    assert [r.shown for r in rows] == [True, True, False]  # no coupon in any episode: the row is left out
    alone = comparison(metrics, {"orders": 1}, [])
    assert alone[0].previous == () and alone[0].change is None


def test_a_show_spans_its_real_hour_or_its_planned_one() -> None:
    hour = T0 + timedelta(hours=1)
    assert show_minutes(T0, T0 + timedelta(minutes=58, seconds=1), T0, hour) == 59
    assert show_minutes(None, None, T0, hour) == 60  # never ran: the planned hour
    assert show_minutes(T0 + timedelta(minutes=5), None, T0, hour) == 55  # still live: up to the planned end
    assert show_minutes(T0, T0, T0, hour) == 1
    assert show_minutes(T0, T0 + timedelta(days=3), T0, hour) == 24 * 60


def test_moments_are_counted_in_their_minute_of_the_show() -> None:
    moments = [T0 + timedelta(seconds=s) for s in (0, 59, 60, 185, -5)]
    assert per_minute(moments, T0) == {0: 2, 1: 1, 3: 1}
    assert fill({0: 2, 1: 1, 3: 1, 70: 9}, 5) == [2, 1, 0, 1, 0]  # after the show: left out


def test_bars_scale_to_the_best_minute() -> None:
    out = bars([0, 5, 10], width=300, height=100)
    assert [(b.minute, b.value, b.height, b.top) for b in out] == [(0, 0, 0.0, False), (1, 5, 50.0, False),
                                                                   (2, 10, 100.0, True)]
    assert [b.x for b in out] == [10.0, 110.0, 210.0] and out[1].y == 50.0 and out[0].width == 80.0
    assert bars([0, 0, 0]) == [] and bars([]) == []
