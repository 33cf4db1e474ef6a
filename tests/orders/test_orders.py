"""Buying during a live stream, over real HTTP on each backend: prices come from the line-up, stock
is taken once and never oversold, a multi-line order takes all or nothing, Idempotency-Key retries
answer the same and buy nothing more, and the live room's hook hears each committed purchase."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from livecommerce.db import make_engine, make_sessionmaker, utcnow
from livecommerce.errors import AppError
from livecommerce.keys import AppKeys
from livecommerce.models import Product
from orders import buying, rules
from orders.errors import KeyLost, SoldOut
from orders.fulfilment import apply_payment_event, expire_overdue
from orders.keys import claim_key, complete_key, purge_keys
from orders.lineup import lineup_stock
from orders.models import (
    DeliveryOption,
    IdempotencyKey,
    KeyState,
    LineupSale,
    MarketOrderSettings,
    OrderStatus,
    Purchase,
    PurchaseLine,
)
from orders.payments import (
    PAYMENT_PROVIDERS,
    InvalidWebhook,
    PaymentEvent,
    PaymentStart,
    default_providers,
)
from orders.placing import PURCHASE_LISTENERS, EventLine, OrderInput, PurchaseEvent, place_purchase, take_stock
from orders.rules import PricedLine, Replay, masked_name
from orders.schemas import PurchaseIn, SocketPurchaseIn
from orders.settings import save_order_settings, seed_demo_order_settings
from sessions.models import Broadcast, BroadcastState, LineupItem
from tests.support import World, fresh, sign_in, socket_for

from .support import browser, buy, order, path


async def count(db: AsyncSession, model: Any) -> int:
    return int(await (await fresh(db)).scalar(select(func.count()).select_from(model)) or 0)


async def sold(db: AsyncSession, broadcast_id: int, product_id: int) -> int:
    row = await (await fresh(db)).get(LineupSale, (broadcast_id, product_id))
    return row.sold if row else 0


async def stock(db: AsyncSession, product_id: int) -> int:
    p = await (await fresh(db)).get(Product, product_id)
    assert p is not None
    return p.stock


# -- buying ----------------------------------------------------------------------------------------

async def test_a_viewer_buys_at_the_live_price(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201, body
    assert body["broadcast_id"] == world.live.id and body["status"] == "placed"
    line = body["lines"][0]
    assert (line["unit_price"], line["usual_price"], line["quantity"], line["line_total"]) == (9900, 12900, 2, 19800)
    assert body["subtotal"] == 19800 and body["savings"] == 6000 and body["discount"] == 0
    assert body["total"] == body["subtotal"] + body["delivery_fee"]
    assert body["phone"] == "010-1234-5678" and body["payment"]["method"] == "cod"
    await fresh(db)
    p = await db.scalar(select(Purchase).where(Purchase.id == body["id"]))
    assert p is not None and p.user_id == world.viewer.id and p.broadcast_id == world.live.id
    # the live broadcast started ten minutes before the world was made
    assert 600 <= p.stream_second < 900 and p.stream_second == body["stream_second"]
    lines = (await db.scalars(select(PurchaseLine).where(PurchaseLine.purchase_id == p.id))).all()
    assert [(li.product_id, li.merchant_id, li.unit_price, li.status) for li in lines] == [
        (world.products[0].id, world.merchant.id, 9900, OrderStatus.PLACED)]
    assert p.coupon_claim_id is None and p.coupon_code is None
    assert await sold(db, world.live.id, world.products[0].id) == 2
    assert await stock(db, world.products[0].id) == 98
    resp = await client.get(f"/api/v1/broadcasts/{world.live.id}/stock")
    assert {i["product_id"]: i["left"] for i in await resp.json()} == {world.products[0].id: 28,
                                                                       world.products[1].id: 20}


async def test_a_price_sent_by_the_client_is_ignored(client: TestClient, world: World, db: AsyncSession) -> None:
    """Prices are the server's: a price in the request changes nothing, not even the request an
    Idempotency-Key stands for."""
    token = await sign_in(client, "viewer")
    key = str(uuid.uuid4())
    cheap = order(world, lines=[{"product_id": world.products[0].id, "quantity": 2, "unit_price": 1, "price": 1}],
                  total=100, subtotal=100)
    status, body, _ = await buy(client, token, world.live.id, cheap, key)
    assert status == 201
    assert body["lines"][0]["unit_price"] == 9900 and body["subtotal"] == 19800
    assert body["total"] == 19800 + body["delivery_fee"]  # the fee depends on the hour: same day, or next day
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.total == body["total"] and p.subtotal == 19800
    status, again, headers = await buy(client, token, world.live.id, order(world, total="free"), key)
    assert status == 201 and again == body and headers["Idempotent-Replayed"] == "true"
    status, other, _ = await buy(client, token, world.live.id, order(world, totally="free"))
    assert status == 422 and other["error"]["details"][0]["field"] == "totally"  # other unknown fields: refused
    assert await count(db, Purchase) == 1 and await sold(db, world.live.id, world.products[0].id) == 2


async def test_what_cannot_be_bought(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    cases = [
        (world.scheduled.id, order(world), 409, "broadcast_not_live"),
        (world.live.id, order(world, lines=[{"product_id": world.products[2].id, "quantity": 1}]), 422,
         "not_on_lineup"),
        (world.live.id, order(world, lines=[{"product_id": world.products[0].id, "quantity": 11}]), 422,
         "invalid_quantity"),
        (world.live.id, order(world, lines=[{"product_id": world.products[1].id, "quantity": 1}] * 2), 422,
         "duplicate_product"),
        (world.live.id, order(world, phone="02-123-4567"), 422, "invalid_phone"),
        (999999, order(world), 404, "broadcast_not_found"),
    ]
    for broadcast_id, body, want_status, code in cases:
        status, answer, _ = await buy(client, token, broadcast_id, body)
        assert (status, answer["error"]["code"]) == (want_status, code), answer
        assert answer["error"]["message"]
    assert await count(db, Purchase) == 0
    assert await count(db, IdempotencyKey) == 0  # refused on reading: the keys stay free


async def test_guests_and_strangers(client: TestClient, world: World) -> None:
    resp = await client.post(path(world.live.id), json=order(world), headers={"Idempotency-Key": "k"})
    assert resp.status == 403  # no CSRF token: not even looked at
    token = (await (await client.get("/api/v1/auth/session")).json())["csrf_token"]
    resp = await client.post(path(world.live.id), json=order(world),
                             headers={"Idempotency-Key": "k", "X-CSRF-Token": token})
    assert resp.status == 401
    resp = await client.post("/api/v1/auth/guest", json={"nickname": "참기름러버"}, headers={"X-CSRF-Token": token})
    token = (await resp.json())["csrf_token"]
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201, body


# -- idempotency -----------------------------------------------------------------------------------

async def test_a_retry_answers_the_same_and_buys_nothing_more(client: TestClient, world: World,
                                                             db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    key = '"' + str(uuid.uuid4()) + '"'  # the draft's Structured Field string
    first = await client.post(path(world.live.id), json=order(world), headers={"X-CSRF-Token": token,
                                                                              "Idempotency-Key": key})
    assert first.status == 201
    first_body = await first.read()
    assert "Idempotent-Replayed" not in first.headers
    # the same JSON with its keys in another order is the same request
    again = dict(reversed(list(order(world).items())))
    retry = await client.post(path(world.live.id), data=json.dumps(again, ensure_ascii=False, indent=2),
                              headers={"X-CSRF-Token": token, "Idempotency-Key": key,
                                       "Content-Type": "application/json"})
    assert retry.status == 201 and await retry.read() == first_body
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert await count(db, Purchase) == 1 and await count(db, PurchaseLine) == 1
    assert await sold(db, world.live.id, world.products[0].id) == 2
    assert await stock(db, world.products[0].id) == 98
    # the same key for another order is refused
    status, body, _ = await buy(client, token, world.live.id, order(world, name="다른사람"), key)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert await count(db, Purchase) == 1


async def test_keys_belong_to_one_viewer(server: TestServer, world: World, db: AsyncSession) -> None:
    a, b = browser(server), browser(server)
    try:
        ta, tb = await sign_in(a, "viewer"), await sign_in(b, "staff")
        assert (await buy(a, ta, world.live.id, order(world), "same-key"))[0] == 201
        assert (await buy(b, tb, world.live.id, order(world), "same-key"))[0] == 201
    finally:
        await a.close()
        await b.close()
    assert await count(db, Purchase) == 2


async def test_missing_or_malformed_key_is_400(client: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    for key in (None, "", "키"):
        headers = {"X-CSRF-Token": token} | ({"Idempotency-Key": key} if key is not None else {})
        resp = await client.post(path(world.live.id), json=order(world), headers=headers)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "idempotency_key_missing"
    assert await count(db, Purchase) == 0


def _fingerprint(world: World, body: dict[str, Any]) -> str:
    return rules.fingerprint("POST", path(world.live.id), PurchaseIn.model_validate(body).model_dump(mode="json"))


async def test_a_retry_while_the_first_is_in_flight_is_409(client: TestClient, world: World,
                                                         db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    body = order(world)
    db.add(IdempotencyKey(user_id=world.viewer.id, key="k-1", fingerprint=_fingerprint(world, body),
                          state=KeyState.IN_PROGRESS, token="a" * 32, created_at=utcnow(), started_at=utcnow()))
    await db.commit()
    status, answer, _ = await buy(client, token, world.live.id, body, "k-1")
    assert status == 409 and answer["error"]["code"] == "idempotency_in_flight"
    assert await count(db, Purchase) == 0


async def test_an_attempt_that_crashed_can_be_retried_after_the_lock(client: TestClient, world: World,
                                                                     db: AsyncSession, config: Config) -> None:
    """A process that died between taking the key and committing the purchase leaves the key "in
    progress" and bought nothing; after `orders.idempotency_lock_seconds` a retry runs the order."""
    token = await sign_in(client, "viewer")
    body = order(world)
    long_ago = utcnow() - timedelta(seconds=config.orders.idempotency_lock_seconds + 1)
    db.add(IdempotencyKey(user_id=world.viewer.id, key="k-2", fingerprint=_fingerprint(world, body),
                          state=KeyState.IN_PROGRESS, token="a" * 32, created_at=long_ago, started_at=long_ago))
    await db.commit()
    status, answer, _ = await buy(client, token, world.live.id, body, "k-2")
    assert status == 201, answer
    await fresh(db)
    row = await db.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "k-2"))
    assert row is not None and row.state is KeyState.DONE and row.token != "a" * 32
    assert row.purchase_id == answer["id"] and row.status_code == 201
    assert await count(db, Purchase) == 1


