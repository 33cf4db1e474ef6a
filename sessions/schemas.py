"""Models of the broadcasts API and socket events; they validate input and generate the docs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from livecommerce.api import MAX_ID, Id, Patch, Strict, config_limit

from .models import BroadcastState


class LineupProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name_ko: str
    name_en: str
    image: str
    price: int = Field(description="The usual price, whole won")
    unit_ko: str
    unit_en: str


class LineupItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    position: int
    live_price: int = Field(description="The live-only price, whole won")
    stock_reserved: int
    product: LineupProductOut


class BroadcastOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    market_id: int
    title_ko: str
    title_en: str
    state: BroadcastState
    starts_at: datetime
    ends_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    stream_url: str
    embed_url: str = ""
    recording_url: str = Field(default="", description="the show's recording, played on its page once it has ended")
    channel: str = "main"
    auto_live: bool = False
    series_id: int | None = None
    lineup: list[LineupItemOut]
    partners: list[PartnerOut] = Field(default_factory=list)


class BroadcastsQuery(Strict):
    state: BroadcastState | None = None
    limit: int = Field(default=50, ge=1, le=200)


class TransitionOut(BaseModel):
    broadcast_id: int
    state: BroadcastState
    at: datetime


class BroadcastRef(Strict):
    """Names the broadcast a socket event is about."""

    broadcast_id: int = Field(ge=1, le=MAX_ID)


LOCAL_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$"
RECORDING_URL = r"^(https?://[^\s/?#]+[^\s]*)?$"  # empty: no recording


class SeriesIn(Strict):
    market_id: int = Field(ge=1, le=MAX_ID)
    title_ko: str = Field(min_length=1, max_length=120)
    title_en: str = Field(min_length=1, max_length=120)
    rrule: str = Field(min_length=1, max_length=500, description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO,WE")
    dtstart_local: str = Field(pattern=LOCAL_TIME, description="first start, local wall-clock time")
    until_local: str | None = Field(default=None, pattern=LOCAL_TIME)
    duration_minutes: int = Field(default=60, ge=1, le=24 * 60,
                                  json_schema_extra=config_limit("schedule.max_duration_minutes"))
    timezone: str = Field(default="Asia/Seoul", max_length=64)
    auto_live: bool = False
    stream_url: str = Field(default="", max_length=500)
    channel: str = Field(default="main", min_length=1, max_length=64)
    host_ids: list[Id] = Field(default_factory=list, max_length=10)


class SeriesPatch(Patch):
    nullable = frozenset({"until_local"})  # null: the series has no last date

    title_ko: str | None = Field(default=None, min_length=1, max_length=120)
    title_en: str | None = Field(default=None, min_length=1, max_length=120)
    rrule: str | None = Field(default=None, min_length=1, max_length=500)
    dtstart_local: str | None = Field(default=None, pattern=LOCAL_TIME)
    until_local: str | None = Field(default=None, pattern=LOCAL_TIME)
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60,
                                         json_schema_extra=config_limit("schedule.max_duration_minutes"))
    auto_live: bool | None = None
    stream_url: str | None = Field(default=None, max_length=500)
    channel: str | None = Field(default=None, min_length=1, max_length=64)
    is_active: bool | None = None
    host_ids: list[Id] | None = Field(default=None, max_length=10)


class SeriesExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    occurrence_local: str
    action: str
    new_start_local: str | None
    note: str


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    market_id: int
    title_ko: str
    title_en: str
    rrule: str
    timezone: str
    dtstart_local: str
    until_local: str | None
    duration_minutes: int
    auto_live: bool
    stream_url: str
    channel: str
    is_active: bool
    exceptions: list[SeriesExceptionOut]


class ExceptionIn(Strict):
    occurrence_local: str = Field(pattern=LOCAL_TIME, description="the occurrence as the rule makes it")
    action: str = Field(pattern="^(skip|move)$")
    new_start_local: str | None = Field(default=None, pattern=LOCAL_TIME)
    note: str = Field(default="", max_length=200)


class PartnerIn(Strict):
    name: str = Field(min_length=1, max_length=80)
    url: str = Field(pattern=r"^https?://\S+$", max_length=500)


class PartnerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    url: str


class SpecialIn(Strict):
    market_id: int = Field(ge=1, le=MAX_ID)
    title_ko: str = Field(min_length=1, max_length=120)
    title_en: str = Field(min_length=1, max_length=120)
    starts_local: str = Field(pattern=LOCAL_TIME)
    duration_minutes: int = Field(default=60, ge=1, le=24 * 60,
                                  json_schema_extra=config_limit("schedule.max_duration_minutes"))
    timezone: str = Field(default="Asia/Seoul", max_length=64)
    description_ko: str = Field(default="", max_length=4000)
    description_en: str = Field(default="", max_length=4000)
    stream_url: str = Field(default="", max_length=500)
    embed_url: str = Field(default="", max_length=500)
    channel: str = Field(default="main", min_length=1, max_length=64)
    auto_live: bool = False
    host_ids: list[Id] = Field(default_factory=list, max_length=10)


class BroadcastPatch(Patch):
    title_ko: str | None = Field(default=None, min_length=1, max_length=120)
    title_en: str | None = Field(default=None, min_length=1, max_length=120)
    description_ko: str | None = Field(default=None, max_length=4000)
    description_en: str | None = Field(default=None, max_length=4000)
    stream_url: str | None = Field(default=None, max_length=500)
    embed_url: str | None = Field(default=None, max_length=500)
    recording_url: str | None = Field(
        default=None, max_length=500, json_schema_extra={"pattern": RECORDING_URL},
        description="the show's recording (an HLS .m3u8 or a video file, http or https; empty: none). It can be "
                    "set after the show has ended, when nothing else can change")
    channel: str | None = Field(default=None, min_length=1, max_length=64)
    auto_live: bool | None = None
    starts_local: str | None = Field(default=None, pattern=LOCAL_TIME)
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60,
                                         json_schema_extra=config_limit("schedule.max_duration_minutes"))
    host_ids: list[Id] | None = Field(default=None, max_length=10)
    partners: list[PartnerIn] | None = Field(default=None, max_length=10)

    @field_validator("recording_url")
    @classmethod
    def _recording_url(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(RECORDING_URL, value):
            raise PydanticCustomError("url", "must be a web address starting with http:// or https://")
        return value


class LineupItemIn(Strict):
    product_id: int = Field(ge=1, le=MAX_ID)
    live_price: int = Field(ge=0, le=100_000_000, description="whole won")
    stock_reserved: int = Field(ge=0, le=1_000_000)


class LineupIn(Strict):
    items: list[LineupItemIn] = Field(max_length=100, description="in running order")


class ReminderOut(BaseModel):
    broadcast_id: int
    reminded: bool


# -- the live room's socket events --------------------------------------------------------------

class Position(Strict):
    """The last room event a viewer saw."""

    epoch: str = Field(min_length=1, max_length=32)
    offset: int = Field(ge=0, le=MAX_ID)


class JoinIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    since: Position | None = Field(default=None, description="on reconnect: the last position seen")


class ChatIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    text: str = Field(max_length=2000, description="at most room.chat_max_length characters once trimmed")
    client_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                  description="the sender's own id for this message: a send repeated with the "
                                              "same id (after a lost answer or an `unavailable` error) is the "
                                              "same message and gets the same answer")


class HeartIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    count: int = Field(default=1, ge=1, le=50, description="taps since the last heart event")


class MessageRef(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    message_id: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(default="", max_length=200)


class SanctionIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    user_id: int = Field(ge=1, le=MAX_ID)
    minutes: int = Field(default=10, ge=1, le=1440, description="mute only")
    reason: str = Field(default="", max_length=200)


class NoticeIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    text: str = Field(default="", max_length=300, description="empty: no pinned notice")


class SlowModeIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    seconds: int = Field(ge=0, le=600, description="0: off")


class SpotlightIn(Strict):
    broadcast_id: int = Field(ge=1, le=MAX_ID)
    product_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="null: nothing in the spotlight")


class BlockedWordsIn(Strict):
    words: list[str] = Field(max_length=1000)


class BlockedWordsOut(BaseModel):
    words: list[str]


# -- what the server sends (documented in docs/protocol.md) --------------------------------------

class RoomEnvelope(BaseModel):
    """`room`: one event of the room's stream. `room:batch` carries a list of these, in order."""

    e: str = Field(description="the stream's epoch; it changes if the stream's storage was lost")
    o: int = Field(description="the event's offset: increasing by one per event in the room")
    t: str = Field(description="chat | chat:deleted | notice | slow_mode | spotlight | purchase")
    d: dict[str, Any] = Field(description="chat: {id, user_id, name, role, text, at}; chat:deleted: {id}; "
                                          "notice: {text}; slow_mode: {seconds}; spotlight: {product_id, item}; "
                                          "purchase: {buyer (masked), lines: [{product_id, quantity, name_ko, "
                                          "name_en}], at}")
    ts: float = Field(description="server time, seconds since the epoch")


class CountsOut(BaseModel):
    """`counts`: the room's figures, coalesced (a few times a second at most)."""

    broadcast_id: int
    viewers: int = Field(description="viewers in the room across every server process")
    hearts: int = Field(description="hearts tapped since the broadcast began")


class StateOut(BaseModel):
    """`broadcast:state` (to the room) and `schedule:state` (to schedule watchers)."""

    broadcast_id: int
    state: BroadcastState
    at: str = Field(description="when it happened (ISO 8601, UTC)")


class EndingOut(BaseModel):
    """`broadcast:ending`: the hour ends soon (sent once, `schedule.warn_minutes` before the end)."""

    broadcast_id: int
    ends_at: str
    seconds_left: int


class ReminderLiveOut(BaseModel):
    """`reminder:live`: to a viewer who asked to be reminded, when the broadcast goes live."""

    broadcast_id: int
    title_ko: str
    title_en: str
    url: str


class SanctionOut(BaseModel):
    """`you:muted` / `you:banned`: to the viewer concerned."""

    broadcast_id: int
    user_id: int
    kind: str
    until: str | None


class ReportedOut(BaseModel):
    """`mod:reported`: to the broadcast's console (after `host:watch`)."""

    broadcast_id: int
    message_id: int
    reason: str
