"""Two `livecommerce serve` processes behind a real nginx, as `scripts/cluster` runs them (with
`deploy/nginx.conf`), sharing PostgreSQL and Redis: clients from different addresses land on both
processes; a viewer on long-polling stays on one process for the whole connection; chat crosses from one
process's viewers to the other's, in order; a viewer who left joins again with `since` and gets exactly
what it missed; a purchase goes through once, and its retry with the same key is the same purchase. The
Socket.IO reference client (socket.io-client 4.8 on Node.js, installed from npm into `tmp/reference-client`
on first use) does the same chat and resume through nginx, connecting as a browser does."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from livecommerce.auth import COOKIE
from livecommerce.config import Config
from tests.processes import ROOT, Served, health, spare_port, until
from tests.support import NS, PASSWORD, Viewer, World

from ..conftest import PG_URL, REDIS_URL, SECRET

NGINX = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
pytestmark = pytest.mark.skipif(not (PG_URL and REDIS_URL and NGINX), reason="needs PostgreSQL, Redis and nginx")


@pytest.fixture
def backend() -> str:
    return "postgres"


class Cluster:
    def __init__(self, config: Config) -> None:
        self.port = spare_port()
        self.first = spare_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lc-cluster-"))
        env = Served.env()
        env.update({"LIVECOMMERCE_DATABASE_URL": config.database.url, "LIVECOMMERCE_REDIS_URL": config.redis.url,
                    "LIVECOMMERCE_REDIS_PREFIX": config.redis.prefix, "LIVECOMMERCE_SERVER_SECRET_KEY": SECRET,
                    "LIVECOMMERCE_LOGGING_LEVEL": "WARNING",
                    "LIVECOMMERCE": str(Path(sys.executable).parent / "livecommerce")})
        with (self.dir / "cluster.err").open("wb") as err:
            self.proc = subprocess.Popen([str(ROOT / "scripts" / "cluster"), "-n", "2", "--port", str(self.port),
                                          "--first-port", str(self.first), "--dir", str(self.dir)], cwd=ROOT,
                                         env=env, stdout=subprocess.DEVNULL, stderr=err)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstreams(self) -> dict[str, set[str]]:
        """From nginx's access log: each client address and the processes that answered it."""
        seen: dict[str, set[str]] = {}
        for line in (self.dir / "logs" / "access.log").read_text().splitlines():
            addr = line.split()[0]
            up = next((w.removeprefix("upstream=") for w in line.split() if w.startswith("upstream=")), "-")
            seen.setdefault(addr, set()).add(up)
        return seen

    def logs(self) -> str:
        out = []
        for f in [*sorted((self.dir / "logs").glob("*.log")), self.dir / "cluster.err"]:
            out.append(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def cluster(config: Config, world: World) -> AsyncIterator[Cluster]:
    c = Cluster(config)
    try:
        # each process answers on its own before anything goes through nginx: a probe that reached a process
        # still starting would have nginx mark it failed, and send its addresses to the other for a while
        for process in (f"http://127.0.0.1:{c.first}", f"http://127.0.0.1:{c.first + 1}"):
            await until(functools.partial(health, process), lambda h: h[0] == 200 or c.proc.poll() is not None,
                        90, every=0.2)
        await until(lambda: health(c.base), lambda h: h[0] == 200 or c.proc.poll() is not None, 90, every=0.2)
        assert c.proc.poll() is None, c.logs()
        yield c
    finally:
        c.stop()


def from_address(addr: str) -> aiohttp.ClientSession:
    """A client whose connections come from `addr` (any 127.x.y.z is this machine's loopback)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(addr, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


async def viewer_at(base: str, http: aiohttp.ClientSession, transport: str, cookie: str = "") -> Viewer:
    sio = socketio.AsyncClient(reconnection=False, http_session=http)
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    await sio.connect(base, headers=headers, namespaces=[NS], transports=[transport], wait_timeout=10)
    return Viewer(sio)


async def sign_in(http: aiohttp.ClientSession, base: str, username: str) -> str:
    async with http.get(f"{base}/api/v1/auth/session") as resp:
        token = (await resp.json())["csrf_token"]
    async with http.post(f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD},
                         headers={"X-CSRF-Token": token}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["csrf_token"])


async def placed(cluster: Cluster, addresses: list[str]) -> dict[str, set[str]]:
    """Which process nginx sends each address to (a request from each, then nginx's access log)."""
    for a in addresses:
        async with from_address(a) as http, http.get(f"{cluster.base}/healthz") as resp:
            assert resp.status == 200

    async def logged() -> dict[str, set[str]]:  # nginx logs a request just after answering it
        return cluster.upstreams()

    return await until(logged, lambda seen: set(addresses) <= set(seen), 30)


REFERENCE_CLIENT = ROOT / "tmp" / "reference-client"


@pytest.fixture(scope="session")
def reference_client() -> Path:
    """socket.io-client 4.8 for Node.js, installed from npm once into tmp/reference-client."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node and npm")
    modules = REFERENCE_CLIENT / "node_modules"
    if not (modules / "socket.io-client" / "package.json").exists():
        REFERENCE_CLIENT.mkdir(parents=True, exist_ok=True)
        (REFERENCE_CLIENT / "package.json").write_text('{"name": "reference-client", "private": true}\n')
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "socket.io-client@4.8"],
                       cwd=REFERENCE_CLIENT, check=True, capture_output=True, timeout=300)
    return modules


async def test_the_reference_client_chats_and_resumes_through_nginx(cluster: Cluster, world: World,
                                                                    reference_client: Path) -> None:
    addresses = [f"127.0.1.{i}" for i in range(2, 18)]
    by_address = await placed(cluster, addresses)
    processes = sorted({next(iter(by_address[a])) for a in addresses})
    assert len(processes) == 2, by_address
    host_at = next(a for a in addresses if by_address[a] == {processes[0]})
    one_at, two_at = [a for a in addresses if by_address[a] == {processes[1]}][:2]
    async with from_address(host_at) as http:
        await sign_in(http, cluster.base, "host")
        cookie = next(c.value for c in http.cookie_jar if c.key == COOKIE)
    args = {"base": cluster.base, "broadcast": world.live.id, "cookie": f"{COOKIE}={cookie}",
            "addresses": [host_at, one_at, two_at]}
    done = await asyncio.to_thread(
        subprocess.run, ["node", str(Path(__file__).with_name("reference_client.mjs")), json.dumps(args)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "REFERENCE_CLIENT_MODULES": str(reference_client)})
    assert done.returncode == 0, done.stderr[-2000:] + cluster.logs()
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # the host on one process, both viewers on the other: each heard the host, once and in order
    assert seen["one"] == seen["sent"] + seen["missed"], seen
    assert seen["two"] == seen["sent"], seen
    # back with its position, the viewer that left got exactly what it missed
    assert seen["recovered"] and seen["recoveredChat"] == seen["missed"], seen
    # each connected as a browser does and was upgraded to a websocket through nginx
    assert seen["transports"] == ["websocket"] * 3, seen
    assert all(len(cluster.upstreams()[a]) == 1 for a in (host_at, one_at, two_at)), cluster.upstreams()


async def test_two_processes_behind_nginx_carry_chat_resume_and_a_purchase(cluster: Cluster, world: World) -> None:
    bid = world.live.id
    base = cluster.base
    addresses = [f"127.0.0.{i}" for i in range(2, 18)]
    sessions: dict[str, aiohttp.ClientSession] = {a: from_address(a) for a in addresses}
    viewers: list[Viewer] = []
    try:
        by_address = await placed(cluster, addresses)  # the address decides the process
        processes = {next(iter(by_address[a])) for a in addresses}
        assert len(processes) == 2, by_address
        assert all(len(by_address[a]) == 1 for a in addresses), "an address moved between processes"
        one = next(a for a in addresses if by_address[a] == {sorted(processes)[0]})
        two = next(a for a in addresses if by_address[a] == {sorted(processes)[1]})

        # the host on one process (websocket), viewers on both, one of them long-polling
        await sign_in(sessions[one], base, "host")
        cookie = next(c.value for c in sessions[one].cookie_jar if c.key == COOKIE)
        host = await viewer_at(base, sessions[one], "websocket", cookie)
        polling = await viewer_at(base, sessions[two], "polling")
        sessions["again"] = from_address(two)
        other = await viewer_at(base, sessions["again"], "websocket")
        viewers += [host, polling, other]
        for v in viewers:
            assert (await v.call("join", {"broadcast_id": bid}))["ok"]
        sent = []
        for i in range(3):
            ack = await host.call("chat:send", {"broadcast_id": bid, "text": f"nginx 너머 {i}"})
            assert ack["ok"], ack
            sent.append(ack["data"]["id"])
        for v in (polling, other):
            await v.wait_for(lambda v=v: [e["d"]["id"] for e in v.events if e["t"] == "chat"] == sent)
        seen = {"epoch": other.events[-1]["e"], "offset": other.last}

        # a viewer leaves; two more messages; it comes back with what it saw last
        await other.sio.disconnect()
        missed = []
        for i in range(2):
            ack = await host.call("chat:send", {"broadcast_id": bid, "text": f"놓친 말 {i}"})
            missed.append(ack["data"]["id"])
        back = await viewer_at(base, sessions["again"], "websocket")
        viewers.append(back)
        answer = await back.call("join", {"broadcast_id": bid, "since": seen})
        assert answer["ok"] and answer["data"]["recovered"], answer
        assert [e["d"]["id"] for e in answer["data"]["events"] if e["t"] == "chat"] == missed
        await polling.wait_for(lambda: [e["d"]["id"] for e in polling.events if e["t"] == "chat"] == sent + missed)

        # a purchase through nginx, and its retry with the same key
        token = await sign_in(sessions[two], base, "viewer")
        body: dict[str, Any] = {"lines": [{"product_id": world.products[0].id, "quantity": 1}], "name": "김민지",
                                "phone": "010-1234-5678", "postal_code": "04524",
                                "address1": "서울 중구 세종대로 110", "payment_method": "cod"}
        key = str(uuid.uuid4())
        answers = []
        for _ in range(2):
            async with sessions[two].post(f"{base}/api/v1/broadcasts/{bid}/purchases", json=body,
                                          headers={"X-CSRF-Token": token, "Idempotency-Key": key}) as resp:
                answers.append((resp.status, await resp.json(), resp.headers.get("Idempotent-Replayed")))
        assert answers[0][0] == 201, answers[0]
        assert answers[1][0] == 201 and answers[1][1]["id"] == answers[0][1]["id"] and answers[1][2] == "true"

        # the long-polling viewer was answered by one process only, for the whole connection
        assert len(cluster.upstreams()[two]) == 1, cluster.upstreams()
    finally:
        for v in viewers:
            await v.sio.disconnect()
        for http in sessions.values():
            await http.close()
