"""A process killed in the middle of a flash sale, for real: two `livecommerce serve` processes share the
database (and Redis when the run has it); forty buyers, signed in once, buy one unit each as fast as they can
through the first process, each with a new Idempotency-Key, until it is killed with `kill -9` in the middle of
the sale. Every purchase whose answer reached its buyer is in the database; no unit is sold twice or beyond
the show's 100; every attempt sent again with its key through the second process gets an answer, and the
same purchase when the first process had bought it (whether the buyer heard so or not). On PostgreSQL and
Redis when the run has them, else on the SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.accounts import create_user
from livecommerce.config import Config
from livecommerce.models import Product, Role
from orders.models import IdempotencyKey, LineupSale, Purchase, PurchaseLine
from sessions.models import LineupItem
from tests.orders.support import order, path
from tests.processes import Served, until
from tests.support import PASSWORD, World, fresh

from ..conftest import PG_URL
from ..core.test_restart import serve_config, sign_in

BUYERS = 40
UNITS = 100
LOCK_SECONDS = 5  # how long a key held by a dead process stays "in progress" before a retry takes it over


@pytest.fixture
def backend() -> str:
    """Once, on PostgreSQL (and Redis) when the run has them, else on the SQLite file."""
    return "postgres" if PG_URL else "sqlite"


@dataclasses.dataclass
class Attempt:
    buyer: int
    key: str
    status: int = 0  # 0: the answer never came (the process died first)
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)


async def post(http: aiohttp.ClientSession, base: str, token: str, bid: int, body: dict[str, Any],
               key: str) -> tuple[int, dict[str, Any]]:
    async with http.post(base + path(bid), json=body, timeout=aiohttp.ClientTimeout(total=20),
                         headers={"X-CSRF-Token": token, "Idempotency-Key": key}) as resp:
        return resp.status, await resp.json()


async def token_of(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(base + "/api/v1/auth/session") as resp:
        return str((await resp.json())["csrf_token"])


async def test_a_process_killed_in_a_flash_sale_loses_no_answered_purchase_and_oversells_nothing(
        config: Config, world: World, db: AsyncSession, tmp_path: Path) -> None:
    bid, product = world.live.id, world.products[0].id
    await db.execute(update(LineupItem).where(LineupItem.broadcast_id == bid, LineupItem.product_id == product)
                     .values(stock_reserved=UNITS))
    await db.execute(update(Product).where(Product.id == product).values(stock=UNITS))
    for i in range(BUYERS):
        await create_user(db, username=f"flash{i}", role=Role.VIEWER, password=PASSWORD, display_name=f"구매자{i}")
    await db.commit()

    text = serve_config(config, tmp_path) + f"[orders]\nidempotency_lock_seconds = {LOCK_SECONDS}\n"
    first, second = Served(tmp_path, text, "first"), Served(tmp_path, text, "second")
    browsers: list[aiohttp.ClientSession] = []
    try:
        await asyncio.gather(first.start(), second.start())
        tokens = []
        for i in range(BUYERS):  # signed in on the first; the same cookie is good on the second
            http, _ = await sign_in(first.base, f"flash{i}")
            browsers.append(http)
            tokens.append(await token_of(http, first.base))
        body = order(world, lines=[{"product_id": product, "quantity": 1}])
        attempts: list[Attempt] = []

        async def keep_buying(i: int) -> None:
            while True:
                a = Attempt(i, str(uuid.uuid4()))
                attempts.append(a)
                try:
                    a.status, a.answer = await post(browsers[i], first.base, tokens[i], bid, body, a.key)
                except (aiohttp.ClientError, TimeoutError):
                    return  # the process is gone: this attempt's answer never came
                if a.status != 201:
                    return  # sold out (or refused): this buyer stops

        buying = [asyncio.create_task(keep_buying(i)) for i in range(BUYERS)]
        await until(lambda: asyncio.sleep(0, sum(a.status == 201 for a in attempts)), lambda n: n >= 30, 60)
        first.kill()  # in the middle of the sale: about forty purchases in flight
        await asyncio.wait_for(asyncio.gather(*buying), 30)
        answered = [a for a in attempts if a.status == 201]
        unanswered = [a for a in attempts if a.status == 0]
        assert {a.status for a in attempts} <= {0, 201, 409}, sorted({(a.status, str(a.answer)[:90])
                                                                       for a in attempts})

        # every purchase whose answer reached its buyer is in the database, with its unit
        await fresh(db)
        held = dict((await db.execute(select(Purchase.id, Purchase.user_id)
                                      .where(Purchase.broadcast_id == bid))).all())
        assert {a.answer["id"] for a in answered} <= set(held)

        # sent again with its key through the second process: answered, once, the same as the first time
        async def again(a: Attempt) -> tuple[int, dict[str, Any]]:
            return await until(lambda: post(browsers[a.buyer], second.base, tokens[a.buyer], bid, body, a.key),
                               lambda r: r[0] != 409 or r[1]["error"]["code"] != "idempotency_in_flight",
                               LOCK_SECONDS * 6)

        for a in answered:
            status, answer = await again(a)
            assert status == 201 and answer["id"] == a.answer["id"], (status, answer)
        retried: dict[str, tuple[int, dict[str, Any]]] = {}
        for a in unanswered:
            retried[a.key] = await again(a)
            assert retried[a.key][0] in (201, 409), retried[a.key]
            assert await again(a) == retried[a.key], "a second retry answers what the first did"

        # the database: every purchase is one key's, no unit beyond the show's, the counters agree
        await fresh(db)
        held = dict((await db.execute(select(Purchase.id, Purchase.user_id)
                                      .where(Purchase.broadcast_id == bid))).all())
        by_key = dict((await db.execute(select(IdempotencyKey.key, IdempotencyKey.purchase_id)
                                        .where(IdempotencyKey.purchase_id.is_not(None)))).all())
        assert sorted(by_key.values()) == sorted(held), "every purchase is the answer of one key"
        for a in unanswered:
            status, answer = retried[a.key]
            assert (status == 201) == (a.key in by_key) and (status != 201 or answer["id"] == by_key[a.key])
        units = await db.scalar(select(func.coalesce(func.sum(PurchaseLine.quantity), 0))
                                .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
                                .where(Purchase.broadcast_id == bid))
        sold = await db.scalar(select(LineupSale.sold).where(LineupSale.broadcast_id == bid,
                                                             LineupSale.product_id == product))
        stock = await db.scalar(select(Product.stock).where(Product.id == product))
        assert units == len(held) == sold == UNITS - (stock or 0) <= UNITS, (units, len(held), sold, stock)
        late = sum(status == 201 for status, _ in retried.values())
        print(f"\nkilled after {len(answered)} purchases answered, {len(unanswered)} unanswered "
              f"({late} of them had been bought); {units} of {UNITS} units sold in all")
        assert not second.failures(), second.failures()
    finally:
        for http in browsers:
            with contextlib.suppress(Exception):
                await http.close()
        first.kill()
        second.stop()
