"""Configuration: `config.toml`, overridden key by key by `LIVECOMMERCE_<SECTION>_<KEY>`.

Every key has a type and a default; an unknown key, a value of the wrong type or an
impossible value raises `ConfigError` naming the key and what was expected, so the
server refuses to start instead of running with a setting it misread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "LIVECOMMERCE_"
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or impossible."""

    def __init__(self, key: str, expected: str, got: object | None = None) -> None:
        self.key = key
        self.expected = expected
        detail = f"{key}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    secret_key: str = ""
    secret_key_file: str = "livecommerce.secret"
    allowed_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = 1_048_576
    shutdown_timeout: float = 10.0
    trust_proxy: bool = False
    event_loop: str = "uvloop"
    backlog: int = 1024


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///livecommerce.db"
    pool_size: int = 10
    pool_pre_ping: bool = False
    pool_recycle_seconds: int = 1800
    sqlite_busy_timeout_ms: int = 5000
    echo: bool = False


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""
    prefix: str = "lc:"


@dataclass(frozen=True)
class I18nConfig:
    default_locale: str = "ko"
    locales: list[str] = field(default_factory=lambda: ["ko", "en"])


@dataclass(frozen=True)
class ScheduleConfig:
    timezone: str = "Asia/Seoul"
    weekdays: list[str] = field(default_factory=lambda: ["MO", "WE"])
    start_time: str = "19:00"
    duration_minutes: int = 60
    max_duration_minutes: int = 180
    lobby_minutes: int = 15
    warn_minutes: int = 5
    grace_minutes: int = 3
    weeks_ahead: int = 4
    run_scheduler: bool = True


@dataclass(frozen=True)
class RoomConfig:
    history: int = 50
    chat_max_length: int = 300
    chat_rate_per_second: float = 1.0
    chat_burst: int = 5
    batch_ms: int = 100
    stream_max_length: int = 2000
    recover_max: int = 500
    recover_max_age_seconds: int = 600
    counts_interval_ms: int = 250


@dataclass(frozen=True)
class SecurityConfig:
    session_max_age_hours: int = 168
    cookie_secure: str = "auto"
    password_min_length: int = 8
    account_cache_seconds: float = 5.0
    login_free_attempts: int = 5
    login_address_free_attempts: int = 20
    login_delay_seconds: float = 1.0
    login_max_delay_seconds: float = 900.0
    login_window_minutes: int = 60
    guest_joins_per_minute: int = 30
    address_searches_per_minute: int = 60
    connections_per_address: int = 200


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "json"


@dataclass(frozen=True)
class OrdersConfig:
    max_quantity_per_line: int = 10
    idempotency_retention_hours: int = 24
    idempotency_lock_seconds: int = 60
    purge_interval_minutes: int = 60
    lineup_cache_seconds: float = 0.25
    expire_interval_seconds: int = 60


@dataclass(frozen=True)
class CouponsConfig:
    timer_interval_ms: int = 1000
    push_interval_ms: int = 500


@dataclass(frozen=True)
class MediaConfig:
    directory: str = "media"
    max_upload_bytes: int = 5_242_880
    max_image_side: int = 1200


