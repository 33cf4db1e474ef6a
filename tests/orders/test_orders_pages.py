"""The order pages: the buy sheet, a viewer's orders, a stall's lines, the staff's orders with the
CSV export that Excel opens, and the host's figures; each only for those allowed."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import OrderStatus, Purchase, PurchaseLine
from orders.settings import seed_demo_order_settings
from sessions.models import Broadcast, BroadcastState
from tests.support import World, csrf, fresh, sign_in

from .support import browser, buy, order


def no_inline_script(html: str) -> bool:
    return re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))[^>]*>", html) is None


async def test_the_buy_sheet_page(client: TestClient, world: World, db: AsyncSession) -> None:
    html = await (await client.get(f"/live/{world.live.id}/buy")).text()
    assert 'id="buy-sheet"' in html and f'href="/join?next=/live/{world.live.id}"' in html  # join first
    assert 'id="buy-form"' not in html
    await sign_in(client, "viewer")
    resp = await client.get(f"/live/{world.live.id}/buy")
    assert resp.status == 200
    html = await resp.text()
    assert 'data-mode="page"' in html and 'id="buy-form"' in html
    for p in world.products[:2]:
        assert f'id="buy-qty-{p.id}"' in html and f'data-for="{p.id}"' in html
    assert 'data-price="9900"' in html and 'data-usual="12900"' in html and "9,900원" in html
    assert 'id="buy-i18n"' in html and "/static/js/buy.js" in html and no_inline_script(html)
    assert 'id="buy-closed" hidden' in html
    b = await db.get(Broadcast, world.live.id)
    assert b is not None
    b.state = BroadcastState.ENDED
    await db.commit()
    html = await (await client.get(f"/live/{world.live.id}/buy")).text()
    assert 'data-state="ended"' in html, html[:3000]
    assert 'id="buy-closed" hidden' not in html and "라이브 중일 때만" in html
    assert (await client.get("/live/999999/buy")).status == 404
    for js in ("buy.js", "figures.js"):
        assert (await client.get(f"/static/js/{js}")).status == 200


async def test_my_orders_page_and_cancelling(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201
    html = await (await client.get("/orders")).text()
    assert f'id="order-{body["id"]}"' in html and "고기만두" in html and "19,800원" in html
    assert f'action="/orders/{body["id"]}/cancel"' in html
    resp = await client.post(f"/orders/{body['id']}/cancel", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/orders?done=cancelled"
    html = await (await client.get("/orders?done=cancelled")).text()
    assert "notice-success" in html and f'action="/orders/{body["id"]}/cancel"' not in html
    resp = await client.post(f"/orders/{body['id']}/cancel", data={"csrf_token": token})
    assert resp.status == 409 and "notice-error" in await resp.text()
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.status is OrderStatus.CANCELLED
    resp = await client.post(f"/orders/{body['id']}/cancel", data={})
    assert resp.status == 403  # no CSRF token
    await client.post("/logout", data={"csrf_token": token})
    assert (await client.get("/orders")).status == 401


async def _two_stall_order(server: TestServer, world: World) -> dict[str, Any]:
    viewer = browser(server)
    try:
        token = await sign_in(viewer, "viewer")
        status, body, _ = await buy(viewer, token, world.live.id, order(world, name="=HYPERLINK(\"x\")", lines=[
            {"product_id": world.products[0].id, "quantity": 2}, {"product_id": world.products[1].id, "quantity": 1}]))
        assert status == 201, body
        return body
    finally:
        await viewer.close()


async def test_a_stall_sees_and_moves_only_its_own_lines(server: TestServer, http: TestClient, world: World,
                                                        db: AsyncSession) -> None:
    body = await _two_stall_order(server, world)
    mine, theirs = body["lines"][0]["id"], body["lines"][1]["id"]
    token = await sign_in(http, "merchant")
    html = await (await http.get("/merchant/orders")).text()
    assert f'id="line-{mine}"' in html and f'id="line-{theirs}"' not in html
    assert "고기만두" in html and "참기름" not in html
    assert "서울 중구 세종대로 110" in html and 'name="status" value="delivered"' not in html
    resp = await http.post(f"/merchant/orders/lines/{mine}", data={"csrf_token": token, "status": "packed",
                                                                   "back": "/merchant/orders?status=placed"},
                           allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/merchant/orders?status=placed"
    resp = await http.post(f"/merchant/orders/lines/{theirs}", data={"csrf_token": token, "status": "packed"})
    assert resp.status == 403 and "notice-error" in await resp.text()
    resp = await http.post(f"/merchant/orders/lines/{mine}", data={"csrf_token": token, "status": "refunded"})
    assert resp.status == 422
    await fresh(db)
    assert (await db.get(PurchaseLine, mine)).status is OrderStatus.PACKED  # type: ignore[union-attr]
    assert (await db.get(PurchaseLine, theirs)).status is OrderStatus.PLACED  # type: ignore[union-attr]
    html = await (await http.get("/merchant/orders?status=packed")).text()
    assert f'id="line-{mine}"' in html and 'name="status" value="delivered"' in html
    await sign_in(http, "viewer")
    assert (await http.get("/merchant/orders")).status == 403


async def test_staff_orders_filters_actions_and_csv(server: TestServer, http: TestClient, world: World,
                                                   db: AsyncSession) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await db.commit()
    body = await _two_stall_order(server, world)
    viewer = browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        status, transfer, _ = await buy(viewer, tv, world.live.id, order(world, payment_method="bank_transfer"))
        assert status == 201
    finally:
        await viewer.close()
    token = await sign_in(http, "staff")
    html = await (await http.get("/staff/orders")).text()
    assert f'id="order-{body["id"]}"' in html and f'id="order-{transfer["id"]}"' in html
    assert f'action="/staff/orders/{transfer["id"]}/paid"' in html
    assert f'action="/staff/orders/{body["id"]}/paid"' not in html  # pay on delivery
    html = await (await http.get(f"/staff/orders?merchant_id={world.other_merchant.id}")).text()
    assert f'id="order-{body["id"]}"' in html and f'id="order-{transfer["id"]}"' not in html
    resp = await http.post(f"/staff/orders/{transfer['id']}/paid",
                           data={"csrf_token": token, "back": "/staff/orders?status=paid"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/staff/orders?status=paid"
    html = await (await http.get("/staff/orders?status=paid")).text()
    assert f'id="order-{transfer["id"]}"' in html and f'id="order-{body["id"]}"' not in html
    html = await (await http.get(f"/staff/orders?broadcast_id={world.scheduled.id}")).text()
    assert 'id="staff-orders"' not in html
    resp = await http.post(f"/staff/orders/{transfer['id']}/cancel", data={"csrf_token": token},
                           allow_redirects=False)
    assert resp.status == 303
    assert (await (await fresh(db)).get(Purchase, transfer["id"])).status is OrderStatus.REFUNDED  # type: ignore[union-attr]

    resp = await http.get("/staff/orders.csv")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM that tells Excel it is UTF-8
    text = raw.decode("utf-8-sig")
    assert text.count("\r\n") == text.count("\n") == 4  # a header and three lines, CRLF each
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "주문번호" and len(rows) == 4
    lines = {(int(r[0]), r[9]) for r in rows[1:]}
    assert lines == {(body["id"], "고기만두"), (body["id"], "참기름"), (transfer["id"], "고기만두")}
    by_order = [r for r in rows[1:] if int(r[0]) == body["id"]]
    assert {r[5] for r in by_order} == {"'=HYPERLINK(\"x\")"}  # not a formula in Excel
    assert {r[12] for r in by_order} == {"9900", "13900"} and by_order[0][7] == "04524"
    only = list(csv.reader(io.StringIO((await (await http.get(
        f"/staff/orders.csv?merchant_id={world.other_merchant.id}")).read()).decode("utf-8-sig"))))
    assert [(int(r[0]), r[9]) for r in only[1:]] == [(body["id"], "참기름")]
    await sign_in(http, "merchant")
    assert (await http.get("/staff/orders.csv")).status == 403
    assert (await http.get("/staff/orders")).status == 403


async def test_the_figures_page(client: TestClient, world: World) -> None:
    token = await sign_in(client, "viewer")
    await buy(client, token, world.live.id, order(world))
    assert (await client.get(f"/host/broadcasts/{world.live.id}/figures")).status == 403
    await sign_in(client, "host")
    resp = await client.get(f"/host/broadcasts/{world.live.id}/figures")
    assert resp.status == 200
    html = await resp.text()
    assert 'id="figures-chart"' in html and "/static/js/figures.js" in html and 'id="figures-data"' in html
    assert 'id="fig-orders">1<' in html and "19,800원" in html and no_inline_script(html)
    assert (await client.get(f"/host/broadcasts/{world.scheduled.id}/figures")).status == 403
    await sign_in(client, "staff")
    assert (await client.get(f"/host/broadcasts/{world.scheduled.id}/figures")).status == 200
    assert await csrf(client)


async def test_a_stall_packs_and_hands_over_an_order_in_one_tap(server: TestServer, http: TestClient, world: World,
                                                               db: AsyncSession) -> None:
    viewer = browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        status, mine, _ = await buy(viewer, tv, world.live.id, order(world, note="문 앞에 두세요"))
        assert status == 201, mine
        status, theirs, _ = await buy(viewer, tv, world.live.id, order(world, lines=[
            {"product_id": world.products[1].id, "quantity": 1}]))
        assert status == 201, theirs
    finally:
        await viewer.close()
    token = await sign_in(http, "merchant")
    html = await (await http.get("/merchant/orders")).text()
    # the menu and the title name the page the same way; orders are cards, not a squeezed table
    assert "<title>우리 가게 주문 · livecommerce</title>" in html
    assert re.search(r'href="/merchant/orders" aria-current="page">우리 가게 주문<', html)
    assert "<table" not in html
    assert f'id="order-{mine["id"]}"' in html and f'id="order-{theirs["id"]}"' not in html
    assert "고기만두" in html and "× 2" in html and "문 앞에 두세요" in html and 'href="tel:010-1234-5678"' in html
    assert f'action="/merchant/orders/{mine["id"]}"' in html and 'name="status" value="delivered"' not in html

    async def line_statuses() -> list[OrderStatus]:
        await fresh(db)
        rows = await db.scalars(select(PurchaseLine).where(PurchaseLine.purchase_id.in_([mine["id"], theirs["id"]]))
                                .order_by(PurchaseLine.purchase_id, PurchaseLine.id))
        return [li.status for li in rows]

    before = await line_statuses()
    resp = await http.post(f"/merchant/orders/{theirs['id']}", data={"csrf_token": token, "status": "packed"})
    assert resp.status == 403 and "이 주문에는 우리 가게 상품이 없어요" in await resp.text()
    resp = await http.post(f"/merchant/orders/{mine['id']}", data={"csrf_token": token, "status": "delivered"})
    assert resp.status == 409 and "notice-error" in await resp.text()
    resp = await http.post(f"/merchant/orders/{mine['id']}", data={"csrf_token": token, "status": "refunded"})
    assert resp.status == 422
    resp = await http.post(f"/merchant/orders/{mine['id']}", data={"status": "packed"})
    assert resp.status == 403  # no CSRF token
    assert (await http.post("/merchant/orders/999999", data={"csrf_token": token, "status": "packed"})).status == 404
    assert await line_statuses() == before == [OrderStatus.PLACED, OrderStatus.PLACED]

    resp = await http.post(f"/merchant/orders/{mine['id']}", data={"csrf_token": token, "status": "packed",
                                                                   "back": "/merchant/orders?status=placed"},
                           allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/merchant/orders?status=placed"
    assert await line_statuses() == [OrderStatus.PACKED, OrderStatus.PLACED]
    html = await (await http.get("/merchant/orders")).text()
    assert 'name="status" value="delivered"' in html and "전달 완료로 표시" in html
    resp = await http.post(f"/merchant/orders/{mine['id']}", data={"csrf_token": token, "status": "delivered"},
                           allow_redirects=False)
    assert resp.status == 303
    assert await line_statuses() == [OrderStatus.DELIVERED, OrderStatus.PLACED]

    # staff name the stall; without one nothing moves
    staff_token = await sign_in(http, "staff")
    html = await (await http.get("/merchant/orders")).text()
    assert "가게를 고르면" in html and 'id="merchant-orders"' not in html
    resp = await http.post(f"/merchant/orders/{theirs['id']}", data={"csrf_token": staff_token, "status": "packed"})
    assert resp.status == 422
    resp = await http.post(f"/merchant/orders/{theirs['id']}", allow_redirects=False, data={
        "csrf_token": staff_token, "status": "packed", "merchant_id": str(world.other_merchant.id)})
    assert resp.status == 303
    assert await line_statuses() == [OrderStatus.DELIVERED, OrderStatus.PACKED]
    await sign_in(http, "viewer")
    assert (await http.get("/merchant/packing")).status == 403


async def test_a_days_packing_list_to_print(server: TestServer, http: TestClient, world: World) -> None:
    viewer = browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        ids = []
        for n, who in ((2, "김민지"), (3, "박서준"), (1, "취소할사람")):
            status, body, _ = await buy(viewer, tv, world.live.id, order(world, name=who, lines=[
                {"product_id": world.products[0].id, "quantity": n}, {"product_id": world.products[1].id,
                                                                       "quantity": 1}]))
            assert status == 201, body
            ids.append(body["id"])
        resp = await viewer.post(f"/api/v1/purchases/{ids[2]}/cancel", headers={"X-CSRF-Token": tv})
        assert resp.status == 200
    finally:
        await viewer.close()
    await sign_in(http, "merchant")
    html = await (await http.get("/merchant/orders")).text()
    today = re.search(r'href="/merchant/packing\?day=(\d{4}-\d{2}-\d{2})"', html)
    assert today, "the orders page links to today's packing list"
    resp = await http.get(f"/merchant/packing?day={today.group(1)}")
    assert resp.status == 200
    html = await resp.text()
    item = html[html.index(f'id="pack-product-{world.products[0].id}"'):]
    assert "고기만두" in item and "모두 5" in item
    assert f"#{ids[0]}" in item and f"#{ids[1]}" in item and f"#{ids[2]}" not in item  # cancelled: left out
    assert item.index("김민지") < item.index("박서준")  # oldest first
    assert "참기름" not in html and f'id="pack-product-{world.products[1].id}"' not in html  # another stall's
    assert "주문 2건" in html and 'class="staff-head-actions no-print"' in html
    assert "@media print" in await (await http.get("/static/css/app.css")).text()
    html = await (await http.get("/merchant/packing?day=2020-01-01")).text()
    assert 'id="packing-list"' not in html and "포장할 것이 없어요" in html
    html = await (await http.get("/merchant/packing?day=not-a-day")).text()
    assert f'value="{today.group(1)}"' in html  # a day that is not one: today
    await sign_in(http, "staff")
    html = await (await http.get(f"/merchant/packing?day={today.group(1)}")).text()
    assert 'id="packing-list"' not in html
    html = await (await http.get(f"/merchant/packing?day={today.group(1)}&merchant_id={world.other_merchant.id}"
                                 )).text()
    assert f'id="pack-product-{world.products[1].id}"' in html and "모두 2" in html
    html = await (await http.get(f"/merchant/packing?day={today.group(1)}&merchant_id={world.other_merchant.id}"
                                 "&lang=en")).text()
    assert "2 pc in all" in html and "Packing list" in html and "2 orders" in html


async def test_an_unpaid_transfer_waits_on_the_stalls_card(server: TestServer, http: TestClient, world: World,
                                                           db: AsyncSession) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await db.commit()
    viewer = browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        status, body, _ = await buy(viewer, tv, world.live.id, order(world, payment_method="bank_transfer"))
        assert status == 201, body
    finally:
        await viewer.close()
    token = await sign_in(http, "merchant")
    html = await (await http.get("/merchant/orders")).text()
    card = html[html.index(f'id="order-{body["id"]}"'):]
    assert "결제를 기다리는 중이에요" in card and f'action="/merchant/orders/{body["id"]}"' not in html
    resp = await http.post(f"/merchant/orders/{body['id']}", data={"csrf_token": token, "status": "packed"})
    assert resp.status == 409
    await fresh(db)
    line = await db.scalar(select(PurchaseLine).where(PurchaseLine.purchase_id == body["id"]))
    assert line is not None and line.status is OrderStatus.PLACED
