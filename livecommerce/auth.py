"""Accounts and who may do what: passwords, the signed session cookie, CSRF, access rules.

The session cookie is signed (itsdangerous) and carries only the user's id, the user's
session epoch and a CSRF token; the role always comes from the database, never from what a
client says. The cookie holds the whole session, so any server process can read it: no process
keeps anything another one needs. Each process does remember the cookies it has verified
(`SessionCodec`), until they expire, only to skip checking the same signature again on the next
request; whether the session still holds is not remembered there: on every request and socket
event the cookie's epoch is checked against the account (read through the app's account cache,
which each commit that changes the account empties), so sign-out or a new password ends a
session at once however long its cookie is remembered.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .config import Config
from .errors import CsrfFailed, Forbidden, Unauthenticated
from .models import Role, User

COOKIE = "lc_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed: str | None, password: str) -> bool:
    if not hashed:
        # Spend the same time as a real check, so a missing account is not told apart by timing.
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash("not a password anybody has")


@dataclass
class Session:
    """What the cookie carries."""

    user_id: int | None = None
    epoch: int = 0
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    locale: str | None = None

    def copy(self) -> Session:
        return Session(self.user_id, self.epoch, self.csrf, self.locale)

    def dump(self) -> dict[str, Any]:
        return {"u": self.user_id, "e": self.epoch, "c": self.csrf, "l": self.locale}

    @classmethod
    def load(cls, data: Any) -> Session | None:
        if not isinstance(data, dict):
            return None
        uid, epoch, csrf, loc = data.get("u"), data.get("e", 0), data.get("c"), data.get("l")
        if (uid is not None and not isinstance(uid, int)) or not isinstance(epoch, int) or not isinstance(csrf, str):
            return None
        return cls(user_id=uid, epoch=epoch, csrf=csrf, locale=loc if loc in ("ko", "en") else None)


class SessionCodec:
    """Signs and reads the session cookie. It remembers (per process, at most `REMEMBERED` cookies) what a
    cookie whose signature it checked carries, until the cookie expires: a browser sends the same cookie on
    every request, and this saves the signature check, nothing more. A remembered cookie is exactly as
    good as the same cookie checked again, since a signature does not stop holding and the expiry is kept;
    what can end a session early (sign-out, a new password, a disabled account) is the account's epoch,
    checked by the caller on every request (`AccountCache.get`)."""

    REMEMBERED = 50_000

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="livecommerce.session")
        self.max_age = max_age_seconds
        self._verified: dict[str, tuple[float, Session]] = {}  # cookie -> (expires at, what it carries)

    def encode(self, session: Session) -> str:
        return self._s.dumps(session.dump())

    def decode(self, value: str | None) -> Session | None:
        """The session a cookie carries, if its signature holds and it has not expired (a copy: what a
        request changes in it does not reach the next one). Whether the session has been ended is for the
        caller to check against the account, with `epoch`."""
        if not value:
            return None
        hit = self._verified.get(value)
        if hit is not None and hit[0] > time.time():
            return hit[1].copy()
        try:
            data, signed_at = self._s.loads(value, max_age=self.max_age, return_timestamp=True)
        except BadSignature:
            return None
        session = Session.load(data)
        if session is None:
            return None
        if len(self._verified) >= self.REMEMBERED:
            self._verified.clear()
        self._verified[value] = (signed_at.timestamp() + self.max_age, session)
        return session.copy()


# -- access rules -------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """Who may call a route or send an event. Every route declares one."""

    roles: frozenset[Role] | None  # None: anyone, signed in or not
    description: str

    def check(self, user: User | None) -> None:
        if self.roles is None:
            return
        if user is None:
            raise Unauthenticated()
        if user.role not in self.roles:
            raise Forbidden()

    def allows(self, user: User | None) -> bool:
        try:
            self.check(user)
        except (Unauthenticated, Forbidden):
            return False
        return True


PUBLIC = Access(None, "anyone")
SIGNED_IN = Access(frozenset(Role), "any signed-in user, guests included")
STAFF = Access(frozenset({Role.STAFF}), "staff")
HOST = Access(frozenset({Role.HOST, Role.STAFF}), "hosts and staff")
MERCHANT = Access(frozenset({Role.MERCHANT, Role.STAFF}), "merchants and staff")


# an aiohttp handler, or the function of a page (`templating.page`) that answers its template's context
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[object]])


def access(rule: Access) -> Callable[[Handler], Handler]:
    """Mark an aiohttp handler with who may call it; the access middleware enforces it."""

    def mark(handler: Handler) -> Handler:
        handler.__dict__["__access__"] = rule
        return handler

    return mark


def csrf_exempt(handler: Handler) -> Handler:
    """Mark a handler whose caller is not a browser and proves itself otherwise (a payment gateway's
    signed webhook): the CSRF check, which needs our session cookie, does not apply to it."""
    handler.__dict__["__csrf_exempt__"] = True
    return handler


# -- origins and CSRF ---------------------------------------------------------------------

def request_origin(request: web.Request, trust_proxy: bool) -> str:
    scheme = request.scheme
    host = request.host
    if trust_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"


def allowed_origins(config: Config) -> list[str]:
    """Origins allowed besides the server's own (the public URL and `server.allowed_origins`)."""
    out = [o.rstrip("/") for o in config.server.allowed_origins]
    if config.server.public_url:
        p = urlsplit(config.server.public_url)
        out.insert(0, f"{p.scheme}://{p.netloc}")
    return out


def origin_ok(request: web.Request, config: Config) -> bool:
    """A browser's Origin (or Referer) must be ours; a client that sends neither is not a browser
    and is held to the token alone."""
    origin = request.headers.get("Origin")
    if origin is None:
        referer = request.headers.get("Referer")
        if referer is None:
            return True
        p = urlsplit(referer)
        origin = f"{p.scheme}://{p.netloc}"
    if origin == "null":
        return False
    return origin in (request_origin(request, config.server.trust_proxy), *allowed_origins(config))


async def check_csrf(request: web.Request, session: Session | None, config: Config) -> None:
    if not origin_ok(request, config):
        raise CsrfFailed("This request came from another site and was refused.", code="origin_refused")
    if session is None:
        raise CsrfFailed()
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise CsrfFailed()


def cookie_secure(request: web.Request, config: Config) -> bool:
    mode = config.security.cookie_secure
    if mode != "auto":
        return mode == "always"
    return request_origin(request, config.server.trust_proxy).startswith("https://")
