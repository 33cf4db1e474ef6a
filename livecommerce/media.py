"""Pictures staff upload (a product's photo): checked (JPEG, PNG or WebP, not too large, really a picture),
shrunk to fit `media.max_image_side`, turned upright by their EXIF orientation and saved as WebP under
`media.directory`, named by their content, and served at `/media/`. The work on the pixels runs on a
thread, off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from PIL import Image, ImageOps, UnidentifiedImageError

from .auth import PUBLIC, Handler, access
from .config import Config
from .errors import N_, NotFound, ValidationFailed

__all__ = ["ACCEPTED_FORMATS", "MEDIA_PREFIX", "MediaStore", "PictureRefused", "process_picture", "setup"]

MEDIA_PREFIX = "/media/"
ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# A picture that would decode to more pixels than this is refused unread (a small file can hide a huge one).
MAX_PIXELS = 40_000_000


class PictureRefused(ValidationFailed):
    """An upload that is not a picture we take, with the reason people can act on."""


@dataclass(frozen=True)
class Picture:
    data: bytes  # WebP
    width: int
    height: int


def process_picture(raw: bytes, max_side: int, max_bytes: int) -> Picture:
    """An uploaded file as the picture to keep: JPEG, PNG or WebP only, at most `max_bytes`, shrunk to fit
    `max_side` pixels on its longer side, upright, as WebP. Raises PictureRefused saying why."""
    if not raw:
        raise PictureRefused(N_("Choose a picture to upload."), code="picture_missing")
    if len(raw) > max_bytes:
        raise PictureRefused(N_("The picture is too large (at most %(size)s)."), code="picture_too_large",
                             size=size_text(max_bytes))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=list(ACCEPTED_FORMATS)) as probe:
                if probe.width * probe.height > MAX_PIXELS:
                    raise PictureRefused(N_("The picture has too many pixels."), code="picture_too_large")
                probe.verify()
            with Image.open(io.BytesIO(raw), formats=list(ACCEPTED_FORMATS)) as img:
                img.load()
                picture = ImageOps.exif_transpose(img)
                picture = picture.convert("RGBA" if _has_alpha(picture) else "RGB")
                picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                picture.save(out, "WEBP", quality=82, method=4)
    except PictureRefused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            ValueError, SyntaxError):
        raise PictureRefused(N_("This file is not a JPEG, PNG or WebP picture."), code="picture_type") from None
    return Picture(out.getvalue(), picture.width, picture.height)


def size_text(n: int) -> str:
    """A number of bytes as people read it: "5 MB", "300 KB"."""
    return f"{n / 1_048_576:.0f} MB" if n >= 1_048_576 else f"{max(1, n // 1024)} KB"


def uploads(handler: Handler) -> Handler:
    """Mark a route that takes a picture: its request body may be as large as an upload allows (twice
    `media.max_upload_bytes`, so that a picture too large is answered with a reason, not a bare 413)."""
    handler.__dict__["__uploads__"] = True
    return handler


def body_limit(config: Config) -> int:
    return config.media.max_upload_bytes * 2 + 65_536


async def discard_uploads(request: web.Request) -> None:
    """Close the temporary copies of a refused request's uploaded files."""
    form = await request.post()
    for value in form.values():
        if isinstance(value, web.FileField):
            value.file.close()


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


class MediaStore:
    """The directory pictures are kept in, and their addresses."""

    def __init__(self, config: Config) -> None:
        self.directory = Path(config.media.directory)
        self.max_bytes = config.media.max_upload_bytes
        self.max_side = config.media.max_image_side

    async def save_picture(self, raw: bytes, kind: str = "products") -> str:
        """Check, shrink and keep an uploaded picture; its address (`/media/products/<digest>.webp`)."""
        picture = await asyncio.to_thread(process_picture, raw, self.max_side, self.max_bytes)
        name = f"{hashlib.sha256(picture.data).hexdigest()[:32]}.webp"
        folder = self.directory / kind
        await asyncio.to_thread(_write_once, folder, name, picture.data)
        return f"{MEDIA_PREFIX}{kind}/{name}"


def _write_once(folder: Path, name: str, data: bytes) -> None:
    """Write a file named by its content, whole or not at all (a reader never sees half of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        return
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, target)


MEDIA = web.AppKey("media", MediaStore)
_NAME = re.compile(r"[0-9a-f]{32}\.webp", re.ASCII)
KINDS = ("products",)


@access(PUBLIC)
async def serve(request: web.Request) -> web.StreamResponse:
    """A kept picture. Its name is its content's digest, so it never changes: browsers keep it for a year."""
    kind, name = request.match_info["kind"], request.match_info["name"]
    path = request.app[MEDIA].directory / kind / name
    if kind not in KINDS or not _NAME.fullmatch(name) or not path.is_file():
        raise NotFound(N_("No picture by this name."), code="picture_not_found")
    return web.FileResponse(path, headers={"Content-Type": "image/webp",
                                           "Cache-Control": "public, max-age=31536000, immutable"})


def setup(app: web.Application, config: Config) -> None:
    """The picture store on the app, and `/media/<kind>/<name>` serving its files."""
    store = MediaStore(config)  # its directory is made when the first picture is kept
    app[MEDIA] = store
    app.router.add_get(MEDIA_PREFIX + "{kind}/{name}", serve, name="media")
