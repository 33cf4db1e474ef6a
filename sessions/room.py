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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.config import Config
from livecommerce.db import writer
from livecommerce.errors import Unavailable
from livecommerce.fanout import FastRedisManager
from livecommerce.keys import AppKeys
from livecommerce.realtime import LIVE_NAMESPACE, SocketUser
from livecommerce.throttle import Bucket

from . import planning
from .chat import take_all
from .models import Broadcast, BroadcastState
from .stream import Envelope, MemoryStream, RedisStream, RoomStream

log = logging.getLogger("livecommerce.room")
NAMESPACE = LIVE_NAMESPACE
ROOM_PREFIX = "broadcast:"
SCHEDULE_ROOM = "schedule"


def room(broadcast_id: int) -> str:
    """The socket.io room of a broadcast's viewers."""
    return f"{ROOM_PREFIX}{broadcast_id}"


def user_room(user_id: int) -> str:
    """Every socket of one signed-in person (reminders and moderation find them here)."""
    return f"user:{user_id}"


def moderators_room(broadcast_id: int) -> str:
    """The consoles watching a broadcast (after `host:watch`)."""
    return f"mods:{broadcast_id}"


SnapshotPart = Callable[[web.Application, int, SocketUser], Awaitable[dict[str, Any]]]  # broadcast id
TickListener = Callable[[web.Application, int], Awaitable[None]]
TransitionListener = Callable[[web.Application, int, BroadcastState, datetime], Awaitable[None]]
ChatListener = Callable[[web.Application, int, SocketUser, str], Awaitable[None]]


@dataclass
class RoomHooks:
    """Where other domains plug into a broadcast's room: parts of the join snapshot (each returns keys
    merged into the answer of `join`), listeners on the room's ticker (a few times a second, per room with
    viewers on this process), on the broadcast's transitions (after the commit, on the process that made
    the move) and on chat messages (after the message is sent to the room)."""

    snapshot_parts: list[SnapshotPart] = field(default_factory=list)
    on_tick: list[TickListener] = field(default_factory=list)
    on_transition: list[TransitionListener] = field(default_factory=list)
    on_chat: list[ChatListener] = field(default_factory=list)  # after a message is posted and sent


ROOM_HOOKS = web.AppKey("room_hooks", RoomHooks)


def room_hooks(app: web.Application) -> RoomHooks:
    """The app's room hooks, made on first use (domains register into them in their `setup`)."""
    hooks = app.get(ROOM_HOOKS)
    if hooks is None:
        hooks = app[ROOM_HOOKS] = RoomHooks()
    return hooks

# Token buckets {t: tokens, a: at}, KEYS the buckets, ARGV (rate, burst, ttl ms) for each: one token from
# each, or from none. Answers 0, or the 1-based position of the first empty bucket.
_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = {}
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local b = redis.call('HMGET', KEYS[i], 't', 'a')
  local n, at = tonumber(b[1]), tonumber(b[2])
  if n == nil then n = burst; at = now end
  tokens[i] = math.min(burst, n + (now - at) * rate)
end
local empty = 0
for i = 1, #KEYS do
  if tokens[i] < 1 and empty == 0 then empty = i end
end
for i = 1, #KEYS do
  if empty == 0 then tokens[i] = tokens[i] - 1 end
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i]), 'a', tostring(now))
  redis.call('PEXPIRE', KEYS[i], ARGV[3 * i])
