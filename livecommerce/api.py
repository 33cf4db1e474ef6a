"""The JSON API under `/api/v1/`: routes declared once with the pydantic models that validate
them, and the OpenAPI 3 document generated from those same declarations."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import models_json_schema

from .auth import PUBLIC, Access, access, csrf_exempt
from .errors import BadRequest, NotFound, ValidationFailed
from .jsonenc import dumps

PREFIX = "/api/v1"

B = TypeVar("B")
Q = TypeVar("Q")


class Strict(BaseModel):
    """Request bodies refuse fields they do not know: a typo is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def path_id(request: web.Request, name: str, message: str | None = None, code: str | None = None) -> int:
    """A path parameter that names a row by id; anything else is a 404 (the row cannot exist)."""
    raw = request.match_info[name]
    if not raw.isdecimal() or len(raw) > 18:
        raise NotFound(message, code=code)
    return int(raw)


@dataclass
class Call(Generic[B, Q]):
    request: web.Request
    body: B
    query: Q

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def user(self) -> Any:
        from .keys import state

        return state(self.request).user

    def param(self, name: str) -> int:
        """A path parameter that must be a positive id."""
        raw = self.request.match_info[name]
        if not raw.isdigit() or len(raw) > 18:
            raise BadRequest(f"'{name}' must be a number.", code="invalid_id")
        return int(raw)


Handler = Callable[[Call[Any, Any]], Awaitable[Any]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    errors: list[int] = field(default_factory=list)
    csrf: bool = True  # False only for a caller that is not a browser and proves itself (a gateway's webhook)


def _parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """The usual body in one pass; anything wrong is explained step by step (JSON, object, fields)."""
    try:
        return model.model_validate_json(raw)
    except PydanticValidationError:
        pass
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", code="malformed_json")
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationFailed(details=format_validation(exc)) from None


def format_validation(exc: PydanticValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        out.append({"field": loc, "problem": err["msg"]})
    return out


class Api:
    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, *, access: Access, summary: str, tag: str,
              body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              response: Any = None, status: int = 200, errors: list[int] | None = None,
              csrf: bool = True) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.endpoints.append(Endpoint(method.upper(), self.prefix + path, fn, access, summary, tag, body, query,
                                           response, status, errors or [], csrf))
            return fn

        return deco

    def install(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, self._wrap(ep), name=f"api:{ep.handler.__name__}")
        app.router.add_get(self.prefix + "/openapi.json", self._openapi_handler(), name="api:openapi")

    def _wrap(self, ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        adapter = TypeAdapter(ep.response) if ep.response is not None else None

        async def handler(request: web.Request) -> web.StreamResponse:
            body: Any = None
            if ep.body is not None:
                if request.content_type != "application/json":
                    raise BadRequest("Send a JSON body (Content-Type: application/json).", code="json_required",
                                     status=415)
                body = _parse_body(ep.body, await request.read())
            query: Any = None
            if ep.query is not None:
                try:
                    query = ep.query.model_validate(dict(request.query))
                except PydanticValidationError as exc:
                    raise ValidationFailed(details=format_validation(exc)) from None
            result = await ep.handler(Call(request, body, query))
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=204)
            payload = adapter.dump_python(result, mode="json") if adapter else result
            return web.json_response(payload, status=ep.status, dumps=dumps)

        access(ep.access)(handler)
        if not ep.csrf:
            csrf_exempt(handler)
        handler.__name__ = ep.handler.__name__
        return handler

    def _openapi_handler(self) -> Callable[[web.Request], Awaitable[web.Response]]:
        @access(PUBLIC)
        async def openapi(request: web.Request) -> web.Response:
            return web.json_response(self.openapi(), dumps=dumps)

        return openapi

    def openapi(self) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorResponse}
        for ep in self.endpoints:
            for m in (ep.body, ep.response):
                if isinstance(m, type) and issubclass(m, BaseModel):
                    models.add(m)
        ordered = sorted(models, key=lambda m: m.__name__)
        _, defs = models_json_schema([(m, "validation") for m in ordered],
                                     ref_template="#/components/schemas/{model}")
        schemas = defs.get("$defs", {})

        def ref(model: Any) -> dict[str, Any]:
            if isinstance(model, type) and issubclass(model, BaseModel):
                return {"$ref": f"#/components/schemas/{model.__name__}"}
            schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            return schema

        paths: dict[str, Any] = {}
        for ep in self.endpoints:
            op: dict[str, Any] = {
                "summary": ep.summary,
                "tags": [ep.tag],
                "operationId": ep.handler.__name__,
                "x-access": ep.access.description,
                "x-csrf": ep.csrf,
                "responses": {},
            }
            params = []
            for part in ep.path.split("/"):
                if part.startswith("{") and part.endswith("}"):
                    params.append({"name": part[1:-1], "in": "path", "required": True,
                                   "schema": {"type": "integer", "minimum": 1}})
            if ep.query is not None:
                qschema = ep.query.model_json_schema()
                required = set(qschema.get("required", []))
                for name, prop in qschema.get("properties", {}).items():
                    params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
            if params:
                op["parameters"] = params
            if ep.body is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(ep.body)}}}
            if ep.method in ("POST", "PUT", "PATCH", "DELETE"):
                op.setdefault("parameters", []).append({
                    "name": "X-CSRF-Token", "in": "header", "required": True, "schema": {"type": "string"},
                    "description": "The token from GET /api/v1/auth/session"})
            if ep.response is None:
                op["responses"][str(ep.status if ep.status != 200 else 204)] = {"description": "Done"}
            else:
                op["responses"][str(ep.status)] = {"description": "OK",
                                                   "content": {"application/json": {"schema": ref(ep.response)}}}
            codes = set(ep.errors)
            if ep.body is not None or ep.query is not None:
                codes |= {400, 422}
            if ep.access.roles is not None:
                codes |= {401, 403}
            if ep.method in ("POST", "PUT", "PATCH", "DELETE"):
                codes.add(403)
            for code in sorted(codes):
                op["responses"][str(code)] = {
                    "description": _STATUS_TEXT.get(code, "Error"),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
            paths.setdefault(ep.path, {})[ep.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": "livecommerce API", "version": "1",
                     "description": "Live sales: markets, products, broadcasts and accounts."},
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "lc_session"}}},
        }


_STATUS_TEXT = {400: "Bad request", 401: "Not signed in", 403: "Not allowed, or CSRF check failed",
                404: "Not found", 409: "Conflict with the current state", 413: "Request too large",
                415: "Not JSON", 422: "Validation failed"}


API = web.AppKey("api", Api)  # the JSON API being declared: domains add routes in `setup`, the app installs it
