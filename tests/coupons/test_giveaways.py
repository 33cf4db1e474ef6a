"""Giveaways on the real database: one entry each, numbered; only viewers enter; the list is fixed and its
digest published at close; the draw is made once, derived from the committed seed, and verifies; every bad
case is refused with nothing changed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import draw, giveaways
from coupons.models import EntryMode, Giveaway, GiveawayEntry, GiveawayState, GiveawayWinner
from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.models import User
from tests.support import World, fresh


async def _start(units: async_sessionmaker[AsyncSession], world: World, winners: int = 2,
                 mode: EntryMode = EntryMode.BUTTON, keyword: str = "") -> Giveaway:
    async with units.begin() as db:
        host = await db.get(User, world.host.id)
        assert host is not None
        return await giveaways.start(db, world.live.id, host, giveaways.GiveawayInput(
            "참기름 한 병", "A bottle of sesame oil", winners, mode, keyword, 3), utcnow())


async def _enter(units: async_sessionmaker[AsyncSession], giveaway_id: int, user_id: int) -> int | str:
    try:
        async with units.begin() as db:
            user = await db.get(User, user_id)
            assert user is not None
            return (await giveaways.enter(db, giveaway_id, user, utcnow())).number
    except AppError as exc:
        return exc.code


async def _draw(units: async_sessionmaker[AsyncSession], giveaway_id: int) -> list[int] | str:
    try:
        async with units.begin() as db:
            _, winners = await giveaways.draw_winners(db, giveaway_id, utcnow())
            return [w.number for w in winners]
    except AppError as exc:
        return exc.code


async def test_start_publishes_a_commitment_to_a_secret_seed(units: async_sessionmaker[AsyncSession],
                                                             world: World) -> None:
    g = await _start(units, world)
    assert g.commitment == draw.commitment(g.seed)
    assert giveaways.public(g)["seed"] is None  # secret until the draw


async def test_entries_are_numbered_once_each_and_only_viewers_enter(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World, crowd: list[User]) -> None:
    g = await _start(units, world)
    numbers = await asyncio.gather(*[_enter(units, g.id, u.id) for u in crowd])
    assert sorted(numbers) == list(range(1, len(crowd) + 1))  # type: ignore[type-var]
    assert await _enter(units, g.id, crowd[0].id) == "already_entered"
    for who in (world.host, world.staff, world.merchant_user):
        assert await _enter(units, g.id, who.id) == "cannot_enter"
    await fresh(db)
    assert await db.scalar(select(Giveaway.entries).where(Giveaway.id == g.id)) == len(crowd)
    assert await db.scalar(select(func.count()).select_from(GiveawayEntry)
                           .where(GiveawayEntry.giveaway_id == g.id)) == len(crowd)


async def test_the_draw_is_made_once_and_anyone_can_verify_it(
        units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World, crowd: list[User]) -> None:
    g = await _start(units, world, winners=3)
    for u in crowd:
        await _enter(units, g.id, u.id)
    outcomes = await asyncio.gather(*[_draw(units, g.id) for _ in range(4)])
    drawn = [o for o in outcomes if isinstance(o, list)]
    assert len(drawn) == 1 and len(drawn[0]) == 3
    assert all(o == "already_drawn" for o in outcomes if not isinstance(o, list))
    async with units() as s:
        proof = await giveaways.proof(s, g.id)
    numbers = [e["number"] for e in proof["entry_list"]]
    assert proof["seed"] is not None and proof["digest"] == draw.entries_digest(numbers)
    winners = [w["number"] for w in proof["winners"]]
    assert winners == drawn[0]
    assert draw.verify(proof["seed"], proof["commitment"], numbers, proof["digest"], winners, 3).ok
    tampered = [n for n in numbers if n != winners[0]]
    assert not draw.verify(proof["seed"], proof["commitment"], tampered, proof["digest"], winners, 3).ok
    await fresh(db)
    assert await db.scalar(select(func.count()).select_from(GiveawayWinner)
                           .where(GiveawayWinner.giveaway_id == g.id)) == 3


async def test_bad_draws_change_nothing(units: async_sessionmaker[AsyncSession], db: AsyncSession, world: World,
                                        crowd: list[User]) -> None:
    ids = [u.id for u in crowd]  # read before the checks below expire the test's objects
    empty = await _start(units, world)
    assert await _draw(units, empty.id) == "no_entries"
    too_many = await _start(units, world, winners=5)
    for uid in ids[:2]:
        await _enter(units, too_many.id, uid)
    assert await _draw(units, too_many.id) == "too_many_winners"
    await fresh(db)
    for gid in (empty.id, too_many.id):  # as they were: entries still open, nobody drawn
        g = await db.get(Giveaway, gid)
        assert g is not None and g.state is GiveawayState.OPEN and g.drawn_at is None and g.digest is None
    assert await db.scalar(select(func.count()).select_from(GiveawayWinner)) == 0
    for uid in ids[2:5]:
        assert isinstance(await _enter(units, too_many.id, uid), int)
    assert len(await _draw(units, too_many.id)) == 5  # enough entries now
    assert await _enter(units, too_many.id, ids[6]) == "giveaway_closed"


async def test_a_buyers_giveaway_enters_the_buyers_at_close(
        units: async_sessionmaker[AsyncSession], world: World) -> None:
    g = await _start(units, world, winners=1, mode=EntryMode.BUYERS)
    assert await _enter(units, g.id, world.viewer.id) == "buyers_only"
    async with units.begin() as db:
        closed = await giveaways.close(db, g.id, utcnow())
    assert closed is not None and closed.entries == 0 and closed.digest == draw.entries_digest([])


def test_keywords_are_matched_as_people_type_them() -> None:
    kw = giveaways.clean_keyword("#참기름 ")
    assert kw == "참기름"
    assert giveaways.keyword_matches(kw, "참기름")
    assert giveaways.keyword_matches(kw, "#참기름")
    assert giveaways.keyword_matches(kw, "저요 #참기름 !")
    assert not giveaways.keyword_matches(kw, "들기름")
    assert not giveaways.keyword_matches("", "아무말")


@pytest.mark.parametrize("winners,entries", [(1, 1), (3, 10)])
def test_public_view_hides_the_seed_until_drawn(winners: int, entries: int) -> None:
    g = Giveaway(id=1, broadcast_id=1, prize_ko="경품", prize_en="", winners=winners, mode=EntryMode.BUTTON,
                 keyword="", state=GiveawayState.CLOSED, entries=entries, commitment="c" * 64, seed="a" * 64,
                 opened_at=utcnow(), closes_at=utcnow())
    assert giveaways.public(g)["seed"] is None
    g.state = GiveawayState.DRAWN
    assert giveaways.public(g)["seed"] == "a" * 64
