"""A broadcast room's stream: every room event a viewer must not miss gets a position — an
increasing offset, plus an epoch that changes if the stream's storage was lost (as Centrifugo does).
A viewer who reconnects with the last position it saw gets exactly what it missed, nothing twice,
whichever server process it lands on; when the gap is too old or too long, or the epoch changed, it
is told so and gets the full state instead — never a silent gap.

With Redis: a Redis Stream per room (entry ids are the offsets), its epoch and counter beside it,
all written by one Lua script. Without Redis (one process): the same in memory.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis

from livecommerce import jsonenc
from livecommerce.internals import pubsub_emit_parts


@dataclass(frozen=True)
class Envelope:
    """What viewers receive as the `room` event: epoch, offset, type, data, and the server time."""

    epoch: str
    offset: int
    type: str
    data: Any
    ts: float

    def wire(self) -> dict[str, Any]:
        return {"e": self.epoch, "o": self.offset, "t": self.type, "d": self.data, "ts": round(self.ts, 3)}


@dataclass(frozen=True)
class Recovery:
    recovered: bool
    events: list[Envelope]
    epoch: str
    offset: int  # the stream's position now
    reason: str = ""  # why not recovered: "epoch", "too_old", "too_long", "ahead"


DEDUPE_SECONDS = 86_400  # how long an event's key makes a repeat of it the same event


class RoomStream(Protocol):
    async def publish(self, room: int, type_: str, data: Any, *, key: str = "") -> Envelope: ...

    async def position(self, room: int) -> tuple[str, int]: ...

    async def since(self, room: int, epoch: str, offset: int) -> Recovery: ...


def decide(epoch_now: str, top: int, asked_epoch: str, asked_offset: int, oldest: int | None,
           oldest_ts: float | None, now: float, max_count: int, max_age: float) -> str:
    """Whether a viewer at (asked_epoch, asked_offset) can be brought up to date from the stream:
    "" if yes, else the reason. Pure, so it is tested directly."""
    if asked_epoch != epoch_now:
        return "epoch"
    if asked_offset > top or asked_offset < 0:
        return "ahead"
    if asked_offset == top:
        return ""
    if top - asked_offset > max_count:
        return "too_long"
    if oldest is None or oldest > asked_offset + 1:
        return "too_old"  # trimmed away
    if oldest_ts is not None and now - oldest_ts > max_age:
        return "too_old"
    return ""


class MemoryStream:
    """One process, no Redis: the stream in memory. The epoch is new at every start."""

    def __init__(self, max_length: int, recover_max: int, max_age: float) -> None:
        self.max_length = max_length
        self.recover_max = recover_max
        self.max_age = max_age
        self.epoch = secrets.token_hex(4)
        self._top: dict[int, int] = {}
        self._events: dict[int, deque[Envelope]] = {}
        self._keys: dict[str, Envelope] = {}

    async def publish(self, room: int, type_: str, data: Any, *, key: str = "") -> Envelope:
        """Append an event; with `key`, an event already appended under the same key is answered instead."""
        if key and key in self._keys:
            return self._keys[key]
        offset = self._top.get(room, 0) + 1
        self._top[room] = offset
        env = Envelope(self.epoch, offset, type_, data, time.time())
        self._events.setdefault(room, deque(maxlen=self.max_length)).append(env)
        if key:
            if len(self._keys) > 100_000:  # one process's memory: forget the oldest keys
                for old in list(self._keys)[:50_000]:
                    del self._keys[old]
            self._keys[key] = env
        return env

    async def position(self, room: int) -> tuple[str, int]:
        return self.epoch, self._top.get(room, 0)

    async def since(self, room: int, epoch: str, offset: int) -> Recovery:
        top = self._top.get(room, 0)
        events = self._events.get(room, deque())
        missed = [e for e in events if e.offset > offset] if epoch == self.epoch and 0 <= offset <= top else []
        reason = decide(self.epoch, top, epoch, offset, missed[0].offset if missed else None,
                        missed[0].ts if missed else None, time.time(), self.recover_max, self.max_age)
        if reason:
            return Recovery(False, [], self.epoch, top, reason)
        return Recovery(True, missed, self.epoch, top)


_PUBLISH = """
if ARGV[9] ~= '' then
  -- an event sent again under the same key (a retried send) is the one already in the stream
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local at = string.find(seen, ':', 1, true)
    return {string.sub(seen, 1, at - 1), tonumber(string.sub(seen, at + 1)), 1}
  end
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[3], KEYS[1])
end
local offset = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'd', ARGV[3], 't', ARGV[4], 'ts', ARGV[5])
if ARGV[6] ~= '' then
  -- Send it to every server process in the same step, so that every process sees the room's events in
  -- offset order: the envelope between the two halves of python-socketio's pub/sub message (ARGV[7..8]).
  local env = '{"e":"' .. epoch .. '","o":' .. offset .. ',"t":"' .. ARGV[4] .. '","d":' .. ARGV[3] ..
              ',"ts":' .. ARGV[5] .. '}'
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. env .. ARGV[8])
end
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[4], epoch .. ':' .. offset, 'EX', ARGV[9])
end
return {epoch, offset, 0}
"""


class RedisStream:
    """Shared by every process: a Redis Stream per room. If Redis loses the room's keys (a restart
    without persistence, a flush), the next event starts a new epoch and viewers get the full state."""

    def __init__(self, redis: Redis, prefix: str, max_length: int, recover_max: int, max_age: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.max_length = max_length
        self.recover_max = recover_max
        self.max_age = max_age
        self._publish = redis.register_script(_PUBLISH)

    def _keys(self, room: int) -> list[str]:
        base = f"{self.prefix}room:{room}"
        return [f"{base}:stream", f"{base}:epoch", f"{base}:top"]

    async def publish(self, room: int, type_: str, data: Any, *, key: str = "", channel: str = "",
                      namespace: str = "", sio_room: str = "") -> Envelope:
        """Append an event; with `channel`, also send it to the room on every server process, in the same
        atomic step (so every process delivers the room's events in offset order). With `key`, an event
        appended under the same key within a day is answered instead, and nothing is appended or sent."""
        ts = round(time.time(), 3)
        raw = jsonenc.dumps(data)
        before, after = pubsub_emit_parts("room", namespace, sio_room) if channel else ("", "")
        keys = [*self._keys(room), f"{self.prefix}event:{key}" if key else f"{self.prefix}event:-"]
        epoch, offset, _ = await self._publish(keys=keys, args=[
            secrets.token_hex(4), self.max_length, raw, type_, repr(ts), channel, before, after,
            str(DEDUPE_SECONDS) if key else ""])
        return Envelope(_s(epoch), int(offset), type_, data, ts)

    async def position(self, room: int) -> tuple[str, int]:
        _, epoch_key, top_key = self._keys(room)
        epoch, top = await self.redis.mget(epoch_key, top_key)
        if epoch is None:
            # nothing published yet: fix the epoch now so that positions handed out stay comparable
            await self.redis.set(epoch_key, secrets.token_hex(4), nx=True)
            epoch, top = await self.redis.mget(epoch_key, top_key)
        return _s(epoch), int(top or 0)

    async def since(self, room: int, epoch: str, offset: int) -> Recovery:
        stream, _, _ = self._keys(room)
        epoch_now, top = await self.position(room)
        if epoch != epoch_now or offset > top or offset < 0 or offset == top:
            reason = decide(epoch_now, top, epoch, offset, None, None, time.time(), self.recover_max, self.max_age)
            return Recovery(not reason, [], epoch_now, top, reason)
        if top - offset > self.recover_max:
            return Recovery(False, [], epoch_now, top, "too_long")
        # XRANGE answers a list (empty when nothing is in range) of entries that all have fields; redis-py's
        # types also allow a nil reply and entries without fields, which other stream commands give
        rows = await self.redis.xrange(stream, min=f"{offset + 1}-0", max="+", count=self.recover_max + 1) or []
        events = [_envelope(epoch_now, entry_id, fields) for entry_id, fields in rows if fields is not None]
        oldest = events[0].offset if events else None
        reason = decide(epoch_now, top, epoch, offset, oldest, events[0].ts if events else None, time.time(),
                        self.recover_max, self.max_age)
        if reason:
            return Recovery(False, [], epoch_now, top, reason)
        return Recovery(True, [e for e in events if e.offset <= top], epoch_now, top)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _envelope(epoch: str, entry_id: bytes | str | None, fields: Mapping[bytes | str, bytes | str]) -> Envelope:
    f = {_s(k): _s(v) for k, v in fields.items()}
    return Envelope(epoch, int(_s(entry_id).split("-")[0]), f["t"], json.loads(f["d"]), float(f["ts"]))