async def test_a_stale_attempt_cannot_commit_after_a_retry_took_over(config: Config, world: World,
                                                                    db: AsyncSession) -> None:
    """Two attempts with one key never both buy: the completing UPDATE checks the attempt's token,
    in the purchase's own transaction."""
    engine = make_engine(config.database)
    maker = make_sessionmaker(engine)
    now = utcnow()
    lock = config.orders.idempotency_lock_seconds
    try:
        async with maker.begin() as s:
            slow = await claim_key(s, world.viewer.id, "k-3", "f" * 64, now, lock)
        async with maker.begin() as s:
            assert (await claim_key(s, world.viewer.id, "k-3", "f" * 64, now, lock)).outcome is \
                Replay.IN_FLIGHT
        async with maker.begin() as s:
            retry = await claim_key(s, world.viewer.id, "k-3", "f" * 64, now + timedelta(seconds=lock), lock)
        assert slow.outcome is retry.outcome is Replay.NEW and slow.token != retry.token
        order_in = OrderInput([rules.Wanted(world.products[0].id, 1)], "김민지", "010-1234-5678", "04524",
                                       "서울", "", "", "cod")
        viewer = await db.get(type(world.viewer), world.viewer.id)
        assert viewer is not None
        db.expunge(viewer)  # a plain object from here: the checks below end the test session's snapshot
        try:
            async with maker.begin() as s:
                placed = await place_purchase(s, user=viewer, broadcast_id=world.live.id, order=order_in,
                                                       now=now, config=config, providers=default_providers())
                await complete_key(s, slow, 201, "{}", placed.purchase.id)
            raise AssertionError("the slow attempt committed")
        except KeyLost:
            pass
        assert await count(db, Purchase) == 0
        assert await sold(db, world.live.id, world.products[0].id) == 0
        async with maker.begin() as s:
            placed = await place_purchase(s, user=viewer, broadcast_id=world.live.id, order=order_in,
                                                   now=now, config=config, providers=default_providers())
            await complete_key(s, retry, 201, "{}", placed.purchase.id)
        assert await count(db, Purchase) == 1
    finally:
        await engine.dispose()


