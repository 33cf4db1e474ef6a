"""The HTTP surface: health, metrics, security headers, errors as JSON, the OpenAPI document,
and that every route declares who may call it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.web_urldispatcher import StaticResource

from livecommerce.config import Config
from livecommerce.keys import AppKeys
from tests.support import World, sign_in


async def test_healthz_reports_each_part(client: TestClient, config: Config) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body == {"status": "ok", "database": "ok", "redis": "ok" if config.redis.url else "off",
                    "bus": "ok" if config.redis.url else "off"}


async def test_healthz_names_the_failing_part(client: TestClient, app: web.Application) -> None:
    await app[AppKeys.engine].dispose()
    # Point the app at a database that cannot be opened.
    from sqlalchemy.ext.asyncio import create_async_engine

    broken = create_async_engine("sqlite+aiosqlite:////nonexistent-dir/x.db")
    app[AppKeys.reader].configure(bind=broken)
    try:
        resp = await client.get("/healthz")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "error"
        assert body["database"].startswith("error")
    finally:
        await broken.dispose()


async def test_metrics_in_prometheus_text_format(client: TestClient) -> None:
    await client.get("/healthz")
    await client.get("/no-such-page")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'livecommerce_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert "livecommerce_sockets_connected 0.0" in text
    assert 'livecommerce_errors_total{code="not_found"} 1.0' in text
    assert "# TYPE livecommerce_socket_events_total counter" in text


async def test_security_headers_on_pages_and_api(client: TestClient) -> None:
    for path in ("/api/v1/markets", "/healthz", "/no-such-page"):
        resp = await client.get(path)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Request-ID"]


async def test_unknown_api_path_is_json_404(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_unknown_ids_are_404(client: TestClient, world: World) -> None:
    for path in ("/api/v1/products/999999", "/api/v1/broadcasts/999999", "/api/v1/markets/999999/merchants"):
        resp = await client.get(path)
        assert resp.status == 404, path
        body = await resp.json()
        assert body["error"]["code"].endswith("not_found")
        assert body["error"]["message"]
    resp = await client.get("/api/v1/products/abc")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_id"


async def test_malformed_and_invalid_bodies(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    h = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    resp = await client.post("/api/v1/products", data=b"{not json", headers=h)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
    resp = await client.post("/api/v1/products", data=b"[1, 2]", headers=h)
    assert resp.status == 400
    resp = await client.post("/api/v1/products", data="price=1", headers={
        "X-CSRF-Token": token, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415
    resp = await client.post("/api/v1/products", json={"merchant_id": world.merchant.id, "name_ko": "만두",
                                                       "name_en": "Dumplings", "price": -5, "surprise": 1},
                             headers={"X-CSRF-Token": token})
    assert resp.status == 422
    body = await resp.json()
    fields = {d["field"] for d in body["error"]["details"]}
    assert fields == {"price", "surprise"}
    resp = await client.get("/api/v1/products", params={"limit": "many"})
    assert resp.status == 422
    # nothing was created by any of these
    resp = await client.get("/api/v1/products")
    assert len(await resp.json()) == 3


async def test_oversize_request_is_413_and_changes_nothing(client: TestClient, world: World,
                                                           config: Config) -> None:
    token = await sign_in(client, "staff")
    big = {"merchant_id": world.merchant.id, "name_ko": "만두", "name_en": "D", "price": 1,
           "description_ko": "가" * (config.server.max_body_bytes + 10)}
    import io
    import json

    resp = await client.post("/api/v1/products", data=io.BytesIO(json.dumps(big).encode()),
                             headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    resp = await client.get("/api/v1/products")
    assert len(await resp.json()) == 3


async def test_staff_creates_and_changes_a_product(client: TestClient, world: World) -> None:
    token = await sign_in(client, "staff")
    resp = await client.post("/api/v1/products", json={
        "merchant_id": world.merchant.id, "name_ko": "김치만두", "name_en": "Kimchi dumplings", "price": 12900,
        "stock": 40, "image": "/static/demo/dumplings.svg"}, headers={"X-CSRF-Token": token})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["price"] == 12900 and created["name_ko"] == "김치만두"
    resp = await client.patch(f"/api/v1/products/{created['id']}", json={"price": 9900},
                              headers={"X-CSRF-Token": token})
    assert resp.status == 200
    assert (await resp.json())["price"] == 9900
    resp = await client.post("/api/v1/products", json={
        "merchant_id": 99999, "name_ko": "x", "name_en": "x", "price": 1}, headers={"X-CSRF-Token": token})
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "merchant_not_found"


def _api_routes(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json" and route.method != "HEAD":
            out.append((route.method.lower(), path))
    return out


async def test_openapi_document_covers_every_api_route(client: TestClient, app: web.Application) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    assert doc["openapi"].startswith("3.")
    routes = _api_routes(app)
    assert routes
    for method, path in routes:
        op = doc["paths"][path][method]
        assert op["responses"], (method, path)
        assert op["x-access"], (method, path)
    # request schemas are the models that validate: a required field of the model is required in the document
    login = doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = login["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][name]["required"]) == {"username", "password"}
    assert doc["components"]["schemas"][name]["additionalProperties"] is False
    # every $ref resolves
    import json

    text = json.dumps(doc)
    import re

    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref


def test_every_route_declares_who_may_call_it(app: web.Application) -> None:
    missing = []
    for route in app.router.routes():
        resource = route.resource
        if isinstance(resource, StaticResource):
            continue
        info = resource.get_info() if resource else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/socket.io"):
            continue
        if getattr(route.handler, "__access__", None) is None:
            missing.append((route.method, path))
    assert not missing


async def test_static_files_and_vendored_client(client: TestClient) -> None:
    resp = await client.get("/static/vendor/socket.io/socket.io.min.js")
    assert resp.status == 200
    assert "socket.io" in (await resp.text())[:300].lower()
    resp = await client.get("/static/demo/dumplings.svg")
    assert resp.status == 200


async def test_text_goes_out_gzipped_to_a_browser_that_accepts_it(client: TestClient) -> None:
    import gzip

    import web as web_assets

    script = (web_assets.STATIC / "vendor" / "hls.js" / "hls.light.min.js").read_bytes()
    path = "/static/vendor/hls.js/hls.light.min.js"
    resp = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Vary"] == "Accept-Encoding" and resp.content_type == "text/javascript"
    body = await resp.read()
    assert gzip.decompress(body) == script and len(body) < len(script) / 2
    again = await client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": resp.headers["ETag"]},
                             auto_decompress=False)
    assert again.status == 304 and not await again.read()
    plain = await client.get(path, headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers and await plain.read() == script
    for outside in ("/static/../livecommerce/app.py", "/static/%2e%2e/pyproject.toml", "/static/nothing.js"):
        assert (await client.get(outside, headers={"Accept-Encoding": "gzip"})).status in (403, 404), outside
    page = await client.get("/schedule", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert page.status == 200 and page.headers["Content-Encoding"] == "gzip"
    assert "<html" in gzip.decompress(await page.read()).decode()
