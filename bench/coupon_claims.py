"""Coupon drop: 10,000 claim attempts within about one second at a drop of 500 coupons, over real
connections, then the redemption race (five purchases at once for every coupon claimed), on SQLite and on
PostgreSQL, with one server process or several sharing Redis.

    .venv/bin/python bench/coupon_claims.py                                  # SQLite, then PostgreSQL
    .venv/bin/python bench/coupon_claims.py --backend postgres --processes 2 # two processes sharing Redis
    .venv/bin/python bench/coupon_claims.py --backend sqlite --viewers 2000 --rate 2000

For each backend it starts `livecommerce serve` as subprocesses on free ports of 127.0.0.1 (a throwaway
SQLite file, or a throwaway PostgreSQL database created next to the one named by --pg-url and dropped
afterwards; with several processes, they share the Redis of --redis-url under a key prefix of their own).
It seeds a market, a live broadcast whose line-up has a product with plenty of stock at a live price, a
host and a coupon template (3,000 won off), signs in --viewers distinct guest viewers (before the timed
part, a few at a time, with progress on stderr), has the host drop --coupons coupons, and fires one claim
per viewer (each with its own Idempotency-Key) at --rate per second with at most --concurrency in flight,
round-robin over the servers, on keep-alive connections opened beforehand. It reports throughput, response
times and what every viewer was told, and checks in the database that exactly --coupons were claimed, by
as many distinct viewers, and that every refused viewer was told `all_claimed`.

The race (unless --no-race): --race-coupons fresh guests each claim one coupon of a fresh drop of as many;
then each coupon is tried --race-tries times (each attempt a purchase of one unit with `"coupons":
[claim_id]` and its own Idempotency-Key), the attempts interleaved and fired concurrently over the servers.
Exactly one purchase per coupon must go through, the others be told `coupon_used`; the database must show
every claim redeemed once, by one purchase each, and the drop's `redeemed` count equal to the coupons.

The exit status is 0 only when every exactness check holds and no attempt was lost. All traffic goes to
127.0.0.1; every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the harness beside this file, the project above it

from harness import (  # noqa: E402
    Buyer,
    Outcome,
    Server,
    cpu_spent,
    error_code,
    fire,
    free_port,
    percentile,
    print_machine,
    progress_printer,
    redis_forget,
    redis_prefix,
    redis_ready,
    server_cpu,
    sign_in_guests,
    throwaway_database,
)
from sqlalchemy import func, select  # noqa: E402

from coupons import claims  # noqa: E402
from coupons.models import ClaimedCoupon, ClaimState, CouponDrop  # noqa: E402
from livecommerce.config import build_config  # noqa: E402
from livecommerce.db import make_engine, make_sessionmaker, utcnow  # noqa: E402
from livecommerce.models import Market, Merchant, Product, Role, User  # noqa: E402
from orders.models import LineupSale, Purchase  # noqa: E402
from sessions.models import Broadcast, BroadcastHost, BroadcastState, LineupItem  # noqa: E402

DISCOUNT = 3000  # won off, fixed
LIVE_PRICE = 9900
AIM_RATE = 3000.0  # answers/s, PostgreSQL, one process
AIM_P99_MS = 300.0
ALL_CLAIMED = "409 all_claimed"
COUPON_USED = "409 coupon_used"


# -- the show -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seeded:
    broadcast_id: int
    product_id: int
    template_id: int
    host_id: int


def _engine(url: str) -> Any:
    return make_engine(build_config({"database": {"url": url}}, env={}).database)


async def seed(url: str) -> Seeded:
    """A market, a stall, a product with plenty of stock, a host, a broadcast live now with the product on
    its line-up at a live price, and a coupon template of 3,000 won off (one per viewer)."""
    engine = _engine(url)
    try:
        async with make_sessionmaker(engine).begin() as db:
            market = Market(slug="bench", name_ko="벤치시장", name_en="Bench market")
            db.add(market)
            await db.flush()
            merchant = Merchant(market_id=market.id, name_ko="만두집", name_en="Dumplings")
            host = User(username="bench-host", display_name="진행자", role=Role.HOST)
            db.add_all([merchant, host])
            await db.flush()
            product = Product(merchant_id=merchant.id, name_ko="고기만두", name_en="Pork dumplings", price=12900,
                              stock=1_000_000)
            db.add(product)
            await db.flush()
            now = utcnow()
            b = Broadcast(market_id=market.id, title_ko="쿠폰 타임", title_en="Coupon time", state=BroadcastState.LIVE,
                          starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(minutes=59),
                          started_at=now - timedelta(minutes=1), lineup=[], hosts=[], partners=[])
            b.lineup.append(LineupItem(product_id=product.id, position=0, live_price=LIVE_PRICE,
                                       stock_reserved=1_000_000))
            b.hosts.append(BroadcastHost(user_id=host.id))
            db.add(b)
            await db.flush()
            t = await claims.save_template(db, market.id, claims.TemplateInput(
                name_ko="방송 할인 3천원", name_en="3,000 won off", kind="fixed", value=DISCOUNT, quantity=500,
                per_viewer_limit=1, claim_minutes=30))
            return Seeded(b.id, product.id, t.id, host.id)
    finally:
        await engine.dispose()


async def open_drop(url: str, s: Seeded, quantity: int) -> int:
    """The host drops `quantity` coupons into the live broadcast now; the drop's id."""
    engine = _engine(url)
    try:
        async with make_sessionmaker(engine).begin() as db:
            host = await db.get(User, s.host_id)
            assert host is not None
            d = await claims.drop_now(db, s.broadcast_id, s.template_id, host, utcnow(), quantity)
            return int(d.id)
    finally:
        await engine.dispose()


