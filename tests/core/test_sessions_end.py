"""Sessions that end: signing out, signing out everywhere, staff ending an account's sessions and a new
password each stop the old cookie on the next request and the old socket at its next event — on this process
and on another one sharing the database (and Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp.test_utils import TestClient, TestServer

from livecommerce.app import create_app
from livecommerce.auth import COOKIE
from livecommerce.config import Config
from tests.core.test_caches import eventually
from tests.support import PASSWORD, World, browser_session, cookie_of, sign_in, socket_for


async def _me(client: TestClient, cookie: str) -> int:
    client.session.cookie_jar.clear()
    resp = await client.get("/api/v1/me", headers={"Cookie": f"{COOKIE}={cookie}"})
    return resp.status


async def _eventually_401(client: TestClient, cookie: str) -> None:
    """Another process forgets the account within moments (through Redis), or once its kept copy expires."""
    async def signed_out() -> bool:
        return await _me(client, cookie) == 401

    await eventually(signed_out, 30)


def _two_processes(config: Config) -> tuple[TestClient, TestClient]:
    # Without Redis the other process learns of the change when its kept account expires.
    cfg = config if config.redis.url else config.replace(security={"account_cache_seconds": 0.5})
    return (TestClient(TestServer(create_app(cfg), host="127.0.0.1")),
            TestClient(TestServer(create_app(cfg), host="127.0.0.1")))


class Told:
    """A real socket that remembers the `session:ended` it is sent."""

    def __init__(self, sio: socketio.AsyncClient) -> None:
        self.sio = sio
        self.ended: list[Any] = []
        self.arrived = asyncio.Event()
        sio.on("session:ended", self._ended, namespace="/live")

    async def _ended(self, data: Any) -> None:
        self.ended.append(data)
        self.arrived.set()

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        ack = await self.sio.call(event, data, namespace="/live", timeout=10)
        assert isinstance(ack, dict)
        return ack


async def _refused_and_told(told: Told, world: World, user_id: int) -> None:
    report = {"broadcast_id": world.live.id, "message_id": 999_999}

    async def refused() -> bool:
        return bool((await told.call("chat:report", report))["error"]["code"] == "unauthenticated")

    await eventually(refused, 30)
    await asyncio.wait_for(told.arrived.wait(), 10)
    assert told.ended == [{"user_id": user_id}]


async def test_after_sign_out_the_old_cookie_is_refused_here_and_on_another_process(config: Config,
                                                                                    world: World) -> None:
    a, b = _two_processes(config)
    await a.start_server()
    await b.start_server()
    try:
        token = await sign_in(a, "merchant")
        cookie = cookie_of(a)
        assert await _me(b, cookie) == 200  # the other process knows the session (and keeps the account)
        a.session.cookie_jar.update_cookies({COOKIE: cookie})
        resp = await a.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})
        assert resp.status == 200
        assert await _me(a, cookie) == 401
        await _eventually_401(b, cookie)
    finally:
        await a.close()
        await b.close()


async def test_sign_out_everywhere_ends_every_browser_and_tells_the_sockets(config: Config, world: World) -> None:
    a, b = _two_processes(config)
    await a.start_server()
    await b.start_server()
    told = None
    try:
        await sign_in(b, "viewer")  # another browser, on another process
        other = cookie_of(b)
        token = await sign_in(a, "viewer")
        here = cookie_of(a)
        told = Told(await socket_for(f"http://127.0.0.1:{b.port}", other))
        assert (await told.call("join", {"broadcast_id": world.live.id}))["ok"] is True
        resp = await a.post("/api/v1/auth/logout-everywhere", headers={"X-CSRF-Token": token})
        assert resp.status == 200 and (await resp.json())["user"] is None
        assert await _me(a, here) == 401
        await _eventually_401(b, other)
        await _refused_and_told(told, world, world.viewer.id)
    finally:
        if told is not None:
            await told.sio.disconnect()
        await a.close()
        await b.close()


async def test_staff_end_a_merchants_sessions(config: Config, world: World) -> None:
    a, b = _two_processes(config)
    await a.start_server()
    await b.start_server()
    told = None
    try:
        await sign_in(b, "merchant")
        merchant = cookie_of(b)
        assert (await b.get("/api/v1/merchant/lines")).status == 200
        told = Told(await socket_for(f"http://127.0.0.1:{b.port}", merchant))
        token = await sign_in(a, "staff")
        resp = await a.post(f"/api/v1/users/{world.merchant_user.id}/sessions/end", headers={"X-CSRF-Token": token})
        assert resp.status == 204
        await _eventually_401(b, merchant)
        await _refused_and_told(told, world, world.merchant_user.id)
        # staff are still signed in; an account that does not exist is a 404
        a.session.cookie_jar.clear()
        await sign_in(a, "staff")
        token = (await (await a.get("/api/v1/auth/session")).json())["csrf_token"]
        resp = await a.post("/api/v1/users/999999/sessions/end", headers={"X-CSRF-Token": token})
        assert resp.status == 404
        # and nobody else may do it
        b.session.cookie_jar.clear()
        viewer_token = await sign_in(b, "viewer")
        resp = await b.post(f"/api/v1/users/{world.staff.id}/sessions/end", headers={"X-CSRF-Token": viewer_token})
        assert resp.status == 403
    finally:
        if told is not None:
            await told.sio.disconnect()
        await a.close()
        await b.close()


async def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(server: TestServer, http: TestClient,
                                                                        world: World) -> None:
    async with browser_session(server) as other:
        await sign_in(other, "host")  # type: ignore[arg-type]
        token = await sign_in(http, "host")
        resp = await http.post("/api/v1/me/password", json={"current_password": "not it", "new_password": "x" * 12},
                               headers={"X-CSRF-Token": token})
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "wrong_password"
        assert (await other.get("/api/v1/me")).status == 200  # a wrong current password changes nothing
        resp = await http.post("/api/v1/me/password", json={"current_password": PASSWORD,
                                                            "new_password": "a brand new password"},
                               headers={"X-CSRF-Token": token})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["csrf_token"] != token
        assert (await http.get("/api/v1/me")).status == 200  # this browser got a new cookie
        assert (await other.get("/api/v1/me")).status == 401  # the other one is signed out
    http.session.cookie_jar.clear()
    await sign_in(http, "host", "a brand new password")


async def test_a_guest_has_no_password_to_change(client: TestClient, world: World) -> None:
    token = (await (await client.get("/api/v1/auth/session")).json())["csrf_token"]
    resp = await client.post("/api/v1/auth/guest", json={"nickname": "손님"}, headers={"X-CSRF-Token": token})
    token = (await resp.json())["csrf_token"]
    resp = await client.post("/api/v1/me/password", json={"current_password": "x", "new_password": "y" * 12},
                             headers={"X-CSRF-Token": token})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "guest_has_no_password"
