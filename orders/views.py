"""The orders API and pages: buying during a live stream (with an Idempotency-Key), the delivery
quote, the postcode search, a viewer's orders, a stall's lines, the staff's orders with their CSV export, and the host's
figures. Handlers parse, call a service inside one unit of work, and answer after the commit. The HTTP
status of each of orders' refusals is decided here (`ERROR_STATUSES`), not by the domain."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from yarl import URL

from livecommerce import i18n
from livecommerce.api import IDEMPOTENCY_KEY, Api, Call, path_id
from livecommerce.auth import HOST, MERCHANT, PUBLIC, SIGNED_IN, STAFF, access
from livecommerce.db import utcnow
from livecommerce.errors import AppError, BadRequest, NotFound, ValidationFailed, error_statuses, status_for
from livecommerce.jsonenc import dumps
from livecommerce.keys import AppKeys, signed_in_user, state
from livecommerce.models import Market, Product, Role, User
from livecommerce.templating import render
from livecommerce.throttle import THROTTLE, client_address
from sessions import services as broadcasts

from . import address_book, addresses, buying, fulfilment, packing, rules, schemas
from . import settings as order_settings
from .address_book import ADDRESS_SEARCHES
from .connections import quick_read
from .errors import refused
from .figures import broadcast_figures, orders_csv
from .lineup import lineup_stock, read_lineup
from .models import DELIVERY_LABELS, STATUS_LABELS, DeliveryOption, MarketOrderSettings, OrderStatus, Purchase
from .payments import METHOD_LABELS, PAYMENT_PROVIDERS, InvalidWebhook, offered
from .placing import notify
from .pricing import PRICING
from .schemas import (
    AddressOut,
    AddressQueryIn,
    AddressSearchOut,
    CheckoutItemOut,
    CheckoutOut,
    DeliveryOut,
    FiguresOut,
    LineStatusIn,
    MerchantLineOut,
    MerchantLinesQuery,
    OrderSettingsIn,
    OrderSettingsOut,
    PaymentMethodOut,
    PurchaseIn,
    PurchaseOut,
    PurchasesQuery,
    QuoteOut,
    QuoteQuery,
    StockItemOut,
    WebhookOut,
)

log = logging.getLogger("livecommerce.orders")

IDEMPOTENCY_HEADER = "Idempotency-Key"

# The HTTP status of each refusal orders' errors and rules carry: 409 when the state of things refuses
# (it may pass later), 422 when the request does, 400 when it is malformed.
ERROR_STATUSES = {
    "broadcast_not_live": 409, "sold_out": 409, "not_enough_stock": 409, "delivery_option_changed": 409,
    "illegal_status_move": 409, "cannot_cancel": 409, "idempotency_in_flight": 409,
    "empty_order": 422, "duplicate_product": 422, "not_on_lineup": 422, "invalid_quantity": 422,
    "invalid_phone": 422, "invalid_postal_code": 422, "outside_delivery_area": 422, "invalid_cutoff": 422,
    "invalid_area": 422, "idempotency_key_reused": 422,
    "idempotency_key_missing": 400, "address_query_too_short": 400, "address_query_too_long": 400,
}


def _answer(result: buying.PurchaseResult) -> web.Response:
    """A purchase's result over HTTP: the JSON text kept with its Idempotency-Key, as it is, so a retry's
    answer is the first one byte for byte."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return web.Response(status=result.status, text=result.body, content_type="application/json", headers=headers)


def _tz(request: web.Request) -> Any:
    return request.app[AppKeys.config].tz


def delivery_out(request: web.Request, option: DeliveryOption, promise_at: datetime, fee: int) -> DeliveryOut:
    return schemas.delivery_out(option, promise_at, fee, _tz(request))


def names_of(products: dict[int, Product]) -> schemas.Names:
    return {pid: (p.name_ko, p.name_en) for pid, p in products.items()}




# -- buying ----------------------------------------------------------------------------------------