# -- what the viewers were told -------------------------------------------------------------------

@dataclass
class Told:
    """Each attempt's answer: its status with the error code (`409 all_claimed`), for a 201 the id it names
    (the claim's, or the purchase's), when it was sent and how long its answer took."""

    codes: list[str | None]
    ids: list[int | None]
    sent: list[float]
    seconds: list[float]

    @classmethod
    def of(cls, n: int) -> Told:
        return cls([None] * n, [None] * n, [0.0] * n, [0.0] * n)

    def answered(self, k: int, status: int, body: bytes, seconds: float) -> None:
        self.seconds[k] = seconds
        self.sent[k] = time.perf_counter() - seconds
        if status == 201:
            self.codes[k] = "201"
            try:
                data = json.loads(body)
                self.ids[k] = int(data["claim_id"] if "claim_id" in data else data["id"])
            except (ValueError, KeyError, TypeError):
                self.ids[k] = None
        else:
            self.codes[k] = error_code(status, body)

    def split(self, at: float) -> tuple[list[float], list[float]]:
        """The response times of the answered attempts sent before `at`, and of those sent after."""
        before = [self.seconds[k] for k, c in enumerate(self.codes) if c is not None and self.sent[k] <= at]
        after = [self.seconds[k] for k, c in enumerate(self.codes) if c is not None and self.sent[k] > at]
        return before, after


def claim_request(drop_id: int, viewers: list[Buyer], viewer_of: Any = None) -> Any:
    path = f"/api/v1/drops/{drop_id}/claims"

    def request(k: int, host: str) -> bytes:
        v = viewers[viewer_of(k) if viewer_of else k]
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Cookie: lc_session={v.cookie}\r\nX-CSRF-Token: {v.csrf}\r\n"
                f"Idempotency-Key: \"{uuid.uuid4()}\"\r\nContent-Length: 0\r\n\r\n").encode()

    return request


def purchase_request(s: Seeded, viewers: list[Buyer], claim_ids: list[int], viewer_of: Any) -> Any:
    path = f"/api/v1/broadcasts/{s.broadcast_id}/purchases"
    payloads = [json.dumps({"lines": [{"product_id": s.product_id, "quantity": 1}], "name": "김민지",
                            "phone": "010-1234-5678", "postal_code": "04524", "address1": "서울 중구 세종대로 110",
                            "payment_method": "cod", "coupons": [cid]}, ensure_ascii=False).encode()
                for cid in claim_ids]

    def request(k: int, host: str) -> bytes:
        i = viewer_of(k)
        v, payload = viewers[i], payloads[i]
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Cookie: lc_session={v.cookie}\r\nX-CSRF-Token: {v.csrf}\r\n"
                f"Content-Type: application/json\r\nIdempotency-Key: \"{uuid.uuid4()}\"\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload

    return request


