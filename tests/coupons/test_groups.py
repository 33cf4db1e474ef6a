"""Taps taken in groups: one transaction takes the coupons of many viewers at once and moves the drop's counter
once, as far as what is left allows; the taps that came too late are refused and leave no row; each tap's
answer is kept with its key, refusals included; a key a retry took over is not answered by the group."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claiming, claims
from coupons.claiming import AllClaimed, AlreadyClaimed, Ask, ClaimClosed, Claimed, Got, ViewersOnly
from coupons.models import ClaimedCoupon, CouponDrop, CouponTemplate
from livecommerce.db import utcnow
from livecommerce.models import Role, User
from orders import rules as order_rules
from orders.connections import statements, transaction
from orders.keys import claim_key
from orders.models import IdempotencyKey
from tests.support import World, fresh


@pytest.fixture
async def viewers(db: AsyncSession, crowd: list[User]) -> list[User]:
    """The crowd as the server holds accounts: read once, detached (no lazy reads later)."""
    ids = [u.id for u in crowd]
    await fresh(db)
    users = list((await db.scalars(select(User).where(User.id.in_(ids)).order_by(User.id))).all())
    db.expunge_all()
    return users


async def _rows(db: AsyncSession, drop_id: int) -> tuple[int, list[tuple[int, int]]]:
    await fresh(db)
    counter = await db.scalar(select(CouponDrop.claimed).where(CouponDrop.id == drop_id))
    rows = (await db.execute(select(ClaimedCoupon.user_id, ClaimedCoupon.seq)
                             .where(ClaimedCoupon.drop_id == drop_id).order_by(ClaimedCoupon.id))).all()
    return int(counter or 0), [(r[0], r[1]) for r in rows]


async def _group(server: TestServer, drop_id: int, asks: list[Ask]) -> tuple[list[object], int]:
    app = server.app
    async with transaction(app) as uow:
        terms = await claiming.drop_terms(uow, drop_id)
        outcomes, count = await claiming.take_many(uow, terms, asks, utcnow())
    return list(outcomes), count


async def test_a_group_larger_than_what_is_left_takes_the_rest_in_the_order_it_came(
        server: TestServer, db: AsyncSession, open_drop: CouponDrop, viewers: list[User]) -> None:
    asks = [Ask(u.id, Role.VIEWER) for u in viewers[:8]]
    outcomes, count = await _group(server, open_drop.id, asks)
    assert count == 5
    assert [type(o) for o in outcomes] == [Claimed] * 5 + [AllClaimed] * 3
    counter, rows = await _rows(db, open_drop.id)
    assert counter == 5 and rows == [(u.id, 1) for u in viewers[:5]]  # the late taps' rows are gone

    outcomes, count = await _group(server, open_drop.id, [Ask(u.id, Role.VIEWER) for u in viewers[8:]])
    assert count == 5 and all(isinstance(o, AllClaimed) for o in outcomes)
    assert await _rows(db, open_drop.id) == (counter, rows)


async def test_in_a_group_each_viewer_is_answered_for_themselves(
        server: TestServer, db: AsyncSession, world: World, open_drop: CouponDrop, viewers: list[User]) -> None:
    assert isinstance((await _group(server, open_drop.id, [Ask(viewers[0].id, Role.VIEWER)]))[0][0], Claimed)
    outcomes, count = await _group(server, open_drop.id, [
        Ask(viewers[1].id, Role.VIEWER), Ask(world.host.id, Role.HOST), Ask(viewers[0].id, Role.VIEWER),
        Ask(viewers[2].id, Role.VIEWER)])
    assert [type(o) for o in outcomes] == [Claimed, ViewersOnly, AlreadyClaimed, Claimed]
    assert count == 3
    assert (await _rows(db, open_drop.id))[1] == [(viewers[0].id, 1), (viewers[1].id, 1), (viewers[2].id, 1)]


async def test_a_group_after_the_window_is_refused_whole(
        server: TestServer, units: async_sessionmaker[AsyncSession], db: AsyncSession, open_drop: CouponDrop,
        viewers: list[User]) -> None:
    async with units.begin() as s:
        await s.execute(update(CouponDrop).where(CouponDrop.id == open_drop.id)
                        .values(claim_closes_at=utcnow() - timedelta(seconds=1)))
    outcomes, _ = await _group(server, open_drop.id, [Ask(u.id, Role.VIEWER) for u in viewers[:3]])
    assert all(isinstance(o, ClaimClosed) for o in outcomes)
    assert await _rows(db, open_drop.id) == (0, [])


async def test_a_viewer_allowed_two_gets_the_second_slot_then_no_more(
        server: TestServer, units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World,
        viewers: list[User]) -> None:
    async with units.begin() as s:
        t = await claims.save_template(s, world.market.id, claims.TemplateInput(
            name_ko="두 장", name_en="Two each", kind="fixed", value=1000, quantity=10, per_viewer_limit=2))
        host = await s.get(User, world.host.id)
        assert host is not None
        drop = await claims.drop_now(s, world.live.id, t.id, host, utcnow(), quantity=10)
    for _ in range(3):
        outcomes, _ = await _group(server, drop.id, [Ask(viewers[0].id, Role.VIEWER), Ask(viewers[1].id, Role.VIEWER)])
    assert [type(o) for o in outcomes] == [AlreadyClaimed, AlreadyClaimed]
    counter, rows = await _rows(db, drop.id)
    assert counter == 4 and sorted(rows) == sorted([(viewers[0].id, 1), (viewers[0].id, 2), (viewers[1].id, 1),
                                                    (viewers[1].id, 2)])


async def test_simultaneous_taps_through_the_groups_are_exact_and_each_answer_is_kept(
        server: TestServer, db: AsyncSession, open_drop: CouponDrop, viewers: list[User]) -> None:
    app = server.app

    async def tap(user: User, key: str) -> tuple[int, str]:
        try:
            answer = await claiming.claim_once(app, user, open_drop.id, key)
        except claiming.AllClaimed:  # refused by the gate before its key was taken (nothing kept)
            return 409, "gate"
        return (201 if isinstance(answer, Got) else answer.status), answer.body

    taps = [(u, f"{u.username}-{k}") for k in range(2) for u in viewers]  # each viewer taps twice
    answers = await asyncio.gather(*[tap(u, key) for u, key in taps])
    assert [s for s, _ in answers].count(201) == 5
    counter, rows = await _rows(db, open_drop.id)
    assert counter == 5 and len({u for u, _ in rows}) == 5 and len(rows) == 5
    for (user, key), (status, body) in zip(taps, answers, strict=True):
        if body == "gate":
            continue
        again = await claiming.claim_once(app, user, open_drop.id, key)  # a retry: the same answer
        assert again.replayed and again.body == body and (201 if isinstance(again, Got) else again.status) == status


async def test_a_key_taken_over_meanwhile_is_not_answered_by_the_group(
        server: TestServer, db: AsyncSession, open_drop: CouponDrop, viewers: list[User]) -> None:
    app = server.app
    fingerprint = order_rules.fingerprint("POST", f"/api/v1/drops/{open_drop.id}/claims", {})
    async with statements(app) as uow:
        kept = await claim_key(uow, viewers[0].id, "k0", fingerprint, utcnow(), 30)
        stolen = await claim_key(uow, viewers[1].id, "k1", fingerprint, utcnow(), 30)
    async with transaction(app) as uow:  # a retry took viewers[1]'s key over: its token moved
        await uow.execute(update(IdempotencyKey).where(IdempotencyKey.id == stolen.key_id).values(token="x" * 32))
    async with transaction(app) as uow:
        terms = await claiming.drop_terms(uow, open_drop.id)
    groups = app[claiming.GROUPS]
    results = await asyncio.gather(groups.claim(terms, viewers[0], kept), groups.claim(terms, viewers[1], stolen),
                                   return_exceptions=True)
    assert isinstance(results[0], Got)
    assert isinstance(results[1], claiming.KeyLost)
    counter, rows = await _rows(db, open_drop.id)
    assert counter == 1 and rows == [(viewers[0].id, 1)]  # the lost tap's coupon went back with its group


async def test_a_template_drop_of_one_goes_to_one_of_many(
        server: TestServer, units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World,
        coupon_3000: CouponTemplate, viewers: list[User]) -> None:
    async with units.begin() as s:
        host = await s.get(User, world.host.id)
        assert host is not None
        template_id = await s.scalar(select(CouponTemplate.id).where(CouponTemplate.name_ko == "3천원 할인"))
        assert template_id is not None
        drop = await claims.drop_now(s, world.live.id, template_id, host, utcnow(), quantity=1)
    answers = await asyncio.gather(*[claiming.claim_once(server.app, u, drop.id, f"one-{u.id}") for u in viewers],
                                   return_exceptions=True)
    assert sum(isinstance(a, Got) for a in answers) == 1
    assert all(isinstance(a, Got) or getattr(a, "error", a).code == "all_claimed" for a in answers)
    assert (await _rows(db, drop.id))[0] == 1
    assert await db.scalar(select(func.count()).select_from(ClaimedCoupon).where(ClaimedCoupon.drop_id == drop.id)) == 1


async def test_taps_beyond_the_coupons_left_wait_their_turn_and_take_no_key(
        server: TestServer, db: AsyncSession, open_drop: CouponDrop, viewers: list[User]) -> None:
    """Five coupons; one claimed already. Eleven viewers tap at once: four try (one per coupon left) and win,
    the seven others wait, then are refused by the gate without a key written or a transaction run."""
    app = server.app
    assert isinstance(await claiming.claim_once(app, viewers[0], open_drop.id, "first"), Got)
    answers = await asyncio.gather(*[claiming.claim_once(app, u, open_drop.id, f"k{u.id}") for u in viewers[1:]],
                                   return_exceptions=True)
    assert sum(isinstance(a, Got) for a in answers) == 4
    refused = [a for a in answers if not isinstance(a, Got)]
    assert len(refused) == 7 and all(isinstance(a, claiming.AllClaimed) for a in refused)  # raised: nothing kept
    await fresh(db)
    assert await db.scalar(select(func.count()).select_from(IdempotencyKey)) == 5
    assert (await _rows(db, open_drop.id))[0] == 5
