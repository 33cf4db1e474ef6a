"""Pure schedule logic: which lifecycle moves are legal, what the scheduler must do next, a
series' occurrences with their exceptions, and scheduling conflicts.

No server, no database: plain functions on plain values, tested directly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from livecommerce.errors import N_

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
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class IllegalTransition(ValueError):
    def __init__(self, current: BroadcastState, wanted: BroadcastState) -> None:
        self.current = current
        self.wanted = wanted
        super().__init__(f"a broadcast that is {current.value} cannot become {wanted.value}")


def check_transition(current: BroadcastState, wanted: BroadcastState) -> None:
    if wanted not in LEGAL[current]:
        raise IllegalTransition(current, wanted)


def allowed_from(wanted: BroadcastState) -> list[BroadcastState]:
    """The states from which `wanted` may be reached (the WHERE of a conditional update)."""
    return [s for s, nxt in LEGAL.items() if wanted in nxt]


# -- recurrence ------------------------------------------------------------------------------

class ScheduleError(ValueError):
    """A schedule that cannot be: `message` (a catalogue msgid with `%(name)s` placeholders) says why,
    `code` names it for clients."""

    def __init__(self, code: str, message: str, **params: object) -> None:
        self.code = code
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)


def weekly_rrule(weekdays: Sequence[str], start_time: str) -> str:
    """The RRULE for a weekly show on `weekdays` (e.g. ["MO", "WE"]) at `start_time` ("19:00")."""
    hh, mm = (int(part) for part in start_time.split(":"))
    return f"FREQ=WEEKLY;BYDAY={','.join(weekdays)};BYHOUR={hh};BYMINUTE={mm};BYSECOND=0"


def parse_local(text: str) -> datetime:
    """A local wall-clock time written as `2026-11-30T19:00`."""
    try:
        moment = datetime.strptime(text, LOCAL_FORMAT)
    except ValueError:
        moment = None
    # Years far from now are refused as malformed: a zone's offset or a show's length could not be added
    # to them without leaving the calendar.
    if moment is None or not 1970 <= moment.year <= 9000:
        raise ScheduleError("invalid_time", N_("%(text)s is not a date and time like 2026-11-30T19:00."),
                            text=text) from None
    return moment


def format_local(moment: datetime) -> str:
    return moment.strftime(LOCAL_FORMAT)


def _frequency(body: str) -> str:
    """The FREQ part of an RRULE line (read from the text: the parsed rule keeps it private)."""
    for part in body.upper().split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "FREQ":
            return value.strip()
    return ""


def check_rrule(text: str, dtstart_local: datetime) -> rrule:
    """Parse an RFC 5545 RRULE (without DTSTART) and refuse what a weekly show cannot be."""
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "DTSTART" in body.upper() or "\n" in body:
        raise ScheduleError("invalid_rrule", N_("Give one RRULE line, such as FREQ=WEEKLY;BYDAY=MO,WE."))
    try:
        rule = rrulestr(body, dtstart=dtstart_local)
    except (ValueError, TypeError) as exc:
        raise ScheduleError("invalid_rrule", N_("This RRULE cannot be read: %(problem)s"), problem=str(exc)) from None
    if not isinstance(rule, rrule) or _frequency(body) not in ("DAILY", "WEEKLY", "MONTHLY"):
        raise ScheduleError("invalid_rrule", N_("A series repeats daily, weekly or monthly."))
    if rule.after(dtstart_local, inc=True) is None:
        raise ScheduleError("invalid_rrule", N_("This RRULE never happens after its start."))
    return rule


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time as UTC; refuses a time the zone skips or repeats."""
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != local:
        raise ScheduleError("nonexistent_time", N_("%(when)s does not exist in %(zone)s (the clocks skip it)."),
                            when=f"{local:%Y-%m-%d %H:%M}", zone=tz.key)
    other = local.replace(tzinfo=tz, fold=1)
    if other.utcoffset() != aware.utcoffset():
        raise ScheduleError("ambiguous_time", N_("%(when)s happens twice in %(zone)s: choose another time."),
                            when=f"{local:%Y-%m-%d %H:%M}", zone=tz.key)
    return aware.astimezone(UTC)


@dataclass(frozen=True)
class Occurrence:
    key: str  # the local start the rule makes, before any move: identifies the occurrence
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC
    moved: bool = False


@dataclass(frozen=True)
class Exception_:
    occurrence_local: str
    skip: bool
    new_start_local: str | None = None


def expand(rule_text: str, dtstart_local: datetime, tz: ZoneInfo, duration: timedelta,
           window_start: datetime, window_end: datetime, *, until_local: datetime | None = None,
           exceptions: Iterable[Exception_] = ()) -> list[Occurrence]:
    """Occurrences that start in [window_start, window_end), local wall-clock times in `tz`, with skips
    and moves applied. Local times the zone skips (a DST gap) are left out."""
    rule = check_rrule(rule_text, dtstart_local)
    by_key = {e.occurrence_local: e for e in exceptions}
    lo = window_start.astimezone(tz).replace(tzinfo=None) - timedelta(days=32)
    hi = window_end.astimezone(tz).replace(tzinfo=None) + timedelta(days=32)
    out: list[Occurrence] = []
    for local in rule.between(lo, hi, inc=True):
        if until_local is not None and local > until_local:
            break
        key = format_local(local)
        exc = by_key.get(key)
        if exc is not None and exc.skip:
            continue
        moved = exc is not None and exc.new_start_local is not None
        start_local = parse_local(exc.new_start_local) if moved and exc and exc.new_start_local else local
        try:
            start = local_to_utc(start_local, tz)
        except ScheduleError:
            continue
        if window_start <= start < window_end:
            out.append(Occurrence(key, start, start + duration, moved))
    out.sort(key=lambda o: o.starts_at)
    return out


