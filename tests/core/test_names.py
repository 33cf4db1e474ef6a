"""Names that cannot mislead: guests' nicknames are NFKC-normalised, may not hide characters or turn text
around, must be valid text, and may not read as the name of staff, a host, a stall or another guest; in the
room, the role of whoever wrote a message comes from the server, so a guest cannot carry a host's mark."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from livecommerce.accounts import check_nickname, name_key
from livecommerce.errors import ValidationFailed
from tests.support import World, csrf, guest, signed_in


def test_nicknames_are_normalised() -> None:
    assert check_nickname("  ＭＩＮＪＩ  ") == "MINJI"  # full-width letters read as what they look like
    assert check_nickname("만두  러버") == "만두 러버"
    assert check_nickname("ｶﾞ") == "ガ"


@pytest.mark.parametrize("name", ["\u202eevil", "ad\u200bmin", "\u2066운영팀\u2069", "\u3164", "민지\u3164",
                                  "a\u00adb", "\ufeffname", "\U000e0041x"])
def test_invisible_and_direction_changing_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_nickname(name)
    assert refused.value.code == "invalid_nickname"
    assert "invisible" in refused.value.message


def test_text_that_was_not_valid_utf8_is_refused_clearly() -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_nickname("\ufffd\ufffd\ufffd")
    assert "UTF-8" in refused.value.message


def test_name_keys_see_through_spacing_case_and_width() -> None:
    assert name_key("운영 팀") == name_key("운영팀.") == name_key("운영팀")
    assert name_key("ＭＩＮＪＩ") == name_key("Minji") == "minji"
    assert name_key("쇼호스트 민지") != name_key("쇼호스트 민재")


async def _join(client: TestClient, nickname: str) -> tuple[int, dict[str, object]]:
    token = await csrf(client)
    resp = await client.post("/api/v1/auth/guest", json={"nickname": nickname}, headers={"X-CSRF-Token": token})
    body = await resp.json()
    client.session.cookie_jar.clear()
    return resp.status, body


@pytest.mark.parametrize("name", ["운영팀", "운영 팀", "호스트", "호 스 트!", "만두집", "Dumpling stall", "MERCHANT"])
async def test_a_guest_cannot_take_the_name_of_staff_a_host_or_a_stall(client: TestClient, world: World,
                                                                      name: str) -> None:
    status, body = await _join(client, name)
    assert status == 409
    assert body["error"]["code"] == "name_reserved"  # type: ignore[index]


async def test_two_guests_cannot_share_a_name(client: TestClient, world: World) -> None:
    assert (await _join(client, "만두러버"))[0] == 201
    status, body = await _join(client, "만두러버")
    assert status == 409 and body["error"]["code"] == "name_taken"  # type: ignore[index]
    assert (await _join(client, "ｍａｎｄｕ"))[0] == 201
    status, _ = await _join(client, "MANDU")  # the same name once normalised
    assert status == 409


async def test_the_join_form_refuses_invalid_utf8_with_a_clear_error(client: TestClient, world: World) -> None:
    token = await csrf(client)
    body = b"nickname=%FF%FE%FD&csrf_token=" + token.encode()
    resp = await client.post("/join", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"},
                             allow_redirects=False)
    assert resp.status == 422
    assert "UTF-8" in await resp.text()
    assert (await client.get("/api/v1/me")).status == 401


async def test_a_hosts_message_carries_a_mark_a_guest_cannot_get(server: TestServer, world: World) -> None:
    host = await signed_in(server, "host")
    fan, _ = await guest(server, "쇼호스트팬")
    try:
        for who in (host, fan):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"] is True
        assert (await host.call("chat:send", {"broadcast_id": world.live.id, "text": "안녕하세요"}))["ok"] is True
        assert (await fan.call("chat:send", {"broadcast_id": world.live.id, "text": "[호스트] 공지"}))["ok"] is True
        await fan.wait_for(lambda: len([e for e in fan.events if e["t"] == "chat"]) == 2)
        marks = {e["d"]["text"]: (e["d"]["name"], e["d"]["role"]) for e in fan.events if e["t"] == "chat"}
        assert marks["안녕하세요"] == ("호스트", "host")
        assert marks["[호스트] 공지"] == ("쇼호스트팬", "viewer")
    finally:
        await host.sio.disconnect()
        await fan.sio.disconnect()
