"""The live room's socket events (namespace `/live`): join a broadcast's room, and the host's
lifecycle controls. Every event declares who may send it and validates its payload."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import socketio
from aiohttp import web

from livecommerce.auth import HOST, PUBLIC
from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.keys import AppKeys
from livecommerce.realtime import Namespace, SocketUser, event

from . import planning, services
from .models import STATE_LABELS, Broadcast, BroadcastState
from .schemas import BroadcastOut, BroadcastRef

NAMESPACE = "/live"


def room(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}"


SCHEDULE_ROOM = "schedule"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


async def push_transition(app: web.Application, broadcast_id: int, state: BroadcastState, at: datetime) -> None:
    """After the commit: tell everyone in the room, and every page watching the schedule; when a show
    goes live, tell the viewers who asked to be reminded."""
    sio = app[AppKeys.sio]
    payload = {"broadcast_id": broadcast_id, "state": state.value, "at": at.isoformat()}
    await sio.emit("broadcast:state", payload, room=room(broadcast_id), namespace=NAMESPACE)
    await sio.emit("schedule:state", payload, room=SCHEDULE_ROOM, namespace=NAMESPACE)
    if state is BroadcastState.LIVE:
        async with app[AppKeys.reader]() as db:
            b = await db.get(Broadcast, broadcast_id)
            users = await planning.reminded_users(db, broadcast_id)
        if b is not None:
            note = {"broadcast_id": broadcast_id, "title_ko": b.title_ko, "title_en": b.title_en,
                    "url": f"/live/{broadcast_id}"}
            for uid in users:
                await sio.emit("reminder:live", note, room=user_room(uid), namespace=NAMESPACE)


async def push_warning(app: web.Application, broadcast_id: int, ends_at: datetime, now: datetime) -> None:
    """The show ends soon: the host console shows a warning, viewers a countdown."""
    seconds = max(0, int((ends_at - now).total_seconds()))
    await app[AppKeys.sio].emit("broadcast:ending", {"broadcast_id": broadcast_id, "ends_at": ends_at.isoformat(),
                                                     "seconds_left": seconds},
                                room=room(broadcast_id), namespace=NAMESPACE)


class LiveNamespace(Namespace):
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await super().on_connect(sid, environ, auth)
        who = await self.who(sid)
        if who.user_id is not None:
            await self.enter_room(sid, user_room(who.user_id))  # reminders find the viewer here

    @event("schedule:watch", access=PUBLIC)
    async def watch_schedule(self, sid: str, who: SocketUser, p: None) -> None:
        """Hear when any broadcast changes state (the schedule and home pages)."""
        await self.enter_room(sid, SCHEDULE_ROOM)

    @event("join", access=PUBLIC, payload=BroadcastRef)
    async def join(self, sid: str, who: SocketUser, p: BroadcastRef) -> dict[str, Any]:
        """Join a broadcast's room; answers with the broadcast's whole current state."""
        async with self.app[AppKeys.reader]() as db:
            b = await services.get_broadcast(db, p.broadcast_id, full=True)
            if not services.viewer_can_join(b):
                raise AppError("This broadcast is %(state)s: its room is closed.", code="broadcast_closed",
                               state=STATE_LABELS[b.state])
            snapshot = BroadcastOut.model_validate(b).model_dump(mode="json")
        for r in self.rooms(sid):
            if r.startswith("broadcast:") and r != room(p.broadcast_id):
                await self.leave_room(sid, r)
        await self.enter_room(sid, room(p.broadcast_id))
        return {"broadcast": snapshot, "you": {"user_id": who.user_id, "role": who.role, "name": who.name}}

    @event("leave", access=PUBLIC, payload=BroadcastRef)
    async def leave(self, sid: str, who: SocketUser, p: BroadcastRef) -> None:
        """Leave a broadcast's room."""
        await self.leave_room(sid, room(p.broadcast_id))

    @event("host:go_live", access=HOST, payload=BroadcastRef)
    async def go_live(self, sid: str, who: SocketUser, p: BroadcastRef) -> dict[str, Any]:
        """Go live (a host of this broadcast, or staff)."""
        return await self._move(who, p.broadcast_id, BroadcastState.LIVE)

    @event("host:end", access=HOST, payload=BroadcastRef)
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


def register(app: web.Application, sio: socketio.AsyncServer) -> None:
    sio.register_namespace(LiveNamespace(NAMESPACE, app))
