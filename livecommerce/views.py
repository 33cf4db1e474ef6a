"""The core's routes: health, metrics, sign-in and guest join (pages and API), the catalogue API,
and the staff's account and catalogue pages. Handlers parse, call a service, answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from . import accounts, catalog, catalogue_pages, i18n, media
from .api import Api, Call
from .auth import PUBLIC, SIGNED_IN, STAFF, Session, access
from .db import utcnow
from .errors import N_, AppError, InvalidCredentials, TooManyAttempts
from .fanout import bus_state
from .keys import AppKeys, state
from .models import Market, Role, User
from .schemas import (
    GuestIn,
    HealthOut,
    LoginIn,
    MarketOut,
    MerchantOut,
    PasswordIn,
    ProductIn,
    ProductOut,
    ProductPatch,
    ProductsQuery,
    SessionOut,
    UserCreateIn,
    UserOut,
)
from .templating import render
from .throttle import THROTTLE, client_address


def sign_in(request: web.Request, user: User) -> None:
    """Start a new session for `user`: a fresh CSRF token, so one from before sign-in is useless."""
    st = state(request)
    st.session = Session(user_id=user.id, epoch=user.session_epoch, locale=st.locale)
    st.user = user
    st.dirty = True


async def sign_out(request: web.Request) -> None:
    """End the session: the browser gets a signed-out cookie, and the account's session epoch moves on so
    that the old cookie, wherever a copy of it went, and every socket opened with it stop acting for the
    account (`accounts.end_session`)."""
    st = state(request)
    if st.user is not None:
        async with request.app[AppKeys.db].begin() as db:
            await accounts.end_session(db, st.user)
    signed_out(request)


def signed_out(request: web.Request) -> None:
    """This browser's cookie becomes a signed-out one (the account's sessions have been ended)."""
    st = state(request)
    st.session = Session(locale=st.locale)
    st.user = None
    st.dirty = True


def _address(request: web.Request) -> str:
    return client_address(request, request.app[AppKeys.config].server.trust_proxy)


async def checked_sign_in(request: web.Request, username: str, password: str) -> User:
    """The account `username` names if `password` is its own, through the sign-in throttle: refused with 429
    while the name or the address must wait, counted when wrong. The same answers whether the account exists
    or not."""
    throttle = request.app[THROTTLE]
    address = _address(request)
    await throttle.check_sign_in(username, address)
    try:
        async with request.app[AppKeys.db].begin() as db:
            user = await accounts.authenticate(db, username, password)
    except InvalidCredentials:
        await throttle.failed_sign_in(username, address)
        raise
    await throttle.signed_in(username)
    return user


async def guest_join(request: web.Request, nickname: str) -> User:
    await request.app[THROTTLE].guest_join(_address(request))
    # another guest's name is taken while their session may be open
    since = utcnow() - timedelta(hours=request.app[AppKeys.config].security.session_max_age_hours)
    async with request.app[AppKeys.db].begin() as db:
        return await accounts.join_as_guest(db, nickname, since)


def home_for(user: User) -> str:
    return {Role.STAFF: "/staff", Role.HOST: "/host", Role.MERCHANT: "/merchant/orders"}.get(user.role, "/")


def safe_next(value: str | None, default: str = "/") -> str:
    """Only paths on this site: never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def session_out(request: web.Request) -> SessionOut:
    st = state(request)
    assert st.session is not None
    return SessionOut(user=UserOut.model_validate(st.user) if st.user else None, csrf_token=st.session.csrf,
                      locale=st.locale)


