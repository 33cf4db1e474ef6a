"""The live room's socket events (namespace `/live`): join a broadcast's room, and the host's
lifecycle controls. Every event declares who may send it and validates its payload."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import Executable, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.auth import HOST, PUBLIC, SIGNED_IN
from livecommerce.caches import KeptReads, Watch
from livecommerce.db import utcnow
from livecommerce.errors import N_, AppError, NotFound
from livecommerce.keys import AppKeys
from livecommerce.models import Role
from livecommerce.realtime import EventGroup, Namespace, ServerEvent, SocketUser, event, live_parts

from . import chat, ingest, schemas, services
from .models import STATE_LABELS, Broadcast, BroadcastState, ChatMessage, LineupItem
from .room import (
    NAMESPACE,
    ROOMS,
    SCHEDULE_ROOM,
    RoomRuntime,
    moderators_room,
    publish_or_take_back,
    push_transition,
    room,
    room_hooks,
    user_room,
)
from .schemas import (
    BroadcastOut,
    BroadcastRef,
    ChatIn,
    HeartIn,
    JoinIn,
    LineupItemOut,
    MessageRef,
    NoticeIn,
    SanctionIn,
    SlowModeIn,
    SpotlightIn,
)

log = logging.getLogger("livecommerce.room")


async def enter_own_room(ns: Namespace, sid: str, who: SocketUser) -> None:
    """At connect: a signed-in person's sockets share a room, where reminders and moderation find them."""
    if who.user_id is not None:
        await ns.enter_room(sid, user_room(who.user_id))


