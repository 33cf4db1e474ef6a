"""What a live room shares between server processes: its event stream, the chat rate limits, the
viewer count and the hearts. Kept in Redis when Redis is configured (so it holds across processes),
in memory otherwise (one process). A per-process ticker pushes the coalesced figures — viewers and
hearts — to the room a few times a second, never one frame per tap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import update

from livecommerce.config import Config
from livecommerce.keys import AppKeys

from .chat import Bucket, take
from .models import Broadcast
from .stream import MemoryStream, RedisStream, RoomStream

log = logging.getLogger("livecommerce.room")
NAMESPACE = "/live"
ROOM_PREFIX = "broadcast:"

_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + (now - at) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return ok
"""

_PRESENCE = """
local t = redis.call('TIME')
local now = tonumber(t[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('EXPIRE', KEYS[2], 120)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, h in ipairs(stale) do
  redis.call('HDEL', KEYS[1], h)
  redis.call('ZREM', KEYS[2], h)
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
return total
"""


class RoomRuntime:
    """Per app: the stream, the limits and the counters of every room."""

    def __init__(self, app: web.Application, redis: Redis | None) -> None:
        config: Config = app[AppKeys.config]
        rc = config.room
        self.app = app
        self.config = config
        self.redis = redis
        self.prefix = config.redis.prefix
        self.host_id = secrets.token_hex(6)
        if redis is not None:
            self.stream: RoomStream = RedisStream(redis, self.prefix, rc.stream_max_length, rc.recover_max,
                                                  rc.recover_max_age_seconds)
            self._bucket = redis.register_script(_BUCKET)
            self._presence = redis.register_script(_PRESENCE)
        else:
            self.stream = MemoryStream(rc.stream_max_length, rc.recover_max, rc.recover_max_age_seconds)
        self._buckets: dict[str, Bucket] = {}
        self._hearts: dict[int, int] = {}
        self._pushed: dict[int, tuple[int, int]] = {}
        self._peak: dict[int, int] = {}
        self._hearts_saved: dict[int, int] = {}
        self._words: tuple[float, list[str]] = (0.0, [])
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._sales: dict[int, int] = {}  # memory mode: a version per broadcast, bumped by each sale
        self._sales_seen: dict[int, int] = {}
        self._sales_pushed_at: dict[int, float] = {}

    async def sales_changed(self, broadcast_id: int) -> None:
        """A purchase or a cancellation committed: every process will push the new stock."""
        if self.redis is not None:
            await self.redis.incr(f"{self.prefix}room:{broadcast_id}:sales")
        else:
            self._sales[broadcast_id] = self._sales.get(broadcast_id, 0) + 1

    async def _sales_version(self, broadcast_id: int) -> int:
        if self.redis is not None:
            return int(await self.redis.get(f"{self.prefix}room:{broadcast_id}:sales") or 0)
        return self._sales.get(broadcast_id, 0)

    def lock(self, broadcast_id: int) -> asyncio.Lock:
        lock = self._locks.get(broadcast_id)
        if lock is None:
            lock = self._locks[broadcast_id] = asyncio.Lock()
        return lock

    # -- limits ---------------------------------------------------------------------------------

    async def allow(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from the bucket `key`; False if it is empty."""
        if self.redis is not None:
            ttl = int(max(1.0, burst / rate) * 1000) + 1000
            return bool(await self._bucket(keys=[f"{self.prefix}bucket:{key}"], args=[rate, burst, ttl]))
        ok, bucket = take(self._buckets.get(key), time.monotonic(), rate, burst)
        self._buckets[key] = bucket
        if len(self._buckets) > 100_000:  # forget idle buckets
            self._buckets.clear()
        return ok

    async def words(self, loader: Any) -> list[str]:
        """The blocked words, cached for a few seconds per process."""
        at, words = self._words
        if time.monotonic() - at > 5.0:
            words = await loader()
            self._words = (time.monotonic(), words)
        return words

    def forget_words(self) -> None:
        self._words = (0.0, [])

    # -- hearts and viewers ---------------------------------------------------------------------

    async def add_hearts(self, broadcast_id: int, n: int) -> None:
        if self.redis is not None:
            await self.redis.incrby(f"{self.prefix}room:{broadcast_id}:hearts", n)
        else:
            self._hearts[broadcast_id] = self._hearts.get(broadcast_id, 0) + n

    async def hearts(self, broadcast_id: int) -> int:
        if self.redis is not None:
            return int(await self.redis.get(f"{self.prefix}room:{broadcast_id}:hearts") or 0)
        return self._hearts.get(broadcast_id, 0)

    def local_rooms(self) -> dict[int, int]:
        """Viewers connected to this process, per broadcast."""
        manager = self.app[AppKeys.sio].manager
        out: dict[int, int] = {}
        for room, members in manager.rooms.get(NAMESPACE, {}).items():
            if isinstance(room, str) and room.startswith(ROOM_PREFIX):
                out[int(room[len(ROOM_PREFIX):])] = len(members)
        return out

    async def viewers(self, broadcast_id: int, local: int) -> int:
        """The room's viewers across every process (this process reports its own count)."""
        if self.redis is None:
            return local
        base = f"{self.prefix}room:{broadcast_id}"
        return int(await self._presence(keys=[f"{base}:presence", f"{base}:presence_seen"],
                                        args=[self.host_id, local, 10]))

    async def counts(self, broadcast_id: int) -> dict[str, int]:
        local = self.local_rooms().get(broadcast_id, 0)
        return {"viewers": await self.viewers(broadcast_id, local), "hearts": await self.hearts(broadcast_id)}

    async def tick(self) -> None:
        """Push each room's figures if they changed; record the peak and the hearts."""
        manager = self.app[AppKeys.sio].manager
        for bid, local in self.local_rooms().items():
            viewers = await self.viewers(bid, local)
            hearts = await self.hearts(bid)
            if self._pushed.get(bid) != (viewers, hearts):
                self._pushed[bid] = (viewers, hearts)
                manager.write_room("counts", {"broadcast_id": bid, "viewers": viewers, "hearts": hearts},
                                   NAMESPACE, f"{ROOM_PREFIX}{bid}")
            version = await self._sales_version(bid)
            if version != self._sales_seen.get(bid, 0) and time.monotonic() - self._sales_pushed_at.get(bid, 0) >= 1.0:
                self._sales_seen[bid] = version
                self._sales_pushed_at[bid] = time.monotonic()
                from .feed import push_sales

                await push_sales(self.app, self, bid, f"mods:{bid}")
            if viewers > self._peak.get(bid, 0) or hearts > self._hearts_saved.get(bid, 0) + 50:
                self._peak[bid] = max(viewers, self._peak.get(bid, 0))
                self._hearts_saved[bid] = hearts
                await self._save(bid, self._peak[bid], hearts)

    async def _save(self, bid: int, peak: int, hearts: int) -> None:
        async with self.app[AppKeys.db].begin() as db:
            await db.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.peak_viewers < peak)
                             .values(peak_viewers=peak))
            await db.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.hearts < hearts)
                             .values(hearts=hearts))

    async def run(self) -> None:
        interval = self.config.room.counts_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room figures tick failed")


ROOMS = web.AppKey("rooms", RoomRuntime)


async def rooms_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = RoomRuntime(app, app.get(AppKeys.redis))
    app[ROOMS] = runtime
    runtime._task = asyncio.create_task(runtime.run(), name="livecommerce-room-figures")
    yield
    runtime._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runtime._task
