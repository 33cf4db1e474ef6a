"""The database work done on nearly every request under load, kept as cheap as the database allows:
the signed-in account, whether a purchase's Idempotency-Key is stored, and a purchase's own statements.

On PostgreSQL it goes through a small pool of asyncpg's own, running the same SQLAlchemy statements
(compiled once each for asyncpg): a statement costs about a third of the CPU it costs through a pooled
SQLAlchemy connection, and a flash sale runs thousands a second. A read the pool cannot do (the
database restarted, the pool is closing) falls back to the SQLAlchemy path. On SQLite everything is
ordinary SQLAlchemy. On both, the accounts asked for at the same moment are read in one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from .models import Role, User

log = logging.getLogger("livecommerce.db")


class Compiled:
    """A statement compiled once for asyncpg: its SQL with $n placeholders and its parameters' order."""

    def __init__(self, stmt: Executable, dialect: Dialect, keys: Sequence[str] | None = None) -> None:
        if not isinstance(stmt, ClauseElement):
            raise TypeError(f"not a Core statement: {stmt!r}")
        c = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        if not isinstance(c, SQLCompiler):  # a select, insert, update or delete compiles to one
            raise TypeError(f"not a select, insert, update or delete: {stmt!r}")
        self.compiled = c
        self.sql = str(c)
        self.names: list[str] = list(c.positiontup or [])
        dml = c.isinsert or c.isupdate or c.isdelete
        self.returns_rows = not dml or bool(c.effective_returning)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(dict(params))
        return [_bind(values[n]) for n in self.names]