class RoomEvents(EventGroup):
    """The viewer's side of the room: join and leave, chat, hearts, reports, the schedule's changes."""

    @property
    def rooms_rt(self) -> RoomRuntime:
        return self.app[ROOMS]

    @event("schedule:watch", access=PUBLIC)
    async def watch_schedule(self, sid: str, who: SocketUser, p: None) -> None:
        """Hear when any broadcast changes state (the schedule and home pages)."""
        await self.enter_room(sid, SCHEDULE_ROOM)

    @event("join", access=PUBLIC, payload=JoinIn,
           errors=("broadcast_not_found", "broadcast_closed", "banned", "invalid_position"))
    async def join(self, sid: str, who: SocketUser, p: JoinIn) -> dict[str, Any]:
        """Join a broadcast's room. Answers with the room's whole current state, or — when `since` is
        given and the stream still holds everything after it — with exactly the events missed
        (`recovered: true`)."""
        shared = await self.app[SNAPSHOTS].get(self.app, p.broadcast_id)
        if shared is None:
            raise NotFound(N_("No broadcast with this id."), code="broadcast_not_found")
        bid = p.broadcast_id
        if BroadcastState(shared["state"]) not in services.OPEN_STATES:
            raise AppError(N_("This broadcast is %(state)s: its room is closed."), code="broadcast_closed",
                           state=STATE_LABELS[BroadcastState(shared["state"])])
        if who.user_id is not None:
            rules = await self.app[ingest.RULES].get(self.app, bid)
            if rules is not None and rules.sanctions.get(who.user_id, ("", None))[0] == "ban":
                raise AppError(N_("You have been removed from this broadcast."), code="banned", status=403)
        snapshot = dict(shared)
        for part in room_hooks(self.app).snapshot_parts:  # each part opens its own read: none is held here
            snapshot.update(await part(self.app, bid, who))
        rt = self.rooms_rt
        out: dict[str, Any] = {"broadcast": snapshot, "you": {"user_id": who.user_id, "role": who.role,
                                                               "name": who.name}}
        if p.since is not None:
            epoch_now, top = await rt.stream.position(bid)
            if p.since.epoch == epoch_now and p.since.offset > top:
                raise AppError(N_("This position is not one the room gave out. Reload the page."),
                               code="invalid_position")
        await self._enter(sid, bid)
        # A move made while this join was being answered (the lobby opening, the show going live, a spotlight) was
        # sent to the room before this socket was in it: what is read again now, in the room, holds it
        # (a commit forgets the cached read on this process at once, on the others within milliseconds).
        now_shared = await self.app[SNAPSHOTS].get(self.app, bid)
        if now_shared is not None and now_shared is not shared:  # read again: something changed
            snapshot.update(now_shared)
        if p.since is not None:
            rec = await rt.stream.since(bid, p.since.epoch, p.since.offset)
            if rec.recovered:
                rt.joined_at(bid, rec.epoch, rec.offset)
                out.update(recovered=True, events=[e.wire() for e in rec.events],
                           position={"epoch": rec.epoch, "offset": rec.offset})
                out["counts"] = await rt.counts(bid)
                return out
            out["reason"] = rec.reason
        epoch, offset = await rt.stream.position(bid)
        rt.joined_at(bid, epoch, offset)
        history = rt.recent_chat(bid, epoch, offset)
        if history is None:  # read after the position: it holds every message up to it
            async with self.app[AppKeys.reader]() as db:
                history = [chat.message_out(m)
                           for m in await chat.recent(db, bid, self.app[AppKeys.config].room.history)]
            rt.keep_chat(bid, epoch, offset, history)
        out.update(recovered=False, chat=history, position={"epoch": epoch, "offset": offset},
                   counts=await rt.counts(bid))
        return out

    async def _enter(self, sid: str, broadcast_id: int) -> None:
        rt = self.rooms_rt
        for other in rt.rooms_of(sid):
            if other != broadcast_id:
                await self.leave_room(sid, room(other))
        await self.enter_room(sid, room(broadcast_id))
        rt.entered(broadcast_id)

    @event("leave", access=PUBLIC, payload=BroadcastRef, errors=())
    async def leave(self, sid: str, who: SocketUser, p: BroadcastRef) -> None:
        """Leave a broadcast's room."""
        await self.leave_room(sid, room(p.broadcast_id))

    def _in_room(self, sid: str, broadcast_id: int) -> None:
        if not self.rooms_rt.in_room(sid, broadcast_id):
            raise AppError(N_("Join the broadcast's room first."), code="not_in_room", status=409)

    @event("chat:send", access=SIGNED_IN, payload=ChatIn,
           errors=("not_in_room", "broadcast_not_found", "empty_message", "message_too_long", "bad_characters",
                   "chat_closed", "blocked_word", "slow_mode", "rate_limited", "muted", "banned", "unavailable"))
    async def chat_send(self, sid: str, who: SocketUser, p: ChatIn) -> dict[str, Any]:
        """Send a chat message to the room (signed-in viewers, hosts and staff). Answered `ok` once the
        message is saved and holds its place in the room's stream (every viewer gets it); `unavailable`
        means nobody got it and it was not kept: send it again. With `client_id`, a send repeated with the
        same id is the same message and gets the same answer."""
        self._in_room(sid, p.broadcast_id)
        assert who.user_id is not None and who.role is not None
        chats = self.app[ingest.WRITER]
        if p.client_id is not None and (sent := chats.answered(who.user_id, p.client_id)) is not None:
            return {"id": sent.id, "offset": sent.offset}
        cfg = self.app[AppKeys.config].room
        text = chat.clean_text(p.text, cfg.chat_max_length)
        now = utcnow()
        rt = self.rooms_rt
        rules = await self.app[ingest.RULES].get(self.app, p.broadcast_id)
        if rules is None:
            raise NotFound(N_("No broadcast with this id."), code="broadcast_not_found")
        chat.check_rules(rules, who.role, who.user_id, now)
        if who.role not in (Role.HOST, Role.STAFF):
            words = await rt.words(self._blocked_words)
            if chat.blocked_word(text, words) is not None:
                raise chat.ChatRefused(N_("This message contains a word that is not allowed here."),
                                       code="blocked_word")
            limits = [(f"chat:{who.user_id}", cfg.chat_rate_per_second, cfg.chat_burst)]
            if rules.slow_mode_seconds:
                limits.insert(0, (f"slow:{p.broadcast_id}:{who.user_id}", 1 / rules.slow_mode_seconds, 1))
            empty = await rt.take_tokens(limits)
            if empty and rules.slow_mode_seconds and empty == 1:
                raise AppError(N_("Slow mode: one message every %(seconds)s seconds."), code="slow_mode",
                               status=429, seconds=rules.slow_mode_seconds)
            if empty:
                raise AppError(N_("You are sending messages too fast. Wait a moment."), code="rate_limited",
                               status=429)
        sent = await chats.send(p.broadcast_id, who.user_id, who.name, who.role.value, text, p.client_id, now)
        for listener in room_hooks(self.app).on_chat:
            try:
                await listener(self.app, p.broadcast_id, who, text)
            except Exception:  # the message is sent: a listener's failure must not turn it into an error
                log.exception("chat listener failed", extra={"broadcast": p.broadcast_id})
        return {"id": sent.id, "offset": sent.offset}

    async def _blocked_words(self) -> list[str]:
        async with self.app[AppKeys.reader]() as db:
            return await chat.blocked_words(db)

    def _quick_heart(self, sid: str, data: Any) -> bool:
        """Taps from a viewer in the room, well formed: counted at once (no log line, no account check).
        Anything else goes the usual way and is answered with its error."""
        try:
            p = HeartIn.model_validate(data, strict=True)
        except ValidationError:
            return False
        rt = self.rooms_rt
        if not rt.in_room(sid, p.broadcast_id):
            return False
        rt.add_hearts(p.broadcast_id, p.count)
        return True

    @event("heart", access=PUBLIC, payload=HeartIn, errors=("not_in_room",), quick=_quick_heart)
    async def heart(self, sid: str, who: SocketUser, p: HeartIn) -> None:
        """Tap hearts as fast as you like: they are all counted; the room's total is pushed a few times a
        second."""
        self._in_room(sid, p.broadcast_id)
        self.rooms_rt.add_hearts(p.broadcast_id, p.count)

    @event("chat:report", access=SIGNED_IN, payload=MessageRef, errors=("message_not_found", "own_message"))
    async def report(self, sid: str, who: SocketUser, p: MessageRef) -> dict[str, Any]:
        """Report a message to the moderators."""
        assert who.user_id is not None
        async with self.app[AppKeys.db].begin() as db:
            new = await chat.report(db, p.broadcast_id, p.message_id, who.user_id, p.reason, utcnow())
        if new:
            await self.app[AppKeys.sio].emit("mod:reported", {"broadcast_id": p.broadcast_id,
                                                              "message_id": p.message_id, "reason": p.reason},
                                             room=moderators_room(p.broadcast_id), namespace=NAMESPACE)
        return {"reported": True}


