"""The live sale page's first load, weighed in a real browser: what a viewer's phone downloads to show the
page, by kind (HTML, CSS, JavaScript, the player, fonts, pictures), in bytes as transferred and gzipped.

    .venv/bin/python bench/page_weight.py
    .venv/bin/python bench/page_weight.py --json tmp/page-weight.json   # the figures as JSON as well
    .venv/bin/python bench/page_weight.py --no-native-hls                # as a browser without native HLS

It starts the demo market's server (`livecommerce demo`, which is `livecommerce serve` on a database it fills
with the demo market, plus the demo's video at /demo/stream/) on a free port of 127.0.0.1, with a throwaway
SQLite file and video folder, and opens the live broadcast's page (the URL the demo prints) in Debian's
Chromium through Playwright, at phone size (390×844, a touch screen, Korean), in a fresh browser context: an
empty cache, as a first visit. It waits until the page is loaded, the room connected and the video playing,
then until no request for the page's own files has been in flight for half a second (the video's playlist and
segments and the room's connection apart: with hls.js they never stop), and records every response the page
received by then.

The player fetches hls.js only in a browser that cannot play HLS itself (player.js asks the video element's
`canPlayType`). A recent Chromium (156 here) answers "maybe" and plays the demo's stream itself, as Safari
does, so by default the page is weighed as such a browser loads it: without hls.js. `--no-native-hls` makes
`canPlayType` answer "" for the HLS types (an init script in the page, as Firefox or an older Chromium would
answer), so the page fetches hls.js and plays the stream through it (MediaSource): the first load of a
browser without native HLS.

The video's segments (MPEG-TS) are counted but left out of the weight: they are the show, not the page.
The live playlist (.m3u8) and the room's connection (socket.io's HTTP requests) are listed apart from the
page's files. For each response it takes the bytes on the wire (the body as sent, with or without
Content-Encoding) and the body gzipped here at level 6: that is what it would weigh if the server
compressed it (for a response the server did compress, its compressed size is kept). The report ends
against the aim of issue 12: a first load of at most 300 KB gzipped (HTML, CSS, JS, the player, fonts).

Needs Debian's Chromium (/usr/bin/chromium, or --chromium) and the `test` extra (Playwright, and
imageio-ffmpeg for the demo's video; without it the page is weighed without a video). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import HOST, SECRET, cpu_model, free_port  # noqa: E402

AIM_KB = 300
PHONE = {"width": 390, "height": 844}
WAIT_S = 60  # the longest any one condition may take
KINDS = ("html", "css", "js", "player", "font", "image", "other")
KIND_NAMES = {"html": "HTML", "css": "CSS", "js": "JavaScript (the page's own and socket.io)",
              "player": "the player (hls.js)", "font": "fonts", "image": "pictures", "other": "other files"}


@dataclass
class Item:
    url: str
    kind: str  # one of KINDS, or "segment", "playlist", "realtime"
    status: int
    content_type: str
    encoding: str  # the response's Content-Encoding ("" when sent as is)
    wire: int  # the body's bytes as transferred
    raw: int  # the body's bytes once decoded
    gzipped: int  # gzip level 6 of the decoded body, or `wire` when the server compressed it


def kind_of(url: str, content_type: str) -> str:
    path = url.split("?", 1)[0]
    ct = content_type.split(";", 1)[0].strip().lower()
    if path.endswith(".ts") or ct == "video/mp2t":
        return "segment"
    if path.endswith(".m3u8") or "mpegurl" in ct:
        return "playlist"
    if "/socket.io/" in path and not path.endswith(".js"):
        return "realtime"
    if "/vendor/hls.js/" in path or path.endswith("/js/player.js"):
        return "player"
    if ct == "text/html":
        return "html"
    if ct == "text/css" or path.endswith(".css"):
        return "css"
    if "javascript" in ct or path.endswith(".js"):
        return "js"
    if ct.startswith("font/") or re.search(r"\.(woff2?|ttf|otf)$", path):
        return "font"
    if ct.startswith("image/"):
        return "image"
    return "other"


# -- the server ----------------------------------------------------------------------------------------

class DemoServer:
    """`livecommerce demo` on 127.0.0.1:port with a config, a SQLite file and a video folder in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "demo.toml"
        self.config.write_text(
            "[server]\n"
            f'secret_key = "{SECRET}"\n'
            f'secret_key_file = "{workdir / "secret"}"\n'
            "[database]\n"
            f'url = "sqlite+aiosqlite:///{workdir / "demo.db"}"\n'
            "[push]\n"
            f'vapid_key_file = "{workdir / "vapid"}"\n'
            "[logging]\n"
            'level = "WARNING"\n', encoding="utf-8")
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, video: bool) -> str:
        """Start the server; the live broadcast's page, as the demo prints it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "livecommerce.cli", "demo", "--config", str(self.config), "--host", HOST,
               "--port", str(self.port), "--video-dir", str(self.workdir / "video")]
        if not video:
            cmd.append("--no-video")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180  # the first run makes the demo's video with ffmpeg
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server stopped:\n{self.log.read_text(errors='replace')[-3000:]}")
            found = re.search(r"Viewer page \(live now\): (\S+)", self.log.read_text(errors="replace"))
            if found:
                with contextlib.suppress(OSError), urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return found.group(1)
            time.sleep(0.2)  # polling a server that is starting
        raise SystemExit(f"the server did not answer within 180 s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# -- the browser ---------------------------------------------------------------------------------------

# Answers "" for the HLS types, as a browser without native HLS does: player.js then fetches hls.js.
NO_NATIVE_HLS = """(() => {
  const real = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(String(type)) ? "" : real.call(this, type);
  };
})();"""


# Notes the video's first "playing" event (media events do not bubble: heard while capturing). hls.js on the
# demo's looping stream may stall again a few seconds in, so a check of the video's state now and then can
# miss the seconds it played.
PLAYED = """document.addEventListener("playing", () => { window.__played = true; }, true);"""


def settle(page: Any, inflight: set[Any], quiet_s: float = 0.5) -> None:
    """Wait until no request for the page's files (anything but the video's playlist and segments and the
    room's socket.io requests) has been in flight for `quiet_s`. Not the browser's "network idle": hls.js
    keeps a request for the live playlist or a segment open nearly all the time, so that never comes."""
    deadline = time.monotonic() + WAIT_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)  # lets the browser's events in
        if any(kind_of(r.url, "") in KINDS for r in list(inflight)):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
    raise SystemExit(f"the page's requests did not settle within {WAIT_S} s")


def weigh(url: str, chromium: str, native_hls: bool = True) -> tuple[list[Item], dict[str, Any]]:
    """Open `url` at phone size in a fresh context; every response it got by the time it settled. Without
    `native_hls`, the page is told the browser cannot play HLS itself."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import Request, sync_playwright

    finished: list[Request] = []
    failed: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"])
        try:
            ctx = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True,
                                      locale="ko-KR", timezone_id="Asia/Seoul")
            ctx.add_init_script(PLAYED)
            if not native_hls:
                ctx.add_init_script(NO_NATIVE_HLS)
            page = ctx.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            inflight: set[Request] = set()
            page.on("request", lambda r: inflight.add(r))
            page.on("requestfinished", lambda r: (inflight.discard(r), finished.append(r)))
            page.on("requestfailed", lambda r: (inflight.discard(r), failed.append(f"{r.url} {r.failure}")))
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            started = time.monotonic()
            page.goto(url, wait_until="load")
            loaded_s = time.monotonic() - started
            page.wait_for_function("() => document.querySelector('#conn-status')?.dataset.status === 'connected'")
            has_video = page.locator("video.player-video[data-src]:not([data-src=''])").count() > 0
            playing = False
            if has_video:
                page.wait_for_function("() => { const v = document.querySelector('video.player-video');"
                                       " return window.__played === true"
                                       " || (v && v.readyState >= 3 && v.currentTime > 0); }")
                playing = True
            settle(page, inflight)
            hls_answer = page.evaluate("() => document.createElement('video')"
                                       ".canPlayType('application/vnd.apple.mpegurl')")
            facts = {"chromium": browser.version, "loaded_s": round(loaded_s, 2), "video": has_video,
                     "playing": playing, "failed": failed, "native_hls": hls_answer, "hls_hidden": not native_hls,
                     "hls_js": any("/vendor/hls.js/" in r.url for r in finished),
                     "websockets": len(sockets)}
            items = []
            for req in list(finished):
                resp = req.response()
                if resp is None:
                    continue
                ct = resp.headers.get("content-type", "")
                enc = resp.headers.get("content-encoding", "")
                kind = kind_of(req.url, ct)
                if kind == "segment":  # counted, never read
                    items.append(Item(req.url, kind, resp.status, ct, enc, 0, 0, 0))
                    continue
                body = resp.body()
                wire = req.sizes()["responseBodySize"]
                gz = wire if enc else len(gzip.compress(body, compresslevel=6, mtime=0))
                items.append(Item(req.url, kind, resp.status, ct, enc, wire, len(body), gz))
            ctx.close()
        finally:
            browser.close()
    return items, facts


