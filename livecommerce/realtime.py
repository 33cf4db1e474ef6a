"""The real-time layer: python-socketio attached to the app, authenticated at connect, with
every event validated and role-checked by the same rule objects as the HTTP routes.

With `redis.url` empty the socket.io manager is in memory (one process); with it set,
`AsyncRedisManager` lets several `livecommerce serve` processes share rooms.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from . import i18n, jsonenc, logs
from .api import format_validation
from .auth import COOKIE, Access
from .config import Config
from .errors import AppError, Forbidden, TooManyConnections, Unauthenticated, Unavailable, ValidationFailed, error_body
from .keys import AppKeys
from .models import Role
from .outages import unavailable
from .throttle import OPEN_SOCKETS, client_address

log = logging.getLogger("livecommerce.socket")


def socket_origins(config: Config) -> list[str] | None:
    """The origins a browser socket may come from. None means python-engineio's same-origin check
    (the page's own host); never `*`."""
    from .auth import allowed_origins

    origins = allowed_origins(config)
    return origins or None


def make_sio(config: Config) -> socketio.AsyncServer:
    from .fanout import FastManager, FastRedisManager, install

    if config.redis.url:
        manager: socketio.AsyncManager = FastRedisManager(
            config.redis.url, channel=f"{config.redis.prefix}socketio", batch_ms=config.room.batch_ms,
            json=jsonenc)
    else:
        manager = FastManager(batch_ms=config.room.batch_ms)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        json=jsonenc,  # socket.io's JSON is the API's: compact UTF-8
        cors_allowed_origins=socket_origins(config),
        cors_credentials=True,
        max_http_buffer_size=64 * 1024,
        logger=False,
        engineio_logger=False,
    )
    install(sio)
    return sio


@dataclass
class SocketUser:
    """Who is on a socket, as the server established it at connect (from the signed cookie). `epoch` is
    the session epoch the cookie carried: the socket acts for the account only while it is the account's
    (`Namespace.who`), as a request's cookie does."""

    user_id: int | None
    role: Role | None
    name: str
    locale: str
    epoch: int = 0

    def as_session(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "role": self.role.value if self.role else None, "name": self.name,
                "locale": self.locale, "epoch": self.epoch}

    @classmethod
    def from_session(cls, data: dict[str, Any]) -> SocketUser:
        role = data.get("role")
        return cls(data.get("user_id"), Role(role) if role else None, data.get("name", ""), data.get("locale", "ko"),
                   data.get("epoch", 0))


EventHandler = Callable[..., Awaitable[Any]]


@dataclass
class EventSpec:
    name: str
    access: Access
    payload: type[BaseModel] | None
    handler: EventHandler
    summary: str
    errors: tuple[str, ...] = ()
    # For an event sent many times a second by every viewer (hearts): a plain function `quick(group, sid,
    # data)` that does the common case at once and answers True, or False to send the event the usual way
    # (validation, access, errors, the log line). Only for public events answered without data.
    quick: Callable[[Any, str, Any], bool] | None = None


COMMON_ERRORS = ("validation_failed", "unauthenticated", "forbidden", "unavailable", "internal")


def event(name: str, *, access: Access, payload: type[BaseModel] | None = None, summary: str = "",
          errors: tuple[str, ...] = (), quick: Callable[[Any, str, Any], bool] | None = None,
          ) -> Callable[[EventHandler], EventHandler]:
    """Declare a client→server socket event on an `EventGroup` method, with the error codes it may answer
    (besides the common ones) for the protocol document."""

    def mark(fn: EventHandler) -> EventHandler:
        if quick is not None and access.roles is not None:
            raise ValueError(f"socket event {name!r}: only a public event may have a quick path")
        fn.__dict__["__event__"] = EventSpec(name, access, payload, fn,
                                             summary or " ".join((fn.__doc__ or "").split()), errors, quick)
        return fn

    return mark


def ok(data: Any = None) -> dict[str, Any]:
    return {"ok": True, "data": data}


def error_ack(exc: AppError) -> dict[str, Any]:
    return {"ok": False, "error": error_body(exc)}


def declared_events(group: type) -> list[EventSpec]:
    """The `@event` declarations of a class, in name order."""
    specs = []
    for attr in dir(group):
        spec = getattr(getattr(group, attr), "__event__", None)
        if isinstance(spec, EventSpec):
            specs.append(spec)
    return specs


