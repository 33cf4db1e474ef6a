"""The pricing hook, with a small real pricer registered in the real app: its discount is recorded on the
purchase and shared over its lines, the totals and the figures are net of it, a refusal writes nothing
and is told again to every retry (over HTTP and the socket), and releasers run inside the transaction
that calls a purchase off. On each backend: on PostgreSQL the purchase runs on asyncpg's own connection,
on SQLite on a SQLAlchemy one, and the same pricer serves both."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from livecommerce.config import Config
from livecommerce.db import make_engine, make_sessionmaker, utcnow
from livecommerce.errors import AppError, error_statuses
from livecommerce.hot import NativeConnection
from livecommerce.models import Product
from livecommerce.uow import UnitOfWork
from orders.fulfilment import expire_overdue
from orders.models import IdempotencyKey, KeyState, LineupSale, OrderStatus, Purchase, PurchaseLine
from orders.payments import default_providers
from orders.placing import OrderInput, place_purchase
from orders.pricing import Adjustment, PricingContext, check_adjustment, pricing_hooks
from orders.rules import PricedLine, Wanted
from orders.settings import seed_demo_order_settings
from tests.support import World, fresh, sign_in, socket_for

from .support import browser, buy, order

LIVE10, GONE = 7, 13  # claimed-coupon ids the test pricer knows


class CouponGone(AppError):
    code = "coupon_not_applicable"
    message = "This coupon can no longer be used."


@dataclass
class Coupons:
    """A pricer as the coupons domain writes one. Claimed coupon 7 ("LIVE10") takes 10 % off the dumpling
    stall's goods, at most 5,000 won, and is marked used in the purchase's transaction (here: a counter
    kept in a product's stock, so the test can see it move or not); claimed coupon 13 is marked used,
    then found to be no longer valid."""

    world: World
    seen: list[tuple[UnitOfWork, PricingContext]] = field(default_factory=list)
    released: list[tuple[int, int | None, datetime, set[OrderStatus], set[OrderStatus]]] = field(default_factory=list)
    outside: AsyncSession | None = None  # another connection, to look at the database from outside

    @property
    def counter(self) -> int:
        return self.world.products[2].id

    async def use(self, uow: UnitOfWork) -> None:
        await uow.execute(update(Product).where(Product.id == self.counter).values(stock=Product.stock - 1))

    async def price(self, uow: UnitOfWork, ctx: PricingContext) -> Adjustment | None:
        self.seen.append((uow, ctx))
        if GONE in ctx.coupon_claim_ids:
            await self.use(uow)
            raise CouponGone()
        if LIVE10 not in ctx.coupon_claim_ids and not ctx.suggest:
            return None
        shares, budget = [], 5000
        for line in ctx.lines:
            share = min(line.line_total // 10, budget) if line.merchant_id == self.world.merchant.id else 0
            budget -= share
            shares.append(share)
        await self.use(uow)
        return Adjustment(sum(shares), tuple(shares), LIVE10, "LIVE10")

    async def release(self, uow: UnitOfWork, purchase_id: int, coupon_claim_id: int | None, now: datetime) -> None:
        inside = (await uow.execute(select(PurchaseLine.status).where(PurchaseLine.purchase_id == purchase_id)))
        seen_inside = {OrderStatus(s) for s in inside.scalars().all()}
        seen_outside: set[OrderStatus] = set()
        if self.outside is not None:  # what is committed so far: the lines as they were
            db = await fresh(self.outside)
            rows = await db.scalars(select(PurchaseLine.status).where(PurchaseLine.purchase_id == purchase_id))
            seen_outside = set(rows.all())
            await db.rollback()
        self.released.append((purchase_id, coupon_claim_id, now, seen_inside, seen_outside))


@pytest.fixture
def coupons(app: web.Application, world: World) -> Coupons:
    """The app with the test pricer and releaser as its only ones (in place of the coupons domain's: what
    is tested here is the hook orders offers), and the refusal's HTTP status at the edge."""
    pricer = Coupons(world)
    hooks = pricing_hooks(app)
    hooks.pricers[:] = [pricer.price]
    hooks.releasers[:] = [pricer.release]
    error_statuses(app)[CouponGone.code] = 409
    return pricer


async def count(db: AsyncSession, model: Any) -> int:
    return int(await (await fresh(db)).scalar(select(func.count()).select_from(model)) or 0)


async def stock(db: AsyncSession, product_id: int) -> int:
    p = await (await fresh(db)).get(Product, product_id)
    assert p is not None
    return p.stock


def two_stalls(world: World, **over: Any) -> dict[str, Any]:
    """Two dumpling packs (19,800 won at the live price) and a bottle of sesame oil (13,900 won)."""
    return order(world, lines=[{"product_id": world.products[0].id, "quantity": 2},
                               {"product_id": world.products[1].id, "quantity": 1}], **over)


# -- the discount ----------------------------------------------------------------------------------

async def test_a_pricers_discount_is_recorded_on_the_purchase_and_its_lines(
        client: TestClient, world: World, db: AsyncSession, coupons: Coupons, backend: str) -> None:
    token = await sign_in(client, "viewer")
    key = str(uuid.uuid4())
    status, body, _ = await buy(client, token, world.live.id, two_stalls(world, coupons=[LIVE10]), key)
    assert status == 201, body
    assert body["subtotal"] == 33700 and body["discount"] == 1980 and body["coupon_code"] == "LIVE10"
    assert body["total"] == 33700 - 1980 + body["delivery_fee"]
    assert [(li["product_id"], li["line_total"], li["discount"]) for li in body["lines"]] == [
        (world.products[0].id, 19800, 1980), (world.products[1].id, 13900, 0)]
    assert body["payment"]["instructions"]["amount"] == body["total"]

    uow, ctx = coupons.seen[-1]
    assert isinstance(uow, NativeConnection if backend == "postgres" else AsyncConnection)
    assert (ctx.user_id, ctx.broadcast_id, ctx.market_id) == (world.viewer.id, world.live.id, world.market.id)
    assert ctx.lines == (PricedLine(world.products[0].id, world.merchant.id, 2, 9900, 12900),
                         PricedLine(world.products[1].id, world.other_merchant.id, 1, 13900, 18000))
    assert (ctx.subtotal, ctx.coupon_claim_ids, ctx.suggest) == (33700, (LIVE10,), False)

    await fresh(db)
    p = await db.get(Purchase, body["id"])
    assert p is not None
    assert (p.subtotal, p.discount, p.total, p.coupon_claim_id, p.coupon_code) == (
        33700, 1980, body["total"], LIVE10, "LIVE10")
    lines = (await db.scalars(select(PurchaseLine).where(PurchaseLine.purchase_id == p.id)
                              .order_by(PurchaseLine.product_id))).all()
    assert [(li.line_total, li.discount) for li in lines] == [(19800, 1980), (13900, 0)]
    assert await stock(db, coupons.counter) == 4  # the pricer's own write committed with the purchase

    again = await client.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=two_stalls(world, coupons=[LIVE10]),
                              headers={"X-CSRF-Token": token, "Idempotency-Key": key})
    assert again.status == 201 and await again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    assert len(coupons.seen) == 1 and await count(db, Purchase) == 1  # a retry prices nothing again