async def purchase_create(call: Call[PurchaseIn, None]) -> web.StreamResponse:
    """POST a purchase with an Idempotency-Key header: see `buying.purchase_once`."""
    return _answer(await buying.purchase_once(call.app, call.user, call.param("broadcast_id"), call.body,
                                                call.request.headers.get(IDEMPOTENCY_HEADER)))


async def purchase_checkout(call: Call[None, None]) -> CheckoutOut:
    broadcast_id = call.param("broadcast_id")
    async with quick_read(call.app) as db:
        lineup = await read_lineup(db, broadcast_id)
    info, offers = lineup.info, lineup.offers
    providers = call.app[PAYMENT_PROVIDERS]
    methods = offered(providers, lineup.settings)
    terms = rules.sale_terms(info.state, info.recording_url)
    after = terms is rules.SaleTerms.AFTER_SHOW  # the replay sells at the regular price
    return CheckoutOut(
        broadcast_id=broadcast_id, state=info.state.value, open=terms is not None, after_show=after,
        items=[CheckoutItemOut(product_id=pid, name_ko=r.name_ko, name_en=r.name_en, image=r.image, unit_ko=r.unit_ko,
                               unit_en=r.unit_en, live_price=r.offer.usual_price if after else r.offer.live_price,
                               usual_price=r.offer.usual_price, left=r.offer.left) for pid, r in offers.items()],
        payment_methods=[PaymentMethodOut(method=m, label=i18n.gettext(METHOD_LABELS.get(m, m))) for m in methods],
        max_quantity=call.app[AppKeys.config].orders.max_quantity_per_line)


async def delivery_quote(call: Call[None, QuoteQuery]) -> QuoteOut:
    broadcast_id = call.param("broadcast_id")
    async with quick_read(call.app) as db:
        settings = (await read_lineup(db, broadcast_id)).settings
    choices = rules.delivery_choices(order_settings.delivery_rules(settings), call.query.postal_code, utcnow(),
                                     call.app[AppKeys.config].tz)
    q, options = choices[0], [delivery_out(call.request, c.option, c.promise_at, c.fee) for c in choices]
    return QuoteOut(option=q.option, label=options[0].label, promise_at=q.promise_at,
                    promise_text=options[0].promise_text, fee=q.fee, in_area=q.in_area, options=options)


async def address_search(call: Call[None, AddressQueryIn]) -> web.StreamResponse:
    """The postcode search: limited per address like the other reads anyone may make, answered from the
    process's recent answers when it can (`address_book.SearchCache`), and kept by the browser a while."""
    try:
        query = addresses.parse_query(call.query.q)
    except rules.RuleError as exc:
        raise refused(exc) from None
    config = call.app[AppKeys.config]  # a query refused above cost nothing: only searches count
    await call.app[THROTTLE].per_address("addresses", client_address(call.request, config.server.trust_proxy),
                                         config.security.address_searches_per_minute)
    cache = call.app[ADDRESS_SEARCHES]
    result = cache.get(query.key)
    if result is None:
        generation = cache.generation
        async with quick_read(call.app) as db:
            result = await address_book.search(db, query)
        cache.keep(query.key, result, generation)
    out = AddressSearchOut(results=[AddressOut(postal_code=r.postal_code, road_address=r.road_address,
                                               jibun_address=r.jibun_address, building_name=r.building_name)
                                    for r in result.results], truncated=result.truncated)
    # the same for everyone and in every language; private: the answer may carry the session's cookie
    return web.json_response(out.model_dump(mode="json"), dumps=dumps,
                             headers={"Cache-Control": f"private, max-age={int(address_book.SEARCH_CACHE_SECONDS)}"})


# -- the API ---------------------------------------------------------------------------------------

PROVIDER_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$",
                 "description": "the payment provider's name (e.g. toss)"}


