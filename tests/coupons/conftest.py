"""Fixtures for coupons and giveaways, named after the state they set up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claims
from coupons.models import CouponDrop, CouponTemplate
from livecommerce.accounts import create_user
from livecommerce.config import Config
from livecommerce.db import make_engine, make_sessionmaker, utcnow
from livecommerce.models import Role, User
from tests.support import PASSWORD, World


@pytest.fixture
async def units(config: Config) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Units of work of their own (one transaction each), as the server's handlers have."""
    engine = make_engine(config.database)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def coupon_3000(db: AsyncSession, world: World) -> CouponTemplate:
    """A market's coupon: 3,000 won off, no minimum, one per viewer, 10-minute claims."""
    t = await claims.save_template(db, world.market.id, claims.TemplateInput(
        name_ko="3천원 할인", name_en="3,000 won off", kind="fixed", value=3000, quantity=500))
    await db.commit()
    return t


@pytest.fixture
async def open_drop(units: async_sessionmaker[AsyncSession], world: World, coupon_3000: CouponTemplate) -> CouponDrop:
    """Five of the 3,000-won coupons dropped just now in the live broadcast by its host."""
    async with units.begin() as db:
        host = await db.get(User, world.host.id)
        assert host is not None
        return await claims.drop_now(db, world.live.id, coupon_3000.id, host, utcnow(), quantity=5)


@pytest.fixture
async def crowd(db: AsyncSession) -> list[User]:
    """Twelve signed-up viewers."""
    users = [await create_user(db, username=f"fan{i}", role=Role.VIEWER, password=PASSWORD, display_name=f"팬{i}")
             for i in range(12)]
    await db.commit()
    return users
