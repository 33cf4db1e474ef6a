"""The live room's fan-out benchmark: livecommerce against a reference Node.js socket.io server, under
the same load generator, side by side in one run.

    python bench/room_bench.py                    # every scenario (--plan all; about a quarter of an hour)
    python bench/room_bench.py --plan fanout      # the issue's scenarios: 1,000 and 3,000 viewers × 20 msg/s
    python bench/room_bench.py --plan senders     # 3,000 viewers + 300 signed-in senders, 100 msg/s in total
    python bench/room_bench.py --plan host        # one host sending 100 msg/s to 3,000 viewers, batched
    python bench/room_bench.py --plan big         # 10,000 viewers × 20 msg/s, batched 100 ms
    python bench/room_bench.py --plan nginx --database postgresql+asyncpg://…   # 1, 2, 4 processes behind nginx
    python bench/room_bench.py --plan long        # 3,000 viewers for 10 minutes of chat: memory at the end
    python bench/room_bench.py --only "node 4.8, 300 senders;livecommerce, 300 senders"
    python bench/room_bench.py --quick            # a short smoke run (200 viewers, 5 s)
    python bench/room_bench.py --plan senders --json results.jsonl   # every run as a JSON line too

The servers are pinned to CPU 0 and the load generator to CPU 1 (taskset). The load generator is a
small Node.js script (bench/room/loadgen.js) speaking Socket.IO on raw websockets (the `ws` package):
neither a Python client nor socket.io-client (which parses every message in full) can receive 60,000
messages a second on one core, and a saturated load generator must not pass for a slow server; its own
CPU is printed beside the server's. The Node.js packages (socket.io 4.8 for the reference, ws 8) are
installed from npm into a temporary folder. All traffic stays on 127.0.0.1.

Each run reports: the machine's load average when it starts; deliveries (every viewer and sender must get
every acknowledged message; `lost` counts those that did not arrive within 10 s of the last send; `late`,
shown beside it, those of sends whose acknowledgement had not come by then: a server that fell behind) and
their latency (send → delivery); each `chat:send`'s acknowledgement latency and the refusals by error code; the
server's CPU over the measured window and per delivery; the server's memory (the sum of VmRSS over its
processes, sampled every 0.5 s: idle before any viewer connects, the peak, and per connected client when
the window opens); the load generator's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from livecommerce.loadtest import cpu_seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GUEST_SIGN_INS_AT_ONCE = 20
RSS_EVERY_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, str]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    from importlib.metadata import version

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "aiohttp": version("aiohttp"), "python-socketio": version("python-socketio"),
            "python-engineio": version("python-engineio"), "node": node, "kernel": platform.release()}


def code_state() -> str:
    """The commit the servers run, and the files changed since (each run starts its servers afresh)."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = [ln[3:] for ln in subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                                               capture_output=True, text=True).stdout.splitlines()]
    return commit + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def raise_open_files() -> int:
    """Raise the soft limit on open files to the hard one (10,000 websockets need more than the usual 1,024);
    the servers and the load generator, started from here, inherit it. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pids: list[int]) -> int:
    """The sum of VmRSS (KiB) over the processes (those gone count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


class Memory:
    """The servers' RSS, sampled every RSS_EVERY_S from the moment they start."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self.idle = 0
        self.at_start = 0
        self.at_end = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> int:
        kib = rss_kib(self.pids)
        self.peak = max(self.peak, kib)
        return kib

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(RSS_EVERY_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.sample()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(frozen=True)
class Spec:
    """One run: which server, how many viewers and senders, the total chat rate, the room's batch window."""

    name: str
    kind: str  # "node" (the reference) or "ours" (livecommerce)
    viewers: int
    rate: int  # chat messages a second, all senders together
    senders: int = 20
    batch_ms: int = 0
    processes: int = 1
    redis: bool = False
    host: bool = False  # livecommerce: the one sender is the demo's host account, not a guest
    hearts: float = 0.0  # heart events a second from every viewer (each carrying 3 taps)
    nginx: bool = False  # livecommerce: behind nginx (deploy/nginx.conf), viewers from 64 loopback addresses
    pin: bool = True  # the servers (and nginx) on CPU 0, the load generator on CPU 1; False: on either core
    seconds: float = 0.0  # the measured window; 0: --seconds

    @property
    def group(self) -> str:
        return next(g for g, specs in GROUPS.items() if self.name in {s.name for s in specs})


GROUPS: dict[str, list[Spec]] = {
    "fanout": [
        Spec("node 4.8", "node", 1000, 20),
        Spec("livecommerce", "ours", 1000, 20),
        Spec("node 4.8", "node", 3000, 20),
        Spec("livecommerce", "ours", 3000, 20),
        Spec("livecommerce, batched 100 ms", "ours", 3000, 100, batch_ms=100),
        Spec("livecommerce, 2 processes + Redis", "ours", 3000, 20, processes=2, redis=True),
    ],
    "senders": [
        Spec("node 4.8, 300 senders", "node", 3000, 100, senders=300),
        Spec("node 4.8, 300 senders, batched 100 ms", "node", 3000, 100, senders=300, batch_ms=100),
        Spec("livecommerce, 300 senders, batched 100 ms", "ours", 3000, 100, senders=300, batch_ms=100),
        Spec("livecommerce, 300 senders, batched 100 ms, 2 processes + Redis", "ours", 3000, 100, senders=300,
             batch_ms=100, processes=2, redis=True),
        Spec("livecommerce, 300 senders", "ours", 3000, 100, senders=300),
    ],
    "host": [
        Spec("node 4.8, host 100 msg/s, batched 100 ms", "node", 3000, 100, senders=1, batch_ms=100),
        Spec("livecommerce, host 100 msg/s, batched 100 ms", "ours", 3000, 100, senders=1, batch_ms=100, host=True),
    ],
    "hearts": [
        Spec("node 4.8, hearts 3/s from every viewer, batched 100 ms", "node", 3000, 20, batch_ms=100, hearts=3),
        Spec("livecommerce, batched 100 ms, no hearts", "ours", 3000, 20, batch_ms=100),
        Spec("livecommerce, hearts 3/s from every viewer, batched 100 ms", "ours", 3000, 20, batch_ms=100,
             hearts=3),
        Spec("livecommerce, hearts 3/s from every viewer, batched 100 ms, 2 processes + Redis", "ours", 3000, 20,
             batch_ms=100, processes=2, redis=True, hearts=3),
    ],
    "nginx": [
        Spec("node 4.8, 300 senders, batched 100 ms", "node", 3000, 100, senders=300, batch_ms=100),
        Spec("livecommerce, 300 senders, batched 100 ms", "ours", 3000, 100, senders=300, batch_ms=100),
        Spec("livecommerce, 300 senders, batched 100 ms, 1 process + Redis", "ours", 3000, 100, senders=300,
             batch_ms=100, redis=True),
        Spec("livecommerce, 300 senders, batched 100 ms, nginx + 1 process + Redis", "ours", 3000, 100,
             senders=300, batch_ms=100, redis=True, nginx=True),
        Spec("livecommerce, 300 senders, batched 100 ms, nginx + 2 processes + Redis", "ours", 3000, 100,
             senders=300, batch_ms=100, processes=2, redis=True, nginx=True),
        Spec("livecommerce, 300 senders, batched 100 ms, nginx + 4 processes + Redis", "ours", 3000, 100,
             senders=300, batch_ms=100, processes=4, redis=True, nginx=True),
        Spec("livecommerce, 300 senders, batched 100 ms, nginx + 2 processes + Redis, either core", "ours", 3000,
             100, senders=300, batch_ms=100, processes=2, redis=True, nginx=True, pin=False),
    ],
    "long": [
        Spec("livecommerce, 3,000 viewers, 10 minutes of chat, batched 100 ms", "ours", 3000, 20, batch_ms=100,
             seconds=600),
    ],
    "big": [
        Spec("node 4.8, 10,000 viewers, batched 100 ms", "node", 10000, 20, batch_ms=100),
        Spec("livecommerce, 10,000 viewers, batched 100 ms", "ours", 10000, 20, batch_ms=100),
    ],
}
QUICK = ["node 4.8", "livecommerce", "node 4.8, 300 senders, batched 100 ms",
         "livecommerce, 300 senders, batched 100 ms", "livecommerce, 300 senders, batched 100 ms, 2 processes + Redis",
         "livecommerce, host 100 msg/s, batched 100 ms"]


def plan(name: str, *, quick: bool, only: set[str]) -> list[Spec]:
    specs = [s for g in GROUPS.values() for s in g] if name == "all" else list(GROUPS[name])
    if quick:
        if name == "all" and not only:  # the first run of each name in QUICK
            firsts = {s.name: s for s in reversed(specs)}
            specs = [firsts[n] for n in QUICK]
        specs = [replace(s, viewers=min(s.viewers, 200)) for s in specs]
    if only:
        unknown = only - {s.name for s in specs}
        if unknown:
            raise SystemExit(f"no run named {sorted(unknown)} in plan {name!r}; "
                             f"the runs: {sorted({s.name for s in specs})}")
        specs = [s for s in specs if s.name in only]
    return specs


@dataclass
class Result:
    spec: Spec
    load_avg: float
    started: str
    code: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    rss_idle_kib: int = 0
    rss_peak_kib: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    error: str = ""
    server_log: dict[str, int] = field(default_factory=dict)  # the servers' most frequent log messages
    server_log_first: dict[str, str] = field(default_factory=dict)  # the first line of each

    @property
    def per_delivery_us(self) -> float:
        d = self.data.get("deliveries") or 0
        return self.server_cpu_s / d * 1e6 if d else float("nan")

    @property
    def server_core(self) -> float:
        return self.server_cpu_s / max(float(self.data.get("window", 1)), 1e-9)

    @property
    def per_viewer_kib(self) -> float:
        clients = (self.data.get("viewers") or 0) + (self.data.get("senders") or 0)
        return (self.rss_start_kib - self.rss_idle_kib) / clients if clients else float("nan")

    def record(self, info: dict[str, str]) -> dict[str, Any]:
        return {"name": self.spec.name, "group": self.spec.group, "started": self.started, "code": self.code,
                "load_avg": self.load_avg,
                "spec": asdict(self.spec), "loadgen": self.data, "server_cpu_s": round(self.server_cpu_s, 3),
                "server_core": round(self.server_core, 4), "cpu_per_delivery_us": round(self.per_delivery_us, 3),
                "rss_idle_mib": round(self.rss_idle_kib / 1024, 1), "rss_peak_mib": round(self.rss_peak_kib / 1024, 1),
                "rss_at_start_mib": round(self.rss_start_kib / 1024, 1),
                "rss_at_end_mib": round(self.rss_end_kib / 1024, 1),
                "per_viewer_kib": round(self.per_viewer_kib, 2), "error": self.error or None,
                "server_log": self.server_log, "server_log_first": self.server_log_first, "machine": info}


async def run_loadgen(workdir: Path, cfg: dict[str, Any], server_pids: list[int], memory: Memory,
                      on_mark: Callable[[str], Awaitable[None]] | None = None) -> tuple[dict[str, Any], float]:
    proc = await asyncio.create_subprocess_exec(
        *pinned(1), "node", str(workdir / "loadgen.js"), json.dumps(cfg), cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    tail = bytearray()

    async def relay(stream: asyncio.StreamReader) -> None:  # progress to the terminal; the end kept for errors
        while chunk := await stream.read(4096):
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            tail.extend(chunk)
            del tail[:-2000]

    relaying = asyncio.create_task(relay(proc.stderr))
    start_cpu = end_cpu = 0.0
    result: dict[str, Any] = {}
    try:
        async for raw in proc.stdout:
            line = json.loads(raw)
            if line.get("mark") == "start":
                start_cpu = sum(cpu_seconds(p) or 0.0 for p in server_pids)
                memory.at_start = memory.sample()
            elif line.get("mark") == "end":
                end_cpu = sum(cpu_seconds(p) or 0.0 for p in server_pids)
                memory.at_end = memory.sample()
            if line.get("mark") in ("start", "end") and on_mark is not None:
                await on_mark(line["mark"])
            elif line.get("result"):
                result = line
        await asyncio.wait_for(proc.wait(), 60)
        await asyncio.wait_for(relaying, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        relaying.cancel()
    if proc.returncode != 0 or not result:
        last = tail.decode(errors="replace").replace("\r", "\n").strip().splitlines()[-3:]
        raise RuntimeError(f"the load generator failed ({proc.returncode}): {' | '.join(last)}")
    return result, end_cpu - start_cpu


async def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


async def signed_in(http: aiohttp.ClientSession, base: str, path: str, body: dict[str, str]) -> str:
    """Sign in through `path` (a guest's nickname, or a username and password) and return the session cookie."""
    async with http.get(f"{base}/api/v1/auth/session") as resp:
        token = (await resp.json())["csrf_token"]
        cookie = resp.cookies["lc_session"].value
    async with http.post(f"{base}{path}", json=body,
                         headers={"X-CSRF-Token": token, "Cookie": f"lc_session={cookie}"}) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"could not sign in through {path}: {resp.status} {await resp.text()}")
        return f"lc_session={resp.cookies['lc_session'].value}"


async def guest_cookies(base: str, n: int) -> list[str]:
    """`n` signed-in guests, GUEST_SIGN_INS_AT_ONCE at a time."""
    gate = asyncio.Semaphore(GUEST_SIGN_INS_AT_ONCE)
    run = os.urandom(2).hex()  # a database used before (PostgreSQL) still knows earlier runs' guests

    async def one(i: int) -> str:
        async with gate:
            return await signed_in(http, base, "/api/v1/auth/guest", {"nickname": f"sender{i}-{run}"})

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def host_cookie(base: str, password: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        return await signed_in(http, base, "/api/v1/auth/login", {"username": "host", "password": password})


def log_summary(paths: list[Path]) -> tuple[dict[str, int], dict[str, str]]:
    """The servers' log lines (stderr) counted by message (the five most frequent), and the first line of each
    of these (an error's traceback, cut to 1,500 characters)."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    msg = f"{rec.get('level', '')} {rec.get('message', rec.get('msg', ''))}".strip()
                except (ValueError, AttributeError):
                    msg = line.strip()[:160]
                counts[msg] += 1
                first.setdefault(msg, line[:1500])
    top = dict(counts.most_common(5))
    return top, {m: first[m] for m in top}


class Ours:
    """livecommerce processes on one demo database (and Redis for several)."""

    def __init__(self, workdir: Path, processes: int, batch_ms: int, redis_url: str, db_url: str,
                 nginx: bool = False, pin: bool = True) -> None:
        self.workdir = workdir
        self.processes = processes
        self.nginx = nginx
        self.pin = pin
        self.nginx_proc: subprocess.Popen[bytes] | None = None
        self.nginx_port = 0
        self.batch_ms = batch_ms
        self.redis_url = redis_url
        self.db_url = db_url or f"sqlite+aiosqlite:///{workdir}/bench.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.ports: list[int] = []
        self.broadcast = 0
        self.host_password = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
        env.update({
            "LIVECOMMERCE_DATABASE_URL": self.db_url, "LIVECOMMERCE_REDIS_URL": self.redis_url,
            "LIVECOMMERCE_REDIS_PREFIX": f"bench{os.getpid()}:",
            "LIVECOMMERCE_SERVER_SECRET_KEY": "bench-secret-" + "x" * 32,
            "LIVECOMMERCE_ROOM_CHAT_RATE_PER_SECOND": "1000", "LIVECOMMERCE_ROOM_CHAT_BURST": "1000",
            "LIVECOMMERCE_ROOM_BATCH_MS": str(self.batch_ms), "LIVECOMMERCE_LOGGING_LEVEL": "WARNING",
            "LIVECOMMERCE_SCHEDULE_RUN_SCHEDULER": "false",
            # every sender signs in as a guest from 127.0.0.1
            "LIVECOMMERCE_SECURITY_GUEST_JOINS_PER_MINUTE": "100000",
            "LIVECOMMERCE_SECURITY_CONNECTIONS_PER_ADDRESS": "0",
            "LIVECOMMERCE_SERVER_TRUST_PROXY": "true" if self.nginx else "false",
        })
        return env

    async def start(self) -> list[int]:
        exe = [sys.executable, "-m", "livecommerce.cli"]
        if not self.db_url.startswith("sqlite"):
            subprocess.run([*exe, "db", "upgrade"], cwd=self.workdir, env=self.env(), check=True,
                           capture_output=True)
        out = subprocess.run([*exe, "demo", "--no-serve"], cwd=self.workdir, env=self.env(), check=True,
                             capture_output=True, text=True).stdout
        self.broadcast = int(re.search(r"/live/(\d+)", out).group(1))  # type: ignore[union-attr]
        self.host_password = re.search(r"^\s*host\s+/\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
        for i in range(self.processes):
            port = free_port()
            log = self.workdir / f"server-{i}.log"
            with log.open("wb") as err:
                pin = pinned(0) if self.pin else []
                self.procs.append(subprocess.Popen([*pin, *exe, "serve", "--port", str(port)],
                                                   cwd=self.workdir, env=self.env(), stdout=subprocess.DEVNULL,
                                                   stderr=err))
            self.logs.append(log)
            self.ports.append(port)
        pids = [p.pid for p in self.procs]
        if self.nginx:
            pids += self.start_nginx()
        return pids

    def start_nginx(self) -> list[int]:
        """nginx with deploy/nginx.conf (this run's ports put in, as scripts/cluster does): its master and
        workers' pids, so that their CPU and memory count with the servers'."""
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx_port = free_port()
        work = Path(tempfile.mkdtemp(prefix="lc-bench-nginx-"))  # nginx's workers (not root) reach it
        for sub in ("logs", "temp"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)
        os.chmod(work / "temp", 0o1777)
        servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in self.ports)
        out, skip = [], False
        for line in (ROOT / "deploy" / "nginx.conf").read_text().splitlines(keepends=True):
            if "# servers:end" in line:
                skip = False
            if skip:
                continue
            if "# listen:line" in line:
                out.append(f"        listen 127.0.0.1:{self.nginx_port};\n")
                continue
            out.append(line)
            if "# servers:begin" in line:
                out.append(servers)
                skip = True
        conf = work / "nginx.conf"
        conf.write_text("".join(out))
        self.nginx_proc = subprocess.Popen(
            [*(pinned(0) if self.pin else []), exe, "-p", f"{work}/", "-c", str(conf),
             "-e", str(work / "logs/error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.logs.append(work / "logs" / "error.log")
        deadline = time.monotonic() + 10
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                kids = Path(f"/proc/{self.nginx_proc.pid}/task/{self.nginx_proc.pid}/children").read_text().split()
                workers = [int(k) for k in kids]
        return [self.nginx_proc.pid, *workers]

    async def ready(self) -> None:
        for port in self.ports:
            await wait_http(f"http://127.0.0.1:{port}/healthz")
        if self.nginx:
            await wait_http(f"http://127.0.0.1:{self.nginx_port}/healthz")

    def urls(self) -> list[str]:
        if self.nginx:
            return [f"http://127.0.0.1:{self.nginx_port}"]
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        if self.nginx_proc is not None:
            self.nginx_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nginx_proc.wait(10)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextlib.contextmanager
def node_server(workdir: Path, port: int, batch_ms: int) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = workdir / f"node-{port}.log"
    with log.open("wb") as err:
        server = subprocess.Popen([*pinned(0), "node", str(workdir / "reference-server.js"), str(port), str(batch_ms)],
                                  cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield server, log
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def scenario(workdir: Path, spec: Spec, *, seconds: float, redis_url: str, db_url: str) -> Result:
    print(f"\n== {spec.name}: {spec.viewers:,} viewers + {spec.senders} senders, {spec.rate} msg/s in total, "
          f"batch {spec.batch_ms} ms, for {seconds:.0f} s", flush=True)
    result = Result(spec, round(os.getloadavg()[0], 2), datetime.now(UTC).isoformat(timespec="seconds"),
                    code=code_state())
    cfg: dict[str, Any] = {"viewers": spec.viewers, "senders": spec.senders, "rate": spec.rate, "seconds": seconds,
                           "bytes": 230, "hearts": spec.hearts}
    memory: Memory | None = None
    logs: list[Path] = []
    try:
        if spec.kind == "node":
            port = free_port()
            with node_server(workdir, port, spec.batch_ms) as (server, log):
                logs.append(log)
                memory = Memory([server.pid])
                memory.start()
                await wait_http(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling")
                await asyncio.sleep(0.5)
                memory.idle = memory.sample()
                cfg.update({"urls": [f"http://127.0.0.1:{port}"], "broadcast": 1})
                result.data, result.server_cpu_s = await run_loadgen(workdir, cfg, [server.pid], memory)
        else:
            run_dir = Path(tempfile.mkdtemp(prefix="lc-bench-", dir=workdir))
            ours = Ours(run_dir, spec.processes, spec.batch_ms, redis_url if spec.redis else "", db_url,
                        nginx=spec.nginx, pin=spec.pin)
            try:
                pids = await ours.start()
                logs = ours.logs
                memory = Memory(pids)
                memory.start()
                await ours.ready()
                base = ours.urls()[0]
                if spec.host:
                    cookies = [await host_cookie(base, ours.host_password)]
                else:
                    cookies = await guest_cookies(base, spec.senders)
                await asyncio.sleep(0.5)
                memory.idle = memory.sample()
                cfg.update({"urls": ours.urls(), "broadcast": ours.broadcast, "cookies": cookies})
                if spec.nginx:  # 64 addresses, so that nginx's address hash spreads the viewers over the processes
                    cfg["local_addresses"] = [f"127.0.2.{i}" for i in range(1, 65)]
                counted: dict[str, int] = {}

                async def count_redis(mark: str) -> None:  # Redis commands over the measured window
                    if spec.redis:
                        counted[mark] = await redis_commands(redis_url)

                result.data, result.server_cpu_s = await run_loadgen(workdir, cfg, pids, memory, count_redis)
                if "start" in counted and "end" in counted:
                    result.data["redis_commands"] = counted["end"] - counted["start"]
            finally:
                ours.stop()
    except Exception as exc:  # one run failing must not take the others with it: it is reported as failed
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"\n!! {spec.name} failed: {result.error}", file=sys.stderr, flush=True)
    finally:
        if memory is not None:
            await memory.stop()
            result.rss_idle_kib, result.rss_peak_kib, result.rss_start_kib = memory.idle, memory.peak, memory.at_start
            result.rss_end_kib = memory.at_end
        result.server_log, result.server_log_first = log_summary(logs)
    return result


async def redis_commands(url: str) -> int:
    """Commands the Redis server has processed so far (every client's)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return int((await client.info("stats"))["total_commands_processed"])
    finally:
        await client.aclose()


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:g}"


def table(results: list[Result]) -> str:
    head = ("| run | load avg | viewers × senders × msg/s | deliveries/s | lost | delivery p50 / p99 ms "
            "| ack p50 / p99 ms | server CPU (core) | CPU per delivery | RSS idle / peak MiB | per viewer KiB "
            "| loadgen CPU (core) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, d = r.spec, r.data
        size = f"{s.viewers:,} × {s.senders} × {s.rate}"
        if not d:
            lines.append(f"| {s.name} | {r.load_avg:.2f} | {size} | failed: {r.error} |||||||||")
            continue
        lost = f"{d['lost']:,}" + (f" (+{d['late']:,} late)" if d.get("late") else "")
        lines.append(
            f"| {s.name} | {r.load_avg:.2f} | {size} | {d['deliveries_per_s']:,} | {lost} | "
            f"{_ms(d['p50_ms'])} / {_ms(d['p99_ms'])} | {_ms(d.get('ack_p50_ms'))} / {_ms(d.get('ack_p99_ms'))} | "
            f"{r.server_core:.0%} | {r.per_delivery_us:.1f} µs | "
            f"{r.rss_idle_kib / 1024:.0f} / {r.rss_peak_kib / 1024:.0f} | {r.per_viewer_kib:.1f} | "
            f"{d['loadgen_cpu_s'] / max(d['window'], 1e-9):.0%} |")
    return "\n".join(lines)


def notes(results: list[Result]) -> list[str]:
    """What the table does not show: refusals, unanswered sends, sockets the server closed, duplicates, errors."""
    out = []
    for r in results:
        d = r.data
        bits = []
        if d.get("refused"):
            bits.append(f"{d['refused']} of {d['sent']} sends refused {d.get('refused_codes')}")
        if d.get("unanswered"):
            bits.append(f"{d['unanswered']} sends unanswered when the window closed")
        if d.get("late"):
            bits.append(f"{d['late']:,} deliveries of sends not (yet) acknowledged missing when the window closed")
        if d.get("closed_by_server"):
            bits.append(f"{d['closed_by_server']} sockets closed by the server")
        if d.get("duplicates"):
            bits.append(f"{d['duplicates']} duplicate deliveries")
        if d.get("hearts_sent"):
            window = max(float(d.get("seconds") or 1), 1e-9)
            bits.append(f"{d['hearts_sent']:,} heart events ({d['hearts_sent'] / window:,.0f}/s, "
                        f"{3 * d['hearts_sent']:,} taps)")
        if "redis_commands" in d:
            bits.append(f"Redis commands over the window (every client's): {d['redis_commands']:,} "
                        f"({d['redis_commands'] / max(float(d.get('window') or 1), 1e-9):,.0f}/s)")
        if r.rss_start_kib and r.rss_end_kib:
            bits.append(f"RSS when the window opened {r.rss_start_kib / 1024:.0f} MiB, when it closed "
                        f"{r.rss_end_kib / 1024:.0f} MiB ({(r.rss_end_kib - r.rss_start_kib) / 1024:+.0f})")
        if d:
            bits.append(f"ack max {_ms(d.get('ack_max_ms'))} ms, delivery max {_ms(d.get('max_ms'))} ms, "
                        f"connected in {d.get('connect_s')} s (200 viewers: {d.get('connect_200_ms')} ms)")
        if r.error:
            bits.append(f"failed: {r.error}")
        if r.server_log:
            bits.append(f"server log: {r.server_log}")
            errors = [m for m in r.server_log if m.lower().startswith(("error", "critical"))]
            if errors:
                bits.append(f"the first {errors[0]!r}: {r.server_log_first[errors[0]]}")
        bits.append(f"code {r.code}")
        out.append(f"- {r.spec.name} ({r.spec.viewers:,} × {r.spec.senders} × {r.spec.rate}): " + "; ".join(bits))
    return out


def json_lines(path: str) -> Callable[[dict[str, Any]], None]:
    if not path:
        return lambda rec: None
    def write(rec: dict[str, Any]) -> None:
        with open(path, "a", encoding="utf-8") as out:  # a line as each run ends: an interrupted run keeps them
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")

    return write


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", choices=[*GROUPS, "all"], default="all",
                    help="which scenarios: fanout (the issue's), senders (300 signed-in senders), host (one sender "
                         "at 100 msg/s), hearts (every viewer tapping), big (10,000 viewers), nginx (1, 2 and 4 "
                         "processes + Redis behind nginx), long (10 minutes) or all (default)")
    ap.add_argument("--quick", action="store_true",
                    help="a short smoke run: at most 200 viewers, 5 s (of the plan given, else a few of each kind)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each measured window")
    ap.add_argument("--redis", default=os.environ.get("LIVECOMMERCE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--database", default=os.environ.get("LIVECOMMERCE_BENCH_DATABASE_URL", ""),
                    help="database for the servers (default: a SQLite file per run)")
    ap.add_argument("--only", default="", help="run names to keep, separated by semicolons")
    ap.add_argument("--json", default="", metavar="PATH", help="append every run's figures to PATH as JSON lines")
    args = ap.parse_args()
    if not shutil.which("node") or not shutil.which("npm"):
        print("node and npm are needed for the reference server and the load generator", file=sys.stderr)
        return 2
    only = {x.strip() for x in args.only.split(";") if x.strip()}
    specs = plan(args.plan, quick=args.quick, only=only)
    open_files = raise_open_files()
    write = json_lines(args.json)
    work = Path(tempfile.mkdtemp(prefix="lc-room-bench-"))
    results: list[Result] = []
    try:
        shutil.copy(HERE / "room" / "reference-server.js", work)
        shutil.copy(HERE / "room" / "loadgen.js", work)
        subprocess.run(["npm", "init", "-y"], cwd=work, check=True, capture_output=True)
        subprocess.run(["npm", "install", "--silent", "socket.io@4.8", "ws@8"], cwd=work,
                       check=True, capture_output=True, timeout=300)
        info = machine()
        pkg = json.loads((work / "node_modules/socket.io/package.json").read_text())
        info["socket.io (reference)"] = pkg["version"]
        print("machine and versions:", json.dumps(info, ensure_ascii=False, indent=1))
        print("settings: servers pinned to CPU 0, load generator to CPU 1; a 230-byte Korean chat message; "
              "per-message-deflate off on both; livecommerce logging WARNING, scheduler off; "
              f"open files limit {open_files}; plan {args.plan}{' (quick)' if args.quick else ''}", flush=True)
        s = 5.0 if args.quick else args.seconds
        for spec in specs:
            if spec.kind == "ours" and spec.processes > 1 and not args.database.startswith("postgresql"):
                raise SystemExit(f"{spec.name!r}: several processes share PostgreSQL, not a SQLite file: "
                                 "give --database postgresql+asyncpg://…")
            r = await scenario(work, spec, seconds=spec.seconds or s, redis_url=args.redis, db_url=args.database)
            results.append(r)
            write(r.record(info))
            print(json.dumps(r.data or {"error": r.error}), flush=True)
        print()
        print(table(results))
        print()
        print("\n".join(notes(results)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