def register_api(api: Api) -> None:
    api.route("POST", "/broadcasts/{broadcast_id}/purchases", access=SIGNED_IN, tag="orders", body=PurchaseIn,
              response=PurchaseOut, status=201, errors=[400, 404, 409, 422], headers=[IDEMPOTENCY_KEY],
              summary="Buy at the live price while the broadcast is live. Needs an Idempotency-Key header: a "
                      "retry with the same key answers the same and buys nothing more")(purchase_create)
    api.route("GET", "/broadcasts/{broadcast_id}/checkout", access=PUBLIC, tag="orders", response=CheckoutOut,
              errors=[404],
              summary="What the buy sheet needs: live prices, units left, payment methods")(purchase_checkout)
    api.route("GET", "/broadcasts/{broadcast_id}/delivery-quote", access=PUBLIC, tag="orders", query=QuoteQuery,
              response=QuoteOut, errors=[404],
              summary="The delivery option and promise an order placed now would get, for a postal code"
              )(delivery_quote)
    api.route("GET", "/addresses", access=PUBLIC, tag="orders", query=AddressQueryIn, response=AddressSearchOut,
              errors=[400], throttled=True,
              summary="Find a delivery address (Korean road addresses) by a road, a building, a dong or its postal "
                      "code: every word typed must be in the address; at most 20, best first. A query with fewer "
                      "than 2 letters or digits, or over 80 characters, is refused with 400"
              )(address_search)

    @api.route("POST", "/payments/{provider}/webhook", access=PUBLIC, tag="orders", csrf=False, response=WebhookOut,
               errors=[400, 404, 409, 422], path_params={"provider": PROVIDER_NAME},
               summary="A payment gateway says an order was paid. No session and no CSRF token: the provider "
                       "checks the gateway's signature over the raw body. Delivered twice, it pays once")
    async def payment_webhook(call: Call[None, None]) -> WebhookOut:
        name = call.request.match_info["provider"]
        provider = call.app[PAYMENT_PROVIDERS].get(name)
        if provider is None:
            raise NotFound("No payment provider by this name.", code="provider_not_found")
        raw = await call.request.read()
        try:
            event = provider.verify_webhook(call.request.headers, raw)
        except InvalidWebhook as exc:
            log.warning("webhook refused", extra={"provider": name, "reason": str(exc)})
            raise BadRequest("The webhook's signature or content does not check out.", code="invalid_webhook") from None
        async with call.app[AppKeys.db].begin() as db:
            purchase = await fulfilment.apply_payment_event(db, event, utcnow())
        return WebhookOut(purchase_id=event.purchase_id, status=purchase.status.value if purchase else "ignored")

    @api.route("GET", "/broadcasts/{broadcast_id}/stock", access=PUBLIC, tag="orders", response=list[StockItemOut],
               errors=[404], summary="Units each product on the line-up can still sell")
    async def lineup_stock_get(call: Call[None, None]) -> list[StockItemOut]:
        broadcast_id = call.param("broadcast_id")
        async with quick_read(call.app) as db:
            left = await lineup_stock(db, broadcast_id)
        return [StockItemOut(product_id=pid, left=n) for pid, n in left.items()]

    @api.route("GET", "/me/purchases", access=SIGNED_IN, tag="orders", response=list[PurchaseOut],
               summary="My orders, newest first")
    async def my_purchases(call: Call[None, None]) -> list[PurchaseOut]:
        async with call.app[AppKeys.reader]() as db:
            rows = await fulfilment.my_purchases(db, call.user.id)
            return await _outs(call.request, db, rows)

    @api.route("GET", "/purchases/{purchase_id}", access=SIGNED_IN, tag="orders", response=PurchaseOut,
               errors=[404], summary="One order (its buyer, or staff)")
    async def purchase_get(call: Call[None, None]) -> PurchaseOut:
        async with call.app[AppKeys.reader]() as db:
            p = await fulfilment.get_purchase(db, call.param("purchase_id"))
            if p.user_id != call.user.id and call.user.role is not Role.STAFF:
                raise NotFound("No order with this id.", code="purchase_not_found")
            return (await _outs(call.request, db, [p]))[0]

    @api.route("POST", "/purchases/{purchase_id}/cancel", access=SIGNED_IN, tag="orders", response=PurchaseOut,
               errors=[404, 409], summary="Cancel an order: its buyer until it is paid or packed; staff until it "
                                          "is delivered (refunded if it was paid). Its units go back on sale")
    async def purchase_cancel(call: Call[None, None]) -> PurchaseOut:
        return await _cancel(call.request, call.param("purchase_id"))

    @api.route("POST", "/purchases/{purchase_id}/paid", access=STAFF, tag="orders", response=PurchaseOut,
               errors=[404, 409], summary="The bank transfer arrived: the order is paid (staff)")
    async def purchase_paid(call: Call[None, None]) -> PurchaseOut:
        async with call.app[AppKeys.db].begin() as db:
            p = await fulfilment.mark_paid(db, call.param("purchase_id"), utcnow())
            out = (await _outs(call.request, db, [p]))[0]
        return out

    @api.route("GET", "/purchases", access=STAFF, tag="orders", query=PurchasesQuery, response=list[PurchaseOut],
               summary="Every order, by broadcast, stall or status (staff)")
    async def purchases_list(call: Call[None, PurchasesQuery]) -> list[PurchaseOut]:
        q = call.query
        async with call.app[AppKeys.reader]() as db:
            rows = await fulfilment.list_purchases(
                db, fulfilment.PurchaseFilter(q.broadcast_id, q.merchant_id, q.status), q.limit, q.offset)
            return await _outs(call.request, db, rows)

    @api.route("GET", "/merchant/lines", access=MERCHANT, tag="orders", query=MerchantLinesQuery,
               response=list[MerchantLineOut], errors=[403], summary="My stall's order lines (merchants)")
    async def merchant_lines_list(call: Call[None, MerchantLinesQuery]) -> list[MerchantLineOut]:
        user: User = call.user
        if user.merchant_id is None:
            raise AppError("Your account is not linked to a stall.", code="no_stall", status=403)
        async with call.app[AppKeys.reader]() as db:
            rows = await fulfilment.merchant_lines(db, user.merchant_id, status=call.query.status,
                                                   broadcast_id=call.query.broadcast_id)
        return [_merchant_line_out(call.request, r) for r in rows]

    @api.route("POST", "/purchase-lines/{line_id}/status", access=MERCHANT, tag="orders", body=LineStatusIn,
               response=PurchaseOut, errors=[403, 404, 409],
               summary="Pack or deliver one of my stall's lines (merchants); staff may move any line")
    async def purchase_line_status(call: Call[LineStatusIn, None]) -> PurchaseOut:
        now = utcnow()
        async with call.app[AppKeys.db].begin() as db:
            p = await fulfilment.move_line(db, call.user, call.param("line_id"), OrderStatus(call.body.status), now,
                                           call.app[PRICING].releasers)
            out = (await _outs(call.request, db, [p]))[0]
            event = (await fulfilment.cancelled_event(db, p, now)
                     if OrderStatus(call.body.status) in rules.RETURNS_STOCK else None)
        if event is not None:
            await notify(call.app, event)
        return out

    @api.route("GET", "/broadcasts/{broadcast_id}/figures", access=HOST, tag="orders", response=FiguresOut,
               errors=[403, 404], summary="The host console's figures: orders, revenue, units per product, buyers "
                                          "and viewers, sales per minute (the broadcast's hosts, staff)")
    async def broadcast_figures_get(call: Call[None, None]) -> FiguresOut:
        broadcast_id = call.param("broadcast_id")
        user: User = call.user
        async with call.app[AppKeys.reader]() as db:
            await broadcasts.get_broadcast(db, broadcast_id)
            await broadcasts.check_host(db, broadcast_id, user.id, user.role)
            f = await broadcast_figures(db, broadcast_id)
        return FiguresOut.model_validate(f)

    @api.route("GET", "/markets/{market_id}/order-settings", access=PUBLIC, tag="orders", response=OrderSettingsOut,
               errors=[404], summary="A market's delivery options and payment settings")
    async def order_settings_get(call: Call[None, None]) -> OrderSettingsOut:
        market_id = call.param("market_id")
        async with call.app[AppKeys.reader]() as db:
            s = await order_settings.order_settings(db, market_id)
            if s is None:
                if await db.get(Market, market_id) is None:
                    raise NotFound("No market with this id.", code="market_not_found")
                s = MarketOrderSettings(market_id=market_id, **_defaults())
        return OrderSettingsOut.model_validate(s)

    @api.route("PUT", "/markets/{market_id}/order-settings", access=STAFF, tag="orders", body=OrderSettingsIn,
               response=OrderSettingsOut, errors=[404], summary="Set a market's delivery options and payment (staff)")
    async def order_settings_put(call: Call[OrderSettingsIn, None]) -> OrderSettingsOut:
        async with call.app[AppKeys.db].begin() as db:
            s = await order_settings.save_order_settings(db, call.param("market_id"),
                                                         call.body.model_dump(exclude_none=True), utcnow())
            out = OrderSettingsOut.model_validate(s)
        return out