@dataclass(frozen=True)
class PushConfig:
    vapid_private_key: str = ""
    vapid_key_file: str = "livecommerce.vapid"
    subject: str = ""
    timeout_seconds: float = 10.0
    retries: int = 2
    ttl_seconds: int = 3600
    allow_http_loopback: bool = False
    resend_after_seconds: float = 120.0

    def try_seconds(self) -> float:
        """The longest one request to a push service may take: its timeout bounds connecting and each read,
        not the whole, so the sender gives up on it at twice that and a second."""
        return self.timeout_seconds * 2 + 1

    def longest_send_seconds(self) -> float:
        """The longest the sender may spend on one notification: every try cut off at `try_seconds`, with the
        waits between them (0.5 s, 1 s, …)."""
        return (self.retries + 1) * self.try_seconds() + 0.5 * (2.0 ** self.retries - 1)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    i18n: I18nConfig = field(default_factory=I18nConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    coupons: CouponsConfig = field(default_factory=CouponsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    push: PushConfig = field(default_factory=PushConfig)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.schedule.timezone)

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some keys changed, validated like a file: `cfg.replace(redis={"url": ...})`."""
        raw = {name: dataclasses.asdict(getattr(self, name)) for name in _sections()}
        for name, values in sections.items():
            if name not in raw:
                raise ConfigError(name, f"one of the sections {', '.join(_sections())}")
            raw[name].update(values)
        return build_config(raw)


def _sections() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _type_name(tp: Any) -> str:
    if get_origin(tp) is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def _coerce(key: str, tp: Any, value: Any) -> Any:
    if get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, _type_name(tp), value)
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, _type_name(tp), value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, _type_name(tp), value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, _type_name(tp), value)
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(key, _type_name(tp), value)
    return value


def _parse_env(key: str, tp: Any, text: str) -> Any:
    """Environment variables are text: read them as the key's type."""
    if get_origin(tp) is list:
        text = text.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(key, "a JSON list of strings or comma-separated words", text) from exc
        return [part.strip() for part in text.split(",") if part.strip()]
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, "true or false", text)
    if tp is int:
        try:
            return int(text)
        except ValueError as exc:
            raise ConfigError(key, "an integer", text) from exc
    if tp is float:
        try:
            return float(text)
        except ValueError as exc:
            raise ConfigError(key, "a number", text) from exc
    return text


