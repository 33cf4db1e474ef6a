"""The data layer: declarative base, UTC timestamps, the engine and migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout, so concurrent
writers wait for each other instead of failing; PostgreSQL (asyncpg) is the production path.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import CursorResult, Dialect, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

from .config import DatabaseConfig

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows an UPDATE or DELETE run by a session matched."""
    # its result is a CursorResult, which counts them; SQLAlchemy types `AsyncSession.execute` as a Result
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def make_engine(cfg: DatabaseConfig) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": cfg.echo}
    if cfg.url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": cfg.sqlite_busy_timeout_ms / 1000}
    else:
        kwargs["pool_size"] = cfg.pool_size
        kwargs["max_overflow"] = cfg.pool_size
        kwargs["pool_pre_ping"] = cfg.pool_pre_ping
        kwargs["pool_recycle"] = cfg.pool_recycle_seconds
    engine = create_async_engine(cfg.url, **kwargs)
    if engine.dialect.name == "sqlite":
        busy = cfg.sqlite_busy_timeout_ms

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside one writer; busy_timeout makes a second writer wait.
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock at BEGIN (IMMEDIATE), so two writers queue on busy_timeout
            # instead of one failing when it upgrades a read snapshot; readers never wait.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that write: on SQLite each takes the write lock when it begins."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def make_sessionmaker(engine: AsyncEngine, *, write: bool = True,
                      session_class: type[Session] = Session) -> async_sessionmaker[AsyncSession]:
    """Sessions for one unit of work. `write=True` (the default): on SQLite each transaction takes the
    write lock when it begins; use `write=False` for units of work that only read. `session_class`: the
    (sync) session class underneath; the app gives its own (`Caches.session_class`), whose commits empty
    the app's caches."""
    return async_sessionmaker(writer(engine) if write else engine, expire_on_commit=False,
                              sync_session_class=session_class)


def _alembic_config(url: str) -> Any:
    from alembic.config import Config as AlembicConfig

    here = Path(__file__).parent
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (runs its own event loop: call from a thread)."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file database so a fresh clone needs no set-up."""
    if url.startswith("sqlite") and ":///" in url and ":memory:" not in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