def _defaults() -> dict[str, Any]:
    """The column defaults, for a market that has no settings row yet."""
    return {c.name: c.default.arg for c in MarketOrderSettings.__table__.columns
            if c.default is not None and not callable(c.default.arg)}


async def _outs(request: web.Request, db: Any, rows: Sequence[Purchase]) -> list[PurchaseOut]:
    names = names_of(await fulfilment.products_of(db, rows))
    settings: dict[int, MarketOrderSettings | None] = {}
    for p in rows:
        if p.market_id not in settings:
            settings[p.market_id] = await order_settings.order_settings(db, p.market_id)
    return [schemas.purchase_out(p, names, settings[p.market_id], _tz(request)) for p in rows]


def _merchant_line_out(request: web.Request, r: fulfilment.MerchantLine) -> MerchantLineOut:
    p = r.purchase
    return MerchantLineOut(
        line=schemas.line_out(r.line, names_of({r.product.id: r.product})), purchase_id=p.id,
        broadcast_id=p.broadcast_id,
        placed_at=p.placed_at, purchase_status=p.status, payment_method=p.payment_method,
        delivery=delivery_out(request, p.delivery_option, p.delivery_promise_at, p.delivery_fee),
        name=p.contact_name, phone=p.contact_phone, postal_code=p.postal_code, address1=p.address1,
        address2=p.address2, note=p.note)


