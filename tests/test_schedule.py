"""Pure schedule logic: legal lifecycle moves and the expansion of a weekly series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sessions.models import BroadcastState as S
from sessions.schedule import IllegalTransition, check_transition, expand, local_to_utc, weekly_rrule

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(("current", "wanted"), [
    (S.SCHEDULED, S.LOBBY), (S.SCHEDULED, S.LIVE), (S.LOBBY, S.LIVE), (S.LIVE, S.ENDED),
    (S.SCHEDULED, S.CANCELLED), (S.LOBBY, S.MISSED),
])
def test_legal_moves(current: S, wanted: S) -> None:
    check_transition(current, wanted)


@pytest.mark.parametrize(("current", "wanted"), [
    (S.SCHEDULED, S.ENDED), (S.CANCELLED, S.LIVE), (S.ENDED, S.LIVE), (S.LIVE, S.LOBBY), (S.MISSED, S.LIVE),
])
def test_illegal_moves_are_refused(current: S, wanted: S) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, wanted)


def test_monday_and_wednesday_at_seven_in_seoul() -> None:
    rule = weekly_rrule(["MO", "WE"], "19:00")
    start = datetime(2026, 11, 30, 19, 0)  # a Monday
    occ = expand(rule, start, SEOUL, timedelta(hours=1), datetime(2026, 11, 29, tzinfo=UTC),
                 datetime(2026, 12, 14, tzinfo=UTC))
    local = [o.starts_at.astimezone(SEOUL) for o in occ]
    assert [d.strftime("%a %d %H:%M") for d in local] == ["Mon 30 19:00", "Wed 02 19:00", "Mon 07 19:00",
                                                         "Wed 09 19:00"]
    assert occ[0].starts_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Seoul is UTC+9
    assert all(o.ends_at - o.starts_at == timedelta(hours=1) for o in occ)


def test_local_time_that_does_not_exist_is_refused() -> None:
    ny = ZoneInfo("America/New_York")
    with pytest.raises(ValueError, match="does not exist"):
        local_to_utc(datetime(2026, 3, 8, 2, 30), ny)  # clocks jump from 2:00 to 3:00
    with pytest.raises(ValueError, match="ambiguous"):
        local_to_utc(datetime(2026, 11, 1, 1, 30), ny)  # 1:30 happens twice
    assert local_to_utc(datetime(2026, 3, 8, 3, 30), ny) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
