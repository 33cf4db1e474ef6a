"""A chat message sent again with its `client_id` (its answer was lost, or said `unavailable`) is the same
message: one row, one event in the room, the same answer; the id is the author's own."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sessions.models import ChatMessage
from tests.support import World, fresh, signed_in, viewer


async def test_a_send_repeated_with_its_client_id_is_one_message(server: TestServer, world: World,
                                                                db: AsyncSession) -> None:
    host = await signed_in(server, "host")
    staff = await signed_in(server, "staff")
    watching = await viewer(server)
    bid = world.live.id
    try:
        for v in (host, staff, watching):
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        send = {"broadcast_id": bid, "text": "오늘 만두 30팩!", "client_id": "m-1"}
        answers = [await host.call("chat:send", send) for _ in range(3)]
        assert answers[0]["ok"] and answers[1] == answers[0] == answers[2], answers
        # sent at the same moment: still one message
        raced = await asyncio.gather(*[host.call("chat:send", {**send, "client_id": "m-2"}) for _ in range(4)])
        assert all(a["ok"] for a in raced) and len({a["data"]["id"] for a in raced}) == 1, raced
        mine = await staff.call("chat:send", send)  # the same id, another author: another message
        assert mine["ok"] and mine["data"]["id"] != answers[0]["data"]["id"]
        ids = [answers[0]["data"]["id"], raced[0]["data"]["id"], mine["data"]["id"]]
        await watching.wait_for(lambda: [e["d"]["id"] for e in watching.events if e["t"] == "chat"] == ids)
        await asyncio.sleep(0.3)  # nothing more comes
        assert [e["d"]["id"] for e in watching.events if e["t"] == "chat"] == ids
        await fresh(db)
        assert await db.scalar(select(func.count()).select_from(ChatMessage)) == 3
        bad = await host.call("chat:send", {**send, "client_id": "no spaces"})
        assert not bad["ok"] and bad["error"]["code"] == "validation_failed"
    finally:
        for v in (host, staff, watching):
            await v.sio.disconnect()
