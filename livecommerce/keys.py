"""Typed keys for what the app shares (aiohttp's "no singletons please")."""

from __future__ import annotations

import gettext
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .config import Config
from .metrics import Metrics

if TYPE_CHECKING:
    pass


class AppKeys:
    config = web.AppKey("config", Config)
    engine = web.AppKey("engine", AsyncEngine)
    db = web.AppKey("db", async_sessionmaker[AsyncSession])
    redis = web.AppKey("redis", Redis)  # absent when redis.url is empty
    sio = web.AppKey("sio", socketio.AsyncServer)
    metrics = web.AppKey("metrics", Metrics)
    catalogues = web.AppKey("catalogues", dict[str, gettext.NullTranslations])
    codec = web.AppKey("codec", "SessionCodec")
    exempt = web.AppKey("exempt", set[Any])  # handlers that do their own auth (static files, socket.io)
    inflight = web.AppKey("inflight", dict[str, Any])
