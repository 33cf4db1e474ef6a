"""Web Push (RFC 8030, with RFC 8291's aes128gcm encryption and RFC 8292's VAPID): the server's key pair,
a browser's subscription checked before it is kept, the subscriptions' table, and the sender.

The VAPID key pair comes from the configuration (`push.vapid_private_key`) or is generated once into
`push.vapid_key_file`, as the secret key is: every process must sign with the same key, since browsers
subscribed with its public half. The sender is pywebpush, whose requests are blocking: each runs on a
small thread pool with a timeout, never on the event loop. A push service's 404 or 410 means the
subscription is gone (the caller deletes it); a 429, a 5xx or no answer is tried again a bounded number of
times; anything else is a refusal that trying again would not change.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, Field
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .api import API, Api, Call, Strict
from .auth import PUBLIC, access
from .config import Config, ConfigError
from .db import Base, UTCDateTime, utcnow
from .errors import N_, ValidationFailed
from .keys import AppKeys

log = logging.getLogger("livecommerce.webpush")

SERVICE_WORKER = Path(__file__).resolve().parent.parent / "web" / "static" / "js" / "sw.js"
MAX_ENDPOINT = 2048
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
GONE = frozenset({404, 410})


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding; ValueError if it is not."""
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))


# -- the server's key pair -------------------------------------------------------------------------

@dataclass(frozen=True)
class VapidKeys:
    """The VAPID key pair (P-256). `public_key` is what a page passes to `pushManager.subscribe` as its
    `applicationServerKey`: the uncompressed point, 65 bytes, in base64url."""

    private_key: ec.EllipticCurvePrivateKey

    @property
    def private_raw(self) -> str:
        return b64url_encode(self.private_key.private_numbers().private_value.to_bytes(32, "big"))

    @property
    def public_key(self) -> str:
        return b64url_encode(self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    @classmethod
    def generate(cls) -> VapidKeys:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def parse(cls, text: str, key: str = "push.vapid_private_key") -> VapidKeys:
        """A private key as web-push tools print it: the 32-byte scalar in base64url."""
        try:
            raw = b64url_decode(text.strip())
            if len(raw) != 32:
                raise ValueError("not 32 bytes")
            return cls(ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
        except ValueError:
            raise ConfigError(key, "a P-256 private key: 32 bytes in base64url (43 characters)", "<hidden>") from None


def load_or_create_vapid(config: Config) -> VapidKeys:
    """The configured key, or the one kept in `push.vapid_key_file`, generated there the first time. The file
    appears whole or not at all (written aside, then linked into place), so processes starting together
    all read the one that was linked first."""
    if config.push.vapid_private_key:
        return VapidKeys.parse(config.push.vapid_private_key)
    path = Path(config.push.vapid_key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = VapidKeys.generate()
        aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        aside.write_text(keys.private_raw + "\n", encoding="utf-8")
        aside.chmod(0o600)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            aside.unlink()
    return VapidKeys.parse(path.read_text(encoding="utf-8"), key=str(path))


# -- a browser's subscription --------------------------------------------------------------------

@dataclass(frozen=True)
class Subscription:
    """What a browser's `PushSubscription` gives: where to post, and the keys to encrypt for it."""

    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def p256dh_problem(value: str) -> str | None:
    """Why `value` is not a browser's public key (an uncompressed P-256 point, 65 bytes), or None."""
    try:
        raw = b64url_decode(value)
    except ValueError:
        return "must be base64url"
    if len(raw) != 65 or raw[0] != 4:
        return "must be an uncompressed P-256 public key (65 bytes)"
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return "is not a point on the P-256 curve"
    return None


def auth_problem(value: str) -> str | None:
    """Why `value` is not a subscription's authentication secret (16 bytes), or None."""
    try:
        raw = b64url_decode(value)
    except ValueError:
        return "must be base64url"
    return None if len(raw) == 16 else "must be 16 bytes"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(endpoint: str, allow_http_loopback: bool) -> str | None:
    """Why the server should not post to `endpoint`, or None: a push service is reached over https at a
    public name or address (http to this machine only where `push.allow_http_loopback` says so, for tests)."""
    if len(endpoint) > MAX_ENDPOINT:
        return f"must be at most {MAX_ENDPOINT} characters"
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (a port that is not a number raises)
    except ValueError:
        return "must be a URL"
    if parts.username or parts.password or not host:
        return "must be a URL with a host and no user name"
    if allow_http_loopback and _loopback(host) and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return "must be an https:// URL"
    if _loopback(host):
        return "must be a push service's public address"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "must be a push service's public address"
    return None


class SubscriptionKeysIn(Strict):
    p256dh: str = Field(pattern=r"^[A-Za-z0-9_-]{87}=?$",
                        description="the browser's P-256 public key: 65 bytes (an uncompressed point), base64url")
    auth: str = Field(pattern=r"^[A-Za-z0-9_-]{22}(==)?$", description="the subscription's secret: 16 bytes, base64url")


class SubscriptionIn(Strict):
    """A browser's `PushSubscription` as `JSON.stringify(subscription)` gives it."""

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT,
                          description="the push service's URL for this browser: https, at a public address")
    keys: SubscriptionKeysIn
    expirationTime: int | None = Field(default=None, ge=0, description="ignored")


class InvalidSubscription(ValidationFailed):
    code = "invalid_subscription"
    message = N_("This browser's subscription cannot be used for notifications.")


def check_subscription(given: SubscriptionIn, config: Config, field: str = "subscription") -> Subscription:
    """The subscription, if the server may post to it and encrypt for it; else `InvalidSubscription` (422)
    naming the field and the problem (what the document's patterns cannot say: a key that is not a point on
    the curve, an endpoint that is not a push service's)."""
    problems = [(f"{field}.endpoint", endpoint_problem(given.endpoint, config.push.allow_http_loopback)),
                (f"{field}.keys.p256dh", p256dh_problem(given.keys.p256dh)),
                (f"{field}.keys.auth", auth_problem(given.keys.auth))]
    details = [{"field": name, "problem": problem} for name, problem in problems if problem]
    if details:
        raise InvalidSubscription(details=details)
    return Subscription(given.endpoint, given.keys.p256dh, given.keys.auth)


class PushSubscription(Base):
    """A browser that allowed notifications: where to post them, its keys, the account signed in when it
    subscribed (none for a visitor) and the language to write to it in. One row per endpoint."""

    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(MAX_ENDPOINT), unique=True)
    p256dh: Mapped[str] = mapped_column(String(128))
    auth: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True,
                                                default=None)
    locale: Mapped[str] = mapped_column(String(5), default="ko")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def subscription(self) -> Subscription:
        return Subscription(self.endpoint, self.p256dh, self.auth)


