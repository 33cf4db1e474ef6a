"""`create_app(config)`: the whole server, assembled. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource
from redis.asyncio import Redis

import coupons.events
import coupons.setup
import orders.events
import orders.setup
import sessions.events
import sessions.setup
import web as web_assets

from . import i18n, jsonenc, logs, media, views, webpush
from .accounts import AccountCache
from .api import API
from .auth import COOKIE, UNSAFE, Session, SessionCodec, check_csrf, cookie_secure
from .caches import Caches, Watch
from .compress import STATIC_GZIP, StaticGzip, compress_page
from .config import Config
from .db import make_engine, make_sessionmaker
from .errors import N_, AppError, NotFound, TooManyConnections, Unavailable, error_body, status_for
from .fanout import FastRedisManager, wait_for_bus
from .hot import HotPath
from .internals import answer_websocket, close_engineio_socket, close_redis_manager, engineio_sockets, start_manager
from .keys import AppKeys, state
from .metrics import make_metrics
from .models import User
from .outages import unavailable
from .realtime import LiveParts, install_live, live_parts, make_sio
from .templating import render, setup_templates
from .throttle import OPEN_SOCKETS, THROTTLE, OpenSockets, Throttle, client_address

log = logging.getLogger("livecommerce.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The domains, in their dependency order: each `setup(app)` registers what the domain brings.
DOMAINS: tuple[Callable[[web.Application], None], ...] = (sessions.setup.setup, orders.setup.setup, coupons.setup.setup)
LIVE_SETUPS: tuple[Callable[[web.Application], None], ...] = (sessions.events.setup, orders.events.setup,
                                                             coupons.events.setup)

CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: https:; "
       "frame-src https:; connect-src 'self' ws: wss: https:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


def wants_json(request: web.Request) -> bool:
    if request.path.startswith(("/api/", "/socket.io/")):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_exempt(request: web.Request) -> bool:
    """Static files and the socket.io endpoint: no session, no CSRF (sockets check at connect)."""
    route = request.match_info.route
    resource = route.resource
    return isinstance(resource, StaticResource) or request.path.startswith("/socket.io/")


def error_response(request: web.Request, status: int, exc: AppError) -> web.Response:
    """`exc` as JSON (`{"error": error_body(exc)}`) or as the error page, with `status`."""
    body = error_body(exc)
    retry_after = getattr(exc, "retry_after", None)
    if wants_json(request):
        resp = web.json_response({"error": body}, status=status, dumps=jsonenc.dumps)
        if retry_after is not None:
            resp.headers["Retry-After"] = str(retry_after)
        return resp
    text_ = body["message"]
    try:
        resp = render(request, "error.html", {"status": status, "code": exc.code, "message": text_,
                                              "details": exc.details})
    except Exception:  # the error page itself must never fail
        log.exception("error page failed")
        resp = web.Response(text=f"{status} {text_}", content_type="text/plain")
    resp.set_status(status)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


_HTTP_ERRORS = {
    404: ("not_found", N_("This page does not exist.")),
    405: ("method_not_allowed", N_("This address does not accept that method.")),
    413: ("too_large", N_("The request is too large.")),
}


@web.middleware
def observe(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Outermost: request id, errors translated, one structured log line, metrics, security headers — for every
    request but a viewer's websocket, which lives as long as the viewer: its route is answered directly (the
    route's coroutine is returned, not awaited here), so that no middleware keeps a frame for each connected
    viewer (the other two let the socket.io endpoint through anyway), nor Engine.IO's (`answer_websocket`)."""
    if request.path.startswith("/socket.io/"):
        if "sid" not in request.query and crowded(request):  # a new connection from an address that has enough
            return _observe(request, _too_many_connections)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return answer_websocket(request, request.match_info.handler)
    elif request.path.startswith("/static/") and request.method == "GET":
        return _observe(request, functools.partial(_static, handler))
    return _observe(request, handler)


def crowded(request: web.Request) -> bool:
    return request.app[OPEN_SOCKETS].full(client_address(request, request.app[AppKeys.config].server.trust_proxy))


async def _too_many_connections(request: web.Request) -> web.StreamResponse:
    raise TooManyConnections()


