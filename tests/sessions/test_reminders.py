"""Reminders as Web Push notifications, sent for real: a push service on a real port here decrypts each
message with the subscription's private key (aes128gcm, RFC 8291) and checks the VAPID token's signature
against the configured public key (RFC 8292). Two app instances race to send: each reminder arrives once;
a reminder taken by a process that stopped before sending it is sent once by the scheduler's sweep."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import http_ece
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config
from livecommerce.db import utcnow
from livecommerce.keys import AppKeys
from livecommerce.webpush import PUSH, PushSender, PushSubscription, Subscription, VapidKeys, b64url_decode
from sessions import reminders
from sessions.lifecycle import Scheduler
from sessions.models import Broadcast, BroadcastState
from sessions.reminders import MAX_TAKES, SENDING, PushReminder, resend_lost, send_reminders, take_due, take_lost
from sessions.room import push_transition

from ..support import World, csrf, fresh, sign_in

VAPID = VapidKeys.generate()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Browser:
    """A browser's side of a subscription: its private key and secret, as a push service's client holds them."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, base: str) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{base}/push/{self.name}", "keys": {"p256dh": b64(point), "auth": b64(self.auth)},
                "expirationTime": None}


@dataclass
class PushService:
    """Receives notifications like a push service: checks VAPID, decrypts, answers as it is told."""

    base: str = ""
    browsers: dict[str, Browser] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)  # statuses to answer, in turn (then 201)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # decrypted, per browser
    attempts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds before each answer

    def browser(self, name: str) -> Browser:
        self.browsers[name] = Browser(name)
        return self.browsers[name]

    def check_vapid(self, request: web.Request) -> None:
        scheme, _, params = request.headers["Authorization"].partition(" ")
        assert scheme == "vapid", scheme
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        assert parts["k"] == VAPID.public_key, "signed with another key"
        header, claims, signature = parts["t"].split(".")
        assert json.loads(b64url_decode(header)) == {"typ": "JWT", "alg": "ES256"}
        raw = b64url_decode(signature)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(VAPID.public_key))
        public.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                      f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
        body = json.loads(b64url_decode(claims))
        assert body["aud"] == self.base and body["exp"] > time.time() and body["sub"].startswith("mailto:")

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.attempts[name] = self.attempts.get(name, 0) + 1
        try:
            self.check_vapid(request)
            assert request.headers["Content-Encoding"] == "aes128gcm"
            assert int(request.headers["TTL"]) > 0
            browser = self.browsers[name]
            plain = http_ece.decrypt(await request.read(), private_key=browser.key, auth_secret=browser.auth,
                                     version="aes128gcm")
        except Exception as exc:  # a wrong message is a failed test, told by `problems`
            self.problems.append(f"{name}: {exc!r}")
            return web.Response(status=400)
        await asyncio.sleep(self.delay)
        queue = self.answers.get(name, [])
        status = queue.pop(0) if queue else 201
        if status == 201:
            self.received.setdefault(name, []).append(json.loads(plain))
        return web.Response(status=status)


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    service.base = f"http://127.0.0.1:{srv.port}"
    yield service
    await srv.close()


@pytest.fixture
def push_config(config: Config) -> Config:
    return config.replace(push={"vapid_private_key": VAPID.private_raw, "allow_http_loopback": True})


@pytest.fixture
async def two_apps(push_config: Config, aiohttp_client: Any) -> tuple[TestClient, TestClient]:
    """Two server processes' worth of app on one database (and one Redis when configured)."""
    first = await aiohttp_client(create_app(push_config))
    second = await aiohttp_client(create_app(push_config))
    for c in (first, second):
        c.app[PUSH].backoff = 0.01
    return first, second


async def remind_me(client: TestClient, broadcast_id: int, sub: dict[str, Any], token: str | None = None) -> Any:
    token = token or await csrf(client)
    return await client.put(f"/api/v1/broadcasts/{broadcast_id}/push-reminder", json={"subscription": sub},
                            headers={"X-CSRF-Token": token})


