"""Real-browser tests: Debian's Chromium, driven by Playwright, against `livecommerce serve` on a real
port, filled with the demo market. On the embedded default (SQLite, one process) always, and on
PostgreSQL + Redis with two server processes when LIVECOMMERCE_TEST_DATABASE_URL and
LIVECOMMERCE_TEST_REDIS_URL are set.

Every test gets fresh browser contexts; the servers are started once per backend for the whole folder
(`running_site` starts others, e.g. with a `Clock` the test moves forward).
Screenshots go to `LIVECOMMERCE_ARTIFACTS` (default `tmp/artifacts/screens` in the repository, not
committed); `python -m tests.browser.gallery` writes docs/screens.md from them."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import BACKENDS, PG_URL, REDIS_URL, _with_db

CHROMIUM = os.environ.get("LIVECOMMERCE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LIVECOMMERCE_ARTIFACTS", ROOT / "tmp" / "artifacts" / "screens"))
PASSWORD = "browser-test-password"
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 800}
SIZES = {"phone": PHONE, "desk": DESK}
WAIT_MS = 20_000  # what a condition may take on a slow, shared machine (the tests wait for it, never sleep)


@dataclass
class Site:
    """The servers of one backend and the demo market in them."""

    backend: str
    urls: list[str]  # one per server process (two with Redis)
    live_id: int
    ended_id: int
    drop_id: int
    giveaway_id: int
    product_ids: list[int]
    accounts: dict[str, str] = field(default_factory=dict)  # username -> role
    replay_id: int = 0  # an ended broadcast with its recording and chat: the replay

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def other_url(self) -> str:
        return self.urls[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(db_url: str, redis_url: str, workdir: Path, log_level: str = "WARNING") -> tuple[Path, dict[str, Any]]:
    """Migrate, fill with the demo market and the test's accounts; returns the config file and what is in it."""
    from livecommerce.accounts import create_user, set_password
    from livecommerce.config import build_config
    from livecommerce.db import make_engine, make_sessionmaker, upgrade_sync, utcnow
    from livecommerce.demo import seed
    from livecommerce.models import Role, User

    prefix = f"lcbrowser-{secrets.token_hex(4)}:"
    values = {
        "server": {"secret_key": "browser-" + "s" * 40, "secret_key_file": str(workdir / "secret"),
                   "event_loop": "asyncio", "shutdown_timeout": 2.0},
        "database": {"url": db_url},
        "redis": {"url": redis_url, "prefix": prefix},
        "logging": {"level": log_level},
        "push": {"vapid_key_file": str(workdir / "vapid")},
    }
    config = build_config(values)

    async def fill() -> dict[str, Any]:
        from sqlalchemy import select

        from coupons.models import CouponDrop, Giveaway
        from sessions.models import Broadcast, BroadcastHost, BroadcastState, ChatMessage, LineupItem

        engine = make_engine(config.database)
        try:
            async with make_sessionmaker(engine).begin() as db:
                result = await seed(db, config, utcnow() - timedelta(minutes=1))
                for name in ("staff", "host", "merchant"):
                    user = await db.scalar(select(User).where(User.username == name))
                    assert user is not None
                    await set_password(db, user, PASSWORD)
                for name, display in (("mina", "미나"), ("joon", "준호"), ("sora", "소라")):
                    await create_user(db, username=name, role=Role.VIEWER, password=PASSWORD, display_name=display)
                # a second host, in no broadcast yet: free for a show staff schedule at any hour
                await create_user(db, username="duri", role=Role.HOST, password=PASSWORD, display_name="쇼호스트 두리")
                drop = await db.scalar(select(CouponDrop.id).where(CouponDrop.broadcast_id == result.live_broadcast_id))
                give = await db.scalar(select(Giveaway.id).where(Giveaway.broadcast_id == result.live_broadcast_id))
                products = (await db.scalars(select(LineupItem.product_id).where(
                    LineupItem.broadcast_id == result.live_broadcast_id).order_by(LineupItem.position))).all()
                host = await db.scalar(select(User).where(User.username == "host"))
                assert host is not None
                start = utcnow().replace(microsecond=0) - timedelta(days=2)
                ended = Broadcast(market_id=result.market_id, title_ko="지난 방송: 김장 특집",
                                  title_en="Last week: the kimchi special", starts_at=start,
                                  ends_at=start + timedelta(hours=1), started_at=start,
                                  ended_at=start + timedelta(hours=1), state=BroadcastState.ENDED,
                                  hosts=[BroadcastHost(user_id=host.id)], partners=[],
                                  lineup=[LineupItem(product_id=pid, position=n, live_price=9900, stock_reserved=5)
                                          for n, pid in enumerate(products[:3])])
                db.add(ended)
                # a show before it, with its recording (a picture stands in for the video: the page is what is
                # looked at) and its chat, every minute
                before = start - timedelta(days=5)
                replayed = Broadcast(market_id=result.market_id, title_ko="다시 보기: 떡 특집",
                                     title_en="Replay: the rice cake special", starts_at=before,
                                     ends_at=before + timedelta(hours=1), started_at=before,
                                     ended_at=before + timedelta(hours=1), state=BroadcastState.ENDED,
                                     recording_url="/static/demo/poster.svg", hosts=[BroadcastHost(user_id=host.id)],
                                     partners=[], lineup=[LineupItem(product_id=pid, position=n, live_price=9900,
                                                                     stock_reserved=5)
                                                          for n, pid in enumerate(products[:3])])
                db.add(replayed)
                await db.flush()
                db.add_all([ChatMessage(broadcast_id=replayed.id, user_id=host.id, author_name="쇼호스트 민지",
                                        author_role="host", text=f"{n}분: 떡 구경하세요!",
                                        created_at=before + timedelta(minutes=n)) for n in range(0, 60, 1)])
                await db.flush()
                return {"live_id": result.live_broadcast_id, "ended_id": ended.id, "drop_id": drop,
                        "giveaway_id": give, "product_ids": list(products), "replay_id": replayed.id}
        finally:
            await engine.dispose()

    # On a thread with its own event loop: Playwright's sync API keeps one running on this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade_sync, db_url).result()
        facts = pool.submit(asyncio.run, fill()).result()
    path = workdir / "config.toml"
    lines = []
    for section, keys in values.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            lines.append(f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, facts


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling a server that is starting, not an assertion
    raise RuntimeError(f"the server did not answer at {url}:\n{log.read_text(errors='replace')[-4000:]}")


def _pg_database() -> tuple[str, Any]:
    import asyncpg

    name = f"lc_browser_{os.getpid()}_{secrets.token_hex(3)}"
    admin = PG_URL.replace("postgresql+asyncpg", "postgresql")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def drop() -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')).result()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run(f'CREATE DATABASE "{name}"')).result()
    return _with_db(PG_URL, name), drop


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)")
    return CHROMIUM