end
return empty
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
return {total, redis.call('INCRBY', KEYS[3], ARGV[4])}
"""


class Versions:
    """A version per broadcast for one kind of change (sales, claims…), bumped after each commit that makes
    such a change: in Redis when it is configured (every process sees the bump), in memory otherwise. Each
    process pushes the new figures to its viewers when the version it last pushed is behind, at most every
    `min_interval` seconds: many changes, one push."""

    def __init__(self, redis: Redis | None, prefix: str, name: str, min_interval: float = 1.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.name = name
        self.min_interval = min_interval
        self._local: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._pushed_at: dict[int, float] = {}

    def _key(self, broadcast_id: int) -> str:
        return f"{self.prefix}room:{broadcast_id}:{self.name}"

    async def bump(self, broadcast_id: int) -> None:
        """After a commit that changed the figure. Redis away, the bump is lost, never the change nor its
        answer: the figure is pushed with the next change once Redis is back."""
        if self.redis is not None:
            try:
                await self.redis.incr(self._key(broadcast_id))
            except (RedisError, OSError) as exc:
                log.warning("a figure's change could not be counted", extra={"figure": self.name,
                                                                              "broadcast": broadcast_id,
                                                                              "error": str(exc)})
        else:
            self._local[broadcast_id] = self._local.get(broadcast_id, 0) + 1

    async def version(self, broadcast_id: int) -> int:
        if self.redis is not None:
            return int(await self.redis.get(self._key(broadcast_id)) or 0)
        return self._local.get(broadcast_id, 0)

    async def due(self, broadcast_id: int) -> bool:
        """True (once per change) when the version moved since this process last pushed."""
        version = await self.version(broadcast_id)
        now = time.monotonic()
        if version == self._seen.get(broadcast_id, 0) or now - self._pushed_at.get(broadcast_id, 0) < self.min_interval:
            return False
        self._seen[broadcast_id] = version
        self._pushed_at[broadcast_id] = now
        return True


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
            self._buckets_script = redis.register_script(_BUCKETS)
            self._presence = redis.register_script(_PRESENCE)
        else:
            self.stream = MemoryStream(rc.stream_max_length, rc.recover_max, rc.recover_max_age_seconds)
        self._buckets: dict[str, Bucket] = {}
        self._hearts: dict[int, int] = {}
        self._hearts_pending: dict[int, int] = {}  # taps not yet added in Redis
        self._pushed: dict[int, tuple[int, int]] = {}
        self._peak: dict[int, int] = {}
        self._hearts_saved: dict[int, int] = {}
        self._saved_at: dict[int, float] = {}
        self._words: tuple[float, list[str]] = (0.0, [])
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._known: set[int] = set()  # broadcasts whose room had viewers on this process
        self._history: dict[int, tuple[str, int, list[dict[str, Any]]]] = {}  # see `recent_chat`
        self.hooks = room_hooks(app)

    def lock(self, broadcast_id: int) -> asyncio.Lock:
        lock = self._locks.get(broadcast_id)
        if lock is None:
            lock = self._locks[broadcast_id] = asyncio.Lock()
        return lock

    # -- limits ---------------------------------------------------------------------------------

    async def take_tokens(self, buckets: Sequence[tuple[str, float, int]]) -> int:
        """One token from each bucket `(key, rate, burst)`, or from none (one Redis round trip): 0, or the
        1-based position of the first bucket that was empty."""
        if self.redis is not None:
            args: list[float | int] = []
            for _key, rate, burst in buckets:
                args += [rate, burst, int(max(1.0, burst / rate) * 1000) + 1000]
            return int(await self._buckets_script(keys=[f"{self.prefix}bucket:{k}" for k, _, _ in buckets],
                                                  args=args))
        empty, after = take_all([self._buckets.get(k) for k, _, _ in buckets], time.monotonic(),
                                [(rate, burst) for _, rate, burst in buckets])
        for (key, _, _), b in zip(buckets, after, strict=True):
            self._buckets[key] = b
        if len(self._buckets) > 100_000:  # forget idle buckets
            self._buckets.clear()
        return empty

    async def words(self, loader: Any) -> list[str]:
        """The blocked words, cached for a few seconds per process."""
        at, words = self._words
        if time.monotonic() - at > 5.0:
            words = await loader()
            self._words = (time.monotonic(), words)
        return words

    def forget_words(self) -> None:
        self._words = (0.0, [])

    # -- the bus ----------------------------------------------------------------------------------

    async def missed(self, sio_room: str, epoch: str, offset: int) -> list[dict[str, Any]] | None:
        """The room's events after (epoch, offset), as viewers receive them; None when the stream no longer
        holds them all (a new epoch, or too old): viewers then ask for the full state."""
        rec = await self.stream.since(int(sio_room[len(ROOM_PREFIX):]), epoch, offset)
        return [e.wire() for e in rec.events] if rec.recovered else None

    def joined_at(self, broadcast_id: int, epoch: str, offset: int) -> None:
        """A viewer on this process joined at (epoch, offset): it gets the room's events after it, in order."""
        manager = self.app[AppKeys.sio].manager
        if isinstance(manager, FastRedisManager):
            manager.seed(NAMESPACE, room(broadcast_id), epoch, offset)

    # -- hearts and viewers ---------------------------------------------------------------------

    def add_hearts(self, broadcast_id: int, n: int) -> None:
        """Count taps: added up in this process's memory and sent to Redis once per figures' interval
        (`hearts`), so a room full of tapping viewers costs one Redis round trip per interval, not one
        per tap."""
        if self.redis is not None:
            self._hearts_pending[broadcast_id] = self._hearts_pending.get(broadcast_id, 0) + n
        else:
            self._hearts[broadcast_id] = self._hearts.get(broadcast_id, 0) + n

    def _members(self) -> dict[Any, Any]:
        return self.app[AppKeys.sio].manager.rooms.get(NAMESPACE, {})  # type: ignore[no-any-return]

    def entered(self, broadcast_id: int) -> None:
        """A socket entered the broadcast's room (`local_rooms` walks these, not every socket's room)."""
        self._known.add(broadcast_id)

    def local_rooms(self) -> dict[int, int]:
        """Viewers connected to this process, per broadcast (rooms with none are forgotten)."""
        members = self._members()
        out: dict[int, int] = {}
        for bid in list(self._known):
            n = len(members.get(room(bid)) or ())
            if n:
                out[bid] = n
            else:
                self._known.discard(bid)
        return out

    def local_viewers(self, broadcast_id: int) -> int:
        """Viewers of one broadcast connected to this process."""
        return len(self._members().get(room(broadcast_id)) or ())

    def in_room(self, sid: str, broadcast_id: int) -> bool:
        return sid in (self._members().get(room(broadcast_id)) or ())

    def rooms_of(self, sid: str) -> list[int]:
        """The broadcasts whose room the socket is in (at most one, as `join` keeps it)."""
        members = self._members()
        return [bid for bid in self._known if sid in (members.get(room(bid)) or ())]

    def recent_chat(self, broadcast_id: int, epoch: str, offset: int) -> list[dict[str, Any]] | None:
        """The chat history a joining viewer gets, as read when the room's stream stood at (epoch, offset)
        — kept until the stream moves (a message, a removal), so that viewers joining a quiet room at the
        same time share one read."""
        kept = self._history.get(broadcast_id)
        return kept[2] if kept is not None and kept[0] == epoch and kept[1] == offset else None

    def keep_chat(self, broadcast_id: int, epoch: str, offset: int, history: list[dict[str, Any]]) -> None:
        if len(self._history) > 1000:
            self._history.clear()
        self._history[broadcast_id] = (epoch, offset, history)

    def forget_chat(self, broadcast_id: int) -> None:
        self._history.pop(broadcast_id, None)

    async def figures(self, broadcast_id: int, local: int) -> tuple[int, int]:
        """The room's viewers and hearts across every process, in one round trip: this process reports its
        own viewers (`local`) and adds the taps it counted since the last time."""
        if self.redis is None:
            return local, self._hearts.get(broadcast_id, 0)
        base = f"{self.prefix}room:{broadcast_id}"
        pending = self._hearts_pending.pop(broadcast_id, 0)
        try:
            viewers, hearts = await self._presence(keys=[f"{base}:presence", f"{base}:presence_seen", f"{base}:hearts"],
                                                   args=[self.host_id, local, 10, pending])
        except BaseException:  # not counted: kept for the next interval
            if pending:
                self._hearts_pending[broadcast_id] = self._hearts_pending.get(broadcast_id, 0) + pending
            raise
        return int(viewers), int(hearts)

    async def counts(self, broadcast_id: int) -> dict[str, int]:
        viewers, hearts = await self.figures(broadcast_id, self.local_viewers(broadcast_id))
        return {"viewers": viewers, "hearts": hearts}

    async def tick(self) -> None:
        """Push each room's figures if they changed; record the peak and the hearts."""
        manager = self.app[AppKeys.sio].manager
        rooms = self.local_rooms()
        for bid in [b for b in self._hearts_pending if b not in rooms]:  # tapped, then everyone left
            await self.figures(bid, 0)
        for bid, local in rooms.items():
            viewers, hearts = await self.figures(bid, local)
            if self._pushed.get(bid) != (viewers, hearts):
                self._pushed[bid] = (viewers, hearts)
                manager.write_room("counts", {"broadcast_id": bid, "viewers": viewers, "hearts": hearts},
                                   NAMESPACE, room(bid))
            for listener in self.hooks.on_tick:
                await listener(self.app, bid)
            saved = self._hearts_saved.get(bid, 0)
            # Hearts are written every 50 or so, and the last of a burst within a second: the figure on the
            # broadcast always catches up with the room's.
            settled = hearts > saved and time.monotonic() - self._saved_at.get(bid, 0.0) >= 1.0
            if viewers > self._peak.get(bid, 0) or hearts > saved + 50 or settled:
                self._peak[bid] = max(viewers, self._peak.get(bid, 0))
                self._hearts_saved[bid] = hearts
                self._saved_at[bid] = time.monotonic()
                await self._save(bid, self._peak[bid], hearts)

    async def _save(self, bid: int, peak: int, hearts: int) -> None:
        # Through a connection, not the app's sessions: no cache shows these figures, so the commit must not
        # make the caches that watch the broadcast (the join snapshot, the chat rules) read it again.
        async with writer(self.app[AppKeys.engine]).begin() as conn:
            await conn.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.peak_viewers < peak)
                               .values(peak_viewers=peak))
            await conn.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.hearts < hearts)
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
    manager = app[AppKeys.sio].manager
    if isinstance(manager, FastRedisManager):
        manager.filler = runtime.missed  # a process back on the bus reads what it missed from the streams
    app[AppKeys.metrics].rooms.source = runtime.local_rooms  # read at each scrape of /metrics
    yield
    app[AppKeys.metrics].rooms.source = None
    runtime._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runtime._task


