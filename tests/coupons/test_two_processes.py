"""Two server processes on one database (and, on the PostgreSQL backend, one Redis): claims stay exact across
both, a coupon raced by two purchases on the two processes is redeemed once, a drop made on one process
reaches the room on the other, and the draw made on one is announced on both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from coupons.models import ClaimedCoupon, ClaimState, CouponDrop, CouponTemplate
from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.models import User
from orders.models import Purchase
from tests.orders.support import order
from tests.support import World, browser_session, fresh, sign_in, signed_in


@contextlib.asynccontextmanager
async def two_processes(config: Config) -> AsyncIterator[list[TestServer]]:
    servers = [TestServer(create_app(config), host="127.0.0.1") for _ in range(2)]
    for s in servers:
        await s.start_server()
    try:
        yield servers
    finally:
        for s in servers:
            await s.close()


async def test_claims_across_two_processes_are_exact(config: Config, world: World, db: AsyncSession,
                                                     open_drop: CouponDrop, crowd: list[User]) -> None:
    names = [u.username for u in crowd]
    async with two_processes(config) as servers:
        async def tap(i: int, name: str) -> int:
            async with browser_session(servers[i % 2]) as http:
                token = await sign_in(http, name)  # type: ignore[arg-type]
                codes = []
                for attempt in range(2):  # each viewer taps twice, with two keys
                    resp = await http.post(f"/api/v1/drops/{open_drop.id}/claims", headers={
                        "X-CSRF-Token": token, "Idempotency-Key": f"{name}-{attempt}"})
                    codes.append(resp.status)
                return codes.count(201)

        got = await asyncio.gather(*[tap(i, n) for i, n in enumerate(names)])
    assert sum(got) == 5 and max(got) == 1  # five coupons, none twice to a viewer
    await fresh(db)
    assert await db.scalar(select(CouponDrop.claimed).where(CouponDrop.id == open_drop.id)) == 5
    assert await db.scalar(select(func.count()).select_from(ClaimedCoupon)) == 5


async def test_a_coupon_raced_by_two_purchases_on_two_processes_is_redeemed_once(
        config: Config, world: World, db: AsyncSession, open_drop: CouponDrop) -> None:
    async with two_processes(config) as servers:
        async with browser_session(servers[0]) as one, browser_session(servers[1]) as two:
            token_one = await sign_in(one, "viewer")  # type: ignore[arg-type]
            token_two = await sign_in(two, "viewer")  # type: ignore[arg-type]
            resp = await one.post(f"/api/v1/drops/{open_drop.id}/claims",
                                  headers={"X-CSRF-Token": token_one, "Idempotency-Key": "only"})
            claim_id = (await resp.json())["claim_id"]

            async def buy(http: object, token: str, key: str) -> tuple[int, str]:
                r = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases",  # type: ignore[attr-defined]
                                    json={**order(world), "coupons": [claim_id]},
                                    headers={"X-CSRF-Token": token, "Idempotency-Key": key})
                body = await r.json()
                return r.status, body.get("error", {}).get("code", "")

            results = await asyncio.gather(*[buy(one, token_one, f"a{i}") for i in range(3)],
                                           *[buy(two, token_two, f"b{i}") for i in range(3)])
    assert sorted(s for s, _ in results).count(201) == 1, results
    assert {c for s, c in results if s != 201} == {"coupon_used"}
    await fresh(db)
    assert await db.scalar(select(func.count()).select_from(Purchase)) == 1
    p = (await db.scalars(select(Purchase))).one()
    assert p.discount == 3000 and p.coupon_claim_id == claim_id
    c = await db.get(ClaimedCoupon, claim_id)
    assert c is not None and c.state is ClaimState.REDEEMED


async def test_a_drop_on_one_process_reaches_viewers_on_the_other(config: Config, world: World,
                                                                  coupon_3000: CouponTemplate,
                                                                  crowd: list[User]) -> None:
    if not config.redis.url:
        pytest.skip("needs Redis: runs on the PostgreSQL + Redis backend")
    async with two_processes(config) as servers:
        host = await signed_in(servers[0], "host")
        fans = [await signed_in(servers[1], "viewer"), await signed_in(servers[0], crowd[0].username)]
        try:
            for who in (host, *fans):
                assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]
            await asyncio.sleep(0.3)  # each process's Redis listener is subscribed
            ack = await host.call("host:coupon_drop", {"broadcast_id": world.live.id,
                                                       "template_id": coupon_3000.id})
            assert ack["ok"], ack
            for fan in fans:
                await fan.wait_for(lambda f=fan: any(e["t"] == "coupon:drop" for e in f.events))
            claim = await fans[0].call("coupon:claim", {"broadcast_id": world.live.id, "drop_id": ack["data"]["id"],
                                                        "idempotency_key": "x"})
            assert claim["ok"], claim
            await fans[1].wait_for(lambda: any(c["left"].get(str(ack["data"]["id"])) == 499
                                               for c in fans[1].other.get("coupons", [])), limit=10)
            start = await host.call("host:giveaway_start", {"broadcast_id": world.live.id, "prize_ko": "만두",
                                                            "winners": 1, "minutes": 5})
            for fan in fans:
                entered = await fan.call("giveaway:enter", {"broadcast_id": world.live.id,
                                                            "giveaway_id": start["data"]["id"]})
                assert entered["ok"], entered
            drawn = await host.call("host:giveaway_draw", {"broadcast_id": world.live.id,
                                                           "giveaway_id": start["data"]["id"]})
            assert drawn["ok"], drawn
            for fan in fans:
                await fan.wait_for(lambda f=fan: any(e["t"] == "giveaway:drawn" for e in f.events))
        finally:
            for who in (host, *fans):
                await who.sio.disconnect()