class EventGroup:
    """A domain's socket events on the `/live` namespace: methods declared with `@event(...)`, called as
    `handler(group, sid, who, payload)`. A group reaches the namespace (rooms, the socket session) and the
    app through `self.ns` and `self.app`."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.app = ns.app

    async def enter_room(self, sid: str, room: str) -> None:
        await self.ns.enter_room(sid, room)

    async def leave_room(self, sid: str, room: str) -> None:
        await self.ns.leave_room(sid, room)


ConnectHook = Callable[["Namespace", str, SocketUser], Awaitable[None]]


@dataclass
class ServerEvent:
    """A server→client event, for the protocol document: its name, its payload model and who receives it."""

    name: str
    model: type[BaseModel] | None
    to: str


class SessionEndedOut(BaseModel):
    """`session:ended`: the socket's session has ended (signed out here or elsewhere, a new password, or staff
    ended it). The socket now acts for nobody: what needs a sign-in is answered `unauthenticated`."""

    user_id: int = Field(description="the account that was signed in")


SESSION_ENDED = "session:ended"


@dataclass
class LiveParts:
    """What the domains put into the `/live` namespace: their event groups, what runs when a socket
    connects, and (for the protocol document) the events they send."""

    groups: list[type[EventGroup]] = field(default_factory=list)
    on_connect: list[ConnectHook] = field(default_factory=list)
    server_events: list[ServerEvent] = field(default_factory=lambda: [
        ServerEvent(SESSION_ENDED, SessionEndedOut, "a socket whose session has ended, at its next event")])
    payload_models: list[type[BaseModel]] = field(default_factory=list)
    # error codes an event of one domain may answer because of another's hook (a pricer refusing a `buy`)
    more_errors: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_errors(self, event_name: str, codes: Sequence[str]) -> None:
        self.more_errors[event_name] = (*self.more_errors.get(event_name, ()), *codes)


LIVE_NAMESPACE = "/live"
LIVE = web.AppKey("live_parts", LiveParts)


def live_parts(app: web.Application) -> LiveParts:
    """The app's `/live` parts, made on first use (domains register into them in their `setup`)."""
    parts = app.get(LIVE)
    if parts is None:
        parts = app[LIVE] = LiveParts()
    return parts


