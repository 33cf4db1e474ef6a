"""What an operator reads at `/metrics` during a show, read through the real app as Prometheus reads it:
rooms and viewers, room deliveries and their lag, chat, purchases and coupon claims by outcome, errors by
code; and the sample Grafana dashboard, which must query only metrics the server serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from coupons import claims
from sessions.room import publish
from tests.orders.support import order
from tests.processes import until
from tests.support import World, signed_in, viewer

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: TestClient) -> tuple[str, Samples]:
    resp = await http.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def served_names(text: str) -> set[str]:
    """Every name a query may use: each family's samples, and those a family with no sample yet will have."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


async def test_a_chat_message_moves_rooms_viewers_deliveries_and_lag(server: TestServer, http: TestClient,
                                                                     world: World) -> None:
    _, before = await scrape(http)
    assert value(before, "livecommerce_rooms_open") == 0 and value(before, "livecommerce_viewers") == 0
    watcher = await viewer(server)
    talker = await signed_in(server, "viewer")
    try:
        for v in (watcher, talker):
            assert (await v.call("join", {"broadcast_id": world.live.id}))["ok"]
        _, joined = await scrape(http)
        assert value(joined, "livecommerce_rooms_open") == 1
        assert value(joined, "livecommerce_viewers") == 2
        assert value(joined, "livecommerce_room_viewers", broadcast=str(world.live.id)) == 2

        ack = await talker.call("chat:send", {"broadcast_id": world.live.id, "text": "만두 남았나요?"})
        assert ack["ok"], ack
        await watcher.wait_for(lambda: "만두 남았나요?" in watcher.chat_texts())
        _, after = await scrape(http)
        assert value(after, "livecommerce_chat_messages_total") == value(before, "livecommerce_chat_messages_total") + 1
        # the message's frame went to both viewers: two deliveries, one lag observed (per event, not per viewer)
        assert value(after, "livecommerce_deliveries_total") >= value(before, "livecommerce_deliveries_total") + 2
        lag_count = value(after, "livecommerce_delivery_lag_seconds_count")
        assert lag_count >= value(before, "livecommerce_delivery_lag_seconds_count") + 1
        lag_sum = value(after, "livecommerce_delivery_lag_seconds_sum")
        assert 0 <= lag_sum < 5 * lag_count  # seconds, not milliseconds
        assert value(after, "livecommerce_socket_events_total", event="chat:send", outcome="ok") == 1
    finally:
        await watcher.sio.disconnect()
        await talker.sio.disconnect()

    # the broadcast's series goes with its last viewer here
    _, gone = await until(lambda: scrape(http), lambda got: value(got[1], "livecommerce_viewers") == 0, 5)
    assert value(gone, "livecommerce_rooms_open") == 0
    assert not [name for name, _ in gone if name == "livecommerce_room_viewers"]


