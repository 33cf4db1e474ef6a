"""Korean by default, English with one switch; won and Seoul time as people read them; and a
catalogue with no message left untranslated."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient
from babel.messages.pofile import read_po

from livecommerce import i18n
from livecommerce.i18n_extract import extract
from tests.support import World, csrf


def test_won() -> None:
    assert i18n.format_won(12900, "ko") == "12,900원"
    assert i18n.format_won(0, "ko") == "0원"
    assert i18n.format_won(1234567, "en") == "₩1,234,567"


def test_times_are_shown_in_seoul() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    moment = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 19:00 in Seoul, a Monday
    assert i18n.format_time(moment, seoul, "medium", "ko") == "11월 30일 (월) 오후 7:00"
    assert i18n.format_time(moment, seoul, "medium", "en") == "Mon, Nov 30, 7:00\u202fPM" or \
        i18n.format_time(moment, seoul, "medium", "en") == "Mon, Nov 30, 7:00 PM"


def test_every_message_has_a_korean_translation() -> None:
    template = extract()
    ids = {m.id for m in template if m.id}
    assert len(ids) > 50  # the templates and the code were read
    with (i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        ko = read_po(fh, locale="ko")
    missing = sorted(str(mid) for mid in ids if not (ko.get(mid) and ko.get(mid).string))
    assert missing == [], f"untranslated: {missing[:10]}"
    # placeholders survive translation
    for message in ko:
        if message.id and isinstance(message.id, str) and "%(" in message.id:
            import re

            assert set(re.findall(r"%\((\w+)\)s", message.id)) == set(re.findall(r"%\((\w+)\)s", message.string))


async def test_pages_are_korean_by_default_and_english_on_request(client: TestClient, world: World) -> None:
    resp = await client.get(f"/live/{world.live.id}")
    assert resp.status == 200
    ko = await resp.text()
    assert '<html lang="ko"' in ko
    assert "9,900원" in ko and "라이브" in ko
    resp = await client.get(f"/live/{world.live.id}?lang=en")
    en = await resp.text()
    assert '<html lang="en"' in en
    assert "₩9,900" in en and "Pork dumplings" in en
    # the choice is remembered
    resp = await client.get("/")
    assert '<html lang="en"' in await resp.text()


async def test_api_errors_speak_the_chosen_language(client: TestClient, world: World) -> None:
    token = await csrf(client)
    resp = await client.post("/api/v1/auth/login", json={"username": "staff", "password": "nope"},
                             headers={"X-CSRF-Token": token})
    ko = (await resp.json())["error"]["message"]
    await client.get("/api/v1/auth/session?lang=en")
    token = await csrf(client)
    resp = await client.post("/api/v1/auth/login", json={"username": "staff", "password": "nope"},
                             headers={"X-CSRF-Token": token})
    en = (await resp.json())["error"]["message"]
    assert en == "Wrong username or password."
    assert ko != en and any("\uac00" <= ch <= "\ud7a3" for ch in ko)
