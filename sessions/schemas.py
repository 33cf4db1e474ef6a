"""Models of the broadcasts API and socket events; they validate input and generate the docs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from livecommerce.api import Strict

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
    lineup: list[LineupItemOut]


class BroadcastsQuery(Strict):
    state: BroadcastState | None = None
    limit: int = Field(default=50, ge=1, le=200)


class TransitionOut(BaseModel):
    broadcast_id: int
    state: BroadcastState
    at: datetime


class BroadcastRef(Strict):
    """Names the broadcast a socket event is about."""

    broadcast_id: int = Field(ge=1, le=2**53)
