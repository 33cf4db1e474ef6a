"""Buying after the show, from its replay: at the product's regular price (never the live price), the show's
stock rules unchanged, the purchase still the broadcast's; and not at all without a replay."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from orders.figures import ProductFigures
from orders.models import LineupSale, Purchase
from orders.report import top_products
from orders.rules import Offer, SaleTerms, Wanted, price_basket, sale_terms
from sessions.models import Broadcast, BroadcastState
from tests.support import World, fresh, sign_in

from .support import buy, order

OFFERS = {1: Offer(1, 7, live_price=9900, usual_price=12900, left=3), 2: Offer(2, 8, 13900, 18000, 0)}


def test_a_broadcast_sells_live_then_from_its_replay_at_the_regular_price() -> None:
    assert sale_terms("live", "") is SaleTerms.LIVE
    assert sale_terms("live", "https://cdn.example/replay.m3u8") is SaleTerms.LIVE
    assert sale_terms("ended", "https://cdn.example/replay.m3u8") is SaleTerms.AFTER_SHOW
    for state in ("ended", "scheduled", "lobby", "missed", "cancelled"):
        assert sale_terms(state, "") is None
    for state in ("scheduled", "lobby", "missed", "cancelled"):
        assert sale_terms(state, "https://cdn.example/replay.m3u8") is None


def test_after_the_show_a_basket_is_priced_at_the_regular_price() -> None:
    live = price_basket([Wanted(1, 2)], OFFERS, max_quantity=10)
    after = price_basket([Wanted(1, 2)], OFFERS, max_quantity=10, terms=SaleTerms.AFTER_SHOW)
    assert (live.subtotal, live.lines[0].unit_price) == (19800, 9900)
    assert (after.subtotal, after.lines[0].unit_price, after.lines[0].usual_price) == (25800, 12900, 12900)
    assert after.savings == 0
    for terms in SaleTerms:  # the same stock rule either way
        try:
            price_basket([Wanted(1, 4)], OFFERS, max_quantity=10, terms=terms)
        except Exception as exc:
            assert getattr(exc, "code", "") == "not_enough_stock"
        else:
            raise AssertionError("more than is left was sold")


def test_top_products_are_the_best_sellers_by_revenue() -> None:
    rows = [ProductFigures(i, f"p{i}", f"p{i}", units, revenue, 10, 0)
            for i, units, revenue in ((1, 0, 0), (2, 3, 30000), (3, 1, 50000), (4, 5, 30000))]
    assert [p.product_id for p in top_products(rows)] == [3, 4, 2]
    assert [p.product_id for p in top_products(rows, 1)] == [3]


async def _ended(db: AsyncSession, world: World, recording_url: str) -> None:
    await db.execute(update(Broadcast).where(Broadcast.id == world.live.id).values(
        state=BroadcastState.ENDED, ended_at=world.live.starts_at + timedelta(minutes=60), recording_url=recording_url))
    await db.commit()


async def test_a_purchase_from_the_replay_is_at_the_regular_price_and_the_broadcasts(
        client: TestClient, world: World, db: AsyncSession) -> None:
    await _ended(db, world, "https://cdn.example/replay.m3u8")
    checkout = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/checkout")).json()
    assert checkout["open"] is True and checkout["after_show"] is True
    assert {i["product_id"]: i["live_price"] for i in checkout["items"]} == {
        world.products[0].id: 12900, world.products[1].id: 18000}
    token = await sign_in(client, "viewer")
    page = await (await client.get(f"/live/{world.live.id}/buy?lang=en")).text()
    assert "Buy at the regular price" in page and 'data-price="12900"' in page and 'data-price="9900"' not in page
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 201, body
    assert body["broadcast_id"] == world.live.id and body["subtotal"] == 25800
    assert [(li["unit_price"], li["quantity"]) for li in body["lines"]] == [(12900, 2)]
    await fresh(db)
    p = await db.get(Purchase, body["id"])
    assert p is not None and p.broadcast_id == world.live.id and p.subtotal == 25800
    sale = await db.get(LineupSale, (world.live.id, world.products[0].id))
    assert sale is not None and sale.sold == 2  # taken from what the show set aside, as during the show


async def test_without_a_replay_an_ended_broadcast_sells_nothing(client: TestClient, world: World,
                                                                  db: AsyncSession) -> None:
    await _ended(db, world, "")
    checkout = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/checkout")).json()
    assert checkout["open"] is False and checkout["after_show"] is False
    token = await sign_in(client, "viewer")
    status, body, _ = await buy(client, token, world.live.id, order(world))
    assert status == 409 and body["error"]["code"] == "broadcast_not_live"
