"""The pages people see: each renders for those allowed, shows what it is for, and escapes what
people typed."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.models import Product
from tests.support import World, csrf, sign_in


async def test_home_shows_the_live_and_coming_broadcasts(client: TestClient, world: World) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert f'href="/live/{world.live.id}"' in html
    assert "라이브" in html and "예정" in html
    assert 'data-until="' in html  # a countdown for the coming one


async def test_live_page_shows_the_lineup_at_live_prices(client: TestClient, world: World) -> None:
    resp = await client.get(f"/live/{world.live.id}")
    assert resp.status == 200
    html = await resp.text()
    assert "고기만두" in html and "9,900원" in html and "12,900원" in html
    assert "/static/vendor/socket.io/socket.io.min.js" in html
    assert f"/join?next=/live/{world.live.id}" in html  # a guest is invited to join
    assert "<script>" not in html.replace('<script type="application/json"', "")  # no inline code (CSP)
    assert (await client.get("/live/999999")).status == 404
    assert (await client.get("/live/abc")).status == 404


async def test_typed_text_is_escaped(client: TestClient, world: World, db: AsyncSession) -> None:
    p = await db.get(Product, world.products[0].id)
    assert p is not None
    p.name_ko = '<img src=x onerror="alert(1)">'
    await db.commit()
    html = await (await client.get(f"/live/{world.live.id}")).text()
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x" in html


async def test_host_console_is_for_the_broadcasts_hosts(client: TestClient, world: World) -> None:
    await sign_in(client, "host")
    resp = await client.get("/host")
    assert resp.status == 200
    assert f"/host/broadcasts/{world.live.id}" in await resp.text()
    resp = await client.get(f"/host/broadcasts/{world.live.id}")
    assert resp.status == 200
    assert "console.js" in await resp.text()
    resp = await client.get(f"/host/broadcasts/{world.scheduled.id}")  # someone else's
    assert resp.status == 403


async def test_staff_pages(client: TestClient, world: World) -> None:
    await sign_in(client, "staff")
    html = await (await client.get("/staff")).text()
    assert "라이브" in html and "예정" in html
    html = await (await client.get("/staff/catalogue")).text()
    assert "참기름" in html and "18,000원" in html and "merchant" in html


async def test_guest_joins_from_the_page_and_comes_back(client: TestClient, world: World) -> None:
    resp = await client.get(f"/join?next=/live/{world.live.id}")
    assert resp.status == 200
    token = await csrf(client)
    resp = await client.post("/join", data={"nickname": "", "csrf_token": token, "next": "/"},
                             allow_redirects=False)
    assert resp.status == 422
    resp = await client.post("/join", data={"nickname": "참기름러버", "csrf_token": token,
                                            "next": f"/live/{world.live.id}"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/live/{world.live.id}"
    me = await (await client.get("/api/v1/me")).json()
    assert me["display_name"] == "참기름러버" and me["is_guest"] is True


async def test_error_pages_are_pages(client: TestClient) -> None:
    resp = await client.get("/no-such-page")
    assert resp.status == 404
    assert "text/html" in resp.headers["Content-Type"]
    assert "<html" in await resp.text()
