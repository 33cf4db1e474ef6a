"""What `livecommerce/internals.py` relies on inside aiohttp, python-engineio and python-socketio, checked
so that an upgrade which removes or changes it fails here, naming the library and what changed: first the
names and signatures, then the behaviour through a real server, real socket.io clients and (on the
PostgreSQL + Redis backend) the real Redis bus."""

from __future__ import annotations

import asyncio
import inspect
import json
from importlib.metadata import version
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp.test_utils import TestServer
from aiohttp.web import BaseRequest, WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from redis.asyncio import Redis
from socketio.async_pubsub_manager import AsyncPubSubManager

from livecommerce.fanout import MAX_BUFFER, FastManager, FastRedisManager
from livecommerce.internals import (
    DirectQueue,
    RoomWebSocket,
    close_engineio_socket,
    engineio_sockets,
    install_room_websocket,
    lean_environ,
    pubsub_emit_parts,
    room_frame,
    send_packet,
    text_frame,
    write_frame,
)
from livecommerce.keys import AppKeys
from livecommerce.realtime import LIVE_NAMESPACE as NS
from tests.support import socket_for

ROOM = "broadcast:424242"


def changed(library: str, what: str) -> str:
    """The message of a failed check: which library, at which version, and what no longer holds."""
    return f"{library} {version(library)} changed: {what} (see livecommerce/internals.py)"


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def base(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def collect(client: socketio.AsyncClient, event: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(data: Any) -> None:
        await q.put(data)

    client.on(event, handler, namespace=NS)
    return q


async def in_room(sio: socketio.AsyncServer, client: socketio.AsyncClient, room: str = ROOM) -> None:
    await sio.enter_room(client.get_sid(namespace=NS), room, namespace=NS)


# -- names and signatures -------------------------------------------------------------------------------

def test_engineio_lets_the_websocket_class_be_chosen() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    table = getattr(sio.eio, "_async", None)
    assert isinstance(table, dict) and table.get("websocket") is eio_aiohttp.WebSocket, changed(
        "python-engineio", "AsyncServer._async['websocket'] is no longer the aiohttp driver's WebSocket class")
    before = dict(table)
    assert table.get("translate_request") is eio_aiohttp.translate_request, changed(
        "python-engineio", "AsyncServer._async['translate_request'] is no longer the aiohttp driver's")
    install_room_websocket(sio)
    assert sio.eio._async["websocket"] is RoomWebSocket
    assert sio.eio._async["translate_request"] is lean_environ
    mine = ("websocket", "translate_request")
    assert {k: v for k, v in sio.eio._async.items() if k not in mine} == \
        {k: v for k, v in before.items() if k not in mine}
    assert eio_aiohttp._async["websocket"] is eio_aiohttp.WebSocket, "the driver's own table is left alone"


def test_engineio_websocket_driver_and_socket() -> None:
    ws = eio_aiohttp.WebSocket
    assert params(ws.__init__) == ["self", "handler", "server"], changed(
        "python-engineio", "async_drivers.aiohttp.WebSocket(handler, server)")
    assert params(ws.__call__) == ["self", "environ"], changed(
        "python-engineio", "async_drivers.aiohttp.WebSocket.__call__(environ)")
    assert getattr(ws(None, None), "_sock", "missing") is None, changed(
        "python-engineio", "async_drivers.aiohttp.WebSocket keeps its WebSocketResponse in `_sock`")
    sock = engineio.async_socket.AsyncSocket
    assert inspect.iscoroutinefunction(getattr(sock, "_websocket_handler", None)), changed(
        "python-engineio", "AsyncSocket._websocket_handler (the handler given to the websocket class)")
    assert "wait" in params(sock.close), changed("python-engineio", "AsyncSocket.close(wait=…)")
    assert eio_packet.Packet(eio_packet.MESSAGE, "2[\"e\"]").encode() == "42[\"e\"]", changed(
        "python-engineio", "an Engine.IO MESSAGE is encoded as '4' + its text")
    for name in ("receive", "close", "send", "schedule_ping", "_send_ping"):
        assert callable(getattr(sock, name, None)), changed("python-engineio", f"AsyncSocket.{name}")
    fresh_socket = sock(socketio.AsyncServer(async_mode="aiohttp").eio, "sid")
    for name in ("queue", "last_ping", "connected", "upgraded", "upgrading", "closing", "closed", "server"):
        assert hasattr(fresh_socket, name), changed("python-engineio", f"an AsyncSocket's `{name}`")
    assert params(sock.close)[1:4] == ["wait", "abort", "reason"], changed(
        "python-engineio", "AsyncSocket.close(wait, abort, reason)")
    eio = socketio.AsyncServer(async_mode="aiohttp").eio
    for name in ("ping_interval", "ping_timeout", "max_http_buffer_size", "sockets"):
        assert hasattr(eio, name), changed("python-engineio", f"AsyncServer.{name}")
    assert hasattr(eio.reason, "TRANSPORT_CLOSE"), changed("python-engineio", "AsyncServer.reason.TRANSPORT_CLOSE")


def test_socketio_server_and_managers() -> None:
    send = getattr(socketio.AsyncServer, "_send_packet", None)
    assert inspect.iscoroutinefunction(send) and params(send) == ["self", "eio_sid", "pkt"], changed(
        "python-socketio", "AsyncServer._send_packet(eio_sid, pkt)")
    sio = socketio.AsyncServer(async_mode="aiohttp")
    pkt = sio.packet_class(socketio.packet.EVENT, namespace=NS, data=["e", {"a": 1}])
    assert isinstance(pkt.encode(), str), changed(
        "python-socketio", "AsyncServer.packet_class(EVENT, …).encode() returns the text of the packet")
    handle = getattr(AsyncPubSubManager, "_handle_emit", None)
    assert inspect.iscoroutinefunction(handle) and params(handle) == ["self", "message"], changed(
        "python-socketio", "AsyncPubSubManager._handle_emit(message)")
    assert "super().emit(" in inspect.getsource(handle), changed(
        "python-socketio", "AsyncPubSubManager._handle_emit no longer delivers with super().emit(…)")
    mro = FastRedisManager.__mro__
    assert mro.index(AsyncPubSubManager) < mro.index(FastManager) < mro.index(socketio.AsyncManager), \
        changed("python-socketio", "the managers' method order: FastManager.emit must come after "
                "AsyncPubSubManager's and before AsyncManager's")
    manager = socketio.AsyncRedisManager("redis://127.0.0.1:1/0")
    assert hasattr(manager, "redis"), changed("python-socketio", "AsyncRedisManager.redis (its own client)")
    assert isinstance(getattr(socketio.AsyncManager(), "rooms", None), dict), changed(
        "python-socketio", "AsyncManager.rooms (namespace → room → {sid: eio_sid})")


def test_the_redis_managers_listening_can_be_replaced() -> None:
    """`FastRedisManager` replaces `_redis_listen_with_retries` (its waits grow to a minute) and starts the
    manager at startup: what that relies on is still there."""
    listen = getattr(socketio.AsyncRedisManager, "_redis_listen_with_retries", None)
    assert inspect.isasyncgenfunction(listen) and params(listen) == ["self"], changed(
        "python-socketio", "AsyncRedisManager._redis_listen_with_retries() (an async generator of pub/sub messages)")
    assert "_redis_listen_with_retries()" in inspect.getsource(socketio.AsyncRedisManager._listen), changed(
        "python-socketio", "AsyncRedisManager._listen no longer reads _redis_listen_with_retries()")
    connect = getattr(socketio.AsyncRedisManager, "_redis_connect", None)
    assert callable(connect) and params(connect) == ["self"], changed(
        "python-socketio", "AsyncRedisManager._redis_connect()")
    manager = FastRedisManager("redis://127.0.0.1:1/0", channel="c")
    assert manager.pubsub is None and manager.channel == "c", changed(
        "python-socketio", "AsyncRedisManager.pubsub / .channel")
    assert inspect.isasyncgen(manager._redis_listen_with_retries())
    sio = socketio.AsyncServer(async_mode="aiohttp")
    assert sio.manager_initialized is False and callable(sio.manager.initialize), changed(
        "python-socketio", "AsyncServer.manager_initialized and manager.initialize()")


def test_aiohttp_websocket_response_and_request() -> None:
    assert {"compress", "max_msg_size"} <= set(params(WebSocketResponse.__init__)), changed(
        "aiohttp", "WebSocketResponse(compress=…, max_msg_size=…)")
    assert isinstance(inspect.getattr_static(BaseRequest, "transport"), property), changed(
        "aiohttp", "BaseRequest.transport")


async def test_the_pubsub_message_is_the_one_python_socketio_publishes() -> None:
    """The message built for the Redis room stream is the one python-socketio's own pub/sub manager
    publishes for the same emit, all but its host id."""
    published: list[dict[str, Any]] = []

    class Capture(AsyncPubSubManager):
        async def _publish(self, data: Any) -> None:
            published.append(data)

    data = {"e": "ab12cd34", "o": 7, "t": "chat", "d": {"text": "안녕하세요"}, "ts": 1.5}
    await Capture(write_only=True).emit("room", data, namespace=NS, room=ROOM)
    before, after = pubsub_emit_parts("room", NS, ROOM)
    ours = json.loads(before + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + after)
    assert len(published) == 1
    theirs = published[0]
    assert ours["host_id"] != theirs["host_id"]
    assert {k: v for k, v in ours.items() if k != "host_id"} == {k: v for k, v in theirs.items() if k != "host_id"}, \
        changed("python-socketio", "the pub/sub message of an emit")


def test_text_frame_lengths() -> None:
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


# -- behaviour through a real server ------------------------------------------------------------------

@pytest.mark.parametrize("size", [10, 1_000, 70_000])  # the three lengths of a frame header
async def test_a_frame_written_to_the_transport_reaches_a_real_client(server: TestServer, app: Any,
                                                                      size: int) -> None:
    sio: socketio.AsyncServer = app[AppKeys.sio]
    client = await socket_for(base(server))
    try:
        got = collect(client, "probe")
        await in_room(sio, client)
        s = engineio_sockets(sio).get(client.eio.sid)
        assert s is not None, changed("python-engineio", "AsyncServer.sockets is keyed by Engine.IO sid")
        ws = getattr(s, "lc_ws", None)
        assert isinstance(ws, RoomWebSocket), changed(
            "python-engineio", "the websocket class is no longer made with the Engine.IO socket's bound handler")
        assert ws.transport is not None and not ws.transport.is_closing(), changed(
            "aiohttp", "request.transport is not the websocket's transport once prepared")
        assert (s.upgraded, s.upgrading, s.closed) == (True, False, False), changed(
            "python-engineio", "the socket's upgraded / upgrading / closed state")
        assert isinstance(ws._sock, WebSocketResponse) and not ws._sock.compress, changed(
            "aiohttp", "WebSocketResponse(compress=False) still accepted per-message-deflate")

        data = {"text": "라이브 특가 " * (size // 20 + 1)}
        frame = room_frame(sio, "probe", data, NS)
        assert frame is not None
        written, slow, queued = write_frame(sio, sio.manager.get_participants(NS, ROOM), frame, MAX_BUFFER)
        assert (written, list(slow), list(queued)) == (1, [], [])
        assert await asyncio.wait_for(got.get(), 5) == data, changed(
            "aiohttp", "a frame written to the transport does not reach the client as one message")

        # aiohttp's own writer keeps working beside the frames written directly
        await sio.emit("probe", {"n": 1}, to=client.get_sid(namespace=NS), namespace=NS)
        assert await asyncio.wait_for(got.get(), 5) == {"n": 1}
        frames_before = sio.manager.frames_written
        await sio.emit("probe", {"n": 2}, room=ROOM, namespace=NS)  # the fan-out's own path
        assert await asyncio.wait_for(got.get(), 5) == {"n": 2}
        assert sio.manager.frames_written == frames_before + 1
    finally:
        await client.disconnect()


async def test_a_socket_too_slow_is_handed_back_with_its_websocket(server: TestServer, app: Any) -> None:
    sio: socketio.AsyncServer = app[AppKeys.sio]
    client = await socket_for(base(server))
    try:
        await in_room(sio, client)
        written, slow, queued = write_frame(sio, sio.manager.get_participants(NS, ROOM),
                                            room_frame(sio, "probe", {}, NS), -1)
        assert (written, list(queued)) == (0, [])
        assert len(slow) == 1 and isinstance(slow[0], WebSocketResponse), changed(
            "python-engineio", "the aiohttp driver's WebSocket no longer keeps its response in `_sock`")
    finally:
        await client.disconnect()


async def test_a_long_polling_client_gets_the_event_through_engineio(server: TestServer, app: Any) -> None:
    sio: socketio.AsyncServer = app[AppKeys.sio]
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(base(server), namespaces=[NS], transports=["polling"], wait_timeout=5)
    try:
        got = collect(client, "probe")
        await in_room(sio, client)
        written, slow, queued = write_frame(sio, sio.manager.get_participants(NS, ROOM),
                                            room_frame(sio, "probe", {"a": "가"}, NS), MAX_BUFFER)
        assert (written, list(slow), list(queued)) == (0, [], [client.eio.sid])
        pkt = sio.packet_class(socketio.packet.EVENT, namespace=NS, data=["probe", {"a": "가"}])
        await send_packet(sio, client.eio.sid, pkt)
        assert await asyncio.wait_for(got.get(), 5) == {"a": "가"}, changed(
            "python-socketio", "AsyncServer._send_packet no longer sends a packet to a client")
    finally:
        # closed from the server's side: a long-polling client's own disconnect waits out its open poll
        await close_engineio_socket(engineio_sockets(sio)[client.eio.sid])
        await client.disconnect()


async def test_closing_an_engineio_socket_disconnects_the_client(server: TestServer, app: Any) -> None:
    sio: socketio.AsyncServer = app[AppKeys.sio]
    client = await socket_for(base(server))
    gone = asyncio.Event()
    client.on("disconnect", lambda *a: gone.set(), namespace=NS)
    sockets = engineio_sockets(sio)
    assert client.eio.sid in sockets
    await close_engineio_socket(sockets[client.eio.sid])
    await asyncio.wait_for(gone.wait(), 5)


async def test_the_redis_bus_delivers_the_message_built_here(server: TestServer, app: Any) -> None:
    """The message built by `pubsub_emit_parts`, published on the real Redis, is taken by the real
    AsyncRedisManager and delivered to the room through the fan-out's frame path."""
    config = app[AppKeys.config]
    if not config.redis.url:
        pytest.skip("needs Redis: runs on the PostgreSQL + Redis backend")
    sio: socketio.AsyncServer = app[AppKeys.sio]
    manager = sio.manager
    assert isinstance(manager, FastRedisManager)
    client = await socket_for(base(server))  # the manager starts listening at the first connection
    redis = Redis.from_url(config.redis.url)
    try:
        got = collect(client, "probe")
        await in_room(sio, client)
        for _ in range(100):
            if dict(await redis.pubsub_numsub(manager.channel)).get(manager.channel.encode()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(changed("python-socketio", "AsyncRedisManager never subscribed to its channel"))
        data = {"text": "안녕하세요", "n": 1}
        before, after = pubsub_emit_parts("probe", NS, ROOM)
        frames_before = manager.frames_written
        await redis.publish(manager.channel, before + json.dumps(data, ensure_ascii=False) + after)
        assert await asyncio.wait_for(got.get(), 5) == data, changed(
            "python-socketio", "AsyncRedisManager did not deliver the pub/sub message built here")
        assert manager.frames_written == frames_before + 1, changed(
            "python-socketio", "the pub/sub manager no longer delivers through FastManager.emit")
        assert isinstance(manager.redis, Redis), changed(
            "python-socketio", "AsyncRedisManager.redis is not its Redis client")
    finally:
        await client.disconnect()
        await redis.aclose()


# -- the websocket served without Engine.IO's queue, writer and ping tasks ---------------------------------


async def test_a_websocket_client_is_served_directly_and_an_upgraded_one_by_engineio(server: TestServer,
                                                                                    app: Any) -> None:
    sio: socketio.AsyncServer = app[AppKeys.sio]
    direct = await socket_for(base(server))
    upgraded = socketio.AsyncClient(reconnection=False)
    await upgraded.connect(base(server), namespaces=[NS], transports=["polling", "websocket"], wait_timeout=5)
    try:
        for _ in range(50):
            if upgraded.transport() == "websocket":
                break
            await asyncio.sleep(0.1)
        assert upgraded.transport() == "websocket"
        sockets = engineio_sockets(sio)
        assert isinstance(sockets[direct.eio.sid].queue, DirectQueue)
        assert isinstance(sockets[upgraded.eio.sid].queue, asyncio.Queue)  # Engine.IO's own handler
        for client in (direct, upgraded):
            got = collect(client, "probe")
            await in_room(sio, client)
            pkt = sio.packet_class(socketio.packet.EVENT, namespace=NS, data=["probe", {"a": "가"}])
            await send_packet(sio, client.eio.sid, pkt)  # one client's own event, through its socket's queue
            assert await asyncio.wait_for(got.get(), 5) == {"a": "가"}
            await sio.leave_room(client.get_sid(namespace=NS), ROOM, namespace=NS)
    finally:
        await direct.disconnect()
        await upgraded.disconnect()


async def test_pings_keep_a_live_client_and_close_a_silent_one(config: Any) -> None:
    """Pings go out from the server's wheel: a client that answers them stays, one that does not is closed
    once the ping timeout has passed."""
    from livecommerce.app import create_app

    app = create_app(config)
    eio = app[AppKeys.sio].eio
    eio.ping_interval, eio.ping_timeout = 0.3, 0.6
    eio.lc_pings.interval, eio.lc_pings.timeout = 0.3, 0.6
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    live = await socket_for(base(server))
    try:
        async with aiohttp.ClientSession() as http:
            silent = await http.ws_connect(f"{base(server)}/socket.io/?EIO=4&transport=websocket")
            opened = await silent.receive(timeout=5)
            assert str(opened.data).startswith("0{")
            pings, closed_after = 0, None
            started = asyncio.get_running_loop().time()
            while True:  # read, never answer
                msg = await silent.receive(timeout=10)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    closed_after = asyncio.get_running_loop().time() - started
                    break
                pings += msg.data == "2"
            assert pings >= 1 and closed_after is not None
        await asyncio.sleep(1.5)  # five ping intervals for the client that answers
        assert live.connected
        assert (await live.call("schedule:watch", {}, namespace=NS, timeout=5))["ok"]
    finally:
        await live.disconnect()
        await server.close()


def test_a_websockets_environ_keeps_only_what_is_read_of_it() -> None:
    from aiohttp.test_utils import make_mocked_request

    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "http://127.0.0.1:8080",
               "Host": "127.0.0.1:8080", "Cookie": "lc_session=x", "User-Agent": "Mozilla/5.0 " + "x" * 200,
               "Accept-Language": "ko-KR,ko;q=0.9"}
    ws = lean_environ(make_mocked_request("GET", "/socket.io/?EIO=4&transport=websocket", headers=headers))
    assert {k for k in ws if k.startswith("HTTP_")} == {"HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_ORIGIN", "HTTP_HOST"}
    assert ws["QUERY_STRING"] == "EIO=4&transport=websocket" and ws["REQUEST_METHOD"] == "GET"
    assert ws["HTTP_ORIGIN"] == "http://127.0.0.1:8080" and "aiohttp.request" in ws and "wsgi.input" in ws
    polling = lean_environ(make_mocked_request("GET", "/socket.io/?EIO=4&transport=polling",
                                               headers={"Cookie": "lc_session=x", "Origin": "http://a"}))
    assert polling["HTTP_COOKIE"] == "lc_session=x", "anything but a websocket gets Engine.IO's own environ"


def awaiting(coro: Any) -> list[str]:
    """The names of the coroutines a task is suspended in, outermost first."""
    names = []
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


async def test_a_connected_websocket_keeps_none_of_engineios_connect_frames(server: TestServer, app: Any) -> None:
    """The connection is served after Engine.IO's connect has returned: the task serving a viewer holds aiohttp's
    request frame, `answer_websocket` and `serve_websocket`, not `handle_request` → … → `_upgrade_websocket`."""
    client = await socket_for(base(server))
    try:
        await asyncio.sleep(0.1)
        stacks = [awaiting(t.get_coro()) for t in asyncio.all_tasks()]
        serving = [names for names in stacks if "serve_websocket" in names]
        assert len(serving) == 1, stacks
        assert "answer_websocket" in serving[0]
        assert not {"handle_request", "_handle_connect", "handle_get_request", "_upgrade_websocket"} & set(serving[0])
    finally:
        await client.disconnect()
