"""What each process keeps from the database is forgotten after the commit that changed it: at once on the
process that committed, through Redis on the others (within moments; with no Redis, within the cache's
time to live). Tried on the account cache with the real app, a real database and, when configured, a real
Redis: a change through the ORM, a plain `update(User)` statement, another process; a read between flush
and commit, a rollback; and a socket opened before its browser signed out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.accounts import AccountCache
from livecommerce.app import create_app
from livecommerce.auth import COOKIE
from livecommerce.caches import Caches, Watch, _pinned
from livecommerce.config import Config
from livecommerce.hot import HotPath
from livecommerce.keys import AppKeys
from livecommerce.models import Role, User
from orders.models import Purchase
from tests.support import World, cookie_of, fresh, sign_in, socket_for

# Far above the documented time (a few milliseconds through Redis; the time to live without it), so
# that a slow machine never fails these tests; they assert that the change is seen, not how fast.
DEADLINE = 10.0
KEPT = 60.0  # what a test sees sooner than this was forgotten, not expired


@pytest.fixture
def config(config: Config) -> Config:
    """The test configuration, with accounts kept a minute."""
    return config.replace(security={"account_cache_seconds": KEPT})


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = DEADLINE) -> float:
    """Wait until `check()` holds and return how long it took; fail after `seconds`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not seen within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def name_seen(client: TestClient, cookie: str | None = None) -> str | None:
    """The signed-in account's display name as the server answers it (None: signed out)."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else None
    resp = await client.get("/api/v1/me", headers=headers)
    if resp.status == 401:
        return None
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["display_name"])


@pytest.fixture
async def other(config: Config) -> AsyncIterator[tuple[web.Application, TestClient]]:
    """A second server process: another app on the same database (and Redis, when configured)."""
    app = create_app(config)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield app, client
    await client.close()


# -- on the process that commits: at once -------------------------------------------------------------

async def test_an_orm_change_is_seen_at_once_after_its_commit(app: web.Application, client: TestClient,
                                                              world: World) -> None:
    await sign_in(client, "viewer")
    assert await name_seen(client) == "시청자"
    assert world.viewer.id in app[AppKeys.accounts]
    async with app[AppKeys.db].begin() as db:
        user = await db.get(User, world.viewer.id)
        assert user is not None
        user.display_name = "새이름"
    assert world.viewer.id not in app[AppKeys.accounts]
    assert await name_seen(client) == "새이름"


async def test_a_plain_update_statement_is_seen_at_once_and_forgets_only_its_rows(
        app: web.Application, client: TestClient, world: World) -> None:
    viewer = await sign_in_elsewhere(client, "viewer")
    staff = await sign_in_elsewhere(client, "staff")
    assert await name_seen(client, viewer) == "시청자" and await name_seen(client, staff) == "운영팀"
    accounts = app[AppKeys.accounts]
    async with app[AppKeys.db].begin() as db:
        await db.execute(update(User).where(User.id == world.viewer.id).values(display_name="새이름"))
    assert world.viewer.id not in accounts and world.staff.id in accounts  # the statement named its row
    assert await name_seen(client, viewer) == "새이름"
    async with app[AppKeys.db].begin() as db:  # Core, on the table, with no WHERE: every account
        await db.execute(update(User.__table__).values(display_name="모두"))  # type: ignore[arg-type]
    assert world.viewer.id not in accounts and world.staff.id not in accounts
    assert await name_seen(client, viewer) == "모두" and await name_seen(client, staff) == "모두"


async def test_a_read_between_flush_and_commit_does_not_keep_the_old_row(app: web.Application, client: TestClient,
                                                                         world: World) -> None:
    await sign_in(client, "viewer")
    async with app[AppKeys.db].begin() as db:
        user = await db.get(User, world.viewer.id)
        assert user is not None
        user.display_name = "새이름"
        await db.flush()
        # another request reads the row as committed, and keeps it...
        assert await name_seen(client) == "시청자"
        assert world.viewer.id in app[AppKeys.accounts]
    # ...until the commit, which forgets it
    assert await name_seen(client) == "새이름"


async def test_a_rollback_forgets_nothing(app: web.Application, client: TestClient, world: World,
                                          other: tuple[web.Application, TestClient]) -> None:
    other_app, other_client = other
    await sign_in(client, "viewer")
    cookie = cookie_of(client)
    staff = await sign_in_elsewhere(other_client, "staff")
    assert await name_seen(client) == "시청자"
    assert await name_seen(other_client, cookie) == "시청자" and await name_seen(other_client, staff) == "운영팀"

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        async with app[AppKeys.db].begin() as db:
            user = await db.get(User, world.viewer.id)
            assert user is not None
            user.display_name = "없던일"
            await db.flush()
            await db.execute(update(User).where(User.id == world.viewer.id).values(session_epoch=9))
            raise Abandon()
    assert world.viewer.id in app[AppKeys.accounts]
    assert await name_seen(client) == "시청자"
    # a later commit (of another account) reaches the other process; the rolled-back change sent nothing
    async with app[AppKeys.db].begin() as db:
        await db.execute(update(User).where(User.id == world.staff.id).values(display_name="운영"))
    if app[AppKeys.config].redis.url:
        await eventually(lambda: _gone(other_app, world.staff.id))
        assert world.viewer.id in other_app[AppKeys.accounts]
    assert await name_seen(other_client, cookie) == "시청자"


async def _gone(app: web.Application, user_id: int) -> bool:
    return user_id not in app[AppKeys.accounts]


async def sign_in_elsewhere(client: TestClient, username: str) -> str:
    """Sign in with a fresh client and return its cookie (the client's own jar is left empty)."""
    await sign_in(client, username)
    cookie = cookie_of(client)
    client.session.cookie_jar.clear()
    return cookie


# -- on the other processes: through Redis, or within the time to live -------------------------------

async def test_a_change_is_seen_by_the_other_processes(config: Config, world: World) -> None:
    """With Redis, within moments although entries are kept a minute; without it, within the time to live."""
    cfg = config if config.redis.url else config.replace(security={"account_cache_seconds": 1.0})
    here, there = create_app(cfg), create_app(cfg)
    a, b = TestClient(TestServer(here, host="127.0.0.1")), TestClient(TestServer(there, host="127.0.0.1"))
    await a.start_server()
    await b.start_server()
    try:
        viewer = await sign_in_elsewhere(a, "viewer")
        assert await name_seen(a, viewer) == "시청자" and await name_seen(b, viewer) == "시청자"
        assert world.viewer.id in there[AppKeys.accounts]
        # through the ORM
        async with here[AppKeys.db].begin() as db:
            user = await db.get(User, world.viewer.id)
            assert user is not None
            user.display_name = "새이름"
        assert await name_seen(a, viewer) == "새이름"
        await eventually(lambda: _named(b, viewer, "새이름"))
        # through a plain statement
        async with here[AppKeys.db].begin() as db:
            await db.execute(update(User).where(User.id.in_([world.viewer.id])).values(display_name="또"))
        await eventually(lambda: _named(b, viewer, "또"))
        # sign-out on one process ends the session on the other
        staff = await sign_in_elsewhere(b, "staff")
        assert await name_seen(a, staff) == "운영팀"
        token = (await (await b.get("/api/v1/auth/session", headers={"Cookie": f"{COOKIE}={staff}"})).json())
        resp = await b.post("/api/v1/auth/logout", headers={"Cookie": f"{COOKIE}={staff}",
                                                            "X-CSRF-Token": token["csrf_token"]})
        assert resp.status == 200
        assert await name_seen(b, staff) is None
        await eventually(lambda: _named(a, staff, None))
    finally:
        await a.close()
        await b.close()


async def _named(client: TestClient, cookie: str, name: str | None) -> bool:
    return await name_seen(client, cookie) == name


async def test_a_change_made_outside_the_apps_sessions_waits_for_the_time_to_live(
        app: web.Application, client: TestClient, world: World, db: AsyncSession) -> None:
    """The listeners sit on the app's own session class: a session of another program (here the test's)
    is not heard, and its change shows once the entry expires; `Caches.changed` is how such a writer tells."""
    await sign_in(client, "viewer")
    assert await name_seen(client) == "시청자"
    await db.execute(update(User).where(User.id == world.viewer.id).values(display_name="밖에서"))
    await db.commit()
    assert await name_seen(client) == "시청자"
    app[AppKeys.caches].changed("users", [world.viewer.id])
    assert await name_seen(client) == "밖에서"
    # SQL text through the app's own session is not read either: `note` tells, and the commit forgets
    async with app[AppKeys.db].begin() as adb:
        await adb.execute(text("UPDATE users SET display_name = '글로' WHERE id = :id"), {"id": world.viewer.id})
        app[AppKeys.caches].note(adb, "users", [world.viewer.id])
        assert world.viewer.id in app[AppKeys.accounts]
    assert await name_seen(client) == "글로"


# -- sockets: the session epoch, checked on every event --------------------------------------------

async def test_a_socket_opened_before_sign_out_cannot_buy_or_chat_after_it(
        app: web.Application, server: TestServer, http: TestClient, world: World, db: AsyncSession) -> None:
    token = await sign_in(http, "viewer")
    old_cookie = cookie_of(http)
    sio = await socket_for(f"http://127.0.0.1:{server.port}", old_cookie)
    try:
        assert (await _call(sio, "join", {"broadcast_id": world.live.id}))["ok"] is True
        sent = await _call(sio, "chat:send", {"broadcast_id": world.live.id, "text": "안녕하세요"})
        assert sent["ok"] is True, sent
        resp = await http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})
        assert resp.status == 200 and (await resp.json())["user"] is None
        chat = await _call(sio, "chat:send", {"broadcast_id": world.live.id, "text": "아직 있어요"})
        assert chat["ok"] is False and chat["error"]["code"] == "unauthenticated"
        bought = await _call(sio, "buy", {**_order(world), "broadcast_id": world.live.id,
                                          "idempotency_key": "after-sign-out"})
        assert bought["ok"] is False and bought["error"]["code"] == "unauthenticated"
    finally:
        await sio.disconnect()
    # the cookie from before, wherever a copy of it went, signs no one in either: its signature still
    # holds (the codec remembers it), but its epoch is no longer the account's
    assert app[AppKeys.codec].decode(old_cookie) is not None
    assert await name_seen(http, old_cookie) is None
    assert await (await fresh(db)).scalar(select(func.count()).select_from(Purchase)) == 0


