"""Request and response models of the core API; they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from .api import MAX_ID, MAX_OFFSET, Patch, Strict
from .models import Role


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(Out):
    id: int
    username: str
    display_name: str
    role: Role
    is_guest: bool


class SessionOut(BaseModel):
    user: UserOut | None
    csrf_token: str = Field(description="Send as the X-CSRF-Token header on every POST, PUT, PATCH and DELETE")
    locale: str


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordIn(Strict):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256, description="at least security.password_min_length")


class GuestIn(Strict):
    nickname: str = Field(min_length=1, max_length=20)


class UserCreateIn(Strict):
    username: str = Field(min_length=2, max_length=64)
    role: Role
    password: str | None = Field(default=None, max_length=256)
    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    merchant_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class MarketOut(Out):
    id: int
    slug: str
    name_ko: str
    name_en: str
    logo: str


class MerchantOut(Out):
    id: int
    market_id: int
    name_ko: str
    name_en: str


class ProductOut(Out):
    id: int
    merchant_id: int
    name_ko: str
    name_en: str
    description_ko: str
    description_en: str
    image: str
    price: int = Field(description="Whole won (KRW)")
    stock: int
    unit_ko: str
    unit_en: str
    is_active: bool
    created_at: datetime


class ProductsQuery(Strict):
    merchant_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    market_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class ProductIn(Strict):
    merchant_id: int = Field(ge=1, le=MAX_ID)
    name_ko: str = Field(min_length=1, max_length=120)
    name_en: str = Field(min_length=1, max_length=120)
    description_ko: str = Field(default="", max_length=4000)
    description_en: str = Field(default="", max_length=4000)
    image: str = Field(default="", max_length=255, pattern=r"^(|/static/[A-Za-z0-9._/-]+|https://\S+)$")
    price: int = Field(ge=0, le=100_000_000, description="Whole won (KRW)")
    stock: int = Field(default=0, ge=0, le=1_000_000)
    unit_ko: str = Field(default="개", min_length=1, max_length=40)
    unit_en: str = Field(default="pc", min_length=1, max_length=40)


class ProductPatch(Patch):
    name_ko: str | None = Field(default=None, min_length=1, max_length=120)
    name_en: str | None = Field(default=None, min_length=1, max_length=120)
    description_ko: str | None = Field(default=None, max_length=4000)
    description_en: str | None = Field(default=None, max_length=4000)
    image: str | None = Field(default=None, max_length=255, pattern=r"^(|/static/[A-Za-z0-9._/-]+|https://\S+)$")
    price: int | None = Field(default=None, ge=0, le=100_000_000)
    stock: int | None = Field(default=None, ge=0, le=1_000_000)
    unit_ko: str | None = Field(default=None, min_length=1, max_length=40)
    unit_en: str | None = Field(default=None, min_length=1, max_length=40)
    is_active: bool | None = None


class HealthOut(BaseModel):
    status: str
    database: str
    redis: str
    bus: str = Field(description="`ok` while this process hears the Redis bus, `down` until it does again "
                                 "(503), `off` without Redis")