class HostEvents(EventGroup):
    """The console: watch the reports, moderate, pin a notice, slow mode, spotlight, go live and end."""

    async def _host(self, who: SocketUser, broadcast_id: int) -> None:
        async with self.app[AppKeys.reader]() as db:
            await services.get_broadcast(db, broadcast_id)
            await services.check_host(db, broadcast_id, who.user_id, who.role)

    async def _publish_or_undo(self, broadcast_id: int, type_: str, data: Any, undo: Executable) -> None:
        """Send a change already written to the room; if the room cannot be told, write it back (unless it was
        changed again meanwhile) and answer `unavailable`: nothing stands that viewers did not get."""

        async def write_back(db: AsyncSession) -> bool:
            await db.execute(undo)
            return True  # changed again meanwhile or not, this change is not the one standing

        await publish_or_take_back(self.app, broadcast_id, type_, data, write_back)

    @event("host:watch", access=HOST, payload=BroadcastRef, errors=("broadcast_not_found", "not_your_broadcast"))
    async def host_watch(self, sid: str, who: SocketUser, p: BroadcastRef) -> None:
        """The console hears the reports on its broadcast's chat."""
        await self._host(who, p.broadcast_id)
        await self.enter_room(sid, moderators_room(p.broadcast_id))

    @event("mod:delete", access=HOST, payload=MessageRef,
           errors=("broadcast_not_found", "not_your_broadcast", "message_not_found", "already_removed",
                   "unavailable"))
    async def delete(self, sid: str, who: SocketUser, p: MessageRef) -> dict[str, Any]:
        """Remove a message: it disappears for everyone, live; who removed it and why are kept."""
        await self._host(who, p.broadcast_id)
        assert who.user_id is not None
        async with self.app[AppKeys.db].begin() as db:
            m = await chat.remove(db, p.broadcast_id, p.message_id, who.user_id, p.reason, utcnow())
        await self._publish_or_undo(p.broadcast_id, "chat:deleted", {"id": m.id},
                                    update(ChatMessage).where(ChatMessage.id == m.id,
                                                              ChatMessage.deleted_at == m.deleted_at)
                                    .values(deleted_at=None, deleted_by=None, delete_reason=""))
        return {"id": m.id}

    @event("mod:mute", access=HOST, payload=SanctionIn,
           errors=("broadcast_not_found", "not_your_broadcast", "user_not_found", "cannot_sanction"))
    async def mute(self, sid: str, who: SocketUser, p: SanctionIn) -> dict[str, Any]:
        """Mute a viewer in this broadcast for some minutes."""
        return await self._sanction(who, p, "mute")

    @event("mod:ban", access=HOST, payload=SanctionIn,
           errors=("broadcast_not_found", "not_your_broadcast", "user_not_found", "cannot_sanction"))
    async def ban(self, sid: str, who: SocketUser, p: SanctionIn) -> dict[str, Any]:
        """Ban a viewer from this broadcast."""
        return await self._sanction(who, p, "ban")

    async def _sanction(self, who: SocketUser, p: SanctionIn, kind: str) -> dict[str, Any]:
        await self._host(who, p.broadcast_id)
        assert who.user_id is not None
        async with self.app[AppKeys.db].begin() as db:
            s = await chat.sanction(db, p.broadcast_id, p.user_id, kind, p.minutes, who.user_id, p.reason, utcnow())
            out = {"user_id": s.user_id, "kind": s.kind, "until": s.until.isoformat() if s.until else None}
        await self.app[AppKeys.sio].emit("you:" + ("banned" if kind == "ban" else "muted"),
                                         {"broadcast_id": p.broadcast_id, **out},
                                         room=user_room(p.user_id), namespace=NAMESPACE)
        return out

    @event("host:notice", access=HOST, payload=NoticeIn,
           errors=("broadcast_not_found", "not_your_broadcast", "unavailable"))
    async def notice(self, sid: str, who: SocketUser, p: NoticeIn) -> dict[str, Any]:
        """Pin a notice above the chat (empty text removes it)."""
        await self._host(who, p.broadcast_id)
        text = " ".join(p.text.split())
        async with self.app[AppKeys.db].begin() as db:
            before = await db.scalar(select(Broadcast.pinned_notice).where(Broadcast.id == p.broadcast_id))
            await db.execute(update(Broadcast).where(Broadcast.id == p.broadcast_id).values(pinned_notice=text))
        await self._publish_or_undo(p.broadcast_id, "notice", {"text": text},
                                    update(Broadcast).where(Broadcast.id == p.broadcast_id,
                                                            Broadcast.pinned_notice == text)
                                    .values(pinned_notice=before))
        return {"text": text}

    @event("host:slow_mode", access=HOST, payload=SlowModeIn,
           errors=("broadcast_not_found", "not_your_broadcast", "unavailable"))
    async def slow_mode(self, sid: str, who: SocketUser, p: SlowModeIn) -> dict[str, Any]:
        """Viewers may send one message every N seconds (0: off)."""
        await self._host(who, p.broadcast_id)
        async with self.app[AppKeys.db].begin() as db:
            before = await db.scalar(select(Broadcast.slow_mode_seconds).where(Broadcast.id == p.broadcast_id))
            await db.execute(update(Broadcast).where(Broadcast.id == p.broadcast_id)
                             .values(slow_mode_seconds=p.seconds))
        await self._publish_or_undo(p.broadcast_id, "slow_mode", {"seconds": p.seconds},
                                    update(Broadcast).where(Broadcast.id == p.broadcast_id,
                                                            Broadcast.slow_mode_seconds == p.seconds)
                                    .values(slow_mode_seconds=before))
        return {"seconds": p.seconds}

    @event("host:spotlight", access=HOST, payload=SpotlightIn,
           errors=("broadcast_not_found", "not_your_broadcast", "not_in_lineup", "unavailable"))
    async def spotlight(self, sid: str, who: SocketUser, p: SpotlightIn) -> dict[str, Any]:
        """Put a line-up product in the spotlight: every viewer sees it at once."""
        await self._host(who, p.broadcast_id)
        async with self.app[AppKeys.db].begin() as db:
            b = await services.get_broadcast(db, p.broadcast_id, full=True)
            item = None
            if p.product_id is not None:
                item = next((i for i in b.lineup if i.product_id == p.product_id), None)
                if item is None:
                    raise AppError(N_("This product is not in the broadcast's line-up."), code="not_in_lineup",
                                   status=422)
            before = b.spotlight_product_id
            await db.execute(update(Broadcast).where(Broadcast.id == b.id)
                             .values(spotlight_product_id=p.product_id))
            data = {"product_id": p.product_id,
                    "item": LineupItemOut.model_validate(item).model_dump(mode="json") if item else None}
        await self._publish_or_undo(p.broadcast_id, "spotlight", data,
                                    update(Broadcast).where(Broadcast.id == p.broadcast_id,
                                                            Broadcast.spotlight_product_id.is_not_distinct_from(
                                                                p.product_id))
                                    .values(spotlight_product_id=before))
        return data

    @event("host:go_live", access=HOST, payload=BroadcastRef,
           errors=("broadcast_not_found", "not_your_broadcast", "illegal_transition", "too_early", "too_late",
                   "transition_lost"))
    async def go_live(self, sid: str, who: SocketUser, p: BroadcastRef) -> dict[str, Any]:
        """Go live (a host of this broadcast, or staff)."""
        return await self._move(who, p.broadcast_id, BroadcastState.LIVE)

    @event("host:end", access=HOST, payload=BroadcastRef,
           errors=("broadcast_not_found", "not_your_broadcast", "illegal_transition", "transition_lost"))
    async def end(self, sid: str, who: SocketUser, p: BroadcastRef) -> dict[str, Any]:
        """End the broadcast (a host of this broadcast, or staff)."""
        return await self._move(who, p.broadcast_id, BroadcastState.ENDED)

    async def _move(self, who: SocketUser, broadcast_id: int, wanted: BroadcastState) -> dict[str, Any]:
        async with self.app[AppKeys.db].begin() as db:
            await services.get_broadcast(db, broadcast_id)
            await services.check_host(db, broadcast_id, who.user_id, who.role)
            t = await services.host_move(db, broadcast_id, wanted, utcnow(), self.app[AppKeys.config])
        await push_transition(self.app, t.broadcast_id, t.state, t.at)
        return {"broadcast_id": t.broadcast_id, "state": t.state.value, "at": t.at.isoformat()}


