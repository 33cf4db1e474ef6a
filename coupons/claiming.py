"""Claiming a coupon once, over HTTP or the socket, first come first served and exact: `claim_once` with its
Idempotency-Key (the same semantics as a purchase: a retry is answered what the first attempt was answered,
another body with the same key is refused, one still running is told to wait).

The truth is the database. A claim takes one from the drop's counter by a conditional UPDATE (`claimed <
quantity`, the drop open, its window not passed) and writes the viewer's claim row, whose unique `(drop,
viewer, seq)` keeps them within their limit (a clash rolls the counter back with it); on PostgreSQL both
statements run on asyncpg's own connection, like a purchase. `claimed` never goes down, so a process that
saw a drop all claimed refuses the next taps at once, writing nothing (`Gate`): a retry whose key is stored
still gets its stored answer, and no lost memory (a restart, a lost Redis) can let one more through — it
only sends taps back to the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Table, and_, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from livecommerce import jsonenc, logs
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError, error_body, status_for
from livecommerce.hot import NativeConnection
from livecommerce.keys import AppKeys
from livecommerce.metrics import count_outcome
from livecommerce.models import Role, User
from livecommerce.uow import UnitOfWork, dialect_name
from orders import rules as order_rules
from orders.connections import quick_read, statements, transaction
from orders.errors import IdempotencyInFlight, IdempotencyKeyReused, KeptRefusal, KeyLost
from orders.keys import KEY_CHECKS, KEY_RELEASES, Claim, claim_key, complete_key, complete_keys, stored_answer

from . import claims, live, rules
from .models import ClaimedCoupon, ClaimState, CouponDrop, DropState

__all__ = ["ERROR_STATUSES", "GATE", "GROUPS", "Ask", "ClaimKeyMissing", "ClaimResult", "Claimed", "Gate", "Got",
           "Groups", "Refused", "claim_once", "claim_out", "gate_ctx", "take", "take_many"]

# declarative classes map a Table; SQLAlchemy types `__table__` as any FromClause
_D, _C = cast(Table, CouponDrop.__table__), cast(Table, ClaimedCoupon.__table__)

_TAKE = (update(_D).where(_D.c.id == bindparam("d"), _D.c.state == DropState.OPEN.value,
                          _D.c.claimed + bindparam("n") <= _D.c.quantity, _D.c.claim_closes_at > bindparam("now"))
         .values(claimed=_D.c.claimed + bindparam("n"))
         .returning(_D.c.claimed))
_STATE = select(_D.c.state, _D.c.claimed, _D.c.quantity).where(_D.c.id == bindparam("d"))
_LOCK = (select(_D.c.claimed, _D.c.quantity,
                and_(_D.c.state == DropState.OPEN.value, _D.c.claim_closes_at > bindparam("now")).label("open"))
         # FOR NO KEY UPDATE, like the UPDATE: FOR UPDATE would wait on the KEY SHARE lock that another
         # group's claim rows hold on the drop through their foreign key (a deadlock). SQLite: no row
         # locks, its write transaction holds the whole database.
         .where(_D.c.id == bindparam("d")).with_for_update(key_share=True))
# The same for a whole group, on asyncpg's own connection: each viewer's next slot, within the limit.
_NEW_MANY = (f"INSERT INTO {_C.name} (drop_id, user_id, seq, state, discount, claimed_at, use_ends_at) "
             f"SELECT $1, q.u, h.n + 1, '{ClaimState.CLAIMED.value}', 0, $2, $3 "
             "FROM unnest($4::integer[]) AS q(u) "
             f"CROSS JOIN LATERAL (SELECT count(*) AS n FROM {_C.name} c WHERE c.drop_id = $1 AND c.user_id = q.u) h "
             "WHERE h.n < $5 "
             "ON CONFLICT (drop_id, user_id, seq) DO NOTHING RETURNING id, user_id, seq")
_FORGET = delete(_C).where(_C.c.id == bindparam("i"))
_HELD = select(func.count()).select_from(_C).where(_C.c.drop_id == bindparam("d"), _C.c.user_id == bindparam("u"))
_NEW = {name: ins(_C).values(drop_id=bindparam("d"), user_id=bindparam("u"), seq=bindparam("s"),
                             state=ClaimState.CLAIMED.value, discount=0, claimed_at=bindparam("now"),
                             use_ends_at=bindparam("ends"))
        .on_conflict_do_nothing(index_elements=["drop_id", "user_id", "seq"]).returning(_C.c.id)
        for name, ins in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}


class ClaimKeyMissing(AppError):
    code = "idempotency_key_missing"
    message = N_("Send an Idempotency-Key (1 to 255 characters) with every claim.")


class AllClaimed(AppError):
    code = "all_claimed"
    message = N_("All the coupons have been claimed.")


class ClaimClosed(AppError):
    code = "claim_closed"
    message = N_("This coupon can no longer be claimed.")


class AlreadyClaimed(AppError):
    code = "already_claimed"
    message = N_("You already have this coupon.")


class CouponNotFound(AppError):
    code = "coupon_not_found"
    message = N_("No such coupon.")


class ViewersOnly(AppError):
    code = "viewers_only"
    message = N_("Coupons are for viewers.")


ERROR_STATUSES = {"idempotency_key_missing": 400, "all_claimed": 409, "claim_closed": 409, "already_claimed": 409,
                  "coupon_not_found": 404, "viewers_only": 403}


@dataclass(frozen=True)
class Claimed:
    claim_id: int
    drop_id: int
    broadcast_id: int
    seq: int
    claimed_at: datetime
    use_ends_at: datetime | None


@dataclass(frozen=True)
class Terms:
    """What a claim needs of its drop that never changes once the drop is out (kept per process)."""

    drop_id: int
    broadcast_id: int
    per_viewer_limit: int
    use_days: int | None
    dropped_at: datetime
    drop: dict[str, Any]  # the drop as the answer shows it (its counts as they were read)


async def drop_terms(uow: UnitOfWork, drop_id: int) -> Terms:
    """A dropped coupon's terms; a drop that does not exist or is only planned is not found."""
    row = (await uow.execute(select(_D).where(_D.c.id == bindparam("d")), {"d": drop_id})).first()
    if row is None or row.state == DropState.PLANNED.value or row.dropped_at is None:
        raise CouponNotFound()
    return Terms(row.id, row.broadcast_id, row.per_viewer_limit, row.use_days, row.dropped_at, claims.drop_out(row))


