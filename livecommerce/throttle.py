"""Sign-in throttling and the limits on what anyone may send without signing in.

Failed sign-ins are counted per account name and per address. After a few free failures each further one
makes the next attempt wait longer (`delay_after`: doubling up to a cap); while that wait runs, attempts are
refused with 429 and `Retry-After` before the password is even checked, so guessing is slow whether or not
the account exists — the answer never tells which. A successful sign-in clears its account's count; failures
are forgotten after `security.login_window_minutes` without one. Guests' joins are a token bucket per address.

The counts live in Redis when it is configured (every process sees the same), in this process's memory
otherwise. Redis away: the attempt is let through (a refused sign-in for everyone would be worse than a
slower guesser for a moment), and the log says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .config import SecurityConfig
from .errors import TooManyAttempts

log = logging.getLogger("livecommerce.throttle")


def delay_after(failures: int, free: int, base: float, cap: float) -> float:
    """Seconds to wait after `failures` failures in a row: none for the first `free`, then `base`, doubling
    with each failure, at most `cap`."""
    if failures < free:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - free, 60))


def wait_left(failures: int, last: float, now: float, free: int, base: float, cap: float) -> int:
    """Whole seconds still to wait at `now` after `failures` failures, the last at `last` (0: go ahead)."""
    left = last + delay_after(failures, free, base, cap) - now
    return math.ceil(left) if left > 0 else 0


@dataclass
class Bucket:
    tokens: float
    at: float


def take(bucket: Bucket | None, now: float, rate: float, burst: int) -> tuple[bool, Bucket]:
    """Take one token from a bucket that refills `rate` per second up to `burst`."""
    tokens = float(burst) if bucket is None else min(float(burst), bucket.tokens + (now - bucket.at) * rate)
    if tokens >= 1.0:
        return True, Bucket(tokens - 1.0, now)
    return False, Bucket(tokens, now)


# Failures: a hash {n: failures, t: time of the last}, kept `window` seconds after the last failure.
_FAIL = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""
# A token bucket {tokens, at}: ARGV now, rate, burst, ttl; 1 if a token was taken.
_BUCKET = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = burst
if b[1] then tokens = math.min(burst, tonumber(b[1]) + (now - tonumber(b[2])) * rate) end
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return ok
"""


