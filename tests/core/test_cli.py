"""The `livecommerce` command, run as a newcomer would: create accounts, fill the demo, serve and
stop gracefully."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from coupons.models import CouponDrop, Giveaway
from livecommerce.config import build_config
from livecommerce.db import make_engine, make_sessionmaker
from livecommerce.models import Market, Product, Role, User
from sessions.models import Broadcast, BroadcastState


def run(args: list[str], cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "livecommerce.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _query(url: str, stmt):  # type: ignore[no-untyped-def]
    engine = make_engine(build_config({"database": {"url": url}}, env={}).database)
    try:
        async with make_sessionmaker(engine, write=False)() as db:
            return (await db.execute(stmt)).all()
    finally:
        await engine.dispose()


async def test_user_add_creates_an_account(tmp_path: Path) -> None:
    proc = run(["user", "add", "--role", "staff", "--password-stdin", "--display-name", "운영", "alice"], tmp_path,
               stdin="a strong password\n")
    assert proc.returncode == 0, proc.stderr
    assert "created staff account 'alice'" in proc.stdout
    url = f"sqlite+aiosqlite:///{tmp_path}/livecommerce.db"
    rows = await _query(url, select(User.username, User.role, User.display_name))
    assert rows == [("alice", Role.STAFF, "운영")]
    again = run(["user", "add", "--role", "host", "--password-stdin", "alice"], tmp_path, stdin="a strong password\n")
    assert again.returncode == 2
    assert "taken" in again.stderr
    weak = run(["user", "add", "--role", "host", "--password-stdin", "bob"], tmp_path, stdin="short\n")
    assert weak.returncode == 2 and "at least 8" in weak.stderr


async def test_demo_fills_an_empty_database_once(tmp_path: Path) -> None:
    proc = run(["demo", "--no-serve"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(created)" in proc.stdout and "/live/" in proc.stdout and "staff    / demo-" in proc.stdout
    url = f"sqlite+aiosqlite:///{tmp_path}/livecommerce.db"
    assert (await _query(url, select(func.count()).select_from(Market)))[0][0] == 1
    products = (await _query(url, select(func.count()).select_from(Product)))[0][0]
    assert products >= 8
    live = await _query(url, select(Broadcast.id).where(Broadcast.state == BroadcastState.LIVE))
    assert len(live) == 1
    coming = await _query(url, select(Broadcast.id).where(Broadcast.state == BroadcastState.SCHEDULED))
    assert len(coming) >= 3  # two weeks of Mondays and Wednesdays
    drops = await _query(url, select(CouponDrop.broadcast_id, CouponDrop.state))
    assert [(b, str(st)) for b, st in drops] == [(live[0][0], "open")]  # a coupon to claim on the live page
    assert len(await _query(url, select(Giveaway.id).where(Giveaway.broadcast_id == live[0][0]))) == 1
    again = run(["demo", "--no-serve"], tmp_path)
    assert again.returncode == 0 and "already there" in again.stdout
    assert (await _query(url, select(func.count()).select_from(Product)))[0][0] == products
    assert len(await _query(url, select(Broadcast.id).where(Broadcast.state == BroadcastState.LIVE))) == 1
    assert len(await _query(url, select(CouponDrop.id))) == 1  # not dropped again


def test_serve_answers_then_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "livecommerce.cli", "serve", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")})
    try:
        body = None
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    body = json.loads(resp.read())
                    break
            except OSError:
                time.sleep(0.1)
        assert body == {"status": "ok", "database": "ok", "redis": "off", "bus": "off"}
        assert (tmp_path / "livecommerce.db").exists()  # migrated on start
        assert (tmp_path / "livecommerce.secret").exists()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"serving on http://127.0.0.1:{port}" in out


def test_serve_refuses_an_unmigrated_postgres(tmp_path: Path) -> None:
    url = os.environ.get("LIVECOMMERCE_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs PostgreSQL")
    import asyncio

    import asyncpg

    name = f"lc_empty_{os.getpid()}"
    admin = url.replace("postgresql+asyncpg", "postgresql")

    async def sql(q: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(q)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        empty = url.rsplit("/", 1)[0] + "/" + name
        proc = run(["serve", "--port", str(free_port())], tmp_path, env={"LIVECOMMERCE_DATABASE_URL": empty},
                   timeout=60)
        assert proc.returncode != 0
        assert "livecommerce db upgrade" in proc.stderr
        up = run(["db", "upgrade"], tmp_path, env={"LIVECOMMERCE_DATABASE_URL": empty})
        assert up.returncode == 0, up.stderr
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_serving_raises_the_open_files_limit_to_what_the_system_allows() -> None:
    import resource

    from livecommerce.cli import raise_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # as a small default would be
        before, after = raise_open_files()
        now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert now == after and after >= before
        assert after == hard or (hard == resource.RLIM_INFINITY and after >= before)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
