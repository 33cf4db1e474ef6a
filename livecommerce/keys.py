"""Typed keys for what the app shares (aiohttp's "no singletons please")."""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .accounts import AccountCache
from .auth import Session, SessionCodec
from .caches import Caches
from .config import Config
from .hot import HotPath
from .metrics import Metrics
from .models import User


class AppKeys:
    config = web.AppKey("config", Config)
    engine = web.AppKey("engine", AsyncEngine)
    db = web.AppKey("db", async_sessionmaker[AsyncSession])  # units of work that write
    reader = web.AppKey("reader", async_sessionmaker[AsyncSession])  # units of work that only read
    hot = web.AppKey("hot", HotPath)  # the reads made on nearly every request
    redis = web.AppKey("redis", Redis)  # absent when redis.url is empty
    sio = web.AppKey("sio", socketio.AsyncServer)
    metrics = web.AppKey("metrics", Metrics)
    catalogues = web.AppKey("catalogues", dict[str, gettext.NullTranslations])
    codec = web.AppKey("codec", SessionCodec)
    inflight = web.AppKey("inflight", dict[str, Any])
    caches = web.AppKey("caches", Caches)  # what is kept from the database, emptied after commits
    accounts = web.AppKey("accounts", AccountCache)  # signed-in accounts, kept by `caches`


@dataclass
class RequestState:
    """What the middlewares learn about one request."""

    request_id: str = ""
    session: Session | None = None  # the session this request will leave in the cookie
    cookie_session: Session | None = None  # the session the browser sent, if valid (CSRF is checked against it)
    user: User | None = None
    locale: str = "ko"
    dirty: bool = False  # the cookie must be written


STATE = web.RequestKey("state", RequestState)


def state(request: web.Request) -> RequestState:
    st = request.get(STATE)
    if st is None:
        st = RequestState()
        request[STATE] = st
    return st


def signed_in_user(request: web.Request) -> User:
    """The request's user, on a route whose access rule lets only signed-in users through."""
    user = state(request).user
    assert user is not None
    return user
