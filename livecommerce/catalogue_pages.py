"""The staff's catalogue pages: products (with a picture uploaded and kept resized), stalls and accounts,
listed and edited in the page. Handlers read the form, check what a person can get wrong, call the
catalogue and account services in one unit of work, and either redirect (303) or show the form again
with the reason and what was typed; a refused form writes nothing. Staff only, with the form's CSRF
token like every staff form."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import func, select

from . import accounts, catalog, i18n
from .api import path_id
from .auth import STAFF, access
from .errors import N_, AppError, NotFound, ValidationFailed
from .keys import AppKeys, signed_in_user
from .media import MEDIA, size_text, uploads
from .models import Market, Merchant, Product, Role, User
from .templating import render

MAX_PRICE = 100_000_000  # won
MAX_STOCK = 1_000_000
STAFF_ROLES = (Role.STAFF, Role.HOST, Role.MERCHANT, Role.VIEWER)

# Field names as the forms label them; errors name the field the same way.
F_STALL = N_("Stall")
F_MARKET = N_("Market")
F_NAME_KO = N_("Name (Korean)")
F_NAME_EN = N_("Name (English)")
F_DESCRIPTION_KO = N_("Description (Korean)")
F_DESCRIPTION_EN = N_("Description (English)")
F_PRICE = N_("Price (won)")
F_STOCK = N_("Stock")
F_UNIT_KO = N_("Unit (Korean)")
F_UNIT_EN = N_("Unit (English)")
F_USERNAME = N_("Username")
F_DISPLAY_NAME = N_("Name")
F_ROLE = N_("Role")
F_PASSWORD = N_("Password")

_WON = re.compile(r"\d{1,12}", re.ASCII)

Form = Mapping[str, Any]


# -- reading what was typed ---------------------------------------------------------------------

def _get(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _checked(form: Form, name: str) -> bool:
    return _get(form, name) not in ("", "0", "off", "false")


def _text(form: Form, name: str, label: str, max_len: int, *, required: bool = False) -> str:
    value = _get(form, name)
    if required and not value:
        raise ValidationFailed("%(field)s is required.", code="required", field=label)
    if len(value) > max_len:
        raise ValidationFailed("%(field)s is too long (at most %(max)s characters).", code="too_long",
                               field=label, max=max_len)
    return value


def _whole(form: Form, name: str, label: str, maximum: int) -> int:
    """A whole number of won or units, 0 to `maximum`; "12,900" and "12900원" read as 12900."""
    value = _get(form, name).replace(",", "").replace(" ", "").removesuffix("원")
    if not value:
        raise ValidationFailed("%(field)s is required.", code="required", field=label)
    if not _WON.fullmatch(value):
        raise ValidationFailed("%(field)s must be a whole number, 0 or more.", code="not_a_number",
                               field=label)
    number = int(value)
    if number > maximum:
        most = format(maximum, ",")
        raise ValidationFailed("%(field)s must be %(max)s or less.", code="too_large", field=label, max=most)
    return number


def _id(form: Form, name: str, label: str) -> int:
    value = _get(form, name)
    if not value.isdecimal() or len(value) > 12:
        raise ValidationFailed("Choose the %(field)s.", code="required", field=label)
    return int(value)


def _message(exc: AppError) -> str:
    return i18n.gettext(exc.message, **exc.params)


def _upload(form: MultiDictProxy[Any], name: str) -> bytes | None:
    """The bytes of an uploaded file, or None when none was chosen."""
    field = form.get(name)
    if isinstance(field, web.FileField):
        field.file.seek(0)
        return field.file.read()
    return None


def _close_files(form: MultiDictProxy[Any]) -> None:
    """The uploaded files' temporary copies, closed once the form is done with."""
    for value in form.values():
        if isinstance(value, web.FileField):
            value.file.close()


# -- the catalogue ----------------------------------------------------------------------------

@access(STAFF)
async def catalogue_page(request: web.Request) -> web.Response:
    async with request.app[AppKeys.reader]() as db:
        rows = (await db.execute(
            select(Product, Merchant).join(Merchant, Product.merchant_id == Merchant.id).order_by(Product.id))).all()
        stalls = (await db.execute(select(Merchant, Market).join(Market, Merchant.market_id == Market.id)
                                   .order_by(Merchant.id))).all()
        counts = dict((await db.execute(select(Product.merchant_id, func.count()).group_by(Product.merchant_id))).all())
        users = (await db.scalars(select(User).where(User.is_guest.is_(False)).order_by(User.role, User.id))).all()
        guests = await db.scalar(select(func.count()).select_from(User).where(User.is_guest.is_(True)))
    merchants = {m.id: m for m, _ in stalls}
    return render(request, "staff/catalogue.html", {
        "rows": rows, "stalls": stalls, "counts": counts, "users": users, "guests": guests or 0,
        "merchants": merchants, "saved": request.query.get("saved", "")})


