"""Nothing acknowledged is lost when the process dies: `livecommerce serve` is killed with `kill -9` in the
middle of a chat burst (three authors, several messages in flight each, so that messages are written in
shared groups), and every message answered `ok` before the kill is in the database with its text. On
PostgreSQL and Redis when the run has them, else on the SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from sessions.models import ChatMessage
from tests.processes import Served, until
from tests.support import Viewer, World, fresh, socket_for

from ..conftest import PG_URL
from .test_restart import serve_config, sign_in


@pytest.fixture
def backend() -> str:
    """Once, on PostgreSQL (and Redis) when the run has them, else on the SQLite file."""
    return "postgres" if PG_URL else "sqlite"


async def test_a_process_killed_in_a_chat_burst_keeps_every_message_it_acknowledged(
        config: Config, world: World, db: AsyncSession, tmp_path: Path) -> None:
    bid = world.live.id
    server = Served(tmp_path, serve_config(config, tmp_path))
    await server.start()
    sessions, senders = [], []
    acked: dict[int, str] = {}
    try:
        for username in ("host", "host2", "staff"):  # hosts and staff: no rate limit in the way
            http, cookie = await sign_in(server.base, username)
            sessions.append(http)
            s = Viewer(await socket_for(server.base, cookie))
            assert (await s.call("join", {"broadcast_id": bid}))["ok"]
            senders.append(s)

        async def pump(s: Viewer, name: str) -> None:
            n = 0
            with contextlib.suppress(Exception):  # the process is gone: its last calls fail
                while True:
                    text = f"{name} 메시지 {n}"
                    ack = await s.call("chat:send", {"broadcast_id": bid, "text": text, "client_id": f"{name}-{n}"})
                    if ack.get("ok"):
                        acked[ack["data"]["id"]] = text
                    n += 1

        pumps = [asyncio.create_task(pump(s, f"s{i}p{j}")) for i, s in enumerate(senders) for j in range(4)]
        await until(lambda: asyncio.sleep(0, len(acked)), lambda n: n >= 150, 60)
        server.kill()  # in the middle of the burst: twelve sends in flight
        kept = dict(acked)
        await asyncio.wait(pumps, timeout=30)
        for t in pumps:
            t.cancel()
        await fresh(db)
        rows: dict[int, str] = dict((await db.execute(select(ChatMessage.id, ChatMessage.text)
                                      .where(ChatMessage.id.in_(list(kept))))).all())
        assert rows == kept, sorted(set(kept) - set(rows))
        written = await db.scalar(select(ChatMessage.id).order_by(ChatMessage.id.desc()).limit(1))
        print(f"\n{len(kept)} messages answered ok before the kill, all kept; the last written: {written}")
    finally:
        for s in senders:
            with contextlib.suppress(Exception):
                await s.sio.disconnect()
        for http in sessions:
            await http.close()
        server.stop()