class Clock:
    """The servers' wall clock, moved forward by the test: each server process runs with libfaketime
    preloaded, reading its offset from one file (`+N` seconds) on every clock reading. Their monotonic
    clock is left alone, so timeouts and sleeps keep real time."""

    LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        path.write_text("+0\n", encoding="ascii")

    @property
    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.LIBRARY), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def now(self) -> datetime:
        """What the servers' clock says now (UTC)."""
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def move_to(self, when: datetime) -> None:
        """Set the servers' clock to `when` (it runs on from there); never backwards."""
        offset = (when - datetime.now(UTC)).total_seconds()
        assert offset >= self.offset, "the servers' clock only moves forward"
        self.offset = offset
        tmp = self.path.with_suffix(".new")
        tmp.write_text(f"{offset:+.3f}\n", encoding="ascii")
        tmp.replace(self.path)  # whole, never half-written


@contextmanager
def running_site(backend: str, workdir: Path, clock: Clock | None = None, log_level: str = "WARNING") -> Iterator[Site]:
    """The servers of one backend on real ports, filled with the demo market: one process on SQLite, two
    with PostgreSQL + Redis; with `clock`, their wall clock is the test's to move."""
    drop_db = None
    if backend == "sqlite":
        db_url, redis_url, processes = f"sqlite+aiosqlite:///{workdir}/live.db", "", 1
    else:
        db_url, drop_db = _pg_database()
        redis_url, processes = REDIS_URL, 2 if REDIS_URL else 1
    config_path, facts = _prepare(db_url, redis_url, workdir, log_level)
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    urls = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(clock.env if clock else {})}
    try:
        for n in range(processes):
            port = _free_port()
            log_path = workdir / f"server-{n}.log"
            log = log_path.open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "livecommerce.cli", "serve", "--config", str(config_path),
                 "--host", "127.0.0.1", "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
            procs.append((proc, log))
            url = f"http://127.0.0.1:{port}"
            _wait_up(url, proc, log_path)
            urls.append(url)
        yield Site(backend, urls, facts["live_id"], facts["ended_id"], facts["drop_id"], facts["giveaway_id"],
                   facts["product_ids"],
                   {"staff": "staff", "host": "host", "merchant": "merchant", "mina": "viewer", "joon": "viewer",
                    "sora": "viewer", "duri": "host"}, facts["replay_id"])
    finally:
        for proc, _log in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        if drop_db is not None:
            drop_db()


