"""Buying once, over HTTP or the socket: `purchase_once` with its Idempotency-Key, answering a typed
`PurchaseResult` that each transport puts in its own words. What keeps it fast during a flash sale is
in `placing` (the admission), `lineup` (the kept line-up) and `keys` (the key checks asked together);
BENCHMARKS.md has the figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from livecommerce import jsonenc
from livecommerce.db import utcnow
from livecommerce.errors import AppError, error_body, status_for
from livecommerce.keys import AppKeys
from livecommerce.metrics import count_outcome
from livecommerce.models import User

from . import rules
from .connections import statements, transaction
from .errors import IdempotencyInFlight, IdempotencyKeyMissing, IdempotencyKeyReused, KeptRefusal, KeyLost
from .keys import KEY_RELEASES, Claim, claim_key, complete_key, stored_answer
from .lineup import LINEUPS
from .payments import PAYMENT_PROVIDERS
from .placing import OrderInput, Placed, PurchaseEvent, admit, notify, place_purchase
from .pricing import PRICING
from .rules import Replay, Wanted
from .schemas import PurchaseIn, purchase_out

__all__ = ["Bought", "PurchaseResult", "Refused", "order_input", "purchase_fingerprint", "purchase_once"]


@dataclass(frozen=True)
class Bought:
    """A purchase made, or a retry's replay of it."""

    purchase: dict[str, Any]  # the `PurchaseOut`, as JSON data
    body: str  # the same as JSON text, as kept with the Idempotency-Key: every retry answers it byte for byte
    replayed: bool = False
    status: int = 201


@dataclass(frozen=True)
class Refused:
    """A purchase refused once it had begun (its key was taken: the show ended, the last units went to
    someone else, a pricer refused the coupon). The refusal is kept with the key, and every retry is
    told it again, with the same status and body."""

    error: AppError
    status: int  # the HTTP status it was first answered with
    body: str  # `{"error": {...}}` as JSON text, as kept with the key
    replayed: bool = False


PurchaseResult = Bought | Refused


def order_input(body: PurchaseIn) -> OrderInput:
    return OrderInput(lines=[Wanted(li.product_id, li.quantity) for li in body.lines], name=body.name,
                      phone=body.phone, postal_code=body.postal_code, address1=body.address1, address2=body.address2,
                      note=body.note, payment_method=body.payment_method, delivery_option=body.delivery_option,
                      coupons=tuple(body.coupons), suggest_coupon=body.suggest_coupon)


def purchase_fingerprint(broadcast_id: int, body: PurchaseIn) -> str:
    """The same for an order sent over HTTP or the socket, so either can retry the other."""
    return rules.fingerprint("POST", f"/api/v1/broadcasts/{broadcast_id}/purchases", body.model_dump(mode="json"))


async def purchase_once(app: web.Application, user: User, broadcast_id: int, body: PurchaseIn,
                        idempotency_key: str | None) -> PurchaseResult:
    """Buy with an Idempotency-Key (IETF httpapi draft), for the HTTP route and the socket event alike.

    1. Against the line-up as recently read (`lineup.LINEUPS`), refuse what a read can refuse — not
       live, sold out, a wrong basket — by raising an `AppError`, unless the key is already stored;
       nothing is recorded and the key stays free.
    2. Its own transaction: insert the key "in progress"; the unique constraint decides who is first.
       A finished key answers what it answered before (`replayed`); one in progress raises
       `IdempotencyInFlight`; one used for another body raises `IdempotencyKeyReused`.
    3. One transaction: the purchase (priced by the registered pricers, stock taken by conditional
       UPDATEs) and its kept answer: `Bought`. A refusal found here (a race for the last units, a
       pricer's) is kept too, in a transaction of its own: `Refused`.
    Between 1 and 2, `placing.admit` keeps this process from writing more attempts at once than there
    are units left (the others wait, then are checked again).
    4. After the commit: the `PURCHASE_LISTENERS`.
    A missing or malformed key raises `IdempotencyKeyMissing`. Every answer is counted in `/metrics`
    (`livecommerce_purchases_total`, by outcome)."""
    return await count_outcome(
        app[AppKeys.metrics].purchases, _purchase_once(app, user, broadcast_id, body, idempotency_key),
        lambda r: "replayed" if r.replayed else "bought" if isinstance(r, Bought) else r.error.code)


async def _purchase_once(app: web.Application, user: User, broadcast_id: int, body: PurchaseIn,
                         idempotency_key: str | None) -> PurchaseResult:
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
        result, event = await _buy(app, user, broadcast_id, body, key, order, now)
    finally:
        ticket.release()
    if event is not None:
        await notify(app, event)
    return result


def _kept(claim: Claim) -> PurchaseResult:
    """A retry's answer: what was kept with the key, told again as it was."""
    status, body = claim.status_code or 200, claim.body or "{}"
    data = jsonenc.loads(body)
    if status >= 400:
        err = data.get("error", {})
        return Refused(KeptRefusal(str(err.get("code", "refused")), str(err.get("message", "")), err.get("details")),
                       status, body, replayed=True)
    return Bought(data, body, replayed=True, status=status)


async def _buy(app: web.Application, user: User, broadcast_id: int, body: PurchaseIn, key: str, order: OrderInput,
               now: datetime) -> tuple[PurchaseResult, PurchaseEvent | None]:
    """Steps 2 and 3 of `purchase_once`."""
    config = app[AppKeys.config]
    providers = app[PAYMENT_PROVIDERS]
    fp = purchase_fingerprint(broadcast_id, body)
    async with statements(app) as db:  # the claim's statements are each atomic on their own
        claim = await claim_key(db, user.id, key, fp, now, config.orders.idempotency_lock_seconds)
    if claim.outcome is Replay.REPLAY:
        return _kept(claim), None
    if claim.outcome is Replay.MISMATCH:
        raise IdempotencyKeyReused()
    if claim.outcome is Replay.IN_FLIGHT:
        raise IdempotencyInFlight()

    result: PurchaseResult
    placed: Placed | None = None
    try:
        try:
            bought: list[Bought] = []
            async with transaction(app) as db:
                async def keep(p: Placed) -> None:  # the answer commits with the purchase, or not at all
                    data = purchase_out(p.purchase, p.names, p.settings, config.tz).model_dump(mode="json")
                    bought.append(Bought(data, jsonenc.dumps(data)))
                    await complete_key(db, claim, bought[0].status, bought[0].body, p.purchase.id)

                placed = await place_purchase(db, user=user, broadcast_id=broadcast_id, order=order, now=now,
                                              config=config, providers=providers, answer=keep,
                                              pricers=app[PRICING].pricers)
            result = bought[0]
            if placed.event is not None:  # the line-ups kept here learn what is left, with no read
                app[LINEUPS].sold(broadcast_id, placed.event.stock_left)
        except AppError as exc:  # refused while buying: nothing was bought; the answer is kept
            placed = None
            result = Refused(exc, status_for(app, exc), jsonenc.dumps({"error": error_body(exc)}))
            async with transaction(app) as db:
                await complete_key(db, claim, result.status, result.body, None)
    except KeyLost:
        # A retry took the key over while this attempt was slow: this attempt's purchase rolled back.
        async with app[AppKeys.reader]() as db:
            kept = await stored_answer(db, claim.key_id)
        if kept is None:
            raise IdempotencyInFlight() from None
        return _kept(kept), None
    except BaseException:
        await app[KEY_RELEASES].free(claim)  # so the buyer can retry at once (or when the database is back)
        raise
    return result, placed.event if placed is not None else None
