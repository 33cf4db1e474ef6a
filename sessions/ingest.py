"""Chat ingest: how a chat message is accepted, kept and sent to the room without costing the event loop
a database read, a transaction and a flush of its own.

- **What may be said is kept per process** (`RULES`): each broadcast's state, slow mode and sanctions, read
  once and forgotten after any commit that changes them (at once here, through Redis elsewhere; `caches`).
  Checking a message is a dictionary lookup and the pure rules of `chat`.
- **The limits** (the author's rate and the broadcast's slow mode) are taken in one Redis round trip, both
  or neither (`RoomRuntime.take_tokens`); in memory without Redis.
- **Messages are written in groups** (`ChatWriter`): the messages that arrive while a group is being
  written go together in the next, in one transaction (one insert for the group, one read when some carry
  a `client_id`), so a busy room shares each commit — and its flush to disk — between many messages; alone,
  a message is a group of one, with no timer to wait for.
- **Then each message is sent to the room**, in the order written, and only then acknowledged: an `ok`
  means the message is committed to the database (so a process killed after it loses nothing) and holds
  its place in the room's stream (every viewer gets it, live or on resume). If the room cannot be told
  (Redis away), the messages of the group not yet sent are deleted and answered `unavailable`: a message
  is seen by the room or does not stand. When the deletion fails too (the database went away with Redis),
  the messages are taken back as soon as the database answers again (tried every second, before anything
  newer is written), unless their sender sent them again meanwhile with their `client_id`: then they are
  sent to the room and stand. Only a process that dies before the database comes back leaves such a
  message standing unsent (it shows in the chat's history, never live).
- A message sent again with its `client_id` is found in the group's transaction (or earlier in the same
  group) and answered with the first sending's id and offset, never written twice; a send repeated on
  the same process is answered from memory before any check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from livecommerce import logs
from livecommerce.caches import KeptReads
from livecommerce.db import writer
from livecommerce.errors import Unavailable
from livecommerce.keys import AppKeys
from livecommerce.outages import unavailable

from .chat import Rules, message_out
from .models import Broadcast, BroadcastState, ChatMessage, RoomSanction
from .room import ROOMS, publish

log = logging.getLogger("livecommerce.chat")
_T = cast(Table, ChatMessage.__table__)
_COLUMNS = (_T.c.id, _T.c.broadcast_id, _T.c.user_id, _T.c.author_name, _T.c.author_role, _T.c.text,
            _T.c.client_id, _T.c.created_at)


async def load_rules(app: web.Application, broadcast_id: int) -> Rules | None:
    """A broadcast's chat rules as they stand (None: no such broadcast)."""
    async with app[AppKeys.reader]() as db:
        row = (await db.execute(select(Broadcast.state, Broadcast.slow_mode_seconds)
                                .where(Broadcast.id == broadcast_id))).first()
        if row is None:
            return None
        sanctions = (await db.execute(select(RoomSanction.user_id, RoomSanction.kind, RoomSanction.until)
                                      .where(RoomSanction.broadcast_id == broadcast_id))).all()
    return Rules(BroadcastState(row.state), row.slow_mode_seconds or 0,
                 {s.user_id: (s.kind, s.until) for s in sanctions})


RULES = web.AppKey("chat_rules", KeptReads[Rules | None])


def chat_key(user_id: int, client_id: str | None) -> str:
    """The room stream's key for a message sent with a `client_id` (a retried send is the same event)."""
    return f"chat:{user_id}:{client_id}" if client_id is not None else ""


@dataclass(frozen=True, slots=True)
class Sent:
    """A message's answer: its id and its offset in the room's stream."""

    id: int
    offset: int


@dataclass(slots=True)
class Draft:
    broadcast_id: int
    user_id: int
    name: str
    role: str
    text: str
    client_id: str | None
    at: datetime
    future: asyncio.Future[Sent]
    row: Any = None  # the message as written (or as first written, for a repeated send)
    first: Draft | None = None  # the same send earlier in the group
    new: bool = False  # written by this group (not a repeated send)

    def values(self) -> dict[str, Any]:
        return {"broadcast_id": self.broadcast_id, "user_id": self.user_id, "author_name": self.name,
                "author_role": self.role, "text": self.text, "client_id": self.client_id,
                "created_at": self.at, "delete_reason": ""}


