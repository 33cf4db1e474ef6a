"""Tables for broadcasts: the weekly series, each broadcast, its hosts and its line-up."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from livecommerce.db import Base, UTCDateTime, utcnow
from livecommerce.errors import N_
from livecommerce.models import Market, Product, User


class BroadcastState(enum.StrEnum):
    SCHEDULED = "scheduled"
    LOBBY = "lobby"
    LIVE = "live"
    ENDED = "ended"
    MISSED = "missed"
    CANCELLED = "cancelled"


STATE_LABELS: dict[BroadcastState, str] = {
    BroadcastState.SCHEDULED: N_("scheduled"),
    BroadcastState.LOBBY: N_("in the lobby"),
    BroadcastState.LIVE: N_("live"),
    BroadcastState.ENDED: N_("ended"),
    BroadcastState.MISSED: N_("missed"),
    BroadcastState.CANCELLED: N_("cancelled"),
}


class Series(Base):
    """A weekly recurrence (RFC 5545 RRULE) of one-hour shows, in a local time zone."""

    __tablename__ = "series"
    __table_args__ = (CheckConstraint("duration_minutes > 0", name="duration_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), index=True)
    title_ko: Mapped[str] = mapped_column(String(120))
    title_en: Mapped[str] = mapped_column(String(120))
    rrule: Mapped[str] = mapped_column(String(500))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    # The first occurrence's local wall-clock start, as written by staff ("2026-11-30T19:00").
    dtstart_local: Mapped[str] = mapped_column(String(19))
    until_local: Mapped[str | None] = mapped_column(String(19), default=None)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    auto_live: Mapped[bool] = mapped_column(default=False)
    stream_url: Mapped[str] = mapped_column(String(500), default="")
    channel: Mapped[str] = mapped_column(String(64), default="main")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market: Mapped[Market] = relationship(lazy="raise")
    hosts: Mapped[list[SeriesHost]] = relationship(lazy="raise", cascade="all, delete-orphan")
    exceptions: Mapped[list[SeriesException]] = relationship(lazy="raise", cascade="all, delete-orphan",
                                                             order_by="SeriesException.occurrence_local")


class SeriesHost(Base):
    """The hosts every broadcast of a series starts with."""

    __tablename__ = "series_hosts"

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class ExceptionAction(enum.StrEnum):
    SKIP = "skip"
    MOVE = "move"


class SeriesException(Base):
    """One occurrence skipped (a holiday) or moved to another time."""

    __tablename__ = "series_exceptions"
    __table_args__ = (UniqueConstraint("series_id", "occurrence_local"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    # The occurrence's local start as the rule makes it, "2026-12-02T19:00".
    occurrence_local: Mapped[str] = mapped_column(String(16))
    action: Mapped[ExceptionAction] = mapped_column(
        Enum(ExceptionAction, name="exception_action", native_enum=False, length=10,
             values_callable=lambda e: [m.value for m in e]))
    new_start_local: Mapped[str | None] = mapped_column(String(16), default=None)
    note: Mapped[str] = mapped_column(String(200), default="")


class Broadcast(Base):
    __tablename__ = "broadcasts"
    # One broadcast per occurrence of a series, whichever process creates it first.
    __table_args__ = (UniqueConstraint("series_id", "occurrence_local"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"), default=None,
                                                  index=True)
    title_ko: Mapped[str] = mapped_column(String(120))
    title_en: Mapped[str] = mapped_column(String(120))
    description_ko: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[BroadcastState] = mapped_column(
        Enum(BroadcastState, name="broadcast_state", native_enum=False, length=20,
             values_callable=lambda e: [m.value for m in e]),
        default=BroadcastState.SCHEDULED, index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    occurrence_local: Mapped[str | None] = mapped_column(String(16), default=None)
    stream_url: Mapped[str] = mapped_column(String(500), default="")  # an HLS (.m3u8) or video URL
    embed_url: Mapped[str] = mapped_column(String(500), default="")  # or a player page to embed
    recording_url: Mapped[str] = mapped_column(String(500), default="")  # the show's recording, for the replay
    channel: Mapped[str] = mapped_column(String(64), default="main")
    auto_live: Mapped[bool] = mapped_column(default=False)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    peak_viewers: Mapped[int] = mapped_column(Integer, default=0)
    hearts: Mapped[int] = mapped_column(Integer, default=0)
    pinned_notice: Mapped[str] = mapped_column(String(300), default="")
    slow_mode_seconds: Mapped[int] = mapped_column(Integer, default=0)
    spotlight_product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"),
                                                             default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market: Mapped[Market] = relationship(lazy="raise")
    hosts: Mapped[list[BroadcastHost]] = relationship(lazy="raise", cascade="all, delete-orphan")
    lineup: Mapped[list[LineupItem]] = relationship(lazy="raise", cascade="all, delete-orphan",
                                                    order_by="LineupItem.position")
    partners: Mapped[list[PartnerChannel]] = relationship(lazy="raise", cascade="all, delete-orphan",
                                                          order_by="PartnerChannel.position")


class PartnerChannel(Base):
    """A partner platform the show is simulcast to; the viewer page links to it."""

    __tablename__ = "partner_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Reminder(Base):
    """A viewer asked to be told when this broadcast goes live."""

    __tablename__ = "reminders"

    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BroadcastHost(Base):
    __tablename__ = "broadcast_hosts"

    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)

    user: Mapped[User] = relationship(lazy="raise")


class LineupItem(Base):
    """A product on a broadcast's running order, at its live price, with stock set aside for the show."""

    __tablename__ = "lineup_items"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "product_id"),
        CheckConstraint("live_price >= 0", name="live_price_not_negative"),
        CheckConstraint("stock_reserved >= 0", name="stock_reserved_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    live_price: Mapped[int] = mapped_column(Integer)
    stock_reserved: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(lazy="raise")


class ChatMessage(Base):
    """Every chat message, kept for replay and audit — with who removed it and why. `client_id` is the
    sender's own id for the message: a send repeated with it is the same message (once per author)."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    author_name: Mapped[str] = mapped_column(String(64))
    author_role: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    deleted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    delete_reason: Mapped[str] = mapped_column(String(200), default="")


class ChatReport(Base):
    __tablename__ = "chat_reports"
    __table_args__ = (UniqueConstraint("message_id", "reporter_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("chat_messages.id", ondelete="CASCADE"), index=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoomSanction(Base):
    """A viewer muted until a moment, or banned from one broadcast (until is None)."""

    __tablename__ = "room_sanctions"

    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # "mute" or "ban"
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BlockedWord(Base):
    """Words staff keep out of chat."""

    __tablename__ = "blocked_words"

    id: Mapped[int] = mapped_column(primary_key=True)
    word: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
