"""Room fan-out that scales: an event for a broadcast's room is encoded once — one Socket.IO packet,
one Engine.IO message, one WebSocket frame — and that same frame is written to every websocket in the
room. python-socketio stays the protocol layer; only the room path is replaced.

python-socketio's stock `emit(room=…)` makes a task, a queue entry and a `wait_for` per recipient, and
its websocket accepts per-message-deflate, so each copy is compressed separately. Here websockets are
opened without compression, and a room event costs one `transport.write` per viewer.

Under load, room events are batched: the first event after a quiet spell goes out at once; events that
follow within `batch_ms` are sent together as one `room:batch` frame when the window closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from typing import Any

import socketio
from aiohttp.web import WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EngineIOWebSocket
from socketio import packet as sio_packet

log = logging.getLogger("livecommerce.fanout")

ROOM_PREFIX = "broadcast:"
BATCHED_EVENT = "room"  # events of this name are batched under load
BATCH_EVENT = "room:batch"
MAX_BUFFER = 1 << 20  # a viewer whose socket has 1 MiB unsent is too slow: it is dropped and recovers


class RoomWebSocket(EngineIOWebSocket):
    """Engine.IO's aiohttp websocket, opened without per-message-deflate, and reachable from its
    Engine.IO socket so that the room path can write frames to it directly."""

    transport: Any = None

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        eio_socket = getattr(handler, "__self__", None)
        if eio_socket is not None:
            eio_socket.lc_ws = self

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        writer = getattr(self._sock, "_writer", None)
        self.transport = getattr(writer, "transport", None)  # the room path writes frames here
        self.environ = environ
        await self.handler(self)
        return self._sock


def ws_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class FastManager(socketio.AsyncManager):
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

    def encode(self, event: str, data: Any, namespace: str) -> bytes | None:
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data])
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: not for the fast path
            return None
        return ws_frame(eio_packet.Packet(eio_packet.MESSAGE, encoded).encode().encode("utf-8"))

    def write_room(self, event: str, data: Any, namespace: str, room: str) -> None:
        """Write one pre-encoded frame to every websocket of the room on this process."""
        frame = self.encode(event, data, namespace)
        slow: list[Any] = []
        sockets = self.server.eio.sockets
        written = 0
        fallback = None
        for _sid, eio_sid in self.get_participants(namespace, room):
            s = sockets.get(eio_sid)
            ws = getattr(s, "lc_ws", None)
            transport = ws.transport if ws is not None else None
            if (frame is not None and transport is not None and s.upgraded and not s.upgrading and not s.closed
                    and not transport.is_closing()):
                if transport.get_write_buffer_size() > MAX_BUFFER:
                    slow.append(ws._sock)
                    continue
                transport.write(frame)
                written += 1
            else:  # long-polling or mid-upgrade: the ordinary way, through Engine.IO's queue
                if fallback is None:
                    fallback = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data])
                self._spawn(self.server._send_packet(eio_sid, fallback))
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


class FastRedisManager(socketio.AsyncRedisManager, FastManager):  # type: ignore[misc]
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
    sio.eio._async = {**sio.eio._async, "websocket": RoomWebSocket}