async def publish(app: web.Application, broadcast_id: int, type_: str, data: Any, *, key: str = "") -> Envelope:
    """Give a room event its position in the room's stream and send it to the room, so that every viewer
    receives the room's events in offset order. Once this returns, every process's viewers get the event
    (live, or from the stream when a process was away from the bus); when it raises `Unavailable` (Redis
    did not answer), the event is in no stream and reached no one. With `key`, an event already published
    under the same key is answered instead (a retried send is the same event)."""
    rt = app[ROOMS]
    stream = rt.stream
    if isinstance(stream, RedisStream):
        manager = app[AppKeys.sio].manager
        try:
            return await stream.publish(broadcast_id, type_, data, key=key, channel=manager.channel,
                                        namespace=NAMESPACE, sio_room=room(broadcast_id))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # the script runs whole or not at all: a reply lost after it ran is the one case where
            # the event may stand; a retry under the same key then answers it without a second copy
            log.warning("room event not published: Redis did not answer",
                        extra={"broadcast": broadcast_id, "type": type_, "error": type(exc).__name__})
            raise Unavailable() from exc
    async with rt.lock(broadcast_id):  # one process: publish and send in one go
        env = await stream.publish(broadcast_id, type_, data, key=key)
        await app[AppKeys.sio].emit("room", env.wire(), room=room(broadcast_id), namespace=NAMESPACE)
    return env


