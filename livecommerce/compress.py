"""Text sent compressed to a browser that accepts gzip: the static files (stylesheet, scripts, the player,
pictures drawn as SVG) gzipped once per process and kept in memory — a file changed on disk is gzipped again —
and pages compressed on the way out. A phone on a slow network loads the live page in about a third of the
bytes (BENCHMARKS.md, "The live page's first load"). Behind nginx the same holds: nginx passes the encoding on."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path, PurePosixPath

from aiohttp import web

TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".json": "application/json",
         ".map": "application/json", ".txt": "text/plain", ".md": "text/markdown"}
PAGE_MIN_BYTES = 1024  # a smaller page is sent as it is: the gzip framing would not pay for itself


def accepts_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "")


@dataclass(frozen=True, slots=True)
class _Kept:
    stamp: tuple[int, int]  # the file's mtime (ns) and size when it was gzipped
    body: bytes
    etag: str
    modified: str


class StaticGzip:
    """The static files under `root`, gzipped (level 9, once per file and change)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._kept: dict[str, _Kept] = {}

    def answer(self, request: web.Request, relative: str) -> web.Response | None:
        """The gzipped answer for `relative` (a path under root), or None: not a text file, not there, or a
        client that does not accept gzip (the ordinary static route answers those)."""
        content_type = TYPES.get(PurePosixPath(relative).suffix)
        if content_type is None or not accepts_gzip(request):
            return None
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        kept = self._kept.get(relative)
        if kept is None or kept.stamp != stamp:
            kept = _Kept(stamp, gzip.compress(path.read_bytes(), 9, mtime=0), f'"{stamp[0]:x}-{stamp[1]:x}-gz"',
                         formatdate(st.st_mtime, usegmt=True))
            self._kept[relative] = kept
        headers = {"ETag": kept.etag, "Vary": "Accept-Encoding", "Last-Modified": kept.modified}
        if kept.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        headers.update({"Content-Encoding": "gzip", "Content-Type": content_type})
        return web.Response(body=kept.body, headers=headers)


STATIC_GZIP = web.AppKey("static_gzip", StaticGzip)


def compress_page(request: web.Request, resp: web.StreamResponse) -> None:
    """Let an HTML page of some size go out gzipped (aiohttp compresses it as it writes)."""
    if (isinstance(resp, web.Response) and not isinstance(resp, web.FileResponse) and resp.status == 200
            and resp.content_type == "text/html" and isinstance(resp.body, bytes)
            and len(resp.body) >= PAGE_MIN_BYTES and accepts_gzip(request)
            and "Content-Encoding" not in resp.headers):
        resp.enable_compression(web.ContentCoding.gzip)
