"""The live room's socket events (namespace `/live`): join a broadcast's room, and the host's
lifecycle controls. Every event declares who may send it and validates its payload."""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from livecommerce.auth import HOST, PUBLIC
from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.keys import AppKeys
from livecommerce.realtime import Namespace, SocketUser, event

from . import services
from .models import STATE_LABELS, BroadcastState
from .schemas import BroadcastOut, BroadcastRef

NAMESPACE = "/live"


def room(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}"


async def push_transition(app: web.Application, t: services.Transition) -> None:
    """After the commit: tell everyone in the room."""
    await app[AppKeys.sio].emit("broadcast:state", {"broadcast_id": t.broadcast_id, "state": t.state.value,
                                                    "at": t.at.isoformat()},
                                room=room(t.broadcast_id), namespace=NAMESPACE)


class LiveNamespace(Namespace):
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
            t = await services.transition(db, broadcast_id, wanted, utcnow())
        await push_transition(self.app, t)
        return {"broadcast_id": t.broadcast_id, "state": t.state.value, "at": t.at.isoformat()}


def register(app: web.Application, sio: socketio.AsyncServer) -> None:
    sio.register_namespace(LiveNamespace(NAMESPACE, app))
