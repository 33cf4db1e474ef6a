"""The catalogue: markets, their merchants (stalls) and products."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFound, ValidationFailed
from .models import Market, Merchant, Product


async def list_markets(db: AsyncSession) -> Sequence[Market]:
    return (await db.scalars(select(Market).order_by(Market.id))).all()


async def list_merchants(db: AsyncSession, market_id: int | None = None) -> Sequence[Merchant]:
    q = select(Merchant).order_by(Merchant.id)
    if market_id is not None:
        q = q.where(Merchant.market_id == market_id)
    return (await db.scalars(q)).all()


async def list_products(db: AsyncSession, *, merchant_id: int | None = None, market_id: int | None = None,
                        limit: int = 100, offset: int = 0) -> Sequence[Product]:
    q = select(Product).order_by(Product.id).limit(limit).offset(offset)
    if merchant_id is not None:
        q = q.where(Product.merchant_id == merchant_id)
    if market_id is not None:
        q = q.join(Merchant).where(Merchant.market_id == market_id)
    return (await db.scalars(q)).all()


async def get_product(db: AsyncSession, product_id: int) -> Product:
    product = await db.get(Product, product_id)
    if product is None:
        raise NotFound("No product with this id.", code="product_not_found")
    return product


async def create_product(db: AsyncSession, **fields: object) -> Product:
    merchant_id = fields["merchant_id"]
    if await db.get(Merchant, merchant_id) is None:
        raise ValidationFailed("No merchant with this id.", code="merchant_not_found")
    product = Product(**fields)
    db.add(product)
    await db.flush()
    return product


async def update_product(db: AsyncSession, product_id: int, changes: dict[str, object]) -> Product:
    product = await get_product(db, product_id)
    for key, value in changes.items():
        setattr(product, key, value)
    await db.flush()
    return product


async def get_merchant(db: AsyncSession, merchant_id: int) -> Merchant:
    merchant = await db.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("No stall with this id.", code="merchant_not_found")
    return merchant


async def create_merchant(db: AsyncSession, *, market_id: int, name_ko: str, name_en: str) -> Merchant:
    if await db.get(Market, market_id) is None:
        raise ValidationFailed("No market with this id.", code="market_not_found")
    merchant = Merchant(market_id=market_id, name_ko=name_ko, name_en=name_en)
    db.add(merchant)
    await db.flush()
    return merchant


async def update_merchant(db: AsyncSession, merchant_id: int, changes: dict[str, object]) -> Merchant:
    merchant = await get_merchant(db, merchant_id)
    for key, value in changes.items():
        setattr(merchant, key, value)
    await db.flush()
    return merchant
