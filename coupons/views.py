"""Coupons' and giveaways' HTTP API and pages: staff prepare coupon templates and plan drops, hosts drop and
run giveaways (the console uses the socket events; the same moves are here for tools), viewers claim, list
their coupons and enter, winners give their delivery details, anyone reads a draw's proof and verifies it."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from livecommerce.api import API, IDEMPOTENCY_KEY, MAX_ID, Api, Call, Strict, path_id
from livecommerce.auth import HOST, PUBLIC, SIGNED_IN, STAFF, access
from livecommerce.db import utcnow
from livecommerce.errors import N_, Conflict, Forbidden, NotFound, ValidationFailed, error_statuses
from livecommerce.keys import AppKeys, signed_in_user
from livecommerce.models import Market, User
from livecommerce.templating import render
from orders.rules import RuleError, normalize_phone
from sessions import services as broadcasts
from sessions.models import Broadcast

from . import claiming, claims, giveaways, live, reports
from .models import EntryMode
from .schemas import (
    ClaimOut,
    DropOut,
    GiveawayOut,
    HeldOut,
    PlanIn,
    TemplateIn,
    TemplateOut,
    WinnerDetailsIn,
)


class DropNowIn(Strict):
    template_id: int = Field(ge=1, le=MAX_ID)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)


class GiveawayIn(Strict):
    prize_ko: str = Field(min_length=1, max_length=120)
    prize_en: str = Field(default="", max_length=120)
    winners: int = Field(default=1, ge=1, le=100)
    mode: str = Field(default="button", pattern="^(button|keyword|buyers)$")
    keyword: str = Field(default="", max_length=30)
    minutes: int = Field(default=3, ge=1, le=60)


class MyCouponsQuery(Strict):
    broadcast_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class EntryOut(BaseModel):
    giveaway_id: int
    number: int


class ProofOut(GiveawayOut):
    entry_list: list[dict[str, Any]] = Field(description="every entry: its number and the entrant's masked name")
    algorithm: str


class DropReportOut(BaseModel):
    id: int
    broadcast_id: int
    broadcast_title: str
    name_ko: str
    name_en: str
    state: str
    quantity: int
    claimed: int
    redeemed: int
    discount_given: int = Field(description="won taken off by the purchases that used it")
    sales: int = Field(description="won paid by those purchases")


def _template(body: TemplateIn) -> claims.TemplateInput:
    return claims.TemplateInput(
        name_ko=body.name_ko, name_en=body.name_en, kind=body.kind, value=body.value, max_discount=body.max_discount,
        min_order=body.min_order, scope=body.scope, merchant_id=body.merchant_id,
        product_ids=tuple(body.product_ids), combinable=body.combinable, per_viewer_limit=body.per_viewer_limit,
        quantity=body.quantity, claim_minutes=body.claim_minutes, use_days=body.use_days)


async def _host_of(call: Call[Any, Any], broadcast_id: int) -> User:
    user: User = call.user
    async with call.app[AppKeys.reader]() as db:
        await broadcasts.get_broadcast(db, broadcast_id)
        await broadcasts.check_host(db, broadcast_id, user.id, user.role)
    return user


def register_api(api: Api) -> None:
    @api.route("GET", "/coupon-templates", access=STAFF, tag="coupons", response=list[TemplateOut],
               summary="Every coupon template (staff)")
    async def templates_list(call: Call[None, None]) -> list[TemplateOut]:
        async with call.app[AppKeys.reader]() as db:
            return [TemplateOut.model_validate(t) for t in await claims.templates(db)]

    @api.route("POST", "/markets/{market_id}/coupon-templates", access=STAFF, tag="coupons", body=TemplateIn,
               response=TemplateOut, status=201, errors=[404, 422],
               summary="Prepare a coupon: fixed or percent with a cap, minimum order, scope, windows, quantity, "
                       "per-viewer limit, whether it combines (staff)")
    async def template_create(call: Call[TemplateIn, None]) -> TemplateOut:
        market_id = call.param("market_id")
        async with call.app[AppKeys.db].begin() as db:
            if await db.get(Market, market_id) is None:
                raise NotFound(N_("No market with this id."), code="market_not_found")
            t = await claims.save_template(db, market_id, _template(call.body))
            return TemplateOut.model_validate(t)

    @api.route("PUT", "/coupon-templates/{template_id}", access=STAFF, tag="coupons", body=TemplateIn,
               response=TemplateOut, errors=[404, 422],
               summary="Change a coupon template; coupons already dropped keep their terms (staff)")
    async def template_update(call: Call[TemplateIn, None]) -> TemplateOut:
        async with call.app[AppKeys.db].begin() as db:
            t = await claims.get_template(db, call.param("template_id"))
            t = await claims.save_template(db, t.market_id, _template(call.body), t.id)
            return TemplateOut.model_validate(t)

    @api.route("GET", "/broadcasts/{broadcast_id}/coupon-templates", access=HOST, tag="coupons",
               response=list[TemplateOut], errors=[403, 404],
               summary="The coupons ready for this show: its market's active templates (its hosts, staff)")
    async def templates_for(call: Call[None, None]) -> list[TemplateOut]:
        bid = call.param("broadcast_id")
        await _host_of(call, bid)
        async with call.app[AppKeys.reader]() as db:
            b = await broadcasts.get_broadcast(db, bid)
            return [TemplateOut.model_validate(t) for t in await claims.templates(db, b.market_id, active_only=True)]

    @api.route("GET", "/broadcasts/{broadcast_id}/drops", access=PUBLIC, tag="coupons", response=list[DropOut],
               errors=[404], summary="A broadcast's coupon drops, planned, open and closed")
    async def drops_list(call: Call[None, None]) -> list[DropOut]:
        async with call.app[AppKeys.reader]() as db:
            await broadcasts.get_broadcast(db, call.param("broadcast_id"))
            return [DropOut.model_validate(claims.drop_out(d)) for d in await claims.drops_of(
                db, call.param("broadcast_id"))]

    @api.route("POST", "/broadcasts/{broadcast_id}/drops", access=HOST, tag="coupons", body=DropNowIn,
               response=DropOut, status=201, errors=[403, 404, 409, 422],
               summary="Drop a coupon into the live broadcast now (its hosts, staff)")
    async def drop_create(call: Call[DropNowIn, None]) -> DropOut:
        bid = call.param("broadcast_id")
        user = await _host_of(call, bid)
        async with call.app[AppKeys.db].begin() as db:
            d = await claims.drop_now(db, bid, call.body.template_id, user, utcnow(), call.body.quantity)
            out = DropOut.model_validate(claims.drop_out(d))
        await live.dropped(call.app, d)
        return out

    @api.route("POST", "/broadcasts/{broadcast_id}/planned-drops", access=STAFF, tag="coupons", body=PlanIn,
               response=DropOut, status=201, errors=[404, 409, 422],
               summary="Plan a drop for a minute of the broadcast (\"at minute 20, 500 coupons\"): the server drops "
                       "it then, once (staff)")
    async def drop_plan(call: Call[PlanIn, None]) -> DropOut:
        async with call.app[AppKeys.db].begin() as db:
            d = await claims.plan_drop(db, call.param("broadcast_id"), call.body.template_id, call.body.minute,
                                       call.user, utcnow(), call.body.quantity)
            return DropOut.model_validate(claims.drop_out(d))

    @api.route("DELETE", "/planned-drops/{drop_id}", access=STAFF, tag="coupons", status=204, errors=[404],
               summary="Cancel a planned drop that has not been dropped yet (staff)")
    async def drop_unplan(call: Call[None, None]) -> None:
        async with call.app[AppKeys.db].begin() as db:
            if not await claims.cancel_planned(db, call.param("drop_id")):
                raise NotFound(N_("No planned drop with this id."), code="drop_not_found")

    @api.route("POST", "/drops/{drop_id}/claims", access=SIGNED_IN, tag="coupons", response=ClaimOut, status=201,
               errors=[400, 403, 404, 409, 422], headers=[IDEMPOTENCY_KEY],
               summary="Claim one of a drop's coupons: first come, first served. Needs an Idempotency-Key header: "
                       "a retry with the same key answers the same and claims nothing more")
    async def claim_create(call: Call[None, None]) -> web.StreamResponse:
        answer = await claiming.claim_once(call.app, call.user, call.param("drop_id"),
                                           call.request.headers.get("Idempotency-Key"))
        return answer.response()

    @api.route("GET", "/me/coupons", access=SIGNED_IN, tag="coupons", query=MyCouponsQuery, response=list[HeldOut],
               summary="My coupons that can still be used (for one broadcast, or all)")
    async def my_coupons(call: Call[None, MyCouponsQuery]) -> list[HeldOut]:
        async with call.app[AppKeys.reader]() as db:
            held = await claims.held_by(db, call.user.id, broadcast_id=call.query.broadcast_id, usable_at=utcnow())
            return [HeldOut.model_validate(claims.held_out(h)) for h in held]

    @api.route("POST", "/broadcasts/{broadcast_id}/giveaways", access=HOST, tag="giveaways", body=GiveawayIn,
               response=GiveawayOut, status=201, errors=[403, 404, 409, 422],
               summary="Start a giveaway: entries open now, and the commitment to its secret seed is published")
    async def giveaway_start(call: Call[GiveawayIn, None]) -> GiveawayOut:
        bid = call.param("broadcast_id")
        user = await _host_of(call, bid)
        b = call.body
        spec = giveaways.GiveawayInput(b.prize_ko, b.prize_en, b.winners, EntryMode(b.mode), b.keyword, b.minutes)
        async with call.app[AppKeys.db].begin() as db:
            g = await giveaways.start(db, bid, user, spec, utcnow())
        await live.giveaway_changed(call.app, g, "giveaway:open")
        return GiveawayOut.model_validate(giveaways.public(g))

    @api.route("POST", "/giveaways/{giveaway_id}/entries", access=SIGNED_IN, tag="giveaways", response=EntryOut,
               status=201, errors=[403, 404, 409], summary="Enter a giveaway (once): the answer is your entry number")
    async def giveaway_enter(call: Call[None, None]) -> EntryOut:
        async with call.app[AppKeys.db].begin() as db:
            entry = await giveaways.enter(db, call.param("giveaway_id"), call.user, utcnow())
            g = await giveaways.get_giveaway(db, entry.giveaway_id)
            out, bid = EntryOut(giveaway_id=entry.giveaway_id, number=entry.number), g.broadcast_id
        await live.entered(call.app, bid)
        return out

    @api.route("POST", "/giveaways/{giveaway_id}/close", access=HOST, tag="giveaways", response=GiveawayOut,
               errors=[403, 404, 409], summary="Close entries: the list is fixed and its digest published")
    async def giveaway_close(call: Call[None, None]) -> GiveawayOut:
        gid = call.param("giveaway_id")
        async with call.app[AppKeys.reader]() as db:
            bid = (await giveaways.get_giveaway(db, gid)).broadcast_id
        await _host_of(call, bid)
        async with call.app[AppKeys.db].begin() as db:
            g = await giveaways.close(db, gid, utcnow())
            if g is None:
                raise Conflict(N_("This giveaway is closed."), code="giveaway_closed")
        await live.giveaway_changed(call.app, g, "giveaway:closed")
        return GiveawayOut.model_validate(giveaways.public(g))

    @api.route("POST", "/giveaways/{giveaway_id}/draw", access=HOST, tag="giveaways", response=GiveawayOut,
               errors=[403, 404, 409], summary="Draw the winners, once; the seed is published with them")
    async def giveaway_draw(call: Call[None, None]) -> GiveawayOut:
        gid = call.param("giveaway_id")
        async with call.app[AppKeys.reader]() as db:
            bid = (await giveaways.get_giveaway(db, gid)).broadcast_id
        await _host_of(call, bid)
        async with call.app[AppKeys.db].begin() as db:
            g, winners = await giveaways.draw_winners(db, gid, utcnow())
        await live.giveaway_changed(call.app, g, "giveaway:drawn")
        await live.winners_told(call.app, g, winners)
        async with call.app[AppKeys.reader]() as db:
            return GiveawayOut.model_validate(giveaways.public(g, await giveaways.winners_of(db, g.id)))

    @api.route("GET", "/giveaways/{giveaway_id}/proof", access=PUBLIC, tag="giveaways", response=ProofOut,
               errors=[404], summary="Everything needed to verify a draw: commitment, entry list (masked names), its "
                                     "digest, and once drawn the seed and the winners")
    async def giveaway_proof(call: Call[None, None]) -> ProofOut:
        async with call.app[AppKeys.reader]() as db:
            return ProofOut.model_validate(await giveaways.proof(db, call.param("giveaway_id")))

    @api.route("POST", "/giveaways/{giveaway_id}/winner-details", access=SIGNED_IN, tag="giveaways",
               body=WinnerDetailsIn, response=EntryOut, errors=[403, 404, 422],
               summary="A winner gives where to send their prize")
    async def winner_details(call: Call[WinnerDetailsIn, None]) -> EntryOut:
        b = call.body
        try:
            phone = normalize_phone(b.phone)
        except RuleError as exc:
            raise ValidationFailed.with_params(exc.message, exc.code, exc.params) from None
        details = giveaways.WinnerDetails(b.name.strip(), phone, b.postal_code, b.address1.strip(), b.address2.strip())
        async with call.app[AppKeys.db].begin() as db:
            w = await giveaways.save_details(db, call.param("giveaway_id"), call.user.id, details, utcnow())
            return EntryOut(giveaway_id=w.giveaway_id, number=w.number)

    @api.route("GET", "/coupons/report", access=STAFF, tag="coupons", response=list[DropReportOut],
               summary="Every drop: claims, redemptions, the discount given and the sales it brought (staff)")
    async def coupons_report(call: Call[None, None]) -> list[DropReportOut]:
        async with call.app[AppKeys.reader]() as db:
            return [DropReportOut.model_validate(r) for r in await reports.drops(db)]


# -- pages -------------------------------------------------------------------------------------------------

@access(PUBLIC)
async def verify_page(request: web.Request) -> web.Response:
    gid = path_id(request, "giveaway_id", N_("No such giveaway."), "giveaway_not_found")
    async with request.app[AppKeys.reader]() as db:
        proof = await giveaways.proof(db, gid)
        b = await db.get(Broadcast, proof["broadcast_id"])
    return render(request, "viewer/verify.html", {"proof": proof, "broadcast": b})


@access(SIGNED_IN)
async def won_page(request: web.Request) -> web.StreamResponse:
    gid = path_id(request, "giveaway_id", N_("No such giveaway."), "giveaway_not_found")
    user = signed_in_user(request)
    async with request.app[AppKeys.reader]() as db:
        g = await giveaways.get_giveaway(db, gid)
        mine = [w for w, u in await giveaways.winners_of(db, gid) if u.id == user.id]
    if not mine:
        raise Forbidden(N_("Only a winner can give delivery details for this prize."), code="not_a_winner")
    return render(request, "viewer/won.html", {"giveaway": g, "winner": mine[0]})


@access(STAFF)
async def staff_coupons_page(request: web.Request) -> web.Response:
    async with request.app[AppKeys.reader]() as db:
        ctx = await reports.staff_context(db)
    return render(request, "staff/coupons.html", ctx)


@access(STAFF)
async def staff_coupons_csv(request: web.Request) -> web.StreamResponse:
    async with request.app[AppKeys.reader]() as db:
        rows = await reports.drops(db)
    buf = io.StringIO()
    buf.write("\ufeff")  # Excel reads UTF-8 (Hangul) only with the mark
    w = csv.writer(buf)
    w.writerow(["drop", "broadcast", "broadcast_title", "coupon", "state", "quantity", "claimed", "redeemed",
                "discount_given_won", "sales_won"])
    for r in rows:
        w.writerow([r["id"], r["broadcast_id"], r["broadcast_title"], r["name_ko"], r["state"], r["quantity"],
                    r["claimed"], r["redeemed"], r["discount_given"], r["sales"]])
    return web.Response(body=buf.getvalue().encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="coupons.csv"'})


@access(STAFF)
async def staff_giveaways_page(request: web.Request) -> web.Response:
    async with request.app[AppKeys.reader]() as db:
        ctx = await reports.giveaways_context(db)
    return render(request, "staff/giveaways.html", ctx)


# The HTTP status of each refusal of this domain (the errors themselves carry only their code).
ERROR_STATUSES = {
    **claiming.ERROR_STATUSES,
    "not_your_coupon": 403, "coupon_used": 409, "coupon_expired": 409, "not_combinable": 409,
    "out_of_scope": 422, "below_minimum": 422,
}


def register(app: web.Application) -> None:
    error_statuses(app).update(ERROR_STATUSES)
    register_api(app[API])
    r = app.router
    r.add_get(r"/giveaways/{giveaway_id:\d+}/verify", verify_page, name="giveaway_verify")
    r.add_get(r"/giveaways/{giveaway_id:\d+}/won", won_page, name="giveaway_won")
    r.add_get("/staff/coupons", staff_coupons_page, name="coupons_staff")
    r.add_get("/staff/coupons.csv", staff_coupons_csv, name="coupons_staff_csv")
    r.add_get("/staff/giveaways", staff_giveaways_page, name="giveaways_staff")

