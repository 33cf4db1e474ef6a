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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from .internals import (
    drop_slow,
    event_packet,
    install_room_websocket,
    redis_listen,
    room_frame,
    send_packet,
    write_frame,
)
from .metrics import Metrics

log = logging.getLogger("livecommerce.fanout")

ROOM_PREFIX = "broadcast:"
BATCHED_EVENT = "room"  # events of this name are batched under load
BATCH_EVENT = "room:batch"
MAX_BUFFER = 1 << 20  # a viewer whose socket has 1 MiB unsent is too slow: it is dropped and recovers


class FastManager(socketio.AsyncManager):  # type: ignore[misc]  # python-socketio ships no types
    """The in-process client manager with the encode-once room path."""

    batch_seconds: float = 0.1
    metrics: Metrics | None = None  # the app's: deliveries and their lag

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
        if self.metrics is not None and (written or queued):
            self.metrics.delivered(data, written + len(queued))
        if slow and self.metrics is not None:
            self.metrics.viewers_dropped.inc(len(slow))
        for sock in slow:
            drop_slow(sock)

    async def flush_all(self) -> None:
        for b in list(self._batches.values()):
            b.flush()


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


Position = tuple[str, int]  # (epoch, offset) in a room's stream
Filler = Callable[[str, str, int], Awaitable[list[dict[str, Any]] | None]]


def sequence(last: Position | None, epoch: str, offset: int) -> str:
    """What a process does with a room event that comes over the bus, given the position of the last one it
    delivered in that room: "deliver" it, "skip" it (delivered already, from the stream), or "fill" first
    (events between the two are missing: they are read from the room's stream and delivered before it).
    A new epoch (the stream's storage was lost) is delivered as it is: viewers see the epoch change and
    ask for the full state."""
    if last is None or last[0] != epoch:
        return "deliver"
    if offset <= last[1]:
        return "skip"
    return "deliver" if offset == last[1] + 1 else "fill"


def seeded(last: Position | None, epoch: str, offset: int) -> Position:
    """The position a process keeps for a room when a viewer joins it at (epoch, offset): what it delivered
    last, if that is in the same epoch (events up to the viewer's position may still be on their way),
    else the viewer's."""
    return last if last is not None and last[0] == epoch else (epoch, offset)


@dataclass
class Bus:
    """Whether this process hears the Redis bus, and what its outages cost (for `/healthz` and `/metrics`)."""

    up: bool = False
    was_up: bool = False  # an outage is counted once, from up to down
    lost_at: float | None = None
    outages: int = 0
    reconnections: int = 0
    filled: int = 0
    metrics: Metrics | None = None
    heard: asyncio.Event = field(default_factory=asyncio.Event)  # set while `up`