class Namespace(socketio.AsyncNamespace):  # type: ignore[misc]  # python-socketio ships no types
    """A namespace whose connections are authenticated from the session cookie and whose events
    are declared with `@event(...)` in event groups: validated, role-checked, logged and counted."""

    def __init__(self, namespace: str, app: web.Application, groups: Sequence[type[EventGroup]] = (),
                 on_connect: Sequence[ConnectHook] = ()) -> None:
        super().__init__(namespace)
        self.app = app
        self.events: dict[str, tuple[EventSpec, Any]] = {}
        self._quick_counted: dict[str, Any] = {}
        self._quick_prefix = f"42{namespace},["  # an event packet without an acknowledgement id
        self.connect_hooks = list(on_connect)
        for spec in declared_events(type(self)):
            self.events[spec.name] = (spec, self)
        for group in groups:
            instance = group(self)
            for spec in declared_events(group):
                if spec.name in self.events:
                    raise ValueError(f"socket event {spec.name!r} is declared twice")
                self.events[spec.name] = (spec, instance)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        found = self.events.get(event)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        if found is not None and found[0].quick is not None and found[0].quick(found[1], sid, data):
            self._count_quick(event)
            return ok()
        return await self._dispatch(found, event, sid, data)

    def quick_text(self, eio_sid: str, text: str) -> bool:
        """An Engine.IO message as it arrives on a websocket: True when it is an event of this namespace with a
        quick path (`EventSpec.quick`), sent without an acknowledgement id, and the quick path took it — then
        it costs no Engine.IO or Socket.IO decoding and no task. Anything else: False, and it goes the usual
        way."""
        if not text.startswith(self._quick_prefix):
            return False
        try:
            message = jsonenc.loads(text[len(self._quick_prefix) - 1:])
        except ValueError:
            return False
        if type(message) is not list or len(message) != 2 or type(message[0]) is not str:
            return False
        found = self.events.get(message[0])
        if found is None or found[0].quick is None:
            return False
        sid = self.server.manager.sid_from_eio_sid(eio_sid, self.namespace)
        if sid is None or not found[0].quick(found[1], sid, message[1]):
            return False
        self._count_quick(message[0])
        return True

    def _count_quick(self, event: str) -> None:
        counted = self._quick_counted.get(event)
        if counted is None:
            counted = self._quick_counted[event] = self.app[AppKeys.metrics].socket_events.labels(event, "ok")
        counted.inc()

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request: web.Request = environ["aiohttp.request"]
        if not self.app[OPEN_SOCKETS].opened(sid, client_address(request, self.app[AppKeys.config].server.trust_proxy)):
            self.app[AppKeys.metrics].errors.labels(TooManyConnections.code).inc()
            raise socketio.exceptions.ConnectionRefusedError(error_body(TooManyConnections()))
        try:
            await self._connect(sid, request)
        except BaseException:
            self.app[OPEN_SOCKETS].closed(sid)
            raise

    async def _connect(self, sid: str, request: web.Request) -> None:
        codec = self.app[AppKeys.codec]
        session = codec.decode(request.cookies.get(COOKIE))
        config = self.app[AppKeys.config]
        locale = (session.locale if session and session.locale else None) or config.i18n.default_locale
        who = SocketUser(None, None, "", locale)
        if session is not None and session.user_id is not None:
            user = await self.app[AppKeys.accounts].get(self.app[AppKeys.hot], session.user_id, session.epoch)
            if user is not None:
                who = SocketUser(user.id, user.role, user.display_name, locale, session.epoch)
        await self.save_session(sid, who.as_session())
        self.app[AppKeys.metrics].sockets_connected.inc()
        with logs.scope(sid=sid, viewer=who.user_id):
            for hook in self.connect_hooks:
                await hook(self, sid, who)
            log.info("socket connected", extra={"sid": sid, "user": who.user_id, "role": who.role})

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.app[OPEN_SOCKETS].closed(sid)
        self.app[AppKeys.metrics].sockets_connected.dec()
        await self.disconnected(sid)
        log.info("socket disconnected", extra={"sid": sid, "reason": str(reason)})

    async def disconnected(self, sid: str) -> None:
        """Subclasses release what a socket held."""

    async def who(self, sid: str) -> SocketUser:
        """Who is on the socket now. A signed-in socket is checked against the account on every event, as a
        request is (the cached read of `AppKeys.accounts`, emptied after each commit that changes the
        account): once its epoch has moved on (sign-out, a new password) or the account is disabled, the
        socket is signed out; otherwise the role and name are the account's as they are now."""
        who = SocketUser.from_session(await self.get_session(sid))
        if who.user_id is None:
            return who
        user = await self.app[AppKeys.accounts].get(self.app[AppKeys.hot], who.user_id, who.epoch)
        if user is None:
            # The session ended (sign-out, a new password, staff ended it): from now on the socket is
            # nobody's, and it is told once, so that its page can say so and offer to sign in again.
            anonymous = SocketUser(None, None, "", who.locale)
            await self.save_session(sid, anonymous.as_session())
            await self.emit(SESSION_ENDED, SessionEndedOut(user_id=who.user_id).model_dump(), to=sid)
            log.info("socket session ended", extra={"sid": sid, "user": who.user_id})
            return anonymous
        return SocketUser(user.id, user.role, user.display_name, who.locale, who.epoch)

    async def _dispatch(self, found: tuple[EventSpec, Any] | None, event: str, sid: str,
                        data: Any) -> dict[str, Any]:
        spec, owner = found if found is not None else (None, None)
        started = time.perf_counter()
        metrics = self.app[AppKeys.metrics]
        event_id = uuid.uuid4().hex[:12]
        away: Exception | None = None
        try:
            who = await self.who(sid)
        except Exception as exc:  # the account could not be read: answered below, never left unanswered
            if not unavailable(exc):
                raise
            who, away = SocketUser.from_session(await self.get_session(sid)), exc
        i18n.activate(who.locale, self.app[AppKeys.catalogues][who.locale])
        broadcast = data.get("broadcast_id") if isinstance(data, dict) else None
        # every line written while the event is handled, in any module, names the broadcast and the viewer
        scope = logs.enter(event_id=event_id, sid=sid, viewer=who.user_id,
                           broadcast=broadcast if type(broadcast) is int else None)
        try:
            try:
                if away is not None:
                    raise Unavailable() from away
                if spec is None:
                    raise AppError("Unknown event.", code="unknown_event")
                if who.role is None:
                    if spec.access.roles is not None:
                        raise Unauthenticated()
                elif spec.access.roles is not None and who.role not in spec.access.roles:
                    raise Forbidden()
                payload: Any = None
                if spec.payload is not None:
                    if not isinstance(data, dict):
                        raise ValidationFailed("The event's data must be an object.")
                    try:  # strictly, as JSON (a number is a number: not `true`, "2" or 2.0), like the HTTP API
                        payload = spec.payload.model_validate_json(jsonenc.dumps(data), strict=True)
                    except PydanticValidationError as exc:
                        raise ValidationFailed(details=format_validation(exc)) from None
                result = await spec.handler(owner, sid, who, payload)
                ack = ok(result)
                outcome = "ok"
            except AppError as exc:
                ack = error_ack(exc)
                outcome = exc.code
                metrics.errors.labels(exc.code).inc()
            except Exception as exc:
                if unavailable(exc):  # PostgreSQL or Redis did not answer: nothing was done, try again
                    log.warning("socket event failed: unavailable", extra={"event": event, "sid": sid,
                                                                            "error": type(exc).__name__})
                    ack = error_ack(Unavailable())
                    outcome = Unavailable.code
                else:
                    log.exception("socket event failed", extra={"event": event, "sid": sid})
                    ack = error_ack(AppError("Something went wrong on our side. Please try again.", code="internal"))
                    outcome = "internal"
                metrics.errors.labels(outcome).inc()
            metrics.socket_events.labels(event if spec else "unknown", outcome).inc()
            log.info("socket event", extra={
                "event_id": event_id, "event": event, "sid": sid, "user": who.user_id,
                "broadcast": broadcast, "outcome": outcome,
                "ms": round((time.perf_counter() - started) * 1000, 2)})
        finally:
            logs.leave(scope)
        return ack


def install_live(app: web.Application) -> Namespace:
    """Register the `/live` namespace with every event group the domains declared (the app factory
    calls this once, after each domain's `setup`)."""
    parts = live_parts(app)
    ns = Namespace(LIVE_NAMESPACE, app, parts.groups, parts.on_connect)
    sio = app[AppKeys.sio]
    sio.register_namespace(ns)
    sio.eio.lc_quick = ns.quick_text  # read by `internals.serve_websocket`
    return ns