def make_api() -> Api:
    api = Api()

    @api.route("GET", "/auth/session", access=PUBLIC, tag="accounts", response=SessionOut,
               summary="Who is signed in, and the CSRF token to send with changes")
    async def get_session(call: Call[None, None]) -> SessionOut:
        return session_out(call.request)

    @api.route("POST", "/auth/login", access=PUBLIC, tag="accounts", body=LoginIn, response=SessionOut,
               errors=[401], throttled=True,
               summary="Sign in with a username and password (staff, hosts, merchants, viewers). After a few wrong "
                       "passwords for a name or from an address, each next attempt waits longer: 429 with "
                       "Retry-After")
    async def login(call: Call[LoginIn, None]) -> SessionOut:
        user = await checked_sign_in(call.request, call.body.username, call.body.password)
        sign_in(call.request, user)
        return session_out(call.request)

    @api.route("POST", "/auth/guest", access=PUBLIC, tag="accounts", body=GuestIn, response=SessionOut,
               status=201, throttled=True, errors=[409],
               summary="Join as a guest viewer with a nickname (409: it reads as staff's, a host's, a stall's or "
                       "another guest's)")
    async def join_guest(call: Call[GuestIn, None]) -> SessionOut:
        user = await guest_join(call.request, call.body.nickname)
        sign_in(call.request, user)
        return session_out(call.request)

    @api.route("POST", "/auth/logout", access=PUBLIC, tag="accounts", response=SessionOut,
               summary="Sign out. A cookie names the account, not a browser: every browser and socket signed in to "
                       "the account is signed out with this one")
    async def logout(call: Call[None, None]) -> SessionOut:
        await sign_out(call.request)
        return session_out(call.request)

    @api.route("POST", "/auth/logout-everywhere", access=SIGNED_IN, tag="accounts", response=SessionOut,
               summary="Sign out everywhere: every browser and socket signed in to the account, this one included, "
                       "on every server process")
    async def logout_everywhere(call: Call[None, None]) -> SessionOut:
        async with call.app[AppKeys.db].begin() as db:
            await accounts.end_sessions(db, call.user.id)
        signed_out(call.request)
        return session_out(call.request)

    @api.route("POST", "/me/password", access=SIGNED_IN, tag="accounts", body=PasswordIn, response=SessionOut,
               errors=[401, 403], throttled=True,
               summary="Change my password (guests have none). Every other session of the account ends; this "
                       "browser gets a new cookie (and CSRF token) and stays signed in")
    async def change_password(call: Call[PasswordIn, None]) -> SessionOut:
        if call.user.is_guest:
            raise AppError(N_("A guest has no password to change."), code="guest_has_no_password", status=403)
        throttle = call.app[THROTTLE]
        await throttle.check_sign_in(call.user.username, _address(call.request))
        min_len = call.app[AppKeys.config].security.password_min_length
        try:
            async with call.app[AppKeys.db].begin() as db:
                user = await db.get(User, call.user.id)
                assert user is not None
                await accounts.change_password(db, user, call.body.current_password, call.body.new_password,
                                               min_len)
        except InvalidCredentials:
            await throttle.failed_sign_in(call.user.username, _address(call.request))
            raise
        sign_in(call.request, user)
        return session_out(call.request)

    @api.route("POST", "/users/{user_id}/sessions/end", access=STAFF, tag="accounts", errors=[404],
               summary="End every session of an account (staff): its browsers and sockets are signed out on every "
                       "process, e.g. when a merchant leaves or a cookie may have been stolen")
    async def end_user_sessions(call: Call[None, None]) -> None:
        async with call.app[AppKeys.db].begin() as db:
            await accounts.end_sessions(db, call.param("user_id"))
        if call.param("user_id") == call.user.id:
            signed_out(call.request)

    @api.route("GET", "/me", access=SIGNED_IN, tag="accounts", response=UserOut, summary="The signed-in account")
    async def me(call: Call[None, None]) -> UserOut:
        return UserOut.model_validate(call.user)

    @api.route("POST", "/users", access=STAFF, tag="accounts", body=UserCreateIn, response=UserOut, status=201,
               errors=[409], summary="Create an account (staff only)")
    async def create_user(call: Call[UserCreateIn, None]) -> UserOut:
        b = call.body
        min_len = call.app[AppKeys.config].security.password_min_length
        async with call.app[AppKeys.db].begin() as db:
            user = await accounts.create_user(db, username=b.username, role=b.role, password=b.password,
                                              display_name=b.display_name, min_password=min_len,
                                              merchant_id=b.merchant_id)
        return UserOut.model_validate(user)

    @api.route("GET", "/markets", access=PUBLIC, tag="catalogue", response=list[MarketOut], summary="Markets")
    async def markets(call: Call[None, None]) -> list[MarketOut]:
        async with call.app[AppKeys.reader]() as db:
            return [MarketOut.model_validate(m) for m in await catalog.list_markets(db)]

    @api.route("GET", "/markets/{market_id}/merchants", access=PUBLIC, tag="catalogue", response=list[MerchantOut],
               errors=[404], summary="The stalls of a market")
    async def merchants(call: Call[None, None]) -> list[MerchantOut]:
        market_id = call.param("market_id")
        async with call.app[AppKeys.reader]() as db:
            if await db.get(Market, market_id) is None:
                raise AppError("No market with this id.", code="market_not_found", status=404)
            return [MerchantOut.model_validate(m) for m in await catalog.list_merchants(db, market_id)]

    @api.route("GET", "/products", access=PUBLIC, tag="catalogue", query=ProductsQuery, response=list[ProductOut],
               summary="Products, by merchant or market")
    async def products(call: Call[None, ProductsQuery]) -> list[ProductOut]:
        q = call.query
        async with call.app[AppKeys.reader]() as db:
            rows = await catalog.list_products(db, merchant_id=q.merchant_id, market_id=q.market_id, limit=q.limit,
                                               offset=q.offset)
            return [ProductOut.model_validate(p) for p in rows]

    @api.route("GET", "/products/{product_id}", access=PUBLIC, tag="catalogue", response=ProductOut, errors=[404],
               summary="One product")
    async def product(call: Call[None, None]) -> ProductOut:
        async with call.app[AppKeys.reader]() as db:
            return ProductOut.model_validate(await catalog.get_product(db, call.param("product_id")))

    @api.route("POST", "/products", access=STAFF, tag="catalogue", body=ProductIn, response=ProductOut, status=201,
               summary="Add a product (staff only)")
    async def create_product(call: Call[ProductIn, None]) -> ProductOut:
        async with call.app[AppKeys.db].begin() as db:
            p = await catalog.create_product(db, **call.body.model_dump())
        return ProductOut.model_validate(p)

    @api.route("PATCH", "/products/{product_id}", access=STAFF, tag="catalogue", body=ProductPatch,
               response=ProductOut, errors=[404], summary="Change a product (staff only)")
    async def update_product(call: Call[ProductPatch, None]) -> ProductOut:
        product_id = call.param("product_id")
        async with call.app[AppKeys.db].begin() as db:
            p = await catalog.update_product(db, product_id, call.body.model_dump(exclude_unset=True))
        return ProductOut.model_validate(p)

    return api


