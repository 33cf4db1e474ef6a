"""A market's order settings: its delivery options (cut-offs, the two-hour area, fees) and how buyers
may pay (a bank account for transfers, pay on delivery). Read, checked and saved here; a market with
no row takes orders with the defaults of `MarketOrderSettings`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.db import utcnow
from livecommerce.errors import NotFound
from livecommerce.models import Market

from . import rules
from .errors import refused
from .models import MarketOrderSettings
from .rules import DeliveryRules, RuleError

__all__ = ["SETTING_FIELDS", "delivery_rules", "order_settings", "save_order_settings", "seed_demo_order_settings"]

SETTING_FIELDS = ("two_hour_cutoff", "same_day_cutoff", "two_hour_postal_prefixes", "two_hour_fee", "same_day_fee",
                  "next_day_fee", "bank_name", "bank_account", "bank_holder", "transfer_hours", "cod_enabled")


async def order_settings(db: AsyncSession, market_id: int) -> MarketOrderSettings | None:
    return await db.get(MarketOrderSettings, market_id)


def delivery_rules(settings: MarketOrderSettings | None) -> DeliveryRules:
    if settings is None:
        return DeliveryRules()
    return DeliveryRules(two_hour_cutoff=settings.two_hour_cutoff, same_day_cutoff=settings.same_day_cutoff,
                         two_hour_prefixes=rules.parse_prefixes(settings.two_hour_postal_prefixes),
                         two_hour_fee=settings.two_hour_fee, same_day_fee=settings.same_day_fee,
                         next_day_fee=settings.next_day_fee)


async def save_order_settings(db: AsyncSession, market_id: int, changes: Mapping[str, Any],
                              now: datetime) -> MarketOrderSettings:
    """Create or change a market's order settings; cut-offs and the area are checked."""
    if await db.get(Market, market_id) is None:
        raise NotFound("No market with this id.", code="market_not_found")
    try:
        for name in ("two_hour_cutoff", "same_day_cutoff"):
            if name in changes:
                rules.parse_cutoff(str(changes[name]))
        if "two_hour_postal_prefixes" in changes:
            changes = {**changes, "two_hour_postal_prefixes": ",".join(
                rules.parse_prefixes(str(changes["two_hour_postal_prefixes"])))}
    except RuleError as exc:
        raise refused(exc) from None
    settings = await db.get(MarketOrderSettings, market_id)
    if settings is None:
        settings = MarketOrderSettings(market_id=market_id)
        db.add(settings)
    for name, value in changes.items():
        if name in SETTING_FIELDS:
            setattr(settings, name, value)
    settings.updated_at = now
    await db.flush()
    return settings


async def seed_demo_order_settings(db: AsyncSession, market_id: int) -> MarketOrderSettings:
    """The demo market's order settings: two-hour delivery in Seoul's Jung-gu and Jongno-gu (postal
    codes 030–032 and 045–046) until 11:00, same day until 20:00 (so evening shows deliver today),
    bank transfer to a demo account, and pay on delivery. Safe to call again."""
    return await save_order_settings(db, market_id, {
        "two_hour_cutoff": "11:00", "same_day_cutoff": "20:00",
        "two_hour_postal_prefixes": "030,031,032,045,046",
        "two_hour_fee": 4000, "same_day_fee": 3000, "next_day_fee": 0,
        "bank_name": "한마음은행", "bank_account": "000-0000-0000-00", "bank_holder": "한마음시장 상인회(데모)",
        "transfer_hours": 24, "cod_enabled": True}, utcnow())