async def test_a_refusal_while_buying_is_kept_and_replayed(client: TestClient, world: World, db: AsyncSession,
                                                           config: Config) -> None:
    """A crashed attempt is retried after the lock, but the show ended meanwhile: the refusal is found
    once the purchase began (the key was taken), so it is stored, and a further retry gets it again."""
    token = await sign_in(client, "viewer")
    body = order(world)
    long_ago = utcnow() - timedelta(seconds=config.orders.idempotency_lock_seconds + 1)
    db.add(IdempotencyKey(user_id=world.viewer.id, key="k-4", fingerprint=_fingerprint(world, body),
                          state=KeyState.IN_PROGRESS, token="a" * 32, created_at=long_ago, started_at=long_ago))
    b = await db.get(Broadcast, world.live.id)
    assert b is not None
    b.state = BroadcastState.ENDED
    await db.commit()
    status, first, _ = await buy(client, token, world.live.id, body, "k-4")
    assert status == 409 and first["error"]["code"] == "broadcast_not_live"
    status, again, headers = await buy(client, token, world.live.id, body, "k-4")
    assert status == 409 and again == first and headers["Idempotent-Replayed"] == "true"
    assert await count(db, Purchase) == 0 and await sold(db, world.live.id, world.products[0].id) == 0


async def test_an_unoffered_payment_method_is_refused_and_keeps_nothing(client: TestClient, world: World,
                                                                      db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    status, answer, _ = await buy(client, token, world.live.id, order(world, payment_method="bank_transfer"), "k-6")
    assert status == 422 and answer["error"]["code"] == "payment_method_unavailable"
    assert await count(db, IdempotencyKey) == 0
    assert (await buy(client, token, world.live.id, order(world), "k-6"))[0] == 201  # the key was free


async def test_a_socket_retry_of_an_http_purchase_is_the_same_purchase(app: web.Application, client: TestClient,
                                                                      world: World, db: AsyncSession) -> None:
    """The live room's `buy` event calls the same `purchase_once`; the fingerprint does not depend on
    the transport, so a purchase sent over HTTP and retried over the socket (or the reverse) is one."""
    token = await sign_in(client, "viewer")
    status, first, _ = await buy(client, token, world.live.id, order(world), "k-7")
    assert status == 201
    payload = SocketPurchaseIn.model_validate({**order(world), "broadcast_id": world.live.id,
                                               "idempotency_key": "k-7"})
    viewer = await db.get(type(world.viewer), world.viewer.id)
    assert viewer is not None
    answer = await buying.purchase_once(app, viewer, payload.broadcast_id, payload.order(), payload.idempotency_key)
    assert answer.replayed and answer.status == 201 and json.loads(answer.body) == first
    other = await buying.purchase_once(app, viewer, world.live.id, payload.order(), "k-8")
    assert other.status == 201 and not other.replayed and json.loads(other.body)["id"] != first["id"]
    assert await count(db, Purchase) == 2


async def test_buying_over_the_socket_with_the_key_as_a_field(server: TestServer, http: TestClient, world: World,
                                                              db: AsyncSession) -> None:
    """The live page's socket buys like the HTTP route; a retry over HTTP with the same key is the same
    purchase; a refusal stored with a key comes back the same; bad input is a clear error."""
    token = await sign_in(http, "viewer")
    cookie = next(c.value for c in http.session.cookie_jar if c.key == "lc_session")
    sio = await socket_for(f"http://127.0.0.1:{server.port}", cookie)
    anon = await socket_for(f"http://127.0.0.1:{server.port}")
    try:
        data = {**order(world), "broadcast_id": world.live.id, "idempotency_key": "sock-1"}
        ack = await sio.call("buy", data, namespace="/live", timeout=10)
        assert ack["ok"] is True and ack["data"]["replayed"] is False
        first = ack["data"]["purchase"]
        assert first["lines"][0]["unit_price"] == 9900 and first["broadcast_id"] == world.live.id
        again = await sio.call("buy", data, namespace="/live", timeout=10)
        assert again["ok"] is True and again["data"] == {"purchase": first, "replayed": True}
        status, over_http, headers = await buy(http, token, world.live.id, order(world), "sock-1")
        assert status == 201 and over_http == first and headers["Idempotent-Replayed"] == "true"
        other = await sio.call("buy", {**data, "name": "다른사람"}, namespace="/live", timeout=10)
        assert other["ok"] is False and other["error"]["code"] == "idempotency_key_reused"
        too_many = await sio.call("buy", {**data, "idempotency_key": "sock-2",
                                          "lines": [{"product_id": world.products[0].id, "quantity": 0}]},
                                  namespace="/live", timeout=10)
        assert too_many["ok"] is False and too_many["error"]["code"] == "validation_failed"
        for loose in (True, "2", 2.0):  # strict, as over HTTP: a quantity is a number
            refused = await sio.call("buy", {**data, "idempotency_key": f"sock-{loose!r}",
                                             "lines": [{"product_id": world.products[0].id, "quantity": loose}]},
                                     namespace="/live", timeout=10)
            assert refused["ok"] is False and refused["error"]["code"] == "validation_failed", (loose, refused)
        no_key = await sio.call("buy", {**data, "idempotency_key": " "}, namespace="/live", timeout=10)
        assert no_key["ok"] is False
        refused = await anon.call("buy", {**data, "idempotency_key": "sock-3"}, namespace="/live", timeout=10)
        assert refused["ok"] is False and refused["error"]["code"] == "unauthenticated"
    finally:
        await sio.disconnect()
        await anon.disconnect()
    assert await count(db, Purchase) == 1 and await sold(db, world.live.id, world.products[0].id) == 2


async def test_old_keys_are_purged(db: AsyncSession, world: World) -> None:
    now = utcnow()
    for key, age in (("old", 25), ("young", 23)):
        at = now - timedelta(hours=age)
        db.add(IdempotencyKey(user_id=world.viewer.id, key=key, fingerprint="f" * 64, state=KeyState.DONE,
                              token="t" * 32, created_at=at, started_at=at))
    await db.commit()
    assert await purge_keys(db, now, 24) == 1
    await db.commit()
    assert (await db.scalars(select(IdempotencyKey.key))).all() == ["young"]


# -- stock -----------------------------------------------------------------------------------------

async def _reserve(db: AsyncSession, world: World, product_index: int, reserved: int) -> None:
    await db.execute(update(LineupItem).where(LineupItem.broadcast_id == world.live.id,
                                              LineupItem.product_id == world.products[product_index].id)
                     .values(stock_reserved=reserved))
    await db.commit()


async def test_many_buyers_at_once_never_oversell(server: TestServer, world: World, db: AsyncSession) -> None:
    await _reserve(db, world, 0, 5)
    clients = [browser(server) for _ in range(12)]
    try:
        tokens = []
        for i, c in enumerate(clients):
            session = await (await c.get("/api/v1/auth/session")).json()
            resp = await c.post("/api/v1/auth/guest", json={"nickname": f"손님{i}"},
                                headers={"X-CSRF-Token": session["csrf_token"]})
            tokens.append((await resp.json())["csrf_token"])
        body = order(world, lines=[{"product_id": world.products[0].id, "quantity": 1}])
        results = await asyncio.gather(*(buy(c, t, world.live.id, body) for c, t in zip(clients, tokens, strict=True)))
    finally:
        for c in clients:
            await c.close()
    statuses = sorted(r[0] for r in results)
    assert statuses == [201] * 5 + [409] * 7
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"sold_out"}
    assert {r[1]["error"]["details"]["product_id"] for r in results if r[0] == 409} == {world.products[0].id}
    assert await sold(db, world.live.id, world.products[0].id) == 5
    assert await stock(db, world.products[0].id) == 95
    assert await count(db, Purchase) == 5


