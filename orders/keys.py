"""Idempotency-Keys (IETF httpapi draft): the first attempt with a key wins its unique constraint and
runs; its answer (status and JSON text) is kept with the key in the purchase's own transaction, so a
retry — over HTTP or the socket — gets the same answer and buys nothing more. A key held by an attempt
that died is taken over after `orders.idempotency_lock_seconds`, and only the holder may complete it.

During a flash sale most attempts are refused before they take a key, and each must still know that
its key is not a retry's: `KeyChecks` answers those questions together, a few queries for thousands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from aiohttp import web
from sqlalchemy import Table, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import rowcount
from livecommerce.hot import NativeConnection, Unavailable
from livecommerce.keys import AppKeys
from livecommerce.uow import UnitOfWork, dialect_name

from . import rules
from .connections import quick_read, transaction
from .errors import KeyLost
from .models import IdempotencyKey, KeyState
from .rules import Replay

__all__ = [
    "KEY_CHECKS",
    "KEY_RELEASES",
    "Claim",
    "KeyChecks",
    "KeyReleases",
    "claim_key",
    "complete_key",
    "complete_keys",
    "purge_keys",
    "release_key",
    "stored_answer",
]

log = logging.getLogger("livecommerce.orders")

_K = cast(Table, IdempotencyKey.__table__)


@dataclass(frozen=True)
class Claim:
    outcome: Replay
    key_id: int
    token: str
    status_code: int | None = None
    body: str | None = None


_CLAIM = {name: ins(_K).values(user_id=bindparam("u"), key=bindparam("k"), fingerprint=bindparam("f"),
                               state=bindparam("st"), token=bindparam("t"), created_at=bindparam("at"),
                               started_at=bindparam("at"))
          .on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(_K.c.id)
          for name, ins in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
_COMPLETE = (update(_K).where(_K.c.id == bindparam("i"), _K.c.token == bindparam("t"), _K.c.state == bindparam("was"))
             .values(state=bindparam("st"), status_code=bindparam("sc"), response_body=bindparam("body"),
                     purchase_id=bindparam("pid")))


async def claim_key(db: UnitOfWork, user_id: int, key: str, fingerprint: str, now: datetime,
                    lock_seconds: int) -> Claim:
    """Insert the key as "in progress" (its own transaction: the unique constraint decides which of
    two requests is first), or say what the stored one means for this request."""
    token = secrets.token_hex(16)
    stmt = _CLAIM[dialect_name(db)]
    params = {"u": user_id, "k": key, "f": fingerprint, "st": KeyState.IN_PROGRESS, "t": token, "at": now}
    for _ in range(3):  # a row purged between the insert and the read: insert again
        new_id = (await db.execute(stmt, params)).scalar()
        if new_id is not None:
            return Claim(Replay.NEW, new_id, token)
        row = (await db.execute(select(IdempotencyKey.id, IdempotencyKey.state, IdempotencyKey.fingerprint,
                                       IdempotencyKey.token, IdempotencyKey.started_at, IdempotencyKey.status_code,
                                       IdempotencyKey.response_body)
                                .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))).first()
        if row is None:
            continue
        outcome = rules.decide_replay(KeyState(row.state), row.fingerprint, fingerprint, row.started_at, now,
                                      lock_seconds)
        if outcome is Replay.TAKE_OVER:
            taken = await db.execute(update(IdempotencyKey)
                                     .where(IdempotencyKey.id == row.id, IdempotencyKey.token == row.token,
                                            IdempotencyKey.state == KeyState.IN_PROGRESS)
                                     .values(token=token, started_at=now)
                                     .execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                log.warning("idempotency key taken over after a stale attempt", extra={"user": user_id})
                return Claim(Replay.NEW, row.id, token)
            return Claim(Replay.IN_FLIGHT, row.id, "")
        return Claim(outcome, row.id, "", row.status_code, row.response_body)
    return Claim(Replay.IN_FLIGHT, 0, "")


async def complete_key(db: UnitOfWork, claim: Claim, status_code: int, body: str, purchase_id: int | None) -> None:
    """Store the answer, in the same transaction as the purchase. Only the attempt that holds the key
    may: if a retry took it over, raise `KeyLost` so this attempt's purchase rolls back."""
    result = await db.execute(_COMPLETE, {"i": claim.key_id, "t": claim.token, "was": KeyState.IN_PROGRESS,
                                          "st": KeyState.DONE, "sc": status_code, "body": body, "pid": purchase_id})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise KeyLost()


_COMPLETE_MANY = (f"UPDATE {_K.name} AS k SET state = $1, status_code = q.sc, response_body = q.body "
                  "FROM unnest($2::integer[], $3::varchar[], $4::integer[], $5::text[]) AS q(id, token, sc, body) "
                  "WHERE k.id = q.id AND k.token = q.token AND k.state = $6 RETURNING k.id")


