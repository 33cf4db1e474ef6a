"""Alembic environment: runs the migrations over the async engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import sessions.models  # noqa: F401  (registers the broadcast tables)
from coupons import models as coupon_models  # noqa: F401  (registers the coupon and giveaway tables)
from livecommerce import models  # noqa: F401  (registers the core tables)
from livecommerce import webpush as push_models  # noqa: F401  (registers the push subscriptions' table)
from livecommerce.db import Base
from orders import models as order_models  # noqa: F401  (registers the order tables)
from sessions import reminders as reminder_models  # noqa: F401  (registers the push reminders' table)

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url is set by livecommerce.db._alembic_config"
if context.is_offline_mode():
    run_offline(url)
else:
    asyncio.run(_run_async(url))
