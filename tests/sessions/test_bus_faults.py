"""Redis outages during a show, for real: two server processes (two apps on real ports, in this test's
process) share one database and a private `redis-server` started here on a spare loopback port (with
every write on disk, so that its data outlives a kill). Chat runs through both at 10 messages a second,
and four buyers buy through both, while Redis is killed and restarted: an accepted message reaches every
viewer once and in order, a send answered as failed does not stand, a send repeated with its `client_id` is
one message, every purchase answered is in the database once and none other is, a purchase sent again with
its key is the same purchase, every viewer is back to live delivery within two seconds of Redis, and
`/healthz` says the bus is not ready meanwhile.
The machine's shared Redis is never touched."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.accounts import create_user
from livecommerce.app import create_app
from livecommerce.config import Config, RedisConfig
from livecommerce.fanout import FastRedisManager
from livecommerce.keys import AppKeys
from livecommerce.models import Product, Role
from orders.models import LineupSale, Purchase, PurchaseLine
from sessions.models import Broadcast, ChatMessage, LineupItem
from sessions.room import publish
from tests.orders.support import browser, buy, order
from tests.processes import until
from tests.support import NS, PASSWORD, Viewer, World, fresh, sign_in, signed_in, socket_for

from ..conftest import PG_URL

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def backend() -> str:
    """Once, on PostgreSQL when the run has it (as in CI), else on the SQLite file."""
    return "postgres" if PG_URL else "sqlite"


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A `redis-server` of this test's own, on loopback, that can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        self.port = spare_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    async def ready(self, limit: float = 30.0) -> float:
        """Wait until it answers; the moment it did."""
        deadline = time.monotonic() + limit
        while True:
            client = Redis.from_url(self.url, socket_connect_timeout=1)
            try:
                if await client.ping():
                    return time.monotonic()
            except Exception:
                if time.monotonic() > deadline:
                    raise
            finally:
                await client.aclose()
            await asyncio.sleep(0.02)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    if r.proc is not None:
        r.kill()


@pytest.fixture
async def servers(config: Config, private_redis: PrivateRedis, world: World) -> AsyncIterator[list[TestServer]]:
    await private_redis.ready()
    cfg = dataclasses.replace(config, redis=RedisConfig(url=private_redis.url, prefix=config.redis.prefix))
    started = [TestServer(create_app(cfg), host="127.0.0.1") for _ in range(2)]
    for s in started:
        await s.start_server()
    try:
        for s in started:
            await until(lambda s=s: health(s), lambda h: h[0] == 200, 10)
        yield started
    finally:
        for s in started:
            await s.close()


async def health(server: TestServer) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
        return resp.status, await resp.json()


async def metric(server: TestServer, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class TimedViewer(Viewer):
    """A viewer that also keeps when each room event arrived."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.arrived_at: dict[int, float] = {}  # chat message id → when

    def _keep(self, env: dict[str, Any]) -> None:
        before = len(self.events)
        super()._keep(env)
        if len(self.events) > before and env["t"] == "chat":
            self.arrived_at.setdefault(env["d"]["id"], time.monotonic())


async def anonymous(server: TestServer) -> TimedViewer:
    return TimedViewer(await socket_for(f"http://127.0.0.1:{server.port}"))


@dataclasses.dataclass
class Attempt:
    client_id: str
    answer: dict[str, Any] | None  # None: no answer in time
    sent: float
    answered: float


async def chat(sender: Viewer, broadcast_id: int, name: str, stop: asyncio.Event, every: float,
               attempts: list[Attempt]) -> None:
    """Send a message every `every` seconds until told to stop, each with its own client id."""
    n = 0
    while not stop.is_set():
        cid = f"{name}-{n}"
        n += 1
        sent = time.monotonic()
        try:
            ack = await sender.sio.call("chat:send", {"broadcast_id": broadcast_id, "text": f"{name} 메시지 {n}",
                                                      "client_id": cid}, namespace=NS, timeout=10)
        except TimeoutError:
            ack = None
        attempts.append(Attempt(cid, ack, sent, time.monotonic()))
        await asyncio.sleep(every)


async def rows_by_client_id(db: AsyncSession, broadcast_id: int) -> dict[str, list[int]]:
    await fresh(db)
    out: dict[str, list[int]] = {}
    for m in (await db.scalars(select(ChatMessage).where(ChatMessage.broadcast_id == broadcast_id))).all():
        out.setdefault(m.client_id or "", []).append(m.id)
    return out