async def test_without_coupons_the_pricer_changes_nothing(client: TestClient, world: World, db: AsyncSession,
                                                          coupons: Coupons) -> None:
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, two_stalls(world))
    assert status == 201
    assert body["discount"] == 0 and body["coupon_code"] is None and body["total"] == 33700 + body["delivery_fee"]
    assert [li["discount"] for li in body["lines"]] == [0, 0]
    assert coupons.seen[-1][1].coupon_claim_ids == ()
    status, picked, _ = await buy(client, token, world.live.id, two_stalls(world, suggest_coupon=True))
    assert status == 201 and picked["discount"] == 1980  # asked to pick the best coupon: the pricer did
    assert coupons.seen[-1][1].suggest is True


async def test_the_coupons_are_part_of_the_request_a_key_stands_for(app: web.Application, client: TestClient,
                                                                   world: World, db: AsyncSession) -> None:
    """With no pricer registered nothing is taken off; an order is the same request with or without an
    empty `coupons`, and another one with coupons picked."""
    pricing_hooks(app).pricers.clear()
    token = await sign_in(client, "viewer")
    status, first, _ = await buy(client, token, world.live.id, order(world, coupons=[]), "k-c")
    assert status == 201 and first["discount"] == 0
    status, again, headers = await buy(client, token, world.live.id, order(world, suggest_coupon=False), "k-c")
    assert status == 201 and again == first and headers["Idempotent-Replayed"] == "true"
    status, other, _ = await buy(client, token, world.live.id, order(world, coupons=[LIVE10]), "k-c")
    assert status == 422 and other["error"]["code"] == "idempotency_key_reused"
    status, too_many, _ = await buy(client, token, world.live.id, order(world, coupons=[1, 2, 3, 4, 5, 6]))
    assert status == 422 and too_many["error"]["details"][0]["field"] == "coupons"
    assert await count(db, Purchase) == 1