async def complete_keys(db: UnitOfWork, answers: Sequence[tuple[Claim, int, str]]) -> set[int]:
    """`complete_key` for many attempts in one transaction (a group of claims), each `(claim, status,
    body)`: on asyncpg's own connection one statement for all. Answers the key ids no longer held (a
    retry took them over): the caller rolls back and runs again without them."""
    if not answers:
        return set()
    if isinstance(db, NativeConnection):
        rows = await db.conn.fetch(_COMPLETE_MANY, KeyState.DONE.value, [c.key_id for c, _, _ in answers],
                                   [c.token for c, _, _ in answers], [s for _, s, _ in answers],
                                   [b for _, _, b in answers], KeyState.IN_PROGRESS.value)
        done = {r[0] for r in rows}
        return {c.key_id for c, _, _ in answers} - done
    lost: set[int] = set()
    for claim, status, body in answers:
        try:
            await complete_key(db, claim, status, body, None)
        except KeyLost:
            lost.add(claim.key_id)
    return lost


async def release_key(db: UnitOfWork, claim: Claim) -> None:
    """An attempt that failed on our side: free the key so the buyer can retry at once."""
    await db.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim.key_id,
                                                  IdempotencyKey.token == claim.token,
                                                  IdempotencyKey.state == KeyState.IN_PROGRESS))


class KeyReleases:
    """Keys of attempts that failed on our side while the database could not free them (it was away):
    freed as soon as it answers again, so that the retry the buyer was told to make runs at once rather
    than being answered `idempotency_in_flight` until `orders.idempotency_lock_seconds` have passed."""

    EVERY = 0.2  # seconds between tries while the database is away

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._pending: dict[int, tuple[Claim, float]] = {}  # key id → (claim, when to give up)
        self._task: asyncio.Task[None] | None = None

    async def free(self, claim: Claim) -> None:
        """Free `claim`'s key now, or as soon as the database answers (never raises)."""
        try:
            await self._release(claim)
        except Exception as exc:
            log.warning("idempotency key kept until the database answers", extra={"error": type(exc).__name__})
            lock = self.app[AppKeys.config].orders.idempotency_lock_seconds
            self._pending[claim.key_id] = (claim, asyncio.get_running_loop().time() + lock)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._retry())

    async def _release(self, claim: Claim) -> None:

        async with transaction(self.app) as db:
            await release_key(db, claim)

    async def _retry(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(self.EVERY)
            for key_id, (claim, give_up) in list(self._pending.items()):
                if loop.time() > give_up:  # a retry takes the key over by now anyway
                    del self._pending[key_id]
                    continue
                try:
                    await self._release(claim)
                except Exception:
                    break  # still away: try them all again later
                del self._pending[key_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


KEY_RELEASES = web.AppKey("orders_key_releases", KeyReleases)


async def stored_answer(db: AsyncSession, key_id: int) -> Claim | None:
    row = await db.get(IdempotencyKey, key_id)
    if row is None or row.state is not KeyState.DONE:
        return None
    return Claim(Replay.REPLAY, row.id, "", row.status_code, row.response_body)


async def purge_keys(db: AsyncSession, now: datetime, retention_hours: int) -> int:
    """Forget keys older than the retention (at least 24 hours), finished or not."""
    result = await db.execute(delete(IdempotencyKey).where(
        IdempotencyKey.created_at < now - timedelta(hours=retention_hours)))
    return rowcount(result)


# -- checks asked together --------------------------------------------------------------------------

_KEYS_KNOWN = select(_K.c.user_id, _K.c.key).where(
    tuple_(_K.c.user_id, _K.c.key).in_(bindparam("pairs", expanding=True)))


class KeyChecks:
    """Whether Idempotency-Keys are stored, asked by many attempts at once (a flash sale's refusals
    each need to know their key is not a retry's). A query runs as soon as one is asked for; what is
    asked while `PARALLEL` queries are running waits for the next, which answers all of them (up to
    `BATCH`) in one round trip. No attempt waits for a timer."""

    PARALLEL = 2
    BATCH = 400  # two parameters each: under SQLite's oldest limit of 999
    SQL = (f"SELECT k.user_id, k.key FROM {_K.name} AS k "
           "JOIN unnest($1::integer[], $2::varchar[]) AS q(user_id, key) ON k.user_id = q.user_id AND k.key = q.key")

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.hot = app[AppKeys.hot]
        self._queue: list[tuple[int, str, asyncio.Future[bool]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def known(self, user_id: int, key: str) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((user_id, key, fut))
        if self._running < self.PARALLEL:
            self._next()
        return await fut

    def _next(self) -> None:
        batch, self._queue = self._queue[:self.BATCH], self._queue[self.BATCH:]
        self._running += 1
        task = asyncio.ensure_future(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[int, str, asyncio.Future[bool]]]) -> None:
        try:
            found = await self._found([(u, k) for u, k, _ in batch])
            for u, k, fut in batch:
                if not fut.done():
                    fut.set_result((u, k) in found)
        except Exception as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        except BaseException:  # shutting down: the askers are cancelled with it
            for _, _, fut in batch:
                fut.cancel()
            raise
        finally:
            self._running -= 1
            if self._queue and self._running < self.PARALLEL:
                self._next()

    async def _found(self, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
        if self.hot.native:
            with contextlib.suppress(Unavailable):
                rows = await self.hot.fetch(self.SQL, [u for u, _ in pairs], [k for _, k in pairs])
                return {(r[0], r[1]) for r in rows}
        async with quick_read(self.app) as db:
            return {(r[0], r[1]) for r in (await db.execute(_KEYS_KNOWN, {"pairs": pairs})).all()}


KEY_CHECKS = web.AppKey("orders_key_checks", KeyChecks)
