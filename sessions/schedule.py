"""Pure schedule logic: which lifecycle moves are legal, and a series' occurrences.

No server, no database: plain functions on plain values, tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from .models import BroadcastState

S = BroadcastState

LEGAL: dict[BroadcastState, frozenset[BroadcastState]] = {
    S.SCHEDULED: frozenset({S.LOBBY, S.LIVE, S.CANCELLED, S.MISSED}),
    S.LOBBY: frozenset({S.LIVE, S.CANCELLED, S.MISSED}),
    S.LIVE: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
    S.MISSED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: BroadcastState, wanted: BroadcastState) -> None:
        self.current = current
        self.wanted = wanted
        super().__init__(f"a broadcast that is {current.value} cannot become {wanted.value}")


def check_transition(current: BroadcastState, wanted: BroadcastState) -> None:
    if wanted not in LEGAL[current]:
        raise IllegalTransition(current, wanted)


def weekly_rrule(weekdays: list[str], start_time: str) -> str:
    """The RRULE for a weekly show on `weekdays` (e.g. ["MO", "WE"]) at `start_time` ("19:00")."""
    hh, mm = (int(part) for part in start_time.split(":"))
    return f"FREQ=WEEKLY;BYDAY={','.join(weekdays)};BYHOUR={hh};BYMINUTE={mm};BYSECOND=0"


@dataclass(frozen=True)
class Occurrence:
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time as UTC; refuses a time the zone skips or repeats."""
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != local:
        raise ValueError(f"{local:%Y-%m-%d %H:%M} does not exist in {tz.key}")
    other = local.replace(tzinfo=tz, fold=1)
    if other.utcoffset() != aware.utcoffset():
        raise ValueError(f"{local:%Y-%m-%d %H:%M} is ambiguous in {tz.key}")
    return aware.astimezone(UTC)


def expand(rrule: str, dtstart_local: datetime, tz: ZoneInfo, duration: timedelta,
           window_start: datetime, window_end: datetime) -> list[Occurrence]:
    """Occurrences of `rrule` (local wall-clock times in `tz`) that start in [window_start, window_end)."""
    rule = rrulestr(rrule, dtstart=dtstart_local)
    lo = window_start.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    hi = window_end.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
    out: list[Occurrence] = []
    for local in rule.between(lo, hi, inc=True):
        start = local_to_utc(local, tz)
        if window_start <= start < window_end:
            out.append(Occurrence(start, start + duration))
    return out
