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

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from livecommerce import jsonenc
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError, error_body, status_for
from livecommerce.keys import AppKeys
from livecommerce.models import Role, User
from livecommerce.uow import UnitOfWork, dialect_name
from orders import rules as order_rules
from orders.connections import quick_read, statements, transaction
from orders.errors import IdempotencyInFlight, IdempotencyKeyReused, KeptRefusal, KeyLost
from orders.keys import KEY_CHECKS, Claim, claim_key, complete_key, release_key, stored_answer

from . import claims, live, rules
from .models import ClaimedCoupon, ClaimState, CouponDrop, DropState

__all__ = ["ERROR_STATUSES", "GATE", "ClaimKeyMissing", "ClaimResult", "Claimed", "Gate", "Got", "Refused",
           "claim_once", "claim_out", "gate_ctx", "take"]

# declarative classes map a Table; SQLAlchemy types `__table__` as any FromClause
_D, _C = cast(Table, CouponDrop.__table__), cast(Table, ClaimedCoupon.__table__)

_TAKE = (update(_D).where(_D.c.id == bindparam("d"), _D.c.state == DropState.OPEN.value,
                          _D.c.claimed < _D.c.quantity, _D.c.claim_closes_at > bindparam("now"))
         .values(claimed=_D.c.claimed + 1)
         .returning(_D.c.claimed))
_STATE = select(_D.c.state, _D.c.claimed, _D.c.quantity).where(_D.c.id == bindparam("d"))
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


async def take(uow: UnitOfWork, terms: Terms, user_id: int, role: Role, now: datetime) -> tuple[Claimed, int]:
    """One tap, in the caller's transaction: one of the drop's coupons for this viewer (and the drop's count
    of claims after it), or a refusal, on which the caller rolls back. The viewer's claim row is written
    first, the drop's counter moved last: the drop's row, which every tap of a busy drop waits for, stays
    locked only from that UPDATE to the commit."""
    if role is not Role.VIEWER:
        raise ViewersOnly()
    held = int((await uow.execute(_HELD, {"d": terms.drop_id, "u": user_id})).scalar() or 0)
    if held >= terms.per_viewer_limit:
        raise AlreadyClaimed()
    ends = rules.use_ends_at(terms.dropped_at, terms.use_days, None)
    new_id = (await uow.execute(_NEW[dialect_name(uow)], {"d": terms.drop_id, "u": user_id, "s": held + 1,
                                                           "now": now, "ends": ends})).scalar()
    if new_id is None:  # the same viewer's simultaneous tap took this slot
        raise AlreadyClaimed()
    row = (await uow.execute(_TAKE, {"d": terms.drop_id, "now": now})).first()
    if row is None:
        state = (await uow.execute(_STATE, {"d": terms.drop_id})).first()
        if state is not None and state[1] >= state[2]:
            raise AllClaimed()
        raise ClaimClosed()
    return Claimed(int(new_id), terms.drop_id, terms.broadcast_id, held + 1, now, ends), int(row[0])


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


async def claim_once(app: web.Application, user: User, drop_id: int, idempotency_key: str | None) -> ClaimResult:
    """Claim with an Idempotency-Key, for the HTTP route and the socket event alike.

    1. A drop this process saw all claimed: refused at once (nothing written), unless the key is stored.
    2. Its own statement: the key "in progress" (the unique constraint decides who is first), or what a
       stored key means: a replay, a key used for another drop (422), one still running (409).
    3. One transaction: the claim (`take`) and its kept answer. A refusal is kept too, in its own.
    4. After the commit: the room's coupons-left figure is told to move (pushed coalesced)."""
    key = order_rules.parse_idempotency_key(idempotency_key)
    if key is None:
        raise ClaimKeyMissing()
    gate = app[GATE]
    if gate.closed(drop_id) and not await app[KEY_CHECKS].known(user.id, key):
        raise AllClaimed()
    config = app[AppKeys.config]
    now = utcnow()
    async with statements(app) as uow:
        claim = await claim_key(uow, user.id, key, _fingerprint(drop_id), now, config.orders.idempotency_lock_seconds)
    if claim.outcome is order_rules.Replay.REPLAY:
        return _kept(claim)
    if claim.outcome is order_rules.Replay.MISMATCH:
        raise IdempotencyKeyReused()
    if claim.outcome is order_rules.Replay.IN_FLIGHT:
        raise IdempotencyInFlight()
    result: ClaimResult
    try:
        try:
            terms = gate.terms.get(drop_id)
            if terms is None:
                async with quick_read(app) as uow:
                    terms = gate.keep_terms(await drop_terms(uow, drop_id))
            async with transaction(app) as uow:
                got, count = await take(uow, terms, user.id, user.role, now)
                drop = {**terms.drop, "claimed": count, "left": max(0, terms.drop["quantity"] - count)}
                data = claim_out(got, drop)
                body = jsonenc.dumps(data)
                await complete_key(uow, claim, 201, body, None)
            result = Got(data, body)
        except AppError as exc:
            if isinstance(exc, AllClaimed):
                gate.saw_all_claimed(drop_id)
            result = Refused(exc, status_for(app, exc), jsonenc.dumps({"error": error_body(exc)}))
            async with transaction(app) as uow:
                await complete_key(uow, claim, result.status, result.body, None)
    except KeyLost:
        async with app[AppKeys.reader]() as db:
            kept = await stored_answer(db, claim.key_id)
        if kept is None:
            raise IdempotencyInFlight() from None
        return _kept(kept)
    except BaseException:
        with contextlib.suppress(Exception):
            async with transaction(app) as uow:
                await release_key(uow, claim)
        raise
    if isinstance(result, Got):
        await live.claimed(app, got.broadcast_id)
    return result
