"""Account services: create accounts, sign in, join as a guest; the signed-in account per request."""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import hash_password, verify_password
from .caches import Changed
from .db import rowcount
from .errors import N_, Conflict, InvalidCredentials, NotFound, ValidationFailed
from .hot import HotPath
from .models import Merchant, Role, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def check_username(name: str) -> str:
    name = name.strip().lower()
    if not USERNAME.match(name):
        raise ValidationFailed("A username is 2 to 64 lowercase letters, digits, dots, dashes or underscores.",
                               code="invalid_username")
    return name


# Characters that show nothing, or turn the text around them: a name holding one could pass for another.
# Unicode's format, control, surrogate, private-use and unassigned characters, line and paragraph separators,
# and the Hangul fillers, which are letters that print as blank space.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_HANGUL_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


def check_nickname(name: str) -> str:
    """A guest's nickname as it will be shown: NFKC (so full-width and compatibility forms read as what
    they look like), white space collapsed; refused if it is not valid text, hides characters, or is empty
    or too long."""
    if "\ufffd" in name:
        raise ValidationFailed(N_("This nickname is not valid text (UTF-8). Type it again."),
                               code="invalid_nickname")
    if any((unicodedata.category(ch) in _HIDDEN_CATEGORIES and ch not in " \t") or ch in _HANGUL_FILLERS
           for ch in name):
        raise ValidationFailed(N_("A nickname cannot contain invisible or direction-changing characters."),
                               code="invalid_nickname")
    name = " ".join(unicodedata.normalize("NFKC", name).split())
    if not 1 <= len(name) <= 20:
        raise ValidationFailed("A nickname is 1 to 20 characters.", code="invalid_nickname")
    if any(ord(ch) < 32 or ch in "<>" for ch in name):
        raise ValidationFailed("A nickname cannot contain < > or control characters.", code="invalid_nickname")
    return name


def name_key(name: str) -> str:
    """What a name looks like, for telling whether two names could be taken for each other: NFKC, case
    folded, without spaces or punctuation ("운영 팀", "운영팀." and "ＭＩＮＪＩ" as "운영팀" and "minji")."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LNM")


async def check_name_is_free(db: AsyncSession, nickname: str, guests_since: datetime) -> None:
    """Refuse a guest's nickname that reads as the name of staff, a host, a merchant account or a stall, or
    as another guest's who joined since `guests_since` (whose session may still be open)."""
    key = name_key(nickname)
    privileged = (await db.scalars(select(User.display_name).where(
        User.role.in_([Role.STAFF, Role.HOST, Role.MERCHANT])))).all()
    stalls = (await db.execute(select(Merchant.name_ko, Merchant.name_en))).all()
    names = [*privileged, *(n for row in stalls for n in row)]
    if not key or any(name_key(n) == key for n in names if n):
        raise Conflict(N_("This name belongs to the market's staff, a host or a stall. Choose another."),
                       code="name_reserved")
    taken = await db.scalar(select(func.count()).select_from(User).where(
        User.is_guest.is_(True), User.created_at >= guests_since,
        func.lower(User.display_name) == nickname.lower()))
    if taken:
        raise Conflict(N_("Someone is already watching with this name. Choose another."), code="name_taken")


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


async def join_as_guest(db: AsyncSession, nickname: str, guests_since: datetime | None = None) -> User:
    """A viewer who only gives a nickname: a guest account, so chat and orders have an owner. The name may
    not read as staff's, a host's, a stall's, or (joined since `guests_since`) another guest's."""
    nickname = check_nickname(nickname)
    await check_name_is_free(db, nickname, guests_since or datetime(2000, 1, 1, tzinfo=UTC))
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


async def change_password(db: AsyncSession, user: User, current: str, new: str, min_password: int = 8) -> None:
    """A signed-in person's new password, given the one they have: every other session of the account ends
    (the epoch moves on); the caller gives the current browser a cookie with the new epoch."""
    if user.is_guest or not verify_password(user.password_hash, current):
        raise InvalidCredentials(N_("The current password is not right."), code="wrong_password")
    await set_password(db, user, new, min_password)


async def end_sessions(db: AsyncSession, user_id: int) -> None:
    """End every session of the account `user_id` (staff, when a merchant leaves or a cookie may have been
    stolen): its epoch moves on, so every cookie and socket signed in to it stops acting for it, on every
    process. Unknown account: `NotFound`."""
    moved = await db.execute(update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1))
    if rowcount(moved) != 1:
        raise NotFound(N_("No account with this id."), code="user_not_found")