async def test_each_reminder_is_sent_once_while_two_processes_race(
        two_apps: tuple[TestClient, TestClient], push_service: PushService, world: World, db: AsyncSession) -> None:
    first, second = two_apps
    broadcast_id = world.scheduled.id
    phone, laptop, visitor, stale = (push_service.browser(n) for n in ("phone", "laptop", "visitor", "stale"))

    token = await sign_in(first, "viewer")  # a signed-in viewer on their phone
    resp = await remind_me(first, broadcast_id, phone.subscription(push_service.base), token)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"broadcast_id": broadcast_id, "reminded": True}
    resp = await first.get("/schedule")  # their reminder is the account's too
    assert resp.status == 200
    resp = await remind_me(second, broadcast_id, visitor.subscription(push_service.base))  # a visitor
    assert resp.status == 200, await resp.text()
    resp = await remind_me(second, broadcast_id, visitor.subscription(push_service.base))  # twice: one reminder
    assert resp.status == 200
    resp = await remind_me(second, broadcast_id, stale.subscription(push_service.base))
    assert resp.status == 200
    async with first.app[AppKeys.db].begin() as tx:  # the viewer's laptop allowed notifications earlier
        laptop_sub = laptop.subscription(push_service.base)
        await reminders.subscribe(tx, Subscription(laptop_sub["endpoint"], laptop_sub["keys"]["p256dh"],
                                                   laptop_sub["keys"]["auth"]), world.viewer.id, "en")
    push_service.answers = {"stale": [410], "visitor": [503]}  # gone; a push service that fails once

    reports = await asyncio.gather(send_reminders(first.app, broadcast_id, BroadcastState.LOBBY),
                                   send_reminders(second.app, broadcast_id, BroadcastState.LOBBY))

    assert push_service.problems == []
    assert {name: len(got) for name, got in push_service.received.items()} == {"phone": 1, "laptop": 1, "visitor": 1}
    assert push_service.attempts == {"phone": 1, "laptop": 1, "visitor": 2, "stale": 1}
    assert sum(r.sent for r in reports) == 3 and sum(r.gone for r in reports) == 1
    assert sorted(x for r in reports for x in r.reminders) == sorted(set(x for r in reports for x in r.reminders))
    phone_note, laptop_note = push_service.received["phone"][0], push_service.received["laptop"][0]
    assert phone_note["title"] == "예정" and phone_note["url"] == f"/live/{broadcast_id}"
    assert laptop_note["title"] == "Coming" and laptop_note["body"].startswith("Starts at")
    assert phone_note["tag"] == f"broadcast-{broadcast_id}" and "시작" in phone_note["body"]

    db = await fresh(db)
    endpoints = set((await db.scalars(select(PushSubscription.endpoint))).all())
    assert f"{push_service.base}/push/stale" not in endpoints  # 410: the subscription is gone
    outcomes = (await db.scalars(select(PushReminder.outcome).where(PushReminder.broadcast_id == broadcast_id))).all()
    assert sorted(o or "" for o in outcomes) == ["sent", "sent", "sent"]

    # The show goes live: nobody is told twice.
    await asyncio.gather(send_reminders(first.app, broadcast_id, BroadcastState.LIVE),
                         send_reminders(second.app, broadcast_id, BroadcastState.LIVE))
    assert {name: len(got) for name, got in push_service.received.items()} == {"phone": 1, "laptop": 1, "visitor": 1}


async def wait_sent(app: web.Application) -> None:
    while app[SENDING].tasks:
        await asyncio.gather(*app[SENDING].tasks, return_exceptions=True)


async def test_the_lobby_opening_sends_and_a_reminder_set_in_the_lobby_waits_for_live(
        two_apps: tuple[TestClient, TestClient], push_service: PushService, world: World, db: AsyncSession) -> None:
    first, _ = two_apps
    broadcast_id = world.scheduled.id
    early, late = push_service.browser("early"), push_service.browser("late")
    assert (await remind_me(first, broadcast_id, early.subscription(push_service.base))).status == 200

    b = await db.get(Broadcast, broadcast_id)
    assert b is not None
    b.state = BroadcastState.LOBBY
    await db.commit()
    await push_transition(first.app, broadcast_id, BroadcastState.LOBBY, utcnow())
    await wait_sent(first.app)
    assert [n["state"] for n in push_service.received["early"]] == ["lobby"]

    assert (await remind_me(first, broadcast_id, late.subscription(push_service.base))).status == 200
    await push_transition(first.app, broadcast_id, BroadcastState.LIVE, utcnow())
    await wait_sent(first.app)
    assert push_service.problems == []
    assert [n["state"] for n in push_service.received["late"]] == ["live"]
    assert len(push_service.received["early"]) == 1