async def test_a_multi_line_order_takes_all_its_lines_or_none(config: Config, world: World,
                                                              db: AsyncSession) -> None:
    """The product has 1 unit although the show set aside 20: the second line's UPDATE finds too few,
    and the first line's units (already taken in the same transaction) are not taken either."""
    p1 = await db.get(Product, world.products[1].id)
    assert p1 is not None
    p1.stock = 1
    await db.commit()
    engine = make_engine(config.database)
    lines = [PricedLine(world.products[0].id, world.merchant.id, 2, 9900, 12900),
             PricedLine(world.products[1].id, world.other_merchant.id, 2, 13900, 18000)]
    try:
        async with make_sessionmaker(engine).begin() as s:
            await take_stock(s, world.live.id, lines, {world.products[1].id: "참기름"})
        raise AssertionError("two units were taken from a product that has one")
    except SoldOut as exc:
        assert exc.details == {"product_id": world.products[1].id} and exc.params["product"] == "참기름"
    finally:
        await engine.dispose()
    assert await sold(db, world.live.id, world.products[0].id) == 0
    assert await stock(db, world.products[0].id) == 100
    assert await sold(db, world.live.id, world.products[1].id) == 0
    assert await stock(db, world.products[1].id) == 1


async def test_sold_out_is_refused_and_a_retry_after_a_cancellation_buys(client: TestClient, world: World,
                                                                         db: AsyncSession) -> None:
    token = await sign_in(client, "viewer")
    await _reserve(db, world, 0, 3)
    status, first, _ = await buy(client, token, world.live.id,
                                 order(world, lines=[{"product_id": world.products[0].id, "quantity": 3}]))
    assert status == 201
    status, refused, _ = await buy(client, token, world.live.id, order(world), "k-5")
    assert status == 409 and refused["error"]["code"] == "sold_out"
    assert "고기만두" in refused["error"]["message"]
    resp = await client.post(f"/api/v1/purchases/{first['id']}/cancel", headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    assert await sold(db, world.live.id, world.products[0].id) == 0 and await stock(db, world.products[0].id) == 100
    status, bought, _ = await buy(client, token, world.live.id, order(world), "k-5")  # the refusal kept nothing
    assert status == 201 and bought["lines"][0]["quantity"] == 2


# -- the live room's hook --------------------------------------------------------------------------

async def test_listeners_hear_each_committed_purchase_and_cancellation(app: web.Application, client: TestClient,
                                                                      world: World, db: AsyncSession) -> None:
    heard: list[PurchaseEvent] = []
    seen_in_db: list[int] = []

    async def broken(app_: web.Application, event: PurchaseEvent) -> None:
        raise RuntimeError("a listener that fails must not fail the purchase")

    async def listener(app_: web.Application, event: PurchaseEvent) -> None:
        assert app_ is app
        # called after the commit: another connection already sees the purchase
        seen_in_db.append(await count(db, Purchase))
        heard.append(event)

    app[PURCHASE_LISTENERS].extend([broken, listener])
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201
    assert len(heard) == 1 and seen_in_db == [1]
    e = heard[0]
    assert (e.kind, e.purchase_id, e.broadcast_id, e.user_id, e.buyer) == (
        "placed", body["id"], world.live.id, world.viewer.id, "시**")
    assert e.lines == (EventLine(world.products[0].id, 2, 9900, world.products[0].name_ko,
                                          world.products[0].name_en),)
    assert e.stock_left == {world.products[0].id: 28} and e.total == body["total"]
    status, _, _ = await buy(client, token, world.live.id, order(world, payment_method="bank_transfer"))
    assert status == 422 and len(heard) == 1  # a refusal is not a purchase
    resp = await client.post(f"/api/v1/purchases/{body['id']}/cancel", headers={"X-CSRF-Token": token})
    assert resp.status == 200
    assert [x.kind for x in heard] == ["placed", "cancelled"] and heard[1].stock_left == {world.products[0].id: 30}


async def test_functions_for_the_live_room(world: World, db: AsyncSession) -> None:
    assert await lineup_stock(db, world.live.id) == {world.products[0].id: 30, world.products[1].id: 20}
    assert masked_name("시청자") == "시**"


# -- delivery --------------------------------------------------------------------------------------

async def _settings(db: AsyncSession, world: World, **values: Any) -> None:
    await save_order_settings(db, world.market.id, values, utcnow())
    await db.commit()


async def test_the_delivery_quote_and_what_the_order_records(client: TestClient, world: World,
                                                             db: AsyncSession) -> None:
    # cut-offs that hold all day, so the answer does not depend on when the test runs
    await _settings(db, world, two_hour_cutoff="24:00", same_day_cutoff="24:00", two_hour_postal_prefixes="045, 046",
                    two_hour_fee=4000, same_day_fee=3000)
    url = f"/api/v1/broadcasts/{world.live.id}/delivery-quote"
    inside = await (await client.get(url, params={"postal_code": "04524"})).json()
    assert inside["option"] == "two_hour" and inside["fee"] == 4000 and inside["in_area"] is True
    assert inside["label"] == "2시간 배송" and inside["promise_text"]
    await client.get("/api/v1/auth/session", params={"lang": "en"})
    outside = await (await client.get(url, params={"postal_code": "48058"})).json()
    assert (outside["option"], outside["fee"], outside["in_area"]) == ("same_day", 3000, False)
    assert outside["label"] == "Same-day delivery" and outside["promise_text"].startswith("Arrives on")
    assert (await client.get(url, params={"postal_code": "123"})).status == 422
    await client.get("/api/v1/auth/session", params={"lang": "ko"})
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201
    assert body["delivery"]["option"] == "two_hour" and body["delivery_fee"] == 4000
    assert body["total"] == 19800 + 4000
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.delivery_option is DeliveryOption.TWO_HOUR and p.delivery_fee == 4000
    assert timedelta(hours=2) <= p.delivery_promise_at - p.placed_at < timedelta(hours=2, minutes=10)
    await _settings(db, world, two_hour_cutoff="00:00", same_day_cutoff="00:00", next_day_fee=0)
    nxt = await (await client.get(url, params={"postal_code": "04524"})).json()
    assert nxt["option"] == "next_day" and nxt["fee"] == 0
    assert [o["option"] for o in nxt["options"]] == ["next_day"]


async def test_the_buyer_chooses_a_slower_delivery_to_pay_less(client: TestClient, world: World,
                                                               db: AsyncSession) -> None:
    await _settings(db, world, two_hour_cutoff="24:00", same_day_cutoff="24:00", two_hour_postal_prefixes="045",
                    two_hour_fee=4000, same_day_fee=3000, next_day_fee=0)
    quote = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/delivery-quote",
                                    params={"postal_code": "04524"})).json()
    assert [(o["option"], o["fee"]) for o in quote["options"]] == [("two_hour", 4000), ("same_day", 3000),
                                                                    ("next_day", 0)]
    assert all(o["label"] and o["promise_text"] for o in quote["options"])
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world, delivery_option="next_day"))
    assert status == 201 and body["delivery"]["option"] == "next_day" and body["delivery_fee"] == 0
    assert body["total"] == 19800


