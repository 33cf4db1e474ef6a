"""The public schedule as an iCalendar feed (RFC 5545) that viewers subscribe to in their calendar
app: one VEVENT per broadcast, times with their zone (a VTIMEZONE is included), the page's URL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from .models import Broadcast, BroadcastState

STATUS = {BroadcastState.CANCELLED: "CANCELLED", BroadcastState.MISSED: "CANCELLED"}


def feed(broadcasts: Sequence[Broadcast], *, base_url: str, tz: ZoneInfo, name: str, host: str,
         now: datetime, locale: str = "ko") -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//livecommerce//live schedule//KO")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", tz.key)
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    for b in broadcasts:
        ev = Event()
        ev.add("uid", f"broadcast-{b.id}@{host}")
        ev.add("dtstamp", now)
        ev.add("dtstart", b.starts_at.astimezone(tz))
        ev.add("dtend", b.ends_at.astimezone(tz))
        title = b.title_en if locale == "en" and b.title_en else b.title_ko
        ev.add("summary", title)
        url = f"{base_url}/live/{b.id}"
        ev.add("url", url)
        desc = b.description_en if locale == "en" and b.description_en else b.description_ko
        ev.add("description", f"{desc}\n{url}".strip())
        ev.add("status", STATUS.get(b.state, "CONFIRMED"))
        cal.add_component(ev)
    cal.add_missing_timezones()
    return cast(bytes, cal.to_ical())  # icalendar leaves `to_ical` unannotated; it answers bytes
