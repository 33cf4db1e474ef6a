"""`livecommerce loadtest` against a real server: every message reaches every viewer and is counted."""

from __future__ import annotations

import argparse

from aiohttp.test_utils import TestServer

from livecommerce.loadtest import korean_text, run
from tests.support import World


def test_korean_text_has_the_size_asked() -> None:
    text = korean_text("#1@1.0 ", 230)
    assert 227 <= len(text.encode()) <= 230
    assert sum("\uac00" <= ch <= "\ud7a3" for ch in text) > 50


async def test_loadtest_counts_every_delivery(server: TestServer, world: World) -> None:
    args = argparse.Namespace(url=f"http://127.0.0.1:{server.port}", broadcast=world.live.id, viewers=12, senders=2,
                              rate=4.0, hearts=8.0, seconds=1.5, bytes=230, server_pid=0, login=True)
    result = await run(args)
    assert result["acked"] == result["sent"] == 6
    assert result["expected"] == 6 * (12 + 2)
    assert result["deliveries"] == result["expected"] and result["lost"] == 0
    assert result["p50_ms"] is not None and result["p99_ms"] >= result["p50_ms"]