# -- what the scheduler does -----------------------------------------------------------------

class Action(enum.StrEnum):
    OPEN_LOBBY = "open_lobby"
    GO_LIVE = "go_live"
    MARK_MISSED = "mark_missed"
    WARN = "warn"
    END = "end"


ACTION_STATE = {
    Action.OPEN_LOBBY: S.LOBBY, Action.GO_LIVE: S.LIVE, Action.MARK_MISSED: S.MISSED, Action.END: S.ENDED,
}


@dataclass(frozen=True)
class Timing:
    lobby: timedelta
    warn: timedelta
    grace: timedelta

    @classmethod
    def minutes(cls, lobby: int, warn: int, grace: int) -> Timing:
        return cls(timedelta(minutes=lobby), timedelta(minutes=warn), timedelta(minutes=grace))


@dataclass(frozen=True)
class Slot:
    """What the scheduler needs to know of one broadcast."""

    state: BroadcastState
    starts_at: datetime
    ends_at: datetime
    auto_live: bool = False
    warned: bool = False


@dataclass(frozen=True)
class Step:
    action: Action
    at: datetime  # the moment to record: when it happened, or should have (after a restart)


def step(slot: Slot, t: Timing, now: datetime) -> Step | None:
    """The one move due now, if any. Applied repeatedly, it catches up after any downtime:
    a show that should have ended while the server was down is ended at the time it should have ended."""
    if slot.state in (S.SCHEDULED, S.LOBBY):
        if now >= slot.starts_at:
            if slot.auto_live and now < slot.ends_at:
                return Step(Action.GO_LIVE, now)
            if slot.auto_live or now >= slot.starts_at + t.grace:
                return Step(Action.MARK_MISSED, min(now, slot.starts_at + t.grace))
        if slot.state is S.SCHEDULED and t.lobby > timedelta(0) and now >= slot.starts_at - t.lobby \
                and now < slot.starts_at + t.grace:
            return Step(Action.OPEN_LOBBY, now)
        return None
    if slot.state is S.LIVE:
        end_at = slot.ends_at + t.grace
        if now >= end_at:
            return Step(Action.END, end_at)
        if not slot.warned and t.warn > timedelta(0) and now >= slot.ends_at - t.warn:
            return Step(Action.WARN, now)
    return None


def wake_at(slot: Slot, t: Timing, now: datetime) -> datetime | None:
    """The next moment after `now` at which this broadcast will have something due."""
    candidates: list[datetime] = []
    if slot.state is S.SCHEDULED and t.lobby > timedelta(0):
        candidates.append(slot.starts_at - t.lobby)
    if slot.state in (S.SCHEDULED, S.LOBBY):
        if slot.auto_live:
            candidates.append(slot.starts_at)
        candidates.append(slot.starts_at + t.grace)
    if slot.state is S.LIVE:
        if not slot.warned and t.warn > timedelta(0):
            candidates.append(slot.ends_at - t.warn)
        candidates.append(slot.ends_at + t.grace)
    future = [c for c in candidates if c > now]
    return min(future) if future else None


def may_go_live(slot: Slot, t: Timing, now: datetime) -> bool:
    """A host may go live from the lobby's opening until the slot's end."""
    return slot.starts_at - t.lobby <= now < slot.ends_at


# -- conflicts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """A broadcast as far as conflicts are concerned."""

    id: int | None
    starts_at: datetime
    ends_at: datetime
    market_id: int
    channel: str
    host_ids: frozenset[int] = field(default_factory=frozenset)
    title: str = ""


@dataclass(frozen=True)
class Conflict:
    kind: str  # "host" or "channel"
    other_id: int | None
    other_title: str
    host_id: int | None = None


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def conflicts(candidate: Planned, others: Iterable[Planned]) -> list[Conflict]:
    """A host in two overlapping broadcasts, or two overlapping broadcasts on one channel of a market."""
    out: list[Conflict] = []
    for other in others:
        if other.id is not None and other.id == candidate.id:
            continue
        if not overlaps(candidate.starts_at, candidate.ends_at, other.starts_at, other.ends_at):
            continue
        if other.market_id == candidate.market_id and other.channel == candidate.channel:
            out.append(Conflict("channel", other.id, other.title))
        for host in sorted(candidate.host_ids & other.host_ids):
            out.append(Conflict("host", other.id, other.title, host))
    return out


def check_duration(minutes: int, max_minutes: int) -> None:
    if minutes <= 0:
        raise ScheduleError("invalid_duration", N_("A broadcast lasts at least a minute."))
    if minutes > max_minutes:
        raise ScheduleError("duration_too_long", N_("A broadcast lasts at most %(max)s minutes."), max=max_minutes)


def check_reservation(reserved: int, stock: int) -> None:
    """A line-up cannot set aside more stock than the product has."""
    if reserved < 0:
        raise ScheduleError("invalid_reservation", N_("Stock set aside cannot be negative."))
    if reserved > stock:
        raise ScheduleError("reservation_exceeds_stock",
                            N_("Only %(stock)s in stock: cannot set aside %(reserved)s for the show."),
                            stock=stock, reserved=reserved)