# -- the report ----------------------------------------------------------------------------------------

def kb(n: int) -> str:
    return f"{n / 1024:,.1f}"


def report(url: str, items: list[Item], facts: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    print(f"machine:  {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print(f"versions: Chromium {facts['chromium']}, Python {platform.python_version()}, aiohttp {aiohttp.__version__}")
    print(f"settings: {url} at {PHONE['width']}×{PHONE['height']} (phone, touch, ko-KR), a fresh context "
          "(empty cache); weighed once the page had loaded, the room was connected"
          + (", the video was playing" if facts["playing"] else " (no video on the page)")
          + " and the page's requests had settled; gzip level 6 for bodies the server sent uncompressed")
    print(f"HLS: canPlayType answered {facts['native_hls']!r} "
          + ("(native HLS)" if facts["native_hls"] else "(no native HLS"
             + (", as told by --no-native-hls)" if facts["hls_hidden"] else ")"))
          + "; hls.js " + ("fetched" if facts["hls_js"] else "not fetched"))
    compressed = sorted({i.kind for i in items if i.encoding})
    print("server compression: " + ("Content-Encoding on " + ", ".join(compressed) if compressed
                                    else "none (every body was sent as is)"))
    print()
    page_items = [i for i in items if i.kind in KINDS]
    totals: dict[str, dict[str, int]] = {}
    print(f"{'kind':<44}{'files':>6}{'KB sent':>10}{'KB gzipped':>12}")
    for k in KINDS:
        group = [i for i in page_items if i.kind == k]
        if not group and k == "other":
            continue
        t = {"files": len(group), "wire": sum(i.wire for i in group), "gzipped": sum(i.gzipped for i in group)}
        totals[k] = t
        print(f"{KIND_NAMES[k]:<44}{t['files']:>6}{kb(t['wire']):>10}{kb(t['gzipped']):>12}")
    wire = sum(t["wire"] for t in totals.values())
    gzipped = sum(t["gzipped"] for t in totals.values())
    files = sum(t["files"] for t in totals.values())
    print(f"{'the page, in total':<44}{files:>6}{kb(wire):>10}{kb(gzipped):>12}")
    print()
    met = gzipped <= AIM_KB * 1024
    verdict = "met" if met else "not met"
    if met and not compressed and wire > AIM_KB * 1024:
        verdict = "met once the text is compressed; not as the server sends it now (uncompressed)"
    print(f"aim: ≤ {AIM_KB} KB gzipped · as sent: {kb(wire)} KB · gzipped: {kb(gzipped)} KB · {verdict}")
    print()
    print("apart from the page:")
    for k, name in (("playlist", "the live playlist (.m3u8)"), ("realtime", "the room's connection (socket.io HTTP)")):
        group = [i for i in items if i.kind == k]
        print(f"  {name}: {len(group)} responses, {kb(sum(i.wire for i in group))} KB sent")
    print(f"  websockets opened: {facts['websockets']}")
    segments = [i for i in items if i.kind == "segment"]
    print(f"  video segments (not weighed): {len(segments)}")
    print()
    print("the heaviest files (gzipped):")
    for i in sorted(page_items, key=lambda i: -i.gzipped)[:8]:
        path = urlsplit(i.url).path
        print(f"  {kb(i.gzipped):>8} KB gzipped {kb(i.wire):>8} KB sent  {path}")
    if facts["failed"]:
        print("\nrequests that failed: " + "; ".join(facts["failed"]))
    return {"url": url, "facts": facts, "totals": totals, "wire": wire, "gzipped": gzipped, "aim_kb": AIM_KB,
            "met": met, "segments": len(segments), "items": [asdict(i) for i in items]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chromium", default=os.environ.get("LIVECOMMERCE_CHROMIUM", "/usr/bin/chromium"))
    p.add_argument("--no-video", action="store_true", help="the demo without its video")
    p.add_argument("--no-native-hls", action="store_true",
                   help="weigh the page as a browser without native HLS loads it (hls.js fetched)")
    p.add_argument("--json", type=Path, help="also write the figures, file by file, to this file")
    args = p.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"{args.chromium} is missing: install Debian's chromium")
    workdir = Path(tempfile.mkdtemp(prefix="lc-page-weight-"))
    server = DemoServer(workdir)
    try:
        url = server.start(video=not args.no_video)
        items, facts = weigh(url, args.chromium, native_hls=not args.no_native_hls)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    result = report(url, items, facts)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