# -- sending ----------------------------------------------------------------------------------------

class Outcome(enum.StrEnum):
    SENT = "sent"
    GONE = "gone"  # the push service no longer knows the subscription: delete it
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    status: int | None  # the push service's last answer (None: no answer)
    attempts: int


class PushSender:
    """Encrypts and posts notifications, on a thread pool of its own (pywebpush blocks)."""

    def __init__(self, config: Config, keys: VapidKeys | None = None, workers: int = 8) -> None:
        self.config = config
        self._keys = keys
        self._vapid: Any = None
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        # as many requests at once as there are threads: a request's timeout starts when a thread takes it
        self._slots = asyncio.Semaphore(workers)
        # seconds before the first retry, doubled for each next one (as PushConfig.longest_send_seconds counts)
        self.backoff = 0.5

    @property
    def workers(self) -> int:
        """How many requests it makes at once."""
        return self._workers

    @property
    def keys(self) -> VapidKeys:
        """The key pair, read (or generated into `push.vapid_key_file`) when first needed."""
        if self._keys is None:
            self._keys = load_or_create_vapid(self.config)
        return self._keys

    @property
    def subject(self) -> str:
        p = self.config.push
        if p.subject:
            return p.subject
        if self.config.server.public_url.startswith("https://"):
            return self.config.server.public_url.rstrip("/")
        return "mailto:webpush@localhost"

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="webpush")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _post(self, sub: Subscription, data: str) -> int:
        """One request, on a pool thread: the push service's status."""
        from pywebpush import WebPushException, webpush

        assert self._vapid is not None
        try:
            resp = webpush(sub.info(), data=data, vapid_private_key=self._vapid,
                           vapid_claims={"sub": self.subject}, timeout=self.config.push.timeout_seconds,
                           ttl=self.config.push.ttl_seconds, headers={"Urgency": "high"})
        except WebPushException as exc:
            if exc.response is not None and exc.response.status_code is not None:
                return int(exc.response.status_code)
            raise
        return int(getattr(resp, "status_code", 201))

    async def send(self, sub: Subscription, payload: Mapping[str, Any]) -> Delivery:
        """Post `payload` (JSON) to one subscription, trying again what may pass."""
        import requests

        self.start()
        if self._vapid is None:
            from py_vapid import Vapid02

            self._vapid = Vapid02(private_key=self.keys.private_key)
        data = json.dumps(payload, ensure_ascii=False)
        loop = asyncio.get_running_loop()
        retries = self.config.push.retries
        status: int | None = None
        attempt = 0
        for attempt in range(1, retries + 2):
            error = ""
            try:
                async with self._slots:
                    status = await asyncio.wait_for(loop.run_in_executor(self._pool, partial(self._post, sub, data)),
                                                    self.config.push.try_seconds())
            except (requests.RequestException, OSError, TimeoutError) as exc:
                status, error = None, type(exc).__name__
            except Exception:  # a message that cannot be made for this subscription: trying again will not help
                log.exception("push failed", extra={"host": urlsplit(sub.endpoint).hostname})
                return Delivery(Outcome.FAILED, None, attempt)
            if status is not None and 200 <= status < 300:
                return Delivery(Outcome.SENT, status, attempt)
            if status in GONE:
                return Delivery(Outcome.GONE, status, attempt)
            if status is not None and status not in RETRYABLE:
                log.warning("push refused", extra={"status": status, "host": urlsplit(sub.endpoint).hostname})
                return Delivery(Outcome.FAILED, status, attempt)
            if attempt <= retries:
                log.info("push failed, trying again", extra={"status": status, "error": error or None,
                                                             "attempt": attempt,
                                                             "host": urlsplit(sub.endpoint).hostname})
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("push failed", extra={"status": status, "attempts": attempt,
                                          "host": urlsplit(sub.endpoint).hostname})
        return Delivery(Outcome.FAILED, status, attempt)