@dataclasses.dataclass
class Bought:
    server: TestServer
    http: aiohttp.ClientSession
    token: str
    key: str
    sent: float
    status: int  # 0: no answer in time
    answer: dict[str, Any]


async def buyers(db: AsyncSession, world: World, servers: list[TestServer], n: int
                 ) -> list[tuple[TestServer, aiohttp.ClientSession, str]]:
    """`n` viewers signed in, alternately on each server, and stock for every purchase they can make."""
    await db.execute(update(LineupItem).where(LineupItem.broadcast_id == world.live.id,
                                              LineupItem.product_id == world.products[0].id)
                     .values(stock_reserved=5000))
    await db.execute(update(Product).where(Product.id == world.products[0].id).values(stock=5000))
    for i in range(n):
        await create_user(db, username=f"buyer{i}", role=Role.VIEWER, password=PASSWORD, display_name=f"구매자{i}")
    await db.commit()
    out = []
    for i in range(n):
        server = servers[i % len(servers)]
        http = browser(server)
        out.append((server, http, await sign_in(http, f"buyer{i}")))  # type: ignore[arg-type]
    return out


async def purchase(server: TestServer, http: aiohttp.ClientSession, token: str, body: dict[str, Any],
                   bid: int, key: str) -> Bought:
    sent = time.monotonic()
    try:
        status, answer, _ = await asyncio.wait_for(buy(http, token, bid, body, key), 15)
    except TimeoutError:
        return Bought(server, http, token, key, sent, 0, {})
    return Bought(server, http, token, key, sent, status, answer)


async def keep_buying(who: tuple[TestServer, aiohttp.ClientSession, str], body: dict[str, Any], bid: int,
                      stop: asyncio.Event, out: list[Bought]) -> None:
    while not stop.is_set():
        out.append(await purchase(*who, body, bid, str(uuid.uuid4())))
        await asyncio.sleep(0.25)


async def purchases_held(db: AsyncSession, world: World) -> tuple[set[int], int, int, int]:
    """The broadcast's purchases, the units on their lines, the show's sold counter and the product's stock."""
    await fresh(db)
    bid = world.live.id
    ids = set((await db.scalars(select(Purchase.id).where(Purchase.broadcast_id == bid))).all())
    units = await db.scalar(select(func.coalesce(func.sum(PurchaseLine.quantity), 0))
                            .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
                            .where(Purchase.broadcast_id == bid))
    sold = await db.scalar(select(LineupSale.sold).where(LineupSale.broadcast_id == bid,
                                                         LineupSale.product_id == world.products[0].id))
    stock = await db.scalar(select(Product.stock).where(Product.id == world.products[0].id))
    return ids, int(units or 0), int(sold or 0), int(stock or 0)


