"""What the fault and cluster tests share: a spare loopback port, a private PostgreSQL of the test's own
(`initdb`/`pg_ctl` as the `postgres` user, stopped and started for real), `livecommerce serve` as a real
process with its own configuration, and waiting on a condition with a generous limit. The machine's shared
PostgreSQL and Redis are never stopped."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def spare_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def until(probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], limit: float,
                every: float = 0.05) -> Any:
    """Probe until `accept(result)`; the result (fails after `limit` seconds)."""
    deadline = time.monotonic() + limit
    while True:
        got = await probe()
        if accept(got):
            return got
        assert time.monotonic() < deadline, f"still {got!r} after {limit} s"
        await asyncio.sleep(every)


async def health(base: str) -> tuple[int, dict[str, Any]]:
    """`/healthz` of the server at `base`: (status, body); (0, {}) when nothing answers."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz",
                                                             timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


# -- a private PostgreSQL -----------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's programs, when there is one and this test may run them (as root,
    through the `postgres` account)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found or os.geteuid() != 0 or shutil.which("runuser") is None:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    return Path(found[-1]).parent


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder owned by `postgres`, listening on a spare loopback port
    (its unix socket in the same folder), that a test stops (`-m immediate`: as if it crashed) and starts."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.port = spare_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lc-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        owner = pwd.getpwnam("postgres")
        os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale", "C", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off "
                   "-c synchronous_commit=on -c max_connections=100")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t",
                  "120", "start")

    def stop(self) -> None:
        """Stopped at once, its connections cut, as a crash would (what was committed stays committed)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def create_database(self, name: str) -> str:
        import asyncpg

        conn = await asyncpg.connect(self.url().replace("+asyncpg", ""))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


# -- `livecommerce serve` as a process -------------------------------------------------------------------

class Served:
    """`livecommerce serve` on a spare loopback port with the configuration text given, its log in `workdir`."""

    def __init__(self, workdir: Path, config_text: str, name: str = "server") -> None:
        self.workdir = workdir
        self.port = spare_port()
        self.config = workdir / f"{name}.toml"
        self.config.write_text(config_text, encoding="utf-8")
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @staticmethod
    def env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "livecommerce.cli", *args, "--config", str(self.config)]

    def run(self, *args: str) -> None:
        subprocess.run(self.command(*args), check=True, cwd=self.workdir, capture_output=True, timeout=120,
                       env=self.env())

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command("serve", "--host", HOST, "--port", str(self.port)),
                                         cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=self.env())

    async def start(self) -> None:
        """Launched, and answering `/healthz` with 200 (within a minute)."""
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"the server stopped:\n{self.tail()}"
            status, _ = await health(self.base)
            if status == 200:
                return
            assert time.monotonic() < deadline, f"the server did not answer within 60 s:\n{self.tail()}"
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """`kill -9`: nothing is finished, nothing is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def failures(self) -> list[str]:
        """Lines of the log that say a request or an event failed on the server's side (a 500, a traceback)."""
        with contextlib.suppress(OSError):
            return [line for line in self.log.read_text(errors="replace").splitlines()
                    if '"status": 500' in line or "Traceback" in line or '"outcome": "internal"' in line]
        return []
