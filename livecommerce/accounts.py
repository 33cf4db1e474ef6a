"""Account services: create accounts, sign in, join as a guest; the signed-in account per request."""

from __future__ import annotations

import re
import secrets
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import hash_password, verify_password
from .errors import Conflict, InvalidCredentials, ValidationFailed
from .hot import HotPath
from .models import Role, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def check_username(name: str) -> str:
    name = name.strip().lower()
    if not USERNAME.match(name):
        raise ValidationFailed("A username is 2 to 64 lowercase letters, digits, dots, dashes or underscores.",
                               code="invalid_username")
    return name


def check_nickname(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 20:
        raise ValidationFailed("A nickname is 1 to 20 characters.", code="invalid_nickname")
    if any(ord(ch) < 32 or ch in "<>" for ch in name):
        raise ValidationFailed("A nickname cannot contain < > or control characters.", code="invalid_nickname")
    return name


async def create_user(db: AsyncSession, *, username: str, role: Role, password: str | None,
                      display_name: str | None = None, min_password: int = 8,
                      merchant_id: int | None = None) -> User:
    username = check_username(username)
    if password is not None and len(password) < min_password:
        raise ValidationFailed("The password must be at least %(n)s characters.", code="weak_password",
                               n=min_password)
    if role in (Role.STAFF, Role.HOST, Role.MERCHANT) and password is None:
        raise ValidationFailed("Staff, host and merchant accounts need a password.", code="password_required")
    if role is Role.MERCHANT and merchant_id is None:
        raise ValidationFailed("A merchant account belongs to a stall: give its merchant id.",
                               code="merchant_required")
    user = User(username=username, role=role, display_name=display_name or username,
                password_hash=hash_password(password) if password else None, merchant_id=merchant_id)
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("That username is taken.", code="username_taken") from None
    return user


async def authenticate(db: AsyncSession, username: str, password: str) -> User:
    user = await db.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or not user.is_active or user.is_guest:
        verify_password(None, password)
        raise InvalidCredentials()
    if not verify_password(user.password_hash, password):
        raise InvalidCredentials()
    return user


async def join_as_guest(db: AsyncSession, nickname: str) -> User:
    """A viewer who only gives a nickname: a guest account, so chat and orders have an owner."""
    nickname = check_nickname(nickname)
    for _ in range(5):
        username = f"guest-{secrets.token_hex(5)}"
        exists = await db.scalar(select(func.count()).select_from(User).where(User.username == username))
        if not exists:
            break
    user = User(username=username, role=Role.VIEWER, display_name=nickname, is_guest=True)
    db.add(user)
    await db.flush()
    return user


async def set_password(db: AsyncSession, user: User, password: str, min_password: int = 8) -> None:
    if len(password) < min_password:
        raise ValidationFailed("The password must be at least %(n)s characters.", code="weak_password",
                               n=min_password)
    user.password_hash = hash_password(password)
    user.session_epoch += 1  # every other signed-in browser is signed out
    await db.flush()


# -- the signed-in account, per request -------------------------------------------------------------

_CACHES: weakref.WeakSet[AccountCache] = weakref.WeakSet()


class AccountCache:
    """Accounts as last read from the database, kept `ttl` seconds, so that a request or a socket
    from a signed-in person does not read the account again each time. Any change to an account
    flushed through this process forgets it at once (see `_forget_changed`); a change made by another
    process is seen within `ttl`. `ttl` 0 reads on every call."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._users: dict[int, tuple[float, User]] = {}
        _CACHES.add(self)

    async def get(self, reads: HotPath, user_id: int, epoch: int | None) -> User | None:
        """The active account `user_id` if the cookie's `epoch` is still its own (None: a socket, whose
        cookie was checked when it connected), else None."""
        now = self.clock()
        hit = self._users.get(user_id)
        if hit is not None and hit[0] > now:
            user = hit[1]
        else:
            user = await reads.account(user_id)
            if user is None:
                self._users.pop(user_id, None)
                return None
            if self.ttl > 0:
                if len(self._users) >= 100_000:  # bounded: drop what has expired, or everything
                    self._users = {k: v for k, v in self._users.items() if v[0] > now}
                    if len(self._users) >= 100_000:
                        self._users.clear()
                self._users[user_id] = (now + self.ttl, user)
        if not user.is_active or (epoch is not None and user.session_epoch != epoch):
            return None
        return user

    def forget(self, user_id: int) -> None:
        self._users.pop(user_id, None)


@event.listens_for(User, "after_update")
def _forget_changed(_mapper: Any, _conn: Any, target: User) -> None:
    for cache in list(_CACHES):
        cache.forget(target.id)