@dataclass(frozen=True)
class Ask:
    """One viewer's tap, as a group of taps takes it."""

    user_id: int
    role: Role


async def take_many(uow: UnitOfWork, terms: Terms, asks: Sequence[Ask], now: datetime,
                    ) -> tuple[list[Claimed | AppError], int]:
    """Taps of different viewers, in the caller's transaction, in the order they came: each gets one of the
    drop's coupons or a refusal, and the drop's count of claims after the group is answered (a refusal
    writes nothing that stays; the caller commits what the group took).

    Each viewer's claim row is written first (their limit is the unique `(drop, viewer, seq)`), then the
    drop's counter moves once for the whole group, as far as what is left allows — the drop's row, which
    every group of a busy drop waits for, is locked from that UPDATE to the commit only, once per group
    instead of once per tap. The rows of taps that came too late for the last coupons are deleted."""
    if len({a.user_id for a in asks}) != len(asks):
        raise ValueError("a group of taps holds each viewer once")
    outcomes: list[Claimed | AppError] = [ViewersOnly() if a.role is not Role.VIEWER else AllClaimed() for a in asks]
    viewers = [a.user_id for a in asks if a.role is Role.VIEWER]
    ends = rules.use_ends_at(terms.dropped_at, terms.use_days, None)
    if isinstance(uow, NativeConnection):  # one statement for the whole group
        rows = await uow.conn.fetch(_NEW_MANY, terms.drop_id, now, ends, viewers, terms.per_viewer_limit)
        slots = {int(r[1]): (int(r[0]), int(r[2])) for r in rows}
    else:
        slots = {}
        for user_id in viewers:
            slot = await _write_one(uow, terms, user_id, now, ends)
            if slot is not None:
                slots[user_id] = slot
    written: list[tuple[int, int]] = []  # (index in asks, claim row id), in the order the taps came
    seqs: dict[int, int] = {}
    for i, ask in enumerate(asks):
        if ask.role is not Role.VIEWER:
            continue
        slot = slots.get(ask.user_id)
        if slot is None:  # at the limit, or the slot taken by the viewer's tap on another process
            outcomes[i] = AlreadyClaimed()
            continue
        written.append((i, slot[0]))
        seqs[i] = slot[1]
    if not written:
        state = (await uow.execute(_STATE, {"d": terms.drop_id})).first()
        return outcomes, int(state[1]) if state is not None else 0
    n = len(written)
    row = (await uow.execute(_TAKE, {"d": terms.drop_id, "n": n, "now": now})).first()
    if row is not None:
        count, won = int(row[0]), n
    else:  # fewer left than the group asks for, or the drop closed: the row, locked, says which
        state = (await uow.execute(_LOCK, {"d": terms.drop_id, "now": now})).first()
        if state is None or not state.open:
            refusal: AppError = AllClaimed() if state is not None and state.claimed >= state.quantity else ClaimClosed()
            for i, _ in written:
                outcomes[i] = refusal
            won = 0
        else:
            won = max(0, min(n, state.quantity - state.claimed))
        count = int(state.claimed) if state is not None else 0
        if won:
            count = int((await uow.execute(_TAKE, {"d": terms.drop_id, "n": won, "now": now})).scalar_one())
        await _forget_rows(uow, [claim_id for _, claim_id in written[won:]])
    for i, claim_id in written[:won]:
        outcomes[i] = Claimed(claim_id, terms.drop_id, terms.broadcast_id, seqs[i], now, ends)
    return outcomes, count


