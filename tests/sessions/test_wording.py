"""A series' repeat rule in words and a channel by its name, in Korean and in English."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from livecommerce import i18n
from sessions.wording import channel_name, rule_parts, series_in_words

MON_WED = "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=19;BYMINUTE=0;BYSECOND=0"


@pytest.fixture
def speak() -> Iterator[object]:
    catalogues = i18n.load_catalogues()

    def use(locale: str) -> None:
        i18n.activate(locale, catalogues[locale])

    yield use
    use("ko")


def test_a_weekly_series_in_korean_and_english(speak) -> None:  # type: ignore[no-untyped-def]
    speak("ko")
    assert series_in_words(MON_WED, "2026-11-30T19:00", 60) == "매주 월·수 19:00–20:00"
    speak("en")
    assert series_in_words(MON_WED, "2026-11-30T19:00", 60) == "Every Mon, Wed 19:00–20:00"
    # the days in the week's order, whatever the rule's; the time from the first show when the rule has none
    assert series_in_words("FREQ=WEEKLY;BYDAY=FR,TU,WE", "2026-12-01T18:30", 45) == "Every Tue, Wed, Fri 18:30–19:15"
    # no BYDAY: the first show's weekday (4 Dec 2026 is a Friday)
    assert series_in_words("RRULE:FREQ=WEEKLY;INTERVAL=2", "2026-12-04T20:30", 60) == \
        "Every 2 weeks on Fri 20:30–21:30"
    assert series_in_words("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", "2026-12-01T12:00", 30) == \
        "Every day 12:00–12:30"
    assert series_in_words("FREQ=DAILY", "2026-12-01T23:30", 60) == "Every day 23:30–00:30"  # past midnight
    assert series_in_words("FREQ=DAILY;INTERVAL=3", "2026-12-01T10:00", 60) == "Every 3 days 10:00–11:00"
    assert series_in_words("FREQ=MONTHLY", "2026-12-05T19:00", 60) == "Every month on day 5 19:00–20:00"
    speak("ko")
    assert series_in_words("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", "2026-12-05T10:00", 120) == "2주마다 토 10:00–12:00"
    assert series_in_words("FREQ=MONTHLY;INTERVAL=2", "2026-12-05T19:00", 60) == "2개월마다 5일 19:00–20:00"
    assert series_in_words("FREQ=DAILY", "2026-12-01T09:00", 60) == "매일 09:00–10:00"


def test_rules_words_cannot_say_simply() -> None:
    for rule in ("FREQ=WEEKLY;COUNT=3", "FREQ=WEEKLY;BYDAY=1MO", "FREQ=YEARLY", "nonsense", "FREQ=DAILY;INTERVAL=x",
                 "FREQ=WEEKLY;BYHOUR=19,20", "FREQ=WEEKLY;BYHOUR=25", "FREQ=DAILY;INTERVAL=2;BYDAY=MO", ""):
        assert series_in_words(rule, "2026-11-30T19:00", 60) is None, rule
    assert series_in_words(MON_WED, "not a time", 60) is None


def test_rule_parts() -> None:
    assert rule_parts("FREQ=WEEKLY;BYDAY=WE,MO;BYHOUR=19;BYMINUTE=0;BYSECOND=0", "2026-11-30T19:00") == {
        "freq": "weekly", "interval": 1, "days": ["MO", "WE"], "time": "19:00", "day_of_month": 30}
    assert rule_parts("FREQ=WEEKLY;INTERVAL=2", "2026-12-04T20:30") == {
        "freq": "weekly", "interval": 2, "days": ["FR"], "time": "20:30", "day_of_month": 4}


def test_channels_by_name(speak) -> None:  # type: ignore[no-untyped-def]
    speak("ko")
    assert channel_name("main") == "메인 채널" and channel_name("special") == "특집 채널"
    assert channel_name("market-2") == "market-2"
    speak("en")
    assert channel_name("main") == "Main channel" and channel_name("special") == "Special channel"