def race_order(coupons: int, tries: int, concurrency: int) -> list[tuple[int, int]]:
    """(coupon, try) of each attempt: the coupons in windows of concurrency ÷ tries, and inside a window
    every coupon's first try, then every coupon's second, …, so that each coupon's tries are interleaved
    with the others' and all in flight together."""
    width = max(1, concurrency // tries)
    order: list[tuple[int, int]] = []
    for start in range(0, coupons, width):
        window = range(start, min(coupons, start + width))
        for t in range(tries):
            order.extend((c, t) for c in window)
    return order


# -- the checks in the database -------------------------------------------------------------------

@dataclass
class DropCheck:
    rows: int  # claim rows of the drop
    distinct_viewers: int
    claimed: int  # the drop's counter
    redeemed: int  # the drop's counter
    claim_users: dict[int, int]  # claim id → viewer
    redeemed_rows: int = 0  # claim rows in state redeemed
    purchases: int = 0  # purchases of the broadcast made after the drop (all of them name a coupon here)
    with_coupon: int = 0  # of those, naming one of this drop's claims
    distinct_coupons: int = 0
    owners_match: int = 0  # purchases whose buyer owns the coupon they name
    discounted: int = 0  # purchases that took exactly DISCOUNT off
    units_sold: int = 0


async def check_drop(url: str, s: Seeded, drop_id: int, purchases: bool = False) -> DropCheck:
    engine = _engine(url)
    try:
        async with make_sessionmaker(engine, write=False)() as db:
            rows = (await db.execute(select(ClaimedCoupon.id, ClaimedCoupon.user_id, ClaimedCoupon.state)
                                     .where(ClaimedCoupon.drop_id == drop_id))).all()
            d = (await db.execute(select(CouponDrop.claimed, CouponDrop.redeemed)
                                  .where(CouponDrop.id == drop_id))).one()
            c = DropCheck(len(rows), len({r.user_id for r in rows}), int(d.claimed), int(d.redeemed),
                          {int(r.id): int(r.user_id) for r in rows},
                          redeemed_rows=sum(1 for r in rows if r.state == ClaimState.REDEEMED))
            if purchases:
                bought = (await db.execute(select(Purchase.user_id, Purchase.coupon_claim_id, Purchase.discount)
                                           .where(Purchase.broadcast_id == s.broadcast_id))).all()
                mine = [p for p in bought if p.coupon_claim_id in c.claim_users]
                c.purchases = len(bought)
                c.with_coupon = len(mine)
                c.distinct_coupons = len({p.coupon_claim_id for p in mine})
                c.owners_match = sum(1 for p in mine if c.claim_users[p.coupon_claim_id] == p.user_id)
                c.discounted = sum(1 for p in mine if p.discount == DISCOUNT)
                c.units_sold = int(await db.scalar(select(func.coalesce(func.sum(LineupSale.sold), 0))
                                                   .where(LineupSale.broadcast_id == s.broadcast_id)) or 0)
            return c
    finally:
        await engine.dispose()


# -- the figures ----------------------------------------------------------------------------------

@dataclass
class Phase:
    outcome: Outcome
    told: Told
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    check: DropCheck | None = None

    @property
    def answered(self) -> int:
        return len(self.outcome.latencies)

    @property
    def elapsed(self) -> float:
        o = self.outcome
        return o.last_answer - o.first_sent if self.answered else float("nan")

    @property
    def throughput(self) -> float:
        return self.answered / self.elapsed if self.answered and self.elapsed > 0 else 0.0

    def ms(self, p: float) -> float:
        return percentile(self.outcome.latencies, p) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.outcome.latencies) * 1000 if self.outcome.latencies else float("nan")

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.outcome.latencies) * 1000 if self.outcome.latencies else float("nan")

    def other(self, *expected: str) -> dict[str, int]:
        return {k: v for k, v in self.outcome.statuses.items() if k not in expected}

    @property
    def exact(self) -> bool:
        return not self.problems

    def per_answer_ms(self, seconds: float | None) -> float | None:
        return seconds * 1000 / self.answered if seconds is not None and self.answered else None


