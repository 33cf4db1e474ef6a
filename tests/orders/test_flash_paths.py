"""What keeps a flash sale fast without giving up exactness: the line-up kept briefly, buyers beyond
the units left kept off the write path, key checks answered together, accounts and cookies read
once, request lines written without a log record."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce import logs
from livecommerce.auth import Session, SessionCodec
from livecommerce.errors import NotFound
from livecommerce.keys import AppKeys
from orders.keys import KEY_CHECKS
from orders.lineup import LINEUPS, BroadcastInfo, Lineup, OfferRow
from orders.models import IdempotencyKey, Purchase
from orders.placing import Admission, Ticket
from orders.rules import Offer, Wanted
from sessions.models import BroadcastState, LineupItem
from tests.support import World, fresh, sign_in

from .support import browser, buy, order

# -- admission (no server) -------------------------------------------------------------------------


def _lineup(left: dict[int, int]) -> Lineup:
    info = BroadcastInfo(1, 1, BroadcastState.LIVE, datetime(2026, 11, 25, tzinfo=UTC))
    offers = {pid: OfferRow(Offer(pid, 1, 9900, 12900, n, "만두"), "만두", "Dumplings", "", "", "", n, 0)
              for pid, n in left.items()}
    return Lineup(info, offers, None)


async def test_admission_lets_through_as_many_units_as_are_left_and_the_rest_wait() -> None:
    admission = Admission()
    lineup = _lineup({7: 3})
    first = admission.enter(1, [Wanted(7, 2)], lineup)
    second = admission.enter(1, [Wanted(7, 1)], lineup)
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert admission.in_flight(1, 7) == 3
    third = admission.enter(1, [Wanted(7, 1)], lineup)
    assert isinstance(third, asyncio.Event) and not third.is_set()  # waits: every unit is being bought
    other_show = admission.enter(2, [Wanted(7, 1)], _lineup({7: 1}))
    assert isinstance(other_show, Ticket)  # another broadcast is counted apart
    first.release()
    assert not third.is_set() and admission.in_flight(1, 7) == 1
    second.release()
    assert third.is_set() and admission.in_flight(1, 7) == 0  # settled: it checks again
    second.release()  # releasing twice changes nothing
    assert admission.in_flight(1, 7) == 0


async def test_admission_refuses_at_once_when_nothing_is_in_flight() -> None:
    admission = Admission()
    gate = admission.enter(1, [Wanted(7, 2)], _lineup({7: 1}))
    assert isinstance(gate, asyncio.Event) and gate.is_set()  # checking again gives the refusal


async def test_admission_lets_few_write_at_once_in_arrival_order() -> None:
    admission = Admission()
    lineup = _lineup({7: 100})
    tickets = [admission.enter(1, [Wanted(7, 1)], lineup) for _ in range(admission.WRITERS + 2)]
    assert all(isinstance(t, Ticket) for t in tickets)
    order_seen: list[int] = []

    async def write(i: int, t: Any) -> None:
        await t.write()
        order_seen.append(i)

    tasks = [asyncio.ensure_future(write(i, t)) for i, t in enumerate(tickets)]
    await asyncio.sleep(0.01)
    assert order_seen == list(range(admission.WRITERS))  # the others queue
    tickets[0].release()
    await asyncio.sleep(0.01)
    assert order_seen == list(range(admission.WRITERS + 1))
    for t in tickets[1:]:
        t.release()
    await asyncio.gather(*tasks)
    assert order_seen == list(range(admission.WRITERS + 2)) and admission.in_flight(1, 7) == 0


# -- through the server --------------------------------------------------------------------------

async def _buyers(server: TestServer, n: int) -> list[tuple[Any, str]]:
    out = []
    for i in range(n):
        c = browser(server)
        session = await (await c.get("/api/v1/auth/session")).json()
        resp = await c.post("/api/v1/auth/guest", json={"nickname": f"손님{i}"},
                            headers={"X-CSRF-Token": session["csrf_token"]})
        out.append((c, (await resp.json())["csrf_token"]))
    return out


async def _reserve(db: AsyncSession, world: World, units: int) -> None:
    await db.execute(update(LineupItem).where(LineupItem.broadcast_id == world.live.id,
                                              LineupItem.product_id == world.products[0].id)
                     .values(stock_reserved=units))
    await db.commit()


async def _count(db: AsyncSession, model: Any) -> int:
    return int(await (await fresh(db)).scalar(select(func.count()).select_from(model)) or 0)


async def test_buyers_beyond_the_units_are_told_sold_out_without_writing_anything(
        server: TestServer, world: World, db: AsyncSession) -> None:
    await _reserve(db, world, 3)
    buyers = await _buyers(server, 15)
    body = order(world, lines=[{"product_id": world.products[0].id, "quantity": 1}])
    try:
        results = await asyncio.gather(*(buy(c, t, world.live.id, body) for c, t in buyers))
    finally:
        for c, _ in buyers:
            await c.close()
    assert sorted(r[0] for r in results) == [201] * 3 + [409] * 12
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"sold_out"}
    # the twelve waited for the three, then were refused on reading: none took an Idempotency-Key
    assert await _count(db, IdempotencyKey) == 3 and await _count(db, Purchase) == 3


async def test_a_retry_after_the_sell_out_gets_its_first_answer(server: TestServer, world: World,
                                                                db: AsyncSession) -> None:
    """The refusals are checked against the kept line-up; the one retry among them is recognised by
    its stored key (asked together with the others' keys) and replayed, not told "sold out"."""
    await _reserve(db, world, 2)
    buyers = await _buyers(server, 12)
    first_c, first_t = buyers[0]
    key = str(uuid.uuid4())
    try:
        status, first, _ = await buy(first_c, first_t, world.live.id, order(world), key)
        assert status == 201
        results = await asyncio.gather(buy(first_c, first_t, world.live.id, order(world), key),
                                       *(buy(c, t, world.live.id, order(world)) for c, t in buyers[1:]))
    finally:
        for c, _ in buyers:
            await c.close()
    status, again, headers = results[0]
    assert status == 201 and again == first and headers["Idempotent-Replayed"] == "true"
    assert [r[0] for r in results[1:]] == [409] * 11
    assert await _count(db, Purchase) == 1


async def test_key_checks_asked_together_share_queries(app: web.Application, client: TestClient, world: World,
                                                       db: AsyncSession) -> None:
    await sign_in(client, "viewer")
    db.add(IdempotencyKey(user_id=world.viewer.id, key="known", fingerprint="f" * 64, state="done", token="t",
                          created_at=datetime.now(UTC), started_at=datetime.now(UTC)))
    await db.commit()
    checks = app[KEY_CHECKS]
    queries = 0
    real = checks._found

    async def counting(pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
        nonlocal queries
        queries += 1
        return await real(pairs)

    checks._found = counting  # type: ignore[method-assign]
    asks = [(world.viewer.id, "known")] + [(world.viewer.id, f"new-{i}") for i in range(60)] + [
        (world.staff.id, "known")]
    answers = await asyncio.gather(*(checks.known(u, k) for u, k in asks))
    assert answers == [True] + [False] * 61  # the same key of another person is not this one's
    assert 1 <= queries <= checks.PARALLEL + 1


async def test_the_kept_line_up_is_dropped_by_a_commit_here_and_lowered_by_a_sale(
        app: web.Application, client: TestClient, world: World, db: AsyncSession) -> None:
    await client.get("/api/v1/auth/session")
    cache = app[LINEUPS]
    assert cache.ttl > 0
    first = await cache.get(app, world.live.id)
    assert await cache.get(app, world.live.id) is first  # kept
    both = await asyncio.gather(*(cache.get(app, world.live.id) for _ in range(5)))
    assert all(x is first for x in both)
    pid = world.products[0].id
    assert first.offers[pid].offer.live_price == 9900
    async with app[AppKeys.db].begin() as s:  # a change the server commits: the kept line-up is dropped at once
        await s.execute(update(LineupItem).where(LineupItem.broadcast_id == world.live.id,
                                                 LineupItem.product_id == pid).values(live_price=8900))
    changed = await cache.get(app, world.live.id)
    assert changed is not first and changed.offers[pid].offer.live_price == 8900
    left = changed.offers[pid].offer.left
    cache.sold(world.live.id, {pid: left - 2})
    assert (await cache.get(app, world.live.id)).offers[pid].offer.left == left - 2
    cache.sold(world.live.id, {pid: left - 1})  # an older figure told late does not raise it again
    assert (await cache.get(app, world.live.id)).offers[pid].offer.left == left - 2


async def test_a_broadcast_that_does_not_exist_is_not_kept(app: web.Application, client: TestClient,
                                                           world: World) -> None:
    await client.get("/api/v1/auth/session")
    for _ in range(2):
        with pytest.raises(NotFound):
            await app[LINEUPS].get(app, 999_999)


# -- accounts and cookies ---------------------------------------------------------------------------

async def test_a_verified_cookie_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec("s" * 40, max_age_seconds=60)
    cookie = codec.encode(Session(user_id=7, epoch=2, csrf="c", locale="en"))
    first = codec.decode(cookie)
    assert first is not None and (first.user_id, first.epoch, first.csrf, first.locale) == (7, 2, "c", "en")
    first.locale = "ko"  # what a request does to its copy does not reach the next request
    again = codec.decode(cookie)
    assert again is not None and again.locale == "en"
    assert codec.decode(cookie[:-2] + "xx") is None
    import time as real_time

    later = real_time.time() + 61
    monkeypatch.setattr("livecommerce.auth.time.time", lambda: later)
    assert codec.decode(cookie) is None  # remembered, but expired


# -- the request line -------------------------------------------------------------------------------

def test_the_request_line_has_the_shape_of_every_other_line(lines: io.StringIO) -> None:
    stream = lines
    root = logging.getLogger()
    log = logging.getLogger("livecommerce.http")
    fields = {"request_id": "abc", "status": 201, "path": "/api/v1/x", "user": None, "ms": 1.5}
    logs.access(log, "request", fields)
    log.info("request", extra=fields)
    fast, usual = (json.loads(line) for line in stream.getvalue().splitlines())
    assert fast.pop("ts") and usual.pop("ts")
    assert fast == usual == {"level": "info", "logger": "livecommerce.http", "msg": "request", **fields}
    root.setLevel(logging.WARNING)
    logs.access(log, "request", fields)
    assert len(stream.getvalue().splitlines()) == 2  # below the level: nothing


async def test_every_request_writes_one_line(app: web.Application, client: TestClient, lines: io.StringIO) -> None:
    stream = lines
    resp = await client.get("/api/v1/auth/session", headers={"X-Request-ID": "req-42"})
    assert resp.status == 200
    lines = [json.loads(x) for x in stream.getvalue().splitlines() if '"request"' in x]
    assert len(lines) == 1
    line = lines[0]
    assert (line["request_id"], line["method"], line["path"], line["status"]) == (
        "req-42", "GET", "/api/v1/auth/session", 200)
