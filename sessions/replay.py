"""After the show: its recording on its page, with the chat replayed in time beside it. Each message is given
its offset from the show's real start (the recording's second 0), so the page shows it as the video passes
that second; a message the host or staff removed is never replayed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.api import Api, Call
from livecommerce.auth import PUBLIC
from livecommerce.errors import NotFound
from livecommerce.keys import AppKeys

from .models import Broadcast, BroadcastState, ChatMessage

__all__ = ["ReplayLine", "has_replay", "register_api", "replay_lines"]

MAX_LINES = 20_000


def has_replay(b: Broadcast) -> bool:
    """An ended broadcast with its recording set plays it back on its page."""
    return b.state is BroadcastState.ENDED and bool(b.recording_url)


@dataclass(frozen=True)
class ReplayLine:
    id: int
    name: str
    role: str
    text: str
    offset: float  # seconds after the show's real start


def replay_lines(messages: Iterable[ChatMessage], started_at: datetime) -> list[ReplayLine]:
    """The messages to replay, in the order they came: removed ones left out, each at its offset from the
    start (a message from the lobby, before the start, at 0)."""
    out = [ReplayLine(m.id, m.author_name, m.author_role, m.text,
                      round(max(0.0, (m.created_at - started_at).total_seconds()), 1))
           for m in messages if m.deleted_at is None]
    out.sort(key=lambda line: (line.offset, line.id))
    return out


class ReplayLineOut(BaseModel):
    id: int
    name: str
    role: str
    text: str
    offset: float = Field(description="seconds after the show's real start: shown when the recording reaches it")


class ReplayOut(BaseModel):
    broadcast_id: int
    recording_url: str
    started_at: datetime
    messages: list[ReplayLineOut]


async def read_replay(db: AsyncSession, broadcast_id: int) -> ReplayOut:
    b = await db.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound("No broadcast with this id.", code="broadcast_not_found")
    if not has_replay(b):
        raise NotFound("This broadcast has no replay.", code="no_replay")
    start = b.started_at or b.starts_at
    rows = (await db.scalars(select(ChatMessage).where(ChatMessage.broadcast_id == broadcast_id)
                             .order_by(ChatMessage.id).limit(MAX_LINES))).all()
    return ReplayOut(broadcast_id=b.id, recording_url=b.recording_url, started_at=start,
                     messages=[ReplayLineOut(**line.__dict__) for line in replay_lines(rows, start)])


def register_api(api: Api) -> None:
    @api.route("GET", "/broadcasts/{broadcast_id}/replay", access=PUBLIC, tag="broadcasts", response=ReplayOut,
               errors=[404], summary="An ended broadcast's recording and its chat, each message at its second of "
                                     "the show (removed messages left out)")
    async def replay_get(call: Call[None, None]) -> ReplayOut:
        app: web.Application = call.app
        async with app[AppKeys.reader]() as db:
            return await read_replay(db, call.param("broadcast_id"))
