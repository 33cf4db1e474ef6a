"""Codes as people read them: a series' repeat rule in words ("매주 월·수 19:00–20:00", "Every Mon, Wed
19:00–20:00") and a broadcast's channel by its name. Pure functions over the rule's text; the words come
from the active language's catalogue."""

from __future__ import annotations

from datetime import date
from typing import Any

from livecommerce import i18n
from livecommerce.errors import N_

__all__ = ["CHANNELS", "WEEKDAYS", "channel_name", "day_names", "rule_parts", "series_in_words"]

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = {"MO": N_("Mon"), "TU": N_("Tue"), "WE": N_("Wed"), "TH": N_("Thu"), "FR": N_("Fri"),
             "SA": N_("Sat"), "SU": N_("Sun")}

# The channels a market runs its shows on, by the code stored with each broadcast. A code not listed
# here (one set through the API) is shown as it is.
CHANNELS = {"main": N_("Main channel"), "special": N_("Special channel"), "second": N_("Second channel")}

_KEYS = {"FREQ", "INTERVAL", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND", "WKST"}


def rule_parts(rrule: str, dtstart_local: str) -> dict[str, Any] | None:
    """What it takes to say a rule in words (frequency, interval, days, start time, day of month), or
    None when it is more than a simple daily, weekly or monthly rule."""
    try:
        return _parts(rrule, dtstart_local)
    except (ValueError, IndexError):
        return None


def _parts(rrule: str, dtstart_local: str) -> dict[str, Any] | None:
    parts: dict[str, str] = {}
    for piece in rrule.strip().removeprefix("RRULE:").split(";"):
        key, sep, value = piece.partition("=")
        if not sep:
            return None
        parts[key.strip().upper()] = value.strip().upper()
    if set(parts) - _KEYS:
        return None
    freq = parts.get("FREQ", "")
    if freq not in ("DAILY", "WEEKLY", "MONTHLY"):
        return None
    raw_interval = parts.get("INTERVAL", "1")
    interval = int(raw_interval) if raw_interval.isdecimal() else 0
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    if interval < 1 or any(d not in WEEKDAYS for d in days) or (freq == "MONTHLY" and days):
        return None
    if len(dtstart_local) < 16 or dtstart_local[10] != "T":
        return None
    hh, mm = int(dtstart_local[11:13]), int(dtstart_local[14:16])
    for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        if key in parts and not parts[key].isdecimal():
            return None  # a list of hours or minutes: more than one start a day
    if "BYHOUR" in parts:
        hh = int(parts["BYHOUR"])
    if "BYMINUTE" in parts:
        mm = int(parts["BYMINUTE"])
    if hh > 23 or mm > 59:
        return None
    if freq == "WEEKLY" and not days:
        days = [WEEKDAYS[date.fromisoformat(dtstart_local[:10]).weekday()]]
    return {"freq": freq.lower(), "interval": interval, "days": sorted(set(days), key=WEEKDAYS.index),
            "time": f"{hh:02d}:{mm:02d}", "day_of_month": int(dtstart_local[8:10])}


def day_names(days: list[str]) -> str:
    """Weekday codes as a short list: "월·수" in Korean, "Mon, Wed" in English."""
    names = [i18n.gettext(DAY_NAMES[d]) for d in days]
    out = names[0] if names else ""
    for name in names[1:]:
        out = i18n.gettext("%(first)s, %(next)s", first=out, next=name)
    return out


def _span(start: str, minutes: int) -> str:
    hh, mm = int(start[:2]), int(start[3:5])
    end = (hh * 60 + mm + max(0, minutes)) % (24 * 60)
    return f"{start}–{end // 60:02d}:{end % 60:02d}"


def series_in_words(rrule: str, dtstart_local: str, duration_minutes: int) -> str | None:
    """A series' repeat rule, start and length in words ("매주 월·수 19:00–20:00"), or None when the rule
    says more than words can simply say (then the rule itself is shown)."""
    p = rule_parts(rrule, dtstart_local)
    if p is None:
        return None
    time = _span(p["time"], duration_minutes)
    days, n = day_names(p["days"]), p["interval"]
    if p["freq"] == "weekly" or (p["freq"] == "daily" and p["days"] and n == 1):
        if n == 1 and p["days"] == list(WEEKDAYS):
            return i18n.gettext("Every day %(time)s", time=time)
        if n == 1:
            return i18n.gettext("Every %(days)s %(time)s", days=days, time=time)
        return i18n.gettext("Every %(n)s weeks on %(days)s %(time)s", n=n, days=days, time=time)
    if p["freq"] == "daily":
        if p["days"]:
            return None  # some weekdays of every n-th day: no simple words for it
        if n == 1:
            return i18n.gettext("Every day %(time)s", time=time)
        return i18n.gettext("Every %(n)s days %(time)s", n=n, time=time)
    if n == 1:
        return i18n.gettext("Every month on day %(day)s %(time)s", day=p["day_of_month"], time=time)
    return i18n.gettext("Every %(n)s months on day %(day)s %(time)s", n=n, day=p["day_of_month"], time=time)


def channel_name(code: str) -> str:
    """A channel's name in the active language; a code without a name, as it is."""
    name = CHANNELS.get(code)
    return i18n.gettext(name) if name else code