async def test_a_viewer_too_slow_for_the_room_is_counted_when_it_is_cut_off(
        server: TestServer, http: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = await viewer(server)
    assert (await slow.call("join", {"broadcast_id": world.live.id}))["ok"]
    monkeypatch.setattr("livecommerce.fanout.MAX_BUFFER", -1)  # any unsent byte is too many: every viewer is slow
    app = server.app
    assert app is not None
    await publish(app, world.live.id, "notice", {"text": "곧 시작합니다"})
    _, samples = await until(lambda: scrape(http), lambda got: value(got[1], "livecommerce_sockets_connected") == 0,
                             5)
    assert value(samples, "livecommerce_viewers_dropped_total") == 1
    assert value(samples, "livecommerce_viewers") == 0
    await slow.sio.disconnect()


async def test_purchases_are_counted_by_outcome_and_refusals_as_errors(server: TestServer, http: TestClient,
                                                                        world: World) -> None:
    buyer = await signed_in(server, "viewer")
    try:
        data = {**order(world), "broadcast_id": world.live.id, "idempotency_key": "metrics-1"}
        assert (await buyer.call("buy", data))["ok"]
        again = await buyer.call("buy", data)
        assert again["ok"] and again["data"]["replayed"] is True
        off_lineup = {**data, "idempotency_key": "metrics-2",
                      "lines": [{"product_id": world.products[2].id, "quantity": 1}]}
        refused = await buyer.call("buy", off_lineup)
        assert refused["ok"] is False
        code = refused["error"]["code"]
        _, samples = await scrape(http)
        assert value(samples, "livecommerce_purchases_total", outcome="bought") == 1
        assert value(samples, "livecommerce_purchases_total", outcome="replayed") == 1
        assert value(samples, "livecommerce_purchases_total", outcome=code) == 1
        assert value(samples, "livecommerce_errors_total", code=code) == 1
        assert value(samples, "livecommerce_socket_events_total", event="buy", outcome=code) == 1
    finally:
        await buyer.sio.disconnect()


async def test_coupon_claims_are_counted_by_outcome(server: TestServer, http: TestClient, world: World,
                                                    db: AsyncSession) -> None:
    template = await claims.save_template(db, world.market.id, claims.TemplateInput(
        name_ko="3천원 할인", name_en="3,000 won off", kind="fixed", value=3000, quantity=500))
    await db.commit()
    host = await signed_in(server, "host")
    fan = await signed_in(server, "viewer")
    try:
        for who in (host, fan):
            assert (await who.call("join", {"broadcast_id": world.live.id}))["ok"]
        drop = await host.call("host:coupon_drop", {"broadcast_id": world.live.id, "template_id": template.id,
                                                    "quantity": 2})
        assert drop["ok"], drop
        claim = {"broadcast_id": world.live.id, "drop_id": drop["data"]["id"], "idempotency_key": "tap-1"}
        assert (await fan.call("coupon:claim", claim))["ok"]
        assert (await fan.call("coupon:claim", claim))["data"]["replayed"] is True
        second = await fan.call("coupon:claim", {**claim, "idempotency_key": "tap-2"})
        assert second["error"]["code"] == "already_claimed"
        _, samples = await scrape(http)
        assert value(samples, "livecommerce_coupon_claims_total", outcome="claimed") == 1
        assert value(samples, "livecommerce_coupon_claims_total", outcome="replayed") == 1
        assert value(samples, "livecommerce_coupon_claims_total", outcome="already_claimed") == 1
        assert value(samples, "livecommerce_errors_total", code="already_claimed") == 1
    finally:
        await host.sio.disconnect()
        await fan.sio.disconnect()


async def test_errors_are_counted_by_code_over_http_and_on_the_socket(server: TestServer, http: TestClient) -> None:
    assert (await http.get("/api/v1/broadcasts/987654")).status == 404
    assert (await http.get("/no/such/page")).status == 404
    anon = await viewer(server)
    try:
        assert (await anon.call("no:such:event", {}))["error"]["code"] == "unknown_event"
        assert (await anon.call("chat:send", {"broadcast_id": 1, "text": "hi"}))["error"]["code"] == "unauthenticated"
    finally:
        await anon.sio.disconnect()
    _, samples = await scrape(http)
    assert value(samples, "livecommerce_errors_total", code="broadcast_not_found") == 1
    assert value(samples, "livecommerce_errors_total", code="not_found") == 1
    assert value(samples, "livecommerce_errors_total", code="unknown_event") == 1
    assert value(samples, "livecommerce_errors_total", code="unauthenticated") == 1


async def test_the_dashboard_queries_only_metrics_the_server_serves(http: TestClient) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    queries = [t["expr"] for p in panels for t in p["targets"]]
    queries.append(variables["job"]["query"]["query"])
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
    text, _ = await scrape(http)
    served = served_names(text)
    queried = {name for q in queries for name in re.findall(r"\blivecommerce_[a-z_]+", q)}
    for wanted in ("livecommerce_viewers", "livecommerce_room_viewers", "livecommerce_deliveries_total",
                   "livecommerce_delivery_lag_seconds_bucket", "livecommerce_chat_messages_total",
                   "livecommerce_purchases_total", "livecommerce_coupon_claims_total", "livecommerce_errors_total",
                   "livecommerce_bus_up", "livecommerce_bus_outages_total", "livecommerce_http_request_seconds_bucket"):
        assert wanted in queried, wanted
    assert queried <= served, sorted(queried - served)