@pytest.fixture(scope="package", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         chromium_path: str) -> Iterator[Site]:
    backend = str(request.param)
    with running_site(backend, tmp_path_factory.mktemp(f"site-{backend}")) as started:
        yield started


# Playwright's sync API keeps an event loop running on the main thread while it is open: it is opened for
# this folder only and closed at its end, so that the asynchronous tests after it get the thread back.
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright, chromium_path: str) -> Iterator[Browser]:
    b = playwright_instance.chromium.launch(
        executable_path=chromium_path,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"])
    yield b
    b.close()


class Watch:
    """What went wrong in a page that a person would not see at once: console errors, uncaught
    exceptions, failed requests and error answers."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Page) -> Page:
        page.on("console", lambda msg: self.problems.append(f"console {msg.type}: {msg.text} ({page.url})")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc} ({page.url})"))
        page.on("requestfailed", lambda req: self.problems.append(
            f"failed: {req.method} {req.url} {req.failure}") if not _aborted_on_leave(req.failure) else None)
        page.on("response", lambda resp: self.problems.append(f"{resp.status}: {resp.request.method} {resp.url}")
                if resp.status >= 400 else None)
        page.set_default_timeout(WAIT_MS)
        return page

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def _aborted_on_leave(failure: str | None) -> bool:
    # A request cut short because the page navigated away (a form posted, a link followed) is not a fault.
    return failure is not None and "ERR_ABORTED" in failure


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Any]:
    """Make browser contexts (one per person) whose pages are watched; every page's problems fail the test."""
    made: list[BrowserContext] = []
    watch = Watch()

    def new(size: str = "phone", locale: str = "ko-KR") -> BrowserContext:
        ctx = browser.new_context(viewport=SIZES[size], locale=locale, timezone_id="Asia/Seoul",
                                  device_scale_factor=1, has_touch=size == "phone", is_mobile=size == "phone")
        ctx.set_default_timeout(WAIT_MS)
        ctx.on("page", watch.attach)
        made.append(ctx)
        return ctx

    new.watch = watch  # type: ignore[attr-defined]
    yield new
    for ctx in made:
        ctx.close()
    watch.check()


def sign_in(page: Page, base: str, username: str, next_path: str = "/") -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.locator("form.login-form button[type=submit], form button[type=submit]").last.click()
    page.wait_for_url(lambda url: "/login" not in url)


def screenshot(page: Page, name: str, *, full: bool = True) -> Path:
    """Save what the page shows now as an artifact: the whole page, or (`full=False`) the screen as it is
    (a sheet open over the page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each page's look (sizes, overflow, accessibility, screenshots) is checked on one backend, the last one
    configured (PostgreSQL + Redis in `.ci/run`): the markup does not depend on the database, and the walks
    through a show run on every backend."""
    last = BACKENDS[-1]
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_other = callspec is not None and callspec.params.get("site", last) != last
        (dropped if item.path.name == "test_pages_look.py" and on_other else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