async def timed(servers: list[Server], go: Any) -> tuple[Outcome, float | None, float]:
    before = server_cpu(servers)
    client_before = time.process_time()
    outcome = await go
    return outcome, cpu_spent(before, server_cpu(servers)), time.process_time() - client_before


async def claim_phase(args: argparse.Namespace, url: str, s: Seeded, servers: list[Server],
                      viewers: list[Buyer]) -> Phase:
    bases = [srv.base for srv in servers]
    drop_id = await open_drop(url, s, args.coupons)
    n = len(viewers)
    told = Told.of(n)
    outcome, srv_cpu, client_cpu = await timed(servers, fire(
        bases, n, args.rate, args.concurrency, claim_request(drop_id, viewers), answered=told.answered))
    phase = Phase(outcome, told, srv_cpu, client_cpu)
    expected = min(n, args.coupons)
    accepted = outcome.statuses.get("201", 0)
    refused = outcome.statuses.get(ALL_CLAIMED, 0)
    c = await check_drop(url, s, drop_id)
    p = phase.problems
    if outcome.lost:
        p.append(f"{outcome.lost} claims lost")
    if accepted != expected:
        p.append(f"{accepted} claims accepted, not {expected}")
    if refused != n - expected:
        p.append(f"{refused} viewers told all_claimed, not {n - expected}")
    if phase.other("201", ALL_CLAIMED):
        p.append(f"other answers: {phase.other('201', ALL_CLAIMED)}")
    if c.rows != expected or c.claimed != expected:
        p.append(f"the database has {c.rows} claim rows and the drop says {c.claimed} claimed, not {expected}")
    if c.distinct_viewers != c.rows:
        p.append(f"{c.rows - c.distinct_viewers} viewers hold more than one coupon")
    got = {told.ids[k]: viewers[k].user_id for k in range(n) if told.codes[k] == "201"}
    if got != c.claim_users:
        p.append("the claims answered are not the claims stored (ids or viewers differ)")
    phase.check = c
    return phase


async def race_phase(args: argparse.Namespace, url: str, s: Seeded, servers: list[Server],
                     viewers: list[Buyer]) -> tuple[Phase, Phase]:
    bases = [srv.base for srv in servers]
    n, tries = len(viewers), args.race_tries
    drop_id = await open_drop(url, s, n)
    told_claims = Told.of(n)
    out_claims = await fire(bases, n, args.rate, args.concurrency, claim_request(drop_id, viewers),
                            answered=told_claims.answered)
    claiming = Phase(out_claims, told_claims)
    if out_claims.lost or out_claims.statuses.get("201", 0) != n or None in told_claims.ids:
        claiming.problems.append(f"the {n} viewers did not each get a coupon: {out_claims.statuses}, "
                                 f"{out_claims.lost} lost")
        return claiming, Phase(Outcome(), Told.of(0), problems=["not run"])
    claim_ids = [int(i) for i in told_claims.ids if i is not None]
    order = race_order(n, tries, args.concurrency)
    attempts = len(order)
    servers_n = len(bases)
    told = Told.of(attempts)
    outcome, srv_cpu, client_cpu = await timed(servers, fire(
        bases, attempts, args.rate, args.concurrency,
        purchase_request(s, viewers, claim_ids, lambda k: order[k][0]),
        server_of=lambda k: (k + order[k][1]) % servers_n,  # round-robin, shifted each try: a coupon's tries
        answered=told.answered))                            # go to different servers
    racing = Phase(outcome, told, srv_cpu, client_cpu)
    c = await check_drop(url, s, drop_id, purchases=True)
    p = racing.problems
    accepted = outcome.statuses.get("201", 0)
    used = outcome.statuses.get(COUPON_USED, 0)
    if outcome.lost:
        p.append(f"{outcome.lost} purchases lost")
    if accepted != n:
        p.append(f"{accepted} purchases accepted, not {n}")
    if used != attempts - n:
        p.append(f"{used} told coupon_used, not {attempts - n}")
    if racing.other("201", COUPON_USED):
        p.append(f"other answers: {racing.other('201', COUPON_USED)}")
    per_coupon = [0] * n
    for k, code in enumerate(told.codes):
        if code == "201":
            per_coupon[order[k][0]] += 1
    if any(x != 1 for x in per_coupon):
        p.append(f"{sum(1 for x in per_coupon if x != 1)} coupons were not bought with exactly once")
    if c.redeemed_rows != n or c.redeemed != n:
        p.append(f"{c.redeemed_rows} claims redeemed and the drop says {c.redeemed}, not {n}")
    if not (c.purchases == c.with_coupon == c.distinct_coupons == c.owners_match == c.discounted == n):
        p.append(f"purchases: {c.purchases}, naming this drop's coupons {c.with_coupon}, distinct "
                 f"{c.distinct_coupons}, by their owner {c.owners_match}, {DISCOUNT} won off {c.discounted}; "
                 f"all should be {n}")
    if c.units_sold != n:
        p.append(f"{c.units_sold} units sold, not {n}")
    racing.check = c
    return claiming, racing