# -- operational endpoints --------------------------------------------------------------------

@access(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    out = {"status": "ok", "database": "ok", "redis": "off"}
    try:
        async with asyncio.timeout(3):
            async with app[AppKeys.reader]() as db:
                await db.execute(text("SELECT 1"))
    except Exception as exc:
        out["database"] = f"error: {type(exc).__name__}"
        out["status"] = "error"
    redis = app.get(AppKeys.redis)
    if redis is not None:
        try:
            async with asyncio.timeout(3):
                await redis.ping()
            out["redis"] = "ok"
        except Exception as exc:
            out["redis"] = f"error: {type(exc).__name__}"
            out["status"] = "error"
    out["bus"] = bus_state(app[AppKeys.sio])  # room events reach this process's viewers only while "ok"
    if out["bus"] == "down":
        out["status"] = "error"
    HealthOut.model_validate(out)
    return web.json_response(out, status=200 if out["status"] == "ok" else 503)


@access(PUBLIC)
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[AppKeys.metrics].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- pages ------------------------------------------------------------------------------------

@access(PUBLIC)
async def login_page(request: web.Request) -> web.StreamResponse:
    if request.method == "GET":
        return render(request, "login.html",
                                              {"next": safe_next(request.query.get("next"), ""), "error": None})
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    nxt = safe_next(str(form.get("next", "")), "")
    try:
        user = await checked_sign_in(request, username, password)
    except AppError as exc:
        resp = render(request, "login.html", {"next": nxt, "error": i18n.gettext(exc.message, **exc.params),
                                                                       "username": username})
        resp.set_status(exc.status)
        if isinstance(exc, TooManyAttempts):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    sign_in(request, user)
    raise web.HTTPSeeOther(nxt or home_for(user))


@access(PUBLIC)
async def join_page(request: web.Request) -> web.StreamResponse:
    nxt = safe_next(request.query.get("next") if request.method == "GET" else None, "/")
    if request.method == "GET":
        return render(request, "join.html", {"next": nxt, "error": None})
    form = await request.post()
    nxt = safe_next(str(form.get("next", "")), "/")
    try:
        user = await guest_join(request, str(form.get("nickname", "")))
    except AppError as exc:
        resp = render(request, "join.html", {"next": nxt, "error": i18n.gettext(exc.message, **exc.params)})
        resp.set_status(exc.status)
        if isinstance(exc, TooManyAttempts):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    sign_in(request, user)
    raise web.HTTPSeeOther(nxt)


@access(PUBLIC)
async def logout_page(request: web.Request) -> web.StreamResponse:
    await sign_out(request)
    raise web.HTTPSeeOther("/")


def register_pages(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz, name="healthz")
    r.add_get("/metrics", metrics, name="metrics")
    r.add_route("*", "/login", login_page, name="login")
    r.add_route("*", "/join", join_page, name="join")
    r.add_post("/logout", logout_page, name="logout")
    media.setup(app, app[AppKeys.config])
    catalogue_pages.register(app)
