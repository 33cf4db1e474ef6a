"""After the show: staff set its recording (over the API or in the broadcast's page, http(s) only), and its
page plays it with the chat replayed in time and the line-up on sale at the regular price; without a
recording, the page says plainly that the show is over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from sessions.models import Broadcast, BroadcastState, ChatMessage
from sessions.replay import replay_lines
from tests.support import World, fresh, sign_in

RECORDING = "https://cdn.example/replays/42.m3u8"


async def _end(db: AsyncSession, world: World, recording_url: str = "") -> None:
    await db.execute(update(Broadcast).where(Broadcast.id == world.live.id).values(
        state=BroadcastState.ENDED, ended_at=world.live.starts_at + timedelta(minutes=60), recording_url=recording_url,
        stream_url="https://cdn.example/live/42.m3u8"))
    await db.commit()


def test_the_chat_is_replayed_at_its_second_of_the_show_without_removed_messages() -> None:
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

    def msg(i: int, seconds: float, deleted: bool = False) -> ChatMessage:
        return ChatMessage(id=i, author_name=f"n{i}", author_role="viewer", text=f"t{i}",
                           created_at=start + timedelta(seconds=seconds),
                           deleted_at=start + timedelta(seconds=seconds + 1) if deleted else None)

    lines = replay_lines([msg(3, 75.25), msg(1, -30), msg(2, 12.5, deleted=True), msg(4, 75.25)], start)
    assert [(x.id, x.offset) for x in lines] == [(1, 0.0), (3, 75.2), (4, 75.2)]


async def test_staff_set_a_recording_after_the_show_and_a_bad_one_is_refused(
        client: TestClient, world: World, db: AsyncSession) -> None:
    await _end(db, world)
    token = await sign_in(client, "staff")
    url = f"/api/v1/broadcasts/{world.live.id}"
    for bad in ("ftp://cdn.example/42.mp4", "javascript:alert(1)", "cdn.example/42.m3u8", "https://"):
        resp = await client.patch(url, json={"recording_url": bad}, headers={"X-CSRF-Token": token})
        assert resp.status == 422, bad
        details = (await resp.json())["error"]["details"]
        assert details == [{"field": "recording_url",
                            "problem": "must be a web address starting with http:// or https://"}]
    resp = await client.patch(url, json={"title_ko": "바꾼 제목"}, headers={"X-CSRF-Token": token})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "broadcast_closed"
    resp = await client.patch(url, json={"recording_url": RECORDING}, headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["recording_url"] == RECORDING

    # the same in the broadcast's staff page
    await client.get(f"/staff/broadcasts/{world.live.id}?lang=en")  # the language is remembered
    form = {"csrf_token": token, "recording_url": "ftp://cdn.example/42.mp4"}
    resp = await client.post(f"/staff/broadcasts/{world.live.id}/recording", data=form, allow_redirects=False)
    assert resp.status == 422
    html = await resp.text()
    assert "Recording URL must be a web address starting with http:// or https://." in html
    assert 'value="ftp://cdn.example/42.mp4"' in html
    form["recording_url"] = "https://cdn.example/replays/43.mp4"
    resp = await client.post(f"/staff/broadcasts/{world.live.id}/recording", data=form, allow_redirects=False)
    assert resp.status == 303
    b = await (await fresh(db)).get(Broadcast, world.live.id)
    assert b is not None and b.recording_url == "https://cdn.example/replays/43.mp4"
    html = await (await client.get(f"/staff/broadcasts/{world.live.id}")).text()
    assert f'href="/staff/broadcasts/{world.live.id}/report"' in html


async def test_only_staff_set_a_recording(client: TestClient, world: World) -> None:
    token = await sign_in(client, "host")
    resp = await client.patch(f"/api/v1/broadcasts/{world.live.id}", json={"recording_url": RECORDING},
                              headers={"X-CSRF-Token": token})
    assert resp.status == 403


async def test_the_ended_page_plays_the_recording_with_the_chat_and_sells_at_the_regular_price(
        client: TestClient, world: World, db: AsyncSession) -> None:
    await _end(db, world, RECORDING)
    start = world.live.started_at
    assert start is not None
    db.add_all([ChatMessage(broadcast_id=world.live.id, user_id=world.viewer.id, author_name="시청자",
                            author_role="viewer", text=text, created_at=start + timedelta(seconds=sec),
                            deleted_at=start + timedelta(seconds=sec + 5) if text == "지워짐" else None)
                for text, sec in (("안녕하세요", 30), ("지워짐", 40), ("만두 맛있어요", 95))])
    await db.commit()
    html = await (await client.get(f"/live/{world.live.id}?lang=en")).text()
    assert f'data-src="{RECORDING}"' in html and 'id="replay-video"' in html and "js/replay.js" in html
    assert "https://cdn.example/live/42.m3u8" not in html.split('id="broadcast-data"')[0]  # not the dead live stream
    assert "Chat replay" in html and "regular price" in html
    assert "₩12,900" in html and "₩9,900" not in html  # the regular price, never the live one
    assert 'data-after-show' in html and "Buy at the regular price" in html
    assert "Join with a nickname to chat and buy" not in html and "The stream will appear here" not in html
    replay = await (await client.get(f"/api/v1/broadcasts/{world.live.id}/replay")).json()
    assert replay["recording_url"] == RECORDING
    assert [(m["text"], m["offset"]) for m in replay["messages"]] == [("안녕하세요", 30.0), ("만두 맛있어요", 95.0)]


async def test_an_ended_page_without_a_recording_says_so(client: TestClient, world: World, db: AsyncSession) -> None:
    await _end(db, world)
    html = await (await client.get(f"/live/{world.live.id}?lang=en")).text()
    assert "There is no recording of this show to watch again." in html
    assert "This broadcast has ended." in html
    assert "<video" not in html and "hls.light.min.js" not in html
    assert "Join with a nickname to chat and buy" not in html and "The stream will appear here" not in html
    assert "data-buy=" not in html  # nothing on sale
    resp = await client.get(f"/api/v1/broadcasts/{world.live.id}/replay")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_replay"