async def test_sign_out_on_one_process_ends_a_socket_on_another(config: Config, world: World) -> None:
    cfg = config if config.redis.url else config.replace(security={"account_cache_seconds": 1.0})
    here, there = create_app(cfg), create_app(cfg)
    a, b = TestClient(TestServer(here, host="127.0.0.1")), TestClient(TestServer(there, host="127.0.0.1"))
    await a.start_server()
    await b.start_server()
    sio = None
    try:
        token = await sign_in(a, "viewer")
        sio = await socket_for(f"http://127.0.0.1:{b.port}", cookie_of(a))
        report = {"broadcast_id": world.live.id, "message_id": 999_999}
        assert (await _call(sio, "chat:report", report))["error"]["code"] == "message_not_found"  # signed in
        assert (await a.post("/api/v1/auth/logout", headers={"X-CSRF-Token": token})).status == 200

        async def signed_out() -> bool:
            assert sio is not None
            return bool((await _call(sio, "chat:report", report))["error"]["code"] == "unauthenticated")

        await eventually(signed_out)
        bought = await _call(sio, "buy", {**_order(world), "broadcast_id": world.live.id, "idempotency_key": "k"})
        assert bought["ok"] is False and bought["error"]["code"] == "unauthenticated"
    finally:
        if sio is not None:
            await sio.disconnect()
        await a.close()
        await b.close()