async def _write_one(uow: UnitOfWork, terms: Terms, user_id: int, now: datetime, ends: datetime | None,
                     ) -> tuple[int, int] | None:
    """One viewer's claim row (its id and slot), or None when they already hold the limit."""
    held = 0
    if terms.per_viewer_limit > 1:
        held = int((await uow.execute(_HELD, {"d": terms.drop_id, "u": user_id})).scalar() or 0)
        if held >= terms.per_viewer_limit:
            return None
    new_id = (await uow.execute(_NEW[dialect_name(uow)], {"d": terms.drop_id, "u": user_id, "s": held + 1,
                                                           "now": now, "ends": ends})).scalar()
    return (int(new_id), held + 1) if new_id is not None else None


async def _forget_rows(uow: UnitOfWork, ids: list[int]) -> None:
    if not ids:
        return
    if isinstance(uow, NativeConnection):
        await uow.conn.execute(f"DELETE FROM {_C.name} WHERE id = ANY($1::integer[])", ids)
        return
    for claim_id in ids:
        await uow.execute(_FORGET, {"i": claim_id})


async def take(uow: UnitOfWork, terms: Terms, user_id: int, role: Role, now: datetime) -> tuple[Claimed, int]:
    """One tap on its own (`take_many` with one): the coupon and the drop's count after it, or the refusal
    raised (the caller rolls back)."""
    outcomes, count = await take_many(uow, terms, [Ask(user_id, role)], now)
    got = outcomes[0]
    if isinstance(got, AppError):
        raise got
    return got, count


# -- once, with the Idempotency-Key ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Got:
    """A claim made, or a retry's replay of it."""

    claim: dict[str, Any]
    body: str  # as kept with the key: every retry answers it byte for byte
    replayed: bool = False
    status: int = 201

    def data(self) -> dict[str, Any]:
        return {"claim": self.claim, "replayed": self.replayed}

    def response(self) -> web.Response:
        headers = {"Idempotent-Replayed": "true"} if self.replayed else None
        return web.Response(status=self.status, text=self.body, content_type="application/json", headers=headers)