async def test_the_confirmed_delivery_option_must_still_hold(client: TestClient, world: World,
                                                              db: AsyncSession) -> None:
    await _settings(db, world, two_hour_cutoff="24:00", same_day_cutoff="24:00", two_hour_postal_prefixes="045")
    token = await sign_in(client, "viewer")
    status, answer, _ = await buy(client, token, world.live.id,
                                  order(world, postal_code="48058", delivery_option="two_hour"))
    assert status == 422 and answer["error"]["code"] == "outside_delivery_area"
    assert "배송 지역" in answer["error"]["message"]
    async with client.app[AppKeys.db].begin() as staff_db:  # staff move the morning cut-off while the sheet is open
        await save_order_settings(staff_db, world.market.id, {"two_hour_cutoff": "00:00"}, utcnow())
    status, answer, _ = await buy(client, token, world.live.id, order(world, delivery_option="two_hour"))
    assert status == 409 and answer["error"]["code"] == "delivery_option_changed"
    assert await count(db, Purchase) == 0 and await count(db, IdempotencyKey) == 0
    assert await sold(db, world.live.id, world.products[0].id) == 0
    status, body, _ = await buy(client, token, world.live.id, order(world, delivery_option="same_day"))
    assert status == 201 and body["delivery"]["option"] == "same_day"


