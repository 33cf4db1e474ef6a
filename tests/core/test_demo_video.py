"""The demo plays video: the clip made with imageio-ffmpeg's ffmpeg, the live window computed from the
clock, and the demo's live broadcast pointing at a stream the server serves with HLS's media types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from livecommerce import demo_video
from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.db import make_engine, make_sessionmaker, utcnow
from livecommerce.demo import seed
from livecommerce.demo_video import Clip, live_playlist, read_vod

CLIP = Clip(tuple(f"seg{i:02d}.ts" for i in range(10)), (2.0,) * 10)


def segments(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def tag(playlist: str, name: str) -> int:
    return int(next(line for line in playlist.splitlines() if line.startswith(name + ":")).split(":")[1])


def test_the_live_window_slides_with_the_clock_and_loops_the_clip() -> None:
    start = live_playlist(CLIP, 0.5)
    assert segments(start) == ["seg00.ts"] and tag(start, "#EXT-X-MEDIA-SEQUENCE") == 0
    later = live_playlist(CLIP, 9.0)  # the fifth segment is playing
    assert segments(later) == ["seg00.ts", "seg01.ts", "seg02.ts", "seg03.ts", "seg04.ts"]
    assert tag(later, "#EXT-X-TARGETDURATION") == 2 and "#EXT-X-ENDLIST" not in later
    wrap = live_playlist(CLIP, 21.0)  # the second lap's first segment
    assert segments(wrap) == ["seg06.ts", "seg07.ts", "seg08.ts", "seg09.ts", "seg00.ts"]
    assert tag(wrap, "#EXT-X-MEDIA-SEQUENCE") == 6 and tag(wrap, "#EXT-X-DISCONTINUITY-SEQUENCE") == 0
    lines = wrap.splitlines()
    assert lines[lines.index("seg00.ts") - 2] == "#EXT-X-DISCONTINUITY"
    slid = live_playlist(CLIP, 29.0)  # the tag has slid out: counted in the sequence
    assert segments(slid)[0] == "seg00.ts" and tag(slid, "#EXT-X-MEDIA-SEQUENCE") == 10
    assert tag(slid, "#EXT-X-DISCONTINUITY-SEQUENCE") == 1 and "#EXT-X-DISCONTINUITY\n" not in slid
    far = live_playlist(CLIP, 1_764_580_000.0)  # since the epoch, as the server counts
    assert len(segments(far)) == 5 and tag(far, "#EXT-X-MEDIA-SEQUENCE") == 1_764_580_000 // 2 - 4


def test_a_vod_playlist_is_read_and_an_empty_one_refused() -> None:
    clip = read_vod("#EXTM3U\n#EXTINF:2.000000,\nseg00.ts\n#EXTINF:1.5,\nseg01.ts\n#EXT-X-ENDLIST\n")
    assert clip.names == ("seg00.ts", "seg01.ts") and clip.length == 3.5
    with pytest.raises(ValueError):
        read_vod("#EXTM3U\n#EXT-X-ENDLIST\n")


def test_without_ffmpeg_the_demo_has_no_video(tmp_path: Path) -> None:
    assert demo_video.make(tmp_path / "v", ffmpeg=str(tmp_path / "no-ffmpeg")) is False
    assert not (tmp_path / "v").exists() and not (tmp_path / "v.making").exists()


async def test_the_demo_live_broadcast_plays_a_stream_the_server_serves(
        tmp_path: Path, config: Config, aiohttp_client: Any) -> None:
    directory = tmp_path / "demo-video"
    assert demo_video.make(directory, seconds=4), "imageio-ffmpeg's ffmpeg made no clip"
    assert demo_video.make(directory)  # made once: kept
    engine = make_engine(config.database)
    async with make_sessionmaker(engine).begin() as db:
        result = await seed(db, config, utcnow(), stream_url=demo_video.STREAM_URL)
    await engine.dispose()
    app = create_app(config)
    demo_video.add_routes(app, directory)
    client: TestClient = await aiohttp_client(app)

    resp = await client.get(f"/api/v1/broadcasts/{result.live_broadcast_id}")
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "live" and body["stream_url"] == "/demo/stream/live.m3u8"
    resp = await client.get(body["stream_url"])
    assert resp.status == 200 and resp.content_type == "application/vnd.apple.mpegurl"
    playlist = await resp.text()
    assert playlist.startswith("#EXTM3U") and segments(playlist)
    for name in segments(playlist):
        seg = await client.get(f"/demo/stream/{name}")
        assert seg.status == 200 and seg.content_type == "video/mp2t"
        data = await seg.read()
        assert len(data) > 1000 and data[0] == 0x47 and data[188] == 0x47  # MPEG-TS packets
    for wrong in ("index.m3u8x", "..%2Fsecret", "seg1.ts", "seg99.ts"):
        assert (await client.get(f"/demo/stream/{wrong}")).status == 404
    page = await client.get(f"/live/{result.live_broadcast_id}")
    assert "hls.light.min.js" in await page.text()  # the page loads its player
    # last week's show replays the whole clip
    assert result.past_broadcast_id is not None
    past = await (await client.get(f"/api/v1/broadcasts/{result.past_broadcast_id}")).json()
    assert past["state"] == "ended" and past["recording_url"] == "/demo/stream/index.m3u8", past
    resp = await client.get(past["recording_url"])
    assert resp.status == 200 and resp.content_type == "application/vnd.apple.mpegurl"
    recording = await resp.text()
    assert "#EXT-X-ENDLIST" in recording and segments(recording) == ["seg00.ts", "seg01.ts"]  # 4 s, 2 s each