async def _call(sio: socketio.AsyncClient, event: str, data: Any) -> dict[str, Any]:
    ack = await sio.call(event, data, namespace="/live", timeout=10)
    assert isinstance(ack, dict)
    return ack


def _order(world: World) -> dict[str, Any]:
    return {"lines": [{"product_id": world.products[0].id, "quantity": 1}], "name": "김민지",
            "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
            "payment_method": "cod"}


# -- the account cache on its own ---------------------------------------------------------------------

class Reads:
    """Stands for `HotPath.account`: the accounts as stored, and a gate to hold a read in flight."""

    def __init__(self, users: dict[int, User]) -> None:
        self.users = users
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def account(self, user_id: int) -> User | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.users.get(user_id)


def _user(user_id: int, name: str, epoch: int = 0, active: bool = True) -> User:
    return User(id=user_id, username=f"u{user_id}", display_name=name, role=Role.VIEWER, session_epoch=epoch,
                is_active=active)


async def test_an_account_is_kept_until_it_expires_or_is_forgotten() -> None:
    now = [0.0]
    cache = AccountCache(5.0, clock=lambda: now[0])
    reads = Reads({1: _user(1, "가"), 2: _user(2, "나")})
    hot = cast(HotPath, reads)
    first = await cache.get(hot, 1, 0)
    assert first is not None and await cache.get(hot, 1, 0) is first and reads.reads == 1  # kept
    assert await cache.get(hot, 1, 1) is None  # a cookie of another epoch
    reads.users[1] = _user(1, "다")
    now[0] = 5.1  # expired: read again
    again = await cache.get(hot, 1, 0)
    assert again is not None and again.display_name == "다"
    await cache.get(hot, 2, 0)
    cache.forget({"users": frozenset({1})})
    assert 1 not in cache and 2 in cache
    cache.forget({"users": None})
    assert 2 not in cache
    reads.users[3] = _user(3, "라", active=False)
    assert await cache.get(hot, 3, 0) is None  # disabled
    assert await cache.get(hot, 999, 0) is None and 999 not in cache


