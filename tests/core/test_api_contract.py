"""The OpenAPI document is the contract, and the API keeps it: headers, path parameters, every error answer,
resolvable references, the configured limits; nulls, loose types, huge numbers and deep nesting refused with
a 4xx that names the problem, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from livecommerce.api import MAX_ID
from tests.support import World, sign_in


async def _doc(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


def _params(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", [])}


async def test_every_reference_in_the_document_resolves(client: TestClient) -> None:
    doc = await _doc(client)
    refs = set(re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(doc)))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    # the enums that were unresolvable are declared, with their values
    statuses = doc["components"]["schemas"]["OrderStatus"]
    assert "paid" in statuses["enum"]
    assert "live" in doc["components"]["schemas"]["BroadcastState"]["enum"]


async def test_headers_and_path_parameters_are_declared(client: TestClient) -> None:
    paths = (await _doc(client))["paths"]
    buy = paths["/api/v1/broadcasts/{broadcast_id}/purchases"]["post"]
    assert _params(buy)["Idempotency-Key"]["required"] is True
    assert _params(buy)["X-CSRF-Token"]["required"] is True
    claim = paths["/api/v1/drops/{drop_id}/claims"]["post"]
    assert _params(claim)["Idempotency-Key"]["required"] is True
    hook = paths["/api/v1/payments/{provider}/webhook"]["post"]
    assert hook["x-csrf"] is False and "X-CSRF-Token" not in _params(hook)  # it does not need one
    assert _params(hook)["provider"]["schema"]["type"] == "string"  # a provider is a name
    product = paths["/api/v1/products/{product_id}"]["get"]
    assert _params(product)["product_id"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}


async def test_every_error_answer_is_declared(client: TestClient) -> None:
    paths = (await _doc(client))["paths"]
    create = paths["/api/v1/products"]["post"]["responses"]
    assert {"400", "401", "403", "413", "415", "422", "503"} <= set(create)
    assert "Retry-After" in create["503"]["headers"]
    assert "404" in paths["/api/v1/broadcasts/{broadcast_id}/reminder"]["delete"]["responses"]
    assert "415" not in paths["/api/v1/me"]["get"]["responses"]  # no body, no 415


async def test_limits_in_the_document_are_the_configured_ones(client: TestClient) -> None:
    schemas = (await _doc(client))["components"]["schemas"]
    for name in ("SeriesIn", "SeriesPatch", "SpecialIn", "BroadcastPatch"):
        assert schemas[name]["properties"]["duration_minutes"]["maximum"] == 180, name
    assert schemas["OrderLineIn"]["properties"]["quantity"]["maximum"] == 10
    paths = (await _doc(client))["paths"]
    offset = _params(paths["/api/v1/products"]["get"])["offset"]["schema"]
    assert offset["maximum"] == 1_000_000


async def test_nullable_only_where_null_means_something(client: TestClient) -> None:
    schemas = (await _doc(client))["components"]["schemas"]
    name_ko = schemas["ProductPatch"]["properties"]["name_ko"]
    assert name_ko["type"] == "string" and "anyOf" not in name_ko and "default" not in name_ko
    assert "anyOf" not in schemas["SeriesPatch"]["properties"]["rrule"]
    until = schemas["SeriesPatch"]["properties"]["until_local"]  # null: no last date
    assert {"type": "null"} in until["anyOf"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/products/{product}", {"name_ko": None}, "name_ko"),
    ("/api/v1/broadcasts/{broadcast}", {"title_ko": None}, "title_ko"),
    ("/api/v1/series/{series}", {"duration_minutes": None}, "duration_minutes"),
    ("/api/v1/series/{series}", {"rrule": None}, "rrule"),
])
async def test_a_null_for_a_field_that_needs_a_value_is_a_422_naming_it(client: TestClient, world: World,
                                                                        path: str, body: dict[str, Any],
                                                                        field: str) -> None:
    token = await sign_in(client, "staff")
    h = {"X-CSRF-Token": token}
    series = await client.post("/api/v1/series", json={
        "market_id": world.market.id, "title_ko": "주간", "title_en": "Weekly", "rrule": "FREQ=WEEKLY;BYDAY=MO",
        "dtstart_local": "2031-01-06T19:00"}, headers=h)
    assert series.status == 201, await series.text()
    url = path.format(product=world.products[0].id, broadcast=world.scheduled.id, series=(await series.json())["id"])
    resp = await client.patch(url, json=body, headers=h)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize("quantity", [True, "2", 2.0])
async def test_numbers_are_numbers(client: TestClient, world: World, quantity: Any) -> None:
    await sign_in(client, "viewer")
    token = (await (await client.get("/api/v1/auth/session")).json())["csrf_token"]
    order = {"lines": [{"product_id": world.products[0].id, "quantity": quantity}], "name": "김민지",
             "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
             "payment_method": "cod"}
    resp = await client.post(f"/api/v1/broadcasts/{world.live.id}/purchases", json=order,
                             headers={"X-CSRF-Token": token, "Idempotency-Key": f"strict-{quantity!r}"})
    assert resp.status == 422, await resp.text()
    assert [d["field"] for d in (await resp.json())["error"]["details"]] == ["lines.0.quantity"]
    mine = await client.get("/api/v1/me/purchases")
    assert await mine.json() == []


async def test_a_boolean_is_not_a_stock(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    resp = await client.patch(f"/api/v1/products/{world.products[0].id}", json={"stock": False},
                              headers={"X-CSRF-Token": token})
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "stock"


@pytest.mark.parametrize("path", ["/api/v1/products", "/api/v1/purchases"])
async def test_offsets_and_ids_past_any_row_are_refused_not_overflowing(client: TestClient, world: World,
                                                                       path: str) -> None:
    await sign_in(client, "staff")
    resp = await client.get(path, params={"offset": "99999999999999999999"})
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "offset"
    resp = await client.get(path, params={"merchant_id": str(2**40)})
    assert resp.status == 422
    for big in (str(MAX_ID + 1), "99999999999999999999"):
        resp = await client.get(f"/api/v1/products/{big}")
        assert resp.status == 404


async def test_a_deeply_nested_body_is_a_400(client: TestClient, world: World) -> None:
    await sign_in(client, "viewer")
    token = (await (await client.get("/api/v1/auth/session")).json())["csrf_token"]
    deep = b'{"lines": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    resp = await client.post(f"/api/v1/broadcasts/{world.live.id}/purchases", data=deep,
                             headers={"X-CSRF-Token": token, "Idempotency-Key": "deep",
                                      "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "too_deep"
    # deeper than the API reads, shallower than the parser's own limit: refused the same way
    middling = b'{"lines": [{"product_id": 1, "quantity": 1, "price": ' + b"[" * 100 + b"]" * 100 + b"}]}"
    resp = await client.post(f"/api/v1/broadcasts/{world.live.id}/purchases", data=middling,
                             headers={"X-CSRF-Token": token, "Idempotency-Key": "middling",
                                      "Content-Type": "application/json"})
    assert resp.status in (400, 422)
    assert (await resp.json())["error"]["code"] in ("too_deep", "validation_failed")


async def test_forgetting_a_reminder_of_no_broadcast_is_a_404(client: TestClient, world: World) -> None:
    token = await sign_in(client, "viewer")
    for broadcast in ("0", "999999"):
        resp = await client.delete(f"/api/v1/broadcasts/{broadcast}/reminder", headers={"X-CSRF-Token": token})
        assert resp.status == 404, broadcast
    resp = await client.delete(f"/api/v1/broadcasts/{world.scheduled.id}/reminder", headers={"X-CSRF-Token": token})
    assert resp.status == 200


async def test_a_method_a_path_does_not_take_is_405_with_allow(client: TestClient) -> None:
    resp = await client.request("PATCH", "/api/v1/markets")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_a_year_outside_the_calendar_is_refused_not_overflowing(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    for when in ("0001-01-01T00:30", "9999-12-31T23:59"):
        resp = await client.post("/api/v1/broadcasts", json={
            "market_id": world.market.id, "title_ko": "특집", "title_en": "Special", "starts_local": when},
            headers={"X-CSRF-Token": token})
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["code"] == "invalid_time"


@pytest.mark.parametrize(("body", "problem"), [({"name_ko": "만두\u0000"}, "cannot contain the NUL character"),
                                               ({"unit_en": "\u001d"}, "cannot be blank"),
                                               ({"name_en": "\ufeff"}, "cannot be blank")])
async def test_text_that_cannot_be_stored_is_a_422_not_a_500(client: TestClient, world: World,
                                                             body: dict[str, Any], problem: str) -> None:
    token = await sign_in(client, "staff")
    resp = await client.patch(f"/api/v1/products/{world.products[0].id}", json=body, headers={"X-CSRF-Token": token})
    assert resp.status == 422, await resp.text()
    details = (await resp.json())["error"]["details"]
    assert [(d["field"], d["problem"]) for d in details] == [(next(iter(body)), problem)]


async def test_the_document_says_what_text_is_refused(client: TestClient) -> None:
    schemas = (await _doc(client))["components"]["schemas"]
    assert schemas["ProductPatch"]["properties"]["name_ko"]["pattern"].startswith("^[^\\x00]*[^\\s")
    assert schemas["ProductPatch"]["properties"]["description_ko"]["pattern"] == "^[^\\x00]*$"
