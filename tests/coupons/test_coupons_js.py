"""The buy sheet's coupon estimate (web/static/js/coupons.js) takes off what the server's rules take off:
the same discount for each coupon (fixed, percent, cap, minimum, scope) and the same best coupon, on many
random carts."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from coupons import rules

CHECK_SCRIPT = Path(__file__).with_name("coupons_check.mjs")


def run_node(cases: list[dict[str, Any]]) -> list[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, str(CHECK_SCRIPT)], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def _coupon(rng: random.Random, cid: int) -> dict[str, Any]:
    kind = rng.choice(["fixed", "percent"])
    scope = rng.choice(["all", "all", "merchant", "products"])
    return {
        "id": cid, "kind": kind,
        "value": rng.choice([500, 1000, 3000, 5000, 12345, 50000]) if kind == "fixed" else rng.randint(1, 100),
        "max_discount": rng.choice([None, 1000, 5000, 7777]) if kind == "percent" else None,
        "min_order": rng.choice([0, 0, 10000, 30000, 55555]),
        "scope": scope,
        "merchant_id": rng.randint(1, 3) if scope == "merchant" else None,
        "product_ids": rng.sample(range(1, 7), rng.randint(1, 3)) if scope == "products" else [],
    }


def _lines(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for pid in rng.sample(range(1, 7), rng.randint(1, 4)):
        price = rng.choice([990, 5500, 9900, 12900, 13900, 18999])
        out.append({"product_id": pid, "merchant_id": 1 + pid % 3, "line_total": price * rng.randint(1, 4)})
    return out


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    lines = [rules.Line(ln["product_id"], ln["merchant_id"], ln["line_total"], 1) for ln in case["lines"]]
    coupons = [rules.Coupon(kind=c["kind"], value=c["value"], max_discount=c["max_discount"],  # type: ignore[arg-type]
                            min_order=c["min_order"], scope=c["scope"], merchant_id=c["merchant_id"],  # type: ignore[arg-type]
                            product_ids=frozenset(c["product_ids"]), id=c["id"]) for c in case["coupons"]]
    each: list[int | str] = []
    for c in coupons:
        try:
            each.append(rules.discount(c, lines))
        except rules.NotApplicable as exc:
            each.append(exc.reason)
    best = rules.best_coupon(coupons, lines)
    return {"each": each, "best": [best.id, rules.discount(best, lines)] if best else None}


def test_the_estimate_matches_the_rules() -> None:
    rng = random.Random(20261201)
    cases = []
    for _ in range(400):
        ids = rng.sample(range(1, 50), rng.randint(1, 4))
        cases.append({"coupons": [_coupon(rng, i) for i in ids], "lines": _lines(rng)})
    cases.append({"coupons": [{"id": 1, "kind": "percent", "value": 15, "max_discount": None, "min_order": 0,
                               "scope": "all", "merchant_id": None, "product_ids": []}],
                  "lines": [{"product_id": 1, "merchant_id": 1, "line_total": 12900}]})  # floored: 1,935
    got = run_node(cases)
    assert got[-1]["each"] == [1935]
    for case, answer in zip(cases, got, strict=True):
        assert answer == _expected(case), case