async def test_the_pricer_runs_in_an_orm_sessions_transaction_too(config: Config, world: World, db: AsyncSession,
                                                                  coupons: Coupons) -> None:
    engine = make_engine(config.database)
    viewer = await db.get(type(world.viewer), world.viewer.id)
    assert viewer is not None
    db.expunge(viewer)
    order_in = OrderInput([Wanted(world.products[0].id, 1)], "김민지", "010-1234-5678", "04524", "서울", "", "", "cod",
                          coupons=(LIVE10,))
    try:
        async with make_sessionmaker(engine).begin() as s:
            placed = await place_purchase(s, user=viewer, broadcast_id=world.live.id, order=order_in, now=utcnow(),
                                          config=config, providers=default_providers(), pricers=[coupons.price])
        assert isinstance(coupons.seen[-1][0], AsyncSession)
        assert (placed.purchase.discount, [li.discount for li in placed.purchase.lines]) == (990, [990])
        assert placed.purchase.total == 9900 - 990 + placed.purchase.delivery_fee
    finally:
        await engine.dispose()
    p = await (await fresh(db)).get(Purchase, placed.purchase.id)
    assert p is not None and p.discount == 990 and p.coupon_code == "LIVE10"


# -- a refusal -------------------------------------------------------------------------------------

async def test_a_pricers_refusal_writes_nothing_and_every_retry_is_told_the_same(
        server: TestServer, http: TestClient, world: World, db: AsyncSession, coupons: Coupons) -> None:
    token = await sign_in(http, "viewer")
    body = two_stalls(world, coupons=[GONE])
    first = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=body,
                            headers={"X-CSRF-Token": token, "Idempotency-Key": "gone-1"})
    raw = await first.read()
    assert first.status == 409, raw
    error = (await first.json())["error"]
    assert error["code"] == "coupon_not_applicable" and error["message"] == "This coupon can no longer be used."

    assert await count(db, Purchase) == 0 and await count(db, PurchaseLine) == 0
    assert await count(db, LineupSale) == 0  # no unit was taken, not even a counter row made
    assert await stock(db, world.products[0].id) == 100 and await stock(db, world.products[1].id) == 50
    assert await stock(db, coupons.counter) == 5  # the pricer's own write rolled back with the rest
    key = await (await fresh(db)).scalar(select(IdempotencyKey).where(IdempotencyKey.key == "gone-1"))
    assert key is not None and key.state is KeyState.DONE and key.status_code == 409 and key.purchase_id is None

    again = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=body,
                            headers={"X-CSRF-Token": token, "Idempotency-Key": "gone-1"})
    assert again.status == 409 and await again.read() == raw and again.headers["Idempotent-Replayed"] == "true"
    cookie = next(c.value for c in http.session.cookie_jar if c.key == "lc_session")
    sio = await socket_for(f"http://127.0.0.1:{server.port}", cookie)
    try:
        ack = await sio.call("buy", {**body, "broadcast_id": world.live.id, "idempotency_key": "gone-1"},
                             namespace="/live", timeout=10)
    finally:
        await sio.disconnect()
    assert ack == {"ok": False, "error": error}
    assert len(coupons.seen) == 1  # the retries were told the kept answer; nothing was priced again
    assert await count(db, Purchase) == 0


# -- what it adds up to ----------------------------------------------------------------------------

