"""Flash sale: 5,000 purchase attempts for a product with 100 units, fired within about one second by
many signed-in guest viewers at a real server, on SQLite and on PostgreSQL.

    .venv/bin/python bench/flash_sale.py                       # SQLite, then PostgreSQL
    .venv/bin/python bench/flash_sale.py --backend postgres --pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

For each backend it starts `livecommerce serve` as a subprocess on a free port of 127.0.0.1 (a
throwaway SQLite file, or a throwaway PostgreSQL database created next to the one named by
--pg-url and dropped afterwards), creates a live broadcast whose line-up sets aside 100 units of a
product that has 100, signs in --buyers guest viewers, then sends --attempts purchases (each with
its own Idempotency-Key) at --rate per second with at most --concurrency in flight, each on a
keep-alive connection opened before the sale (the buyers are already on the sale page). The client
writes its HTTP/1.1 requests by hand, so that it needs little of the CPU the server and the database
share with it; its CPU per attempt is printed too. It reports what was accepted, refused as sold
out, answered otherwise or lost, checks in the database that exactly 100 units were sold, and prints
throughput and response times with the machine, versions and settings. All traffic goes to
127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the harness beside this file, the project above it

from harness import (  # noqa: E402
    HOST,
    Buyer,
    Outcome,
    Server,
    cpu_spent,
    fire,
    free_port,
    percentile,
    print_machine,
    redis_forget,
    redis_prefix,
    redis_ready,
    server_cpu,
    sign_in_guests,
    throwaway_database,
)
from sqlalchemy import func, select  # noqa: E402

from livecommerce.config import build_config  # noqa: E402
from livecommerce.db import make_engine, make_sessionmaker, utcnow  # noqa: E402
from livecommerce.models import Market, Merchant, Product  # noqa: E402
from orders.models import IdempotencyKey, LineupSale, PurchaseLine  # noqa: E402
from sessions.models import Broadcast, BroadcastState, LineupItem  # noqa: E402

UNITS = 100


# -- the sale -------------------------------------------------------------------------------------

@dataclass
class Seeded:
    broadcast_id: int
    product_id: int
    warmup_product_id: int  # plenty of stock: for warming the server up before the sale


async def seed(url: str) -> Seeded:
    """A market, a stall, a product with 100 units and a broadcast live now that sets them all aside."""
    config = build_config({"database": {"url": url}}, env={})
    engine = make_engine(config.database)
    try:
        async with make_sessionmaker(engine).begin() as db:
            market = Market(slug="bench", name_ko="벤치시장", name_en="Bench market")
            db.add(market)
            await db.flush()
            merchant = Merchant(market_id=market.id, name_ko="만두집", name_en="Dumplings")
            db.add(merchant)
            await db.flush()
            product = Product(merchant_id=merchant.id, name_ko="고기만두", name_en="Pork dumplings", price=12900,
                              stock=UNITS)
            warm = Product(merchant_id=merchant.id, name_ko="김치만두", name_en="Kimchi dumplings", price=12900,
                           stock=1_000_000)
            db.add_all([product, warm])
            await db.flush()
            now = utcnow()
            b = Broadcast(market_id=market.id, title_ko="플래시 세일", title_en="Flash sale", state=BroadcastState.LIVE,
                          starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(minutes=59),
                          started_at=now - timedelta(minutes=1), lineup=[], hosts=[], partners=[])
            b.lineup.append(LineupItem(product_id=product.id, position=0, live_price=9900, stock_reserved=UNITS))
            b.lineup.append(LineupItem(product_id=warm.id, position=1, live_price=9900, stock_reserved=1_000_000))
            db.add(b)
            await db.flush()
            return Seeded(b.id, product.id, warm.id)
    finally:
        await engine.dispose()


@dataclass
class Check:
    sold: int
    product_stock: int
    purchases: int
    units_in_lines: int
    keys: int  # attempts that got past the read-only checks and took an Idempotency-Key


async def check(url: str, s: Seeded, product_id: int | None = None) -> Check:
    config = build_config({"database": {"url": url}}, env={})
    engine = make_engine(config.database)
    try:
        async with make_sessionmaker(engine, write=False)() as db:
            pid = product_id or s.product_id
            sold = await db.scalar(select(LineupSale.sold).where(LineupSale.broadcast_id == s.broadcast_id,
                                                                 LineupSale.product_id == pid))
            stock = await db.scalar(select(Product.stock).where(Product.id == pid))
            purchases = await db.scalar(select(func.count(func.distinct(PurchaseLine.purchase_id)))
                                        .where(PurchaseLine.product_id == pid))
            units = await db.scalar(select(func.coalesce(func.sum(PurchaseLine.quantity), 0))
                                    .where(PurchaseLine.product_id == pid))
            keys = await db.scalar(select(func.count()).select_from(IdempotencyKey))
            return Check(int(sold or 0), int(stock or 0), int(purchases or 0), int(units or 0), int(keys or 0))
    finally:
        await engine.dispose()


# -- the buyers -------------------------------------------------------------------------------------

async def flash_sale(bases: list[str], s: Seeded, buyers: list[Buyer], attempts: int, rate: float,
                     concurrency: int, product_id: int | None = None) -> Outcome:
    """Attempt k is due at k/rate seconds (all within attempts/rate), by buyer k mod buyers, to
    server k mod servers (a round-robin balancer); at most `concurrency` are in flight, each on its
    own keep-alive connection to each server."""
    body = {"lines": [{"product_id": product_id or s.product_id, "quantity": 1}], "name": "김민지",
            "phone": "010-1234-5678",
            "postal_code": "04524", "address1": "서울 중구 세종대로 110", "payment_method": "cod"}
    payload = json.dumps(body, ensure_ascii=False).encode()
    path = f"/api/v1/broadcasts/{s.broadcast_id}/purchases"

    def request(k: int, host: str) -> bytes:
        b = buyers[k % len(buyers)]
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Cookie: lc_session={b.cookie}\r\nX-CSRF-Token: {b.csrf}\r\n"
                f"Content-Type: application/json\r\nIdempotency-Key: \"{uuid.uuid4()}\"\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload

    return await fire(bases, attempts, rate, concurrency, request)


# -- one run ----------------------------------------------------------------------------------------

async def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    redis_url = args.redis_url if args.processes > 1 else ""  # several processes share Redis, as deployed
    prefix = redis_prefix()
    if redis_url:
        await redis_ready(redis_url)
    async with throwaway_database(backend, args.pg_url) as db:
        url, server_version = db.url, db.server_version
        servers = [Server(db.workdir, url, free_port(), args.log_level, redis_url, prefix)
                   for _ in range(args.processes)]
        servers[0].upgrade()
        seeded = await seed(url)
        try:
            for server in servers:
                await server.start()
            bases = [f"http://{HOST}:{server.port}" for server in servers]
            buyers = await sign_in_guests(bases[0], args.buyers, min(args.concurrency, 50))
            keys_before = 0
            if args.warmup:  # the server as it is when a show is on: pools open, statements prepared
                await flash_sale(bases, seeded, buyers, args.warmup, args.rate, args.concurrency,
                                 seeded.warmup_product_id)
                keys_before = (await check(url, seeded)).keys
            before = server_cpu(servers)
            client_before = time.process_time()
            target = seeded.warmup_product_id if args.plenty else seeded.product_id
            outcome = await flash_sale(bases, seeded, buyers, args.attempts, args.rate, args.concurrency, target)
            client_cpu = time.process_time() - client_before
            spent = cpu_spent(before, server_cpu(servers))
        finally:
            for server in servers:
                server.stop()
            if redis_url:
                await redis_forget(redis_url, prefix)
        checked = await check(url, seeded, target)
        checked.keys -= keys_before
    answered = len(outcome.latencies)
    elapsed = outcome.last_answer - outcome.first_sent if answered else float("nan")
    accepted = outcome.statuses.get("201", 0)
    sold_out = outcome.statuses.get("409 sold_out", 0)
    return {
        "backend": backend, "server": server_version, "processes": args.processes, "warmup": args.warmup,
        "attempts": args.attempts,
        "answered": answered,
        "accepted": accepted, "sold_out": sold_out,
        "other": {k: v for k, v in outcome.statuses.items() if k not in ("201", "409 sold_out")},
        "lost": outcome.lost, "elapsed_s": elapsed, "sent_within_s": outcome.sent_by,
        "sold_out_after_s": outcome.last_accepted - outcome.first_sent if outcome.last_accepted else float("nan"),
        "throughput": answered / elapsed if answered and elapsed > 0 else 0.0,
        "p50_ms": percentile(outcome.latencies, 50) * 1000, "p99_ms": percentile(outcome.latencies, 99) * 1000,
        "max_ms": max(outcome.latencies) * 1000 if outcome.latencies else float("nan"),
        "mean_ms": statistics.fmean(outcome.latencies) * 1000 if outcome.latencies else float("nan"),
        "check": checked,
        "server_cpu_ms": spent * 1000 / answered if spent is not None and answered else None,
        "client_cpu_ms": client_cpu * 1000 / answered if answered else None,
        "exactly_100": (checked.sold == checked.purchases == checked.units_in_lines == accepted == answered
                        == args.attempts) if args.plenty else (
            checked.sold == UNITS and checked.product_stock == 0 and checked.purchases == accepted == UNITS
            and checked.units_in_lines == UNITS),
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print_machine()
    aim = "a product with 1,000,000 units" if args.plenty else f"{UNITS} units"
    print(f"settings: {args.attempts} attempts for {aim}, {args.buyers} guest buyers, at most "
          f"{args.concurrency} in flight, sent at {args.rate:.0f}/s; `livecommerce serve` "
          "processes as in the table (round-robin), "
          + (f"sharing Redis at {args.redis_url} (a key prefix of the run's own), "
             if args.processes > 1 and args.redis_url else "")
          + f"logging.level={args.log_level}, other settings default (database.pool_size 10 + 10 overflow); "
          "client, server and database on this machine")
    print()
    header = ("| backend | server | processes | warm-up | answered/s | p50 | p99 | max | accepted | sold out | other "
              f"| lost | {'every attempt bought' if args.plenty else 'exactly 100 sold'} |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in results:
        c: Check = r["check"]
        other = ", ".join(f"{k}: {n}" for k, n in r["other"].items()) or "0"
        print(f"| {r['backend']} | {r['server']} | {r['processes']} | {r['warmup']} | {r['throughput']:.0f} "
              f"| {r['p50_ms']:.0f} ms "
              f"| {r['p99_ms']:.0f} ms "
              f"| {r['max_ms']:.0f} ms | {r['accepted']} | {r['sold_out']} | {other} | {r['lost']} "
              f"| {'yes' if r['exactly_100'] else 'NO'} (sold {c.sold}, stock left {c.product_stock}, "
              f"{c.purchases} purchases) |")
    print()
    for r in results:
        cpu = f", server CPU {r['server_cpu_ms']:.2f} ms per answer" if r["server_cpu_ms"] is not None else ""
        if r["client_cpu_ms"] is not None:
            cpu += f" (the load generator's {r['client_cpu_ms']:.2f} ms)"
        print(f"{r['backend']}: {r['answered']} answers in {r['elapsed_s']:.2f} s "
              f"(attempts sent within {r['sent_within_s']:.2f} s), mean {r['mean_ms']:.0f} ms{cpu}; "
              f"the last unit sold {r['sold_out_after_s']:.2f} s after the first attempt; "
              f"{r['check'].keys} attempts got past the read-only checks")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("LIVECOMMERCE_TEST_DATABASE_URL",
                                                      "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
                   help="a PostgreSQL database to connect to; the benchmark creates and drops its own next to it")
    p.add_argument("--attempts", type=int, default=5000)
    p.add_argument("--buyers", type=int, default=5000,
                   help="distinct buyers (attempt i by buyer i mod buyers): as many as attempts, as in a real sale")
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--rate", type=float, default=5000.0, help="attempts sent per second")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--warmup", type=int, default=0,
                   help="purchases of another product sent first (not counted), so pools and statements are warm")
    p.add_argument("--plenty", action="store_true",
                   help="aim at a product with 1,000,000 units instead: every attempt buys (the cost of a purchase)")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes, as behind a load balancer (PostgreSQL; SQLite is one process)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                   help="the Redis that several processes share (under a key prefix of the run's own, deleted "
                        "afterwards); one process runs without Redis. '' for none")
    args = p.parse_args()
    if not (1 <= args.attempts <= 100_000 and 1 <= args.buyers <= 10_000 and 1 <= args.concurrency <= 2000
            and args.rate > 0 and 1 <= args.processes <= 16 and 0 <= args.warmup <= 100_000):
        p.error("attempts 1..100000, buyers 1..10000, concurrency 1..2000, rate > 0, processes 1..16, "
                "warmup 0..100000")
    if args.redis_url and not args.redis_url.startswith("redis://127.0.0.1"):
        p.error("--redis-url must be a redis://127.0.0.1 address")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [asyncio.run(run(b, args if b == "postgres" else argparse.Namespace(**{**vars(args), "processes": 1})))
               for b in backends]
    report(results, args)
    return 0 if all(r["exactly_100"] and r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
