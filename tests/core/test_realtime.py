"""The socket layer with real socket.io clients over real websockets: authentication at connect
(the role comes from the server), role checks and validation on every event, rooms, and the
Redis bus shared by two server processes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config
from sessions.models import Broadcast, BroadcastState
from tests.support import World, cookie_of, fresh, sign_in, socket_for

NS = "/live"


def base(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def collect(sio: socketio.AsyncClient, event: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(data: Any) -> None:
        await q.put(data)

    sio.on(event, handler, namespace=NS)
    return q


async def call(sio: socketio.AsyncClient, event: str, data: Any) -> dict[str, Any]:
    ack = await sio.call(event, data, namespace=NS, timeout=5)
    assert isinstance(ack, dict)
    return ack


async def test_anonymous_viewer_joins_and_gets_the_whole_state(server: TestServer, world: World) -> None:
    sio = await socket_for(base(server))
    try:
        ack = await call(sio, "join", {"broadcast_id": world.live.id})
        assert ack["ok"] is True
        b = ack["data"]["broadcast"]
        assert b["id"] == world.live.id and b["state"] == "live"
        assert [item["live_price"] for item in b["lineup"]] == [9900, 13900]
        assert ack["data"]["you"]["role"] is None
    finally:
        await sio.disconnect()


async def test_the_role_comes_from_the_server_not_the_client(server: TestServer, http: TestClient,
                                                             world: World, db: AsyncSession) -> None:
    await sign_in(http, "viewer")
    sio = socketio.AsyncClient(reconnection=False)
    from livecommerce.auth import COOKIE

    await sio.connect(base(server), headers={"Cookie": f"{COOKIE}={cookie_of(http)}"}, namespaces=[NS],
                      transports=["websocket"], auth={"role": "staff", "user_id": world.staff.id}, wait_timeout=5)
    try:
        ack = await call(sio, "join", {"broadcast_id": world.live.id})
        assert ack["data"]["you"]["role"] == "viewer"
        assert ack["data"]["you"]["user_id"] == world.viewer.id
        ack = await call(sio, "host:end", {"broadcast_id": world.live.id})
        assert ack == {"ok": False, "error": {"code": "forbidden", "message": ack["error"]["message"]}}
        assert ack["error"]["message"]
    finally:
        await sio.disconnect()
    b = await (await fresh(db)).get(Broadcast, world.live.id)
    assert b is not None and b.state is BroadcastState.LIVE


async def test_anonymous_socket_cannot_send_host_events(server: TestServer, world: World, db: AsyncSession) -> None:
    sio = await socket_for(base(server))
    try:
        ack = await call(sio, "host:go_live", {"broadcast_id": world.scheduled.id})
        assert ack["ok"] is False and ack["error"]["code"] == "unauthenticated"
    finally:
        await sio.disconnect()
    b = await (await fresh(db)).get(Broadcast, world.scheduled.id)
    assert b is not None and b.state is BroadcastState.SCHEDULED


async def test_host_ends_the_show_and_the_room_hears_it(server: TestServer, http: TestClient, world: World,
                                                       db: AsyncSession) -> None:
    viewer = await socket_for(base(server))
    states = collect(viewer, "broadcast:state")
    await sign_in(http, "host")
    host = await socket_for(base(server), cookie_of(http))
    try:
        assert (await call(viewer, "join", {"broadcast_id": world.live.id}))["ok"]
        # a host cannot move someone else's broadcast
        ack = await call(host, "host:go_live", {"broadcast_id": world.scheduled.id})
        assert ack["ok"] is False and ack["error"]["code"] == "not_your_broadcast"
        ack = await call(host, "host:end", {"broadcast_id": world.live.id})
        assert ack["ok"] is True and ack["data"]["state"] == "ended"
        pushed = await asyncio.wait_for(states.get(), 5)
        assert pushed["broadcast_id"] == world.live.id and pushed["state"] == "ended"
        # ending twice is not a legal move
        ack = await call(host, "host:end", {"broadcast_id": world.live.id})
        assert ack["ok"] is False and ack["error"]["code"] == "illegal_transition"
    finally:
        await viewer.disconnect()
        await host.disconnect()
    b = await (await fresh(db)).get(Broadcast, world.live.id)
    assert b is not None and b.state is BroadcastState.ENDED and b.ended_at is not None
    s = await db.get(Broadcast, world.scheduled.id)
    assert s is not None and s.state is BroadcastState.SCHEDULED


@pytest.mark.parametrize(("event", "data", "code"), [
    ("join", {"broadcast_id": 999999}, "broadcast_not_found"),
    ("join", {"broadcast_id": "abc"}, "validation_failed"),
    ("join", {"broadcast_id": -1}, "validation_failed"),
    ("join", {}, "validation_failed"),
    ("join", "just a string", "validation_failed"),
    ("join", {"broadcast_id": 1, "extra": True}, "validation_failed"),
    ("no-such-event", {}, "unknown_event"),
])
async def test_bad_events_get_an_error_a_page_can_show(server: TestServer, world: World, event: str, data: Any,
                                                        code: str) -> None:
    sio = await socket_for(base(server))
    try:
        ack = await call(sio, event, data)
        assert ack["ok"] is False
        assert ack["error"]["code"] == code
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
        # the socket still works afterwards
        assert (await call(sio, "join", {"broadcast_id": world.live.id}))["ok"]
    finally:
        await sio.disconnect()


async def test_closed_broadcast_cannot_be_joined(server: TestServer, world: World, db: AsyncSession) -> None:
    b = await db.get(Broadcast, world.live.id)
    assert b is not None
    b.state = BroadcastState.ENDED
    await db.commit()
    sio = await socket_for(base(server))
    try:
        ack = await call(sio, "join", {"broadcast_id": world.live.id})
        assert ack["ok"] is False and ack["error"]["code"] == "broadcast_closed"
    finally:
        await sio.disconnect()


async def test_a_foreign_origin_cannot_open_a_socket(server: TestServer, world: World) -> None:
    refused = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(base(server), headers={"Origin": "https://evil.example"}, namespaces=[NS],
                              transports=["websocket"], wait_timeout=5)
    assert not refused.connected
    if refused.eio.http is not None:  # the client library leaves its HTTP session open after a refusal
        await refused.eio.http.close()
    ok = await socket_for(base(server), headers={"Origin": base(server)})
    await ok.disconnect()


async def test_socket_metrics_count_connections_and_events(server: TestServer, http: TestClient,
                                                           world: World) -> None:
    sio = await socket_for(base(server))
    try:
        await call(sio, "join", {"broadcast_id": world.live.id})
        text = await (await http.get("/metrics")).text()
        assert "livecommerce_sockets_connected 1.0" in text
        assert 'livecommerce_socket_events_total{event="join",outcome="ok"} 1.0' in text
    finally:
        await sio.disconnect()


async def test_two_server_processes_share_rooms_through_redis(config: Config, world: World) -> None:
    if not config.redis.url:
        pytest.skip("needs Redis: runs on the PostgreSQL + Redis backend")
    app_a, app_b = create_app(config), create_app(config)
    server_a, server_b = TestServer(app_a, host="127.0.0.1"), TestServer(app_b, host="127.0.0.1")
    await server_a.start_server()
    await server_b.start_server()
    http_a = TestClient(server_a)
    await http_a.start_server()
    try:
        viewer = await socket_for(base(server_b))
        states = collect(viewer, "broadcast:state")
        assert (await call(viewer, "join", {"broadcast_id": world.live.id}))["ok"]
        await sign_in(http_a, "host")
        host = await socket_for(base(server_a), cookie_of(http_a))
        await asyncio.sleep(0.2)  # the Redis manager's listener subscribes when the server starts
        ack = await call(host, "host:end", {"broadcast_id": world.live.id})
        assert ack["ok"], ack
        pushed = await asyncio.wait_for(states.get(), 5)
        assert pushed["state"] == "ended"
        await viewer.disconnect()
        await host.disconnect()
    finally:
        await http_a.close()
        await server_a.close()
        await server_b.close()


async def test_graceful_shutdown_closes_sockets(config: Config, world: World) -> None:
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sio = await socket_for(base(server))
    gone = asyncio.Event()
    sio.on("disconnect", lambda *a: gone.set(), namespace=NS)
    await server.close()
    await asyncio.wait_for(gone.wait(), 5)
    assert not sio.connected
    assert isinstance(app, web.Application)