async def load_snapshot(app: web.Application, broadcast_id: int) -> dict[str, Any] | None:
    """What every viewer joining the broadcast's room gets alike (None: no such broadcast)."""
    async with app[AppKeys.reader]() as db:
        b = await db.scalar(select(Broadcast).where(Broadcast.id == broadcast_id).options(
            selectinload(Broadcast.lineup).selectinload(LineupItem.product), selectinload(Broadcast.partners)))
        return room_snapshot(b) if b is not None else None


# Kept per process, forgotten by the commit that changes what it shows (the caches' watches in `setup`): viewers
# joining at once share one read.
SNAPSHOTS = web.AppKey("room_snapshots", KeptReads[dict[str, Any] | None])
SNAPSHOT_WATCHES = (Watch("broadcasts", "id"), Watch("lineup_items", "broadcast_id"),
                    Watch("partner_channels", "broadcast_id"), Watch("products"))


def room_snapshot(b: Broadcast) -> dict[str, Any]:
    """The broadcast as a joining viewer needs it: lifecycle and times, line-up, spotlight, notice."""
    snap = BroadcastOut.model_validate(b).model_dump(mode="json")
    item = next((i for i in b.lineup if i.product_id == b.spotlight_product_id), None)
    snap.update(pinned_notice=b.pinned_notice, slow_mode_seconds=b.slow_mode_seconds,
                spotlight=LineupItemOut.model_validate(item).model_dump(mode="json") if item else None)
    return snap


