"""The live room with real socket.io clients: chat, moderation, hearts, presence, and nothing lost on
reconnect — on one process, and across two processes through Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.db import utcnow
from livecommerce.keys import AppKeys
from sessions.chat import Bucket, ChatRefused, blocked_word, clean_text, take
from sessions.events import SNAPSHOTS
from sessions.models import BlockedWord, Broadcast, ChatMessage
from sessions.room import ROOMS
from sessions.stream import decide
from tests.support import NS, World, browser_session, csrf, fresh, guest, sign_in, signed_in, viewer

# -- pure rules ---------------------------------------------------------------------------------

def test_chat_text_rules() -> None:
    assert clean_text("  안녕하세요\n  만두 주세요 ", 300) == "안녕하세요 만두 주세요"
    assert clean_text("<b>bold</b>", 300) == "<b>bold</b>"  # kept as text; shown escaped
    assert clean_text("가" * 300, 300) == "가" * 300
    for bad, code in (("", "empty_message"), ("   ", "empty_message"), ("가" * 301, "message_too_long"),
                      ("a\x00b", "bad_characters"), ("a\u202eb", "bad_characters")):
        with pytest.raises(ChatRefused) as info:
            clean_text(bad, 300)
        assert info.value.code == code


def test_blocked_words_ignore_case_width_and_spaces() -> None:
    words = ["바보", "SPAM"]
    assert blocked_word("너 바 보 야", words) == "바보"
    assert blocked_word("buy ｓｐａｍ now", words) == "SPAM"
    assert blocked_word("참기름 최고", words) is None


def test_token_bucket() -> None:
    ok, b = take(None, 0.0, rate=1.0, burst=2)
    assert ok and b.tokens == 1.0
    ok, b = take(b, 0.0, 1.0, 2)
    assert ok and b.tokens == 0.0
    ok, b = take(b, 0.5, 1.0, 2)
    assert not ok
    ok, b = take(b, 1.0, 1.0, 2)
    assert ok
    ok, _ = take(Bucket(0.0, 0.0), 100.0, 1.0, 2)  # refills up to the burst only
    assert ok


def test_recovery_decisions() -> None:
    assert decide("e1", 10, "e1", 10, None, None, 0, 100, 60) == ""  # up to date
    assert decide("e1", 10, "e1", 7, 8, 0.0, 1.0, 100, 60) == ""
    assert decide("e2", 10, "e1", 7, 8, 0.0, 1.0, 100, 60) == "epoch"  # storage was lost
    assert decide("e1", 10, "e1", 11, None, None, 0, 100, 60) == "ahead"  # never given out
    assert decide("e1", 10, "e1", 7, 9, 0.0, 1.0, 100, 60) == "too_old"  # trimmed away
    assert decide("e1", 10, "e1", 7, 8, 0.0, 100.0, 100, 60) == "too_old"  # older than allowed
    assert decide("e1", 500, "e1", 7, 8, 0.0, 1.0, 100, 60) == "too_long"


# -- the room -----------------------------------------------------------------------------------

async def test_viewers_and_host_chat_in_real_time(server: TestServer, world: World, db: AsyncSession) -> None:
    a, a_id = await guest(server, "만두러버")
    b, _ = await guest(server, "참기름")
    host = await signed_in(server, "host")
    try:
        for v in (a, b, host):
            ack = await v.call("join", {"broadcast_id": world.live.id})
            assert ack["ok"] and ack["data"]["recovered"] is False
        ack = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "<script>만두 남았나요?</script>"})
        assert ack["ok"], ack
        ack = await host.call("chat:send", {"broadcast_id": world.live.id, "text": "네! 30팩 남았어요"})
        assert ack["ok"], ack
        for v in (a, b, host):
            await v.wait_for(lambda v=v: len(v.chat_texts()) >= 2)
            assert v.chat_texts() == ["<script>만두 남았나요?</script>", "네! 30팩 남았어요"]
        roles = [e["d"]["role"] for e in b.events if e["t"] == "chat"]
        assert roles == ["viewer", "host"]  # host messages are marked
        offsets = [e["o"] for e in b.events]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        rows = (await (await fresh(db)).scalars(select(ChatMessage).order_by(ChatMessage.id))).all()
        assert [(r.user_id, r.text) for r in rows] == [(a_id, "<script>만두 남았나요?</script>"),
                                                        (world.host.id, "네! 30팩 남았어요")]
    finally:
        for v in (a, b, host):
            await v.sio.disconnect()


async def test_bad_chat_input_is_refused_and_others_see_nothing(server: TestServer, world: World,
                                                               db: AsyncSession) -> None:
    a, _ = await guest(server, "a")
    watcher, _ = await guest(server, "w")
    anon = await viewer(server)
    try:
        await a.call("join", {"broadcast_id": world.live.id})
        await watcher.call("join", {"broadcast_id": world.live.id})
        await anon.call("join", {"broadcast_id": world.live.id})
        cases = [
            ({"broadcast_id": world.live.id, "text": ""}, "empty_message"),
            ({"broadcast_id": world.live.id, "text": "가" * 301}, "message_too_long"),
            ({"broadcast_id": world.live.id}, "validation_failed"),
            ({"broadcast_id": world.scheduled.id, "text": "hi"}, "not_in_room"),
        ]
        for data, code in cases:
            ack = await a.call("chat:send", data)
            assert ack["ok"] is False and ack["error"]["code"] == code, (data, ack)
            assert ack["error"]["message"]
        ack = await anon.call("chat:send", {"broadcast_id": world.live.id, "text": "hi"})
        assert ack["error"]["code"] == "unauthenticated"
        db.add(BlockedWord(word="바보"))
        await db.commit()
        ack = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "바 보"})
        assert ack["error"]["code"] == "blocked_word"
        for name in ("host:notice", "mod:delete", "mod:ban", "host:spotlight", "host:slow_mode"):
            ack = await a.call(name, {"broadcast_id": world.live.id, "message_id": 1, "user_id": 1, "seconds": 5})
            assert ack["ok"] is False and ack["error"]["code"] == "forbidden", name
        await asyncio.sleep(0.2)
        assert watcher.events == []  # nothing reached the others
        assert await (await fresh(db)).scalar(select(ChatMessage.id)) is None
    finally:
        for v in (a, watcher, anon):
            await v.sio.disconnect()


async def test_a_flood_is_rate_limited(server: TestServer, world: World, config: Config) -> None:
    a, _ = await guest(server, "flood")
    try:
        await a.call("join", {"broadcast_id": world.live.id})
        acks = [await a.call("chat:send", {"broadcast_id": world.live.id, "text": f"{i}"}) for i in range(12)]
        accepted = [x for x in acks if x["ok"]]
        refused = [x for x in acks if not x["ok"]]
        # the burst passes (plus at most what refills while the loop runs), the rest is refused
        assert config.room.chat_burst <= len(accepted) < 12
        assert refused and {x["error"]["code"] for x in refused} == {"rate_limited"}
    finally:
        await a.sio.disconnect()


async def test_moderation(server: TestServer, world: World, db: AsyncSession) -> None:
    a, a_id = await guest(server, "a")
    b, _ = await guest(server, "b")
    host = await signed_in(server, "host")
    try:
        for v in (a, b, host):
            await v.call("join", {"broadcast_id": world.live.id})
        await host.call("host:watch", {"broadcast_id": world.live.id})
        sent = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "광고입니다"})
        mid = sent["data"]["id"]
        # a viewer reports it; the console hears it once
        assert (await b.call("chat:report", {"broadcast_id": world.live.id, "message_id": mid}))["ok"]
        assert (await b.call("chat:report", {"broadcast_id": world.live.id, "message_id": mid}))["ok"]
        own = await a.call("chat:report", {"broadcast_id": world.live.id, "message_id": mid})
        assert own["error"]["code"] == "own_message"
        await host.wait_for(lambda: "mod:reported" in host.other)
        # the host deletes it: it disappears for everyone, live
        ack = await host.call("mod:delete", {"broadcast_id": world.live.id, "message_id": mid, "reason": "광고"})
        assert ack["ok"], ack
        for v in (a, b):
            await v.wait_for(lambda v=v: any(e["t"] == "chat:deleted" for e in v.events))
            assert [e["d"]["id"] for e in v.events if e["t"] == "chat:deleted"] == [mid]
        assert len(host.other["mod:reported"]) == 1
        m = await (await fresh(db)).get(ChatMessage, mid)
        assert m is not None and m.deleted_by == world.host.id and m.delete_reason == "광고"
        # mute: the viewer is told and cannot write
        ack = await host.call("mod:mute", {"broadcast_id": world.live.id, "user_id": a_id, "minutes": 10})
        assert ack["ok"], ack
        await a.wait_for(lambda: "you:muted" in a.other)
        ack = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "왜요"})
        assert ack["error"]["code"] == "muted"
        # ban: cannot write, cannot join again
        ack = await host.call("mod:ban", {"broadcast_id": world.live.id, "user_id": a_id})
        assert ack["ok"]
        ack = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "왜요"})
        assert ack["error"]["code"] == "banned"
        ack = await a.call("join", {"broadcast_id": world.live.id})
        assert ack["error"]["code"] == "banned"
        # hosts cannot be sanctioned; a host of another broadcast cannot moderate this one
        ack = await host.call("mod:mute", {"broadcast_id": world.live.id, "user_id": world.host.id})
        assert ack["error"]["code"] == "cannot_sanction"
        # the history a newcomer gets has no removed message
        c = await viewer(server)
        ack = await c.call("join", {"broadcast_id": world.live.id})
        assert [m["id"] for m in ack["data"]["chat"]] == []
        await c.sio.disconnect()
    finally:
        for v in (a, b, host):
            await v.sio.disconnect()


async def test_notice_slow_mode_and_spotlight(server: TestServer, world: World) -> None:
    a, _ = await guest(server, "a")
    host = await signed_in(server, "host")
    other = await signed_in(server, "host2")
    try:
        for v in (a, host):
            await v.call("join", {"broadcast_id": world.live.id})
        ack = await other.call("host:notice", {"broadcast_id": world.live.id, "text": "남의 방송"})
        assert ack["error"]["code"] == "not_your_broadcast"
        assert (await host.call("host:notice", {"broadcast_id": world.live.id, "text": "오늘 무료배송!"}))["ok"]
        ack = await host.call("host:spotlight", {"broadcast_id": world.live.id, "product_id": world.products[2].id})
        assert ack["error"]["code"] == "not_in_lineup"
        ack = await host.call("host:spotlight", {"broadcast_id": world.live.id, "product_id": world.products[1].id})
        assert ack["ok"] and ack["data"]["item"]["live_price"] == 13900
        assert (await host.call("host:slow_mode", {"broadcast_id": world.live.id, "seconds": 30}))["ok"]
        await a.wait_for(lambda: [e["t"] for e in a.events] == ["notice", "spotlight", "slow_mode"])
        assert (await a.call("chat:send", {"broadcast_id": world.live.id, "text": "1"}))["ok"]
        ack = await a.call("chat:send", {"broadcast_id": world.live.id, "text": "2"})
        assert ack["error"]["code"] == "slow_mode"
        assert (await host.call("chat:send", {"broadcast_id": world.live.id, "text": "호스트는 예외"}))["ok"]
        late = await viewer(server)
        snap = (await late.call("join", {"broadcast_id": world.live.id}))["data"]["broadcast"]
        assert snap["pinned_notice"] == "오늘 무료배송!" and snap["slow_mode_seconds"] == 30
        assert snap["spotlight"]["product"]["id"] == world.products[1].id
        await late.sio.disconnect()
    finally:
        for v in (a, host, other):
            await v.sio.disconnect()


async def test_a_viewer_who_reconnects_gets_exactly_what_it_missed(server: TestServer, world: World) -> None:
    talker = await signed_in(server, "host")
    a = await viewer(server)
    try:
        await talker.call("join", {"broadcast_id": world.live.id})
        joined = (await a.call("join", {"broadcast_id": world.live.id}))["data"]
        await talker.call("chat:send", {"broadcast_id": world.live.id, "text": "before"})
        await a.wait_for(lambda: a.chat_texts() == ["before"])
        last = a.events[-1]
        assert last["e"] == joined["position"]["epoch"] and last["o"] == joined["position"]["offset"] + 1
        await a.sio.disconnect()  # the connection drops
        for text in ("missed 1", "missed 2", "missed 3"):
            await talker.call("chat:send", {"broadcast_id": world.live.id, "text": text})
        b = await viewer(server)
        ack = await b.call("join", {"broadcast_id": world.live.id, "since": {"epoch": last["e"], "offset": last["o"]}})
        data = ack["data"]
        assert data["recovered"] is True
        assert [e["d"]["text"] for e in data["events"]] == ["missed 1", "missed 2", "missed 3"]
        assert [e["o"] for e in data["events"]] == [last["o"] + 1, last["o"] + 2, last["o"] + 3]
        assert "chat" not in data
        await talker.call("chat:send", {"broadcast_id": world.live.id, "text": "after"})
        await b.wait_for(lambda: b.chat_texts() == ["after"])  # live again, nothing twice
        # a stale epoch gets the full state, said so
        c = await viewer(server)
        data = (await c.call("join", {"broadcast_id": world.live.id,
                                      "since": {"epoch": "gone", "offset": 3}}))["data"]
        assert data["recovered"] is False and data["reason"] == "epoch"
        assert [m["text"] for m in data["chat"]] == ["before", "missed 1", "missed 2", "missed 3", "after"]
        # a forged position is refused
        ack = await c.call("join", {"broadcast_id": world.live.id,
                                    "since": {"epoch": last["e"], "offset": last["o"] + 1000}})
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_position"
        await b.sio.disconnect()
        await c.sio.disconnect()
    finally:
        await talker.sio.disconnect()


async def test_a_gap_too_long_gets_the_full_state(config: Config, world: World) -> None:
    app = create_app(config.replace(room={"recover_max": 2}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        talker = await signed_in(server, "host")
        await talker.call("join", {"broadcast_id": world.live.id})
        a = await viewer(server)
        pos = (await a.call("join", {"broadcast_id": world.live.id}))["data"]["position"]
        await a.sio.disconnect()
        for i in range(3):
            await talker.call("chat:send", {"broadcast_id": world.live.id, "text": f"m{i}"})
        b = await viewer(server)
        ack = await b.call("join", {"broadcast_id": world.live.id, "since": pos})
        data = ack["data"]
        assert data["recovered"] is False and data["reason"] == "too_long"
        assert [m["text"] for m in data["chat"]] == ["m0", "m1", "m2"]
        await b.sio.disconnect()
        await talker.sio.disconnect()
    finally:
        await server.close()


async def test_hearts_are_counted_and_pushed_coalesced(server: TestServer, world: World,
                                                        db: AsyncSession) -> None:
    a = await viewer(server)
    b = await viewer(server)
    try:
        await a.call("join", {"broadcast_id": world.live.id})
        await b.call("join", {"broadcast_id": world.live.id})
        for _ in range(40):
            assert (await a.call("heart", {"broadcast_id": world.live.id, "count": 5}))["ok"]
        await b.wait_for(lambda: any(c["hearts"] == 200 for c in b.other.get("counts", [])))
        assert len(b.other["counts"]) < 40  # a few pushes, never one per tap
        assert b.other["counts"][-1]["viewers"] == 2
        ack = await a.call("heart", {"broadcast_id": world.live.id, "count": 51})
        assert ack["error"]["code"] == "validation_failed"
        for bad in ({"broadcast_id": world.live.id, "count": True}, {"broadcast_id": world.live.id, "count": 2.0},
                    {"broadcast_id": world.live.id, "extra": 1}, [world.live.id]):
            ack = await a.call("heart", bad)  # the quick path lets these go the usual way, to be refused
            assert ack["error"]["code"] == "validation_failed", (bad, ack)
        ack = await a.call("heart", {"broadcast_id": world.scheduled.id})
        assert ack["error"]["code"] == "not_in_room"
        events = server.app[AppKeys.metrics].registry.get_sample_value(
            "livecommerce_socket_events_total", {"event": "heart", "outcome": "ok"})
        assert events == 40  # counted, though not logged one by one
        for _ in range(10):  # as the page sends them: no acknowledgement asked, taken as they arrive
            await a.sio.emit("heart", {"broadcast_id": world.live.id, "count": 2}, namespace=NS)
        await b.wait_for(lambda: any(c["hearts"] == 220 for c in b.other.get("counts", [])))
        assert server.app[AppKeys.metrics].registry.get_sample_value(
            "livecommerce_socket_events_total", {"event": "heart", "outcome": "ok"}) == 50

        async def saved() -> None:
            while True:
                row = await (await fresh(db)).get(Broadcast, world.live.id)
                if row is not None and row.peak_viewers >= 2 and row.hearts >= 200:
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(saved(), 5)  # the peak and the hearts are recorded on the broadcast
    finally:
        await a.sio.disconnect()
        await b.sio.disconnect()


async def test_taps_reach_redis_once_per_interval_not_once_per_tap(config: Config, world: World) -> None:
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rt = app[ROOMS]
    assert rt._task is not None
    rt._task.cancel()  # the figures' interval is driven by hand below
    bid = world.live.id
    a = await viewer(server)
    try:
        await a.call("join", {"broadcast_id": bid})
        key = f"{config.redis.prefix}room:{bid}:hearts"
        before = await rt.redis.get(key) if rt.redis is not None else None
        for _ in range(30):
            assert (await a.call("heart", {"broadcast_id": bid, "count": 3}))["ok"]
        if rt.redis is None:  # one process: counted in memory
            assert (await rt.counts(bid))["hearts"] == 90
            return
        assert before in (None, "0") and await rt.redis.get(key) == before  # thirty taps, no round trip
        assert rt._hearts_pending == {bid: 90}
        await rt.tick()  # one interval: one round trip carries them all
        assert int(await rt.redis.get(key)) == 90 and not rt._hearts_pending
        await a.wait_for(lambda: any(c["hearts"] == 90 for c in a.other.get("counts", [])))
    finally:
        await a.sio.disconnect()
        await server.close()


async def test_viewers_joining_at_once_share_one_read_and_see_every_change(server: TestServer, world: World) -> None:
    """What every joining viewer gets alike (the broadcast, its line-up, the chat history) is read once for
    viewers who join together, and a change is in the very next join."""
    bid = world.live.id
    host = await signed_in(server, "host")
    crowd = [await viewer(server) for _ in range(12)]
    try:
        assert (await host.call("join", {"broadcast_id": bid}))["ok"]
        snapshots = server.app[SNAPSHOTS]
        snapshots.ttl = 3600  # forgotten by commits, not by time, here: a slow machine would reach the limit
        before = snapshots.reads
        acks = await asyncio.gather(*(v.call("join", {"broadcast_id": bid}) for v in crowd))
        assert all(a["ok"] for a in acks)
        assert snapshots.reads - before <= 1
        assert len({json.dumps(a["data"]["broadcast"], sort_keys=True) for a in acks}) == 1
        assert (await host.call("host:notice", {"broadcast_id": bid, "text": "오늘만 만두 반값"}))["ok"]
        said = await host.call("chat:send", {"broadcast_id": bid, "text": "어서 오세요"})
        assert said["ok"]
        late = await viewer(server)
        crowd.append(late)
        ack = await late.call("join", {"broadcast_id": bid})
        assert ack["data"]["broadcast"]["pinned_notice"] == "오늘만 만두 반값"
        assert ack["data"]["chat"][-1]["id"] == said["data"]["id"]
    finally:
        for v in (host, *crowd):
            await v.sio.disconnect()


async def test_a_move_made_while_a_viewer_joins_is_in_its_answer(server: TestServer, world: World,
                                                                  config: Config) -> None:
    """The lobby opens between the join's first read and the viewer entering the room: the event went to the
    room before the viewer was in it, so the join's answer must hold the new state."""
    from sessions import services
    from sessions.models import BroadcastState
    from sessions.room import push_transition, room_hooks

    bid = world.scheduled.id
    moved: list[bool] = []

    async def lobby_opens_meanwhile(app: Any, broadcast_id: int, who: Any) -> dict[str, Any]:
        if broadcast_id == bid and not moved:
            moved.append(True)
            now = utcnow()
            async with app[AppKeys.db].begin() as db:
                assert await services.move(db, bid, BroadcastState.LOBBY, now)
            await push_transition(app, bid, BroadcastState.LOBBY, now)
        return {}

    room_hooks(server.app).snapshot_parts.append(lobby_opens_meanwhile)
    v = await viewer(server)
    try:
        ack = await v.call("join", {"broadcast_id": bid})
        assert ack["ok"] and moved
        assert ack["data"]["broadcast"]["state"] == "lobby"
    finally:
        await v.sio.disconnect()


