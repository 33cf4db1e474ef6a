"""Reads made on nearly every request under load (the signed-in account; whether a purchase's
Idempotency-Key is stored), kept as cheap as the database allows.

On PostgreSQL they go through a small pool of asyncpg's own, with the statement compiled once from
the same SQLAlchemy declarations: a read costs a third of the CPU of one through a pooled SQLAlchemy
connection, and a flash sale makes thousands a second. Anything the pool cannot do (the database
restarted, the pool is closing) falls back to the SQLAlchemy path for that read. On SQLite they are
ordinary SQLAlchemy reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql import Executable

from .models import Role, User

log = logging.getLogger("livecommerce.db")


class Compiled:
    """A statement compiled once for asyncpg: its SQL with $n placeholders and its parameters' order."""

    def __init__(self, stmt: Executable, dialect: Dialect) -> None:
        c = stmt.compile(dialect=dialect)
        self.sql = str(c)
        self.names: list[str] = list(c.positiontup or [])

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] for n in self.names]


_USER_COLUMNS = [c.name for c in User.__table__.columns]  # type: ignore[attr-defined]
_ACCOUNT = select(*User.__table__.columns).where(User.__table__.c.id == bindparam("id"))  # type: ignore[attr-defined]


class HotReads:
    """Started with the app (`start`), closed with it (`close`)."""

    def __init__(self, engine: AsyncEngine, reader: async_sessionmaker[AsyncSession]) -> None:
        self.engine = engine
        self.reader = reader
        self.pool: asyncpg.Pool | None = None
        self._compiled: dict[int, tuple[Executable, Compiled]] = {}

    @property
    def native(self) -> bool:
        return self.pool is not None

    async def start(self, size: int) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, reset=_keep_session)

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    def _compile(self, stmt: Executable) -> Compiled:
        hit = self._compiled.get(id(stmt))
        if hit is None or hit[0] is not stmt:
            hit = (stmt, Compiled(stmt, self.engine.dialect))
            self._compiled[id(stmt)] = hit
        return hit[1]

    async def fetchrow(self, stmt: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """One row of `stmt` (a Core select), or None. Raises `Unavailable` when the native pool
        cannot answer; callers then read the SQLAlchemy way."""
        if self.pool is None:
            raise Unavailable()
        c = self._compile(stmt)
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(c.sql, *c.args(params))
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            log.warning("fast read failed; reading the usual way", extra={"error": str(exc)})
            raise Unavailable() from exc
        return row

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Every row of `sql` (asyncpg's $n placeholders). Raises `Unavailable` like `fetchrow`."""
        if self.pool is None:
            raise Unavailable()
        try:
            async with self.pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            log.warning("fast read failed; reading the usual way", extra={"error": str(exc)})
            raise Unavailable() from exc

    async def account(self, user_id: int) -> User | None:
        """The account as stored (detached, as if read by a session that has closed), or None."""
        try:
            row = await self.fetchrow(_ACCOUNT, {"id": user_id})
        except Unavailable:
            async with self.reader() as db:
                return await db.get(User, user_id)
        if row is None:
            return None
        values = {name: row[name] for name in _USER_COLUMNS}
        values["role"] = Role(values["role"])
        user = User(**values)
        make_transient_to_detached(user)
        return user


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """These connections only run plain reads and never change their session (no SET, LISTEN, cursor
    or advisory lock), so a connection goes back to the pool as it is, without asyncpg's reset round
    trip (an open transaction is still rolled back)."""


class Unavailable(Exception):
    """The native pool could not answer (not PostgreSQL, restarting, closing)."""
