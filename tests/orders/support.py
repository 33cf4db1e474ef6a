"""Buying as a test does it: another browser on the same server, an order body, a purchase over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer

from tests.support import World


def browser(server: TestServer) -> ClientSession:
    """Another person on the same server, with their own cookies (closing it leaves the server running)."""
    return ClientSession(base_url=str(server.make_url("/")), cookie_jar=CookieJar(unsafe=True))


def order(world: World, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lines": [{"product_id": world.products[0].id, "quantity": 2}], "name": "김민지", "phone": "010-1234-5678",
        "postal_code": "04524", "address1": "서울 중구 세종대로 110", "payment_method": "cod"}
    body.update(over)
    return body


def path(broadcast_id: int) -> str:
    return f"/api/v1/broadcasts/{broadcast_id}/purchases"


async def buy(client: TestClient | ClientSession, token: str, broadcast_id: int, body: dict[str, Any],
              key: str | None = "new") -> tuple[int, Any, Any]:
    headers = {"X-CSRF-Token": token}
    if key is not None:
        headers["Idempotency-Key"] = str(uuid.uuid4()) if key == "new" else key
    resp = await client.post(path(broadcast_id), json=body, headers=headers)
    return resp.status, await resp.json(), resp.headers