async def publish_or_take_back(app: web.Application, broadcast_id: int, type_: str, data: Any,
                               take_back: Callable[[AsyncSession], Awaitable[bool]], *, key: str = "",
                               ) -> Envelope | None:
    """Send to the room a change already committed; if the room cannot be told (`Unavailable`), take the
    change back in a transaction of its own and raise, so that nothing stands that viewers did not get.
    `take_back` answers False when the change must stand after all (someone acted on it meanwhile, as a
    viewer who joined and claimed a drop): then it is logged and None returned — the room's join snapshot
    carries it to whoever comes next."""
    try:
        return await publish(app, broadcast_id, type_, data, key=key)
    except Unavailable:
        async with app[AppKeys.db].begin() as db:
            taken_back = await take_back(db)
        if taken_back:
            raise
        log.warning("a change the room could not be told of stands", extra={"broadcast": broadcast_id,
                                                                            "type": type_})
        return None


async def push_transition(app: web.Application, broadcast_id: int, state: BroadcastState, at: datetime) -> None:
    """After the commit: tell everyone in the room, and every page watching the schedule; when a show
    goes live, tell the viewers who asked to be reminded; then the other domains' transition listeners."""
    sio = app[AppKeys.sio]
    payload = {"broadcast_id": broadcast_id, "state": state.value, "at": at.isoformat()}
    await sio.emit("broadcast:state", payload, room=room(broadcast_id), namespace=NAMESPACE)
    await sio.emit("schedule:state", payload, room=SCHEDULE_ROOM, namespace=NAMESPACE)
    if state is BroadcastState.LIVE:
        async with app[AppKeys.reader]() as db:
            b = await db.get(Broadcast, broadcast_id)
            users = await planning.reminded_users(db, broadcast_id)
        if b is not None:
            note = {"broadcast_id": broadcast_id, "title_ko": b.title_ko, "title_en": b.title_en,
                    "url": f"/live/{broadcast_id}"}
            for uid in users:
                await sio.emit("reminder:live", note, room=user_room(uid), namespace=NAMESPACE)
    for listener in room_hooks(app).on_transition:
        try:
            await listener(app, broadcast_id, state, at)
        except Exception:  # one domain's listener must not keep the others from hearing it
            log.exception("transition listener failed", extra={"broadcast": broadcast_id, "state": state.value})


async def push_warning(app: web.Application, broadcast_id: int, ends_at: datetime, now: datetime) -> None:
    """The show ends soon: the host console shows a warning, viewers a countdown."""
    seconds = max(0, int((ends_at - now).total_seconds()))
    await app[AppKeys.sio].emit("broadcast:ending", {"broadcast_id": broadcast_id, "ends_at": ends_at.isoformat(),
                                                     "seconds_left": seconds},
                                room=room(broadcast_id), namespace=NAMESPACE)
