"""PostgreSQL away for five seconds during a show, for real: the server processes (apps on real ports in this
test's process; two sharing Redis when the run has it) use a private PostgreSQL started here on a spare
loopback port, stopped at once (`pg_ctl stop -m immediate`, as a crash) while purchases, coupon claims and
chat run, and started again. Every attempt is answered: done, or refused with a "try again" (`503` and
`Retry-After` over HTTP, `unavailable` on the socket), never a 500 and never silence; nothing answered done
is missing, nothing is there twice, nothing answered refused stands; each refused attempt sent again with
its key (or `client_id`) is done once when PostgreSQL is back, and sent once more is answered the same —
also a purchase whose key was taken just before PostgreSQL went (the key is freed when it is back);
`/healthz` names the database while it is away. The machine's shared PostgreSQL is never touched."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coupons import claims
from coupons.models import ClaimedCoupon, CouponDrop
from livecommerce.accounts import create_user
from livecommerce.app import create_app
from livecommerce.auth import COOKIE
from livecommerce.config import Config, build_config
from livecommerce.db import make_engine, make_sessionmaker, upgrade, utcnow
from livecommerce.models import Product, Role, User
from orders.buying import purchase_fingerprint
from orders.connections import statements
from orders.keys import KEY_RELEASES, Claim, claim_key
from orders.models import LineupSale, Purchase, PurchaseLine
from orders.rules import Replay
from orders.schemas import PurchaseIn
from sessions.models import ChatMessage, LineupItem
from tests.processes import PrivatePostgres, health, postgres_bin, until
from tests.support import NS, PASSWORD, World, socket_for

from ..conftest import REDIS_URL, SECRET, forget_redis_prefix

BIN = postgres_bin()
pytestmark = pytest.mark.skipif(BIN is None, reason="needs PostgreSQL's programs, run as root")

OUTAGE = 5.0
VIEWERS = 16


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    assert BIN is not None
    pg = PrivatePostgres(BIN)
    try:
        await asyncio.to_thread(pg.init)
        await asyncio.to_thread(pg.start)
        yield pg
    finally:
        await asyncio.to_thread(pg.remove)


@pytest.fixture
async def config(private_pg: PrivatePostgres, tmp_path: Path) -> AsyncIterator[Config]:
    """The app's configuration on the private PostgreSQL, migrated the app's own way; Redis when the run
    has it (under a key prefix of this test's own)."""
    url = await private_pg.create_database("lc")
    await upgrade(url)
    prefix = f"lctest-{secrets.token_hex(4)}:"
    yield build_config({
        "server": {"secret_key": SECRET, "secret_key_file": str(tmp_path / "secret")},
        "database": {"url": url, "pool_size": 4},
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "logging": {"level": "WARNING"},
        "schedule": {"run_scheduler": False},
    })
    if REDIS_URL:
        await forget_redis_prefix(REDIS_URL, prefix)


@pytest.fixture
async def servers(config: Config, world: World) -> AsyncIterator[list[TestServer]]:
    started = [TestServer(create_app(config), host="127.0.0.1") for _ in range(2 if REDIS_URL else 1)]
    for s in started:
        await s.start_server()
    try:
        for s in started:
            await until(lambda s=s: health(base(s)), lambda h: h[0] == 200, 30)
        yield started
    finally:
        for s in started:
            await s.close()


def base(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@dataclasses.dataclass
class Person:
    """Someone signed in on one server: their browser (cookies, CSRF token) and a socket."""

    user_id: int
    http: aiohttp.ClientSession
    token: str
    sio: socketio.AsyncClient

    async def call(self, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            ack = await self.sio.call(event, data, namespace=NS, timeout=15)
        except TimeoutError:
            return None
        assert isinstance(ack, dict)
        return ack


async def person(server: TestServer, user_id: int, username: str) -> Person:
    http = aiohttp.ClientSession(base_url=base(server), cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get("/api/v1/auth/session") as resp:
        token = (await resp.json())["csrf_token"]
    async with http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD},
                         headers={"X-CSRF-Token": token}) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["csrf_token"]
    cookie = next(c.value for c in http.cookie_jar if c.key == COOKIE)
    return Person(user_id, http, token, await socket_for(base(server), cookie))


@dataclasses.dataclass
class Attempt:
    kind: str  # "purchase", "claim", "chat"
    who: Person
    key: str  # the Idempotency-Key or the chat's client_id
    status: int  # HTTP status; for socket events 200 (ok) or 503 (unavailable), else 500
    code: str  # "" when done, else the error code
    answer: Any  # what the answer said was done (the purchase, the claim, the message), or None
    retry_after: str | None = None


def order(world: World) -> dict[str, Any]:
    return {"lines": [{"product_id": world.products[0].id, "quantity": 1}], "name": "김민지",
            "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
            "payment_method": "cod"}


async def purchase(p: Person, world: World, key: str) -> Attempt:
    try:
        async with p.http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=order(world),
                               headers={"X-CSRF-Token": p.token, "Idempotency-Key": key},
                               timeout=aiohttp.ClientTimeout(total=15)) as resp:
            body = await resp.json()
            code = body["error"]["code"] if resp.status >= 400 else ""
            return Attempt("purchase", p, key, resp.status, code, None if code else body,
                           resp.headers.get("Retry-After"))
    except TimeoutError:
        return Attempt("purchase", p, key, 0, "no answer", None)


def from_ack(kind: str, p: Person, key: str, ack: dict[str, Any] | None) -> Attempt:
    if ack is None:
        return Attempt(kind, p, key, 0, "no answer", None)
    if ack["ok"]:
        return Attempt(kind, p, key, 200, "", ack["data"])
    code = ack["error"]["code"]
    return Attempt(kind, p, key, 503 if code == "unavailable" else 500, code, None)


async def claim(p: Person, bid: int, drop_id: int, key: str) -> Attempt:
    return from_ack("claim", p, key, await p.call("coupon:claim", {"broadcast_id": bid, "drop_id": drop_id,
                                                                   "idempotency_key": key}))


async def chat(p: Person, bid: int, client_id: str) -> Attempt:
    return from_ack("chat", p, client_id, await p.call("chat:send", {"broadcast_id": bid, "text": f"말 {client_id}",
                                                                     "client_id": client_id}))


async def keep_buying(p: Person, world: World, stop: asyncio.Event, out: list[Attempt]) -> None:
    while not stop.is_set():
        out.append(await purchase(p, world, str(uuid.uuid4())))
        await asyncio.sleep(0.25)


async def keep_chatting(p: Person, bid: int, name: str, stop: asyncio.Event, out: list[Attempt]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        out.append(await chat(p, bid, f"{name}-{n}"))
        await asyncio.sleep(0.25)


async def claim_in_turn(people: list[Person], bid: int, drop_id: int, every: float, out: list[Attempt]) -> None:
    """Each viewer claims once, one after another, `every` seconds apart (across the outage)."""
    for p in people:
        out.append(await claim(p, bid, drop_id, str(uuid.uuid4())))
        await asyncio.sleep(every)


async def test_postgresql_away_for_five_seconds_loses_nothing_and_does_nothing_twice(
        servers: list[TestServer], private_pg: PrivatePostgres, world: World, db: AsyncSession,
        config: Config) -> None:
    bid = world.live.id
    # a show with stock for every attempt, and a drop with a coupon for every viewer
    await db.execute(update(LineupItem).where(LineupItem.broadcast_id == bid,
                                              LineupItem.product_id == world.products[0].id)
                     .values(stock_reserved=5000))
    await db.execute(update(Product).where(Product.id == world.products[0].id).values(stock=5000))
    template = await claims.save_template(db, world.market.id, claims.TemplateInput(
        name_ko="천원 할인", name_en="1,000 won off", kind="fixed", value=1000, quantity=1000))
    host_user = await db.get(User, world.host.id)
    assert host_user is not None
    drop = await claims.drop_now(db, bid, template.id, host_user, utcnow(), quantity=1000)
    users = [await create_user(db, username=f"buyer{i}", role=Role.VIEWER, password=PASSWORD,
                               display_name=f"구매자{i}") for i in range(VIEWERS)]
    await db.commit()
    user_ids = [u.id for u in users]
    drop_id = drop.id

    viewers = [await person(servers[i % len(servers)], uid, f"buyer{i}") for i, uid in enumerate(user_ids)]
    host = await person(servers[0], world.host.id, "host")
    staff = await person(servers[-1], world.staff.id, "staff")
    everyone = [*viewers, host, staff]
    try:
        for p in (host, staff):
            assert (await p.call("join", {"broadcast_id": bid}) or {}).get("ok")
        attempts: list[Attempt] = []
        stop = asyncio.Event()
        tasks = [*(asyncio.create_task(keep_buying(p, world, stop, attempts)) for p in viewers[:4]),
                 asyncio.create_task(keep_chatting(host, bid, "host", stop, attempts)),
                 asyncio.create_task(keep_chatting(staff, bid, "staff", stop, attempts)),
                 asyncio.create_task(claim_in_turn(viewers, bid, drop_id, 0.6, attempts))]
        await asyncio.sleep(1.5)  # before
        # a purchase whose key was taken just before PostgreSQL went, and which failed then
        stranded = await take_key(servers[0], viewers[5], world)

        await asyncio.to_thread(private_pg.stop)
        stopped = time.monotonic()
        assert servers[0].app is not None
        await servers[0].app[KEY_RELEASES].free(stranded)  # cannot be freed now: freed when it is back
        for s in servers:  # not ready, and it says which part
            _, body = await until(lambda s=s: health(base(s)), lambda h: h[0] == 503, 30)
            assert body["status"] == "error" and body["database"].startswith("error"), body
            if REDIS_URL:
                assert body["redis"] == "ok" and body["bus"] == "ok", body
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))

        await asyncio.to_thread(private_pg.start)
        for s in servers:
            await until(lambda s=s: health(base(s)), lambda h: h[0] == 200, 30)
        await asyncio.sleep(2.0)  # after
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

        # every attempt was answered: done, or "try again"
        failed = [(a.kind, a.status, a.code) for a in attempts if a.code not in ("", "unavailable")]
        assert not failed, failed
        refused = [a for a in attempts if a.code == "unavailable"]
        done = [a for a in attempts if not a.code]
        assert {a.kind for a in refused} == {"purchase", "claim", "chat"}, "each kind met the outage"
        assert {a.kind for a in done} == {"purchase", "claim", "chat"}
        assert all(a.retry_after for a in refused if a.kind == "purchase"), "503 says when to try again"

        await check_database(config, world, drop_id, done, refused)

        # each refused attempt sent again with its key is done once; sent once more, answered the same
        refused.append(Attempt("purchase", viewers[5], STRANDED, 503, "unavailable", None))
        for a in refused:
            again = await resend(a, world, drop_id)
            assert not again.code and again.status in (200, 201), (a.kind, again.status, again.code)
            twice = await resend(a, world, drop_id)
            assert not twice.code and same(again, twice), (again.answer, twice.answer)
            done.append(again)
        await check_database(config, world, drop_id, done, [])
        print(f"\nPostgreSQL away {OUTAGE} s: {len(done) - len(refused)} done, {len(refused)} refused "
              f"({', '.join(f'{k} {sum(a.kind == k for a in refused)}' for k in ('purchase', 'claim', 'chat'))}), "
              "each done once when sent again")
    finally:
        for p in everyone:
            await p.sio.disconnect()
            await p.http.close()


