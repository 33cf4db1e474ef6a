"""Message catalogues (gettext through Babel), Korean by default, English with one switch,
and the formats people read: prices as won (`12,900원`), times in Asia/Seoul.

The catalogues are the `.po` files under `livecommerce/locale/`; they are compiled in memory
when the app starts, so there is no build step between editing a translation and seeing it.
"""

from __future__ import annotations

import gettext as _gettext
import io
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("ko", "en")

current_locale: ContextVar[str] = ContextVar("current_locale", default="ko")
_current_translations: ContextVar[_gettext.NullTranslations] = ContextVar(
    "current_translations", default=_gettext.NullTranslations())


def load_catalogues(locales: list[str] | tuple[str, ...] = LOCALES) -> dict[str, _gettext.NullTranslations]:
    out: dict[str, _gettext.NullTranslations] = {}
    for loc in locales:
        po = LOCALE_DIR / loc / "LC_MESSAGES" / "messages.po"
        if not po.exists():
            out[loc] = _gettext.NullTranslations()
            continue
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=loc)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        out[loc] = _gettext.GNUTranslations(buf)
    return out


def activate(locale: str, translations: _gettext.NullTranslations) -> None:
    """Make `locale` current for this task (one HTTP request or one socket event)."""
    current_locale.set(locale)
    _current_translations.set(translations)


def gettext(message: str, **params: Any) -> str:
    """Translate `message`, then fill its `%(name)s` placeholders. Text parameters are translated too,
    so a message can carry a label marked elsewhere (a broadcast state, say)."""
    tr = _current_translations.get()
    text = tr.gettext(message)
    if not params:
        return text
    return text % {k: tr.gettext(v) if isinstance(v, str) and v else v for k, v in params.items()}


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    text = _current_translations.get().ngettext(singular, plural, n)
    params.setdefault("num", n)
    return text % params


_ = gettext


def format_won(amount: int, locale: str | None = None) -> str:
    """Whole won as people write it: `12,900원` in Korean, `₩12,900` in English."""
    loc = locale or current_locale.get()
    if loc == "ko":
        return f"{amount:,}원"
    return f"₩{amount:,}"


def format_time(moment: datetime | None, tz: ZoneInfo, fmt: str = "medium", locale: str | None = None) -> str:
    """A UTC moment shown in the market's zone, e.g. `11월 30일 (월) 오후 7:00` / `Mon, Nov 30, 7:00 PM`."""
    if moment is None:
        return ""
    loc = locale or current_locale.get()
    local = moment.astimezone(tz)
    patterns = {
        "ko": {"medium": "M월 d일 (E) aaaa h:mm", "short": "aaaa h:mm", "date": "M월 d일 (E)",
               "long": "y년 M월 d일 (E) aaaa h:mm"},
        "en": {"medium": "EEE, MMM d, h:mm a", "short": "h:mm a", "date": "EEE, MMM d",
               "long": "EEE, MMM d, y, h:mm a"},
    }
    return format_datetime(local, patterns[loc].get(fmt, fmt), tzinfo=tz, locale=loc)


def pick(obj: Any, field: str, locale: str | None = None) -> str:
    """`obj.<field>_ko` or `obj.<field>_en`, whichever the current locale reads, falling back to Korean."""
    loc = locale or current_locale.get()
    value = getattr(obj, f"{field}_{loc}", "") or getattr(obj, f"{field}_ko", "")
    return str(value)
