"""The demo's video: a test pattern with a tone, made at demo time by the ffmpeg that the PyPI package
`imageio-ffmpeg` carries (the `demo` extra), and played as a live HLS stream that never ends.

`make` encodes 20 seconds once into a directory (2-second MPEG-TS segments and their playlist). The server
then answers `/demo/stream/live.m3u8` with a sliding window over those segments, computed from the clock
alone (`live_playlist`): the clip runs round and round, a discontinuity marking each new lap, every process
answers the same, and a player sees a live stream as it would from a real encoder.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .auth import PUBLIC, access
from .errors import NotFound

log = logging.getLogger("livecommerce.demo")

VOD = "index.m3u8"
LIVE = "live.m3u8"
STREAM_PREFIX = "/demo/stream/"
STREAM_URL = STREAM_PREFIX + LIVE
SEGMENT = re.compile(r"seg\d{2,4}\.ts")
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"


def ffmpeg_command(ffmpeg: str, out: Path, seconds: int = 20, segment: int = 2) -> list[str]:
    """A 640×360 test pattern with a beeping 440 Hz tone, H.264 + AAC, cut every `segment` seconds (a key
    frame at each cut, so that each segment plays on its own)."""
    fps = 25
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={fps}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p", "-crf", "30",
        "-g", str(fps * segment), "-keyint_min", str(fps * segment), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-shortest",
        "-f", "hls", "-hls_time", str(segment), "-hls_list_size", "0", "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(out / "seg%02d.ts"), str(out / VOD),
    ]


def find_ffmpeg() -> str | None:
    """The ffmpeg of `imageio-ffmpeg` (installed with the `demo` extra), or None."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


def make(directory: Path, ffmpeg: str | None = None, seconds: int = 20) -> bool:
    """Encode the clip into `directory` unless it is there already; False (and a log line saying why) when
    it cannot be made. The clip appears whole or not at all: it is encoded aside, then moved into place."""
    if (directory / VOD).is_file():
        return True
    ffmpeg = ffmpeg or find_ffmpeg()
    if ffmpeg is None:
        log.warning("no video in the demo: install the demo extra (pip install -e '.[demo]') for its ffmpeg")
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    aside = directory.with_name(directory.name + ".making")
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    try:
        subprocess.run(ffmpeg_command(ffmpeg, aside, seconds), check=True, timeout=300, capture_output=True)
        if directory.exists():
            shutil.rmtree(directory)
        aside.rename(directory)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no video in the demo: ffmpeg failed (%s)", exc)
        shutil.rmtree(aside, ignore_errors=True)
        return False
    return True


@dataclass(frozen=True)
class Clip:
    """The segments of the encoded clip, in order, with their durations in seconds."""

    names: tuple[str, ...]
    durations: tuple[float, ...]

    @property
    def length(self) -> float:
        return sum(self.durations)


def read_vod(text: str) -> Clip:
    """The segments listed by a VOD playlist (`#EXTINF:<seconds>,` then the segment's name)."""
    names: list[str] = []
    durations: list[float] = []
    pending: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            pending = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line and not line.startswith("#") and pending is not None:
            names.append(line)
            durations.append(pending)
            pending = None
    if not names or any(d <= 0 for d in durations):
        raise ValueError("a playlist with no segments")
    return Clip(tuple(names), tuple(durations))


def live_playlist(clip: Clip, elapsed: float, window: int = 5) -> str:
    """The live playlist `elapsed` seconds after the stream began: the segment playing now and up to
    `window - 1` before it. Segment k of the endless stream is clip segment k mod n; each lap starts with a
    discontinuity (the clip's timestamps begin again), counted by EXT-X-DISCONTINUITY-SEQUENCE once the
    tag has slid out of the window."""
    n = len(clip.names)
    laps, into = divmod(max(0.0, elapsed), clip.length)
    index = 0
    while index < n - 1 and into >= clip.durations[index]:
        into -= clip.durations[index]
        index += 1
    now = int(laps) * n + index
    first = max(0, now - window + 1)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(max(clip.durations))}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{first // n}"]
    for k in range(first, now + 1):
        if k % n == 0 and k != first:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{clip.durations[k % n]:.3f},")
        lines.append(clip.names[k % n])
    return "\n".join(lines) + "\n"


DEMO_VIDEO = web.AppKey("demo_video", Path)


@access(PUBLIC)
async def stream(request: web.Request) -> web.StreamResponse:
    """`live.m3u8` (the window as of now), `index.m3u8` (the whole clip, for a replay) and the clip's segments,
    with their media types."""
    directory = request.app[DEMO_VIDEO]
    name = request.match_info["name"]
    if name == LIVE:
        clip = read_vod((directory / VOD).read_text(encoding="utf-8"))
        return web.Response(text=live_playlist(clip, time.time()), content_type=PLAYLIST_TYPE,
                            headers={"Cache-Control": "no-cache"})
    if name == VOD:  # the whole clip, as a recording (the demo's past show replays it)
        return web.Response(text=(directory / VOD).read_text(encoding="utf-8"), content_type=PLAYLIST_TYPE)
    if SEGMENT.fullmatch(name) and (directory / name).is_file():
        return web.FileResponse(directory / name, headers={"Content-Type": SEGMENT_TYPE,
                                                           "Cache-Control": "public, max-age=86400"})
    raise NotFound()


def add_routes(app: web.Application, directory: Path) -> None:
    """Serve the clip made in `directory` at /demo/stream/ (only `livecommerce demo` does)."""
    app[DEMO_VIDEO] = directory
    app.router.add_get(STREAM_PREFIX + "{name}", stream, name="demo_stream")