STRANDED = "stranded-by-the-outage"


async def take_key(server: TestServer, p: Person, world: World) -> Claim:
    """The key of a purchase taken "in progress", as the first step of buying does."""
    app = server.app
    assert app is not None
    fp = purchase_fingerprint(world.live.id, PurchaseIn.model_validate(order(world)))
    async with statements(app) as uow:
        claim = await claim_key(uow, p.user_id, STRANDED, fp, utcnow(), 60)
    assert claim.outcome is Replay.NEW
    return claim


async def resend(a: Attempt, world: World, drop_id: int) -> Attempt:
    if a.kind == "purchase":
        return await purchase(a.who, world, a.key)
    if a.kind == "claim":
        return await claim(a.who, world.live.id, drop_id, a.key)
    return await chat(a.who, world.live.id, a.key)


def same(first: Attempt, second: Attempt) -> bool:
    if first.kind == "purchase":
        return bool(first.answer["id"] == second.answer["id"])
    if first.kind == "claim":
        return bool(first.answer["claim"]["claim_id"] == second.answer["claim"]["claim_id"]
                    and second.answer["replayed"])
    return bool(first.answer == second.answer)


async def check_database(config: Config, world: World, drop_id: int, done: list[Attempt],
                         refused: list[Attempt]) -> None:
    """What the database holds is exactly what was answered done: no more, no less, nothing twice (read on
    connections opened after the outage)."""
    engine = make_engine(config.database)
    try:
        async with make_sessionmaker(engine, write=False)() as db:
            await holds_what_was_answered(db, world, drop_id, done, refused)
    finally:
        await engine.dispose()


