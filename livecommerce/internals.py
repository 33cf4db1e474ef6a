"""Every place where livecommerce reaches under the public API of a library it depends on, in one module,
so that an upgrade has one file to read and `tests/core/test_internals.py` to run.

Tested with aiohttp 3.14.5, python-socketio 5.18.1, python-engineio 4.15.1 (pinned below the next minor
in pyproject.toml), and redis 8.1.0, SQLAlchemy 2.1.9, asyncpg 0.32.0 (only their public API is used).

What is relied on, library by library:

python-engineio 4.15
- `AsyncServer._async` (private): the table of the async driver in use; its `"websocket"` entry is the
  class Engine.IO instantiates for every websocket, as `cls(socket._websocket_handler, server)`, so the
  handler is a bound method whose `__self__` is the Engine.IO socket (`install_room_websocket`).
- `AsyncServer._async["translate_request"]`: the function that makes a request's environ, replaced by
  `lean_environ` (the driver's own for anything but a websocket); what engineio and socketio read of it.
- `engineio.async_drivers.aiohttp.WebSocket` (driver module): `__init__(handler, server)`; `__call__(environ)`
  opens the `WebSocketResponse` from `environ["aiohttp.request"]`, keeps it in `_sock` (private, read by
  the driver's `send`, `wait` and `close`), sets `environ`, runs `handler(self)` and returns the response;
  `server.max_http_buffer_size` (`RoomWebSocket`).
- the Engine.IO socket's state attributes `upgraded`, `upgrading` and `closed`, the server's `sockets`
  (Engine.IO sid → socket) and `AsyncSocket.close(wait=False)` (`write_frame`, `engineio_sockets`,
  `close_engineio_socket`).
- `engineio.packet.Packet(MESSAGE, text).encode()`: the Engine.IO message is `"4" + text` (`room_frame`).
- `AsyncSocket.sid`, and what `serve_websocket` lists.

python-socketio 5.18
- `AsyncServer._send_packet(eio_sid, packet)` (private): sends one Socket.IO packet to one client
  through Engine.IO's queue (`send_packet`).
- `AsyncServer.packet_class(EVENT, namespace=…, data=[event, data]).encode()`: a `str` when the data has
  no binary attachments (`room_frame`, `event_packet`); an EVENT without an acknowledgement id arrives as
  `"42" + namespace + "," + JSON` (`Namespace.quick_text`).
- `manager.sid_from_eio_sid(eio_sid, namespace)`: the Socket.IO sid of a connection in a namespace.
- `AsyncPubSubManager`'s message format on the bus: `{"method": "emit", "event", "data": [one item],
  "binary", "namespace", "room", "skip_sid", "callback", "host_id"}`; its listener skips a message
  whose `host_id` is its own and hands the others to `_handle_emit` (`pubsub_emit_parts`).
- `AsyncRedisManager.redis` (undocumented): the manager's own Redis client, which it never closes
  (`close_redis_manager`).
- `AsyncRedisManager._redis_listen_with_retries()` (private): the async generator its `_listen` reads the
  pub/sub messages from; `_redis_connect()` (private) makes a new client and its `pubsub`;
  `channel`. Upstream waits 1, 2, 4 … 60 s between attempts after Redis is lost, so a process can stay
  off the bus for a minute after Redis is back: `redis_listen` replaces it with a short, constant wait
  and tells the manager when the subscription is lost and when it is back (`FastRedisManager`).
- `AsyncServer.manager_initialized` and `manager.initialize()`: the manager starts listening at the
  first connection unless started before (`start_manager`: the bus is listened to from startup, so that
  `/healthz` can say whether it is).

aiohttp 3.14
- `WebSocketResponse(compress=False)` refuses per-message-deflate, so no compression state is kept per
  connection; `request.transport` is the transport aiohttp's websocket writer writes to; that writer
  writes each uncompressed frame whole and at once, so a frame written beside it never lands inside
  one of its frames (`RoomWebSocket`, `write_frame`).

Outside this module (checked by the same tests): through subclassing in `livecommerce/fanout.py`,
`AsyncManager.rooms` (namespace → room → {sid: eio_sid}, also read by `sessions/room.py` and
`orders/feed.py`), `get_participants`, `emit(…)`'s signature, and `AsyncPubSubManager._handle_emit`
delivering on each process with `super().emit(…)`, which is `FastManager.emit` in `FastRedisManager`'s
method order. And SQLAlchemy's expression internals that `livecommerce/caches.py` walks to learn which rows a
bulk statement changes (`sql.util.find_tables`, `orm.base.NO_VALUE`, binary and boolean clause lists, a bind
parameter's `effective_value`): SQLAlchemy is bounded below 2.2 for them, and tests/core/test_caches.py fails
if they stop answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, cast

import socketio
from aiohttp import WSMsgType
from aiohttp.web import RequestKey, WebSocketResponse
from engineio import exceptions as engineio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EngineIOWebSocket
from engineio.async_drivers.aiohttp import translate_request as EngineIOTranslate
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet

log = logging.getLogger("livecommerce.socket")

# -- the websocket Engine.IO opens -----------------------------------------------------------------


class RoomWebSocket(EngineIOWebSocket):  # type: ignore[misc]  # python-engineio ships no types
    """Engine.IO's aiohttp websocket, opened without per-message-deflate, and reachable from its
    Engine.IO socket (as `lc_ws`) so that frames can be written to its transport directly. A client that
    connects by websocket from the start is served by `serve_websocket`; one that upgrades from
    long-polling by Engine.IO's own handler."""

    transport: asyncio.Transport | None = None

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self.eio_socket = getattr(handler, "__self__", None)
        if self.eio_socket is not None:
            self.eio_socket.lc_ws = self

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.transport = request.transport  # where aiohttp's websocket writer writes its frames
        self.environ = environ
        eio_socket = self.eio_socket
        if eio_socket is not None and not eio_socket.connected:
            _go_direct(eio_socket, self)
            if SERVE_LATER in request:  # `answer_websocket` serves it once Engine.IO's connect has returned
                request[SERVE_LATER] = self
                return self._sock
            await serve_websocket(eio_socket, self)
        else:
            await self.handler(self)
        return self._sock