# -- one run ----------------------------------------------------------------------------------------

async def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    processes = args.processes if backend == "postgres" else 1
    redis_url = args.redis_url if processes > 1 else ""
    prefix = redis_prefix()
    if redis_url:
        await redis_ready(redis_url)
    result: dict[str, Any] = {"backend": backend, "processes": processes, "redis": bool(redis_url)}
    errors: dict[int, list[str]] = {}
    failures: list[str] = []  # sign-ins answered with a 5xx (tried again)
    kept = Path(tempfile.gettempdir()) / f"lc-bench-logs-{prefix.strip(':').rsplit('-', 1)[-1]}"
    async with throwaway_database(backend, args.pg_url) as db:
        result["server"] = db.server_version
        servers = [Server(db.workdir, db.url, free_port(), args.log_level, redis_url, prefix)
                   for _ in range(processes)]
        servers[0].upgrade()
        seeded = await seed(db.url)
        completed = False
        try:
            for server in servers:
                await server.start()
            bases = [srv.base for srv in servers]
            signin = min(args.concurrency, args.signin_concurrency)
            if not args.race_only:
                t0 = time.monotonic()
                viewers = await sign_in_guests(bases, args.viewers, signin,
                                               progress_printer(f"{backend}: viewers signed in"),
                                               retries=2, failures=failures)
                result["signin_s"] = time.monotonic() - t0
                print(f"  {backend}: {args.viewers} viewers signed in in {result['signin_s']:.0f} s; claiming",
                      file=sys.stderr, flush=True)
                result["claims"] = await claim_phase(args, db.url, seeded, servers, viewers)
            if not args.no_race:
                racers = await sign_in_guests(bases, args.race_coupons, signin, retries=2, failures=failures,
                                              names="구매자")
                print(f"  {backend}: the race: {args.race_coupons} viewers claim, then "
                      f"{args.race_coupons * args.race_tries} purchases", file=sys.stderr, flush=True)
                result["race_claims"], result["race"] = await race_phase(args, db.url, seeded, servers, racers)
            completed = True
        finally:
            for server in servers:
                server.stop()
            for server in servers:
                found = server.errors()
                if found:
                    errors[server.port] = found
            if errors or failures or not completed:  # the logs outlive the work folder, for a look
                for server in servers:
                    server.keep_log(kept)
                print(f"  {backend}: the servers' logs are kept in {kept}", file=sys.stderr, flush=True)
                if not completed:
                    for port, lines in errors.items():
                        print(f"  server errors (port {port}):", *lines, sep="\n    ", file=sys.stderr)
            if redis_url:
                await redis_forget(redis_url, prefix)
    result["errors"] = errors
    result["signin_failures"] = failures
    return result


# -- the report -------------------------------------------------------------------------------------

def _n(x: float) -> str:
    return f"{x:,.0f}"


