"""Giveaways: start (the commitment published), enter (one entry each, numbered), close (the list fixed, its
digest published), draw (exactly once, across processes) and the proof anyone can check. Units of work on a
database session (`db` first); every move of a giveaway is a conditional UPDATE whose WHERE names the state
it leaves, so two processes never both make it. The draw itself is `coupons.draw`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import rowcount
from livecommerce.errors import N_, AppError, Conflict, Forbidden, NotFound, ValidationFailed
from livecommerce.models import Role, User
from orders.models import OrderStatus, Purchase
from orders.rules import masked_name
from sessions.models import Broadcast, BroadcastState

from . import draw
from .models import EntryMode, Giveaway, GiveawayEntry, GiveawayState, GiveawayWinner

G = GiveawayState
COUNTED = (OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.PACKED, OrderStatus.DELIVERED)
MAX_MINUTES = 60
KEYWORD_CHARS = 30


def clean_keyword(text: str) -> str:
    """A chat keyword as entrants type it: without a leading '#', spaces or case."""
    return "".join(text.split()).lstrip("#").casefold()[:KEYWORD_CHARS]


def keyword_matches(keyword: str, message: str) -> bool:
    """True when a chat message enters a keyword giveaway: the message is the keyword, with or without '#',
    or contains it as '#keyword'."""
    if not keyword:
        return False
    if clean_keyword(message) == keyword:
        return True
    return f"#{keyword}" in message.casefold().replace(" ", "")


def may_enter(user: User) -> bool:
    """Only viewers who signed in may win: never staff, hosts or the stall's merchants; not a guest."""
    return user.role is Role.VIEWER and not user.is_guest and user.is_active


async def get_giveaway(db: AsyncSession, giveaway_id: int) -> Giveaway:
    g = await db.get(Giveaway, giveaway_id)
    if g is None:
        raise NotFound(N_("No such giveaway."), code="giveaway_not_found")
    return g


@dataclass(frozen=True)
class GiveawayInput:
    prize_ko: str
    prize_en: str
    winners: int
    mode: EntryMode
    keyword: str
    minutes: int


async def start(db: AsyncSession, broadcast_id: int, by: User, spec: GiveawayInput, now: datetime) -> Giveaway:
    """Open entries now, for `spec.minutes`; publish the commitment to a fresh secret seed."""
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound(N_("No such broadcast."), code="broadcast_not_found")
    if b.state is not BroadcastState.LIVE:
        raise Conflict(N_("A giveaway starts while the broadcast is live."), code="broadcast_not_live")
    if not spec.prize_ko.strip():
        raise ValidationFailed(N_("Say what the prize is."), code="prize_missing")
    if not 1 <= spec.winners <= 100:
        raise ValidationFailed(N_("A giveaway has 1 to 100 winners."), code="invalid_winners")
    if not 1 <= spec.minutes <= MAX_MINUTES:
        raise ValidationFailed(N_("Entries stay open 1 to %(max)s minutes."), code="invalid_minutes",
                               max=MAX_MINUTES)
    keyword = clean_keyword(spec.keyword) if spec.mode is EntryMode.KEYWORD else ""
    if spec.mode is EntryMode.KEYWORD and not keyword:
        raise ValidationFailed(N_("A keyword giveaway needs its keyword."), code="keyword_missing")
    seed = draw.new_seed()
    g = Giveaway(broadcast_id=broadcast_id, prize_ko=spec.prize_ko.strip(), prize_en=spec.prize_en.strip(),
                 winners=spec.winners, mode=spec.mode, keyword=keyword, state=G.OPEN, entries=0,
                 commitment=draw.commitment(seed), seed=seed, opened_at=now,
                 closes_at=now + timedelta(minutes=spec.minutes), created_by=by.id)
    db.add(g)
    await db.flush()
    return g


async def enter(db: AsyncSession, giveaway_id: int, user: User, now: datetime) -> GiveawayEntry:
    """One entry, numbered in order of arrival. The number comes from a conditional UPDATE of the giveaway's
    counter (which also checks that entries are open); the unique (giveaway, user) pair refuses a second
    entry, and the refusal rolls the counter back with it."""
    g = await get_giveaway(db, giveaway_id)
    if not may_enter(user):
        raise Forbidden(N_("Staff, hosts, merchants and guests cannot enter giveaways."), code="cannot_enter")
    if g.mode is EntryMode.BUYERS:
        raise Conflict(N_("Every buyer of this broadcast is entered: there is nothing to tap."),
                       code="buyers_only")
    return await add_entry(db, g, user.id, now)