# -- products ---------------------------------------------------------------------------------

def _product_form_of(p: Product | None, merchants: list[Merchant]) -> dict[str, Any]:
    if p is None:
        return {"merchant_id": str(merchants[0].id) if merchants else "", "name_ko": "", "name_en": "",
                "description_ko": "", "description_en": "", "price": "", "stock": "0", "unit_ko": "개",
                "unit_en": "pc", "is_active": True, "image": ""}
    return {"merchant_id": str(p.merchant_id), "name_ko": p.name_ko, "name_en": p.name_en,
            "description_ko": p.description_ko, "description_en": p.description_en, "price": str(p.price),
            "stock": str(p.stock), "unit_ko": p.unit_ko, "unit_en": p.unit_en, "is_active": p.is_active,
            "image": p.image}


def _product_echo(form: Form, image: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: _get(form, k) for k in ("merchant_id", "name_ko", "name_en", "description_ko",
                                                      "description_en", "price", "stock", "unit_ko", "unit_en")}
    out["is_active"] = _checked(form, "is_active")
    out["image"] = image
    return out


def _product_values(form: Form) -> dict[str, Any]:
    name_ko = _text(form, "name_ko", F_NAME_KO, 120, required=True)
    return {
        "merchant_id": _id(form, "merchant_id", F_STALL),
        "name_ko": name_ko,
        "name_en": _text(form, "name_en", F_NAME_EN, 120) or name_ko,
        "description_ko": _text(form, "description_ko", F_DESCRIPTION_KO, 5000),
        "description_en": _text(form, "description_en", F_DESCRIPTION_EN, 5000),
        "price": _whole(form, "price", F_PRICE, MAX_PRICE),
        "stock": _whole(form, "stock", F_STOCK, MAX_STOCK),
        "unit_ko": _text(form, "unit_ko", F_UNIT_KO, 40) or "개",
        "unit_en": _text(form, "unit_en", F_UNIT_EN, 40) or "pc",
        "is_active": _checked(form, "is_active"),
    }


async def _merchants(request: web.Request) -> list[Merchant]:
    async with request.app[AppKeys.reader]() as db:
        return list(await catalog.list_merchants(db))


async def _product_page(request: web.Request, p: Product | None, f: dict[str, Any] | None = None, *,
                        error: str | None = None, status: int = 200) -> web.Response:
    merchants = await _merchants(request)
    store = request.app[MEDIA]
    return render(request, "staff/product_form.html", {
        "p": p, "f": f or _product_form_of(p, merchants), "merchants": merchants, "error": error,
        "max_upload": size_text(store.max_bytes), "max_side": store.max_side}, status)


async def _save_product(request: web.Request, product_id: int | None) -> web.StreamResponse:
    form = await request.post()
    try:
        return await _save_product_form(request, product_id, form)
    finally:
        _close_files(form)


async def _save_product_form(request: web.Request, product_id: int | None,
                             form: MultiDictProxy[Any]) -> web.StreamResponse:
    current: Product | None = None
    if product_id is not None:
        async with request.app[AppKeys.reader]() as db:
            current = await catalog.get_product(db, product_id)
    image = current.image if current else ""
    try:
        values = _product_values(form)
        async with request.app[AppKeys.reader]() as db:  # before the picture is kept: a refusal keeps nothing
            if await db.get(Merchant, values["merchant_id"]) is None:
                raise ValidationFailed("No stall with this id.", code="merchant_not_found")
        raw = _upload(form, "picture")
        if raw is not None:
            values["image"] = image = await request.app[MEDIA].save_picture(raw)
        elif _checked(form, "remove_picture"):
            values["image"] = image = ""
        async with request.app[AppKeys.db].begin() as db:
            if await db.get(Merchant, values["merchant_id"]) is None:
                raise ValidationFailed("No stall with this id.", code="merchant_not_found")
            if product_id is None:
                p = await catalog.create_product(db, **values)
            else:
                p = await catalog.update_product(db, product_id, values)
            saved_id = p.id
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _product_page(request, current, _product_echo(form, image), error=_message(exc),
                                   status=exc.status)
    raise web.HTTPSeeOther(f"/staff/catalogue?saved=product-{saved_id}#product-{saved_id}")


