"""`livecommerce loadtest`: open N real websocket viewers on a broadcast's room, send chat and hearts
at set rates, and report deliveries per second, messages lost, p50/p99 delivery latency and the server's
CPU, with a progress line while it runs.

It speaks the Socket.IO protocol (v5 over Engine.IO v4) itself over aiohttp websockets, so it drives any
Socket.IO server with the same room events — ours, or a reference server. A Python client tops out
around a few tens of thousands of messages a second on one core; for heavier runs, `bench/room_bench.py`
drives the viewers from a small Node.js socket.io-client script instead, and prints both sides' CPU.
Only loopback and the project's own test hosts are legitimate targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

NS = "/live"
FILLER = "오늘 참기름 정말 고소하네요 만두도 두 팩 주문했어요 배송 빨리 와주세요 "
SEQ = re.compile(r"#(\d+)@(\d+\.\d+)")


def korean_text(prefix: str, size: int) -> str:
    """A chat message of about `size` bytes of UTF-8, mostly Hangul (3 bytes a syllable)."""
    out = prefix
    i = 0
    while len(out.encode()) + 3 <= size:
        out += FILLER[i % len(FILLER)]
        i += 1
    return out


@dataclass
class Stats:
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    refused: int = 0
    hearts: int = 0
    errors: int = 0

    def envelope(self, env: Any) -> None:
        if not isinstance(env, dict) or env.get("t") != "chat":
            return
        m = SEQ.search(str(env.get("d", {}).get("text", "")))
        if m is None:
            return
        self.received += 1
        if len(self.latencies) < 200_000:
            self.latencies.append((time.time() - float(m.group(2))) * 1000)


class Viewer:
    """One Socket.IO client over a raw websocket: connect to the namespace, join, then read."""

    def __init__(self, session: aiohttp.ClientSession, url: str, stats: Stats, cookie: str | None) -> None:
        self.session = session
        self.url = url
        self.stats = stats
        self.cookie = cookie
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.task: asyncio.Task[None] | None = None

    async def connect(self, broadcast: int) -> None:
        ws_url = self.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        headers = {"Cookie": self.cookie} if self.cookie else {}
        self.ws = await self.session.ws_connect(ws_url, headers=headers, compress=0, heartbeat=None,
                                                max_msg_size=0)
        opened = await self.ws.receive_str(timeout=20)
        if not opened.startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open packet: {opened[:60]}")
        await self.ws.send_str(f"40{NS},")
        while True:
            msg = await self.ws.receive_str(timeout=20)
            if msg.startswith(f"40{NS},"):
                break
            if msg.startswith(f"44{NS},"):
                raise RuntimeError(f"connection refused: {msg}")
        self.task = asyncio.create_task(self.read())
        ack = await self.call("join", {"broadcast_id": broadcast})
        if not ack.get("ok"):
            raise RuntimeError(f"join refused: {ack}")

    async def call(self, event: str, data: Any, limit: float = 20) -> Any:
        assert self.ws is not None
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = fut
        await self.ws.send_str(f"42{NS},{self.next_id}" + json.dumps([event, data], ensure_ascii=False))
        return await asyncio.wait_for(fut, limit)

    async def emit(self, event: str, data: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(f"42{NS}," + json.dumps([event, data], ensure_ascii=False))

    async def read(self) -> None:
        assert self.ws is not None
        prefix_event, prefix_ack = f"42{NS},", f"43{NS},"
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            text: str = msg.data
            if text == "2":
                await self.ws.send_str("3")  # Engine.IO ping → pong
            elif text.startswith(prefix_event):
                name, payload = json.loads(text[len(prefix_event):])
                if name == "room":
                    self.stats.envelope(payload)
                elif name == "room:batch":
                    for env in payload:
                        self.stats.envelope(env)
            elif text.startswith(prefix_ack):
                body = text[len(prefix_ack):]
                i = 0
                while i < len(body) and body[i].isdigit():
                    i += 1
                fut = self.acks.pop(int(body[:i]), None)
                if fut is not None and not fut.done():
                    fut.set_result(json.loads(body[i:])[0])

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def guest_cookie(session: aiohttp.ClientSession, base: str, name: str) -> str:
    async with session.get(f"{base}/api/v1/auth/session") as resp:
        token = (await resp.json())["csrf_token"]
        cookie = resp.cookies["lc_session"].value
    async with session.post(f"{base}/api/v1/auth/guest", json={"nickname": name},
                            headers={"X-CSRF-Token": token, "Cookie": f"lc_session={cookie}"}) as resp:
        if resp.status != 201:
            raise RuntimeError(f"could not join as a guest: {resp.status} {await resp.text()}")
        return f"lc_session={resp.cookies['lc_session'].value}"


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        cookies = [await guest_cookie(session, args.url, f"load{i}") for i in range(args.senders)] \
            if args.login else [None] * args.senders
        viewers: list[Viewer] = []
        for start in range(0, args.viewers, 200):
            group = [Viewer(session, args.url, stats, None) for _ in range(min(200, args.viewers - start))]
            await asyncio.gather(*(v.connect(args.broadcast) for v in group))
            viewers += group
            print(f"\rconnecting {len(viewers)}/{args.viewers}", end="", file=sys.stderr, flush=True)
        senders = [Viewer(session, args.url, Stats(), c) for c in cookies]
        await asyncio.gather(*(s.connect(args.broadcast) for s in senders))
        print(f"\rconnected {len(viewers)} viewers and {len(senders)} senders", file=sys.stderr)
        cpu0 = cpu_seconds(args.server_pid) if args.server_pid else None
        own0 = time.process_time()
        t0 = time.monotonic()
        total = int(args.rate * args.seconds)
        seq = 0
        pending: set[asyncio.Task[None]] = set()

        async def send(s: Viewer, n: int) -> None:
            stats.sent += 1
            text = korean_text(f"#{n}@{time.time():.6f} ", args.bytes)
            try:
                ack = await s.call("chat:send", {"broadcast_id": args.broadcast, "text": text})
            except TimeoutError:
                stats.errors += 1
                return
            if ack.get("ok"):
                stats.acked += 1
            else:
                stats.refused += 1

        last_shown = 0.0
        heart_due = 0.0
        while seq < total:
            now = time.monotonic() - t0
            due = min(total, int(now * args.rate))
            while seq < due:
                task = asyncio.create_task(send(senders[seq % len(senders)], seq))
                pending.add(task)
                task.add_done_callback(pending.discard)
                seq += 1
            if args.hearts and now >= heart_due:
                heart_due = now + 0.25
                n = max(1, int(args.hearts / 4))
                await viewers[seq % len(viewers)].emit("heart", {"broadcast_id": args.broadcast, "count": min(50, n)})
                stats.hearts += min(50, n)
            if now - last_shown >= 1.0:
                last_shown = now
                print(f"\r{now:5.1f} s  sent {stats.sent}/{total}  deliveries {stats.received:,} "
                      f"({stats.received / max(now, 0.1):,.0f}/s)   ", end="", file=sys.stderr, flush=True)
            await asyncio.sleep(0.005)
        send_time = time.monotonic() - t0
        if pending:
            await asyncio.wait(pending, timeout=20)
        expected = stats.acked * (len(viewers) + len(senders))
        for _ in range(200):  # drain: up to 10 s for every acknowledged message to reach every viewer
            if stats.received + sum(s.stats.received for s in senders) >= expected:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu1 = cpu_seconds(args.server_pid) if args.server_pid else None
        own = time.process_time() - own0
        print(file=sys.stderr)
        delivered = stats.received + sum(s.stats.received for s in senders)
        await asyncio.gather(*(v.close() for v in viewers + senders), return_exceptions=True)
    lat = stats.latencies
    return {
        "viewers": args.viewers, "senders": args.senders, "rate": args.rate, "seconds": round(send_time, 2),
        "sent": stats.sent, "acked": stats.acked, "refused": stats.refused, "errors": stats.errors,
        "deliveries": delivered, "expected": expected, "lost": max(0, expected - delivered),
        "deliveries_per_s": round(delivered / max(send_time, 1e-9)),
        "p50_ms": quantile(lat, 0.5), "p99_ms": quantile(lat, 0.99),
        "server_cpu_core": round((cpu1 - cpu0) / elapsed, 3) if cpu0 is not None and cpu1 is not None else None,
        "server_cpu_per_delivery_us": round((cpu1 - cpu0) / max(delivered, 1) * 1e6, 2)
        if cpu0 is not None and cpu1 is not None else None,
        "loadgen_cpu_core": round(own / elapsed, 3),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the server (loopback or your own test host)")
    p.add_argument("--broadcast", type=int, required=True, help="the live broadcast's id")
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--senders", type=int, default=5, help="signed-in guests who send the chat")
    p.add_argument("--rate", type=float, default=5.0, help="chat messages per second, in all")
    p.add_argument("--hearts", type=float, default=0.0, help="hearts per second, in all")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--bytes", type=int, default=230, help="size of a chat message in UTF-8")
    p.add_argument("--server-pid", type=int, default=0, help="measure this process's CPU (same machine)")
    p.add_argument("--no-login", dest="login", action="store_false",
                   help="senders do not join as guests (for servers without accounts)")


def main(args: argparse.Namespace) -> int:
    host = re.sub(r"^https?://", "", args.url).split("/")[0].split(":")[0]
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        print(f"refusing to load {host}: only loopback targets (or your own test hosts, with --url and care)",
              file=sys.stderr)
        return 2
    if args.viewers < 1 or args.senders < 1 or args.rate <= 0 or not 0 < args.seconds <= 600:
        print("viewers and senders at least 1, a positive rate, and at most 600 seconds", file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0