async def test_chat_is_batched_under_load(config: Config, world: World) -> None:
    app = create_app(config.replace(room={"batch_ms": 200, "chat_burst": 50}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        talker = await signed_in(server, "host")
        listener = await viewer(server)
        await talker.call("join", {"broadcast_id": world.live.id})
        await listener.call("join", {"broadcast_id": world.live.id})
        await asyncio.gather(*(talker.call("chat:send", {"broadcast_id": world.live.id, "text": f"{i:02d}"})
                               for i in range(20)))
        await listener.wait_for(lambda: len(listener.chat_texts()) == 20)
        assert sorted(listener.chat_texts()) == [f"{i:02d}" for i in range(20)]
        offsets = [e["o"] for e in listener.events]
        assert offsets == sorted(offsets) and len(set(offsets)) == 20  # in order, nothing twice
        assert listener.frames < 20  # several messages shared a frame
        await talker.sio.disconnect()
        await listener.sio.disconnect()
    finally:
        await server.close()


async def test_two_processes_one_room(config: Config, world: World, db: AsyncSession) -> None:
    """Two viewers on two server processes chat with each other and with the host; a moderated message
    disappears for both; the viewer count spans both; a viewer who drops from one process recovers
    on the other."""
    if not config.redis.url:
        pytest.skip("needs Redis: runs on the PostgreSQL + Redis backend")
    servers = [TestServer(create_app(config), host="127.0.0.1") for _ in range(2)]
    for s in servers:
        await s.start_server()
    try:
        a, _ = await guest(servers[0], "on-one")
        b, _ = await guest(servers[1], "on-two")
        host = await signed_in(servers[0], "host")
        for v in (a, b, host):
            assert (await v.call("join", {"broadcast_id": world.live.id}))["ok"]
        await asyncio.sleep(0.3)  # each process's Redis listener is subscribed
        await a.call("chat:send", {"broadcast_id": world.live.id, "text": "1번 서버에서"})
        sent = await b.call("chat:send", {"broadcast_id": world.live.id, "text": "2번 서버에서"})
        for v in (a, b, host):
            await v.wait_for(lambda v=v: len(v.chat_texts()) == 2)
            assert sorted(v.chat_texts()) == ["1번 서버에서", "2번 서버에서"]
        await host.call("mod:delete", {"broadcast_id": world.live.id, "message_id": sent["data"]["id"]})
        for v in (a, b):
            await v.wait_for(lambda v=v: any(e["t"] == "chat:deleted" for e in v.events))
        await b.wait_for(lambda: any(c["viewers"] == 3 for c in b.other.get("counts", [])))
        last = a.events[-1]
        await a.sio.disconnect()
        await b.call("chat:send", {"broadcast_id": world.live.id, "text": "놓친 메시지"})
        back = await viewer(servers[1])
        data = (await back.call("join", {"broadcast_id": world.live.id,
                                         "since": {"epoch": last["e"], "offset": last["o"]}}))["data"]
        assert data["recovered"] is True
        assert [e["d"]["text"] for e in data["events"] if e["t"] == "chat"] == ["놓친 메시지"]
        for v in (b, host, back):
            await v.sio.disconnect()
    finally:
        for s in servers:
            await s.close()


async def test_staff_keep_the_blocked_word_list(client: Any, world: World, db: AsyncSession) -> None:
    token = await sign_in(client, "staff")
    resp = await client.put("/api/v1/chat/blocked-words", json={"words": ["바보", " 바보 ", "spam"]},
                            headers={"X-CSRF-Token": token})
    assert resp.status == 200
    assert (await resp.json())["words"] == ["spam", "바보"]
    resp = await client.post("/staff/chat", data={"words": "광고\n바보", "csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    words = (await (await fresh(db)).scalars(select(BlockedWord.word).order_by(BlockedWord.word))).all()
    assert list(words) == ["광고", "바보"]
    assert "광고" in await (await client.get("/staff/chat")).text()
    viewer_token = await sign_in(client, "viewer")
    resp = await client.put("/api/v1/chat/blocked-words", json={"words": []}, headers={"X-CSRF-Token": viewer_token})
    assert resp.status == 403


async def test_purchases_appear_in_the_room(server: TestServer, world: World) -> None:
    """A purchase during the stream: the room's feed shows it with a masked name, viewers get the stock
    left (coalesced), the console gets the figures."""
    watcher = await viewer(server)
    host = await signed_in(server, "host")
    stock_events: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []

    async def on_stock(data: dict[str, Any]) -> None:
        stock_events.append(data)
        watcher.arrived.set()

    async def on_figures(data: dict[str, Any]) -> None:
        figures.append(data)
        host.arrived.set()

    watcher.sio.on("stock", on_stock, namespace=NS)
    host.sio.on("figures", on_figures, namespace=NS)
    try:
        await watcher.call("join", {"broadcast_id": world.live.id})
        await host.call("join", {"broadcast_id": world.live.id})
        await host.call("host:watch", {"broadcast_id": world.live.id})
        async with browser_session(server) as http:
            token = await csrf(http)  # type: ignore[arg-type]
            resp = await http.post("/api/v1/auth/guest", json={"nickname": "김민지"}, headers={"X-CSRF-Token": token})
            token = (await resp.json())["csrf_token"]
            resp = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", headers={
                "X-CSRF-Token": token, "Idempotency-Key": "room-feed-1"}, json={
                "lines": [{"product_id": world.products[0].id, "quantity": 2}], "name": "김민지",
                "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
                "payment_method": "cod"})
            assert resp.status == 201, await resp.text()
        await watcher.wait_for(lambda: any(e["t"] == "purchase" for e in watcher.events))
        feed = next(e["d"] for e in watcher.events if e["t"] == "purchase")
        assert feed["buyer"] == "김**"
        assert feed["lines"] == [{"product_id": world.products[0].id, "quantity": 2, "name_ko": "고기만두",
                                  "name_en": "Pork dumplings"}]
        await watcher.wait_for(lambda: bool(stock_events))
        assert stock_events[-1]["left"][str(world.products[0].id)] == 28  # 30 set aside, 2 sold
        await host.wait_for(lambda: bool(figures))
        assert figures[-1]["orders"] == 1 and figures[-1]["units"] == 2
    finally:
        await watcher.sio.disconnect()
        await host.sio.disconnect()