@access(STAFF)
async def product_new(request: web.Request) -> web.StreamResponse:
    return await _product_page(request, None)


@uploads
@access(STAFF)
async def product_create(request: web.Request) -> web.StreamResponse:
    return await _save_product(request, None)


@access(STAFF)
async def product_edit(request: web.Request) -> web.StreamResponse:
    async with request.app[AppKeys.reader]() as db:
        p = await catalog.get_product(db, path_id(request, "product_id"))
    return await _product_page(request, p)


@uploads
@access(STAFF)
async def product_save(request: web.Request) -> web.StreamResponse:
    return await _save_product(request, path_id(request, "product_id"))


# -- stalls -----------------------------------------------------------------------------------

async def _stall_page(request: web.Request, m: Merchant | None, f: dict[str, Any] | None = None, *,
                      error: str | None = None, status: int = 200) -> web.Response:
    async with request.app[AppKeys.reader]() as db:
        markets = list(await catalog.list_markets(db))
    if f is None:
        f = ({"market_id": str(m.market_id), "name_ko": m.name_ko, "name_en": m.name_en} if m else
             {"market_id": str(markets[0].id) if markets else "", "name_ko": "", "name_en": ""})
    return render(request, "staff/stall_form.html", {"m": m, "f": f, "markets": markets, "error": error}, status)


