"""What tests share that is not a fixture: the `World` the `world` fixture builds, acting as someone
(CSRF, sign-in, cookies, a real socket client), and reading what the app wrote."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio
from aiohttp.test_utils import TestClient, TestServer
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


NS = "/live"
NAMED_EVENTS = ("counts", "mod:reported", "you:muted", "you:banned", "stock", "figures", "coupons", "coupons:figures",
                "giveaway:entries", "you:won", "you:entered")


# -- in the live room ------------------------------------------------------------------------------------

class Viewer:
    """A real socket.io client that keeps every room event it receives, in order — as the pages do:
    an event whose offset it has already seen (a live copy of something it recovered) is dropped."""

    def __init__(self, sio: socketio.AsyncClient) -> None:
        self.sio = sio
        self.events: list[dict[str, Any]] = []
        self.other: dict[str, list[Any]] = {}
        self.arrived = asyncio.Event()
        self.frames = 0
        self.last = -1
        self.dropped = 0
        sio.on("room", self._one, namespace=NS)
        sio.on("room:batch", self._many, namespace=NS)
        for name in NAMED_EVENTS:
            sio.on(name, self._named(name), namespace=NS)

    def _keep(self, env: dict[str, Any]) -> None:
        if env["o"] <= self.last:
            self.dropped += 1
            return
        self.last = env["o"]
        self.events.append(env)

    async def _one(self, env: dict[str, Any]) -> None:
        self.frames += 1
        self._keep(env)
        self.arrived.set()

    async def _many(self, envs: list[dict[str, Any]]) -> None:
        self.frames += 1
        for env in envs:
            self._keep(env)
        self.arrived.set()

    def _named(self, name: str):  # type: ignore[no-untyped-def]
        async def handler(data: Any) -> None:
            self.other.setdefault(name, []).append(data)
            self.arrived.set()

        return handler

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        ack = await self.sio.call(event, data, namespace=NS, timeout=10)
        assert isinstance(ack, dict)
        if event == "join" and ack.get("ok"):
            pos = ack["data"]["position"]["offset"]
            self.last = max(self.last, pos) if ack["data"]["recovered"] else pos
        return ack

    async def wait_for(self, predicate: Any, limit: float = 30.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), limit)

    def chat_texts(self) -> list[str]:
        return [e["d"]["text"] for e in self.events if e["t"] == "chat"]


async def viewer(server: TestServer, cookie: str | None = None) -> Viewer:
    return Viewer(await socket_for(f"http://127.0.0.1:{server.port}", cookie))


def browser_session(server: TestServer) -> aiohttp.ClientSession:
    # (a TestClient would close the server when it closes)
    return aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}", cookie_jar=aiohttp.CookieJar(unsafe=True))


def session_cookie(session: aiohttp.ClientSession) -> str:
    return next(c.value for c in session.cookie_jar if c.key == COOKIE)


async def signed_in(server: TestServer, username: str) -> Viewer:
    async with browser_session(server) as http:
        await sign_in(http, username)  # type: ignore[arg-type]
        return await viewer(server, session_cookie(http))


async def guest(server: TestServer, nickname: str) -> tuple[Viewer, int]:
    async with browser_session(server) as http:
        token = await csrf(http)  # type: ignore[arg-type]
        resp = await http.post("/api/v1/auth/guest", json={"nickname": nickname}, headers={"X-CSRF-Token": token})
        user_id = (await resp.json())["user"]["id"]
        return await viewer(server, session_cookie(http)), user_id
