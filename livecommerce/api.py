"""The JSON API under `/api/v1/`: routes declared once with the pydantic models that validate
them, and the OpenAPI 3 document generated from those same declarations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from .auth import CSRF_HEADER, PUBLIC, Access, access, csrf_exempt
from .errors import N_, BadRequest, NotFound, ValidationFailed
from .jsonenc import dumps

PREFIX = "/api/v1"

MAX_ID = 2**31 - 1  # rows are numbered with 32-bit integers: a larger id names nothing
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
MAX_OFFSET = 1_000_000  # a page further than this is not a page anybody reads

# Where a limit in the document is a configuration key: a field marked `config_limit("section.key")` has the
# key's value as its `maximum` in the app's OpenAPI document (the model keeps a wider bound; the service
# refuses what the configuration does not allow, with a 422).
CONFIG_LIMIT = "x-config-maximum"


def config_limit(key: str) -> dict[str, Any]:
    """`json_schema_extra` of a field whose maximum is the configuration key `key` (`schedule.max_duration_minutes`)."""
    return {CONFIG_LIMIT: key}

B = TypeVar("B")
Q = TypeVar("Q")


# What counts as blank: every character some regular-expression engine calls white space (Unicode's
# White_Space, which trimming removes, ECMA-262's `\s`, which adds U+FEFF, and Python's, which adds U+001C to
# U+001F), so that the document's `NOT_BLANK` pattern means the same to every client that reads it.
BLANK = frozenset("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
                  + "".join(chr(c) for c in range(0x2000, 0x200B)))


def _text_problem(value: Any, needs_text: bool) -> str | None:
    """Why a request string (or list of strings) cannot be stored: a NUL character (no database column
    holds one), or only blank characters where text is required."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            if "\x00" in item:
                return "cannot contain the NUL character"
            if needs_text and item and all(ch in BLANK for ch in item):
                return "cannot be blank"
    return None


class Strict(BaseModel):
    """Request bodies refuse fields they do not know: a typo is an error, not silently ignored. A JSON body
    is read in strict mode (`_parse_body`): a number is a number, not `true`, `"2"` or `2.0`. Strings are
    trimmed; none may hold a NUL character, and one that needs at least a character needs one that is not
    blank (the document says both, `_text_rules`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str | list) or info.field_name is None:
            return value
        field_info = cls.model_fields[info.field_name]
        needs_text = any(getattr(m, "min_length", 0) for m in field_info.metadata)
        problem = _text_problem(value, needs_text)
        if problem is not None:
            raise PydanticCustomError("text", problem)
        return value


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    nullable: frozenset[str] = getattr(model, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        if name in nullable:
            continue
        prop.pop("default", None)
        variants = prop.get("anyOf")
        if variants is None:
            continue
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


class Patch(Strict):
    """A change: every field may be left out, and only the ones in `nullable` may be null (null there
    means "none"). A null anywhere else is refused with a 422 naming the field: it would otherwise reach a
    column that needs a value. The document says the same (those fields are not nullable in it)."""

    model_config = ConfigDict(json_schema_extra=_without_null)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise PydanticCustomError("not_null", "may be left out, but cannot be null")
        return value


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def path_id(request: web.Request, name: str, message: str | None = None, code: str | None = None) -> int:
    """A path parameter that names a row by id; anything else is a 404 (the row cannot exist)."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdecimal() or len(raw) > 10 or not 1 <= int(raw) <= MAX_ID:
        raise NotFound(message, code=code)
    return int(raw)


@dataclass(frozen=True)
class Header:
    """A request header a route reads, declared in the document."""

    name: str
    description: str
    required: bool = True
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string", "minLength": 1})


IDEMPOTENCY_KEY = Header("Idempotency-Key", "1 to 255 visible ASCII characters, quoted or bare: a retry with the "
                         "same key answers the same and does nothing more",
                         schema={"type": "string", "pattern": r'^"?[\x21-\x7e]{1,255}"?$'})


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
        """A path parameter that must be a positive id: not a number is a 400, a number that no row can
        have (0, or past the largest id) a 404."""
        raw = self.request.match_info[name]
        if not raw.isascii() or not raw.isdecimal():
            raise BadRequest(N_("'%(name)s' must be a number."), code="invalid_id", name=name)
        if len(raw) > 10 or not 1 <= int(raw) <= MAX_ID:
            raise NotFound()
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
    headers: list[Header] = field(default_factory=list)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # a path parameter that is not an id
    throttled: bool = False  # may answer 429 with Retry-After