async def add_entry(db: AsyncSession, g: Giveaway, user_id: int, now: datetime) -> GiveawayEntry:
    """Number and record one entry (the checks of who may enter are the caller's)."""
    taken = await db.execute(update(Giveaway).where(Giveaway.id == g.id, Giveaway.state == G.OPEN,
                                                    Giveaway.closes_at > now)
                             .values(entries=Giveaway.entries + 1).returning(Giveaway.entries)
                             .execution_options(synchronize_session=False))
    number = taken.scalar()
    if number is None:
        raise Conflict(N_("This giveaway is closed."), code="giveaway_closed")
    entry = GiveawayEntry(giveaway_id=g.id, user_id=user_id, number=int(number), entered_at=now)
    db.add(entry)
    try:
        await db.flush()  # on a second entry the unique pair refuses; the caller's rollback undoes the counter
    except IntegrityError:
        raise Conflict(N_("You have already entered this giveaway."), code="already_entered") from None
    return entry


async def entry_of(db: AsyncSession, giveaway_id: int, user_id: int) -> GiveawayEntry | None:
    return (await db.scalars(select(GiveawayEntry).where(GiveawayEntry.giveaway_id == giveaway_id,
                                                         GiveawayEntry.user_id == user_id))).first()


async def enter_buyers(db: AsyncSession, g: Giveaway, now: datetime) -> int:
    """A "buyers" giveaway: enter, in the order of their first purchase, every viewer who bought during this
    broadcast (a purchase that still counts). Called when entries close."""
    first = (select(Purchase.user_id, func.min(Purchase.id).label("first"))
             .where(Purchase.broadcast_id == g.broadcast_id, Purchase.status.in_(COUNTED),
                    Purchase.placed_at <= (g.closes_at if g.closes_at < now else now))
             .group_by(Purchase.user_id).subquery())
    rows = (await db.execute(select(User).join(first, first.c.user_id == User.id).order_by(first.c.first))).scalars()
    number = 0
    for user in rows:
        if not may_enter(user):
            continue
        number += 1
        db.add(GiveawayEntry(giveaway_id=g.id, user_id=user.id, number=number, entered_at=now))
    await db.flush()
    return number


async def numbers_of(db: AsyncSession, giveaway_id: int) -> list[int]:
    return list((await db.scalars(select(GiveawayEntry.number).where(GiveawayEntry.giveaway_id == giveaway_id)
                                  .order_by(GiveawayEntry.number))).all())


async def close(db: AsyncSession, giveaway_id: int, now: datetime) -> Giveaway | None:
    """Close entries (host, or the timer): the list of entries is fixed and its digest published. None when
    another process (or an earlier call) closed it first."""
    g = await get_giveaway(db, giveaway_id)
    moved = await db.execute(update(Giveaway).where(Giveaway.id == giveaway_id, Giveaway.state == G.OPEN)
                             .values(state=G.CLOSED, closed_at=now)
                             .execution_options(synchronize_session=False))
    if rowcount(moved) != 1:
        return None
    if g.mode is EntryMode.BUYERS:
        count = await enter_buyers(db, g, now)
        await db.execute(update(Giveaway).where(Giveaway.id == g.id).values(entries=count)
                         .execution_options(synchronize_session=False))
    numbers = await numbers_of(db, giveaway_id)
    digest = draw.entries_digest(numbers)
    await db.execute(update(Giveaway).where(Giveaway.id == g.id).values(digest=digest)
                     .execution_options(synchronize_session=False))
    await db.refresh(g)
    return g


async def draw_winners(db: AsyncSession, giveaway_id: int, now: datetime) -> tuple[Giveaway, list[GiveawayWinner]]:
    """Draw the winners, exactly once: the move closed → drawn is conditional, and the winners are derived
    from the committed seed and the published digest (`coupons.draw`). Entries still open are closed first."""
    g = await get_giveaway(db, giveaway_id)
    if g.state is G.OPEN:
        await close(db, giveaway_id, now)
        g = await get_giveaway(db, giveaway_id)
        await db.refresh(g)
    if g.state is G.DRAWN:
        raise Conflict(N_("This giveaway has already been drawn."), code="already_drawn")
    if g.state is not G.CLOSED or g.digest is None:
        raise Conflict(N_("This giveaway cannot be drawn."), code="giveaway_not_closed")
    numbers = await numbers_of(db, giveaway_id)
    if not numbers:
        raise Conflict(N_("Nobody has entered this giveaway."), code="no_entries")
    if g.winners > len(numbers):
        raise Conflict(N_("There are %(winners)s prizes but only %(entries)s entries."), code="too_many_winners",
                       winners=g.winners, entries=len(numbers))
    moved = await db.execute(update(Giveaway).where(Giveaway.id == giveaway_id, Giveaway.state == G.CLOSED)
                             .values(state=G.DRAWN, drawn_at=now)
                             .execution_options(synchronize_session=False))
    if rowcount(moved) != 1:
        raise Conflict(N_("This giveaway has already been drawn."), code="already_drawn")
    picked = draw.draw(g.seed, g.digest, numbers, g.winners)
    entries = {e.number: e for e in (await db.scalars(select(GiveawayEntry).where(
        GiveawayEntry.giveaway_id == giveaway_id, GiveawayEntry.number.in_(picked)))).all()}
    winners = [GiveawayWinner(giveaway_id=giveaway_id, user_id=entries[n].user_id, number=n, rank=i + 1)
               for i, n in enumerate(picked)]
    db.add_all(winners)
    await db.flush()
    await db.refresh(g)
    return g, winners


