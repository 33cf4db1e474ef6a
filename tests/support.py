"""What tests share that is not a fixture: the `World` the `world` fixture builds, acting as someone
(CSRF, sign-in, cookies, a real socket client), and reading what the app wrote."""

from __future__ import annotations

from dataclasses import dataclass

import socketio
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.auth import COOKIE
from livecommerce.models import Market, Merchant, Product, User
from sessions.models import Broadcast

PASSWORD = "correct horse battery"


@dataclass
class World:
    """A small market: two stalls, three products, staff, two hosts, a viewer, a live broadcast
    hosted by `host` and a scheduled one hosted by `other_host`."""

    market: Market
    merchant: Merchant
    other_merchant: Merchant
    products: list[Product]
    staff: User
    host: User
    other_host: User
    viewer: User
    merchant_user: User
    live: Broadcast
    scheduled: Broadcast


async def fresh(db: AsyncSession) -> AsyncSession:
    """End the test's read snapshot and forget cached rows, so the next read sees what the app wrote."""
    await db.rollback()
    db.expire_all()
    return db


# -- acting as someone -------------------------------------------------------------------------

async def csrf(client: TestClient) -> str:
    resp = await client.get("/api/v1/auth/session")
    assert resp.status == 200
    return str((await resp.json())["csrf_token"])


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign `client` in through the API; returns the session's CSRF token."""
    token = await csrf(client)
    resp = await client.post("/api/v1/auth/login", json={"username": username, "password": password},
                             headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["csrf_token"])


def cookie_of(client: TestClient) -> str:
    for c in client.session.cookie_jar:
        if c.key == COOKIE:
            return c.value
    raise AssertionError("no session cookie")


async def socket_for(base_url: str, cookie: str | None = None, namespace: str = "/live",
                     headers: dict[str, str] | None = None) -> socketio.AsyncClient:
    """A real socket.io client over a real websocket."""
    sio = socketio.AsyncClient(reconnection=False)
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"{COOKIE}={cookie}"
    await sio.connect(base_url, headers=h, namespaces=[namespace], transports=["websocket"], wait_timeout=5)
    return sio