def _bind(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


_USER_COLUMNS = [c.name for c in User.__table__.columns]
_ACCOUNTS = (f"SELECT {', '.join(_USER_COLUMNS)} FROM {User.__tablename__} "
             "WHERE id = ANY($1::integer[])")


class HotPath:
    """Started with the app (`start`), closed with it (`close`)."""

    PARALLEL = 2  # account reads at once (`account`)
    BATCH = 500  # accounts a read asks for at most

    def __init__(self, engine: AsyncEngine, reader: async_sessionmaker[AsyncSession]) -> None:
        self.engine = engine
        self.reader = reader
        self.pool: asyncpg.Pool | None = None
        self._compiled: dict[tuple[int, tuple[str, ...] | None], tuple[Executable, Compiled]] = {}
        self._asked: list[tuple[int, asyncio.Future[User | None]]] = []  # accounts to read, see `account`
        self._reading = 0
        self._tasks: set[asyncio.Task[None]] = set()

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

    def _compile(self, stmt: Executable, keys: Sequence[str] | None = None) -> Compiled:
        k = (id(stmt), tuple(keys) if keys is not None else None)
        hit = self._compiled.get(k)
        if hit is None or hit[0] is not stmt:
            if len(self._compiled) >= 1000:  # statements built per call (rare paths) must not pile up
                self._compiled.clear()
            hit = (stmt, Compiled(stmt, self.engine.dialect, keys))
            self._compiled[k] = hit
        return hit[1]

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[NativeConnection]:
        """A connection outside any transaction (each statement commits on its own)."""
        if self.pool is None:
            raise Unavailable()
        async with self.pool.acquire() as conn:
            yield NativeConnection(self, conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[NativeConnection]:
        """A connection in a transaction: committed when the block ends, rolled back if it raises."""
        if self.pool is None:
            raise Unavailable()
        async with self.pool.acquire() as conn, conn.transaction():
            yield NativeConnection(self, conn)

    async def fetchrow(self, stmt: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """One row of `stmt` (a Core select), or None. Raises `Unavailable` when the native pool
        cannot answer; callers then read the SQLAlchemy way."""
        c = self._compile(stmt)
        rows = await self.fetch(c.sql, *c.args(params))
        return rows[0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Every row of `sql` (asyncpg's $n placeholders). Raises `Unavailable` when the native pool
        cannot answer; callers then read the SQLAlchemy way."""
        if self.pool is None:
            raise Unavailable()
        try:
            async with self.pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            log.warning("fast read failed; reading the usual way", extra={"error": str(exc)})
            raise Unavailable() from exc

    async def account(self, user_id: int) -> User | None:
        """The account as stored (detached, as if read by a session that has closed), or None. The
        accounts asked for at the same moment (a crowd's requests, each the first of its viewer on this
        process) are read together: one query as soon as one is asked for; what is asked while `PARALLEL`
        queries run waits for the next, which reads all of it (up to `BATCH`)."""
        fut: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._asked.append((user_id, fut))
        if self._reading < self.PARALLEL:
            self._read_next()
        return await fut

    def _read_next(self) -> None:
        batch, self._asked = self._asked[:self.BATCH], self._asked[self.BATCH:]
        self._reading += 1
        task = asyncio.ensure_future(self._read_accounts(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_accounts(self, batch: list[tuple[int, asyncio.Future[User | None]]]) -> None:
        try:
            found = await self._accounts(list({user_id for user_id, _ in batch}))
            for user_id, fut in batch:
                if not fut.done():
                    fut.set_result(found.get(user_id))
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        except BaseException:  # shutting down: the askers are cancelled with it
            for _, fut in batch:
                fut.cancel()
            raise
        finally:
            self._reading -= 1
            if self._asked and self._reading < self.PARALLEL:
                self._read_next()

    async def _accounts(self, ids: list[int]) -> dict[int, User]:
        if self.pool is not None:
            with contextlib.suppress(Unavailable):
                found: dict[int, User] = {}
                for row in await self.fetch(_ACCOUNTS, ids):
                    values = {name: row[name] for name in _USER_COLUMNS}
                    values["role"] = Role(values["role"])
                    user = User(**values)
                    make_transient_to_detached(user)
                    found[user.id] = user
                return found
        async with self.reader() as db:  # detached when the session closes
            return {u.id: u for u in (await db.scalars(select(User).where(User.id.in_(ids)))).all()}


class NativeConnection:
    """Runs SQLAlchemy Core statements on an asyncpg connection, answering like SQLAlchemy's results
    do for what the purchase path uses (`first`, `one`, `scalar`, `scalar_one`, `scalars().all()`,
    `all`, `rowcount`, attribute access on rows): a `uow.UnitOfWork`, like SQLAlchemy's sessions and
    connections, so what runs inside a purchase is written once for all three."""

    def __init__(self, path: HotPath, conn: PoolConnectionProxy) -> None:
        self.path = path
        self.conn = conn
        self.dialect = path.engine.dialect

    async def execute(self, stmt: Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
                      ) -> NativeResult:
        if isinstance(params, Sequence):  # one statement per set of parameters, rows in the same order
            results = [await self._run(stmt, p) for p in params]
            return NativeResult([r for res in results for r in res.rows], sum(res.rowcount for res in results))
        return await self._run(stmt, params or {})

    async def _run(self, stmt: Executable, params: Mapping[str, Any]) -> NativeResult:
        c = self.path._compile(stmt, sorted(params) if getattr(stmt, "is_dml", False) else None)
        args = c.args(params)
        if c.returns_rows:
            rows = [Row(r) for r in await self.conn.fetch(c.sql, *args)]
            return NativeResult(rows, len(rows))
        status = await self.conn.execute(c.sql, *args)
        count = status.rsplit(" ", 1)[-1]
        return NativeResult([], int(count) if count.isdigit() else 0)


class Row:
    """A row that answers `row.name` and `row[0]`, like SQLAlchemy's."""

    __slots__ = ("_r",)

    def __init__(self, record: asyncpg.Record) -> None:
        self._r = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._r[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, i: int) -> Any:
        return self._r[i]

    def __len__(self) -> int:
        return len(self._r)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._r)


class NativeResult:
    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def all(self) -> list[Row]:
        return list(self.rows)

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Row:
        if len(self.rows) != 1:
            raise ValueError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> _Scalars:
        return _Scalars([r[0] for r in self.rows])


class _Scalars:
    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def all(self) -> list[Any]:
        return list(self.values)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """These connections only run plain reads and never change their session (no SET, LISTEN, cursor
    or advisory lock), so a connection goes back to the pool as it is, without asyncpg's reset round
    trip (an open transaction is still rolled back)."""


class Unavailable(Exception):
    """The native pool could not answer (not PostgreSQL, restarting, closing)."""
