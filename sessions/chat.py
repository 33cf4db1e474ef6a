"""Chat: the pure rules (what a message may be, the blocked words, the token bucket) and the
services that store messages and moderation, each message kept for replay and audit."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.errors import N_, AppError, Conflict, Forbidden, NotFound, ValidationFailed
from livecommerce.models import Role
from livecommerce.throttle import Bucket as Bucket
from livecommerce.throttle import take as take

from .models import BlockedWord, BroadcastState, ChatMessage, ChatReport, RoomSanction

# -- pure rules ---------------------------------------------------------------------------------


class ChatRefused(AppError):
    status = 422
    code = "chat_refused"


def clean_text(text: str, max_length: int) -> str:
    """A chat message as it will be shown: one line, trimmed, no control characters, any script."""
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.replace("\u2028", " ").replace("\u2029", " ").split())
    if not text:
        raise ChatRefused(N_("Write something first."), code="empty_message")
    if len(text) > max_length:
        raise ChatRefused(N_("A message is at most %(max)s characters."), code="message_too_long", max=max_length)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") and ch not in "\u200d" for ch in text):
        raise ChatRefused(N_("This message contains characters that cannot be shown."), code="bad_characters")
    return text


def _fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def blocked_word(text: str, words: Iterable[str]) -> str | None:
    """The first blocked word the message contains (ignoring case, width and spaces), if any."""
    folded = _fold(text)
    for w in words:
        fw = _fold(w)
        if fw and fw in folded:
            return w
    return None


def take_all(buckets: Sequence[Bucket | None], now: float, limits: Sequence[tuple[float, int]],
             ) -> tuple[int, list[Bucket]]:
    """One token from each bucket (`throttle.take`), or from none: 0 and the buckets after, or the 1-based
    position of the first bucket that is empty and the buckets refilled but untaken."""
    results = [take(b, now, rate, burst) for b, (rate, burst) in zip(buckets, limits, strict=True)]
    for i, (ok, _) in enumerate(results):
        if not ok:
            return i + 1, [after if not took else Bucket(after.tokens + 1.0, after.at) for took, after in results]
    return 0, [after for _, after in results]


@dataclass(frozen=True, slots=True)
class Rules:
    """What a broadcast's chat allows: its state, its slow mode (seconds, 0: off) and its sanctions
    (user id → ("mute", until) or ("ban", None))."""

    state: BroadcastState
    slow_mode_seconds: int
    sanctions: Mapping[int, tuple[str, datetime | None]]


def check_rules(rules: Rules, role: Role, user_id: int, now: datetime) -> None:
    """Refuse a message its broadcast's chat does not allow now: closed, or its author muted or banned
    (hosts and staff never are)."""
    if rules.state not in (BroadcastState.LOBBY, BroadcastState.LIVE):
        raise AppError(N_("The chat opens with the lobby."), code="chat_closed", status=409)
    if role in (Role.HOST, Role.STAFF):
        return
    s = rules.sanctions.get(user_id)
    if s is None:
        return
    kind, until = s
    if kind == "ban":
        raise Forbidden(N_("You have been removed from this broadcast's chat."), code="banned")
    if until is not None and until <= now:
        return
    minutes = max(1, int(((until or now) - now).total_seconds() + 59) // 60)
    raise Forbidden(N_("You are muted for %(minutes)s more minutes."), code="muted", minutes=minutes)


# -- services -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Author:
    user_id: int
    name: str
    role: Role


def message_out(m: Any) -> dict[str, object]:
    """A chat message as the room sends it (a `ChatMessage`, or a row of its table)."""
    return {"id": m.id, "user_id": m.user_id, "name": m.author_name, "role": m.author_role, "text": m.text,
            "at": m.created_at.isoformat()}


async def recent(db: AsyncSession, broadcast_id: int, limit: int) -> list[ChatMessage]:
    rows = (await db.scalars(select(ChatMessage).where(ChatMessage.broadcast_id == broadcast_id,
                                                       ChatMessage.deleted_at.is_(None))
                             .order_by(ChatMessage.id.desc()).limit(limit))).all()
    return list(reversed(rows))


async def remove(db: AsyncSession, broadcast_id: int, message_id: int, by: int, reason: str,
                 now: datetime) -> ChatMessage:
    m = await db.get(ChatMessage, message_id)
    if m is None or m.broadcast_id != broadcast_id:
        raise NotFound(N_("No such message in this broadcast."), code="message_not_found")
    if m.deleted_at is not None:
        raise Conflict(N_("This message was already removed."), code="already_removed")
    m.deleted_at, m.deleted_by, m.delete_reason = now, by, reason
    await db.flush()
    return m


async def sanction(db: AsyncSession, broadcast_id: int, user_id: int, kind: str, minutes: int | None, by: int,
                   reason: str, now: datetime) -> RoomSanction:
    from livecommerce.models import User

    target = await db.get(User, user_id)
    if target is None:
        raise NotFound(N_("No such viewer."), code="user_not_found")
    if target.role in (Role.HOST, Role.STAFF):
        raise Forbidden(N_("Hosts and staff cannot be muted or banned."), code="cannot_sanction")
    until = now + timedelta(minutes=minutes) if kind == "mute" and minutes else None
    existing = await db.get(RoomSanction, (broadcast_id, user_id))
    if existing is None:
        existing = RoomSanction(broadcast_id=broadcast_id, user_id=user_id, kind=kind, until=until, by_id=by,
                                reason=reason, created_at=now)
        db.add(existing)
    else:
        if existing.kind == "ban" and kind == "mute":
            return existing  # a ban outranks a mute
        existing.kind, existing.until, existing.by_id, existing.reason = kind, until, by, reason
    await db.flush()
    return existing


async def lift(db: AsyncSession, broadcast_id: int, user_id: int) -> None:
    await db.execute(delete(RoomSanction).where(RoomSanction.broadcast_id == broadcast_id,
                                                RoomSanction.user_id == user_id))


async def report(db: AsyncSession, broadcast_id: int, message_id: int, reporter: int, reason: str,
                 now: datetime) -> bool:
    """True if this is a new report (a viewer reports a message once)."""
    m = await db.get(ChatMessage, message_id)
    if m is None or m.broadcast_id != broadcast_id:
        raise NotFound(N_("No such message in this broadcast."), code="message_not_found")
    if m.user_id == reporter:
        raise ValidationFailed(N_("You cannot report your own message."), code="own_message")
    exists = await db.scalar(select(ChatReport.id).where(ChatReport.message_id == message_id,
                                                         ChatReport.reporter_id == reporter))
    if exists is not None:
        return False
    db.add(ChatReport(message_id=message_id, reporter_id=reporter, reason=reason, created_at=now))
    await db.flush()
    return True


async def blocked_words(db: AsyncSession) -> list[str]:
    return list((await db.scalars(select(BlockedWord.word).order_by(BlockedWord.word))).all())


async def set_blocked_words(db: AsyncSession, words: Sequence[str]) -> list[str]:
    clean = sorted({" ".join(w.split()) for w in words if w.strip()})
    if any(len(w) > 80 for w in clean):
        raise ValidationFailed(N_("A blocked word is at most 80 characters."), code="word_too_long")
    await db.execute(delete(BlockedWord))
    for w in clean:
        db.add(BlockedWord(word=w))
    await db.flush()
    return clean
