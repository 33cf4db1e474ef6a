"""Broadcast services: read broadcasts and their line-ups, and move a broadcast through its
lifecycle (written to the database first, with a conditional update so that of several
server processes exactly one makes each move)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.config import Config
from livecommerce.db import rowcount
from livecommerce.errors import Conflict, Forbidden, NotFound
from livecommerce.models import Role, User

from .models import STATE_LABELS, Broadcast, BroadcastHost, BroadcastState, LineupItem
from .schedule import IllegalTransition, Slot, Timing, allowed_from, check_transition, may_go_live

OPEN_STATES = (BroadcastState.SCHEDULED, BroadcastState.LOBBY, BroadcastState.LIVE)


async def get_broadcast(db: AsyncSession, broadcast_id: int, *, full: bool = False) -> Broadcast:
    q = select(Broadcast).where(Broadcast.id == broadcast_id)
    if full:
        q = q.options(selectinload(Broadcast.lineup).selectinload(LineupItem.product),
                      selectinload(Broadcast.hosts).selectinload(BroadcastHost.user),
                      selectinload(Broadcast.market), selectinload(Broadcast.partners))
    b = await db.scalar(q)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    return b


async def list_broadcasts(db: AsyncSession, *, states: Sequence[BroadcastState] | None = None,
                          since: datetime | None = None, until: datetime | None = None,
                          host_id: int | None = None,
                          limit: int = 50) -> Sequence[Broadcast]:
    q = select(Broadcast).options(selectinload(Broadcast.lineup).selectinload(LineupItem.product),
                                  selectinload(Broadcast.hosts).selectinload(BroadcastHost.user),
                                  selectinload(Broadcast.partners))
    if states:
        q = q.where(Broadcast.state.in_(states))
    if since is not None:
        q = q.where(Broadcast.ends_at >= since)
    if until is not None:
        q = q.where(Broadcast.starts_at < until)
    if host_id is not None:
        q = q.join(BroadcastHost).where(BroadcastHost.user_id == host_id)
    q = q.order_by(Broadcast.starts_at).limit(limit)
    return (await db.scalars(q)).all()


async def check_host(db: AsyncSession, broadcast_id: int, user_id: int | None, role: Role | None) -> None:
    """Staff may act on any broadcast; a host only on the broadcasts they are assigned to."""
    if role is Role.STAFF:
        return
    if role is Role.HOST and user_id is not None:
        row = await db.get(BroadcastHost, (broadcast_id, user_id))
        if row is not None:
            return
    raise Forbidden("You are not a host of this broadcast.", code="not_your_broadcast")


@dataclass(frozen=True)
class Transition:
    broadcast_id: int
    state: BroadcastState
    at: datetime


async def move(db: AsyncSession, broadcast_id: int, wanted: BroadcastState, at: datetime) -> bool:
    """The conditional UPDATE behind every lifecycle move (by a host, staff or the scheduler): its WHERE
    names the states `wanted` may come from, so of several racing processes exactly one makes it.
    True if this call made it; records the real start and end."""
    values: dict[str, object] = {"state": wanted}
    if wanted is BroadcastState.LIVE:
        values["started_at"] = at
    if wanted is BroadcastState.ENDED:
        values["ended_at"] = at
    result = await db.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.state.in_(allowed_from(wanted)))
        .values(**values)
        .execution_options(synchronize_session=False))
    return rowcount(result) == 1


async def transition(db: AsyncSession, broadcast_id: int, wanted: BroadcastState, at: datetime) -> Transition:
    """Move a broadcast to `wanted` if its current state allows it. The UPDATE's WHERE carries the
    legal previous states, so two processes racing for the same move cannot both make it."""
    b = await get_broadcast(db, broadcast_id)
    try:
        check_transition(b.state, wanted)
    except IllegalTransition as exc:
        raise Conflict("A broadcast that is %(current)s cannot become %(wanted)s.", code="illegal_transition",
                       current=STATE_LABELS[exc.current], wanted=STATE_LABELS[exc.wanted]) from None
    if not await move(db, broadcast_id, wanted, at):
        await db.refresh(b)
        raise Conflict("Someone else changed this broadcast first; it is now %(state)s.",
                       code="transition_lost", state=STATE_LABELS[b.state])
    return Transition(broadcast_id, wanted, at)


async def host_move(db: AsyncSession, broadcast_id: int, wanted: BroadcastState, at: datetime,
                    config: Config) -> Transition:
    """A host goes live (from the lobby's opening until the slot's end) or ends the show early."""
    if wanted is BroadcastState.LIVE:
        b = await get_broadcast(db, broadcast_id)
        t = Timing.minutes(config.schedule.lobby_minutes, config.schedule.warn_minutes, config.schedule.grace_minutes)
        if b.state in (BroadcastState.SCHEDULED, BroadcastState.LOBBY) and not may_go_live(
                Slot(b.state, b.starts_at, b.ends_at), t, at):
            if at < b.starts_at:
                raise Conflict("Too early: you can go live from %(minutes)s minutes before the start.",
                               code="too_early", minutes=config.schedule.lobby_minutes)
            raise Conflict("This broadcast's hour is over.", code="too_late")
    return await transition(db, broadcast_id, wanted, at)


def viewer_can_join(b: Broadcast) -> bool:
    return b.state in OPEN_STATES


async def host_broadcasts(db: AsyncSession, user: User) -> Sequence[Broadcast]:
    if user.role is Role.STAFF:
        return await list_broadcasts(db, states=OPEN_STATES)
    return await list_broadcasts(db, states=OPEN_STATES, host_id=user.id)


__all__ = ["Transition", "check_host", "get_broadcast", "list_broadcasts", "transition"]
