"""The live room's fan-out benchmark: livecommerce against a reference Node.js socket.io server, under
the same load generator, side by side in one run.

    python bench/room_bench.py            # the issue's scenarios (takes a few minutes)
    python bench/room_bench.py --quick    # a short smoke run

The servers are pinned to CPU 0 and the load generator to CPU 1 (taskset). The load generator is a
small Node.js script (bench/room/loadgen.js) speaking Socket.IO on raw websockets (the `ws` package):
neither a Python client nor socket.io-client (which parses every message in full) can receive 60,000
messages a second on one core, and a saturated load generator must not pass for a slow server; its own
CPU is printed beside the server's. The Node.js packages (socket.io 4.8 for the reference, ws 8) are
installed from npm into a temporary folder. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from livecommerce.loadtest import cpu_seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


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


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


@dataclass
class Result:
    name: str
    viewers: int
    rate: int
    data: dict[str, Any]
    server_cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_delivery_us(self) -> float:
        d = self.data.get("deliveries") or 0
        return self.server_cpu_s / d * 1e6 if d else float("nan")

    @property
    def server_core(self) -> float:
        return self.server_cpu_s / max(self.data.get("window", 1), 1e-9)


async def run_loadgen(workdir: Path, cfg: dict[str, Any], server_pids: list[int]) -> tuple[dict[str, Any], float]:
    proc = await asyncio.create_subprocess_exec(
        *pinned(1), "node", str(workdir / "loadgen.js"), json.dumps(cfg), cwd=workdir,
        stdout=asyncio.subprocess.PIPE, stderr=None)
    assert proc.stdout is not None
    start_cpu = end_cpu = 0.0
    result: dict[str, Any] = {}
    async for raw in proc.stdout:
        line = json.loads(raw)
        if line.get("mark") == "start":
            start_cpu = sum(cpu_seconds(p) or 0.0 for p in server_pids)
        elif line.get("mark") == "end":
            end_cpu = sum(cpu_seconds(p) or 0.0 for p in server_pids)
        elif line.get("result"):
            result = line
    await asyncio.wait_for(proc.wait(), 60)
    if proc.returncode != 0 or not result:
        raise RuntimeError(f"the load generator failed ({proc.returncode})")
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


async def guest_cookies(base: str, n: int) -> list[str]:
    out = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for i in range(n):
            http.cookie_jar.clear()
            async with http.get(f"{base}/api/v1/auth/session") as resp:
                token = (await resp.json())["csrf_token"]
            async with http.post(f"{base}/api/v1/auth/guest", json={"nickname": f"sender{i}"},
                                 headers={"X-CSRF-Token": token}) as resp:
                assert resp.status == 201, await resp.text()
            cookie = next(c for c in http.cookie_jar if c.key == "lc_session")
            out.append(f"lc_session={cookie.value}")
    return out


class Ours:
    """livecommerce processes on one demo database (and Redis for several)."""

    def __init__(self, workdir: Path, processes: int, batch_ms: int, redis_url: str, db_url: str) -> None:
        self.workdir = workdir
        self.processes = processes
        self.batch_ms = batch_ms
        self.redis_url = redis_url
        self.db_url = db_url or f"sqlite+aiosqlite:///{workdir}/bench.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.broadcast = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
        env.update({
            "LIVECOMMERCE_DATABASE_URL": self.db_url, "LIVECOMMERCE_REDIS_URL": self.redis_url,
            "LIVECOMMERCE_REDIS_PREFIX": f"bench{os.getpid()}:",
            "LIVECOMMERCE_SERVER_SECRET_KEY": "bench-secret-" + "x" * 32,
            "LIVECOMMERCE_ROOM_CHAT_RATE_PER_SECOND": "1000", "LIVECOMMERCE_ROOM_CHAT_BURST": "1000",
            "LIVECOMMERCE_ROOM_BATCH_MS": str(self.batch_ms), "LIVECOMMERCE_LOGGING_LEVEL": "WARNING",
            "LIVECOMMERCE_SCHEDULE_RUN_SCHEDULER": "false",
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
        for _ in range(self.processes):
            port = free_port()
            self.procs.append(subprocess.Popen([*pinned(0), *exe, "serve", "--port", str(port)], cwd=self.workdir,
                                               env=self.env(), stdout=subprocess.DEVNULL))
            self.ports.append(port)
        for port in self.ports:
            await wait_http(f"http://127.0.0.1:{port}/healthz")
        return [p.pid for p in self.procs]

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def scenario(workdir: Path, name: str, *, kind: str, viewers: int, rate: int, seconds: float,
                   processes: int = 1, batch_ms: int = 100, redis_url: str = "", db_url: str = "") -> Result:
    print(f"\n== {name}: {viewers} viewers × {rate} msg/s for {seconds:.0f} s", flush=True)
    senders = min(20, max(1, rate))
    if kind == "node":
        port = free_port()
        server = subprocess.Popen([*pinned(0), "node", str(workdir / "reference-server.js"), str(port)],
                                  cwd=workdir, stdout=subprocess.DEVNULL)
        try:
            await asyncio.sleep(1.0)
            cfg = {"urls": [f"http://127.0.0.1:{port}"], "viewers": viewers, "senders": senders, "rate": rate,
                   "seconds": seconds, "broadcast": 1, "bytes": 230}
            data, cpu = await run_loadgen(workdir, cfg, [server.pid])
        finally:
            server.terminate()
            server.wait(10)
        return Result(name, viewers, rate, data, cpu)
    run_dir = Path(tempfile.mkdtemp(prefix="lc-bench-", dir=workdir))
    ours = Ours(run_dir, processes, batch_ms, redis_url, db_url)
    try:
        pids = await ours.start()
        cookies = await guest_cookies(ours.urls()[0], senders)
        cfg = {"urls": ours.urls(), "viewers": viewers, "senders": senders, "rate": rate, "seconds": seconds,
               "broadcast": ours.broadcast, "cookies": cookies, "bytes": 230}
        data, cpu = await run_loadgen(workdir, cfg, pids)
    finally:
        ours.stop()
    return Result(name, viewers, rate, data, cpu, {"processes": processes, "batch_ms": batch_ms})


def table(results: list[Result]) -> str:
    head = ("| run | viewers × msg/s | deliveries/s | lost | p50 ms | p99 ms | server CPU (core) "
            "| server CPU per delivery | load generator CPU (core) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        d = r.data
        lines.append(f"| {r.name} | {r.viewers:,} × {r.rate} | {d['deliveries_per_s']:,} | {d['lost']:,} | "
                     f"{d['p50_ms']} | {d['p99_ms']} | {r.server_core:.0%} | {r.per_delivery_us:.1f} µs | "
                     f"{d['loadgen_cpu_s'] / max(d['window'], 1e-9):.0%} |")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (200 viewers, 5 s)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each measured window")
    ap.add_argument("--redis", default=os.environ.get("LIVECOMMERCE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--database", default=os.environ.get("LIVECOMMERCE_BENCH_DATABASE_URL", ""),
                    help="database for the servers (default: a SQLite file per run)")
    ap.add_argument("--only", default="", help="run names to keep, separated by semicolons")
    args = ap.parse_args()
    if not shutil.which("node") or not shutil.which("npm"):
        print("node and npm are needed for the reference server and the load generator", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lc-room-bench-"))
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
              "per-message-deflate off on both; livecommerce logging WARNING, scheduler off")
        s = 5.0 if args.quick else args.seconds
        plan: list[tuple[str, dict[str, Any]]]
        if args.quick:
            plan = [("node 4.8", {"kind": "node", "viewers": 200, "rate": 20}),
                    ("livecommerce", {"kind": "ours", "viewers": 200, "rate": 20, "batch_ms": 0})]
        else:
            plan = [
                ("node 4.8", {"kind": "node", "viewers": 1000, "rate": 20}),
                ("livecommerce", {"kind": "ours", "viewers": 1000, "rate": 20, "batch_ms": 0}),
                ("node 4.8", {"kind": "node", "viewers": 3000, "rate": 20}),
                ("livecommerce", {"kind": "ours", "viewers": 3000, "rate": 20, "batch_ms": 0}),
                ("livecommerce, batched 100 ms", {"kind": "ours", "viewers": 3000, "rate": 100, "batch_ms": 100}),
                ("livecommerce, 2 processes + Redis", {"kind": "ours", "viewers": 3000, "rate": 20,
                                                       "processes": 2, "batch_ms": 0, "redis_url": args.redis}),
            ]
        only = {x.strip() for x in args.only.split(";") if x.strip()}
        results = []
        for name, kw in plan:
            if only and name not in only:
                continue
            if kw["kind"] == "ours" and args.database:
                kw["db_url"] = args.database
            results.append(await scenario(work, name, seconds=s, **kw))
            print(json.dumps(results[-1].data), flush=True)
        print()
        print(table(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