PUSH = web.AppKey("webpush", PushSender)


class PushKeyOut(BaseModel):
    public_key: str = Field(description="the VAPID public key: `applicationServerKey` for pushManager.subscribe")


@access(PUBLIC)
async def service_worker(request: web.Request) -> web.FileResponse:
    """The service worker, from the site's root so that it may control every page."""
    return web.FileResponse(SERVICE_WORKER, headers={
        "Content-Type": "text/javascript; charset=utf-8", "Service-Worker-Allowed": "/",
        "Cache-Control": "no-cache"})


def register_api(api: Api) -> None:
    @api.route("GET", "/push/key", access=PUBLIC, tag="reminders", response=PushKeyOut,
               summary="The server's Web Push (VAPID) public key")
    async def push_key(call: Call[None, None]) -> PushKeyOut:
        return PushKeyOut(public_key=call.app[PUSH].keys.public_key)


async def _sender(app: web.Application) -> AsyncIterator[None]:
    sender = app[PUSH]
    sender.start()
    yield
    with contextlib.suppress(Exception):
        sender.close()


def setup(app: web.Application) -> None:
    """The key pair and the sender on the app, the service worker's route and the public key's."""
    config = app[AppKeys.config]
    # A configured key is checked at start; a generated one is made (or read) when first needed.
    app[PUSH] = PushSender(config, VapidKeys.parse(config.push.vapid_private_key) if config.push.vapid_private_key
                           else None)
    app.router.add_get("/sw.js", service_worker, name="service_worker")
    register_api(app[API])
    app.cleanup_ctx.append(_sender)