def _other(d: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "0"


def aim_of(r: dict[str, Any], ph: Phase) -> str:
    if r["backend"] != "postgres" or r["processes"] != 1:
        return "(the aim is set for PostgreSQL, one process)"
    rate_ok, p99_ok = ph.throughput >= AIM_RATE, ph.ms(99) <= AIM_P99_MS
    verdict = "met" if rate_ok and p99_ok else "NOT met"
    return (f"aim ≥ {_n(AIM_RATE)} answers/s and p99 ≤ {AIM_P99_MS:.0f} ms: {verdict} ({_n(ph.throughput)}/s "
            f"{'≥' if rate_ok else '<'} {_n(AIM_RATE)}, p99 {ph.ms(99):.0f} ms {'≤' if p99_ok else '>'} "
            f"{AIM_P99_MS:.0f})")


def _cpu(ph: Phase) -> str:
    s = ph.per_answer_ms(ph.server_cpu_s)
    text = f"server CPU {s:.2f} ms per answer" if s is not None else "server CPU not measured"
    c = ph.per_answer_ms(ph.client_cpu_s)
    return text + (f" (the load generator's {c:.2f} ms)" if c is not None else "")


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print_machine({"redis-py": __import__("redis").__version__})
    print(f"settings: `livecommerce serve` processes as in the table (round-robin; with more than one, they share "
          f"Redis at {args.redis_url or '(none)'} under a prefix of the run's own), logging.level={args.log_level}, "
          "other settings default (database.pool_size 10 + 10 overflow); a freshly started server, warmed only by "
          "the sign-ins; client, server and database on this machine")
    claims_rows = [r for r in results if "claims" in r]
    if claims_rows:
        print()
        print(f"### Claims: {args.viewers} viewers (one claim each, its own Idempotency-Key) at a drop of "
              f"{args.coupons} coupons, sent at {_n(args.rate)}/s, at most {args.concurrency} in flight")
        print()
        header = ("| backend | server | processes | Redis | answered/s | p50 | p99 | max | accepted | all_claimed "
                  "| other | lost | exact in the database |")
        print(header)
        print("|---" * (header.count("|") - 1) + "|")
        for r in claims_rows:
            ph: Phase = r["claims"]
            c = ph.check
            assert c is not None
            o = ph.outcome
            print(f"| {r['backend']} | {r['server']} | {r['processes']} | {'yes' if r['redis'] else 'no'} "
                  f"| {_n(ph.throughput)} | {ph.ms(50):.0f} ms | {ph.ms(99):.0f} ms | {ph.max_ms:.0f} ms "
                  f"| {o.statuses.get('201', 0)} | {o.statuses.get(ALL_CLAIMED, 0)} "
                  f"| {_other(ph.other('201', ALL_CLAIMED))} "
                  f"| {o.lost} | {'yes' if ph.exact else 'NO'} ({c.rows} claim rows, drop claimed {c.claimed}, "
                  f"{c.distinct_viewers} distinct viewers) |")
        print()
        for r in claims_rows:
            ph = r["claims"]
            print(f"{r['backend']} ({r['processes']} process{'es' if r['processes'] > 1 else ''}): "
                  f"{ph.answered} answers in {ph.elapsed:.2f} s (claims sent within {ph.outcome.sent_by:.2f} s), "
                  f"mean {ph.mean_ms:.0f} ms, {_cpu(ph)}; the last coupon went "
                  f"{(ph.outcome.last_accepted - ph.outcome.first_sent):.2f} s after the first claim; "
                  f"{args.viewers} sign-ins took {r['signin_s']:.0f} s")
            before, after = ph.told.split(ph.outcome.last_accepted)
            print(f"  claims sent while coupons were left: {len(before)}, answered in p50 "
                  f"{percentile(before, 50) * 1000:.0f} / p99 {percentile(before, 99) * 1000:.0f} ms; sent after "
                  f"the last one went: {len(after)}, p50 {percentile(after, 50) * 1000:.0f} / p99 "
                  f"{percentile(after, 99) * 1000:.0f} ms")
            print(f"  {aim_of(r, ph)}")
            for problem in ph.problems:
                print(f"  PROBLEM: {problem}")
    race_rows = [r for r in results if "race" in r]
    if race_rows:
        print()
        print(f"### The redemption race: {args.race_coupons} viewers each claim one coupon of a drop of "
              f"{args.race_coupons}, then {args.race_tries} purchases per coupon "
              f"({args.race_coupons * args.race_tries}, each its own Idempotency-Key, interleaved), at most "
              f"{args.concurrency} in flight")
        print()
        header = ("| backend | processes | claims made | purchases/s | p50 | p99 | max | accepted | coupon_used "
                  "| other | lost | exact in the database |")
        print(header)
        print("|---" * (header.count("|") - 1) + "|")
        for r in race_rows:
            cl: Phase = r["race_claims"]
            ph = r["race"]
            c = ph.check
            o = ph.outcome
            detail = (f"{c.redeemed_rows} claims redeemed, drop redeemed {c.redeemed}, {c.with_coupon} purchases "
                      f"with a coupon, {c.distinct_coupons} distinct" if c else "not checked")
            print(f"| {r['backend']} | {r['processes']} | {cl.outcome.statuses.get('201', 0)} | {_n(ph.throughput)} "
                  f"| {ph.ms(50):.0f} ms | {ph.ms(99):.0f} ms | {ph.max_ms:.0f} ms | {o.statuses.get('201', 0)} "
                  f"| {o.statuses.get(COUPON_USED, 0)} | {_other(ph.other('201', COUPON_USED))} | {o.lost} "
                  f"| {'yes' if ph.exact and cl.exact else 'NO'} ({detail}) |")
        print()
        for r in race_rows:
            ph = r["race"]
            print(f"{r['backend']} ({r['processes']} process{'es' if r['processes'] > 1 else ''}): "
                  f"{ph.answered} answers in {ph.elapsed:.2f} s, mean {ph.mean_ms:.0f} ms, {_cpu(ph)}")
            for problem in r["race_claims"].problems + ph.problems:
                print(f"  PROBLEM: {problem}")
    for r in results:
        if r["signin_failures"]:
            print()
            print(f"guest sign-ins answered with an error and tried again ({r['backend']}): "
                  f"{len(r['signin_failures'])}, the first: {r['signin_failures'][0]}")
        for port, lines in r["errors"].items():
            print()
            print(f"server errors ({r['backend']}, port {port}), the first {len(lines)}:")
            for line in lines:
                print("  " + line[:2000])


def ok(r: dict[str, Any]) -> bool:
    phases = [r[k] for k in ("claims", "race_claims", "race") if k in r]
    return all(ph.exact and ph.outcome.lost == 0 for ph in phases)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("LIVECOMMERCE_TEST_DATABASE_URL",
                                                      "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
                   help="a PostgreSQL database to connect to; the benchmark creates and drops its own next to it")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes, as behind a load balancer (PostgreSQL; SQLite is one process)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                   help="the Redis that several processes share (under a key prefix of the run's own, deleted "
                        "afterwards); one process runs without Redis. '' for none")
    p.add_argument("--viewers", type=int, default=10_000, help="distinct guest viewers, one claim each")
    p.add_argument("--coupons", type=int, default=500, help="coupons in the drop")
    p.add_argument("--rate", type=float, default=10_000.0, help="requests sent per second")
    p.add_argument("--concurrency", type=int, default=200, help="requests in flight at most")
    p.add_argument("--signin-concurrency", type=int, default=50, help="sign-ins in flight at most (before the clock)")
    p.add_argument("--race-coupons", type=int, default=200, help="viewers, and coupons, in the redemption race")
    p.add_argument("--race-tries", type=int, default=5, help="purchases tried with each coupon")
    p.add_argument("--no-race", action="store_true", help="the claims only")
    p.add_argument("--race-only", action="store_true", help="the redemption race only")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args()
    if not (1 <= args.viewers <= 50_000 and 1 <= args.coupons <= 100_000 and args.rate > 0
            and 1 <= args.concurrency <= 2000 and 1 <= args.signin_concurrency <= 500 and 1 <= args.processes <= 16
            and 1 <= args.race_coupons <= 10_000 and 2 <= args.race_tries <= 20
            and not (args.no_race and args.race_only)):
        p.error("viewers 1..50000, coupons 1..100000, rate > 0, concurrency 1..2000, signin-concurrency 1..500, "
                "processes 1..16, race-coupons 1..10000, race-tries 2..20; not both --no-race and --race-only")
    if args.redis_url and not args.redis_url.startswith("redis://127.0.0.1"):
        p.error("--redis-url must be a redis://127.0.0.1 address")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [asyncio.run(run(b, args)) for b in backends]
    report(results, args)
    return 0 if all(ok(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
