"""The data layer: migrations match the models on each backend, SQLite runs in WAL mode with
writers that wait for each other, and times go in and come out as UTC."""

from __future__ import annotations

import asyncio
import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from livecommerce.db import Base, make_engine, make_sessionmaker
from livecommerce.models import Product
from sessions.models import Broadcast
from tests.support import World, fresh


async def test_migrations_match_the_models(config: Config) -> None:
    engine = make_engine(config.database)

    def diff(conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        with warnings.catch_warnings():  # SQLite's expression indexes are not read back: checked by name below
            warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
            warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expression-based")
            return compare_metadata(ctx, Base.metadata)

    def index_names(conn):  # type: ignore[no-untyped-def]
        return {i["name"] for i in inspect(conn).get_indexes("users")}

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
        if conn.dialect.name == "postgresql":
            names = await conn.run_sync(index_names)
        else:
            names = set((await conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'"))).scalars())
    await engine.dispose()
    assert changes == []
    assert {"ix_users_role", "ix_users_display_name_lower"} <= names


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(config: Config) -> None:
    if not config.database.url.startswith("sqlite"):
        pytest.skip("SQLite only")
    engine = make_engine(config.database)
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == config.database.sqlite_busy_timeout_ms
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    await engine.dispose()


async def test_concurrent_writers_wait_instead_of_failing(config: Config, world: World, db: AsyncSession) -> None:
    """Forty units of work, each reading then writing the same row through its own connection:
    none fails with 'database is locked', and the atomic decrement never goes below zero."""
    engine = make_engine(config.database)
    maker = make_sessionmaker(engine)
    product_id = world.products[0].id  # stock 100

    async def buy() -> bool:
        async with maker.begin() as s:
            await s.get(Product, product_id)  # a read first, as real units of work do
            result = await s.execute(update(Product).where(Product.id == product_id, Product.stock >= 3)
                                     .values(stock=Product.stock - 3))
            return bool(result.rowcount)

    results = await asyncio.gather(*(buy() for _ in range(40)))
    await engine.dispose()
    assert results.count(True) == 33  # 33 × 3 = 99 of the 100 units
    p = await (await fresh(db)).get(Product, product_id)
    assert p is not None and p.stock == 1


async def test_stock_cannot_go_negative(db: AsyncSession, world: World) -> None:
    with pytest.raises(IntegrityError):
        await db.execute(update(Product).where(Product.id == world.products[0].id).values(stock=-1))
        await db.flush()
    await db.rollback()


async def test_times_are_stored_in_utc(db: AsyncSession, world: World) -> None:
    seoul_seven_pm = datetime(2026, 11, 30, 19, 0, tzinfo=timezone(timedelta(hours=9)))
    b = await db.get(Broadcast, world.scheduled.id)
    assert b is not None
    b.starts_at = seoul_seven_pm
    await db.commit()
    got = await (await fresh(db)).scalar(select(Broadcast.starts_at).where(Broadcast.id == world.scheduled.id))
    assert got == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    b = await db.get(Broadcast, world.scheduled.id)
    assert b is not None
    with pytest.raises(Exception, match="naive"):
        b.ends_at = datetime(2026, 11, 30, 20, 0)
        await db.flush()
    await db.rollback()