async def test_a_read_in_flight_when_its_account_is_forgotten_is_not_kept() -> None:
    cache = AccountCache(60.0)
    reads = Reads({1: _user(1, "예전")})
    reads.gate = asyncio.Event()
    reading = asyncio.ensure_future(cache.get(cast(HotPath, reads), 1, 0))
    await asyncio.sleep(0)
    cache.forget({"users": frozenset({1})})  # a commit changed it while the row was being read
    reads.gate.set()
    assert (await reading) is not None
    assert 1 not in cache  # answered, but not kept: the row may be from before the commit


# -- what a statement names ----------------------------------------------------------------------------

def test_the_rows_a_statement_names() -> None:
    t = User.__table__  # type: ignore[attr-defined]

    def named(stmt: Any, params: Any = None) -> set[Any] | None:
        return _pinned(stmt.whereclause, "users", "id", params or {})

    assert named(update(User).where(User.id == 7)) == {7}
    assert named(update(User).where(User.session_epoch == 2, User.id == 7)) == {7}
    assert named(delete(User).where(User.id.in_([1, 2]))) == {1, 2}
    assert named(update(t).where(t.c.id == 3)) == {3}
    assert named(update(User).where(User.id == bindparam("uid")), {"uid": 4}) == {4}
    assert named(update(User).where(User.id == bindparam("uid")), [{"uid": 4}, {"uid": 5}]) == {4, 5}
    assert named(update(User).where(User.id == 7, User.id == 8)) == {7}  # the first that pins it
    assert named(update(User).where((User.id == 7) | (User.id == 8))) is None  # OR: not known
    assert named(update(User).where(User.id > 7)) is None
    assert named(update(User).where(User.username == "x")) is None
    assert named(update(User).where(User.id.in_(select(User.id)))) is None
    assert named(update(User)) is None


def test_caches_are_registered_once_each_and_unknown_messages_are_ignored() -> None:
    app = web.Application()
    caches = Caches()
    key = web.AppKey("test_accounts", AccountCache)
    cache = caches.keep(app, key, AccountCache(60.0), "accounts", Watch("users", "id"))
    assert app[key] is cache
    with pytest.raises(ValueError):
        caches.keep(app, key, AccountCache(60.0), "accounts", Watch("users", "id"))
    with pytest.raises(ValueError):
        caches.keep(app, web.AppKey("twice", AccountCache), AccountCache(60.0), "twice", Watch("users"),
                    Watch("users", "id"))
    caches._receive('{"o": "elsewhere", "c": {"no such cache": {"users": null}}}')
    caches._receive("not json")