async def due_to_close(db: AsyncSession, now: datetime, limit: int = 50) -> list[int]:
    """Open giveaways whose entry window has passed, or whose broadcast is no longer live."""
    rows = await db.scalars(select(Giveaway.id).join(Broadcast, Broadcast.id == Giveaway.broadcast_id)
                            .where(Giveaway.state == G.OPEN)
                            .where((Giveaway.closes_at <= now) | (Broadcast.state != BroadcastState.LIVE))
                            .limit(limit))
    return list(rows.all())


async def open_in(db: AsyncSession, broadcast_id: int, keyword_only: bool = False) -> list[Giveaway]:
    q = select(Giveaway).where(Giveaway.broadcast_id == broadcast_id, Giveaway.state == G.OPEN)
    if keyword_only:
        q = q.where(Giveaway.mode == EntryMode.KEYWORD)
    return list((await db.scalars(q.order_by(Giveaway.id))).all())


async def take_back(db: AsyncSession, giveaway_id: int) -> bool:
    """A giveaway the room could not be told had started, taken back while nobody has entered: False when
    someone entered meanwhile (one who joined saw it): it stands."""
    return rowcount(await db.execute(delete(Giveaway).where(Giveaway.id == giveaway_id, Giveaway.entries == 0,
                                                            Giveaway.state == G.OPEN)
                                     .execution_options(synchronize_session=False))) == 1


async def latest_in(db: AsyncSession, broadcast_id: int) -> Giveaway | None:
    """The giveaway a joining viewer should see: the open one, else the last one."""
    return (await db.scalars(select(Giveaway).where(Giveaway.broadcast_id == broadcast_id,
                                                    Giveaway.state != G.CANCELLED)
                             .order_by((Giveaway.state == G.OPEN).desc(), Giveaway.id.desc()).limit(1))).first()


async def winners_of(db: AsyncSession, giveaway_id: int) -> list[tuple[GiveawayWinner, User]]:
    rows = await db.execute(select(GiveawayWinner, User).join(User, User.id == GiveawayWinner.user_id)
                            .where(GiveawayWinner.giveaway_id == giveaway_id).order_by(GiveawayWinner.rank))
    return [(w, u) for w, u in rows.all()]


def public(g: Giveaway, winners: Sequence[tuple[GiveawayWinner, User]] = ()) -> dict[str, Any]:
    """What everyone may see of a giveaway: the seed only once drawn."""
    return {
        "id": g.id, "broadcast_id": g.broadcast_id, "prize_ko": g.prize_ko, "prize_en": g.prize_en,
        "winners_count": g.winners, "mode": g.mode.value, "keyword": g.keyword, "state": g.state.value,
        "entries": g.entries, "commitment": g.commitment, "digest": g.digest,
        "seed": g.seed if g.state is G.DRAWN else None,
        "opened_at": g.opened_at.isoformat(), "closes_at": g.closes_at.isoformat(),
        "drawn_at": g.drawn_at.isoformat() if g.drawn_at else None,
        "winners": [{"rank": w.rank, "number": w.number, "name": masked_name(u.display_name)} for w, u in winners],
        "verify_url": f"/giveaways/{g.id}/verify",
    }


async def proof(db: AsyncSession, giveaway_id: int) -> dict[str, Any]:
    """Everything needed to check the draw: the commitment, the entry list (numbers with masked names), its
    digest, the seed and the winners, once drawn."""
    g = await get_giveaway(db, giveaway_id)
    rows = await db.execute(select(GiveawayEntry.number, User.display_name)
                            .join(User, User.id == GiveawayEntry.user_id)
                            .where(GiveawayEntry.giveaway_id == giveaway_id).order_by(GiveawayEntry.number))
    out = public(g, await winners_of(db, giveaway_id))
    out["entry_list"] = ([{"number": n, "name": masked_name(name)} for n, name in rows.all()]
                         if g.state in (G.CLOSED, G.DRAWN) else [])
    out["algorithm"] = "livecommerce-draw-v1"
    return out


@dataclass(frozen=True)
class WinnerDetails:
    name: str
    phone: str
    postal_code: str
    address1: str
    address2: str


async def save_details(db: AsyncSession, giveaway_id: int, user_id: int, details: WinnerDetails,
                       now: datetime) -> GiveawayWinner:
    w = (await db.scalars(select(GiveawayWinner).where(GiveawayWinner.giveaway_id == giveaway_id,
                                                       GiveawayWinner.user_id == user_id))).first()
    if w is None:
        raise AppError(N_("Only a winner can give delivery details for this prize."), code="not_a_winner",
                       status=403)
    w.contact_name, w.contact_phone, w.postal_code = details.name, details.phone, details.postal_code
    w.address1, w.address2, w.details_at = details.address1, details.address2, now
    await db.flush()
    return w