MAX_DEPTH = 32  # JSON nested deeper than this is refused before it is read into objects


def _parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """The usual body in one pass (strict: numbers are numbers); anything wrong is explained step by step
    (JSON, depth, object, fields). The explaining parse is jiter's, which stops at its own depth limit
    instead of recursing in Python, and what it built is refused past `MAX_DEPTH` before validation."""
    try:
        return model.model_validate_json(raw, strict=True)
    except PydanticValidationError as exc:
        first = exc
    try:
        data = pydantic_core.from_json(raw or b"null")
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise BadRequest(N_("The body is nested too deeply."), code="too_deep") from None
        raise BadRequest(N_("The body is not valid JSON."), code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest(N_("The body must be a JSON object."), code="malformed_json")
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise BadRequest(N_("The body is nested too deeply."), code="too_deep")
    raise ValidationFailed(details=format_validation(first)) from None


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests, counted no further than `limit + 1` (iteratively: no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return level
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


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
              csrf: bool = True, headers: list[Header] | None = None,
              path_params: dict[str, dict[str, Any]] | None = None,
              throttled: bool = False) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.endpoints.append(Endpoint(method.upper(), self.prefix + path, fn, access, summary, tag, body, query,
                                           response, status, errors or [], csrf, headers or [], path_params or {},
                                           throttled))
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
                    raise BadRequest(N_("Send a JSON body (Content-Type: application/json)."), code="json_required",
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
            return web.json_response(self.openapi(_limits(request.app)), dumps=dumps)

        return openapi

    def openapi(self, limits: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the declared routes. `limits` are the configured values of the keys
        that fields name with `config_limit` (without them, the models' own bounds are shown)."""
        models: set[type[BaseModel]] = {ErrorResponse}
        for ep in self.endpoints:
            for m in (ep.body, ep.response):
                if isinstance(m, type) and issubclass(m, BaseModel):
                    models.add(m)
        ordered = sorted(models, key=lambda m: m.__name__)
        _, defs = models_json_schema([(m, "validation") for m in ordered],
                                     ref_template="#/components/schemas/{model}")
        schemas: dict[str, Any] = defs.get("$defs", {})

        def ref(model: Any) -> dict[str, Any]:
            if isinstance(model, type) and issubclass(model, BaseModel):
                return {"$ref": f"#/components/schemas/{model.__name__}"}
            schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            return schema

        paths: dict[str, Any] = {}
        for ep in self.endpoints:
            paths.setdefault(ep.path, {})[ep.method.lower()] = self._operation(ep, ref, schemas)
        _apply_limits(schemas, limits or {})
        _apply_limits(paths, limits or {})
        _text_rules(schemas)
        _text_rules(paths)
        return {
            "openapi": "3.1.0",
            "info": {"title": "livecommerce API", "version": "1",
                     "description": "Live sales: markets, products, broadcasts and accounts. Bodies are read "
                                    "strictly: an integer is written without a fraction (2, never 2.0, \"2\" "
                                    "or true), a boolean is true or false. Errors are "
                                    "`{\"error\": {\"code\", \"message\"[, \"details\"]}}`; a method a path "
                                    "does not take is answered 405 with an `Allow` header."},
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "lc_session"}}},
        }

    def _operation(self, ep: Endpoint, ref: Callable[[Any], dict[str, Any]],
                   schemas: dict[str, Any]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "tags": [ep.tag],
            "operationId": ep.handler.__name__,
            "x-access": ep.access.description,
            "x-csrf": ep.csrf,
            "responses": {},
        }
        params: list[dict[str, Any]] = []
        path_ids = False
        for part in ep.path.split("/"):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                schema = ep.path_params.get(name)
                if schema is None:
                    path_ids = True
                    schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
                params.append({"name": name, "in": "path", "required": True, "schema": schema})
        if ep.query is not None:
            qschema = ep.query.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in qschema.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        unsafe = ep.method in ("POST", "PUT", "PATCH", "DELETE")
        if unsafe and ep.csrf:
            params.append({"name": CSRF_HEADER, "in": "header", "required": True,
                           "schema": {"type": "string", "minLength": 1},
                           "description": "The token from GET /api/v1/auth/session"})
        for h in ep.headers:
            params.append({"name": h.name, "in": "header", "required": h.required, "schema": dict(h.schema),
                           "description": h.description})
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(ep.body)}}}
        if ep.response is None:
            op["responses"][str(ep.status if ep.status != 200 else 204)] = {"description": "Done"}
        else:
            op["responses"][str(ep.status)] = {"description": "OK",
                                               "content": {"application/json": {"schema": ref(ep.response)}}}
        if any(h.name == IDEMPOTENCY_KEY.name for h in ep.headers):
            op["responses"][str(ep.status)]["headers"] = {"Idempotent-Replayed": {
                "description": "true: this is the answer kept for the key, nothing was done again",
                "schema": {"type": "string", "enum": ["true"]}}}
        codes = set(ep.errors) | {503}
        if ep.body is not None or ep.query is not None:
            codes |= {400, 422}
        if ep.body is not None:
            codes |= {413, 415}
        if path_ids:
            codes |= {400, 404}
        if ep.headers:
            codes.add(400)
        if ep.access.roles is not None:
            codes |= {401, 403}
        if unsafe and ep.csrf:
            codes.add(403)
        if ep.throttled:
            codes.add(429)
        for code in sorted(codes):
            answer: dict[str, Any] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
            if code in (429, 503):
                answer["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                                     "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
            op["responses"][str(code)] = answer
        return op


def _limits(app: web.Application) -> dict[str, int]:
    from .keys import AppKeys

    config = app[AppKeys.config]
    return {"schedule.max_duration_minutes": config.schedule.max_duration_minutes,
            "orders.max_quantity_per_line": config.orders.max_quantity_per_line}


def _apply_limits(node: Any, limits: Mapping[str, int]) -> None:
    """Replace the `maximum` of every schema marked with `CONFIG_LIMIT` by the configured value."""
    if isinstance(node, dict):
        key = node.pop(CONFIG_LIMIT, None)
        if isinstance(key, str) and key in limits:
            node["maximum"] = min(limits[key], node.get("maximum", limits[key]))
        for value in node.values():
            _apply_limits(value, limits)
    elif isinstance(node, list):
        for value in node:
            _apply_limits(value, limits)


# Request strings (`Strict`): no NUL character anywhere, and a required text holds a character that is not
# blank (`BLANK`). As patterns, for every engine: outside `\s` and the few characters some engines leave out.
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85\ufeff][^\x00]*$"


def _text_rules(node: Any) -> None:
    """Say in the document what `Strict` refuses in strings: every string schema gets `NOT_BLANK` (when it
    needs a character) or `NO_NUL` as its pattern, or, when it has a pattern of its own, `NO_NUL` beside it."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            if "pattern" not in node:
                node["pattern"] = NOT_BLANK if node.get("minLength", 0) >= 1 else NO_NUL
            elif node["pattern"] not in (NO_NUL, NOT_BLANK):
                node.setdefault("allOf", []).append({"pattern": NO_NUL})
        for key, value in node.items():
            if key != "allOf":
                _text_rules(value)
    elif isinstance(node, list):
        for value in node:
            _text_rules(value)


_STATUS_TEXT = {400: "Bad request", 401: "Not signed in", 403: "Not allowed, or CSRF check failed",
                404: "Not found", 409: "Conflict with the current state", 413: "Request too large",
                415: "Not JSON", 422: "Validation failed", 429: "Too many attempts: wait Retry-After seconds",
                503: "Unavailable for a moment: try again after Retry-After seconds"}


API = web.AppKey("api", Api)  # the JSON API being declared: domains add routes in `setup`, the app installs it