@dataclass(slots=True)
class _Row:
    id: int
    broadcast_id: int
    user_id: int
    author_name: str
    author_role: str
    text: str
    client_id: str | None
    created_at: datetime


@dataclass
class ChatWriter:
    """Per app: writes chat messages in groups, then sends them to the room (see the module's docstring)."""

    app: web.Application
    group_size: int = 200
    groups: int = 0  # groups written (for tests and metrics)
    written: int = 0  # messages written
    _queue: list[Draft] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _answered: OrderedDict[tuple[int, str], Sent] = field(default_factory=OrderedDict)
    _untaken: dict[int, int] = field(default_factory=dict)  # refused messages still to delete → their broadcast
    untaken_since: float = 0.0  # when the oldest of them could not be deleted (monotonic)

    def answered(self, user_id: int, client_id: str) -> Sent | None:
        """A send this process already answered `ok` (its repetition gets the same answer)."""
        return self._answered.get((user_id, client_id))

    async def send(self, broadcast_id: int, user_id: int, name: str, role: str, text: str, client_id: str | None,
                   at: datetime) -> Sent:
        """Write the message with the next group and send it to the room; answers once both are done. Raises
        `Unavailable` when the room could not be told (nothing stands), or what the database raised."""
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._queue.append(Draft(broadcast_id, user_id, name, role, text, client_id, at, future))
        if self._task is None:
            # it writes every sender's messages: its lines name none of them
            self._task = asyncio.create_task(self._drain(), name="livecommerce-chat-writer", context=logs.apart())
        sent = await asyncio.shield(future)  # a sender gone away does not take its message back halfway
        if client_id is not None:
            self._answered[(user_id, client_id)] = sent
            if len(self._answered) > 20_000:
                self._answered.popitem(last=False)
        return sent

    async def _drain(self) -> None:
        try:
            while self._queue or self._untaken:
                if self._untaken:
                    await self._settle()
                if not self._queue:
                    if self._untaken:
                        await asyncio.sleep(TAKE_BACK_EVERY_S)
                    continue
                group, self._queue = self._queue[:self.group_size], self._queue[self.group_size:]
                try:
                    await self._write(group)
                    await self._send(group)
                except Exception as exc:  # the database (or the room) did not answer: each sender is told
                    for d in group:
                        if not d.future.done():
                            d.future.set_exception(exc)
        finally:
            self._task = None

    @property
    def writing(self) -> bool:
        """Messages wait to be written (not only refused ones to take back)."""
        return bool(self._queue) or not self._untaken

    async def close(self) -> None:
        """At shutdown: stop trying to take back what could not be (the messages stay, logged)."""
        task = self._task
        if task is not None and not task.done():
            if self._untaken:
                log.error("refused chat messages could not be taken back: they stay",
                          extra={"ids": list(self._untaken)})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _settle(self) -> None:
        """Delete the refused messages a failed take-back left standing; what fails stays for the next try."""
        ids = list(self._untaken)
        try:
            async with writer(self.app[AppKeys.engine]).begin() as conn:
                await conn.execute(delete(_T).where(_T.c.id.in_(ids)))
        except Exception as exc:
            if time.monotonic() - self.untaken_since > TAKE_BACK_FOR_S:
                log.error("refused chat messages could not be taken back: they stay", extra={"ids": ids})
                self._untaken.clear()
            elif not unavailable(exc):
                log.warning("refused chat messages not taken back yet", extra={"error": str(exc)})
            return
        rooms = self.app[ROOMS]
        for bid in {self._untaken.pop(i) for i in ids if i in self._untaken}:
            rooms.forget_chat(bid)
        log.warning("refused chat messages taken back", extra={"count": len(ids)})

    async def _write(self, group: list[Draft]) -> None:
        engine = writer(self.app[AppKeys.engine])
        for attempt in range(3):
            for d in group:
                d.row, d.first, d.new = None, None, False
            try:
                async with engine.begin() as conn:
                    known = await _known(conn, group)
                    firsts: dict[tuple[int, str], Draft] = {}
                    new: list[Draft] = []
                    for d in group:
                        k = (d.user_id, d.client_id) if d.client_id is not None else None
                        if k is not None and k in known:
                            d.row = known[k]
                            self._untaken.pop(d.row.id, None)  # sent again: it goes to the room and stands
                        elif k is not None and k in firsts:
                            d.first = firsts[k]
                        else:
                            new.append(d)
                            if k is not None:
                                firsts[k] = d
                    if new:
                        result = await conn.execute(insert(_T).returning(_T.c.id, sort_by_parameter_order=True),
                                                    [d.values() for d in new])
                        for d, message_id in zip(new, result.scalars().all(), strict=True):
                            d.row = _Row(message_id, d.broadcast_id, d.user_id, d.name, d.role, d.text,
                                         d.client_id, d.at)
                            d.new = True
                self.groups += 1
                self.written += len(new)
                metrics = self.app[AppKeys.metrics]
                metrics.chat_groups.inc()
                metrics.chat_messages.inc(len(new))
                return
            except IntegrityError:  # the same send written meanwhile by another process: found next time
                if attempt == 2:
                    raise

    async def _send(self, group: list[Draft]) -> None:
        """Send the group's messages to the room in order and answer them; from the first the room cannot
        hear, the group's new messages not yet sent are deleted and answered `unavailable`."""
        for i, d in enumerate(group):
            if d.first is not None:
                continue
            try:
                env = await publish(self.app, d.broadcast_id, "chat", message_out(d.row),
                                    key=chat_key(d.user_id, d.client_id))
            except Unavailable:
                _answer_repeats(group)
                await self._take_back(group[i:])
                raise
            d.future.set_result(Sent(d.row.id, env.offset))
        _answer_repeats(group)

    async def _take_back(self, rest: Sequence[Draft]) -> None:
        ids = [d.row.id for d in rest if d.new]
        if ids:
            try:
                async with writer(self.app[AppKeys.engine]).begin() as conn:
                    await conn.execute(delete(_T).where(_T.c.id.in_(ids)))
            except Exception as exc:  # the database away too: taken back when it answers (`_drain`)
                log.warning("refused chat messages to take back later", extra={"count": len(ids), "error": str(exc)})
                if not self._untaken:
                    self.untaken_since = time.monotonic()
                self._untaken.update({d.row.id: d.broadcast_id for d in rest if d.new})
        rooms = self.app[ROOMS]
        for bid in {d.broadcast_id for d in rest}:
            rooms.forget_chat(bid)  # a history read meanwhile must not keep what does not stand


async def _known(conn: Any, group: Sequence[Draft]) -> dict[tuple[int, str], Any]:
    """The group's sends already written (the same `client_id` from the same author)."""
    pairs = {(d.user_id, d.client_id) for d in group if d.client_id is not None}
    if not pairs:
        return {}
    rows = (await conn.execute(select(*_COLUMNS).where(_T.c.client_id.in_({c for _, c in pairs}),
                                                       _T.c.user_id.in_({u for u, _ in pairs})))).all()
    return {(r.user_id, r.client_id): r for r in rows if (r.user_id, r.client_id) in pairs}


def _answer_repeats(group: Sequence[Draft]) -> None:
    """The sends repeated within the group get their first's answer, once it has one."""
    for d in group:
        first = d.first
        if first is not None and not d.future.done() and first.future.done() and not first.future.cancelled() \
                and first.future.exception() is None:
            d.future.set_result(first.future.result())


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a sender that went away does not leave "never retrieved" behind


TAKE_BACK_EVERY_S = 1.0
TAKE_BACK_FOR_S = 3600.0  # a database away for longer than this: the messages stay (logged as an error)
WRITER = web.AppKey("chat_writer", ChatWriter)