async def _cancel(request: web.Request, purchase_id: int) -> PurchaseOut:
    now = utcnow()
    async with request.app[AppKeys.db].begin() as db:
        p = await fulfilment.cancel_purchase(db, signed_in_user(request), purchase_id, now,
                                             request.app[PRICING].releasers)
        out = (await _outs(request, db, [p]))[0]
        event = await fulfilment.cancelled_event(db, p, now)
    await notify(request.app, event)
    return out


# -- pages -----------------------------------------------------------------------------------------

STATUS_CHOICES = list(OrderStatus)


def _labels() -> dict[str, Any]:
    return {"status_labels": {s.value: STATUS_LABELS[s] for s in OrderStatus},
            "delivery_labels": {o.value: DELIVERY_LABELS[o] for o in DeliveryOption},
            "method_labels": METHOD_LABELS}


def _status_arg(value: str | None) -> OrderStatus | None:
    try:
        return OrderStatus(value) if value else None
    except ValueError:
        return None


def _int_arg(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 18 else None


@access(PUBLIC)
async def buy_page(request: web.Request) -> web.Response:
    """The buy sheet on its own page (the live page includes the same fragment)."""
    async with request.app[AppKeys.reader]() as db:
        b = await broadcasts.get_broadcast(db, path_id(request, "broadcast_id"), full=True)
    after_show = rules.sale_terms(b.state, b.recording_url) is rules.SaleTerms.AFTER_SHOW  # regular prices
    return render(request, "orders/buy.html", {"b": b, "after_show": after_show})


@access(SIGNED_IN)
async def my_orders_page(request: web.Request) -> web.Response:
    user = signed_in_user(request)
    async with request.app[AppKeys.reader]() as db:
        rows = await fulfilment.my_purchases(db, user.id)
        outs = await _outs(request, db, rows)
        titles = await fulfilment.broadcasts_of(db, {p.broadcast_id for p in rows})
    return render(request, "orders/mine.html", {"orders": outs, "titles": titles,
                                                "notice": request.query.get("done", ""), **_labels()})


@access(SIGNED_IN)
async def my_order_cancel(request: web.Request) -> web.StreamResponse:
    try:
        await _cancel(request, path_id(request, "purchase_id"))
    except AppError as exc:
        async with request.app[AppKeys.reader]() as db:
            rows = await fulfilment.my_purchases(db, signed_in_user(request).id)
            outs = await _outs(request, db, rows)
            titles = await fulfilment.broadcasts_of(db, {p.broadcast_id for p in rows})
        return render(request, "orders/mine.html", {
            "orders": outs, "titles": titles, "notice": "", "error": i18n.gettext(exc.message, **exc.params),
            **_labels()}, status=status_for(request.app, exc))
    raise web.HTTPSeeOther("/orders?done=cancelled")


async def _merchant_context(request: web.Request, user: User) -> dict[str, Any]:
    status = _status_arg(request.query.get("status"))
    broadcast_id = _int_arg(request.query.get("broadcast_id"))
    async with request.app[AppKeys.reader]() as db:
        merchant_id = _stall_of(request, user)
        merchants = await fulfilment.merchants_by_id(db)
        rows = (await fulfilment.merchant_lines(db, merchant_id, status=status, broadcast_id=broadcast_id)
                if merchant_id is not None else [])
        titles = await fulfilment.broadcasts_of(db, {r.purchase.broadcast_id for r in rows})
    return {"rows": rows, "cards": packing.order_cards(rows),
            "merchant": merchants.get(merchant_id) if merchant_id else None, "merchants": merchants,
            "back": str(URL("/merchant/orders").with_query(
                {k: v for k, v in request.query.items() if k in ("status", "broadcast_id", "merchant_id")})),
            "status": status.value if status else "", "broadcast_id": broadcast_id or "", "titles": titles,
            "today": utcnow().astimezone(_tz(request)).date().isoformat(),
            "delivery_text": lambda p: delivery_out(request, p.delivery_option, p.delivery_promise_at,
                                                     p.delivery_fee).promise_text,
            **_labels()}


def _stall_of(request: web.Request, user: User) -> int | None:
    """The stall whose orders a page shows: a merchant's own, or the one staff chose (`merchant_id`)."""
    if user.role is Role.MERCHANT:
        if user.merchant_id is None:
            raise AppError("Your account is not linked to a stall.", code="no_stall", status=403)
        return user.merchant_id
    return _int_arg(request.query.get("merchant_id"))


def _merchant_back(form: Any) -> str:
    back = str(form.get("back", ""))
    return back if back.startswith("/merchant/orders") and "//" not in back else "/merchant/orders"


@access(MERCHANT)
async def merchant_page(request: web.Request) -> web.Response:
    user = signed_in_user(request)
    ctx = await _merchant_context(request, user)
    return render(request, "orders/merchant.html", {**ctx, "error": None})


async def _merchant_refused(request: web.Request, user: User, exc: AppError) -> web.Response:
    ctx = await _merchant_context(request, user)
    return render(request, "orders/merchant.html", {**ctx, "error": i18n.gettext(exc.message, **exc.params)},
                  status=status_for(request.app, exc))


@access(MERCHANT)
async def merchant_line_post(request: web.Request) -> web.StreamResponse:
    user = signed_in_user(request)
    form = await request.post()
    wanted = _status_arg(str(form.get("status", "")))
    try:
        if wanted is None or wanted not in fulfilment.MERCHANT_MOVES:
            raise ValidationFailed("Choose packed or delivered.", code="invalid_status")
        async with request.app[AppKeys.db].begin() as db:
            await fulfilment.move_line(db, user, path_id(request, "line_id"), wanted, utcnow(),
                                       request.app[PRICING].releasers)
    except AppError as exc:
        return await _merchant_refused(request, user, exc)
    raise web.HTTPSeeOther(_merchant_back(form))


@access(MERCHANT)
async def merchant_order_post(request: web.Request) -> web.StreamResponse:
    """One tap on an order's card: the stall's lines in it packed, or handed over."""
    user = signed_in_user(request)
    form = await request.post()
    wanted = _status_arg(str(form.get("status", "")))
    try:
        if wanted is None or wanted not in fulfilment.MERCHANT_MOVES:
            raise ValidationFailed("Choose packed or delivered.", code="invalid_status")
        async with request.app[AppKeys.db].begin() as db:
            await packing.move_stall_lines(db, user, path_id(request, "purchase_id"),
                                           _int_arg(str(form.get("merchant_id", ""))), wanted, utcnow(),
                                           request.app[PRICING].releasers)
    except AppError as exc:
        return await _merchant_refused(request, user, exc)
    raise web.HTTPSeeOther(_merchant_back(form))


def _day_arg(value: str | None, today: date) -> date:
    if value and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    return today


@access(MERCHANT)
async def packing_page(request: web.Request) -> web.Response:
    """A day's packing list to print: the stall's orders placed that day (Korea time), by product."""
    user = signed_in_user(request)
    tz = _tz(request)
    today = utcnow().astimezone(tz).date()
    day = _day_arg(request.query.get("day"), today)
    async with request.app[AppKeys.reader]() as db:
        merchant_id = _stall_of(request, user)
        merchants = await fulfilment.merchants_by_id(db)
        start, end = packing.day_bounds(day, tz)
        rows = await packing.day_lines(db, merchant_id, start, end) if merchant_id is not None else []
    items = packing.packing_list(rows)
    stall = {"merchant_id": merchant_id} if user.role is Role.STAFF and merchant_id else {}
    return render(request, "orders/packing.html", {
        "items": items, "day": day, "day_moment": datetime.combine(day, datetime.min.time(), tzinfo=tz),
        "merchant": merchants.get(merchant_id) if merchant_id else None, "merchants": merchants,
        "orders": len({o.purchase.id for i in items for o in i.orders}),
        "units": sum(i.quantity for i in items),
        "prev_url": str(URL("/merchant/packing").with_query({"day": (day - timedelta(days=1)).isoformat(), **stall})),
        "next_url": str(URL("/merchant/packing").with_query({"day": (day + timedelta(days=1)).isoformat(), **stall})),
        "delivery_text": lambda p: delivery_out(request, p.delivery_option, p.delivery_promise_at,
                                                 p.delivery_fee).promise_text,
        **_labels()})


def _staff_filter(request: web.Request) -> fulfilment.PurchaseFilter:
    return fulfilment.PurchaseFilter(_int_arg(request.query.get("broadcast_id")),
                                     _int_arg(request.query.get("merchant_id")),
                                     _status_arg(request.query.get("status")))


STAFF_PAGE_SIZE = 100


async def _staff_context(request: web.Request) -> dict[str, Any]:
    f = _staff_filter(request)
    offset = _int_arg(request.query.get("offset")) or 0
    async with request.app[AppKeys.reader]() as db:
        rows = await fulfilment.list_purchases(db, f, STAFF_PAGE_SIZE, offset)
        total = await fulfilment.count_purchases(db, f)
        outs = await _outs(request, db, rows)
        merchants = await fulfilment.merchants_by_id(db)
        recent = await broadcasts.list_broadcasts(db, limit=200)
    query = {k: v for k, v in (("broadcast_id", f.broadcast_id), ("merchant_id", f.merchant_id),
                                ("status", f.status.value if f.status else None)) if v}
    return {"orders": outs, "total": total, "offset": offset, "page_size": STAFF_PAGE_SIZE, "filter": f,
            "query": query, "merchants": merchants, "broadcasts": sorted(recent, key=lambda b: b.starts_at,
                                                                          reverse=True),
            **_labels()}


@access(STAFF)
async def staff_page(request: web.Request) -> web.Response:
    ctx = await _staff_context(request)
    return render(request, "orders/staff.html", {**ctx, "error": None})


@access(STAFF)
async def staff_action(request: web.Request) -> web.StreamResponse:
    purchase_id = path_id(request, "purchase_id")
    action = request.match_info["action"]
    form = await request.post()
    back = str(form.get("back", ""))
    back = back if back.startswith("/staff/orders") and "//" not in back else "/staff/orders"
    now = utcnow()
    try:
        if action == "paid":
            async with request.app[AppKeys.db].begin() as db:
                await fulfilment.mark_paid(db, purchase_id, now)
        else:
            await _cancel(request, purchase_id)
    except AppError as exc:
        ctx = await _staff_context(request)
        return render(request, "orders/staff.html", {**ctx, "error": i18n.gettext(exc.message, **exc.params)},
                      status=status_for(request.app, exc))
    raise web.HTTPSeeOther(back)


@access(STAFF)
async def staff_csv(request: web.Request) -> web.StreamResponse:
    """The filtered orders, one row per line (`figures.orders_csv`), as a CSV that Excel opens with
    Korean intact: UTF-8 with a byte-order mark, CRLF line ends."""
    tz = request.app[AppKeys.config].tz
    async with request.app[AppKeys.reader]() as db:
        text = await orders_csv(db, _staff_filter(request), tz, state(request).locale)
    body = "\ufeff" + text
    stamp = utcnow().astimezone(tz).strftime("%Y%m%d-%H%M")
    return web.Response(body=body.encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="orders-{stamp}.csv"',
                                 "Cache-Control": "no-store"})