async def _save_stall(request: web.Request, merchant_id: int | None) -> web.StreamResponse:
    form = await request.post()
    current: Merchant | None = None
    if merchant_id is not None:
        async with request.app[AppKeys.reader]() as db:
            current = await catalog.get_merchant(db, merchant_id)
    try:
        name_ko = _text(form, "name_ko", F_NAME_KO, 120, required=True)
        name_en = _text(form, "name_en", F_NAME_EN, 120) or name_ko
        async with request.app[AppKeys.db].begin() as db:
            if merchant_id is None:
                m = await catalog.create_merchant(db, market_id=_id(form, "market_id", F_MARKET), name_ko=name_ko,
                                                  name_en=name_en)
            else:
                m = await catalog.update_merchant(db, merchant_id, {"name_ko": name_ko, "name_en": name_en})
            saved_id = m.id
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _stall_page(request, current, {k: _get(form, k) for k in ("market_id", "name_ko", "name_en")},
                                 error=_message(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/staff/catalogue?saved=stall-{saved_id}#stall-{saved_id}")


@access(STAFF)
async def stall_new(request: web.Request) -> web.StreamResponse:
    if request.method == "POST":
        return await _save_stall(request, None)
    return await _stall_page(request, None)


@access(STAFF)
async def stall_edit(request: web.Request) -> web.StreamResponse:
    merchant_id = path_id(request, "merchant_id", N_("No stall with this id."), "merchant_not_found")
    if request.method == "POST":
        return await _save_stall(request, merchant_id)
    async with request.app[AppKeys.reader]() as db:
        m = await catalog.get_merchant(db, merchant_id)
    return await _stall_page(request, m)


# -- accounts ---------------------------------------------------------------------------------

def _role(form: Form) -> Role:
    try:
        role = Role(_get(form, "role"))
    except ValueError:
        raise ValidationFailed("Choose the %(field)s.", code="required", field=F_ROLE) from None
    return role


def _stall_choice(form: Form, role: Role) -> int | None:
    if role is not Role.MERCHANT:
        return None
    return _id(form, "merchant_id", F_STALL)


async def _account_page(request: web.Request, u: User | None, f: dict[str, Any] | None = None, *,
                        error: str | None = None, password_error: str | None = None,
                        status: int = 200) -> web.Response:
    merchants = await _merchants(request)
    if f is None:
        f = ({"username": u.username, "display_name": u.display_name, "role": u.role.value,
              "merchant_id": str(u.merchant_id or ""), "is_active": u.is_active} if u else
             {"username": "", "display_name": "", "role": Role.HOST.value, "merchant_id": "", "is_active": True})
    return render(request, "staff/account_form.html", {
        "u": u, "f": f, "merchants": merchants, "roles": [r.value for r in STAFF_ROLES], "error": error,
        "password_error": password_error, "saved": request.query.get("saved", ""),
        "min_password": request.app[AppKeys.config].security.password_min_length,
        "me": signed_in_user(request)}, status)


def _account_echo(form: Form) -> dict[str, Any]:
    out: dict[str, Any] = {k: _get(form, k) for k in ("username", "display_name", "role", "merchant_id")}
    out["is_active"] = _checked(form, "is_active")
    return out


@access(STAFF)
async def account_new(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return await _account_page(request, None)
    form = await request.post()
    min_len = request.app[AppKeys.config].security.password_min_length
    try:
        username = _text(form, "username", F_USERNAME, 64, required=True)
        display_name = _text(form, "display_name", F_DISPLAY_NAME, 64) or username
        role = _role(form)
        merchant_id = _stall_choice(form, role)
        password = str(form.get("password", ""))
        if not password:
            raise ValidationFailed("%(field)s is required.", code="required", field=F_PASSWORD)
        async with request.app[AppKeys.db].begin() as db:
            if merchant_id is not None and await db.get(Merchant, merchant_id) is None:
                raise ValidationFailed("No stall with this id.", code="merchant_not_found")
            user = await accounts.create_user(db, username=username, role=role, password=password,
                                              display_name=display_name, min_password=min_len,
                                              merchant_id=merchant_id)
            saved_id = user.id
    except AppError as exc:
        return await _account_page(request, None, _account_echo(form), error=_message(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/staff/catalogue?saved=account-{saved_id}#account-{saved_id}")


def _account_id(request: web.Request) -> int:
    return path_id(request, "user_id", N_("No account with this id."), "user_not_found")


async def _account(request: web.Request, user_id: int) -> User:
    async with request.app[AppKeys.reader]() as db:
        u = await db.get(User, user_id)
    if u is None or u.is_guest:
        raise NotFound(N_("No account with this id."), code="user_not_found")
    return u


@access(STAFF)
async def account_edit(request: web.Request) -> web.StreamResponse:
    user_id = _account_id(request)
    u = await _account(request, user_id)
    if request.method != "POST":
        return await _account_page(request, u)
    form = await request.post()
    try:
        display_name = _text(form, "display_name", F_DISPLAY_NAME, 64, required=True)
        role = _role(form)
        merchant_id = _stall_choice(form, role)
        async with request.app[AppKeys.db].begin() as db:
            await accounts.update_account(db, signed_in_user(request), user_id, display_name=display_name,
                                          role=role, merchant_id=merchant_id, is_active=_checked(form, "is_active"))
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        echo = {**_account_echo(form), "username": u.username}
        return await _account_page(request, u, echo, error=_message(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/staff/catalogue?saved=account-{user_id}#account-{user_id}")


@access(STAFF)
async def account_password(request: web.Request) -> web.StreamResponse:
    """A new password for an account (it forgot its own): every session of the account ends."""
    user_id = _account_id(request)
    u = await _account(request, user_id)
    form = await request.post()
    password, again = str(form.get("password", "")), str(form.get("password_again", ""))
    min_len = request.app[AppKeys.config].security.password_min_length
    try:
        if not password:
            raise ValidationFailed("%(field)s is required.", code="required", field=F_PASSWORD)
        if password != again:
            raise ValidationFailed(N_("The two passwords are not the same."), code="password_mismatch")
        if user_id == signed_in_user(request).id:
            raise ValidationFailed(N_("Change your own password from your account, with your current one."),
                                   code="own_password")
        async with request.app[AppKeys.db].begin() as db:
            user = await db.get(User, user_id)
            assert user is not None
            await accounts.set_password(db, user, password, min_len)
    except AppError as exc:
        return await _account_page(request, u, password_error=_message(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/staff/catalogue/accounts/{user_id}?saved=password")


def register(app: web.Application) -> None:
    """The catalogue pages (every route for staff only)."""
    r = app.router
    r.add_get("/staff/catalogue", catalogue_page, name="staff_catalogue")
    r.add_get("/staff/catalogue/products/new", product_new, name="staff_product_new")
    r.add_post("/staff/catalogue/products/new", product_create)
    r.add_get(r"/staff/catalogue/products/{product_id:\d+}", product_edit, name="staff_product")
    r.add_post(r"/staff/catalogue/products/{product_id:\d+}", product_save)
    r.add_route("*", "/staff/catalogue/stalls/new", stall_new, name="staff_stall_new")
    r.add_route("*", r"/staff/catalogue/stalls/{merchant_id:\d+}", stall_edit, name="staff_stall")
    r.add_route("*", "/staff/catalogue/accounts/new", account_new, name="staff_account_new")
    r.add_route("*", r"/staff/catalogue/accounts/{user_id:\d+}", account_edit, name="staff_account")
    r.add_post(r"/staff/catalogue/accounts/{user_id:\d+}/password", account_password,
               name="staff_account_password")
