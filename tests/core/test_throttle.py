"""Sign-in throttling: failures per account name and per address make the next attempt wait longer and
longer (429 with Retry-After and "try again in N seconds"), the same whether the account exists or not;
guests' joins are limited per address. In Redis when configured (the PostgreSQL runs), in memory otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from livecommerce.config import Config, SecurityConfig
from livecommerce.errors import TooManyAttempts
from livecommerce.throttle import Throttle, client_address, delay_after, wait_left
from tests.support import PASSWORD, World, csrf


def test_the_wait_grows_with_each_failure_up_to_a_cap() -> None:
    waits = [delay_after(n, free=3, base=1.0, cap=60.0) for n in range(10)]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60]
    assert delay_after(10_000, free=3, base=1.0, cap=900.0) == 900.0  # no overflow however many
    assert wait_left(5, last=100.0, now=101.5, free=3, base=1.0, cap=60.0) == 3  # 4 s after the last, 1.5 gone
    assert wait_left(5, last=100.0, now=104.0, free=3, base=1.0, cap=60.0) == 0


async def test_a_throttle_forgets_after_its_window_and_on_a_right_password() -> None:
    now = [1000.0]
    t = Throttle(SecurityConfig(login_free_attempts=2, login_address_free_attempts=50, login_window_minutes=1),
                 clock=lambda: now[0])
    for _ in range(2):  # free
        await t.check_sign_in("staff", "10.0.0.1")
        await t.failed_sign_in("staff", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        await t.check_sign_in("staff", "10.0.0.1")
    assert refused.value.retry_after == 1
    now[0] += 1
    await t.check_sign_in("staff", "10.0.0.1")
    await t.failed_sign_in("staff", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        await t.check_sign_in("Staff ", "10.0.0.9")  # the name, however written, from anywhere
    assert refused.value.retry_after == 2  # each failure doubles the wait
    await t.check_sign_in("host", "10.0.0.1")  # another name from that address is free
    now[0] += 2
    await t.check_sign_in("staff", "10.0.0.1")
    await t.signed_in("staff")
    await t.failed_sign_in("staff", "10.0.0.1")
    await t.check_sign_in("staff", "10.0.0.1")  # counting starts again
    now[0] += 61
    assert await t._read("account:staff") == (0, 0.0)  # forgotten after the window


@pytest.fixture
def config(config: Config) -> Config:
    return config.replace(security={"login_free_attempts": 3, "login_address_free_attempts": 6,
                                    "login_delay_seconds": 30.0, "guest_joins_per_minute": 3})


async def _login(client: TestClient, token: str, username: str, password: str) -> tuple[int, dict[str, Any], str]:
    resp = await client.post("/api/v1/auth/login", json={"username": username, "password": password},
                             headers={"X-CSRF-Token": token})
    return resp.status, await resp.json(), resp.headers.get("Retry-After", "")


async def test_wrong_passwords_make_the_next_attempt_wait_and_say_how_long(client: TestClient, world: World) -> None:
    token = await csrf(client)
    for _ in range(3):
        status, body, _ = await _login(client, token, "staff", "wrong password")
        assert status == 401
    status, body, retry = await _login(client, token, "staff", PASSWORD)  # even the right one waits
    assert status == 429
    assert body["error"]["code"] == "too_many_attempts"
    assert int(retry) == 30
    assert "30초" in body["error"]["message"]
    assert (await client.get("/api/v1/me")).status == 401
    # the login page says the same
    resp = await client.post("/login", data={"username": "staff", "password": PASSWORD, "csrf_token": token},
                             allow_redirects=False)
    assert resp.status == 429 and resp.headers["Retry-After"] == "30"
    assert "30초" in await resp.text()


async def test_the_answers_do_not_tell_whether_an_account_exists(client: TestClient, world: World) -> None:
    token = await csrf(client)
    seen = {}
    for name in ("staff", "nobody-here"):
        answers = []
        for _ in range(4):
            status, body, retry = await _login(client, token, name, "wrong password")
            answers.append((status, body, retry))
        seen[name] = answers
    assert seen["staff"] == seen["nobody-here"]
    assert [a[0] for a in seen["staff"]] == [401, 401, 401, 429]


async def test_one_address_trying_many_names_waits_too(client: TestClient, world: World) -> None:
    token = await csrf(client)
    for n in range(6):
        status, _, _ = await _login(client, token, f"someone{n}", "wrong password")
        assert status == 401
    status, _, retry = await _login(client, token, "viewer", PASSWORD)
    assert status == 429 and int(retry) >= 1


async def test_guest_joins_are_limited_per_address(client: TestClient, world: World) -> None:
    token = await csrf(client)
    statuses = []
    for n in range(4):
        resp = await client.post("/api/v1/auth/guest", json={"nickname": f"손님{n}"}, headers={"X-CSRF-Token": token})
        statuses.append(resp.status)
        if resp.status == 201:
            token = (await resp.json())["csrf_token"]
        else:
            assert resp.headers["Retry-After"]
            assert (await resp.json())["error"]["code"] == "too_many_attempts"
    assert statuses == [201, 201, 201, 429]


def test_behind_a_trusted_proxy_the_address_is_the_hop_it_saw() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("POST", "/login", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.7"})
    assert client_address(request, trust_proxy=True) == "203.0.113.7"
    assert client_address(request, trust_proxy=False) != "1.2.3.4"
