"""Chat ingest: the pure rules a message is checked against, the limits taken together or not at all (in
Redis with one script, in memory without), and messages sent at the same moment written in shared groups
— each once, in the room in the order written, every `ok` saved."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import utcnow
from livecommerce.errors import AppError
from livecommerce.keys import AppKeys
from livecommerce.models import Role
from sessions import ingest
from sessions.chat import Bucket, Rules, check_rules, take_all
from sessions.models import BroadcastState, ChatMessage
from sessions.room import ROOMS
from tests.support import World, fresh, guest, signed_in, viewer

# -- pure rules ---------------------------------------------------------------------------------


def test_tokens_are_taken_from_every_bucket_or_from_none() -> None:
    limits = [(1.0, 1), (10.0, 5)]  # slow mode: one a second; the author's rate: 5 at once
    empty, after = take_all([None, None], 0.0, limits)
    assert empty == 0 and [b.tokens for b in after] == [0.0, 4.0]
    empty, refused = take_all(after, 0.1, limits)
    assert empty == 1  # slow mode says no: the author's bucket keeps its token
    assert refused[0].tokens == pytest.approx(0.1) and refused[1].tokens == pytest.approx(5.0)
    empty, _ = take_all(refused, 1.1, limits)
    assert empty == 0
    empty, _ = take_all([Bucket(5.0, 0.0), Bucket(0.2, 0.0)], 0.0, limits)
    assert empty == 2


def test_who_may_write_in_a_broadcasts_chat() -> None:
    now = utcnow()
    rules = Rules(BroadcastState.LIVE, 0, {7: ("mute", now + timedelta(minutes=3)), 8: ("ban", None),
                                           9: ("mute", now - timedelta(seconds=1))})
    check_rules(rules, Role.VIEWER, 1, now)
    check_rules(rules, Role.VIEWER, 9, now)  # a mute that ended
    for user, code in ((7, "muted"), (8, "banned")):
        with pytest.raises(AppError) as info:
            check_rules(rules, Role.VIEWER, user, now)
        assert info.value.code == code
    check_rules(Rules(BroadcastState.LIVE, 0, {7: ("ban", None)}), Role.HOST, 7, now)  # never hosts
    for state in (BroadcastState.SCHEDULED, BroadcastState.ENDED, BroadcastState.CANCELLED):
        with pytest.raises(AppError) as info:
            check_rules(Rules(state, 0, {}), Role.STAFF, 1, now)
        assert info.value.code == "chat_closed"
    check_rules(Rules(BroadcastState.LOBBY, 0, {}), Role.VIEWER, 1, now)


# -- the server ---------------------------------------------------------------------------------


async def test_limits_are_taken_together_in_one_go(server: TestServer) -> None:
    """In Redis (one script) or in memory: a refusal by one bucket takes nothing from the other."""
    rt = server.app[ROOMS]
    slow, rate = ("slow:1:5", 0.001, 1), ("chat:5", 0.001, 3)
    assert await rt.take_tokens([slow, rate]) == 0
    assert await rt.take_tokens([slow, rate]) == 1
    assert await rt.take_tokens([rate]) == 0  # two of three taken: the refused send took none
    assert await rt.take_tokens([rate]) == 0
    assert await rt.take_tokens([rate]) == 1


async def test_messages_sent_together_share_their_writes_and_each_is_kept_once(
        server: TestServer, world: World, db: AsyncSession) -> None:
    bid = world.live.id
    senders = [(await guest(server, f"손님{i}"))[0] for i in range(8)]
    host = await signed_in(server, "host")
    watching = await viewer(server)
    everyone = [*senders, host, watching]
    try:
        for v in everyone:
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        writer = server.app[ingest.WRITER]
        groups_before = writer.groups

        async def burst(v: object, who: int) -> list[dict[str, object]]:
            sends = [v.call("chat:send", {"broadcast_id": bid, "text": f"{who}번 손님 {n}", "client_id": f"c{n}"})
                     for n in range(5)]  # type: ignore[attr-defined]
            return await asyncio.gather(*sends)

        answers = [a for group in await asyncio.gather(*(burst(v, i) for i, v in enumerate([*senders, host])))
                   for a in group]
        assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]]
        assert writer.groups - groups_before < len(answers)  # groups were shared
        registry = server.app[AppKeys.metrics].registry
        assert registry.get_sample_value("livecommerce_chat_messages_total") == 45
        assert registry.get_sample_value("livecommerce_chat_groups_total") == writer.groups
        ids = sorted(a["data"]["id"] for a in answers)
        assert len(set(ids)) == len(answers) == 45
        await watching.wait_for(lambda: len(watching.chat_texts()) == 45)
        chat = [e for e in watching.events if e["t"] == "chat"]
        assert [e["d"]["id"] for e in chat] == ids  # in the room in the order written
        by_id = {a["data"]["id"]: a["data"]["offset"] for a in answers}
        assert [e["o"] for e in chat] == [by_id[e["d"]["id"]] for e in chat]
        await fresh(db)
        assert await db.scalar(select(func.count()).select_from(ChatMessage)) == 45
        # sent again (the answers were lost): the same answers, nothing written
        again = await burst(senders[0], 0)
        assert [a["data"] for a in again] == [a["data"] for a in answers[:5]]
        await fresh(db)
        assert await db.scalar(select(func.count()).select_from(ChatMessage)) == 45
    finally:
        for v in everyone:
            await v.sio.disconnect()


async def test_a_mute_or_the_end_of_the_show_applies_to_the_next_message(server: TestServer, world: World) -> None:
    """The rules a message is checked against are kept per process and forgotten by the commit that
    changes them: what the host does is in force for the next message already."""
    bid = world.live.id
    v, uid = await guest(server, "수다쟁이")
    host = await signed_in(server, "host")
    try:
        for s in (v, host):
            assert (await s.call("join", {"broadcast_id": bid}))["ok"]
        assert (await v.call("chat:send", {"broadcast_id": bid, "text": "안녕"}))["ok"]
        ack = await host.call("mod:mute", {"broadcast_id": bid, "user_id": uid, "minutes": 5})
        assert ack["ok"], ack
        refused = await v.call("chat:send", {"broadcast_id": bid, "text": "또 안녕"})
        assert refused["error"]["code"] == "muted"
        assert (await host.call("mod:ban", {"broadcast_id": bid, "user_id": uid}))["ok"]
        refused = await v.call("chat:send", {"broadcast_id": bid, "text": "다시 안녕"})
        assert refused["error"]["code"] == "banned"
        assert (await host.call("host:end", {"broadcast_id": bid}))["ok"]
        closed = await host.call("chat:send", {"broadcast_id": bid, "text": "끝"})
        assert closed["error"]["code"] == "chat_closed"
    finally:
        for s in (v, host):
            await s.sio.disconnect()
