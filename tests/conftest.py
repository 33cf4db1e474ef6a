"""Test fixtures: the real app on a real database, on the embedded default (SQLite) always, and
again on PostgreSQL + Redis when LIVECOMMERCE_TEST_DATABASE_URL and LIVECOMMERCE_TEST_REDIS_URL
are set (`.ci/run` sets them). Every backend-dependent test runs once per backend."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from livecommerce import auth, logs
from livecommerce.accounts import create_user
from livecommerce.app import create_app
from livecommerce.config import Config, build_config
from livecommerce.db import Base, make_engine, make_sessionmaker, upgrade, upgrade_sync, utcnow
from livecommerce.models import Market, Merchant, Product, Role
from sessions.models import Broadcast, BroadcastHost, BroadcastState, LineupItem

from .support import PASSWORD, World

PG_URL = os.environ.get("LIVECOMMERCE_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("LIVECOMMERCE_TEST_REDIS_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashes() -> Iterator[None]:
    """Passwords are hashed at argon2's lowest cost while the tests run (nearly every test makes several
    accounts and signs some in: at the server's cost that alone took minutes). The tests are about who may do
    what; the hash's strength is the library's default, which the server keeps."""
    kept = auth._hasher
    auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    auth._hasher = kept


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The server's log lines, at INFO, into a string."""
    stream = io.StringIO()
    handler = logs.LineHandler(stream, logs.JsonFormatter())
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(logs, "_installed", handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.setLevel(level)


def pytest_report_header(config: Any) -> str:
    return f"livecommerce backends: {', '.join(BACKENDS)}" + (f" (redis: {REDIS_URL})" if REDIS_URL else "")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One fresh PostgreSQL database for the run, migrated once; dropped at the end."""
    if not PG_URL:
        pytest.skip("no PostgreSQL configured")
    import asyncpg

    name = f"lc_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = PG_URL.replace("postgresql+asyncpg", "postgresql")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    url = _with_db(PG_URL, name)
    # Requested from inside async fixtures: do the set-up on a thread with its own event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
        pool.submit(upgrade_sync, url).result()
    yield url
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop()).result()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
async def config(backend: str, tmp_path: Any, request: pytest.FixtureRequest) -> AsyncIterator[Config]:
    """A configuration on a clean, migrated database (and a clean Redis key space)."""
    prefix = f"lctest-{secrets.token_hex(4)}:"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/test.db"
        await upgrade(url)
        redis_url = ""
    else:
        url = request.getfixturevalue("pg_database")
        await _truncate(url)
        redis_url = REDIS_URL
    cfg = build_config({
        "server": {"secret_key": SECRET, "secret_key_file": str(tmp_path / "secret")},
        "database": {"url": url},
        "redis": {"url": redis_url, "prefix": prefix},
        "logging": {"level": "WARNING"},
        "schedule": {"run_scheduler": False},  # tests drive the scheduler with their own clock
        "push": {"vapid_key_file": str(tmp_path / "vapid")},
    })
    yield cfg
    if redis_url:
        await forget_redis_prefix(redis_url, prefix)


async def forget_redis_prefix(url: str, prefix: str) -> None:
    """Delete a test's Redis keys (those under its prefix)."""
    client = Redis.from_url(url)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def db(config: Config) -> AsyncIterator[AsyncSession]:
    """A database session for arranging and checking, committed by the test as it needs."""
    engine = make_engine(config.database)
    async with make_sessionmaker(engine, write=False)() as session:
        yield session
    await engine.dispose()


@pytest.fixture
def app(config: Config) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(app: web.Application, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(app)


# -- data ---------------------------------------------------------------------------------------

@pytest.fixture
async def world(db: AsyncSession) -> World:
    market = Market(slug="test", name_ko="시험시장", name_en="Test Market")
    db.add(market)
    await db.flush()
    m1 = Merchant(market_id=market.id, name_ko="만두집", name_en="Dumpling stall")
    m2 = Merchant(market_id=market.id, name_ko="방앗간", name_en="Oil mill")
    db.add_all([m1, m2])
    await db.flush()
    products = [
        Product(merchant_id=m1.id, name_ko="고기만두", name_en="Pork dumplings", price=12900, stock=100),
        Product(merchant_id=m2.id, name_ko="참기름", name_en="Sesame oil", price=18000, stock=50),
        Product(merchant_id=m2.id, name_ko="들기름", name_en="Perilla oil", price=16000, stock=5),
    ]
    db.add_all(products)
    await db.flush()
    staff = await create_user(db, username="staff", role=Role.STAFF, password=PASSWORD, display_name="운영팀")
    host = await create_user(db, username="host", role=Role.HOST, password=PASSWORD, display_name="호스트")
    other = await create_user(db, username="host2", role=Role.HOST, password=PASSWORD, display_name="호스트2")
    viewer = await create_user(db, username="viewer", role=Role.VIEWER, password=PASSWORD, display_name="시청자")
    merchant_user = await create_user(db, username="merchant", role=Role.MERCHANT, password=PASSWORD,
                                      merchant_id=m1.id)
    now = utcnow().replace(microsecond=0)
    live = Broadcast(market_id=market.id, title_ko="라이브", title_en="Live", state=BroadcastState.LIVE,
                     starts_at=now - timedelta(minutes=10), ends_at=now + timedelta(minutes=50),
                     started_at=now - timedelta(minutes=10), lineup=[], hosts=[BroadcastHost(user_id=host.id)])
    live.lineup.append(LineupItem(product_id=products[0].id, position=0, live_price=9900, stock_reserved=30))
    live.lineup.append(LineupItem(product_id=products[1].id, position=1, live_price=13900, stock_reserved=20))
    scheduled = Broadcast(market_id=market.id, title_ko="예정", title_en="Coming", state=BroadcastState.SCHEDULED,
                          starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=1, hours=1), lineup=[],
                          hosts=[BroadcastHost(user_id=other.id)])
    db.add_all([live, scheduled])
    await db.commit()
    db.expunge_all()  # the World keeps what it was made with; reads after this see the database
    return World(market, m1, m2, products, staff, host, other, viewer, merchant_user, live, scheduled)


@pytest.fixture
async def server(app: web.Application) -> AsyncIterator[TestServer]:
    """The app on a real port, for real socket clients."""
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[TestClient]:
    """An HTTP client on the same real-port server that socket clients use."""
    c = TestClient(server)
    await c.start_server()
    yield c
    await c.close()