@pytest.mark.parametrize("outage", [5.0, 20.0])
async def test_a_redis_outage_during_chat_loses_nothing_and_keeps_no_failed_send(
        servers: list[TestServer], private_redis: PrivateRedis, world: World, db: AsyncSession,
        outage: float) -> None:
    bid = world.live.id
    host = await signed_in(servers[0], "host")
    staff = await signed_in(servers[1], "staff")
    viewers = [await anonymous(servers[i % 2]) for i in range(4)]
    everyone: list[Viewer] = [host, staff, *viewers]
    shoppers = await buyers(db, world, servers, 4)
    basket = order(world, lines=[{"product_id": world.products[0].id, "quantity": 1}])
    try:
        for v in everyone:
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        attempts: list[Attempt] = []
        bought: list[Bought] = []
        stop = asyncio.Event()
        senders = [asyncio.create_task(chat(host, bid, "host", stop, 0.2, attempts)),
                   asyncio.create_task(chat(staff, bid, "staff", stop, 0.2, attempts)),
                   *(asyncio.create_task(keep_buying(who, basket, bid, stop, bought)) for who in shoppers)]
        await asyncio.sleep(2)  # chat before

        private_redis.kill()
        killed = time.monotonic()
        for s in servers:  # not ready while the bus is down, and it says which part
            _, body = await until(lambda s=s: health(s), lambda h: h[0] == 503, 10)
            assert body["bus"] == "down" and body["status"] == "error", body
        for event, data in (("host:notice", {"text": "정전 중"}), ("host:slow_mode", {"seconds": 30})):
            refused_change = await host.call(event, {"broadcast_id": bid, **data})  # not sent: not kept
            assert refused_change["error"]["code"] == "unavailable", refused_change
        await fresh(db)
        b = await db.get(Broadcast, bid)
        assert b is not None and (b.pinned_notice, b.slow_mode_seconds) == ("", 0)
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - killed)))

        private_redis.start()
        redis_back = await private_redis.ready()
        ready_after = []
        for s in servers:
            await until(lambda s=s: health(s), lambda h: h[0] == 200 and h[1]["bus"] == "ok", 10)
            ready_after.append(time.monotonic() - redis_back)
        await asyncio.sleep(2)  # chat after
        stop.set()
        await asyncio.gather(*senders)

        # no send answered as failed stands, none answered as sent is missing, none is there twice
        rows = await rows_by_client_id(db, bid)
        assert all(len(ids) == 1 for ids in rows.values()), rows
        accepted = {a.client_id: a for a in attempts if a.answer is not None and a.answer["ok"]}
        refused = {a.client_id: a for a in attempts if a.answer is not None and not a.answer["ok"]}
        assert {a.answer["error"]["code"] for a in refused.values() if a.answer} <= {"unavailable"}
        assert refused, "sends during the outage are refused"
        assert set(accepted) <= set(rows)
        assert not set(refused) & set(rows), "a send answered as failed stands"
        assert all(rows[cid][0] == a.answer["data"]["id"] for cid, a in accepted.items() if a.answer)

        # a refused send, sent again with its client id, is accepted once; an accepted one answers the same
        for cid in sorted(refused)[:5]:
            who = host if cid.startswith("host") else staff
            again = [await who.call("chat:send", {"broadcast_id": bid, "text": "다시", "client_id": cid})
                     for _ in range(2)]
            assert again[0]["ok"] and again[0] == again[1], again
            accepted[cid] = Attempt(cid, again[0], time.monotonic(), time.monotonic())
        some = next(iter(accepted.values()))
        who = host if some.client_id.startswith("host") else staff
        assert await who.call("chat:send", {"broadcast_id": bid, "text": "x", "client_id": some.client_id}) \
            == some.answer
        rows = await rows_by_client_id(db, bid)
        assert all(len(ids) == 1 for ids in rows.values()) and set(accepted) <= set(rows)

        # purchases need PostgreSQL, not Redis: every one was answered as bought, and the database holds
        # exactly those, each once, with the units they took; sent again with its key, each is the same one
        assert bought and {b.status for b in bought} == {201}, sorted({(b.status, str(b.answer)[:80])
                                                                         for b in bought})
        during = [b for b in bought if killed <= b.sent <= redis_back]
        assert len(during) >= 8, "purchases were made while Redis was away"
        ids, units, sold, stock = await purchases_held(db, world)
        assert ids == {b.answer["id"] for b in bought}
        assert units == len(bought) == sold == 5000 - stock, (units, len(bought), sold, stock)
        for b in during[:: max(1, len(during) // 8)]:
            again = await purchase(b.server, b.http, b.token, basket, bid, b.key)
            assert again.status == 201 and again.answer["id"] == b.answer["id"], again
        assert (await purchases_held(db, world))[0] == ids

        # every viewer has every accepted message once, in the room's order, with no gap
        ids = {a.answer["data"]["id"]: a for a in accepted.values() if a.answer}
        for v in everyone:
            await v.wait_for(lambda v=v: ids.keys() <= {e["d"]["id"] for e in v.events if e["t"] == "chat"},
                             limit=15)
            offsets = [e["o"] for e in v.events]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "a gap or a repeat"
            chat_ids = [e["d"]["id"] for e in v.events if e["t"] == "chat"]
            assert len(chat_ids) == len(set(chat_ids))
        # … and live again within two seconds of Redis
        for v in viewers:
            assert isinstance(v, TimedViewer)
            late = {mid: round(v.arrived_at[mid] - max(a.answered, redis_back), 3) for mid, a in ids.items()
                    if v.arrived_at[mid] - max(a.answered, redis_back) > 2.0}
            assert not late, f"delivered more than 2 s after Redis came back or the send was answered: {late}"
        for s in servers:
            assert await metric(s, "livecommerce_bus_outages_total") >= 1
            assert await metric(s, "livecommerce_bus_reconnections_total") >= 1
            assert await metric(s, "livecommerce_bus_up") == 1
        print(f"\noutage {outage} s: {len(accepted)} accepted, {len(refused)} refused, {len(bought)} bought; bus ready "
              f"{[round(r, 3) for r in ready_after]} s after Redis")
        assert max(ready_after) < 2.0, ready_after
    finally:
        for v in everyone:
            await v.sio.disconnect()
        for _, http, _ in shoppers:
            await http.close()


async def test_what_the_bus_did_not_bring_is_read_from_the_stream_first(
        servers: list[TestServer], private_redis: PrivateRedis, world: World) -> None:
    """Each process's subscription is cut (Redis stays up) and room events are published before it is
    back: every viewer gets them from the room's stream, in order, before anything newer."""
    bid = world.live.id
    viewers = [await anonymous(servers[i % 2]) for i in range(4)]
    try:
        for v in viewers:
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        app = servers[0].app
        assert app is not None
        admin = Redis.from_url(private_redis.url)
        try:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            sent = [await publish(app, bid, "notice", {"text": f"공지 {i}"}) for i in range(5)]
        finally:
            await admin.aclose()
        after = await publish(app, bid, "notice", {"text": "그 다음"})
        expected = [e.offset for e in sent] + [after.offset]
        for v in viewers:
            await v.wait_for(lambda v=v: after.offset in [e["o"] for e in v.events], limit=10)
            assert [e["o"] for e in v.events] == expected
        filled = 0.0
        for s in servers:
            manager = s.app[AppKeys.sio].manager if s.app is not None else None
            assert isinstance(manager, FastRedisManager) and manager.bus.up
            filled += await metric(s, "livecommerce_bus_events_filled_total")
        assert filled >= 1  # at least what was published before a subscription came back
    finally:
        for v in viewers:
            await v.sio.disconnect()



async def keep_deletes(db: AsyncSession, keep: bool) -> None:
    """While `keep`, the database refuses to delete a chat message (as when it is away when one must be taken
    back); a trigger of this test's own, on either backend."""
    await fresh(db)
    postgres = db.bind.dialect.name == "postgresql"
    if keep and postgres:
        await db.execute(text("CREATE FUNCTION lc_test_keep() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'kept by the test'; END $$ LANGUAGE plpgsql"))
        await db.execute(text("CREATE TRIGGER lc_test_keep BEFORE DELETE ON chat_messages "
                              "FOR EACH ROW EXECUTE FUNCTION lc_test_keep()"))
    elif keep:
        await db.execute(text("CREATE TRIGGER lc_test_keep BEFORE DELETE ON chat_messages "
                              "BEGIN SELECT RAISE(ABORT, 'kept by the test'); END"))
    elif postgres:
        await db.execute(text("DROP TRIGGER IF EXISTS lc_test_keep ON chat_messages"))
        await db.execute(text("DROP FUNCTION IF EXISTS lc_test_keep()"))
    else:
        await db.execute(text("DROP TRIGGER IF EXISTS lc_test_keep"))
    await db.commit()


async def test_a_refused_message_the_database_would_not_take_back_is_taken_back_when_it_can(
        servers: list[TestServer], private_redis: PrivateRedis, world: World, db: AsyncSession) -> None:
    """Redis away, then the database refusing the take-back too: the refused messages stand only until the
    database deletes again — unless sent again with their `client_id` meanwhile, which sends them to the room."""
    bid = world.live.id
    host = await signed_in(servers[0], "host")
    viewer = await anonymous(servers[1])
    try:
        for v in (host, viewer):
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        private_redis.kill()
        await keep_deletes(db, True)
        try:
            for cid in ("gone", "again"):
                ack = await host.call("chat:send", {"broadcast_id": bid, "text": cid, "client_id": cid})
                assert ack["error"]["code"] == "unavailable", ack
            assert set(await rows_by_client_id(db, bid)) == {"gone", "again"}  # standing, for now

            private_redis.start()
            await private_redis.ready()
            for s in servers:
                await until(lambda s=s: health(s), lambda h: h[0] == 200 and h[1]["bus"] == "ok", 10)
            # sent again while its take-back still fails: it goes to the room, and stands
            again = await host.call("chat:send", {"broadcast_id": bid, "text": "again", "client_id": "again"})
            assert again["ok"], again
        finally:
            await keep_deletes(db, False)
        # the other is taken back as soon as the database deletes again
        rows = await until(lambda: rows_by_client_id(db, bid), lambda r: set(r) == {"again"}, 10)
        assert rows["again"] == [again["data"]["id"]]
        await viewer.wait_for(lambda: viewer.chat_texts() == ["again"])
        later = await anonymous(servers[0])  # a viewer who joins now sees no trace of the one taken back
        try:
            joined = await later.call("join", {"broadcast_id": bid})
            assert [m["text"] for m in joined["data"]["chat"]] == ["again"], joined["data"]["chat"]
        finally:
            await later.sio.disconnect()
    finally:
        for v in (host, viewer):
            await v.sio.disconnect()