@dataclass(frozen=True)
class Refused:
    """A claim refused once its key was taken (all claimed, closed, already held): kept with the key."""

    error: AppError
    status: int
    body: str
    replayed: bool = False

    def data(self) -> dict[str, Any]:
        raise self.error

    def response(self) -> web.Response:
        headers = {"Idempotent-Replayed": "true"} if self.replayed else None
        return web.Response(status=self.status, text=self.body, content_type="application/json", headers=headers)


ClaimResult = Got | Refused


class Gate:
    """Per process: the drops seen all claimed (refusals only, and only ever true once true), and the terms
    of the drops claimed here (they do not change once a drop is out)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self.exhausted: set[int] = set()
        self.terms: dict[int, Terms] = {}

    def keep_terms(self, terms: Terms) -> Terms:
        if len(self.terms) >= self.LIMIT:
            self.terms.clear()
        self.terms[terms.drop_id] = terms
        return terms

    def closed(self, drop_id: int) -> bool:
        return drop_id in self.exhausted

    def saw_all_claimed(self, drop_id: int) -> None:
        if len(self.exhausted) >= self.LIMIT:
            self.exhausted.clear()
        self.exhausted.add(drop_id)


GATE = web.AppKey("coupons_gate", Gate)


async def gate_ctx(app: web.Application) -> AsyncIterator[None]:
    app[GATE] = Gate()
    app[GROUPS] = Groups(app)
    yield


def _fingerprint(drop_id: int) -> str:
    return order_rules.fingerprint("POST", f"/api/v1/drops/{drop_id}/claims", {})


def _kept(claim: Claim) -> ClaimResult:
    status, body = claim.status_code or 200, claim.body or "{}"
    data = jsonenc.loads(body)
    if status >= 400:
        err = data.get("error", {})
        return Refused(KeptRefusal(str(err.get("code", "refused")), str(err.get("message", "")), err.get("details")),
                       status, body, replayed=True)
    return Got(data, body, replayed=True, status=status)


def claim_out(c: Claimed, drop: dict[str, Any]) -> dict[str, Any]:
    return {"claim_id": c.claim_id, "drop": drop, "state": ClaimState.CLAIMED.value,
            "claimed_at": c.claimed_at.isoformat(), "use_ends_at": c.use_ends_at.isoformat() if c.use_ends_at else None}


@dataclass
class _Tap:
    user: User
    key: Claim
    future: asyncio.Future[ClaimResult]


class _Lost(Exception):
    """Keys a retry took over while their group ran: the group rolls back and runs again without them."""

    def __init__(self, key_ids: set[int]) -> None:
        super().__init__(f"{len(key_ids)} keys taken over")
        self.key_ids = key_ids


class Groups:
    """Per process: the taps on each drop taken in groups. A group runs as soon as a tap comes; what comes
    while `PARALLEL` groups of that drop are running waits for the next, which takes all of it (up to
    `SIZE` taps, one per viewer: a viewer's second tap goes with the group after). No tap waits for a timer:
    alone, a tap is a group of one."""

    PARALLEL = 2
    SIZE = 200

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._waiting: dict[int, list[_Tap]] = {}
        self._running: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._trying: dict[int, int] = {}  # taps of each drop between their turn and their answer
        self._left: dict[int, int] = {}  # each drop's coupons left as last seen here (never fewer than there are)
        self._moved: dict[int, asyncio.Event] = {}  # set when a tap of the drop is answered

    async def turn(self, terms: Terms) -> None:
        """Wait while the taps already trying on this process are at least as many as the coupons left: one
        of them answered, the tap goes on (or, the drop now all claimed, the gate refuses it at no cost). A
        drop's last coupons are then fought over by about as many taps as there are coupons, not by every
        tap in flight. The caller holds its turn (`trying`) from its return, with no await between."""
        d = terms.drop_id
        gate = self.app[GATE]
        while (not gate.closed(d) and self._trying.get(d, 0) > 0
               and self._trying[d] >= self._left.get(d, terms.drop["left"])):
            await self._moved.setdefault(d, asyncio.Event()).wait()

    @contextlib.contextmanager
    def trying(self, drop_id: int) -> Iterator[None]:
        self._trying[drop_id] = self._trying.get(drop_id, 0) + 1
        try:
            yield
        finally:
            self._trying[drop_id] -= 1
            if not self._trying[drop_id]:
                del self._trying[drop_id]
            moved = self._moved.pop(drop_id, None)
            if moved is not None:
                moved.set()

    async def claim(self, terms: Terms, user: User, key: Claim) -> ClaimResult:
        fut: asyncio.Future[ClaimResult] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(terms.drop_id, []).append(_Tap(user, key, fut))
        if self._running.get(terms.drop_id, 0) < self.PARALLEL:
            self._next(terms)
        return await fut

    def _next(self, terms: Terms) -> None:
        waiting = self._waiting.get(terms.drop_id, [])
        group: list[_Tap] = []
        later: list[_Tap] = []
        users: set[int] = set()
        for tap in waiting:
            if tap.future.done():  # its asker went away (cancelled): its key is released by claim_once
                continue
            if len(group) < self.SIZE and tap.user.id not in users:
                users.add(tap.user.id)
                group.append(tap)
            else:
                later.append(tap)
        if later:
            self._waiting[terms.drop_id] = later
        else:
            self._waiting.pop(terms.drop_id, None)
        if not group:
            return
        self._running[terms.drop_id] = self._running.get(terms.drop_id, 0) + 1
        # the group answers several viewers: its lines name the broadcast, not whoever tapped first
        task = asyncio.get_running_loop().create_task(self._run(terms, group), context=logs.apart())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, terms: Terms, group: list[_Tap]) -> None:
        logs.bind(broadcast=terms.broadcast_id)
        try:
            while group:
                try:
                    answers, count = await self._take(terms, group)
                except _Lost as lost:
                    for tap in group:
                        if tap.key.key_id in lost.key_ids and not tap.future.done():
                            tap.future.set_exception(KeyLost())
                    group = [tap for tap in group if tap.key.key_id not in lost.key_ids]
                    continue
                for tap, answer in zip(group, answers, strict=True):
                    if not tap.future.done():
                        tap.future.set_result(answer)
                left = max(0, terms.drop["quantity"] - count)
                self._left[terms.drop_id] = min(left, self._left.get(terms.drop_id, left))
                if not left or any(isinstance(a, Refused) and isinstance(a.error, AllClaimed) for a in answers):
                    self.app[GATE].saw_all_claimed(terms.drop_id)
                if any(isinstance(a, Got) for a in answers):
                    await live.claimed(self.app, terms.broadcast_id)
                break
        except Exception as exc:
            for tap in group:
                if not tap.future.done():
                    tap.future.set_exception(exc)
        except BaseException:  # shutting down: the askers are cancelled with it
            for tap in group:
                tap.future.cancel()
            raise
        finally:
            self._running[terms.drop_id] -= 1
            if not self._running[terms.drop_id]:
                del self._running[terms.drop_id]
            if self._waiting.get(terms.drop_id) and self._running.get(terms.drop_id, 0) < self.PARALLEL:
                self._next(terms)

    async def _take(self, terms: Terms, group: list[_Tap]) -> tuple[list[ClaimResult], int]:
        """One transaction: the group's claims (`take_many`) and every tap's kept answer."""
        now = utcnow()
        async with transaction(self.app) as uow:
            outcomes, count = await take_many(uow, terms, [Ask(t.user.id, t.user.role) for t in group], now)
            drop = {**terms.drop, "claimed": count, "left": max(0, terms.drop["quantity"] - count)}
            answers: list[ClaimResult] = []
            for outcome in outcomes:
                if isinstance(outcome, AppError):
                    answers.append(Refused(outcome, status_for(self.app, outcome),
                                           jsonenc.dumps({"error": error_body(outcome)})))
                else:
                    data = claim_out(outcome, drop)
                    answers.append(Got(data, jsonenc.dumps(data)))
            lost = await complete_keys(uow, [(t.key, a.status, a.body) for t, a in zip(group, answers, strict=True)])
            if lost:
                raise _Lost(lost)
        return answers, count


GROUPS = web.AppKey("coupons_claim_groups", Groups)


async def claim_once(app: web.Application, user: User, drop_id: int, idempotency_key: str | None) -> ClaimResult:
    """Claim with an Idempotency-Key, for the HTTP route and the socket event alike.

    1. A drop this process saw all claimed: refused at once (nothing written), unless the key is stored. A
       tap that comes while as many taps as there are coupons left are trying here waits for one of them
       first (`Groups.turn`).
    2. Its own statement: the key "in progress" (the unique constraint decides who is first), or what a
       stored key means: a replay, a key used for another drop (422), one still running (409).
    3. With the taps on the same drop that came meanwhile (`Groups`), one transaction: the claims
       (`take_many`) and their kept answers, refusals included.
    4. After the commit: the room's coupons-left figure is told to move (pushed coalesced).
    Every answer is counted in `/metrics` (`livecommerce_coupon_claims_total`, by outcome)."""
    return await count_outcome(
        app[AppKeys.metrics].claims, _claim_once(app, user, drop_id, idempotency_key),
        lambda r: "replayed" if r.replayed else "claimed" if isinstance(r, Got) else r.error.code)


async def _claim_once(app: web.Application, user: User, drop_id: int, idempotency_key: str | None) -> ClaimResult:
    key = order_rules.parse_idempotency_key(idempotency_key)
    if key is None:
        raise ClaimKeyMissing()
    gate, groups = app[GATE], app[GROUPS]
    known_terms = gate.terms.get(drop_id)
    if known_terms is not None:
        await groups.turn(known_terms)
    if gate.closed(drop_id) and not await app[KEY_CHECKS].known(user.id, key):
        raise AllClaimed()
    with groups.trying(drop_id):
        return await _claim_with_key(app, user, drop_id, key)


async def _claim_with_key(app: web.Application, user: User, drop_id: int, key: str) -> ClaimResult:
    gate = app[GATE]
    config = app[AppKeys.config]
    async with statements(app) as uow:
        claim = await claim_key(uow, user.id, key, _fingerprint(drop_id), utcnow(),
                                config.orders.idempotency_lock_seconds)
    if claim.outcome is order_rules.Replay.REPLAY:
        return _kept(claim)
    if claim.outcome is order_rules.Replay.MISMATCH:
        raise IdempotencyKeyReused()
    if claim.outcome is order_rules.Replay.IN_FLIGHT:
        raise IdempotencyInFlight()
    try:
        try:
            terms = gate.terms.get(drop_id)
            if terms is None:
                async with quick_read(app) as uow:
                    terms = gate.keep_terms(await drop_terms(uow, drop_id))
        except AppError as exc:  # no such drop
            refused = Refused(exc, status_for(app, exc), jsonenc.dumps({"error": error_body(exc)}))
            async with transaction(app) as uow:
                await complete_key(uow, claim, refused.status, refused.body, None)
            return refused
        logs.bind(broadcast=terms.broadcast_id)  # the lines written from here on name the drop's broadcast
        return await app[GROUPS].claim(terms, user, claim)
    except KeyLost:
        async with app[AppKeys.reader]() as db:
            kept = await stored_answer(db, claim.key_id)
        if kept is None:
            raise IdempotencyInFlight() from None
        return _kept(kept)
    except BaseException:
        await app[KEY_RELEASES].free(claim)  # so the viewer can tap again at once (or when the database is back)
        raise
