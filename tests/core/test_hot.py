"""The accounts read on nearly every request: many asked at the same moment are read together and each asker
gets its own account (or None for one that does not exist), on PostgreSQL through asyncpg's own pool and on
SQLite the usual way."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.keys import AppKeys
from livecommerce.models import User
from tests.support import World


async def test_accounts_asked_together_each_come_back_to_their_asker(
        server: TestServer, db: AsyncSession, world: World) -> None:
    stored = {u.id: (u.username, u.role, u.session_epoch) for u in (await db.scalars(select(User))).all()}
    hot = server.app[AppKeys.hot]
    asked = [*stored, *stored, 999_999, *reversed(list(stored))] * 50  # more than one read's worth, repeats
    got = await asyncio.gather(*[hot.account(i) for i in asked])
    for user_id, user in zip(asked, got, strict=True):
        if user_id == 999_999:
            assert user is None
        else:
            assert user is not None and (user.username, user.role, user.session_epoch) == stored[user_id]
            assert user.id == user_id
    assert len(asked) > hot.BATCH