async def test_the_figures_and_the_export_are_net_of_discounts(server: TestServer, http: TestClient, world: World,
                                                               db: AsyncSession, coupons: Coupons) -> None:
    viewer = browser(server)
    try:
        tv = await sign_in(viewer, "viewer")
        status, with_coupon, _ = await buy(viewer, tv, world.live.id, two_stalls(world, coupons=[LIVE10]))
        assert status == 201
        status, plain, _ = await buy(viewer, tv, world.live.id, order(world))
        assert status == 201
    finally:
        await viewer.close()
    await sign_in(http, "host")
    f = await (await http.get(f"/api/v1/broadcasts/{world.live.id}/figures")).json()
    assert f["revenue"] == (33700 - 1980) + 19800
    per = {p["product_id"]: (p["units"], p["revenue"]) for p in f["products"]}
    assert per == {world.products[0].id: (4, 2 * 19800 - 1980), world.products[1].id: (1, 13900)}
    assert sum(m["revenue"] for m in f["minutes"]) == f["revenue"]

    await sign_in(http, "merchant")
    lines = await (await http.get("/api/v1/merchant/lines")).json()
    assert sorted((x["line"]["line_total"], x["line"]["discount"]) for x in lines) == [(19800, 0), (19800, 1980)]
    html = await (await http.get("/merchant/orders")).text()
    assert "17,820원" in html and "쿠폰 −1,980원" in html  # what the stall is owed for the line

    await sign_in(http, "staff")
    text = (await (await http.get("/staff/orders.csv")).read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    total_at, discount_at = rows[0].index("금액"), rows[0].index("상품별 할인")
    got = sorted((int(r[0]), r[9], int(r[total_at]), int(r[discount_at])) for r in rows[1:])
    assert got == sorted([(with_coupon["id"], "고기만두", 19800, 1980), (with_coupon["id"], "참기름", 13900, 0),
                          (plain["id"], "고기만두", 19800, 0)])


# -- giving back -----------------------------------------------------------------------------------

async def test_releasers_run_inside_the_transaction_that_calls_a_purchase_off(
        app: web.Application, server: TestServer, http: TestClient, world: World, db: AsyncSession,
        coupons: Coupons) -> None:
    await seed_demo_order_settings(db, world.market.id)
    await db.commit()
    coupons.outside = db
    token = await sign_in(http, "viewer")
    status, cancelled, _ = await buy(http, token, world.live.id, order(world, coupons=[LIVE10]))
    assert status == 201 and cancelled["discount"] == 1980
    resp = await http.post(f"/api/v1/purchases/{cancelled['id']}/cancel", headers={"X-CSRF-Token": token})
    assert resp.status == 200
    assert [(r[0], r[1], r[3], r[4]) for r in coupons.released] == [
        (cancelled["id"], LIVE10, {OrderStatus.CANCELLED}, {OrderStatus.PLACED})]  # not committed yet when it ran

    # a transfer never paid: the sweep calls it off, and gives the coupon back in the same transaction
    status, unpaid, _ = await buy(http, token, world.live.id, order(world, payment_method="bank_transfer",
                                                                    coupons=[LIVE10]))
    assert status == 201
    after = datetime.fromisoformat(unpaid["payment"]["pay_by"]) + timedelta(seconds=1)
    assert await expire_overdue(app, after) == 1
    assert [(r[0], r[1], r[2], r[3]) for r in coupons.released[1:]] == [
        (unpaid["id"], LIVE10, after, {OrderStatus.CANCELLED})]

    # a purchase called off line by line: only the last line calls it off
    status, two, _ = await buy(http, token, world.live.id, two_stalls(world))
    assert status == 201
    staff = await sign_in(http, "staff")
    for i, line in enumerate(two["lines"]):
        resp = await http.post(f"/api/v1/purchase-lines/{line['id']}/status", json={"status": "cancelled"},
                               headers={"X-CSRF-Token": staff})
        assert resp.status == 200, await resp.text()
        assert len(coupons.released) == (2 if i == 0 else 3)
    assert coupons.released[-1][:2] == (two["id"], None)  # it used no coupon: told so
    await fresh(db)
    for p in (cancelled, unpaid, two):
        row = await db.get(Purchase, p["id"])
        assert row is not None and row.status is OrderStatus.CANCELLED


# -- what a pricer may answer (no server) ----------------------------------------------------------

def test_an_adjustment_that_breaks_its_promises_is_refused() -> None:
    lines = (PricedLine(1, 1, 2, 9900, 12900), PricedLine(2, 2, 1, 13900, 18000))
    ctx = PricingContext(1, 1, 1, lines, 33700, (), False, utcnow())
    check_adjustment(Adjustment(3000, (1000, 2000), 7, "A"), ctx)
    check_adjustment(Adjustment(0, (0, 0)), ctx)
    for bad in (Adjustment(-1, (-1, 0)), Adjustment(33701, (19801, 13900)), Adjustment(3000, (3000,)),
                Adjustment(3000, (1000, 1000)), Adjustment(20000, (19900, 100))):
        with pytest.raises(ValueError):
            check_adjustment(bad, ctx)
