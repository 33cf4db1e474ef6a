"""Accounts and who may do what: sign-in, guests, CSRF and Origin checks, roles on every route,
and the session cookie's flags. Every refusal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.accounts import set_password
from livecommerce.auth import COOKIE
from livecommerce.config import Config
from livecommerce.keys import AppKeys
from livecommerce.models import Product, User
from sessions.models import Broadcast, BroadcastState
from tests.support import PASSWORD, World, cookie_of, csrf, fresh, sign_in


async def _user_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def test_wrong_password_is_refused_with_a_clear_message(client: TestClient, world: World) -> None:
    token = await csrf(client)
    for username in ("staff", "nobody"):
        resp = await client.post("/api/v1/auth/login", json={"username": username, "password": "wrong password"},
                                 headers={"X-CSRF-Token": token})
        assert resp.status == 401
        err = (await resp.json())["error"]
        assert err["code"] == "invalid_credentials"
        assert err["message"] == "아이디 또는 비밀번호가 올바르지 않습니다." or err["message"]
    resp = await client.get("/api/v1/me")
    assert resp.status == 401


async def test_sign_in_rotates_the_csrf_token_and_sign_out_ends_the_session(client: TestClient,
                                                                           world: World) -> None:
    before = await csrf(client)
    after = await sign_in(client, "host")
    assert after != before
    me = await client.get("/api/v1/me")
    assert (await me.json())["role"] == "host"
    # the pre-sign-in token no longer works
    resp = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": before})
    assert resp.status == 403
    resp = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": after})
    assert resp.status == 200
    assert (await client.get("/api/v1/me")).status == 401


@pytest.mark.parametrize("headers", [
    {},  # no token
    {"X-CSRF-Token": "forged-token"},
])
async def test_state_changes_need_the_csrf_token(client: TestClient, world: World, db: AsyncSession,
                                                 headers: dict[str, str]) -> None:
    await sign_in(client, "staff")
    resp = await client.post("/api/v1/users", json={"username": "newhost", "role": "host",
                                                    "password": "long enough pw"}, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf_failed"
    await fresh(db)
    assert await db.scalar(select(User).where(User.username == "newhost")) is None


async def test_csrf_without_any_session_cookie(client: TestClient, world: World) -> None:
    resp = await client.post("/api/v1/auth/login", json={"username": "staff", "password": PASSWORD},
                             headers={"X-CSRF-Token": "anything"})
    assert resp.status == 403


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_foreign_origin_is_refused_even_with_the_token(client: TestClient, world: World, db: AsyncSession,
                                                             origin: str) -> None:
    token = await sign_in(client, "staff")
    resp = await client.patch(f"/api/v1/products/{world.products[0].id}", json={"price": 1},
                              headers={"X-CSRF-Token": token, "Origin": origin})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "origin_refused"
    await fresh(db)
    product = await db.get(Product, world.products[0].id)
    assert product is not None and product.price == 12900


async def test_same_origin_and_configured_origins_pass(aiohttp_client: Any, config: Config, world: World) -> None:
    from livecommerce.app import create_app

    app = create_app(config.replace(server={"allowed_origins": ["https://shop.example"]}))
    client = await aiohttp_client(app)
    token = await sign_in(client, "staff")
    own = f"http://{client.host}:{client.port}"
    for origin in (own, "https://shop.example"):
        resp = await client.patch(f"/api/v1/products/{world.products[0].id}", json={"price": 12000},
                                  headers={"X-CSRF-Token": token, "Origin": origin})
        assert resp.status == 200, (origin, await resp.text())


async def test_form_posts_are_checked_too(client: TestClient, world: World) -> None:
    resp = await client.get("/login")
    assert resp.status == 200
    resp = await client.post("/login", data={"username": "staff", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 403
    assert "text/html" in resp.headers["Content-Type"]
    assert (await client.get("/api/v1/me")).status == 401


async def test_login_form_signs_in_and_goes_to_the_role_home(client: TestClient, world: World) -> None:
    token = await csrf(client)
    resp = await client.post("/login", data={"username": "host", "password": PASSWORD, "csrf_token": token},
                             allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/host"
    token = await csrf(client)
    resp = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    token = await csrf(client)
    resp = await client.post("/login", data={"username": "host", "password": "nope", "csrf_token": token,
                                             "next": "//evil.example/"}, allow_redirects=False)
    assert resp.status == 401
    assert "text/html" in resp.headers["Content-Type"]
    resp = await client.post("/login", data={"username": "host", "password": PASSWORD, "csrf_token": token,
                                             "next": "//evil.example/"}, allow_redirects=False)
    assert resp.headers["Location"] == "/host"  # never an open redirect


async def test_guest_join_with_a_nickname(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await csrf(client)
    before = await _user_count(db)
    for bad in ("", "   ", "x" * 21, "<script>"):
        resp = await client.post("/api/v1/auth/guest", json={"nickname": bad}, headers={"X-CSRF-Token": token})
        assert resp.status == 422, bad
    await fresh(db)
    assert await _user_count(db) == before
    resp = await client.post("/api/v1/auth/guest", json={"nickname": "만두러버"}, headers={"X-CSRF-Token": token})
    assert resp.status == 201
    user = (await resp.json())["user"]
    assert user["role"] == "viewer" and user["is_guest"] and user["display_name"] == "만두러버"


ROLE_CASES = [
    # (who, method, path, body, expected status)
    (None, "get", "/api/v1/me", None, 401),
    (None, "post", "/api/v1/users", {"username": "x1", "role": "viewer"}, 401),
    ("viewer", "post", "/api/v1/users", {"username": "x2", "role": "staff", "password": "long enough pw"}, 403),
    ("host", "post", "/api/v1/users", {"username": "x3", "role": "staff", "password": "long enough pw"}, 403),
    ("merchant", "post", "/api/v1/products", {"merchant_id": 1, "name_ko": "a", "name_en": "a", "price": 1}, 403),
    ("viewer", "patch", "/api/v1/products/1", {"price": 1}, 403),
    ("viewer", "post", "/api/v1/broadcasts/1/go-live", None, 403),
    ("merchant", "post", "/api/v1/broadcasts/1/end", None, 403),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "status"), ROLE_CASES)
async def test_roles_are_checked_on_every_api_route(client: TestClient, world: World, db: AsyncSession,
                                                    who: str | None, method: str, path: str, body: Any,
                                                    status: int) -> None:
    token = await sign_in(client, who) if who else await csrf(client)
    users, products = await _user_count(db), await db.scalar(select(func.sum(Product.price)))
    kwargs: dict[str, Any] = {"headers": {"X-CSRF-Token": token}}
    if body is not None:
        kwargs["json"] = body
    resp = await getattr(client, method)(path, **kwargs)
    assert resp.status == status
    err = (await resp.json())["error"]
    assert err["code"] == ("unauthenticated" if status == 401 else "forbidden")
    assert err["message"]
    await fresh(db)
    assert await _user_count(db) == users
    assert await db.scalar(select(func.sum(Product.price))) == products


@pytest.mark.parametrize(("who", "path", "status"), [
    (None, "/staff", 401), ("viewer", "/staff", 403), ("host", "/staff", 403), (None, "/host", 401),
    ("viewer", "/host", 403), ("merchant", "/staff/catalogue", 403),
])
async def test_roles_are_checked_on_pages(client: TestClient, world: World, who: str | None, path: str,
                                          status: int) -> None:
    if who:
        await sign_in(client, who)
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == status
    assert "text/html" in resp.headers["Content-Type"]


async def test_staff_creates_accounts(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    h = {"X-CSRF-Token": token}
    resp = await client.post("/api/v1/users", json={"username": "minji", "role": "host",
                                                    "password": "a long password"}, headers=h)
    assert resp.status == 201
    assert (await resp.json())["role"] == "host"
    resp = await client.post("/api/v1/users", json={"username": "minji", "role": "host",
                                                    "password": "a long password"}, headers=h)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "username_taken"
    resp = await client.post("/api/v1/users", json={"username": "short", "role": "host", "password": "abc"},
                             headers=h)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "weak_password"
    resp = await client.post("/api/v1/users", json={"username": "Bad Name!", "role": "viewer"}, headers=h)
    assert resp.status == 422
    resp = await client.post("/api/v1/users", json={"username": "m1", "role": "merchant",
                                                    "password": "a long password"}, headers=h)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "merchant_required"


async def test_session_cookie_flags(client: TestClient, world: World) -> None:
    resp = await client.get("/api/v1/auth/session")
    raw = resp.headers["Set-Cookie"]
    assert raw.startswith(f"{COOKIE}=")
    assert "HttpOnly" in raw and "SameSite=Lax" in raw and "Secure" not in raw  # plain http in tests


async def test_secure_cookie_behind_tls(aiohttp_client: Any, config: Config) -> None:
    from livecommerce.app import create_app

    client = await aiohttp_client(create_app(config.replace(server={"trust_proxy": True})))
    resp = await client.get("/api/v1/auth/session", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in resp.headers["Set-Cookie"]
    client2 = await aiohttp_client(create_app(config.replace(security={"cookie_secure": "always"})))
    resp = await client2.get("/api/v1/auth/session")
    assert "Secure" in resp.headers["Set-Cookie"]


async def test_tampered_cookie_is_anonymous(client: TestClient, world: World) -> None:
    await sign_in(client, "staff")
    value = cookie_of(client)
    client.session.cookie_jar.clear()
    forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    resp = await client.get("/api/v1/me", headers={"Cookie": f"{COOKIE}={forged}"})
    assert resp.status == 401


async def test_password_change_signs_out_other_browsers(client: TestClient, world: World,
                                                         app: web.Application) -> None:
    await sign_in(client, "host")
    assert (await client.get("/api/v1/me")).status == 200
    async with app[AppKeys.db].begin() as db:  # changed by the app, which then forgets the kept account
        user = await db.get(User, world.host.id)
        assert user is not None
        await set_password(db, user, "a brand new password")
    assert (await client.get("/api/v1/me")).status == 401


async def test_host_moves_only_their_own_broadcast(client: TestClient, world: World, db: AsyncSession,
                                                   app: web.Application) -> None:
    token = await sign_in(client, "host")
    h = {"X-CSRF-Token": token}
    # not theirs
    resp = await client.post(f"/api/v1/broadcasts/{world.scheduled.id}/go-live", headers=h)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "not_your_broadcast"
    # theirs, but going live again is not a legal move
    resp = await client.post(f"/api/v1/broadcasts/{world.live.id}/go-live", headers=h)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "illegal_transition"
    resp = await client.post(f"/api/v1/broadcasts/{world.live.id}/end", headers=h)
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "ended"
    await fresh(db)
    b = await db.get(Broadcast, world.live.id)
    assert b is not None and b.state is BroadcastState.ENDED and b.ended_at is not None
    scheduled = await db.get(Broadcast, world.scheduled.id)
    assert scheduled is not None and scheduled.state is BroadcastState.SCHEDULED
    resp = await client.post("/api/v1/broadcasts/999999/end", headers=h)
    assert resp.status == 404
