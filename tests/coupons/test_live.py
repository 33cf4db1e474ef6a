"""Coupons and giveaways in a live broadcast, with real clients over real sockets and HTTP: the host drops a
coupon, viewers see it and claim it (once, with an Idempotency-Key), one buys with it (the discount recorded on
the purchase and its lines, used once, given back on cancel), both enter a giveaway, the draw is announced
and verifies from the published proof."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupons import claims, draw, live
from coupons.models import ClaimedCoupon, ClaimState, CouponDrop, CouponTemplate
from coupons.redemption import REDEMPTION_ERRORS
from livecommerce.app import live_parts_of_domains
from livecommerce.db import utcnow
from livecommerce.models import User
from livecommerce.protocol import events
from orders.models import Purchase, PurchaseLine
from tests.orders.support import order
from tests.support import World, browser_session, fresh, guest, sign_in, signed_in, viewer


async def test_a_coupon_dropped_claimed_and_redeemed_once(server: TestServer, world: World, db: AsyncSession,
                                                          coupon_3000: CouponTemplate) -> None:
    host = await signed_in(server, "host")
    fan = await signed_in(server, "viewer")
    try:
        for who in (host, fan):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]
        ack = await host.call("host:coupon_drop", {"broadcast_id": world.live.id, "template_id": coupon_3000.id,
                                                   "quantity": 2})
        assert ack["ok"], ack
        drop = ack["data"]
        assert drop["left"] == 2 and drop["value"] == 3000 and drop["claim_closes_at"]
        await fan.wait_for(lambda: any(e["t"] == "coupon:drop" for e in fan.events))
        seen = next(e["d"] for e in fan.events if e["t"] == "coupon:drop")
        assert seen["id"] == drop["id"]

        claim = {"broadcast_id": world.live.id, "drop_id": drop["id"], "idempotency_key": "tap-1"}
        got = await fan.call("coupon:claim", claim)
        assert got["ok"] and got["data"]["replayed"] is False, got
        again = await fan.call("coupon:claim", claim)
        assert again["ok"] and again["data"] == {"claim": got["data"]["claim"], "replayed": True}
        second = await fan.call("coupon:claim", {**claim, "idempotency_key": "tap-2"})
        assert second["ok"] is False and second["error"]["code"] == "already_claimed"
        assert (await host.call("coupon:claim", {**claim, "idempotency_key": "tap-h"}))["error"]["code"] == \
            "viewers_only"
        claim_id = got["data"]["claim"]["claim_id"]

        rejoin = await fan.call("join", {"broadcast_id": world.live.id})
        snap = rejoin["data"]["broadcast"]
        assert [d["id"] for d in snap["coupons"]["open"]] == [drop["id"]]
        assert [h["claim_id"] for h in snap["coupons"]["mine"]] == [claim_id]

        buy = {**order(world), "broadcast_id": world.live.id, "idempotency_key": "buy-1", "coupons": [claim_id]}
        bought = await fan.call("buy", buy)
        assert bought["ok"], bought
        purchase = bought["data"]["purchase"]
        assert purchase["subtotal"] == 2 * 9900 and purchase["discount"] == 3000
        assert purchase["total"] == purchase["subtotal"] - 3000 + purchase["delivery_fee"]
        used = await fan.call("buy", {**buy, "idempotency_key": "buy-2"})
        assert used["ok"] is False and used["error"]["code"] == "coupon_used"
        assert (await host.call("host:watch", {"broadcast_id": world.live.id}))["ok"]
        await host.wait_for(lambda: any(f["drops"].get(str(drop["id"]), {}).get("redeemed") == 1
                                        for f in host.other.get("coupons:figures", [])), limit=10)
    finally:
        await host.sio.disconnect()
        await fan.sio.disconnect()
    await fresh(db)
    p = (await db.scalars(select(Purchase))).one()
    assert p.discount == 3000 and p.coupon_claim_id == claim_id
    assert sum(line.discount for line in (await db.scalars(select(PurchaseLine))).all()) == 3000
    c = await db.get(ClaimedCoupon, claim_id)
    assert c is not None and c.state is ClaimState.REDEEMED and c.discount == 3000
    d = await db.get(CouponDrop, drop["id"])
    assert d is not None and (d.claimed, d.redeemed) == (1, 1)


async def test_a_cancelled_purchase_gives_its_coupon_back(server: TestServer, world: World, db: AsyncSession,
                                                          open_drop: CouponDrop) -> None:
    async with browser_session(server) as http:
        token = await sign_in(http, "viewer")  # type: ignore[arg-type]
        resp = await http.post(f"/api/v1/drops/{open_drop.id}/claims", headers={
            "X-CSRF-Token": token, "Idempotency-Key": "c-1"})
        assert resp.status == 201, await resp.text()
        claim_id = (await resp.json())["claim_id"]
        replay = await http.post(f"/api/v1/drops/{open_drop.id}/claims", headers={
            "X-CSRF-Token": token, "Idempotency-Key": "c-1"})
        assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert (await replay.json())["claim_id"] == claim_id
        no_key = await http.post(f"/api/v1/drops/{open_drop.id}/claims", headers={"X-CSRF-Token": token})
        assert no_key.status == 400 and (await no_key.json())["error"]["code"] == "idempotency_key_missing"
        mine = await http.get(f"/api/v1/me/coupons?broadcast_id={world.live.id}")
        assert [h["claim_id"] for h in await mine.json()] == [claim_id]
        resp = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json={**order(world),
                               "suggest_coupon": True}, headers={"X-CSRF-Token": token, "Idempotency-Key": "b-1"})
        assert resp.status == 201, await resp.text()
        purchase = await resp.json()
        assert purchase["discount"] == 3000  # the best coupon was picked for the buyer
        resp = await http.post(f"/api/v1/purchases/{purchase['id']}/cancel", headers={"X-CSRF-Token": token})
        assert resp.status == 200, await resp.text()
        mine = await http.get(f"/api/v1/me/coupons?broadcast_id={world.live.id}")
        assert [h["claim_id"] for h in await mine.json()] == [claim_id]  # usable again
    await fresh(db)
    c = await db.get(ClaimedCoupon, claim_id)
    assert c is not None and c.state is ClaimState.CLAIMED and c.discount == 0


async def _claim_over_http(http: Any, token: str, drop_id: int, key: str) -> int:
    resp = await http.post(f"/api/v1/drops/{drop_id}/claims", headers={"X-CSRF-Token": token, "Idempotency-Key": key})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["claim_id"])


async def test_bad_coupon_picks_are_refused_with_nothing_written(
        server: TestServer, world: World, db: AsyncSession, units: async_sessionmaker[AsyncSession],
        crowd: list[User], open_drop: CouponDrop, coupon_3000: CouponTemplate) -> None:
    """Someone else's coupon, an expired one, one already used, an order under the minimum, a product out of
    scope, two coupons that do not combine: each a clear refusal, and no purchase written."""
    async with units.begin() as s:
        host = await s.get(User, world.host.id)
        assert host is not None
        big = await claims.save_template(s, world.market.id, claims.TemplateInput(
            name_ko="5만원 이상", name_en="", kind="fixed", value=5000, min_order=50_000))
        oil = await claims.save_template(s, world.market.id, claims.TemplateInput(
            name_ko="참기름 전용", name_en="", kind="percent", value=10, scope="products",
            product_ids=(world.products[1].id,)))
        drops = {name: (await claims.drop_now(s, world.live.id, t.id, host, utcnow())).id
                 for name, t in (("big", big), ("oil", oil), ("again", coupon_3000))}
    async with browser_session(server) as other:
        other_token = await sign_in(other, "fan0")  # type: ignore[arg-type]
        theirs = await _claim_over_http(other, other_token, open_drop.id, "o-1")
    async with browser_session(server) as http:
        token = await sign_in(http, "viewer")  # type: ignore[arg-type]
        mine = await _claim_over_http(http, token, open_drop.id, "m-1")
        second = await _claim_over_http(http, token, drops["again"], "m-2")
        big_one = await _claim_over_http(http, token, drops["big"], "m-3")
        oil_one = await _claim_over_http(http, token, drops["oil"], "m-4")
        async with units.begin() as s:  # a coupon already used, and one whose use window has passed
            used = await s.get(ClaimedCoupon, second)
            assert used is not None
            used.state = ClaimState.REDEEMED
        cases = [([10**9], "coupon_not_found", 404), ([theirs], "not_your_coupon", 403),
                 ([second], "coupon_used", 409), ([big_one], "below_minimum", 422),
                 ([oil_one], "out_of_scope", 422), ([mine, oil_one], "not_combinable", 409)]
        for i, (coupons, code, status) in enumerate(cases):
            body = {**order(world), "coupons": coupons}  # pork dumplings only, 19,800 won
            resp = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=body,
                                   headers={"X-CSRF-Token": token, "Idempotency-Key": f"bad-{i}"})
            err = (await resp.json())["error"]
            assert (resp.status, err["code"]) == (status, code), err
            assert err["message"]
        async with units.begin() as s:  # a one-day coupon dropped two days ago
            await s.execute(update(ClaimedCoupon).where(ClaimedCoupon.id == mine)
                            .values(use_ends_at=utcnow() - timedelta(minutes=1)))
            await s.execute(update(CouponDrop).where(CouponDrop.id == open_drop.id).values(use_days=1))
            await s.execute(update(CouponDrop).where(CouponDrop.id == open_drop.id)
                            .values(dropped_at=utcnow() - timedelta(days=2)))
        resp = await http.post(f"/api/v1/broadcasts/{world.live.id}/purchases",
                               json={**order(world), "coupons": [mine]},
                               headers={"X-CSRF-Token": token, "Idempotency-Key": "bad-expired"})
        assert (resp.status, (await resp.json())["error"]["code"]) == (409, "coupon_expired")
    await fresh(db)
    assert (await db.scalars(select(Purchase))).all() == []
    states = dict((await db.execute(select(ClaimedCoupon.id, ClaimedCoupon.state))).all())
    assert states[mine] is ClaimState.CLAIMED and states[big_one] is ClaimState.CLAIMED


async def _cli(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecommerce.cli", *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def test_a_giveaway_entered_by_two_viewers_drawn_and_verified(server: TestServer, world: World,
                                                                    crowd: list[User], app: web.Application,
                                                                    tmp_path: Path) -> None:
    host = await signed_in(server, "host")
    fans = [await signed_in(server, "viewer"), await signed_in(server, "fan0")]
    guest_fan, _ = await guest(server, "만두러버")
    try:
        for who in (host, *fans):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]
        started = await host.call("host:giveaway_start", {"broadcast_id": world.live.id, "prize_ko": "참기름 한 병",
                                                          "winners": 1, "minutes": 3})
        assert started["ok"], started
        g = started["data"]
        assert g["seed"] is None and len(g["commitment"]) == 64
        ref = {"broadcast_id": world.live.id, "giveaway_id": g["id"]}
        numbers = []
        for fan in fans:
            entered = await fan.call("giveaway:enter", ref)
            assert entered["ok"], entered
            numbers.append(entered["data"]["number"])
        assert numbers == [1, 2]
        twice = await fans[1].call("giveaway:enter", ref)
        assert twice["ok"] is False and twice["error"]["code"] == "already_entered"
        guest_try = await guest_fan.call("giveaway:enter", ref)
        assert guest_try["ok"] is False and guest_try["error"]["code"] == "cannot_enter"
        host_try = await host.call("giveaway:enter", {"broadcast_id": world.live.id, "giveaway_id": g["id"]})
        assert host_try["ok"] is False and host_try["error"]["code"] == "cannot_enter"
        drawn = await host.call("host:giveaway_draw", {"broadcast_id": world.live.id, "giveaway_id": g["id"]})
        assert drawn["ok"], drawn
        again = await host.call("host:giveaway_draw", {"broadcast_id": world.live.id, "giveaway_id": g["id"]})
        assert again["ok"] is False and again["error"]["code"] == "already_drawn"
        for fan in fans:
            await fan.wait_for(lambda f=fan: any(e["t"] == "giveaway:drawn" for e in f.events))
        announced: dict[str, Any] = next(e["d"] for e in fans[0].events if e["t"] == "giveaway:drawn")
        winner = announced["winners"][0]["number"]
        assert winner in numbers and announced["seed"]
        lucky = fans[numbers.index(winner)]
        await lucky.wait_for(lambda: bool(lucky.other.get("you:won")))
        assert lucky.other["you:won"][0]["number"] == winner
    finally:
        for who in (host, *fans, guest_fan):
            await who.sio.disconnect()
    async with browser_session(server) as http:
        proof = await (await http.get(f"/api/v1/giveaways/{g['id']}/proof")).json()
    numbers = [e["number"] for e in proof["entry_list"]]
    assert draw.verify(proof["seed"], proof["commitment"], numbers, proof["digest"],
                       [w["number"] for w in proof["winners"]], proof["winners_count"]).ok
    # The command line recomputes it from the server's published proof, and catches a tampered copy.
    code, out = await _cli("giveaway", "verify", "--giveaway", str(g["id"]), "--url", f"http://127.0.0.1:{server.port}",
                           "--entry", "2")
    assert code == 0 and "verified" in out and "entry number 2: in the list" in out, out
    tampered = tmp_path / "proof.json"
    tampered.write_text(json.dumps({**proof, "seed": "0" * 64}), encoding="utf-8")
    code, out = await _cli("giveaway", "verify", "--file", str(tampered))
    assert code == 1 and "NOT verified" in out, out
    await live.run_due(app, utcnow())  # the timer finds nothing more to do


async def test_anonymous_and_wrong_people_are_refused(server: TestServer, world: World,
                                                      open_drop: CouponDrop) -> None:
    anon = await viewer(server)
    fan = await signed_in(server, "viewer")
    try:
        ack = await anon.call("coupon:claim", {"broadcast_id": world.live.id, "drop_id": open_drop.id,
                                               "idempotency_key": "k"})
        assert ack["ok"] is False and ack["error"]["code"] == "unauthenticated"
        ack = await fan.call("host:coupon_drop", {"broadcast_id": world.live.id, "template_id": 1})
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
        ack = await fan.call("coupon:claim", {"broadcast_id": world.live.id, "drop_id": "x", "idempotency_key": "k"})
        assert ack["ok"] is False and ack["error"]["code"] == "validation_failed"
    finally:
        await anon.sio.disconnect()
        await fan.sio.disconnect()


async def test_a_crowd_joining_at_once_is_answered(server: TestServer, world: World, open_drop: CouponDrop) -> None:
    """Forty viewers join at the same moment, each join gathering the coupons' part of the snapshot: every
    join is answered (no part may hold a database connection while waiting for another)."""
    crowd = [await viewer(server) for _ in range(40)]
    try:
        acks = await asyncio.wait_for(asyncio.gather(*[v.call("join", {"broadcast_id": world.live.id})
                                                       for v in crowd]), 60)
        assert all(a["ok"] for a in acks)
        assert all([d["id"] for d in a["data"]["broadcast"]["coupons"]["open"]] == [open_drop.id] for a in acks)
    finally:
        for v in crowd:
            await v.sio.disconnect()


def test_the_buy_event_documents_what_the_coupon_pricer_may_refuse() -> None:
    buy = next(spec for spec in events(live_parts_of_domains()) if spec.name == "buy")
    assert set(REDEMPTION_ERRORS) <= set(buy.errors) and "sold_out" in buy.errors


async def test_typing_the_keyword_in_chat_enters_once_and_other_messages_read_nothing(
        server: TestServer, world: World, db: AsyncSession, monkeypatch: Any) -> None:
    reads: list[int] = []
    open_in = live.giveaways.open_in

    async def counted(session: AsyncSession, broadcast_id: int, keyword_only: bool = False) -> list[Any]:
        if keyword_only:  # the chat's look-up (the room's ticker reads the entry counts on its own)
            reads.append(broadcast_id)
        return await open_in(session, broadcast_id, keyword_only)

    monkeypatch.setattr(live.giveaways, "open_in", counted)
    # what is kept is forgotten by the commits that change it; its time limit is not what is tested here (a slow
    # machine would reach it between two messages)
    server.app[live.KEYWORDS].ttl = 3600
    host = await signed_in(server, "host")
    fan = await signed_in(server, "viewer")
    try:
        for who in (host, fan):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]

        async def say(text: str) -> None:
            sent = await fan.call("chat:send", {"broadcast_id": world.live.id, "text": text})
            assert sent["ok"], sent

        await say("안녕하세요")  # no keyword giveaway yet: that is read once, then kept
        await say("만두 맛있어요")
        assert reads == [world.live.id]
        started = await host.call("host:giveaway_start", {"broadcast_id": world.live.id, "prize_ko": "참기름 한 병",
                                                          "mode": "keyword", "keyword": "참기름", "minutes": 3})
        assert started["ok"], started
        await say("#참기름 주세요")  # the start was committed: the kept answer was forgotten, the keyword counts
        await fan.wait_for(lambda: bool(fan.other.get("you:entered")))
        assert fan.other["you:entered"] == [{"broadcast_id": world.live.id, "giveaway_id": started["data"]["id"],
                                             "number": 1}]
        await say("참기름")  # entered already: nothing more
        await say("좋아요")
    finally:
        for who in (host, fan):
            await who.sio.disconnect()
    assert len(fan.other["you:entered"]) == 1
    await fresh(db)
    g = await db.get(live.Giveaway, started["data"]["id"])
    assert g is not None and g.entries == 1
    assert len(reads) == 3  # read again after the start and after the entry (each commit forgets it), not per message
