"""Buying once, fast, over HTTP or the socket: `purchase_once` with its Idempotency-Key, and what keeps
a flash sale fast without giving up exactness — the line-up each process keeps for refusing attempts
(`LineupCache`), the key checks that concurrent refusals share (`KeyChecks`), and the admission that lets
no more buyers write than there are units (`Admission`). BENCHMARKS.md has the figures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, event, select, tuple_
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession

from livecommerce import i18n
from livecommerce.config import Config
from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.hot import Unavailable
from livecommerce.keys import AppKeys
from livecommerce.models import Product, User
from sessions.models import Broadcast, LineupItem

from . import rules
from .models import IdempotencyKey, LineupSale, MarketOrderSettings
from .payments import PAYMENT_PROVIDERS, PaymentProvider
from .rules import Replay, Wanted
from .schemas import PurchaseIn, purchase_out
from .services import (
    WRITES,
    IdempotencyInFlight,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    KeyLost,
    Lineup,
    OrderInput,
    Placed,
    PurchaseEvent,
    Writes,
    check_order,
    claim_key,
    complete_key,
    notify,
    place_purchase,
    quick_read,
    read_lineup,
    release_key,
    stored_answer,
)

_K = IdempotencyKey.__table__  # type: ignore[attr-defined]


# -- refusing on the kept line-up, with shared key checks -----------------------------------------

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
            return {(r[0], r[1]) for r in await db.execute(_KEYS_KNOWN, {"pairs": pairs})}


KEY_CHECKS = web.AppKey("orders_key_checks", KeyChecks)


async def precheck(app: web.Application, user_id: int, key: str, broadcast_id: int, order: OrderInput, *,
                   config: Config, providers: Mapping[str, PaymentProvider], now: datetime) -> Lineup | None:
    """Before anything is written, refuse what the line-up refuses (not live, sold out, a wrong basket),
    recording nothing, unless the key is already stored (a retry: the claim decides what it gets, and
    None is returned). The line-up comes from `LINEUPS`: during a flash sale most attempts are refused
    with a single indexed read of their key."""
    lineup = await app[LINEUPS].get(app, broadcast_id)
    try:
        check_order(lineup, order, max_quantity=config.orders.max_quantity_per_line, providers=providers, now=now,
                    tz=config.tz)
    except AppError:
        if await app[KEY_CHECKS].known(user_id, key):
            return None
        raise
    return lineup


class Admission:
    """The units this process is buying right now, per broadcast and product. An attempt goes on to
    write only while the line-up (as `LINEUPS` last read it) has units for it beyond those already in
    flight here; otherwise it waits until they settle and is checked again, so that when a few units
    meet thousands of buyers, the buyers who could not get one are told "sold out" after one read
    instead of each running a purchase that the database must refuse. The database stays the judge:
    several processes each admit up to what is left, and their conditional UPDATEs decide."""

    WAIT_SECONDS = 10.0  # after this, an attempt goes on and lets the database decide
    WRITERS = 4  # attempts writing at once per product: the others queue in order, off the event loop

    def __init__(self) -> None:
        self._pending: dict[tuple[int, int], int] = {}
        self._settled: dict[tuple[int, int], asyncio.Event] = {}
        self._writers: dict[tuple[int, int], asyncio.Semaphore] = {}

    def enter(self, broadcast_id: int, wanted: Sequence[Wanted], lineup: Lineup) -> Ticket | asyncio.Event:
        """A ticket to go on (release it when done), or an event to wait for before checking again."""
        units: dict[int, int] = {}
        for w in wanted:
            units[w.product_id] = units.get(w.product_id, 0) + w.quantity
        for pid, n in units.items():
            row = lineup.offers.get(pid)
            k = (broadcast_id, pid)
            pending = self._pending.get(k, 0)
            if row is not None and row.offer.left - pending < n:
                if pending == 0:  # nothing to wait for: checking again refuses it
                    done = asyncio.Event()
                    done.set()
                    return done
                return self._settled.setdefault(k, asyncio.Event())
        taken = [((broadcast_id, pid), n) for pid, n in sorted(units.items())]
        for k, n in taken:
            self._pending[k] = self._pending.get(k, 0) + n
        return Ticket(self, taken)

    async def _write(self, taken: Sequence[tuple[tuple[int, int], int]]) -> list[asyncio.Semaphore]:
        """A writer's place for each product (in product order, so two orders cannot wait on each other).
        Few attempts writing at once keeps the one holding the product's rows from waiting its turn on
        the event loop behind dozens of others, which is what makes a sale of a few units slow."""
        held: list[asyncio.Semaphore] = []
        try:
            for k, _ in taken:
                sem = self._writers.get(k)
                if sem is None:
                    sem = self._writers[k] = asyncio.Semaphore(self.WRITERS)
                await sem.acquire()
                held.append(sem)
        except BaseException:
            for sem in held:
                sem.release()
            raise
        return held

    def _leave(self, taken: Sequence[tuple[tuple[int, int], int]]) -> None:
        for k, n in taken:
            left = self._pending.get(k, 0) - n
            if left > 0:
                self._pending[k] = left
                continue
            self._pending.pop(k, None)
            self._writers.pop(k, None)
            settled = self._settled.pop(k, None)
            if settled is not None:
                settled.set()

    def in_flight(self, broadcast_id: int, product_id: int) -> int:
        return self._pending.get((broadcast_id, product_id), 0)


class Ticket:
    def __init__(self, admission: Admission | None, taken: Sequence[tuple[tuple[int, int], int]]) -> None:
        self._admission = admission
        self._taken = taken
        self._held: list[asyncio.Semaphore] = []

    async def write(self) -> None:
        """Wait for a writer's place (see `Admission._write`)."""
        if self._admission is not None:
            self._held = await self._admission._write(self._taken)

    def release(self) -> None:
        for sem in self._held:
            sem.release()
        self._held = []
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission._leave(self._taken)


