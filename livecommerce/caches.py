"""What the app keeps from the database in each process's memory, and how it forgets it after the commit
that changed it: on the committing process at once, on every other process through Redis.

A cache is any object with a `forget(changed)` method. The app keeps it under a typed `web.AppKey` and
registers it with the app's `Caches` (`AppKeys.caches`), saying which tables it depends on
(`Watch(table)`) and, optionally, which column names its entries (`Watch(table, column)`):

    class AccountCache:
        def forget(self, changed: Changed) -> None:      # {"users": {7, 9}}, or {"users": None}: any row
            ...

    app[AppKeys.caches].keep(app, AppKeys.accounts, AccountCache(ttl), "accounts", Watch("users", "id"))

How a change is noticed. The app's sessionmakers make sessions of one class of their own
(`Caches.session_class`, given to `make_sessionmaker`), and the listeners sit on that class only: never on
SQLAlchemy's `Session`, which every app and program in the process shares, nor on a mapped class.
- `after_flush`: every row flushed (added, changed, deleted) of a watched table is noted with the values
  of the watched column it had and has (both, so a row moved from one key to another forgets both).
- `do_orm_execute`: a bulk `update()`, `delete()` or `insert()` statement on a watched table, ORM or Core,
  is noted with the values its WHERE pins the column to (`column == x`, `column.in_(xs)`, under AND);
  when it pins none (and for an insert), the whole cache is forgotten.
- `after_commit`: what the transaction noted is forgotten now, on this process, and sent to the others.
- `after_rollback`: the notes are dropped; nothing is forgotten.
Forgetting at the commit, not at the flush, matters: between the two another request still reads the old
row and may keep it; forgetting at the commit throws that copy away.

What is not noticed: SQL text run through a session, and writes made outside the app's sessions (an
`AsyncConnection`, the asyncpg pool of `hot.py`, another program). Inside a session, `note(db, table,
keys)` notes by hand; outside, `Caches.changed(table, keys)` forgets at once and tells the others (call
it after your commit). Writes of other programs (the command line, psql) are seen once entries expire.

The other processes. After each commit that changed something, one message goes to the Redis channel
`{redis.prefix}caches`; every process subscribes to it at startup and forgets what it names. A process
normally forgets within a few milliseconds of the commit (one Redis publish and delivery). When Redis is
away, a message is lost: each cache's time to live is then the bound (the account cache:
`security.account_cache_seconds`), and a process whose subscription comes back forgets everything, since
it may have missed messages. With no Redis configured there is one process and nothing to send.

A cache that reads concurrently with commits should not keep what it read if it was told to forget that
key while the read was in flight (the read may have begun before the commit); see `AccountCache`.

Moving orders' line-up cache (`LineupCache`) onto this, so that its listeners on the process-wide
session class and its WeakSet of caches go away and other processes hear its changes too:

    LINEUPS = web.AppKey("orders_lineups", LineupCache)

    def setup(app):
        app[AppKeys.caches].keep(app, LINEUPS, LineupCache(ttl), "lineups",
                                 Watch("broadcasts", "id"), Watch("lineup_items", "broadcast_id"),
                                 Watch("lineup_sales", "broadcast_id"), Watch("products"),
                                 Watch("market_order_settings"))

    class LineupCache:
        def forget(self, changed: Changed) -> None:   # keys: broadcast ids
            ids: set[Key] = set()
            for table, keys in changed.items():
                if keys is None or table in ("products", "market_order_settings"):
                    self.clear()
                    return
                ids |= keys
            self._generation += 1  # a read in flight may be from before the commit
            for k in [k for k in self._entries if k[0] in ids]:
                del self._entries[k]

(`Watch("products", "id")` instead, with `forget` dropping the entries whose offers hold those products,
would spare the other broadcasts.) Its purchase path, which writes through a connection rather than a
session, keeps `sold()` for this process and calls `app[AppKeys.caches].changed("lineup_sales",
[broadcast_id])` after its commit for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList, ClauseElement
from sqlalchemy.sql.expression import UpdateBase

log = logging.getLogger("livecommerce.caches")

Key = int | str  # what names an entry; it travels as JSON between processes
Changed = Mapping[str, frozenset[Key] | None]  # table → the watched column's values that changed; None: any row

_NOTES = "livecommerce.caches"  # session.info key: what this transaction changed, until it ends


@dataclass(frozen=True)
class Watch:
    """A table a cache depends on; `column` holds the values that name its entries (None: any change to the
    table forgets the whole cache)."""

    table: str
    column: str | None = None


class Forgets(Protocol):
    def forget(self, changed: Changed) -> None:
        """Drop what `changed` names; called on the event loop, so it must not block or await."""


C = TypeVar("C", bound=Forgets)


V = TypeVar("V")


class KeptReads(Generic[V]):
    """What `load(app, key)` read from the database for an integer key (a broadcast's id), kept at most
    `ttl` seconds: a cache for `Caches.keep` with one `Watch(table, column)` per table it reads, the column
    holding the key (a table watched whole forgets everything). Callers asking for the same key at the same
    moment share one read; a read in flight when the key is forgotten is answered but not kept (it may
    predate the commit)."""

    def __init__(self, load: Callable[[web.Application, int], Awaitable[V]], ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, limit: int = 10_000) -> None:
        self.load = load
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self.reads = 0  # how many times `load` ran (for tests and metrics)
        self._entries: dict[int, tuple[float, V]] = {}
        self._reading: dict[int, asyncio.Task[V]] = {}
        self._generation = 0

    async def get(self, app: web.Application, key: int) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        task = self._reading.get(key)
        if task is None:
            task = self._reading[key] = asyncio.ensure_future(self._read(app, key))
        return await asyncio.shield(task)

    async def _read(self, app: web.Application, key: int) -> V:
        generation = self._generation
        try:
            self.reads += 1
            value = await self.load(app, key)
            if generation == self._generation:
                if len(self._entries) >= self.limit:
                    self._entries.clear()
                self._entries[key] = (self.clock() + self.ttl, value)
            return value
        finally:
            self._reading.pop(key, None)

    def forget(self, changed: Changed) -> None:
        self._generation += 1
        for keys in changed.values():
            if keys is None:
                self._entries.clear()
                return
            for k in keys:
                with contextlib.suppress(ValueError, TypeError):
                    self._entries.pop(int(k), None)


@dataclass
class _Kept:
    cache: Forgets
    watches: dict[str, Watch]


# cache name → table → keys (None: any row)
_Notes = dict[str, dict[str, set[Key] | None]]


def _add(notes: _Notes, name: str, table: str, keys: Iterable[Key] | None) -> None:
    tables = notes.setdefault(name, {})
    if keys is None:
        tables[table] = None
        return
    have = tables.setdefault(table, set())
    if have is not None:
        have.update(keys)


def _merge(into: _Notes, notes: Mapping[str, Mapping[str, Collection[Key] | None]]) -> None:
    for name, tables in notes.items():
        for table, keys in tables.items():
            _add(into, name, table, keys)


class Caches:
    """The app's caches and the machinery that empties them after commits (see the module's docstring).
    Made with the app; `start` follows the other processes (a `cleanup_ctx`), `close` stops."""

    CHANNEL = "caches"  # under `redis.prefix`
    SUBSCRIBE_WAIT = 5.0  # startup waits this long at most for the subscription before serving anyway

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        self._watchers: dict[str, list[tuple[str, Watch]]] = {}  # table → (cache name, watch)
        self.origin = secrets.token_hex(8)  # this process's own messages are not applied twice
        self._redis: Redis | None = None
        self._channel = ""
        self._outbox: _Notes = {}
        self._pending = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # One session class per app: its listeners see this app's units of work and no one else's.
        self.session_class: type[Session] = type("AppSession", (Session,), {
            "__doc__": "A session of one app: its commits empty that app's caches."})
        event.listen(self.session_class, "after_flush", self._after_flush)
        event.listen(self.session_class, "do_orm_execute", self._statement)
        event.listen(self.session_class, "after_commit", self._after_commit)
        event.listen(self.session_class, "after_rollback", self._after_rollback)

    # -- registering -----------------------------------------------------------------------------------

    def keep(self, app: web.Application, key: web.AppKey[C], cache: C, name: str, *watches: Watch) -> C:
        """Put `cache` on the app under `key` and forget its entries after commits that change what the
        `watches` name. `name` identifies it in messages between processes (the same on each)."""
        if name in self._kept:
            raise ValueError(f"a cache named {name!r} is already kept")
        by_table = {w.table: w for w in watches}
        if len(by_table) != len(watches):
            raise ValueError(f"cache {name!r} watches a table twice")
        app[key] = cache
        self._kept[name] = _Kept(cache, by_table)
        for w in watches:
            self._watchers.setdefault(w.table, []).append((name, w))
        return cache

    # -- noting changes, in a session ------------------------------------------------------------------

    def note(self, db: Any, table: str, keys: Iterable[Key] | None = None) -> None:
        """Note by hand a change the listeners cannot see (SQL text run through `db`): forgotten when `db`
        commits. `db` is a session of this app (an `AsyncSession` or its sync session)."""
        sync = getattr(db, "sync_session", db)
        for name, w in self._watchers.get(table, ()):
            _add(self._notes(sync), name, table, None if keys is None or w.column is None else list(keys))

    @staticmethod
    def _notes(session: Session) -> _Notes:
        notes: _Notes | None = session.info.get(_NOTES)
        if notes is None:
            notes = session.info[_NOTES] = {}
        return notes

    def _after_flush(self, session: Session, _flush: UOWTransaction) -> None:
        for obj in (*session.new, *session.dirty, *session.deleted):
            state = inspect(obj)
            for table in state.mapper.tables:
                for name, w in self._watchers.get(getattr(table, "name", ""), ()):
                    _add(self._notes(session), name, w.table,
                         None if w.column is None else _row_keys(state, table, w.column))

    def _statement(self, orm: ORMExecuteState) -> None:
        if not (orm.is_update or orm.is_delete or orm.is_insert):
            return
        stmt = orm.statement
        if not isinstance(stmt, UpdateBase):  # an INSERT, UPDATE or DELETE always is one
            return
        table = getattr(stmt.table, "name", None)
        watchers = self._watchers.get(table or "", ())
        if table is None:  # several tables (a join): forget every cache that watches any of them
            from sqlalchemy.sql.util import find_tables

            watchers = [nw for t in find_tables(stmt.table) for nw in self._watchers.get(t.name, ())]
        for name, w in watchers:
            keys = None
            if w.column is not None and not orm.is_insert:
                keys = _pinned(getattr(stmt, "whereclause", None), w.table, w.column, orm.parameters)
            _add(self._notes(orm.session), name, w.table, keys)

    def _after_commit(self, session: Session) -> None:
        notes = session.info.pop(_NOTES, None)
        if notes:
            self._forget(notes)
            self._send(notes)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_NOTES, None)

    # -- forgetting ------------------------------------------------------------------------------------

    def changed(self, table: str, keys: Iterable[Key] | None = None) -> None:
        """A write made outside the app's sessions has committed: forget now, here and on the others."""
        notes: _Notes = {}
        for name, w in self._watchers.get(table, ()):
            _add(notes, name, table, None if keys is None or w.column is None else list(keys))
        if notes:
            self._forget(notes)
            self._send(notes)

    def forget_everything(self) -> None:
        for name, kept in self._kept.items():
            self._forget({name: dict.fromkeys(kept.watches)})

    def _forget(self, notes: Mapping[str, Mapping[str, Collection[Key] | None]]) -> None:
        for name, tables in notes.items():
            kept = self._kept.get(name)
            if kept is None:  # sent by a process that runs a cache this one does not
                continue
            changed = {t: None if keys is None else frozenset(keys) for t, keys in tables.items()
                       if t in kept.watches}
            if not changed:
                continue
            try:
                kept.cache.forget(changed)
            except Exception:  # the commit is done: a cache that fails must not fail the request
                log.exception("a cache failed to forget", extra={"cache": name})

    # -- between processes -----------------------------------------------------------------------------

    def _send(self, notes: _Notes) -> None:
        if self._redis is None:
            return
        _merge(self._outbox, notes)
        self._pending.set()

    def _receive(self, data: str | bytes) -> None:
        try:
            message = json.loads(data)
            if message.get("o") == self.origin:
                return
            self._forget(message["c"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable cache message", extra={"data": str(data)[:200]})

    async def start(self, redis: Redis | None, prefix: str) -> None:
        """Follow the other processes through `redis` (None: this process is alone) and send them ours."""
        if redis is None:
            return
        self._redis = redis
        self._channel = f"{prefix}{self.CHANNEL}"
        self._tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._publish())]
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.SUBSCRIBE_WAIT)
        except TimeoutError:
            log.warning("not following cache changes yet: Redis does not answer; entries expire meanwhile")

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._outbox and self._redis is not None:  # the last commits' messages, if Redis takes them
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publish_once(), 1.0)
        self._redis = None

    async def _listen(self) -> None:
        assert self._redis is not None
        first = True
        delay = 0.1
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        kind = message.get("type")
                        if kind == "message":
                            self._receive(message["data"])
                        elif kind == "subscribe":
                            # A second subscription means the connection was lost and came back: what
                            # was sent meanwhile never arrived.
                            if not first:
                                log.info("following cache changes again; forgetting everything kept")
                                self.forget_everything()
                            first = False
                            delay = 0.1
                            self._subscribed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: entries expire on their own until it is back
                self._subscribed.clear()
                log.warning("cache changes not followed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self) -> None:
        while True:
            await self._pending.wait()
            try:
                await self._publish_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost: the other processes fall back on their caches' time to live
                log.warning("cache change not sent", extra={"error": str(exc)})

    async def _publish_once(self) -> None:
        assert self._redis is not None
        self._pending.clear()
        notes, self._outbox = self._outbox, {}
        if not notes:
            return
        body = {name: {t: None if keys is None else sorted(keys, key=str) for t, keys in tables.items()}
                for name, tables in notes.items()}
        await self._redis.publish(self._channel, json.dumps({"o": self.origin, "c": body}, separators=(",", ":")))


def _row_keys(state: Any, table: Any, column: str) -> set[Key] | None:
    """The values `column` had and has on a flushed row, or None if they are not known."""
    col = table.c.get(column)
    if col is None:
        return None
    try:
        prop = state.mapper.get_property_by_column(col)
    except Exception:  # a column the mapper does not map
        return None
    attr = state.attrs[prop.key]
    history = attr.history
    values = [*(history.deleted or ()), *(history.added or ()), *(history.unchanged or ())]
    if not values:
        value = attr.loaded_value
        if value is NO_VALUE:
            if col.primary_key and state.identity is not None and len(state.identity) == 1:
                return _keys(state.identity)
            return None
        values.append(value)
    return _keys(values)


def _keys(values: Iterable[Any]) -> set[Key] | None:
    """`values` as keys (NULL names nothing), or None if one cannot travel as a key (an SQL expression
    assigned to the column, a type JSON does not carry): then everything is forgotten."""
    out: set[Key] = set()
    for v in values:
        if v is None:
            continue
        if not isinstance(v, int | str):
            return None
        out.add(v)
    return out


def _pinned(where: ClauseElement | None, table: str, column: str, params: Any) -> set[Key] | None:
    """The values a WHERE holds `table.column` to (`column == x`, `column.in_(xs)`, within ANDs), or None
    when it does not hold it to known values."""
    if where is None:
        return None
    if isinstance(where, BooleanClauseList):
        if where.operator is not operators.and_:
            return None
        for clause in where.clauses:
            found = _pinned(clause, table, column, params)
            if found is not None:
                return found
        return None
    if not isinstance(where, BinaryExpression) or where.operator not in (operators.eq, operators.in_op):
        return None
    left, right = where.left, where.right
    if getattr(left, "name", None) != column or getattr(getattr(left, "table", None), "name", None) != table:
        return None
    if not isinstance(right, BindParameter):
        return None
    values = _bound(right, params)
    if values is None:
        return None
    if where.operator is operators.in_op:
        if not all(isinstance(v, Collection) and not isinstance(v, str) for v in values):
            return None
        return _keys(x for v in values for x in v)
    return _keys(values)


def _bound(bind: BindParameter[Any], params: Any) -> list[Any] | None:
    """What `bind` stands for in this execution: its own value, or the execution's parameter of its name
    (one per parameter set of an executemany)."""
    value = bind.effective_value
    if value is not None:
        return [value]
    sets = params if isinstance(params, list) else [params]
    out = []
    for p in sets:
        if not isinstance(p, Mapping) or p.get(bind.key) is None:
            return None
        out.append(p[bind.key])
    return out