async def end_session(db: AsyncSession, user: User) -> bool:
    """Sign-out: move the account's session epoch on, so that the cookie being replaced stops working
    everywhere it went: a copy of it, and a socket opened with it, no longer act for the account. The
    cookie names no browser, only the account and its epoch, so every browser signed in to the account is
    signed out with it. A conditional statement (the epoch the caller saw), so two sign-outs at once move
    it once; False when it had already moved."""
    moved = await db.execute(update(User).where(User.id == user.id, User.session_epoch == user.session_epoch)
                             .values(session_epoch=User.session_epoch + 1))
    return rowcount(moved) == 1


# -- the signed-in account, per request -------------------------------------------------------------

class AccountCache:
    """Accounts as last read from the database, kept `ttl` seconds, so that a request or a socket event
    from a signed-in person does not read the account again each time. Kept by the app under
    `AppKeys.accounts` and registered with its `Caches` watching `users.id`: a commit that changes an
    account forgets it on this process at once and on the others within moments (see `caches`); `ttl`
    bounds how long a change made where no one is told (Redis away, another program) goes unseen.
    `ttl` 0 reads on every call."""

    LIMIT = 100_000  # accounts kept at most: past it, what has expired goes, or everything

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._users: dict[int, tuple[float, User]] = {}
        self._reading: dict[int, int] = {}  # accounts being read now → how many reads
        self._generation = 0  # moves when an account being read is forgotten: that read is not kept

    async def get(self, reads: HotPath, user_id: int, epoch: int | None) -> User | None:
        """The active account `user_id` if `epoch` (the session's, from its cookie) is still its own, else
        None. `epoch` None checks only that the account is active: for callers with no session at all."""
        now = self.clock()
        hit = self._users.get(user_id)
        if hit is not None and hit[0] > now:
            user = hit[1]
        else:
            found = await self._read(reads, user_id)
            if found is None:
                return None
            user = found
        if not user.is_active or (epoch is not None and user.session_epoch != epoch):
            return None
        return user

    async def _read(self, reads: HotPath, user_id: int) -> User | None:
        generation = self._generation
        self._reading[user_id] = self._reading.get(user_id, 0) + 1
        try:
            user = await reads.account(user_id)
        finally:
            left = self._reading[user_id] - 1
            if left:
                self._reading[user_id] = left
            else:
                del self._reading[user_id]
        if user is None:
            self._users.pop(user_id, None)
            return None
        # A read that began before a commit forgot this account may hold the row from before it.
        if self.ttl > 0 and generation == self._generation:
            now = self.clock()
            if len(self._users) >= self.LIMIT:
                self._users = {k: v for k, v in self._users.items() if v[0] > now}
                if len(self._users) >= self.LIMIT:
                    self._users.clear()
            self._users[user_id] = (now + self.ttl, user)
        return user

    def forget(self, changed: Changed) -> None:
        """Forget the accounts `changed` names (`caches.Forgets`)."""
        ids = changed.get("users", frozenset())
        if ids is None:
            self._users.clear()
            self._generation += 1
            return
        for user_id in ids:
            if not isinstance(user_id, int):  # not an account's id
                continue
            self._users.pop(user_id, None)
            if user_id in self._reading:
                self._generation += 1

    def __contains__(self, user_id: object) -> bool:
        """Whether the account is kept and has not expired."""
        hit = self._users.get(user_id) if isinstance(user_id, int) else None
        return hit is not None and hit[0] > self.clock()


async def update_account(db: AsyncSession, actor: User, user_id: int, *, display_name: str, role: Role,
                         merchant_id: int | None, is_active: bool) -> User:
    """Staff change an account (never a guest's): its name, role, stall and whether it may sign in. A new
    role, stall or a stop ends the account's sessions (it signs in again as what it now is). Staff cannot
    take their own staff role or sign-in away (someone must stay who can give it back)."""
    user = await db.get(User, user_id)
    if user is None or user.is_guest:
        raise NotFound(N_("No account with this id."), code="user_not_found")
    if user.id == actor.id and (role is not Role.STAFF or not is_active):
        raise ValidationFailed(N_("You cannot take away your own staff role or sign-in."), code="own_role")
    if role is Role.MERCHANT and merchant_id is None:
        raise ValidationFailed("A merchant account belongs to a stall: give its merchant id.",
                               code="merchant_required")
    if role is not Role.MERCHANT:
        merchant_id = None
    if merchant_id is not None and await db.get(Merchant, merchant_id) is None:
        raise ValidationFailed(N_("No stall with this id."), code="merchant_not_found")
    if (role, merchant_id, is_active) != (user.role, user.merchant_id, user.is_active):
        user.session_epoch += 1
    user.display_name, user.role, user.merchant_id, user.is_active = display_name, role, merchant_id, is_active
    await db.flush()
    return user