async def test_order_settings_are_checked(client: TestClient, world: World) -> None:
    url = f"/api/v1/markets/{world.market.id}/order-settings"
    defaults = await (await client.get(url)).json()
    assert defaults["two_hour_postal_prefixes"] == "" and defaults["cod_enabled"] is True
    assert defaults["bank_account"] == ""
    token = await sign_in(client, "staff")
    resp = await client.put(url, json={"two_hour_cutoff": "25:00"}, headers={"X-CSRF-Token": token})
    assert resp.status == 422
    resp = await client.put(url, json={"two_hour_postal_prefixes": "중구"}, headers={"X-CSRF-Token": token})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "invalid_area"
    resp = await client.put(url, json={"two_hour_postal_prefixes": "045 046", "bank_account": "123-456"},
                            headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["two_hour_postal_prefixes"] == "045,046"
    assert (await client.get("/api/v1/markets/999999/order-settings")).status == 404
    viewer = await sign_in(client, "viewer")
    assert (await client.put(url, json={}, headers={"X-CSRF-Token": viewer})).status == 403


async def test_the_demo_settings_offer_bank_transfer(client: TestClient, world: World, db: AsyncSession) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await seed_demo_order_settings(db, world.market.id)  # again: still one row
    await db.commit()
    assert await count(db, MarketOrderSettings) == 1
    checkout = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/checkout")).json()
    assert [m["method"] for m in checkout["payment_methods"]] == ["bank_transfer", "cod"]
    assert checkout["open"] is True and checkout["max_quantity"] == 10
    assert [(i["live_price"], i["usual_price"], i["left"]) for i in checkout["items"]] == [
        (9900, 12900, 30), (13900, 18000, 20)]


# -- payment and fulfilment ------------------------------------------------------------------------

async def test_bank_transfer_then_packing_and_delivery(server: TestServer, world: World, db: AsyncSession) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await db.commit()
    viewer, merchant, staff = browser(server), browser(server), browser(server)
    try:
        tv, tm, ts = await sign_in(viewer, "viewer"), await sign_in(merchant, "merchant"), await sign_in(staff, "staff")
        status, body, _ = await buy(viewer, tv, world.live.id, order(world, payment_method="bank_transfer", lines=[
            {"product_id": world.products[0].id, "quantity": 1}, {"product_id": world.products[1].id, "quantity": 1}]))
        assert status == 201, body
        assert body["payment"]["instructions"]["account"] == "000-0000-0000-00" and body["payment"]["pay_by"]
        mine, theirs = body["lines"][0]["id"], body["lines"][1]["id"]

        async def move(client: ClientSession, token: str, line_id: int, to: str) -> tuple[int, Any]:
            resp = await client.post(f"/api/v1/purchase-lines/{line_id}/status", json={"status": to},
                                     headers={"X-CSRF-Token": token})
            return resp.status, await resp.json()

        status, err = await move(merchant, tm, mine, "packed")
        assert status == 409 and err["error"]["code"] == "illegal_status_move"  # not paid yet
        assert (await move(merchant, tm, theirs, "packed"))[0] == 403  # another stall's line
        assert (await move(viewer, tv, mine, "packed"))[0] == 403
        resp = await staff.post(f"/api/v1/purchases/{body['id']}/paid", headers={"X-CSRF-Token": ts})
        assert resp.status == 200 and (await resp.json())["status"] == "paid"
        resp = await staff.post(f"/api/v1/purchases/{body['id']}/paid", headers={"X-CSRF-Token": ts})
        assert resp.status == 200  # paying twice pays once
        resp = await viewer.post(f"/api/v1/purchases/{body['id']}/cancel", headers={"X-CSRF-Token": tv})
        assert resp.status == 409  # paid: only the market can refund it now
        status, out = await move(merchant, tm, mine, "packed")
        assert status == 200 and out["status"] == "paid"  # the other line is not packed yet
        status, out = await move(merchant, tm, mine, "delivered")
        assert status == 200 and [li["status"] for li in out["lines"]] == ["delivered", "paid"]
        resp = await merchant.get("/api/v1/merchant/lines")
        lines = await resp.json()
        assert [x["line"]["id"] for x in lines] == [mine] and lines[0]["address1"] == "서울 중구 세종대로 110"
        resp = await staff.post(f"/api/v1/purchases/{body['id']}/cancel", headers={"X-CSRF-Token": ts})
        assert resp.status == 409  # a delivered line: no refund of the whole order from here
        status, out = await move(staff, ts, theirs, "refunded")
        assert status == 200 and out["status"] == "delivered"
    finally:
        for c in (viewer, merchant, staff):
            await c.close()
    assert await sold(db, world.live.id, world.products[1].id) == 0  # the refund gave its unit back
    assert await sold(db, world.live.id, world.products[0].id) == 1


async def test_pay_on_delivery_is_paid_at_the_door(server: TestServer, world: World, db: AsyncSession) -> None:
    viewer, merchant = browser(server), browser(server)
    try:
        tv, tm = await sign_in(viewer, "viewer"), await sign_in(merchant, "merchant")
        status, body, _ = await buy(viewer, tv, world.live.id, order(world))
        assert status == 201
        line = body["lines"][0]["id"]
        for to in ("packed", "delivered"):
            resp = await merchant.post(f"/api/v1/purchase-lines/{line}/status", json={"status": to},
                                       headers={"X-CSRF-Token": tm})
            assert resp.status == 200, await resp.text()
        out = await resp.json()
        assert out["status"] == "delivered" and out["payment"]["paid_at"]
    finally:
        await viewer.close()
        await merchant.close()


async def test_a_viewer_sees_and_cancels_only_their_own_orders(server: TestServer, world: World,
                                                               db: AsyncSession) -> None:
    a, b = browser(server), browser(server)
    try:
        ta = await sign_in(a, "viewer")
        session = await (await b.get("/api/v1/auth/session")).json()
        resp = await b.post("/api/v1/auth/guest", json={"nickname": "손님"},
                            headers={"X-CSRF-Token": session["csrf_token"]})
        tb = (await resp.json())["csrf_token"]
        status, body, _ = await buy(a, ta, world.live.id, order(world))
        assert status == 201
        assert [o["id"] for o in await (await a.get("/api/v1/me/purchases")).json()] == [body["id"]]
        assert await (await b.get("/api/v1/me/purchases")).json() == []
        assert (await b.get(f"/api/v1/purchases/{body['id']}")).status == 404
        assert (await b.post(f"/api/v1/purchases/{body['id']}/cancel", headers={"X-CSRF-Token": tb})).status == 404
        assert (await a.get(f"/api/v1/purchases/{body['id']}")).status == 200
        assert (await b.get("/api/v1/purchases")).status == 403  # staff only
    finally:
        await a.close()
        await b.close()
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.status is OrderStatus.PLACED


class SignedGateway:
    """A card gateway as docs/payments.md describes one: it offers "card" and signs its webhooks."""

    name = "testpay"
    secret = b"shared-secret"

    def methods(self, settings: Any) -> list[str]:
        return ["card"]

    def start(self, purchase: Purchase, settings: Any, now: Any) -> PaymentStart:
        return PaymentStart(self.name, "card", now + timedelta(minutes=30), redirect_url=f"/pay/{purchase.id}")

    def verify_webhook(self, headers: Any, body: bytes) -> PaymentEvent:
        sent = headers.get("X-Signature", "")
        if not hmac.compare_digest(sent, hmac.new(self.secret, body, hashlib.sha256).hexdigest()):
            raise InvalidWebhook("bad signature")
        data = json.loads(body)
        return PaymentEvent(self.name, int(data["orderId"]), data["paymentKey"], int(data["amount"]), data["status"])


async def test_a_gateway_pays_through_its_webhook_once(app: web.Application, client: TestClient, world: World,
                                                        db: AsyncSession) -> None:
    gateway = SignedGateway()
    app[PAYMENT_PROVIDERS][gateway.name] = gateway
    token = await sign_in(client, "viewer")
    checkout = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/checkout")).json()
    assert "card" in [m["method"] for m in checkout["payment_methods"]]
    status, body, _ = await buy(client, token, world.live.id, order(world, payment_method="card"))
    assert status == 201 and body["payment"]["provider"] == "testpay" and body["payment"]["pay_by"]

    def webhook(amount: int, status: str = "paid", secret: bytes = gateway.secret) -> tuple[dict[str, str], bytes]:
        raw = json.dumps({"orderId": body["id"], "paymentKey": "pk_1", "amount": amount, "status": status}).encode()
        return {"X-Signature": hmac.new(secret, raw, hashlib.sha256).hexdigest()}, raw

    with pytest.raises(InvalidWebhook):
        gateway.verify_webhook(*webhook(body["total"], secret=b"forged"))
    assert await apply_payment_event(db, gateway.verify_webhook(*webhook(body["total"], "failed")),
                                              utcnow()) is None
    with pytest.raises(AppError) as info:
        await apply_payment_event(db, gateway.verify_webhook(*webhook(body["total"] - 1)), utcnow())
    assert info.value.code == "amount_mismatch"
    await db.rollback()
    offline = PaymentEvent("offline", body["id"], "x", body["total"], "paid")
    with pytest.raises(AppError) as info:
        await apply_payment_event(db, offline, utcnow())
    assert info.value.code == "wrong_provider"
    await db.rollback()
    for _ in range(2):  # a webhook delivered twice pays once
        paid = await apply_payment_event(db, gateway.verify_webhook(*webhook(body["total"])), utcnow())
        await db.commit()
        assert paid is not None and paid.status is OrderStatus.PAID and paid.payment_ref == "pk_1"
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.status is OrderStatus.PAID and p.paid_at is not None


# -- figures ---------------------------------------------------------------------------------------

async def test_the_hosts_figures(server: TestServer, world: World, db: AsyncSession) -> None:
    b = await db.get(Broadcast, world.live.id)
    assert b is not None
    b.peak_viewers = 8
    await db.commit()
    viewer, host = browser(server), browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        two = order(world, lines=[{"product_id": world.products[0].id, "quantity": 2},
                                  {"product_id": world.products[1].id, "quantity": 1}])
        first = (await buy(viewer, tv, world.live.id, two))[1]
        second = (await buy(viewer, tv, world.live.id, order(world)))[1]
        cancelled = (await buy(viewer, tv, world.live.id, order(world)))[1]
        await viewer.post(f"/api/v1/purchases/{cancelled['id']}/cancel", headers={"X-CSRF-Token": tv})
        assert (await viewer.get(f"/api/v1/broadcasts/{world.live.id}/figures")).status == 403
        await sign_in(host, "host")
        f = await (await host.get(f"/api/v1/broadcasts/{world.live.id}/figures")).json()
        assert (await host.get(f"/api/v1/broadcasts/{world.scheduled.id}/figures")).status == 403  # not theirs
    finally:
        await viewer.close()
        await host.close()
    assert f["orders"] == 2 and f["buyers"] == 1 and f["viewers"] == 8 and f["conversion"] == 0.125
    assert f["revenue"] == first["subtotal"] + second["subtotal"] == 2 * 9900 + 13900 + 2 * 9900
    assert f["units"] == 5
    per = {p["product_id"]: (p["units"], p["revenue"], p["left"]) for p in f["products"]}
    assert per == {world.products[0].id: (4, 4 * 9900, 26), world.products[1].id: (1, 13900, 19)}
    minute = first["stream_second"] // 60
    assert len(f["minutes"]) >= minute + 1 and [m["minute"] for m in f["minutes"]] == list(range(len(f["minutes"])))
    assert sum(m["orders"] for m in f["minutes"]) == 2 and sum(m["revenue"] for m in f["minutes"]) == f["revenue"]
    assert f["minutes"][minute]["orders"] >= 1


async def test_a_transfer_unpaid_after_its_deadline_is_cancelled_and_its_units_come_back(
        app: web.Application, client: TestClient, world: World, db: AsyncSession) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await db.commit()
    heard: list[PurchaseEvent] = []

    async def listener(_app: web.Application, event: PurchaseEvent) -> None:
        heard.append(event)

    app[PURCHASE_LISTENERS].append(listener)
    token = await sign_in(client, "viewer")
    status, late, _ = await buy(client, token, world.live.id, order(world, payment_method="bank_transfer"))
    assert status == 201
    status, paid, _ = await buy(client, token, world.live.id, order(world, payment_method="bank_transfer"))
    assert status == 201
    status, cod, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201
    resp = await client.post(f"/api/v1/purchases/{paid['id']}/paid", headers={"X-CSRF-Token": token})
    assert resp.status == 403  # a viewer cannot say it is paid
    staff = await sign_in(client, "staff")
    assert (await client.post(f"/api/v1/purchases/{paid['id']}/paid", headers={"X-CSRF-Token": staff})).status == 200
    assert await sold(db, world.live.id, world.products[0].id) == 6
    pay_by = datetime.fromisoformat(late["payment"]["pay_by"])
    assert await expire_overdue(app, pay_by - timedelta(seconds=1)) == 0  # not yet
    heard.clear()
    after = pay_by + timedelta(seconds=1)
    assert await expire_overdue(app, after) == 1
    assert await expire_overdue(app, after) == 0  # once
    p = await (await fresh(db)).get(Purchase, late["id"])
    assert p is not None and p.status is OrderStatus.CANCELLED
    for other in (paid, cod):
        o = await db.get(Purchase, other["id"])
        assert o is not None and o.status is not OrderStatus.CANCELLED
    assert await sold(db, world.live.id, world.products[0].id) == 4
    assert await stock(db, world.products[0].id) == 96
    assert [(e.kind, e.purchase_id, e.stock_left) for e in heard] == [
        ("cancelled", late["id"], {world.products[0].id: 26})]


async def test_the_webhook_route_needs_a_signature_not_a_session(app: web.Application, client: TestClient,
                                                                 world: World, db: AsyncSession) -> None:
    gateway = SignedGateway()
    app[PAYMENT_PROVIDERS][gateway.name] = gateway
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world, payment_method="card"))
    assert status == 201
    raw = json.dumps({"orderId": body["id"], "paymentKey": "pk_9", "amount": body["total"], "status": "paid"}).encode()
    signed = {"X-Signature": hmac.new(gateway.secret, raw, hashlib.sha256).hexdigest(),
              "Content-Type": "application/json"}
    gateway_client = browser(client.server)  # the gateway: no cookie, no CSRF token
    try:
        url = "/api/v1/payments/testpay/webhook"
        resp = await gateway_client.post(url, data=raw, headers={**signed, "X-Signature": "0" * 64})
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_webhook"
        resp = await gateway_client.post("/api/v1/payments/nopay/webhook", data=raw, headers=signed)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "provider_not_found"
        resp = await gateway_client.post("/api/v1/payments/offline/webhook", data=raw, headers=signed)
        assert resp.status == 400  # bank transfers and cash are confirmed by staff, never by a webhook
        for _ in range(2):  # delivered twice: paid once
            resp = await gateway_client.post(url, data=raw, headers=signed)
            assert resp.status == 200 and await resp.json() == {"purchase_id": body["id"], "status": "paid"}
    finally:
        await gateway_client.close()
    p = await (await fresh(db)).get(Purchase, body["id"])
    assert p is not None and p.status is OrderStatus.PAID and p.payment_ref == "pk_9"