def build_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML mapping (plus environment overrides) into a `Config`."""
    sections = _sections()
    for name, value in raw.items():
        if name not in sections:
            raise ConfigError(name, f"one of the sections {', '.join(sections)}")
        if not isinstance(value, Mapping):
            raise ConfigError(name, "a table of keys", value)
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        hints = get_type_hints(cls)
        given = dict(raw.get(name, {}))
        known = {f.name for f in dataclasses.fields(cls)}
        for key in given:
            if key not in known:
                raise ConfigError(f"{name}.{key}", f"one of the keys {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            tp = hints[f.name]
            env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
            if env is not None and env_name in env:
                values[f.name] = _coerce(env_name, tp, _parse_env(env_name, tp, env[env_name]))
            elif f.name in given:
                values[f.name] = _coerce(key, tp, given[f.name])
        built[name] = cls(**values)
    if env is not None:
        for env_name in env:
            if (env_name.startswith(ENV_PREFIX) and not env_name.startswith(ENV_PREFIX + "TEST_")
                    and env_name not in _known_env_names()):
                raise ConfigError(env_name, "a variable named LIVECOMMERCE_<SECTION>_<KEY> for a known key")
    config = Config(**built)
    validate(config)
    return config


def _known_env_names() -> set[str]:
    names = {"LIVECOMMERCE_CONFIG"}
    for name, cls in _sections().items():
        for f in dataclasses.fields(cls):
            names.add(f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}")
    return names


def _check(ok: bool, key: str, expected: str, got: object) -> None:
    if not ok:
        raise ConfigError(key, expected, got)


def validate(c: Config) -> None:
    """Refuse impossible values, naming the key."""
    s = c.server
    _check(1 <= s.port <= 65535 or s.port == 0, "server.port", "a port between 1 and 65535", s.port)
    if s.public_url:
        parts = urlsplit(s.public_url)
        _check(parts.scheme in ("http", "https") and bool(parts.netloc), "server.public_url",
               "an http:// or https:// URL", s.public_url)
    for origin in s.allowed_origins:
        parts = urlsplit(origin)
        _check(origin != "*" and parts.scheme in ("http", "https") and bool(parts.netloc)
               and parts.path in ("", "/"), "server.allowed_origins",
               "origins like https://shop.example (never *)", origin)
    _check(s.event_loop in ("uvloop", "asyncio"), "server.event_loop", "uvloop or asyncio", s.event_loop)
    _check(16 <= s.backlog <= 65535, "server.backlog", "16 to 65535", s.backlog)
    _check(s.max_body_bytes >= 1024, "server.max_body_bytes", "at least 1024", s.max_body_bytes)
    _check(s.shutdown_timeout >= 0, "server.shutdown_timeout", "zero or more seconds", s.shutdown_timeout)
    _check(s.secret_key == "" or len(s.secret_key) >= 32, "server.secret_key",
           "empty (generated) or at least 32 characters", "<hidden>")

    d = c.database
    _check(d.url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")), "database.url",
           "a sqlite+aiosqlite:// or postgresql+asyncpg:// URL", d.url)
    _check(d.pool_size >= 1, "database.pool_size", "at least 1", d.pool_size)
    _check(d.pool_recycle_seconds >= 60, "database.pool_recycle_seconds", "at least 60", d.pool_recycle_seconds)
    _check(d.sqlite_busy_timeout_ms >= 0, "database.sqlite_busy_timeout_ms", "zero or more", d.sqlite_busy_timeout_ms)

    r = c.redis
    _check(r.url == "" or r.url.startswith(("redis://", "rediss://", "unix://")), "redis.url",
           "empty (no Redis) or a redis:// URL", r.url)

    i = c.i18n
    _check(bool(i.locales) and set(i.locales) <= {"ko", "en"}, "i18n.locales", "a list drawn from ko, en", i.locales)
    _check(i.default_locale in i.locales, "i18n.default_locale", f"one of {i.locales}", i.default_locale)

    sc = c.schedule
    try:
        ZoneInfo(sc.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("schedule.timezone", "an IANA time zone such as Asia/Seoul", sc.timezone) from None
    _check(bool(sc.weekdays) and all(w in WEEKDAYS for w in sc.weekdays) and len(set(sc.weekdays)) == len(sc.weekdays),
           "schedule.weekdays", f"distinct days from {', '.join(WEEKDAYS)}", sc.weekdays)
    hh, _, mm = sc.start_time.partition(":")
    _check(hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 and len(mm) == 2,
           "schedule.start_time", "a time HH:MM", sc.start_time)
    _check(1 <= sc.max_duration_minutes <= 24 * 60, "schedule.max_duration_minutes", "1 to 1440",
           sc.max_duration_minutes)
    _check(1 <= sc.duration_minutes <= sc.max_duration_minutes, "schedule.duration_minutes",
           f"1 to schedule.max_duration_minutes ({sc.max_duration_minutes})", sc.duration_minutes)
    _check(0 <= sc.lobby_minutes <= 120, "schedule.lobby_minutes", "0 to 120", sc.lobby_minutes)
    _check(0 <= sc.warn_minutes < sc.duration_minutes, "schedule.warn_minutes",
           "0 or more, less than the duration", sc.warn_minutes)
    _check(0 <= sc.grace_minutes <= 10, "schedule.grace_minutes", "0 to 10 (a few minutes at most)", sc.grace_minutes)
    _check(1 <= sc.weeks_ahead <= 26, "schedule.weeks_ahead", "1 to 26", sc.weeks_ahead)

    rm = c.room
    _check(1 <= rm.history <= 500, "room.history", "1 to 500", rm.history)
    _check(1 <= rm.chat_max_length <= 2000, "room.chat_max_length", "1 to 2000", rm.chat_max_length)
    _check(rm.chat_rate_per_second > 0, "room.chat_rate_per_second", "more than 0", rm.chat_rate_per_second)
    _check(rm.chat_burst >= 1, "room.chat_burst", "at least 1", rm.chat_burst)
    _check(0 <= rm.batch_ms <= 1000, "room.batch_ms", "0 (off) to 1000", rm.batch_ms)
    _check(rm.stream_max_length >= 100, "room.stream_max_length", "at least 100", rm.stream_max_length)
    _check(1 <= rm.recover_max <= rm.stream_max_length, "room.recover_max", "1 to room.stream_max_length",
           rm.recover_max)
    _check(rm.recover_max_age_seconds >= 10, "room.recover_max_age_seconds", "at least 10",
           rm.recover_max_age_seconds)
    _check(50 <= rm.counts_interval_ms <= 5000, "room.counts_interval_ms", "50 to 5000", rm.counts_interval_ms)

    se = c.security
    _check(1 <= se.session_max_age_hours <= 24 * 90, "security.session_max_age_hours", "1 to 2160",
           se.session_max_age_hours)
    _check(se.cookie_secure in ("auto", "always", "never"), "security.cookie_secure",
           "auto, always or never", se.cookie_secure)
    _check(8 <= se.password_min_length <= 128, "security.password_min_length", "8 to 128", se.password_min_length)
    _check(0 <= se.account_cache_seconds <= 60, "security.account_cache_seconds", "0 to 60", se.account_cache_seconds)
    _check(1 <= se.login_free_attempts <= 100, "security.login_free_attempts", "1 to 100", se.login_free_attempts)
    _check(se.login_free_attempts <= se.login_address_free_attempts <= 10_000, "security.login_address_free_attempts",
           "security.login_free_attempts to 10000", se.login_address_free_attempts)
    _check(0.1 <= se.login_delay_seconds <= 60, "security.login_delay_seconds", "0.1 to 60", se.login_delay_seconds)
    _check(se.login_delay_seconds <= se.login_max_delay_seconds <= 86_400, "security.login_max_delay_seconds",
           "security.login_delay_seconds to 86400", se.login_max_delay_seconds)
    _check(1 <= se.login_window_minutes <= 7 * 24 * 60, "security.login_window_minutes", "1 to 10080",
           se.login_window_minutes)
    _check(1 <= se.guest_joins_per_minute <= 100_000, "security.guest_joins_per_minute", "1 to 100000",
           se.guest_joins_per_minute)
    _check(1 <= se.address_searches_per_minute <= 100_000, "security.address_searches_per_minute", "1 to 100000",
           se.address_searches_per_minute)
    _check(0 <= se.connections_per_address <= 1_000_000, "security.connections_per_address", "0 to 1000000",
           se.connections_per_address)

    o = c.orders
    _check(1 <= o.max_quantity_per_line <= 999, "orders.max_quantity_per_line", "1 to 999", o.max_quantity_per_line)
    _check(24 <= o.idempotency_retention_hours <= 24 * 30, "orders.idempotency_retention_hours",
           "24 to 720 (keys are kept at least a day)", o.idempotency_retention_hours)
    _check(5 <= o.idempotency_lock_seconds <= 3600, "orders.idempotency_lock_seconds", "5 to 3600",
           o.idempotency_lock_seconds)
    _check(0 <= o.purge_interval_minutes <= 24 * 60, "orders.purge_interval_minutes", "0 (never) to 1440",
           o.purge_interval_minutes)
    _check(0 <= o.lineup_cache_seconds <= 5, "orders.lineup_cache_seconds", "0 to 5", o.lineup_cache_seconds)
    _check(0 <= o.expire_interval_seconds <= 3600, "orders.expire_interval_seconds", "0 (never) to 3600",
           o.expire_interval_seconds)
    cp = c.coupons
    _check(100 <= cp.timer_interval_ms <= 60_000, "coupons.timer_interval_ms", "100 to 60000", cp.timer_interval_ms)
    _check(50 <= cp.push_interval_ms <= 10_000, "coupons.push_interval_ms", "50 to 10000", cp.push_interval_ms)

    md = c.media
    _check(bool(md.directory.strip()), "media.directory", "a directory", md.directory)
    _check(10_240 <= md.max_upload_bytes <= 52_428_800, "media.max_upload_bytes", "10240 to 52428800 (50 MiB)",
           md.max_upload_bytes)
    _check(64 <= md.max_image_side <= 4096, "media.max_image_side", "64 to 4096", md.max_image_side)

    pu = c.push
    _check(pu.subject == "" or pu.subject.startswith("mailto:") or urlsplit(pu.subject).scheme == "https",
           "push.subject", "empty, a mailto: address or an https:// URL", pu.subject)
    _check(0.5 <= pu.timeout_seconds <= 60, "push.timeout_seconds", "0.5 to 60", pu.timeout_seconds)
    _check(0 <= pu.retries <= 5, "push.retries", "0 to 5", pu.retries)
    _check(60 <= pu.ttl_seconds <= 86_400, "push.ttl_seconds", "60 to 86400", pu.ttl_seconds)
    longest = pu.longest_send_seconds()
    _check(longest < pu.resend_after_seconds <= 86_400, "push.resend_after_seconds",
           f"more than {longest:g} (the longest one notification's sending takes with push.timeout_seconds "
           "and push.retries) and at most 86400", pu.resend_after_seconds)

    lg = c.logging
    _check(lg.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "logging.level",
           "DEBUG, INFO, WARNING or ERROR", lg.level)
    _check(lg.format in ("json", "text"), "logging.format", "json or text", lg.format)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML file (if any) and apply `LIVECOMMERCE_*` environment overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("--config", "an existing TOML file", str(p))
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), f"valid TOML ({exc})") from None
    return build_config(raw, env)