class Throttle:
    """The app's sign-in and anonymous-write limits (`THROTTLE`). `clock` is wall-clock seconds (shared with
    the other processes through Redis)."""

    LIMIT = 100_000  # keys kept in memory at most

    def __init__(self, config: SecurityConfig, redis: Redis | None = None, prefix: str = "lc:",
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.redis = redis
        self.prefix = prefix + "throttle:"
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}
        self._buckets: dict[str, Bucket] = {}

    # -- sign-in ----------------------------------------------------------------------------------

    def _keys(self, username: str, address: str) -> list[tuple[str, int]]:
        c = self.config
        return [(f"account:{username.strip().lower()[:64]}", c.login_free_attempts),
                (f"address:{address}", c.login_address_free_attempts)]

    async def check_sign_in(self, username: str, address: str) -> None:
        """Refuse (`TooManyAttempts`) while the account name or the address must still wait."""
        c = self.config
        now = self.clock()
        wait = 0
        for key, free in self._keys(username, address):
            failures, last = await self._read(key)
            wait = max(wait, wait_left(failures, last, now, free, c.login_delay_seconds, c.login_max_delay_seconds))
        if wait:
            raise TooManyAttempts(wait)

    async def failed_sign_in(self, username: str, address: str) -> None:
        now = self.clock()
        window = self.config.login_window_minutes * 60
        for key, _ in self._keys(username, address):
            if self.redis is not None:
                try:
                    await self.redis.eval(_FAIL, 1, self.prefix + key, repr(now), window)
                    continue
                except RedisError:
                    log.warning("sign-in throttling without Redis", extra={"key": key})
                    continue
            failures, _last = self._failures.get(key, (0, now))
            if len(self._failures) >= self.LIMIT:
                self._failures = {k: v for k, v in self._failures.items() if v[1] + window > now}
                if len(self._failures) >= self.LIMIT:
                    self._failures.clear()
            self._failures[key] = (failures + 1, now)

    async def signed_in(self, username: str) -> None:
        """A right password: its account's failures are forgotten (the address's stay until they expire)."""
        key = self._keys(username, "")[0][0]
        if self.redis is not None:
            try:
                await self.redis.delete(self.prefix + key)
            except RedisError:
                log.warning("sign-in throttling without Redis", extra={"key": key})
            return
        self._failures.pop(key, None)

    async def _read(self, key: str) -> tuple[int, float]:
        if self.redis is not None:
            try:
                n, t = await self.redis.hmget(self.prefix + key, ["n", "t"])
            except RedisError:
                log.warning("sign-in throttling without Redis", extra={"key": key})
                return 0, 0.0
            return (int(n), float(t)) if n is not None and t is not None else (0, 0.0)
        failures, last = self._failures.get(key, (0, 0.0))
        if last + self.config.login_window_minutes * 60 <= self.clock():
            return 0, 0.0
        return failures, last

    # -- anonymous writes -------------------------------------------------------------------------

    async def guest_join(self, address: str) -> None:
        """One guest join from `address`; refused (`TooManyAttempts`) past `security.guest_joins_per_minute`."""
        rate = self.config.guest_joins_per_minute / 60.0
        burst = self.config.guest_joins_per_minute
        if not await self._take(f"guest:{address}", rate, burst):
            raise TooManyAttempts(math.ceil(1 / rate))

    async def per_address(self, kind: str, address: str, per_minute: int) -> None:
        """One request of `kind` (a cheap read anyone may make, such as `"addresses"`) from `address`; refused
        (`TooManyAttempts`) past `per_minute` of them (a burst of as many, then this rate)."""
        rate = per_minute / 60.0
        if not await self._take(f"{kind}:{address}", rate, per_minute):
            raise TooManyAttempts(math.ceil(1 / rate))

    async def _take(self, key: str, rate: float, burst: int) -> bool:
        now = self.clock()
        if self.redis is not None:
            try:
                ttl = math.ceil(burst / rate) + 1
                return bool(await self.redis.eval(_BUCKET, 1, self.prefix + key, repr(now), repr(rate), burst, ttl))
            except RedisError:
                log.warning("anonymous-write limit without Redis", extra={"key": key})
                return True
        ok, bucket = take(self._buckets.get(key), now, rate, burst)
        if len(self._buckets) >= self.LIMIT:
            self._buckets.clear()
        self._buckets[key] = bucket
        return ok


THROTTLE = web.AppKey("throttle", Throttle)


class OpenSockets:
    """The sockets open on this process, counted per address, so that one address cannot hold more than
    `limit` of them (`security.connections_per_address`; 0: no limit). Behind the shipped nginx every
    address is sent to one process (`hash $remote_addr`), so the count per process is the count."""

    __slots__ = ("by_address", "limit", "of_sid")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.by_address: dict[str, int] = {}
        self.of_sid: dict[str, str] = {}

    def full(self, address: str) -> bool:
        return self.limit > 0 and self.by_address.get(address, 0) >= self.limit

    def opened(self, sid: str, address: str) -> bool:
        """Count a socket that connected; False (and not counted) when its address already has `limit`."""
        if self.full(address):
            return False
        if sid not in self.of_sid:
            self.of_sid[sid] = address
            self.by_address[address] = self.by_address.get(address, 0) + 1
        return True

    def closed(self, sid: str) -> None:
        address = self.of_sid.pop(sid, None)
        if address is None:
            return
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]


OPEN_SOCKETS = web.AppKey("open_sockets", OpenSockets)


def client_address(request: web.Request, trust_proxy: bool) -> str:
    """The address a request came from: behind a trusted proxy, the last `X-Forwarded-For` hop (the one the
    proxy itself saw; the ones before it are what the client claimed)."""
    if trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return (request.remote or "unknown")[:64]
