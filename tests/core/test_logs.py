"""Structured logs name what they are about: every line written while a socket event or a request is handled
— by the core or by a domain — carries the broadcast and the viewer, and work done for many viewers at once
names none of them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from livecommerce import logs
from livecommerce.realtime import SocketUser
from orders.placing import PURCHASE_LISTENERS, PurchaseEvent
from sessions.room import room_hooks
from tests.orders.support import buy, order
from tests.support import World, sign_in, signed_in

listener_log = logging.getLogger("tests.listener")


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(x) for x in stream.getvalue().splitlines()]


async def test_a_line_written_while_a_socket_event_is_handled_names_the_broadcast_and_the_viewer(
        app: web.Application, server: TestServer, world: World, lines: io.StringIO) -> None:
    async def heard(_app: web.Application, _broadcast_id: int, _who: SocketUser, text: str) -> None:
        listener_log.info("heard a message", extra={"chars": len(text)})  # a domain's line: it names neither

    room_hooks(app).on_chat.append(heard)
    talker = await signed_in(server, "viewer")
    try:
        assert (await talker.call("join", {"broadcast_id": world.live.id}))["ok"]
        ack = await talker.call("chat:send", {"broadcast_id": world.live.id, "text": "안녕하세요"})
        assert ack["ok"], ack
    finally:
        await talker.sio.disconnect()
    written = parsed(lines)
    event = next(x for x in written if x["msg"] == "socket event" and x["event"] == "chat:send")
    assert (event["broadcast"], event["viewer"]) == (world.live.id, world.viewer.id)
    domain = next(x for x in written if x["logger"] == "tests.listener")
    assert (domain["broadcast"], domain["viewer"], domain["chars"]) == (world.live.id, world.viewer.id, 5)
    assert domain["sid"] == event["sid"] and domain["event_id"] == event["event_id"]
    connected = next(x for x in written if x["msg"] == "socket connected")
    assert connected["viewer"] == world.viewer.id and "broadcast" not in connected


async def test_a_line_written_while_a_request_is_answered_names_the_broadcast_and_the_viewer(
        app: web.Application, server: TestServer, http: TestClient, world: World, lines: io.StringIO) -> None:
    async def told(_app: web.Application, event: PurchaseEvent) -> None:
        listener_log.info("purchase heard", extra={"purchase": event.purchase_id})

    app[PURCHASE_LISTENERS].append(told)
    token = await sign_in(http, "viewer")
    status, _, headers = await buy(http, token, world.live.id, order(world))
    assert status == 201
    written = parsed(lines)
    domain = next(x for x in written if x["logger"] == "tests.listener")
    assert (domain["broadcast"], domain["viewer"]) == (world.live.id, world.viewer.id)
    assert domain["request_id"] == headers["X-Request-ID"]
    request = next(x for x in written if x["msg"] == "request" and x["request_id"] == headers["X-Request-ID"])
    assert (request["broadcast"], request["viewer"], request["status"]) == (world.live.id, world.viewer.id, 201)
    # the next request on the same connection starts with nothing of this one
    await http.get("/api/v1/auth/session")
    last = [x for x in parsed(lines) if x["msg"] == "request"][-1]
    assert last["path"] == "/api/v1/auth/session" and "broadcast" not in last


async def test_work_for_many_runs_apart_and_the_scope_ends_with_its_block(lines: io.StringIO) -> None:
    log = logging.getLogger("livecommerce.test")

    async def shared() -> None:
        log.info("for everyone")

    with logs.scope(broadcast=7, viewer=42):
        log.info("for one")
        await asyncio.get_running_loop().create_task(shared(), context=logs.apart())
        log.info("given", extra={"viewer": 1})  # a field the caller gives is kept
    log.info("after")
    one, everyone, given, after = parsed(lines)
    assert (one["broadcast"], one["viewer"]) == (7, 42)
    assert "broadcast" not in everyone and "viewer" not in everyone
    assert (given["broadcast"], given["viewer"]) == (7, 1)
    assert "broadcast" not in after and "viewer" not in after


def test_the_request_line_and_a_usual_line_agree_inside_a_scope(lines: io.StringIO) -> None:
    log = logging.getLogger("livecommerce.http")
    fields = {"request_id": "abc", "status": 201, "path": "/api/v1/x", "user": 3, "ms": 1.5}
    with logs.scope(broadcast=7, viewer=3):
        logs.access(log, "request", fields)
        log.info("request", extra=fields)
    fast, usual = parsed(lines)
    assert fast.pop("ts") and usual.pop("ts")
    assert fast == usual == {"level": "info", "logger": "livecommerce.http", "msg": "request", **fields,
                             "broadcast": 7, "viewer": 3}