@access(HOST)
async def figures_page(request: web.Request) -> web.Response:
    user = signed_in_user(request)
    broadcast_id = path_id(request, "broadcast_id")
    async with request.app[AppKeys.reader]() as db:
        b = await broadcasts.get_broadcast(db, broadcast_id, full=True)
        await broadcasts.check_host(db, broadcast_id, user.id, user.role)
        f = await broadcast_figures(db, broadcast_id)
    return render(request, "orders/figures.html", {
        "b": b, "f": f, "figures_json": FiguresOut.model_validate(f).model_dump(mode="json")})


# -- wiring ----------------------------------------------------------------------------------------

def register(app: web.Application, api: Api) -> None:
    """Orders' edge in the app: API routes (before `api.install`), pages, and the HTTP status of each of
    orders' refusals."""
    error_statuses(app).update(ERROR_STATUSES)
    register_api(api)
    r = app.router
    r.add_get(r"/live/{broadcast_id:\d+}/buy", buy_page, name="orders_buy")
    r.add_get("/orders", my_orders_page, name="orders_mine")
    r.add_post(r"/orders/{purchase_id:\d+}/cancel", my_order_cancel, name="orders_cancel")
    r.add_get("/merchant/orders", merchant_page, name="orders_merchant")
    r.add_post(r"/merchant/orders/lines/{line_id:\d+}", merchant_line_post, name="orders_merchant_line")
    r.add_post(r"/merchant/orders/{purchase_id:\d+}", merchant_order_post, name="orders_merchant_order")
    r.add_get("/merchant/packing", packing_page, name="orders_packing")
    r.add_get("/staff/orders", staff_page, name="orders_staff")
    r.add_get("/staff/orders.csv", staff_csv, name="orders_staff_csv")
    r.add_post(r"/staff/orders/{purchase_id:\d+}/{action:paid|cancel}", staff_action, name="orders_staff_action")
    r.add_get(r"/host/broadcasts/{broadcast_id:\d+}/figures", figures_page, name="orders_figures")