ADMISSION = web.AppKey("orders_admission", Admission)


async def admit(app: web.Application, user_id: int, key: str, broadcast_id: int, order: OrderInput, *,
                config: Config, providers: Mapping[str, PaymentProvider], now: datetime) -> Ticket:
    """`precheck`, then a place among the attempts this process is writing (see `Admission`)."""
    admission = app[ADMISSION]
    deadline = time.monotonic() + admission.WAIT_SECONDS
    while True:
        lineup = await precheck(app, user_id, key, broadcast_id, order, config=config, providers=providers,
                                now=now)
        if lineup is None:  # a retry: its stored answer decides
            return Ticket(None, ())
        gate = admission.enter(broadcast_id, order.lines, lineup)
        if isinstance(gate, Ticket):
            return gate
        try:
            await asyncio.wait_for(gate.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return Ticket(None, ())


# -- the kept line-up -------------------------------------------------------------------------------

class LineupCache:
    """Each broadcast's line-up as read at most `ttl` seconds ago, per language, for refusing purchase
    attempts without a read of their own. An attempt it lets through is checked again inside its own
    transaction, so a stale entry can only refuse, for at most `ttl`, what has just become possible
    on another process (units given back, the show going live, a new line-up). Concurrent callers
    share one read. Every commit on this process that touches a broadcast, a line-up, a product, the
    show's sales or a market's order settings empties every cache at once (see `_note_change`)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[int, str], tuple[float, Lineup]] = {}
        self._reading: dict[tuple[int, str], asyncio.Task[Lineup]] = {}
        self._generation = 0
        _LINEUP_CACHES.add(self)

    async def get(self, app: web.Application, broadcast_id: int) -> Lineup:
        if self.ttl <= 0:
            async with quick_read(app) as db:
                return await read_lineup(db, broadcast_id)
        k = (broadcast_id, i18n.current_locale.get())
        hit = self._entries.get(k)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        task = self._reading.get(k)
        if task is None:
            task = asyncio.ensure_future(self._read(app, k))
            self._reading[k] = task
        return await asyncio.shield(task)

    async def _read(self, app: web.Application, k: tuple[int, str]) -> Lineup:
        generation = self._generation
        try:
            async with quick_read(app) as db:
                lineup = await read_lineup(db, k[0])
            if self._generation == generation:  # nothing was committed here meanwhile
                if len(self._entries) >= 10_000:
                    self._entries.clear()
                self._entries[k] = (self.clock() + self.ttl, lineup)
            return lineup
        finally:
            self._reading.pop(k, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def sold(self, broadcast_id: int, left: Mapping[int, int]) -> None:
        """A purchase committed here: what its products have left now, as its UPDATEs returned them.
        Units only go down when buying (they come back through a cancellation, which clears), so
        of two purchases told in either order the smaller figure is the newer."""
        self._generation += 1  # a read begun before this commit must not be kept
        for k, (expires, lineup) in list(self._entries.items()):
            if k[0] != broadcast_id or not any(pid in lineup.offers for pid in left):
                continue
            offers = dict(lineup.offers)
            for pid, n in left.items():
                row = offers.get(pid)
                if row is not None and n < row.offer.left:
                    offers[pid] = dataclasses.replace(row, offer=dataclasses.replace(row.offer, left=n))
            self._entries[k] = (expires, dataclasses.replace(lineup, offers=offers))


_LINEUP_CACHES: weakref.WeakSet[LineupCache] = weakref.WeakSet()
_SHAPES_A_LINEUP = frozenset({Broadcast, LineupItem, LineupSale, Product, MarketOrderSettings})
_CHANGED = "lineups_changed"


@event.listens_for(OrmSession, "after_flush")
def _note_flush(session: OrmSession, _ctx: Any) -> None:
    if any(type(o) in _SHAPES_A_LINEUP for o in (*session.new, *session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


@event.listens_for(OrmSession, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    if ((state.is_update or state.is_delete or state.is_insert) and state.bind_mapper is not None
            and state.bind_mapper.class_ in _SHAPES_A_LINEUP):
        state.session.info[_CHANGED] = True


@event.listens_for(OrmSession, "after_commit")
def _note_change(session: OrmSession) -> None:
    if session.info.pop(_CHANGED, False):
        lineups_changed()


@event.listens_for(OrmSession, "after_rollback")
def _forget_change(session: OrmSession) -> None:
    session.info.pop(_CHANGED, None)


def lineups_changed() -> None:
    """Empty every kept line-up (a commit touched what they hold)."""
    for cache in list(_LINEUP_CACHES):
        cache.clear()


def lineups_sold(broadcast_id: int, left: Mapping[int, int]) -> None:
    """Tell every kept line-up what a purchase committed here left (see `LineupCache.sold`)."""
    for cache in list(_LINEUP_CACHES):
        cache.sold(broadcast_id, left)


LINEUPS = web.AppKey("orders_lineups", LineupCache)


# -- buying once ------------------------------------------------------------------------------------

def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error_body(exc: AppError) -> str:
    """The same `{"error": {...}}` the HTTP middleware writes, so it can be stored and replayed as is."""
    err: dict[str, Any] = {"code": exc.code, "message": i18n.gettext(exc.message, **exc.params)}
    if exc.details is not None:
        err["details"] = exc.details
    return _dumps({"error": err})


@dataclass(frozen=True)
class Answer:
    """A purchase attempt's answer: `body` is the JSON text, the same for every retry with the key."""

    status: int
    body: str
    replayed: bool = False


def order_input(body: PurchaseIn) -> OrderInput:
    return OrderInput(lines=[Wanted(li.product_id, li.quantity) for li in body.lines], name=body.name,
                      phone=body.phone, postal_code=body.postal_code, address1=body.address1, address2=body.address2,
                      note=body.note, payment_method=body.payment_method, delivery_option=body.delivery_option)


def purchase_fingerprint(broadcast_id: int, body: PurchaseIn) -> str:
    """The same for an order sent over HTTP or the socket, so either can retry the other."""
    return rules.fingerprint("POST", f"/api/v1/broadcasts/{broadcast_id}/purchases", body.model_dump(mode="json"))


async def purchase_once(app: web.Application, user: User, broadcast_id: int, body: PurchaseIn,
                        idempotency_key: str | None) -> Answer:
    """Buy with an Idempotency-Key (IETF httpapi draft), for the HTTP route and the socket event alike.

    1. Against the line-up as recently read (`LINEUPS`), refuse what a read can refuse — not live,
       sold out, a wrong basket — by raising an `AppError`, unless the key is already stored; nothing
       is recorded and the key stays free.
    2. Its own transaction: insert the key "in progress"; the unique constraint decides who is first.
       A finished key answers what it answered before (`replayed`); one in progress raises
       `IdempotencyInFlight` (409); one used for another body raises `IdempotencyKeyReused` (422).
    3. One transaction: the purchase (stock taken by conditional UPDATEs) and its stored answer. A
       refusal found here (a race for the last units) is stored too, in a transaction of its own.
    Between 1 and 2, `admit` keeps this process from writing more attempts at once than there are
    units left (the others wait, then are checked again).
    4. After the commit: the `PURCHASE_LISTENERS`.
    A missing or malformed key raises `IdempotencyKeyMissing` (400)."""
    config = app[AppKeys.config]
    providers = app[PAYMENT_PROVIDERS]
    key = rules.parse_idempotency_key(idempotency_key)
    if key is None:
        raise IdempotencyKeyMissing()
    order = order_input(body)
    now = utcnow()
    ticket = await admit(app, user.id, key, broadcast_id, order, config=config, providers=providers, now=now)
    try:
        await ticket.write()
        answer, event = await _buy(app, user, broadcast_id, body, key, order, now)
    finally:
        ticket.release()
    if event is not None:
        await notify(app, event)
    return answer


def _statements(app: web.Application) -> contextlib.AbstractAsyncContextManager[Writes]:
    """A connection whose statements commit one by one (PostgreSQL; SQLite: one transaction)."""
    hot = app[AppKeys.hot]
    return hot.connection() if hot.native else app[WRITES].begin()


def _unit_of_work(app: web.Application) -> contextlib.AbstractAsyncContextManager[Writes]:
    """One transaction for a purchase's writes: on PostgreSQL on asyncpg's own connection (see
    `livecommerce.hot`), elsewhere a SQLAlchemy connection (BEGIN IMMEDIATE on SQLite)."""
    hot = app[AppKeys.hot]
    return hot.transaction() if hot.native else app[WRITES].begin()


async def _buy(app: web.Application, user: User, broadcast_id: int, body: PurchaseIn, key: str, order: OrderInput,
               now: datetime) -> tuple[Answer, PurchaseEvent | None]:
    """Steps 2 and 3 of `purchase_once`."""
    config = app[AppKeys.config]
    providers = app[PAYMENT_PROVIDERS]
    fp = purchase_fingerprint(broadcast_id, body)
    async with _statements(app) as db:  # the claim's statements are each atomic on their own
        claim = await claim_key(db, user.id, key, fp, now, config.orders.idempotency_lock_seconds)
    if claim.outcome is Replay.REPLAY:
        return Answer(claim.status_code or 200, claim.body or "{}", replayed=True), None
    if claim.outcome is Replay.MISMATCH:
        raise IdempotencyKeyReused()
    if claim.outcome is Replay.IN_FLIGHT:
        raise IdempotencyInFlight()

    placed: Placed | None = None
    try:
        try:
            async with _unit_of_work(app) as db:
                async def store(p: Placed) -> None:  # the answer commits with the purchase, or not at all
                    nonlocal text
                    text = _dumps(purchase_out(p.purchase, p.names, p.settings, config.tz).model_dump(mode="json"))
                    await complete_key(db, claim, 201, text, p.purchase.id)

                text = ""
                placed = await place_purchase(db, user=user, broadcast_id=broadcast_id, order=order, now=now,
                                              config=config, providers=providers, answer=store)
                status = 201
            if placed.event is not None:  # the line-ups kept here learn what is left, with no read
                lineups_sold(broadcast_id, placed.event.stock_left)
        except AppError as exc:  # refused while buying: nothing was bought; the answer is kept
            placed = None
            status, text = exc.status, error_body(exc)
            async with _unit_of_work(app) as db:
                await complete_key(db, claim, status, text, None)
    except KeyLost:
        # A retry took the key over while this attempt was slow: this attempt's purchase rolled back.
        async with app[AppKeys.reader]() as db:
            answer = await stored_answer(db, claim.key_id)
        if answer is None:
            raise IdempotencyInFlight() from None
        return Answer(answer.status_code or 200, answer.body or "{}", replayed=True), None
    except BaseException:
        with contextlib.suppress(Exception):  # free the key so the buyer can retry at once
            async with _unit_of_work(app) as db:
                await release_key(db, claim)
        raise
    return Answer(status, text), placed.event if placed is not None else None