async def test_a_push_service_that_keeps_failing_is_tried_a_bounded_number_of_times(
        two_apps: tuple[TestClient, TestClient], push_service: PushService, world: World, db: AsyncSession) -> None:
    first, _ = two_apps
    down = push_service.browser("down")
    assert (await remind_me(first, world.scheduled.id, down.subscription(push_service.base))).status == 200
    push_service.answers = {"down": [500] * 10}
    report = await send_reminders(first.app, world.scheduled.id, BroadcastState.LOBBY)
    assert report.failed == 1 and push_service.attempts["down"] == 1 + first.app[PUSH].config.push.retries
    db = await fresh(db)
    assert (await db.scalar(select(PushReminder.outcome))) == "failed"
    assert (await db.scalar(select(PushSubscription.id))) is not None  # kept: it may work next time


BadCase = Callable[[dict[str, Any]], None]


def _http_elsewhere(s: dict[str, Any]) -> None:
    s["endpoint"] = "http://push.example.com/x"


def _private_address(s: dict[str, Any]) -> None:
    s["endpoint"] = "https://10.0.0.7/x"


def _short_key(s: dict[str, Any]) -> None:
    s["keys"]["p256dh"] = s["keys"]["p256dh"][:-4]


def _off_curve(s: dict[str, Any]) -> None:
    s["keys"]["p256dh"] = b64(b"\x04" + b"\x01" * 64)


def _short_auth(s: dict[str, Any]) -> None:
    s["keys"]["auth"] = b64(b"x" * 15)


def _not_base64(s: dict[str, Any]) -> None:
    s["keys"]["auth"] = "not base64!"


FORMAT = (_short_key, _short_auth, _not_base64)
BAD = [(_http_elsewhere, "subscription.endpoint"), (_private_address, "subscription.endpoint"),
       (_short_key, "subscription.keys.p256dh"), (_off_curve, "subscription.keys.p256dh"),
       (_short_auth, "subscription.keys.auth"), (_not_base64, "subscription.keys.auth")]


async def test_a_subscription_is_checked_before_it_is_kept(push_config: Config, aiohttp_client: Any,
                                                           world: World, db: AsyncSession) -> None:
    client = await aiohttp_client(create_app(push_config))
    token = await csrf(client)
    for spoil, where in BAD:
        sub = Browser("x").subscription("http://127.0.0.1:9")
        spoil(sub)
        resp = await remind_me(client, world.scheduled.id, sub, token)
        assert resp.status == 422, (spoil.__name__, await resp.text())
        error = (await resp.json())["error"]
        assert [d["field"] for d in error["details"]] == [where], spoil.__name__
        # what the document's patterns say is the validator's; what they cannot say has its own code
        assert error["code"] == ("validation_failed" if spoil in FORMAT else "invalid_subscription"), spoil.__name__
    db = await fresh(db)
    assert (await db.scalar(select(PushSubscription.id))) is None


