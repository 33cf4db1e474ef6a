"""What the HTTP benchmarks share: the machine and its software, a free port, a throwaway database (a SQLite
file, or a PostgreSQL database created next to a given one and dropped afterwards), `livecommerce serve` as a
subprocess, guest viewers signed in, and a load generator that writes its HTTP/1.1 requests by hand on
keep-alive connections opened beforehand (it shares the machine's cores with the server and the database, so
it spends as little CPU per request as it can). Everything talks to 127.0.0.1; every loop is bounded in count
and in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from livecommerce.loadtest import cpu_seconds  # noqa: E402

HOST = "127.0.0.1"
SECRET = secrets.token_urlsafe(40)  # one for every server process: any of them reads any cookie


# -- the machine and its software -------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import aiosqlite
    import asyncpg
    import sqlalchemy

    return {"Python": platform.python_version(), "aiohttp": aiohttp.__version__, "SQLAlchemy": sqlalchemy.__version__,
            "asyncpg": asyncpg.__version__, "aiosqlite": aiosqlite.__version__, "SQLite": sqlite3.sqlite_version}


def print_machine(extra: dict[str, str] | None = None) -> None:
    """The `machine:` and `versions:` lines every report starts with."""
    v = {**versions(), **(extra or {})}
    print(f"machine:  {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- the throwaway database -------------------------------------------------------------------------

def with_db(url: str, name: str) -> str:
    """The same server and credentials as `url`, another database."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def pg_admin(url: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@dataclass(frozen=True)
class Throwaway:
    url: str  # the database the servers and the checks use
    workdir: Path  # the servers' configs, logs and (SQLite) database file
    server_version: str  # "SQLite 3.40.1" or PostgreSQL's `server_version`