async def holds_what_was_answered(db: AsyncSession, world: World, drop_id: int, done: list[Attempt],
                                  refused: list[Attempt]) -> None:
    bid = world.live.id
    # purchases: one per purchase answered, none for a refused one; the units taken are the units bought
    bought = {a.answer["id"] for a in done if a.kind == "purchase"}
    rows = set((await db.scalars(select(Purchase.id).where(Purchase.broadcast_id == bid))).all())
    assert rows == bought, (rows - bought, bought - rows)
    units = await db.scalar(select(func.coalesce(func.sum(PurchaseLine.quantity), 0))
                            .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
                            .where(Purchase.broadcast_id == bid))
    sold = await db.scalar(select(LineupSale.sold).where(LineupSale.broadcast_id == bid,
                                                         LineupSale.product_id == world.products[0].id))
    stock = await db.scalar(select(Product.stock).where(Product.id == world.products[0].id))
    assert units == len(bought) == (sold or 0) == 5000 - (stock or 0), (units, len(bought), sold, stock)
    # claims: one row per claim answered, none for a viewer refused; the drop's counter agrees
    claimed = {a.answer["claim"]["claim_id"] for a in done if a.kind == "claim"}
    claim_rows = (await db.execute(select(ClaimedCoupon.id, ClaimedCoupon.user_id)
                                   .where(ClaimedCoupon.drop_id == drop_id))).all()
    assert {r.id for r in claim_rows} == claimed
    assert not {r.user_id for r in claim_rows} & {a.who.user_id for a in refused if a.kind == "claim"}
    assert await db.scalar(select(CouponDrop.claimed).where(CouponDrop.id == drop_id)) == len(claim_rows)
    # chat: one message per client_id answered, none for one refused
    said = {a.key: a.answer["id"] for a in done if a.kind == "chat"}
    messages = (await db.execute(select(ChatMessage.id, ChatMessage.client_id)
                                 .where(ChatMessage.broadcast_id == bid))).all()
    by_client = {m.client_id: m.id for m in messages}
    assert len(by_client) == len(messages), "a message twice"
    assert by_client == said, (set(by_client) ^ set(said))