def setup(app: web.Application) -> None:
    """The room's event groups on `/live`, the socket's own room at connect, and (for the protocol document)
    the events the room sends."""
    parts = live_parts(app)
    parts.groups += [RoomEvents, HostEvents]
    parts.on_connect.append(enter_own_room)
    parts.payload_models.append(schemas.Position)
    parts.server_events += [
        ServerEvent("room", schemas.RoomEnvelope, "the room's members"),
        ServerEvent("room:batch", schemas.RoomEnvelope, "the room's members (a list of envelopes, under load)"),
        ServerEvent("counts", schemas.CountsOut, "the room's members"),
        ServerEvent("broadcast:state", schemas.StateOut, "the room's members"),
        ServerEvent("broadcast:ending", schemas.EndingOut, "the room's members"),
        ServerEvent("schedule:state", schemas.StateOut, "sockets that sent `schedule:watch`"),
        ServerEvent("reminder:live", schemas.ReminderLiveOut, "the viewer who asked to be reminded"),
        ServerEvent("you:muted", schemas.SanctionOut, "the viewer concerned"),
        ServerEvent("you:banned", schemas.SanctionOut, "the viewer concerned"),
        ServerEvent("mod:reported", schemas.ReportedOut, "the console (after `host:watch`)"),
    ]