class FastRedisManager(socketio.AsyncRedisManager, FastManager):  # type: ignore[misc]  # python-socketio ships no types
    """Rooms across processes through Redis pub/sub; each process delivers to its own sockets with the
    encode-once path (AsyncPubSubManager's local delivery calls FastManager.emit).

    Room events come with their position in the room's stream: each process delivers a room's events in
    offset order, reads from the stream (through `filler`, set by the room) whatever the bus did not bring
    it before it delivers anything newer, and comes back to the bus `retry_seconds` after Redis does."""

    def __init__(self, url: str, channel: str, batch_ms: int = 100, json: Any = None,
                 retry_seconds: float = 0.2) -> None:
        socketio.AsyncRedisManager.__init__(self, url, channel=channel, json=json,
                                            redis_options={"socket_connect_timeout": 2})
        self.batch_seconds = batch_ms / 1000
        self._batches = {}
        self._tasks = set()
        self.frames_written = 0
        self.retry_seconds = retry_seconds
        self.bus = Bus()
        self.filler: Filler | None = None
        self.positions: dict[tuple[str, str], Position] = {}  # (namespace, room) → last delivered

    # -- the subscription ---------------------------------------------------------------------------

    def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        return redis_listen(self, self.retry_seconds, self._subscribed, self._lost)

    def _lost(self, exc: BaseException) -> None:
        bus = self.bus
        if bus.up:
            bus.outages += 1
            bus.was_up = True
            bus.lost_at = time.monotonic()
            if bus.metrics is not None:
                bus.metrics.bus_outages.inc()
                bus.metrics.bus_up.set(0)
            log.warning("bus lost: room events wait for it", extra={"error": type(exc).__name__})
        bus.up = False
        bus.heard.clear()

    async def _subscribed(self) -> None:
        """Subscribed again: first deliver what the rooms' streams hold past what this process delivered,
        then say the bus is ready (the messages that follow are read after this returns)."""
        bus = self.bus
        if bus.was_up:
            filled = await self.fill_all()
            bus.reconnections += 1
            bus.was_up = False
            log.warning("bus back", extra={"filled": filled, "seconds": round(
                time.monotonic() - (bus.lost_at or time.monotonic()), 3)})
            if bus.metrics is not None:
                bus.metrics.bus_reconnections.inc()
        bus.up = True
        bus.heard.set()
        bus.lost_at = None
        if bus.metrics is not None:
            bus.metrics.bus_up.set(1)

    # -- room events in order -----------------------------------------------------------------------

    def seed(self, namespace: str, room: str, epoch: str, offset: int) -> None:
        """A viewer joined `room` at (epoch, offset): deliver it nothing older, miss nothing newer."""
        key = (namespace, room)
        self.positions[key] = seeded(self.positions.get(key), epoch, offset)

    def _has_viewers(self, namespace: str, room: str) -> bool:
        return bool(self.rooms.get(namespace, {}).get(room))

    async def fill_all(self) -> int:
        """For every room with viewers here, deliver what its stream holds past what was delivered."""
        total = 0
        for (namespace, room), last in list(self.positions.items()):
            if not self._has_viewers(namespace, room):
                self.positions.pop((namespace, room), None)
                continue
            total += await self._fill(namespace, room, last)
        return total

    async def _fill(self, namespace: str, room: str, last: Position) -> int:
        if self.filler is None:
            return 0
        events = await self.filler(room, last[0], last[1])
        n = 0
        for env in events or ():
            current = self.positions.get((namespace, room))
            if sequence(current, env["e"], env["o"]) == "skip":
                continue
            self.positions[(namespace, room)] = (env["e"], env["o"])
            await FastManager.emit(self, BATCHED_EVENT, env, namespace, room=room)
            n += 1
        self.bus.filled += n
        if n and self.bus.metrics is not None:
            self.bus.metrics.bus_events_filled.inc(n)
        return n

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        data, room, namespace = message.get("data"), message.get("room"), message.get("namespace")
        if (message.get("event") == BATCHED_EVENT and isinstance(room, str) and room.startswith(ROOM_PREFIX)
                and isinstance(namespace, str) and isinstance(data, list) and len(data) == 1
                and isinstance(data[0], dict) and "e" in data[0] and "o" in data[0]):
            await self._in_order(namespace, room, data[0])
            return
        await super()._handle_emit(message)

    async def _in_order(self, namespace: str, room: str, env: dict[str, Any]) -> None:
        key = (namespace, room)
        if not self._has_viewers(namespace, room):
            self.positions.pop(key, None)  # nobody here: a viewer who joins gives the room a position
            return
        last = self.positions.get(key)
        action = sequence(last, env["e"], env["o"])
        if action == "skip":
            return
        if action == "fill" and last is not None:
            try:
                await self._fill(namespace, room, last)
            except Exception as exc:  # delivered when the stream answers: at the next event or subscription
                log.warning("room stream unreadable: event held back", extra={"room": room,
                                                                               "error": type(exc).__name__})
                return
            if sequence(self.positions.get(key), env["e"], env["o"]) == "skip":
                return
        self.positions[key] = (env["e"], env["o"])
        await FastManager.emit(self, BATCHED_EVENT, env, namespace, room=room)


async def wait_for_bus(sio: socketio.AsyncServer, limit: float) -> bool:
    """Wait (at most `limit` seconds) until this process hears the bus; whether it does."""
    manager = sio.manager
    if not isinstance(manager, FastRedisManager):
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(manager.bus.heard.wait(), limit)
    return bool(manager.bus.up)


def bus_state(sio: socketio.AsyncServer) -> str:
    """`off` (one process, no Redis), `ok` (subscribed to the bus) or `down`."""
    manager = sio.manager
    if not isinstance(manager, FastRedisManager):
        return "off"
    return "ok" if manager.bus.up else "down"


def install(sio: socketio.AsyncServer) -> None:
    """Open websockets without compression and with the room path's hook."""
    install_room_websocket(sio)


