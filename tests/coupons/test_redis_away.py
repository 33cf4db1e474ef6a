"""Coupons and giveaways while Redis is away (a private `redis-server`, killed for real): a drop or a giveaway
the room cannot be told of does not stand — the host is answered `unavailable` and nothing is left behind —;
a planned drop goes back to its plan and is made when Redis is back. The machine's shared Redis is never
touched."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claims, live
from coupons.models import CouponDrop, CouponTemplate, DropState, Giveaway
from livecommerce.app import create_app
from livecommerce.config import Config, RedisConfig
from livecommerce.db import utcnow
from livecommerce.models import User
from tests.processes import until
from tests.sessions.test_bus_faults import PrivateRedis, health, private_redis
from tests.support import World, fresh, signed_in

from ..conftest import PG_URL

__all__ = ["private_redis"]  # the fixture, used by name


@pytest.fixture
def backend() -> str:
    """Once, on PostgreSQL when the run has it (as in CI), else on the SQLite file."""
    return "postgres" if PG_URL else "sqlite"


@pytest.fixture
async def on_private_redis(config: Config, private_redis: PrivateRedis, world: World) -> AsyncIterator[TestServer]:
    await private_redis.ready()
    cfg = dataclasses.replace(config, redis=RedisConfig(url=private_redis.url, prefix=config.redis.prefix))
    server = TestServer(create_app(cfg), host="127.0.0.1")
    await server.start_server()
    try:
        await until(lambda: health(server), lambda h: h[0] == 200, 10)
        yield server
    finally:
        await server.close()


async def _count(db: AsyncSession, model: type[CouponDrop] | type[Giveaway]) -> int:
    await fresh(db)
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_drop_or_a_giveaway_the_room_cannot_hear_does_not_stand(
        on_private_redis: TestServer, private_redis: PrivateRedis, world: World, db: AsyncSession,
        coupon_3000: CouponTemplate) -> None:
    template_id = coupon_3000.id
    host = await signed_in(on_private_redis, "host")
    try:
        assert (await host.call("join", {"broadcast_id": world.live.id}))["ok"]
        private_redis.kill()
        drop = await host.call("host:coupon_drop", {"broadcast_id": world.live.id, "template_id": template_id,
                                                    "quantity": 10})
        assert drop["ok"] is False and drop["error"]["code"] == "unavailable", drop
        assert await _count(db, CouponDrop) == 0
        started = await host.call("host:giveaway_start", {"broadcast_id": world.live.id, "prize_ko": "참기름 한 병",
                                                          "minutes": 3})
        assert started["ok"] is False and started["error"]["code"] == "unavailable", started
        assert await _count(db, Giveaway) == 0

        private_redis.start()
        await private_redis.ready()
        await until(lambda: health(on_private_redis), lambda h: h[0] == 200, 30)
        drop = await host.call("host:coupon_drop", {"broadcast_id": world.live.id, "template_id": template_id,
                                                    "quantity": 10})
        assert drop["ok"], drop  # the host taps again: this time it stands and the room hears it
        assert await _count(db, CouponDrop) == 1
    finally:
        await host.sio.disconnect()


async def test_a_planned_drop_the_room_cannot_hear_goes_back_to_its_plan(
        on_private_redis: TestServer, private_redis: PrivateRedis, units: async_sessionmaker[AsyncSession],
        world: World, db: AsyncSession, coupon_3000: CouponTemplate) -> None:
    app = on_private_redis.app
    async with units.begin() as s:
        staff = await s.get(User, world.staff.id)
        assert staff is not None
        planned = await claims.plan_drop(s, world.live.id, coupon_3000.id, 0, staff, utcnow(), quantity=10)
    private_redis.kill()
    await live.run_due(app, utcnow() + timedelta(minutes=1))
    await fresh(db)
    d = await db.get(CouponDrop, planned.id)
    assert d is not None and d.state is DropState.PLANNED and d.dropped_at is None
    private_redis.start()
    await private_redis.ready()
    await until(lambda: health(on_private_redis), lambda h: h[0] == 200, 30)
    await live.run_due(app, utcnow() + timedelta(minutes=1))
    await fresh(db)
    d = await db.get(CouponDrop, planned.id)
    assert d is not None and d.state is DropState.OPEN and d.dropped_at is not None


async def test_an_entry_made_while_redis_is_away_is_answered_as_made(
        on_private_redis: TestServer, private_redis: PrivateRedis, world: World, db: AsyncSession) -> None:
    host = await signed_in(on_private_redis, "host")
    fan = await signed_in(on_private_redis, "viewer")
    try:
        for who in (host, fan):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]
        started = await host.call("host:giveaway_start", {"broadcast_id": world.live.id, "prize_ko": "참기름 한 병",
                                                          "minutes": 3})
        assert started["ok"], started
        private_redis.kill()  # the entries figure cannot be counted now; the entry itself needs only the database
        entered = await fan.call("giveaway:enter", {"broadcast_id": world.live.id,
                                                    "giveaway_id": started["data"]["id"]})
        assert entered["ok"] and entered["data"]["number"] == 1, entered
    finally:
        for who in (host, fan):
            await who.sio.disconnect()
    await fresh(db)
    g = await db.get(Giveaway, started["data"]["id"])
    assert g is not None and g.entries == 1
