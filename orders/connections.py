"""The connections a purchase goes through, each as cheap as the database allows: a read that is one
statement (on PostgreSQL in autocommit: no BEGIN and ROLLBACK round trips), a connection whose
statements commit one by one (the Idempotency-Key's claim), and the purchase's own transaction (on
PostgreSQL on asyncpg's own connection, see `livecommerce.hot`). `setup.orders_ctx` makes the engines at startup."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.keys import AppKeys
from livecommerce.uow import UnitOfWork

__all__ = ["QUICK_READS", "WRITES", "quick_read", "statements", "transaction"]

QUICK_READS = web.AppKey("orders_quick_reads", AsyncEngine)  # PostgreSQL only: autocommit reads
WRITES = web.AppKey("orders_writes", AsyncEngine)  # purchases' transactions (BEGIN IMMEDIATE on SQLite)


@contextlib.asynccontextmanager
async def quick_read(app: web.Application) -> AsyncIterator[UnitOfWork]:
    """For a read that is one statement: on PostgreSQL a connection in autocommit (a flash sale reads
    once per attempt); on SQLite the usual reader."""
    engine = app.get(QUICK_READS)
    if engine is None:
        async with app[AppKeys.reader]() as db:
            yield db
        return
    async with engine.connect() as conn:
        yield conn


def statements(app: web.Application) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
    """A connection whose statements commit one by one (PostgreSQL; SQLite: one transaction)."""
    hot = app[AppKeys.hot]
    return hot.connection() if hot.native else app[WRITES].begin()


def transaction(app: web.Application) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
    """One transaction for a purchase's writes: on PostgreSQL on asyncpg's own connection, elsewhere a
    SQLAlchemy connection (BEGIN IMMEDIATE on SQLite)."""
    hot = app[AppKeys.hot]
    return hot.transaction() if hot.native else app[WRITES].begin()
