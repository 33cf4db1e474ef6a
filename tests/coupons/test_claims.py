"""Drops and claims on the real database: first come, first served and exact under simultaneous taps; a
viewer never holds more than the limit; every refusal is clear and writes nothing; a planned drop is made
once however many processes try."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claiming, claims
from coupons.models import ClaimedCoupon, CouponDrop, CouponTemplate, DropState
from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.models import User
from tests.support import World, fresh


async def _claim(units: async_sessionmaker[AsyncSession], drop_id: int, user_id: int) -> str:
    try:
        async with units.begin() as db:
            user = await db.get(User, user_id)
            assert user is not None
            terms = await claiming.drop_terms(db, drop_id)
            await claiming.take(db, terms, user.id, user.role, utcnow())
        return "ok"
    except AppError as exc:
        return exc.code


async def _claimed(db: AsyncSession, drop_id: int) -> tuple[int, int]:
    await fresh(db)
    counter = await db.scalar(select(CouponDrop.claimed).where(CouponDrop.id == drop_id))
    rows = await db.scalar(select(func.count()).select_from(ClaimedCoupon).where(ClaimedCoupon.drop_id == drop_id))
    return int(counter or 0), int(rows or 0)


async def test_simultaneous_taps_never_claim_more_than_the_quantity(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop, crowd: list[User]) -> None:
    taps = [_claim(units, open_drop.id, u.id) for u in crowd for _ in range(2)]  # every viewer taps twice
    results = await asyncio.gather(*taps)
    assert results.count("ok") == 5
    assert set(results) <= {"ok", "all_claimed", "already_claimed"}
    assert await _claimed(db, open_drop.id) == (5, 5)
    holders = (await db.scalars(select(ClaimedCoupon.user_id).where(ClaimedCoupon.drop_id == open_drop.id))).all()
    assert len(set(holders)) == 5  # one each


async def test_a_viewer_holds_no_more_than_the_limit(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop, crowd: list[User]) -> None:
    assert await _claim(units, open_drop.id, crowd[0].id) == "ok"
    assert await _claim(units, open_drop.id, crowd[0].id) == "already_claimed"
    assert await _claimed(db, open_drop.id) == (1, 1)  # the refusal gave its counter step back


async def test_the_last_coupon_goes_then_everyone_is_told_all_claimed(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop, crowd: list[User]) -> None:
    for u in crowd[:5]:
        assert await _claim(units, open_drop.id, u.id) == "ok"
    assert await _claim(units, open_drop.id, crowd[5].id) == "all_claimed"
    assert await _claimed(db, open_drop.id) == (5, 5)


async def test_claims_close_with_their_window(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop, crowd: list[User]) -> None:
    async with units.begin() as s:
        d = await s.get(CouponDrop, open_drop.id)
        assert d is not None
        d.claim_closes_at = utcnow() - timedelta(seconds=1)
    assert await _claim(units, open_drop.id, crowd[0].id) == "claim_closed"
    assert await _claimed(db, open_drop.id) == (0, 0)


async def test_hosts_and_staff_do_not_claim(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop, world: World) -> None:
    assert await _claim(units, open_drop.id, world.host.id) == "viewers_only"
    assert await _claim(units, open_drop.id, world.staff.id) == "viewers_only"
    assert await _claim(units, 10**9, world.viewer.id) == "coupon_not_found"
    assert await _claimed(db, open_drop.id) == (0, 0)


async def test_a_drop_needs_a_live_broadcast(
        units: async_sessionmaker[AsyncSession], world: World, coupon_3000: CouponTemplate) -> None:
    with pytest.raises(AppError) as err:
        async with units.begin() as db:
            host = await db.get(User, world.other_host.id)
            assert host is not None
            await claims.drop_now(db, world.scheduled.id, coupon_3000.id, host, utcnow())
    assert err.value.code == "broadcast_not_live"


async def test_a_planned_drop_is_made_once_however_many_try(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World, coupon_3000: CouponTemplate) -> None:
    async with units.begin() as s:
        staff = await s.get(User, world.staff.id)
        assert staff is not None
        planned = await claims.plan_drop(s, world.live.id, coupon_3000.id, 0, staff, utcnow(), quantity=50)
    async with units() as s:
        due = await claims.due_planned(s, utcnow())
    assert planned.id in due

    async def release() -> bool:
        async with units.begin() as s:
            return await claims.release_planned(s, planned.id, utcnow()) is not None

    made = await asyncio.gather(*[release() for _ in range(6)])
    assert made.count(True) == 1
    await fresh(db)
    d = await db.get(CouponDrop, planned.id)
    assert d is not None and d.state is DropState.OPEN and d.claim_closes_at is not None


async def test_a_planned_minute_must_fall_within_the_broadcast(
        units: async_sessionmaker[AsyncSession], world: World, coupon_3000: CouponTemplate) -> None:
    with pytest.raises(AppError) as err:
        async with units.begin() as s:
            staff = await s.get(User, world.staff.id)
            assert staff is not None
            await claims.plan_drop(s, world.live.id, coupon_3000.id, 600, staff, utcnow())
    assert err.value.code == "invalid_minute"


async def test_template_terms_are_checked_all_at_once(db: AsyncSession, world: World) -> None:
    with pytest.raises(AppError) as err:
        await claims.save_template(db, world.market.id, claims.TemplateInput(
            name_ko="이상한 쿠폰", name_en="", kind="percent", value=150, min_order=-1))
    assert err.value.code == "invalid_percent"
    codes = {d["code"] for d in err.value.details}
    assert {"invalid_percent", "invalid_minimum"} <= codes
    await db.rollback()