async def test_reminders_only_for_what_is_coming_and_the_service_worker_and_key(
        push_config: Config, aiohttp_client: Any, world: World, db: AsyncSession) -> None:
    client = await aiohttp_client(create_app(push_config))
    sub = Browser("x").subscription("http://127.0.0.1:9")
    resp = await remind_me(client, world.live.id, sub)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_upcoming"
    resp = await remind_me(client, 999_999, sub)
    assert resp.status == 404
    resp = await client.put(f"/api/v1/broadcasts/{world.scheduled.id}/push-reminder", json={"subscription": sub})
    assert resp.status == 403  # no CSRF token

    token = await csrf(client)
    assert (await remind_me(client, world.scheduled.id, sub, token)).status == 200
    resp = await client.delete(f"/api/v1/broadcasts/{world.scheduled.id}/push-reminder",
                               json={"endpoint": sub["endpoint"]}, headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["reminded"] is False
    db = await fresh(db)
    assert (await db.scalar(select(PushReminder.id))) is None

    resp = await client.get("/api/v1/push/key")
    assert resp.status == 200 and (await resp.json())["public_key"] == VAPID.public_key
    resp = await client.get("/sw.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.headers["Service-Worker-Allowed"] == "/"
    assert "notificationclick" in await resp.text()


# -- reminders taken and never sent ----------------------------------------------------------------

async def reminded_in_the_lobby(client: TestClient, push_service: PushService, db: AsyncSession, broadcast_id: int,
                                *names: str) -> None:
    """Browsers that asked to be reminded of a broadcast whose lobby is now open."""
    token = await csrf(client)
    for name in names:
        resp = await remind_me(client, broadcast_id, push_service.browser(name).subscription(push_service.base), token)
        assert resp.status == 200, await resp.text()
    await set_state(db, broadcast_id, BroadcastState.LOBBY)


async def set_state(db: AsyncSession, broadcast_id: int, state: BroadcastState) -> None:
    b = await (await fresh(db)).get(Broadcast, broadcast_id)
    assert b is not None
    b.state = state
    await db.commit()


async def taken_by_a_process_that_stops(app: web.Application, broadcast_id: int, at: datetime) -> int:
    """A process takes the reminders as the show opens, then stops before sending them."""
    async with app[AppKeys.db].begin() as tx:
        return len(await take_due(tx, broadcast_id, at))


def counts(push_service: PushService) -> dict[str, int]:
    return {name: len(got) for name, got in push_service.received.items()}


async def test_a_reminder_whose_sender_stopped_is_sent_once_by_the_sweep_after_the_delay(
        two_apps: tuple[TestClient, TestClient], push_service: PushService, world: World, db: AsyncSession) -> None:
    first, second = two_apps
    broadcast_id = world.scheduled.id
    await reminded_in_the_lobby(first, push_service, db, broadcast_id, "phone", "laptop")
    taken_at = utcnow()
    assert await taken_by_a_process_that_stops(first.app, broadcast_id, taken_at) == 2
    after = timedelta(seconds=first.app[AppKeys.config].push.resend_after_seconds)

    # before the delay its sender may still be at work: nobody takes it
    assert await resend_lost(second.app, taken_at + after - timedelta(seconds=1)) == []
    assert push_service.received == {}

    # after it, two processes sweep at once: each reminder is taken again by one, and arrives once
    reports = await asyncio.gather(resend_lost(first.app, taken_at + after + timedelta(seconds=1)),
                                   resend_lost(second.app, taken_at + after + timedelta(seconds=1)))
    assert push_service.problems == []
    assert counts(push_service) == {"phone": 1, "laptop": 1}
    assert push_service.attempts == {"phone": 1, "laptop": 1}
    assert sum(r.sent for found in reports for r in found) == 2
    assert push_service.received["phone"][0]["state"] == "lobby"

    # sent: never again, however late the next sweeps
    for later in (timedelta(minutes=10), timedelta(hours=1)):
        assert await resend_lost(first.app, taken_at + later) == []
        assert await resend_lost(second.app, taken_at + later) == []
    assert counts(push_service) == {"phone": 1, "laptop": 1}
    db = await fresh(db)
    rows = (await db.execute(select(PushReminder.outcome, PushReminder.takes)
                             .where(PushReminder.broadcast_id == broadcast_id))).all()
    assert sorted(rows) == [("sent", 2), ("sent", 2)]


async def test_a_reminder_is_taken_again_a_bounded_number_of_times_and_only_while_its_show_is_open(
        two_apps: tuple[TestClient, TestClient], push_service: PushService, world: World, db: AsyncSession) -> None:
    first, _ = two_apps
    broadcast_id = world.scheduled.id
    await reminded_in_the_lobby(first, push_service, db, broadcast_id, "refused")
    push_service.answers = {"refused": [500] * 10}
    report = await send_reminders(first.app, broadcast_id, BroadcastState.LOBBY)
    assert report.failed == 1  # its sender tried and wrote so: a failure is not taken again
    await reminded_in_the_lobby(first, push_service, db, broadcast_id, "lost")
    taken_at = utcnow()
    assert await taken_by_a_process_that_stops(first.app, broadcast_id, taken_at) == 1
    after = first.app[AppKeys.config].push.resend_after_seconds

    async def sweep_takes(minutes: int) -> list[str]:
        """What a sweep takes `minutes` after the first take (and then stops, sending nothing)."""
        async with first.app[AppKeys.db].begin() as tx:
            found = await take_lost(tx, taken_at + timedelta(minutes=minutes), after)
        return [d.subscription.endpoint.rsplit("/", 1)[1] for due in found.values() for d in due]

    assert await sweep_takes(3) == ["lost"]  # its second take
    assert await sweep_takes(4) == []  # taken a minute ago: that sender may be at work
    await set_state(db, broadcast_id, BroadcastState.ENDED)
    assert await sweep_takes(10) == []  # the show is over: no reminder of it
    await set_state(db, broadcast_id, BroadcastState.LIVE)
    assert await sweep_takes(20) == ["lost"]  # its third
    assert MAX_TAKES == 3
    assert await sweep_takes(30) == []  # never a fourth
    assert push_service.received == {}


async def test_a_sender_still_at_work_is_never_raced(push_config: Config, aiohttp_client: Any,
                                                      push_service: PushService, world: World,
                                                      db: AsyncSession) -> None:
    """A sender with more reminders than it sends at once keeps hold of those that wait: another process
    sweeping all along takes none of them, even when the whole takes longer than the delay."""
    config = push_config.replace(push={"timeout_seconds": 1.0, "retries": 0, "resend_after_seconds": 3.5})
    app = create_app(config)
    app[PUSH] = PushSender(config, VAPID, workers=1)  # one notification at a time
    first = await aiohttp_client(app)
    second = await aiohttp_client(create_app(config))
    names = [f"b{n}" for n in range(16)]
    await reminded_in_the_lobby(first, push_service, db, world.scheduled.id, *names)
    push_service.delay = 0.3  # 16 × 0.3 s: longer than resend_after_seconds

    started = time.monotonic()
    sending = asyncio.create_task(send_reminders(first.app, world.scheduled.id, BroadcastState.LOBBY))
    sweeps = 0
    while not sending.done():
        assert await resend_lost(second.app) == []
        sweeps += 1
        await asyncio.sleep(0.2)
    report = sending.result()
    assert time.monotonic() - started > config.push.resend_after_seconds and sweeps >= 5

    assert push_service.problems == []
    assert report.sent == len(names) and report.elsewhere == 0
    assert counts(push_service) == dict.fromkeys(names, 1)
    assert push_service.attempts == dict.fromkeys(names, 1)


class At:
    """A clock stopped at one time, for one look of the scheduler."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        return None


async def test_the_scheduler_sweeps_at_its_look(two_apps: tuple[TestClient, TestClient], push_service: PushService,
                                                world: World, db: AsyncSession) -> None:
    first, second = two_apps
    await reminded_in_the_lobby(first, push_service, db, world.scheduled.id, "phone")
    taken_at = utcnow()
    assert await taken_by_a_process_that_stops(first.app, world.scheduled.id, taken_at) == 1
    after = timedelta(seconds=first.app[AppKeys.config].push.resend_after_seconds)

    await Scheduler(second.app, At(taken_at + after / 2)).tick()
    await wait_sent(second.app)
    assert push_service.received == {}
    await asyncio.gather(Scheduler(first.app, At(taken_at + after * 1.5)).tick(),
                         Scheduler(second.app, At(taken_at + after * 1.5)).tick())
    await asyncio.gather(wait_sent(first.app), wait_sent(second.app))
    assert push_service.problems == []
    assert counts(push_service) == {"phone": 1}
