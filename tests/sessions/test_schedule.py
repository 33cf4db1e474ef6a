"""Pure schedule logic: legal lifecycle moves, what the scheduler does when, a series' occurrences
with skips and moves, and scheduling conflicts. No server, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sessions.models import BroadcastState as S
from sessions.schedule import (
    Action,
    Exception_,
    IllegalTransition,
    Planned,
    ScheduleError,
    Slot,
    Timing,
    check_reservation,
    check_rrule,
    check_transition,
    conflicts,
    expand,
    local_to_utc,
    may_go_live,
    step,
    wake_at,
    weekly_rrule,
)

SEOUL = ZoneInfo("Asia/Seoul")
T = Timing.minutes(lobby=15, warn=5, grace=3)
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Monday 19:00 in Seoul
END = START + timedelta(hours=1)


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


@pytest.mark.parametrize(("current", "wanted"), [
    (S.SCHEDULED, S.LOBBY), (S.SCHEDULED, S.LIVE), (S.LOBBY, S.LIVE), (S.LIVE, S.ENDED),
    (S.SCHEDULED, S.CANCELLED), (S.LOBBY, S.MISSED),
])
def test_legal_moves(current: S, wanted: S) -> None:
    check_transition(current, wanted)


@pytest.mark.parametrize(("current", "wanted"), [
    (S.SCHEDULED, S.ENDED), (S.CANCELLED, S.LIVE), (S.ENDED, S.LIVE), (S.LIVE, S.LOBBY), (S.MISSED, S.LIVE),
    (S.LIVE, S.CANCELLED),
])
def test_illegal_moves_are_refused(current: S, wanted: S) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, wanted)


# -- the scheduler's steps ----------------------------------------------------------------------

def test_an_hour_run_by_the_server() -> None:
    """A series with auto go-live: lobby 15 minutes before, live at the start, a warning 5 minutes
    before the end, the end at the hour plus the grace."""
    slot = Slot(S.SCHEDULED, START, END, auto_live=True)
    assert step(slot, T, at(-16)) is None
    assert wake_at(slot, T, at(-16)) == at(-15)
    assert step(slot, T, at(-15)) == _step(Action.OPEN_LOBBY, at(-15))
    lobby = Slot(S.LOBBY, START, END, auto_live=True)
    assert step(lobby, T, at(-1)) is None
    assert wake_at(lobby, T, at(-1)) == START
    assert step(lobby, T, START) == _step(Action.GO_LIVE, START)
    live = Slot(S.LIVE, START, END, auto_live=True)
    assert wake_at(live, T, at(1)) == at(55)
    assert step(live, T, at(54.9)) is None
    assert step(live, T, at(55)) == _step(Action.WARN, at(55))
    warned = Slot(S.LIVE, START, END, auto_live=True, warned=True)
    assert step(warned, T, at(59)) is None
    assert wake_at(warned, T, at(56)) == at(63)
    assert step(warned, T, at(63)) == _step(Action.END, at(63))


def _step(action: Action, moment: datetime):  # type: ignore[no-untyped-def]
    from sessions.schedule import Step

    return Step(action, moment)


def test_nobody_went_live_within_the_grace() -> None:
    lobby = Slot(S.LOBBY, START, END, auto_live=False)
    assert step(lobby, T, at(2)) is None  # the host still has time
    assert wake_at(lobby, T, at(2)) == at(3)
    assert step(lobby, T, at(3)) == _step(Action.MARK_MISSED, at(3))


def test_catching_up_after_downtime_records_when_it_should_have_happened() -> None:
    live = Slot(S.LIVE, START, END, warned=False)
    s = step(live, T, at(200))
    assert s is not None and s.action is Action.END and s.at == at(63)  # not at(200)
    never_opened = Slot(S.SCHEDULED, START, END, auto_live=False)
    s = step(never_opened, T, at(300))
    assert s is not None and s.action is Action.MARK_MISSED and s.at == at(3)
    auto_late = Slot(S.SCHEDULED, START, END, auto_live=True)
    s = step(auto_late, T, at(20))  # the server was down at the start but the hour is not over
    assert s is not None and s.action is Action.GO_LIVE and s.at == at(20)
    auto_over = Slot(S.SCHEDULED, START, END, auto_live=True)
    s = step(auto_over, T, at(61))
    assert s is not None and s.action is Action.MARK_MISSED


def test_finished_broadcasts_need_nothing() -> None:
    for state in (S.ENDED, S.MISSED, S.CANCELLED):
        slot = Slot(state, START, END, auto_live=True)
        assert step(slot, T, at(30)) is None
        assert wake_at(slot, T, at(-60)) is None


def test_hosts_may_go_live_from_the_lobby_until_the_end() -> None:
    slot = Slot(S.SCHEDULED, START, END)
    assert not may_go_live(slot, T, at(-16))
    assert may_go_live(slot, T, at(-15))
    assert may_go_live(slot, T, at(59))
    assert not may_go_live(slot, T, at(60))


# -- recurrence ---------------------------------------------------------------------------------

def test_monday_and_wednesday_at_seven_in_seoul() -> None:
    rule = weekly_rrule(["MO", "WE"], "19:00")
    start = datetime(2026, 11, 30, 19, 0)  # a Monday
    occ = expand(rule, start, SEOUL, timedelta(hours=1), datetime(2026, 11, 29, tzinfo=UTC),
                 datetime(2026, 12, 14, tzinfo=UTC))
    local = [o.starts_at.astimezone(SEOUL) for o in occ]
    assert [d.strftime("%a %d %H:%M") for d in local] == ["Mon 30 19:00", "Wed 02 19:00", "Mon 07 19:00",
                                                         "Wed 09 19:00"]
    assert occ[0].starts_at == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Seoul is UTC+9
    assert occ[0].key == "2026-11-30T19:00"
    assert all(o.ends_at - o.starts_at == timedelta(hours=1) for o in occ)


def test_skips_moves_and_the_end_of_a_series() -> None:
    rule = weekly_rrule(["MO", "WE"], "19:00")
    start = datetime(2026, 11, 30, 19, 0)
    exceptions = [Exception_("2026-12-02T19:00", skip=True),
                  Exception_("2026-12-07T19:00", skip=False, new_start_local="2026-12-08T20:30")]
    occ = expand(rule, start, SEOUL, timedelta(hours=1), datetime(2026, 11, 29, tzinfo=UTC),
                 datetime(2026, 12, 31, tzinfo=UTC), until_local=datetime(2026, 12, 10, 23, 59),
                 exceptions=exceptions)
    assert [(o.key, o.starts_at.astimezone(SEOUL).strftime("%m-%d %H:%M"), o.moved) for o in occ] == [
        ("2026-11-30T19:00", "11-30 19:00", False),
        ("2026-12-07T19:00", "12-08 20:30", True),
        ("2026-12-09T19:00", "12-09 19:00", False),
    ]


@pytest.mark.parametrize("bad", ["", "FREQ=SOMETIMES", "FREQ=MINUTELY", "BYDAY=MO",
                                 "DTSTART:20261130T190000\nRRULE:FREQ=WEEKLY", "FREQ=WEEKLY;COUNT=0x"])
def test_invalid_rrules_are_refused(bad: str) -> None:
    with pytest.raises(ScheduleError) as info:
        check_rrule(bad, datetime(2026, 11, 30, 19, 0))
    assert info.value.code == "invalid_rrule"


def test_local_time_that_does_not_exist_is_refused() -> None:
    ny = ZoneInfo("America/New_York")
    with pytest.raises(ScheduleError) as info:
        local_to_utc(datetime(2026, 3, 8, 2, 30), ny)  # clocks jump from 2:00 to 3:00
    assert info.value.code == "nonexistent_time"
    with pytest.raises(ScheduleError) as info:
        local_to_utc(datetime(2026, 11, 1, 1, 30), ny)  # 1:30 happens twice
    assert info.value.code == "ambiguous_time"
    assert local_to_utc(datetime(2026, 3, 8, 3, 30), ny) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


# -- conflicts ----------------------------------------------------------------------------------

def test_a_host_cannot_be_in_two_overlapping_broadcasts() -> None:
    a = Planned(1, START, END, market_id=1, channel="main", host_ids=frozenset({7}), title="A")
    b = Planned(None, at(30), at(90), market_id=1, channel="special", host_ids=frozenset({7, 8}))
    found = conflicts(b, [a])
    assert [(c.kind, c.other_id, c.host_id) for c in found] == [("host", 1, 7)]


def test_one_channel_carries_one_broadcast_at_a_time() -> None:
    a = Planned(1, START, END, market_id=1, channel="main", title="A")
    same = Planned(None, at(59), at(120), market_id=1, channel="main")
    other_market = Planned(None, at(30), at(90), market_id=2, channel="main")
    back_to_back = Planned(None, END, END + timedelta(hours=1), market_id=1, channel="main")
    assert [c.kind for c in conflicts(same, [a])] == ["channel"]
    assert conflicts(other_market, [a]) == []
    assert conflicts(back_to_back, [a]) == []
    assert conflicts(Planned(1, START, END, 1, "main"), [a]) == []  # a broadcast does not clash with itself


def test_a_lineup_cannot_set_aside_more_than_the_stock() -> None:
    check_reservation(5, 5)
    with pytest.raises(ScheduleError) as info:
        check_reservation(6, 5)
    assert info.value.code == "reservation_exceeds_stock"
    with pytest.raises(ScheduleError):
        check_reservation(-1, 5)