async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every log line written while the request is answered names it, and the broadcast its route names
    (the signed-in viewer is added by `context`)."""
    request_id = request.headers.get("X-Request-ID", "")[:64] or os.urandom(8).hex()
    broadcast = request.match_info.get("broadcast_id")
    scope = logs.enter(request_id=request_id, broadcast=int(broadcast) if broadcast and broadcast.isdigit() else None)
    try:
        return await _observed(request, handler, request_id)
    finally:
        logs.leave(scope)


async def _observed(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    app = request.app
    metrics = app[AppKeys.metrics]
    started = time.perf_counter()
    state(request).request_id = request_id
    i18n.activate(app[AppKeys.config].i18n.default_locale,
                  app[AppKeys.catalogues][app[AppKeys.config].i18n.default_locale])
    code = ""
    inflight = app[AppKeys.inflight]
    counted = not request.path.startswith("/socket.io/")  # a websocket lives as long as its viewer
    if counted:
        inflight["count"] += 1
    try:
        try:
            resp = await handler(request)
        except AppError as exc:
            code = exc.code
            resp = error_response(request, status_for(app, exc), exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code, message = _HTTP_ERRORS.get(exc.status, ("http_error", exc.reason or "Error"))
            resp = error_response(request, exc.status, AppError(message, code=code))
            if exc.status == 405 and "Allow" in exc.headers:
                resp.headers["Allow"] = exc.headers["Allow"]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if unavailable(exc):
                log.warning("request failed: unavailable", extra={"request_id": request_id, "path": request.path,
                                                                   "error": type(exc).__name__})
                code = Unavailable.code
                resp = error_response(request, 503, Unavailable())
            else:
                log.exception("request failed", extra={"request_id": request_id, "path": request.path})
                code = "internal"
                resp = error_response(request, 500, AppError(N_("Something went wrong on our side. Please try again."),
                                                             code="internal"))
    except web.HTTPException as exc:  # redirects
        resp = exc
    finally:
        if counted:
            inflight["count"] -= 1
            if inflight["count"] == 0:
                inflight["idle"].set()
    if code:
        metrics.errors.labels(code).inc()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    elapsed = time.perf_counter() - started
    metrics.answered(request.method, route, resp.status, elapsed)
    headers = resp.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Request-ID"] = request_id
    user = state(request).user
    if not request.path.startswith("/static/"):
        logs.access(log, "request", {
            "request_id": request_id, "method": request.method, "path": request.path, "status": resp.status,
            "ms": round(elapsed * 1000, 2), "user": user.id if user else None, "code": code or None})
    if isinstance(resp, web.HTTPException):
        raise resp
    compress_page(request, resp)
    return resp


async def _static(handler: Handler, request: web.Request) -> web.StreamResponse:
    """A static file: gzipped from memory for a browser that accepts it, else the ordinary static route."""
    answer = request.app[STATIC_GZIP].answer(request, request.path.removeprefix("/static/"))
    return answer if answer is not None else await handler(request)


@web.middleware
async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The session cookie, the signed-in user and the language, for everything but static files."""
    if is_exempt(request):
        return await handler(request)
    app = request.app
    config = app[AppKeys.config]
    codec = app[AppKeys.codec]
    session = codec.decode(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = Session()
    user: User | None = None
    if session.user_id is not None:
        user = await app[AppKeys.accounts].get(app[AppKeys.hot], session.user_id, session.epoch)
        if user is None:
            session = Session(locale=session.locale)
            fresh = True
    lang = request.query.get("lang")
    if lang in config.i18n.locales and lang != session.locale:
        session.locale = lang
        fresh = True
    locale = session.locale if session.locale in config.i18n.locales else config.i18n.default_locale
    i18n.activate(locale, app[AppKeys.catalogues][locale])
    st = state(request)
    st.session = session
    st.cookie_session = None if fresh else session
    st.user = user
    if user is not None:
        logs.bind(viewer=user.id)
    st.locale = locale
    st.dirty = fresh
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            _write_session(request, exc)
        raise
    _write_session(request, resp)
    return resp


def _write_session(request: web.Request, resp: web.StreamResponse) -> None:
    st = state(request)
    if not st.dirty or st.session is None or resp.prepared:
        return
    app = request.app
    config = app[AppKeys.config]
    resp.set_cookie(COOKIE, app[AppKeys.codec].encode(st.session),
                    max_age=config.security.session_max_age_hours * 3600, httponly=True, samesite="Lax",
                    secure=cookie_secure(request, config), path="/")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSRF on every state-changing request, then the route's declared access rule."""
    if is_exempt(request):
        return await handler(request)
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    rule = getattr(request.match_info.handler, "__access__", None)
    if rule is None:  # every route must say who may call it
        log.error("route without access rule", extra={"path": request.path})
        raise NotFound()
    uploads = getattr(request.match_info.handler, "__uploads__", False)
    if uploads:
        # a picture's route: who may send it is checked before its body is read, and the body may be larger
        rule.check(state(request).user)
        request = request.clone(client_max_size=media.body_limit(request.app[AppKeys.config]))
    if request.method in UNSAFE and not getattr(request.match_info.handler, "__csrf_exempt__", False):
        try:
            await check_csrf(request, state(request).cookie_session, request.app[AppKeys.config])
        except AppError:
            if uploads:
                await media.discard_uploads(request)
            raise
    rule.check(state(request).user)
    return await handler(request)


def load_or_create_secret(config: Config) -> str:
    if config.server.secret_key:
        return config.server.secret_key
    path = Path(config.server.secret_key_file)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return secret


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = make_engine(app[AppKeys.config].database)
    app[AppKeys.engine] = engine
    session_class = app[AppKeys.caches].session_class  # its commits empty the app's caches
    app[AppKeys.db] = make_sessionmaker(engine, session_class=session_class)
    app[AppKeys.reader] = make_sessionmaker(engine, write=False, session_class=session_class)
    hot = app[AppKeys.hot] = HotPath(engine, app[AppKeys.reader])
    await hot.start(app[AppKeys.config].database.pool_size)
    yield
    await hot.close()
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[AppKeys.config].redis.url
    if not url:
        yield
        return
    client = Redis.from_url(url, decode_responses=True, health_check_interval=30)
    app[AppKeys.redis] = client
    app[THROTTLE].redis = client
    start_manager(app[AppKeys.sio])  # listen to the bus from the start: `/healthz` says whether it is heard
    if not await wait_for_bus(app[AppKeys.sio], 5.0):
        log.warning("starting without the Redis bus: /healthz answers 503 until it is heard")
    yield
    await client.aclose()
    await close_redis_manager(app[AppKeys.sio].manager)


async def _caches(app: web.Application) -> AsyncIterator[None]:
    """Forget what other processes' commits changed (through Redis), and tell them what ours change."""
    caches = app[AppKeys.caches]
    await caches.start(app.get(AppKeys.redis), app[AppKeys.config].redis.prefix)
    yield
    await caches.close()


async def _close_sockets(app: web.Application) -> None:
    """Graceful shutdown: let in-flight requests finish, then say goodbye to every socket."""
    inflight = app[AppKeys.inflight]
    if inflight["count"]:
        inflight["idle"].clear()
        try:
            await asyncio.wait_for(inflight["idle"].wait(), app[AppKeys.config].server.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown with requests still running", extra={"count": inflight["count"]})
    await close_sockets(app)
    await app[AppKeys.sio].shutdown()


async def close_sockets(app: web.Application) -> None:
    sockets = engineio_sockets(app[AppKeys.sio])
    if sockets:
        # Every client on this process (they reconnect to another one). A socket whose peer already
        # vanished can wait forever on its send queue: do not let it hold the shutdown.
        closing = [asyncio.ensure_future(close_engineio_socket(s)) for s in list(sockets.values())]
        _, pending = await asyncio.wait(closing, timeout=app[AppKeys.config].server.shutdown_timeout)
        for task in pending:
            task.cancel()


def create_app(config: Config) -> web.Application:
    """Build the application for `config`; resources open on startup and close on cleanup."""
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[observe, context, guard])
    app[AppKeys.config] = config
    app[AppKeys.metrics] = make_metrics()
    app[AppKeys.catalogues] = i18n.load_catalogues(config.i18n.locales)
    app[AppKeys.codec] = SessionCodec(load_or_create_secret(config), config.security.session_max_age_hours * 3600)
    app[AppKeys.inflight] = {"count": 0, "idle": asyncio.Event()}
    caches = app[AppKeys.caches] = Caches()
    caches.keep(app, AppKeys.accounts, AccountCache(config.security.account_cache_seconds), "accounts",
                Watch("users", "id"))
    app[THROTTLE] = Throttle(config.security, None, config.redis.prefix)
    app[OPEN_SOCKETS] = OpenSockets(config.security.connections_per_address)
    setup_templates(app)

    sio = make_sio(config)
    sio.attach(app)
    app[AppKeys.sio] = sio
    sio.manager.metrics = app[AppKeys.metrics]
    if isinstance(sio.manager, FastRedisManager):
        sio.manager.bus.metrics = app[AppKeys.metrics]

    app.cleanup_ctx.append(logs.flush_periodically)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_caches)
    app.on_shutdown.append(_close_sockets)

    api = app[API] = views.make_api()
    views.register_pages(app)
    webpush.setup(app)  # the VAPID keys, the push sender and the service worker's route
    for setup in DOMAINS:  # each domain adds its routes, events, hooks and background tasks
        setup(app)
    api.install(app)
    install_live(app)
    app.router.add_static("/static/", web_assets.STATIC, name="static", append_version=False)
    app[STATIC_GZIP] = StaticGzip(web_assets.STATIC)
    return app


def live_parts_of_domains() -> LiveParts:
    """The `/live` namespace's parts as the domains declare them, without a server (the protocol document)."""
    app = web.Application()
    for setup in LIVE_SETUPS:
        setup(app)
    return live_parts(app)
