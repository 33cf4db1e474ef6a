"""Room fan-out that scales: an event for a broadcast's room is encoded once — one Socket.IO packet,
one Engine.IO message, one WebSocket frame — and that same frame is written to every websocket in the
room. python-socketio stays the protocol layer; only the room path is replaced.

python-socketio's stock `emit(room=…)` makes a task, a queue entry and a `wait_for` per recipient, and
its websocket accepts per-message-deflate, so each copy is compressed separately. Here websockets are
opened without compression, and a room event costs one `transport.write` per viewer.

What this path relies on inside python-socketio, python-engineio and aiohttp is kept in `internals.py`.

Under load, room events are batched: the first event after a quiet spell goes out at once; events that
follow within `batch_ms` are sent together as one `room:batch` frame when the window closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import socketio
from aiohttp.web import WebSocketResponse

from .internals import event_packet, install_room_websocket, room_frame, send_packet, write_frame

log = logging.getLogger("livecommerce.fanout")

ROOM_PREFIX = "broadcast:"
BATCHED_EVENT = "room"  # events of this name are batched under load
BATCH_EVENT = "room:batch"
MAX_BUFFER = 1 << 20  # a viewer whose socket has 1 MiB unsent is too slow: it is dropped and recovers


class FastManager(socketio.AsyncManager):  # type: ignore[misc]  # python-socketio ships no types
    """The in-process client manager with the encode-once room path."""

    batch_seconds: float = 0.1

    def __init__(self, *args: Any, batch_ms: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_seconds = batch_ms / 1000
        self._batches: dict[tuple[str, str], _Batch] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.frames_written = 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to or room
        if (callback is None and skip_sid is None and isinstance(room, str) and room.startswith(ROOM_PREFIX)
                and namespace in self.rooms):
            if event == BATCHED_EVENT and self.batch_seconds > 0:
                self._batch(namespace, room).add(data)
                return
            self.write_room(event, data, namespace, room)
            return
        await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)

    def _batch(self, namespace: str, room: str) -> _Batch:
        key = (namespace, room)
        b = self._batches.get(key)
        if b is None:
            b = self._batches[key] = _Batch(self, namespace, room)
        return b

    def write_room(self, event: str, data: Any, namespace: str, room: str) -> None:
        """Write one pre-encoded frame to every websocket of the room on this process."""
        server = self.server
        written, slow, queued = write_frame(server, self.get_participants(namespace, room),
                                            room_frame(server, event, data, namespace), MAX_BUFFER)
        if queued:  # long-polling or mid-upgrade: the ordinary way, through Engine.IO's queue
            fallback = event_packet(server, event, data, namespace)
            for eio_sid in queued:
                self._spawn(send_packet(server, eio_sid, fallback))
        self.frames_written += written
        for sock in slow:
            log.warning("dropping a viewer that cannot keep up")
            self._spawn(_close(sock))

    async def flush_all(self) -> None:
        for b in list(self._batches.values()):
            b.flush()


async def _close(sock: WebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        await sock.close(code=1013, message=b"too slow: reconnect")  # 1013: try again later


class _Batch:
    """Room events of one room, sent at once when the room is quiet, together when it is busy."""

    def __init__(self, manager: FastManager, namespace: str, room: str) -> None:
        self.manager = manager
        self.namespace = namespace
        self.room = room
        self.pending: list[Any] = []
        self.last_sent = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def add(self, data: Any) -> None:
        now = time.monotonic()
        if self.timer is None and now - self.last_sent >= self.manager.batch_seconds:
            self.last_sent = now
            self.manager.write_room(BATCHED_EVENT, data, self.namespace, self.room)
            return
        self.pending.append(data)
        if self.timer is None:
            delay = max(0.0, self.manager.batch_seconds - (now - self.last_sent))
            self.timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.pending:
            return
        items, self.pending = self.pending, []
        self.last_sent = time.monotonic()
        if len(items) == 1:
            self.manager.write_room(BATCHED_EVENT, items[0], self.namespace, self.room)
        else:
            self.manager.write_room(BATCH_EVENT, items, self.namespace, self.room)


class FastRedisManager(socketio.AsyncRedisManager, FastManager):  # type: ignore[misc]  # python-socketio ships no types
    """Rooms across processes through Redis pub/sub; each process delivers to its own sockets with the
    encode-once path (AsyncPubSubManager's local delivery calls FastManager.emit)."""

    def __init__(self, url: str, channel: str, batch_ms: int = 100, json: Any = None) -> None:
        socketio.AsyncRedisManager.__init__(self, url, channel=channel, json=json)
        self.batch_seconds = batch_ms / 1000
        self._batches = {}
        self._tasks = set()
        self.frames_written = 0


def install(sio: socketio.AsyncServer) -> None:
    """Open websockets without compression and with the room path's hook."""
    install_room_websocket(sio)