@contextlib.asynccontextmanager
async def throwaway_database(backend: str, pg_url: str) -> AsyncIterator[Throwaway]:
    """A work folder, and a SQLite file in it or a new PostgreSQL database next to `pg_url`; both removed on
    the way out (the database dropped even with connections still open)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"lc-bench-{backend}-"))
    dbname = ""
    try:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            server_version = "SQLite " + sqlite3.sqlite_version
        else:
            dbname = f"lc_bench_{secrets.token_hex(4)}"
            await pg_admin(pg_url, f'CREATE DATABASE "{dbname}"')
            url = with_db(pg_url, dbname)
            server_version = str(await pg_admin(url, "SHOW server_version"))
        yield Throwaway(url, workdir, server_version)
    finally:
        if dbname:
            with contextlib.suppress(Exception):
                await pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


# -- the server -------------------------------------------------------------------------------------

class Server:
    """`livecommerce serve` on 127.0.0.1:port, with its own config file and log in `workdir`. With a Redis
    URL, the processes of a run share it (socket.io's bus, caches) under the run's own key prefix."""

    def __init__(self, workdir: Path, url: str, port: int, log_level: str, redis_url: str = "",
                 redis_prefix: str = "") -> None:
        self.workdir = workdir
        self.port = port
        self.config = workdir / f"bench-{port}.toml"
        redis = f'[redis]\nurl = "{redis_url}"\nprefix = "{redis_prefix or "lc:"}"\n' if redis_url else ""
        self.config.write_text(
            "[server]\n"
            f'secret_key = "{SECRET}"\n'
            f'secret_key_file = "{workdir / "secret"}"\n'
            "[security]\n"
            "guest_joins_per_minute = 100000\n"  # every simulated viewer signs in from this one address
            "connections_per_address = 0\n"  # … and holds its socket from it
            "[database]\n"
            f'url = "{url}"\n'
            f"{redis}"
            "[logging]\n"
            f'level = "{log_level}"\n', encoding="utf-8")
        self.log = workdir / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "livecommerce.cli", *args, "--config", str(self.config)]

    def upgrade(self) -> None:
        subprocess.run(self.command("db", "upgrade"), check=True, cwd=self.workdir, capture_output=True, timeout=120,
                       env=self._env())

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.command("serve", "--host", HOST, "--port", str(self.port)),
                                         cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=self._env())
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server stopped: see {self.log}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://{HOST}:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise SystemExit(f"the server did not answer within 60 s: see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def keep_log(self, folder: Path) -> Path:
        """A copy of the log in `folder` (which outlives the run's work folder)."""
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / self.log.name
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log, dest)
        return dest

    def errors(self, limit: int = 20) -> list[str]:
        """The log's lines at ERROR or above, answers with a 5xx status, and tracebacks, at most `limit`."""
        out: list[str] = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if isinstance(entry, dict):
                    bad = (str(entry.get("level", "")).lower() in ("error", "critical")
                           or str(entry.get("status", "")).startswith("5"))
                else:  # a traceback, or what the process printed on its way down
                    bad = line.startswith((" ", "Traceback")) or "Error" in line or "Exception" in line
                if bad:
                    out.append(line)
                    if len(out) >= limit:
                        break
        return out


# -- Redis, shared by several server processes -------------------------------------------------------

def redis_prefix() -> str:
    """A key prefix of the run's own, so that runs never see each other's keys and channels."""
    return f"lc-bench-{secrets.token_hex(4)}:"


async def redis_ready(url: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        await r.ping()
    except Exception as exc:
        raise SystemExit(f"Redis at {url} does not answer ({exc}): start it, or pass --redis-url ''") from None
    finally:
        await r.aclose()


async def redis_forget(url: str, prefix: str) -> int:
    """Delete the run's keys (at most 100,000, by SCAN, for at most 20 seconds); how many went."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    gone = 0
    until = time.monotonic() + 20
    try:
        batch: list[Any] = []
        async for key in r.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                gone += await r.delete(*batch)
                batch = []
            if gone + len(batch) >= 100_000 or time.monotonic() > until:
                break
        if batch:
            gone += await r.delete(*batch)
    except Exception:  # tidying up only: a run whose keys stay is still a run
        pass
    finally:
        await r.aclose()
    return gone


def server_cpu(servers: Sequence[Server]) -> list[float | None]:
    """Each server process's CPU seconds so far (user + system), None where it cannot be read."""
    return [cpu_seconds(s.proc.pid) if s.proc else None for s in servers]


def cpu_spent(before: list[float | None], after: list[float | None]) -> float | None:
    """CPU seconds the servers spent between two readings of `server_cpu`, None if one could not be read."""
    spent = 0.0
    for a, b in zip(after, before, strict=True):
        if a is None or b is None:
            return None
        spent += a - b
    return spent


# -- the viewers ------------------------------------------------------------------------------------

@dataclass
class Buyer:
    cookie: str
    csrf: str
    user_id: int = 0


async def sign_in_guests(base: str | Sequence[str], n: int, concurrency: int,
                         progress: Callable[[int, int], None] | None = None, retries: int = 0,
                         failures: list[str] | None = None, names: str = "손님") -> list[Buyer]:
    """`n` guest viewers signed in (named `names` + i: a name is one viewer's), at most `concurrency` at a
    time (viewer i on server i mod servers);
    `progress(done, n)` is called after each one. A sign-in answered with a 5xx is tried again up to
    `retries` times (each failure noted in `failures`); any other failure stops the run."""
    bases = [base] if isinstance(base, str) else list(base)
    sem = asyncio.Semaphore(concurrency)
    jar = aiohttp.DummyCookieJar()  # cookies are carried by hand: one session, many people
    done = 0

    async def one(i: int, http: aiohttp.ClientSession) -> Buyer:
        nonlocal done
        at = bases[i % len(bases)]
        async with sem:
            for attempt in range(retries + 1):
                async with http.get(f"{at}/api/v1/auth/session") as resp:
                    first = resp.cookies["lc_session"].value
                    csrf = (await resp.json())["csrf_token"]
                async with http.post(f"{at}/api/v1/auth/guest", json={"nickname": f"{names}{i}"},
                                     headers={"Cookie": f"lc_session={first}", "X-CSRF-Token": csrf}) as resp:
                    if resp.status == 201:
                        data = await resp.json()
                        buyer = Buyer(resp.cookies["lc_session"].value, data["csrf_token"], int(data["user"]["id"]))
                        break
                    text = await resp.text()
                    if resp.status < 500 or attempt == retries:
                        raise SystemExit(f"guest sign-in failed: {resp.status} {text}")
                    if failures is not None:
                        failures.append(f"{at} viewer {i}: {resp.status} {text}")
                await asyncio.sleep(0.1 * (attempt + 1))
        done += 1
        if progress is not None:
            progress(done, n)
        return buyer

    timeout = aiohttp.ClientTimeout(total=120)  # per request: a sign-in that hangs stops the run
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
        return list(await asyncio.gather(*(one(i, http) for i in range(n))))


def progress_printer(what: str, every: int = 1000) -> Callable[[int, int], None]:
    """A `progress` for long preparations: a line on stderr every `every` done, and at the end."""
    t0 = time.monotonic()

    def show(done: int, n: int) -> None:
        if done % every == 0 or done == n:
            print(f"  {what}: {done}/{n} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)

    return show


# -- the load generator -----------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection, written by hand: the load generator shares the machine's
    cores with the server and the database, so it spends as little CPU per attempt as it can."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Outcome:
    statuses: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    latencies: list[float] = field(default_factory=list)
    first_sent: float = 0.0
    last_answer: float = 0.0
    last_accepted: float = 0.0  # when the last 201 came back
    sent_by: float = 0.0  # when the last attempt was sent, after the first


def error_code(status: int, body: bytes) -> str:
    """`409 sold_out` for an answer whose body is `{"error": {"code": "sold_out"}}`, else the status alone."""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return f"{status} {json.loads(body)['error']['code']}"
    return str(status)


async def fire(bases: Sequence[str], attempts: int, rate: float, concurrency: int,
               request: Callable[[int, str], bytes], *, server_of: Callable[[int], int] | None = None,
               answered: Callable[[int, int, bytes, float], None] | None = None, coded: Sequence[int] = (409,),
               answer_timeout: float = 60.0, deadline: float | None = None) -> Outcome:
    """Attempt k is due at k/rate seconds (all within attempts/rate), to server `server_of(k)` (default
    k mod servers: a round-robin balancer), as the bytes `request(k, host_header)`; at most `concurrency`
    are in flight, each on its own keep-alive connection to each server, opened before the first is sent.
    An attempt not answered within `answer_timeout` seconds, or whose connection fails, is lost; so are the
    attempts not yet sent when `deadline` seconds (default attempts/rate + 120) have passed. An answer
    whose status is in `coded` is counted with its error code; `answered(k, status, body, seconds)` sees
    each, with its response time."""
    out = Outcome()
    targets = [urlsplit(base) for base in bases]
    pick = server_of or (lambda k: k % len(targets))
    limit = deadline if deadline is not None else attempts / rate + 120
    sent: list[float] = []
    next_k = 0

    async def worker(conns: list[Conn], t0: float) -> None:
        nonlocal next_k
        while next_k < attempts:
            if time.perf_counter() - t0 > limit:
                return
            k = next_k
            next_k += 1
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            server = pick(k)
            raw = request(k, targets[server].netloc)
            start = time.perf_counter()
            sent.append(start)
            try:
                status, data = await asyncio.wait_for(conns[server].request(raw), answer_timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                out.lost += 1
                continue
            end = time.perf_counter()
            key = error_code(status, data) if status in coded else str(status)
            out.statuses[key] = out.statuses.get(key, 0) + 1
            if status == 201:
                out.last_accepted = max(out.last_accepted, end)
            out.latencies.append(end - start)
            out.last_answer = max(out.last_answer, end)
            if answered is not None:
                answered(k, status, data, end - start)

    pools = [[Conn(t.hostname or HOST, t.port or 80) for t in targets] for _ in range(concurrency)]
    for conns in pools:  # the viewers are already on the page: their connections are open
        for c in conns:
            await c.open()
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(conns, t0) for conns in pools))
    finally:
        for conns in pools:
            for c in conns:
                c.close()
    out.lost += attempts - len(sent)  # not sent before the deadline
    out.first_sent = min(sent) if sent else 0.0
    out.sent_by = (max(sent) - out.first_sent) if sent else 0.0
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]