SERVE_LATER = RequestKey("livecommerce_serve_websocket_later", object)


async def answer_websocket(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
    """Answer a websocket upgrade on the socket.io endpoint (`handler`, Engine.IO's request handler), then serve
    the connection here: Engine.IO's chain of coroutines that made the connection (`handle_request`,
    `_handle_connect`, `handle_get_request`, `_upgrade_websocket`, the websocket's `__call__`) has returned by
    then, so none of their frames is kept for as long as the viewer stays. A websocket that upgrades a
    long-polling session is served inside that chain by Engine.IO's own handler, as before."""
    request[SERVE_LATER] = None
    response = await handler(request)
    ws = request.get(SERVE_LATER)
    if isinstance(ws, RoomWebSocket) and ws.eio_socket is not None:
        request[SERVE_LATER] = None
        await serve_websocket(ws.eio_socket, ws)
    return response


class DirectQueue:
    """An Engine.IO socket's send queue on a websocket served by `serve_websocket`: a packet put is written
    to the websocket's transport at once, in order with the room's frames (no queue, no writer task). A
    socket that has more than `max_buffer` bytes unsent is closed (1013: try again later); it catches up
    when it reconnects."""

    __slots__ = ("max_buffer", "ws")

    def __init__(self, ws: RoomWebSocket, max_buffer: int) -> None:
        self.ws = ws
        self.max_buffer = max_buffer

    def put_nowait(self, pkt: Any) -> None:
        transport = self.ws.transport
        if transport is None or transport.is_closing():
            return
        if pkt is None:  # "the connection is over": Engine.IO's writer would close the websocket
            _close_later(self.ws._sock)
            return
        if transport.get_write_buffer_size() > self.max_buffer:
            drop_slow(self.ws._sock)
            return
        encoded = pkt.encode()
        if isinstance(encoded, str):
            transport.write(text_frame(encoded.encode("utf-8")))
        else:
            transport.write(binary_frame(encoded))

    async def put(self, pkt: Any) -> None:
        self.put_nowait(pkt)

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        pass

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def get_nowait(self) -> Any:
        raise asyncio.QueueEmpty()

    async def get(self) -> Any:
        raise asyncio.QueueEmpty()


MAX_DIRECT_BUFFER = 1 << 20
_closing: set[asyncio.Task[Any]] = set()


def drop_slow(response: WebSocketResponse) -> None:
    """Cut, at once, the connection of a viewer too slow to keep up. A close frame would wait behind the bytes
    it has not read (aiohttp's `close` then waits for its answer, and closing the transport waits for those
    bytes to be read): the transport is aborted instead, so what it left unread is freed now. Its page
    reconnects and catches up from its position in the room's stream."""
    transport = getattr(getattr(response, "_writer", None), "transport", None)  # aiohttp's WebSocketWriter
    if transport is not None and not transport.is_closing():
        log.warning("dropping a viewer that cannot keep up")
        transport.abort()


def _close_later(response: WebSocketResponse, code: int = 1000, message: bytes = b"") -> None:
    task = asyncio.ensure_future(response.close(code=code, message=message))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def serve_websocket(sock: Any, ws: RoomWebSocket) -> None:
    """Serve an Engine.IO socket that connected by websocket (`_go_direct` first), in place of Engine.IO's handler
    (`AsyncSocket._websocket_handler`), with what each connection costs cut down to the request's own task:
    packets sent to the client are written at once (`DirectQueue`, where Engine.IO keeps a queue and a
    writer task), packets from the client are read in this loop (where Engine.IO starts a task and a
    timeout per read), pings go out from the server's `PingWheel` (where Engine.IO keeps a sleeping task
    per socket, and a timeout on every read). A client that does not answer a ping within the ping timeout
    is closed by the wheel. The request's environ is `lean_environ`'s. A text message the server's
    `lc_quick(eio_sid, text)` takes (it answers True) is not decoded further: the namespace's quick events,
    sent many times a second by every viewer.

    Relies on: the socket's `queue` (only `put`, `put_nowait`, `get`, `get_nowait`, `task_done` and `join`
    are used by Engine.IO), `connected`, `upgraded`, `closed`, `receive(pkt)`, `close(wait, abort, reason)`,
    and the server's `ping_interval`, `ping_timeout`, `max_http_buffer_size` and `reason.TRANSPORT_CLOSE`."""
    server = sock.server
    response = ws._sock
    try:
        while not sock.closed:
            msg = await response.receive()
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break  # closed, closing, or an error: the connection is over
            data = msg.data
            if len(data) > server.max_http_buffer_size:
                break
            quick = getattr(server, "lc_quick", None)
            if quick is not None and type(data) is str and quick(sock.sid, data):
                continue  # taken care of without Engine.IO's and Socket.IO's decoding and task
            try:
                await sock.receive(eio_packet.Packet(encoded_packet=data))
            except engineio_exceptions.UnknownPacketError:
                pass
            except engineio_exceptions.SocketIsClosedError:
                break
            except Exception:  # as upstream: log it and keep the connection
                logging.getLogger("livecommerce.realtime").exception("socket packet failed")
    except (TimeoutError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await response.close()
        await sock.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


def _go_direct(sock: Any, ws: RoomWebSocket) -> None:
    """The socket is connected and upgraded; what Engine.IO queued at connect (the OPEN packet) is written, and
    the `DirectQueue` takes the queue's place (in a function of its own, so that nothing of it stays in the
    serving loop's frame)."""
    sock.connected = sock.upgraded = True
    queued = []
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            queued.append(sock.queue.get_nowait())
    sock.queue = DirectQueue(ws, MAX_DIRECT_BUFFER)
    for pkt in queued:
        sock.queue.put_nowait(pkt)


class PingWheel:
    """The server's pings, for all its sockets from one task: a socket whose client answered the last
    ping is due for the next one `interval` seconds later (Engine.IO starts a task per socket for each
    wait), and a socket whose client does not answer within `timeout` is closed (Engine.IO times every
    read). Every wait is the same length, so the sockets fall due in the order they were added."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._due: dict[Any, float] = {}  # socket → when its next ping is due
        self._waiting: dict[Any, float] = {}  # socket → when its client must have answered
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._due) + len(self._waiting)

    def add(self, sock: Any) -> None:
        """The client answered (or just connected): its next ping is due in `interval` seconds."""
        loop = asyncio.get_running_loop()
        self._waiting.pop(sock, None)
        self._due.pop(sock, None)
        self._due[sock] = loop.time() + self.interval
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="livecommerce-pings")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due or self._waiting:
            await asyncio.sleep(min(1.0, self.interval / 4, self.timeout / 4))
            now = loop.time()
            while self._waiting:
                sock, at = next(iter(self._waiting.items()))
                if at > now:
                    break
                del self._waiting[sock]
                ws = getattr(sock, "lc_ws", None)
                if ws is not None and ws._sock is not None and isinstance(sock.queue, DirectQueue):
                    _close_later(ws._sock, 1001, b"ping timeout")  # its read loop ends, the socket closes
            while self._due:
                sock, at = next(iter(self._due.items()))
                if at > now:
                    break
                del self._due[sock]
                if not sock.closing and not sock.closed:
                    sock.last_ping = time.time()
                    self._waiting[sock] = now + self.timeout
                    with contextlib.suppress(Exception):
                        await sock.send(eio_packet.Packet(eio_packet.PING))


_stock_schedule_ping = AsyncSocket.schedule_ping


def _schedule_ping(self: Any) -> None:
    wheel = getattr(self.server, "lc_pings", None)
    if wheel is None:  # a server that is not ours (another app in the same process)
        _stock_schedule_ping(self)
    elif self.last_ping:  # as upstream: only once the previous ping was answered
        self.last_ping = None
        wheel.add(self)


_stock_translate_request = EngineIOTranslate


def lean_environ(request: Any) -> dict[str, Any]:
    """The WSGI-like environ Engine.IO builds from an aiohttp request (`translate_request`), kept short for a
    websocket: it lives as long as the viewer, and every header copied into it is kept that long. Only what
    python-engineio and python-socketio read of a websocket's environ is there (the method, the query string,
    the path, the scheme, `Origin`, `Host`, `Upgrade`, `Connection`, the body stream and the aiohttp request,
    from which the app reads what else it needs). Any other request gets Engine.IO's own."""
    headers = request.headers
    if headers.get("Upgrade", "").lower() != "websocket":
        return cast("dict[str, Any]", _stock_translate_request(request))
    environ: dict[str, Any] = {
        "wsgi.input": request.content, "REQUEST_METHOD": request.method, "QUERY_STRING": request.query_string or "",
        "PATH_INFO": request.path, "SCRIPT_NAME": "", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": headers.get("X-Forwarded-Proto", "http"), "aiohttp.request": request}
    for name, key in _ENVIRON_HEADERS:
        values = headers.getall(name, ())
        if values:  # the request's own strings, not copies
            environ[key] = values[0] if len(values) == 1 else ",".join(values)
    return environ


_ENVIRON_HEADERS = (("Origin", "HTTP_ORIGIN"), ("Host", "HTTP_HOST"), ("Upgrade", "HTTP_UPGRADE"),
                    ("Connection", "HTTP_CONNECTION"))


def install_room_websocket(sio: socketio.AsyncServer) -> None:
    """Have Engine.IO open every websocket of `sio` as a `RoomWebSocket` with a short environ (`lean_environ`),
    and send its pings from one `PingWheel` (`AsyncSocket.schedule_ping` is replaced for every server: a server
    without a wheel gets Engine.IO's own)."""
    eio = sio.eio
    eio._async = {**eio._async, "websocket": RoomWebSocket, "translate_request": lean_environ}
    eio.lc_pings = PingWheel(eio.ping_interval, eio.ping_timeout)
    AsyncSocket.schedule_ping = _schedule_ping


# -- one frame for every websocket of a room ---------------------------------------------------------


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed WebSocket text frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def binary_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket binary frame."""
    frame = bytearray(text_frame(payload))
    frame[0] = 0x82
    return bytes(frame)


def room_frame(sio: socketio.AsyncServer, event: str, data: Any, namespace: str) -> bytes | None:
    """The event as the one WebSocket frame every client receives (a Socket.IO EVENT packet in an
    Engine.IO MESSAGE), or None when the data has binary attachments (not for the fast path)."""
    encoded = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
    if isinstance(encoded, list):
        return None
    return text_frame(eio_packet.Packet(eio_packet.MESSAGE, encoded).encode().encode("utf-8"))


def write_frame(sio: socketio.AsyncServer, participants: Iterable[tuple[str, str]], frame: bytes | None,
                max_buffer: int) -> tuple[int, Sequence[WebSocketResponse], Sequence[str]]:
    """Write `frame` straight to the transport of each participant's (sid, eio_sid) websocket.

    Returns how many got it, the websockets too slow to take it (more than `max_buffer` bytes still
    unsent; nothing written to them), and the Engine.IO sids that must get the event the ordinary way
    (long-polling, mid-upgrade, closing, or no frame because the event has binary attachments)."""
    sockets = sio.eio.sockets
    written = 0
    slow: list[WebSocketResponse] | None = None  # made only when needed: most frames have neither
    queued: list[str] | None = None
    for _sid, eio_sid in participants:
        s = sockets.get(eio_sid)
        ws: Any = getattr(s, "lc_ws", None)
        transport = ws.transport if ws is not None else None
        if (frame is not None and transport is not None and s.upgraded and not s.upgrading and not s.closed
                and not transport.is_closing()):
            if transport.get_write_buffer_size() > max_buffer:
                if slow is None:
                    slow = []
                slow.append(ws._sock)
                continue
            transport.write(frame)
            written += 1
        else:
            if queued is None:
                queued = []
            queued.append(eio_sid)
    return written, slow or (), queued or ()


# -- the ordinary way, through Engine.IO's queue ------------------------------------------------------


def event_packet(sio: socketio.AsyncServer, event: str, data: Any, namespace: str) -> Any:
    """The Socket.IO EVENT packet `sio.emit` would build."""
    return sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data])


def send_packet(sio: socketio.AsyncServer, eio_sid: str, packet: Any) -> Awaitable[None]:
    """Send one Socket.IO packet to one client through its Engine.IO queue (a coroutine to await)."""
    # python-socketio ships no types: `_send_packet` is a coroutine function
    return cast("Awaitable[None]", sio._send_packet(eio_sid, packet))


# -- python-socketio's pub/sub bus ------------------------------------------------------------------

_DATA = "\x00data\x00"


@lru_cache(maxsize=1024)
def pubsub_emit_parts(event: str, namespace: str, room: str) -> tuple[str, str]:
    """The message python-socketio's pub/sub managers (`AsyncRedisManager`) act on as
    `emit(event, data, namespace=namespace, room=room)`, as the text before and the text after the
    JSON of `data`. Its `host_id` is no server's own, so every server process delivers it, the one
    that published it included."""
    message = {"method": "emit", "event": event, "data": [_DATA], "binary": False, "namespace": namespace,
               "room": room, "skip_sid": None, "callback": None, "host_id": "room-stream"}
    before, after = json.dumps(message, ensure_ascii=False, separators=(",", ":")).split(json.dumps(_DATA))
    return before, after


# -- listening to the bus ----------------------------------------------------------------------------


async def redis_listen(manager: Any, retry_seconds: float, on_subscribed: Callable[[], Awaitable[None]],
                       on_lost: Callable[[BaseException], None]) -> AsyncIterator[Any]:
    """What `AsyncRedisManager._redis_listen_with_retries` yields (every pub/sub message), but trying again
    every `retry_seconds` after Redis is lost instead of waiting longer each time, closing the client it
    gives up on, and calling `on_subscribed()` once the channel is subscribed (before any message that
    follows is yielded) and `on_lost(exc)` when the subscription is lost or cannot be made."""
    while True:
        try:
            manager._redis_connect()  # a new client and pub/sub each attempt, as upstream
            await manager.pubsub.subscribe(manager.channel)
            await on_subscribed()
            async for message in manager.pubsub.listen():
                yield message
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_lost(exc)
            await _close_quietly(manager)
            await asyncio.sleep(retry_seconds)


async def _close_quietly(manager: Any) -> None:
    for closing in (getattr(manager, "pubsub", None), getattr(manager, "redis", None)):
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing.aclose()


def start_manager(sio: socketio.AsyncServer) -> None:
    """Start the client manager now (its pub/sub listener, with Redis) rather than at the first connection."""
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()


# -- shutting down ------------------------------------------------------------------------------------


def engineio_sockets(sio: socketio.AsyncServer) -> dict[str, Any]:
    """Engine.IO's open sockets on this process, by Engine.IO sid."""
    return cast("dict[str, Any]", sio.eio.sockets)  # python-engineio ships no types


async def close_engineio_socket(socket: Any) -> None:
    """Close one Engine.IO socket without waiting for its send queue to drain."""
    await socket.close(wait=False)


async def close_redis_manager(manager: Any) -> None:
    """Stop a socket.io Redis manager (it has no close of its own): first its listening task (`thread`, an
    asyncio task started by `AsyncPubSubManager.initialize`), which would otherwise open a new client after
    the old one is closed; then its pub/sub and its Redis client (`pubsub`, `redis`)."""
    task = getattr(manager, "thread", None)
    if isinstance(task, asyncio.Task) and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    pubsub = getattr(manager, "pubsub", None)
    if pubsub is not None:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    client = getattr(manager, "redis", None)
    if client is not None:
        await client.aclose()
