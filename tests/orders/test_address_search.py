"""The postcode search over real HTTP on each backend (`GET /api/v1/addresses`), and the address book it reads:
filled from a CSV file by `livecommerce addresses import` (all the rows or, with a bad one, none; the same
row twice is one row) and by the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.app import create_app
from livecommerce.config import Config, build_config
from livecommerce.db import make_engine, make_sessionmaker
from livecommerce.demo import DEMO_ADDRESSES
from livecommerce.keys import AppKeys
from orders.address_book import import_csv
from orders.addresses import QUERY_PATTERN
from orders.models import Address
from tests.support import fresh

HEADER = "postal_code,road_address,jibun_address,building_name"
CITY_HALL = {"postal_code": "04524", "road_address": "서울특별시 중구 세종대로 110",
             "jibun_address": "서울특별시 중구 태평로1가 31", "building_name": "서울특별시청"}


async def demo_book(db: AsyncSession) -> int:
    report = await import_csv(db, DEMO_ADDRESSES.read_text(encoding="utf-8").splitlines())
    await db.commit()
    assert report.bad == 0 and report.skipped == 0
    return report.added


async def addresses(db: AsyncSession) -> int:
    return int(await (await fresh(db)).scalar(select(func.count()).select_from(Address)) or 0)


async def find(client: TestClient, q: str | None) -> tuple[int, Any, Any]:
    resp = await client.get("/api/v1/addresses", params={} if q is None else {"q": q})
    return resp.status, await resp.json(), resp.headers


async def test_a_road_name_finds_its_addresses_best_first(client: TestClient, db: AsyncSession) -> None:
    assert await demo_book(db) >= 60
    status, body, headers = await find(client, "세종대로")
    assert status == 200, body
    assert body["truncated"] is False
    roads = [r["road_address"] for r in body["results"]]
    assert roads[:3] == ["서울특별시 중구 세종대로 99", "서울특별시 중구 세종대로 110", "서울특별시 중구 세종대로 124"]
    assert all("세종대로" in r for r in roads)
    assert CITY_HALL in body["results"]
    assert headers["Cache-Control"] == "private, max-age=300"  # the browser asks once for a while
    status, body, _ = await find(client, "  세종대로,  110 ")  # spaces and punctuation do not matter
    assert body["results"] == [CITY_HALL]
    status, body, _ = await find(client, "서울 중구 시청")  # words anywhere: the building's name
    assert body["results"] == [CITY_HALL]
    status, body, _ = await find(client, "중구 창경궁로")
    assert [r["road_address"] for r in body["results"]] == ["서울특별시 중구 창경궁로 17"]
    status, body, _ = await find(client, "망원시장")  # a building's name; a row without one answers null
    assert [r["postal_code"] for r in body["results"]] == ["04007"]
    status, body, _ = await find(client, "없는도로 12")
    assert (status, body) == (200, {"results": [], "truncated": False})


async def test_five_digits_find_the_postal_code(client: TestClient, db: AsyncSession) -> None:
    await demo_book(db)
    status, body, _ = await find(client, "04524")
    assert (status, body) == (200, {"results": [CITY_HALL], "truncated": False})
    status, body, _ = await find(client, "04529")
    assert len(body["results"]) == 3 and {r["postal_code"] for r in body["results"]} == {"04529"}
    nameless = [r for r in body["results"] if r["building_name"] is None]
    assert nameless == [{"postal_code": "04529", "road_address": "서울특별시 중구 남대문시장길 22",
                         "jibun_address": "서울특별시 중구 남창동 33", "building_name": None}]


async def test_at_most_twenty_and_it_says_there_were_more(client: TestClient, db: AsyncSession) -> None:
    await demo_book(db)
    status, body, _ = await find(client, "서울특별시")
    assert status == 200 and len(body["results"]) == 20 and body["truncated"] is True
    lengths = [len(r["road_address"]) for r in body["results"]]
    assert lengths == sorted(lengths)


async def test_a_query_too_short_or_too_long_is_refused_with_a_reason(client: TestClient, db: AsyncSession) -> None:
    await demo_book(db)
    for q in ("", "세", " . ", "ㅅㅈ"):
        status, body, _ = await find(client, q)
        assert status == 400, q
        assert body["error"]["code"] == "address_query_too_short"
        assert body["error"]["message"] == "주소의 도로명, 건물 이름이나 동을 2자 이상 입력하세요."
    status, body, _ = await find(client, "세" * 81)
    assert status == 400 and body["error"]["code"] == "address_query_too_long"
    assert body["error"]["message"] == "검색어는 80자 이내로 입력하세요."
    status, body, _ = await find(client, None)
    assert status == 422 and body["error"]["details"][0]["field"] == "q"
    await client.get("/?lang=en")
    status, body, _ = await find(client, "x")
    assert status == 400
    assert body["error"]["message"] == ("Type at least 2 letters or numbers of the address: a road, a building or "
                                        "a dong.")


async def test_searches_are_limited_per_address(config: Config, aiohttp_client: Any, db: AsyncSession) -> None:
    await demo_book(db)
    client = await aiohttp_client(create_app(config.replace(security={"address_searches_per_minute": 3})))
    statuses = [(await client.get("/api/v1/addresses", params={"q": "세종대로"})).status for _ in range(3)]
    resp = await client.get("/api/v1/addresses", params={"q": "창경궁로"})
    assert statuses == [200, 200, 200]
    assert resp.status == 429 and resp.headers["Retry-After"] == "20"
    assert (await resp.json())["error"]["code"] == "too_many_attempts"


async def test_answers_are_kept_until_the_address_book_changes(app: web.Application, client: TestClient,
                                                               db: AsyncSession) -> None:
    await demo_book(db)
    before = [r["road_address"] for r in (await find(client, "창경궁로"))[1]["results"]]
    assert len(before) == 4
    # written by another program (the import command): the answer kept is given until it expires
    db.add(Address(postal_code="03195", road_address="서울특별시 종로구 창경궁로 80", search_text="03195 창경궁로 80"))
    await db.commit()
    assert [r["road_address"] for r in (await find(client, "창경궁로"))[1]["results"]] == before
    # written by the app: forgotten at its commit
    async with app[AppKeys.db].begin() as writer:
        writer.add(Address(postal_code="03195", road_address="서울특별시 종로구 창경궁로 86",
                           search_text="03195 서울특별시 종로구 창경궁로 86"))
    after = [r["road_address"] for r in (await find(client, "창경궁로"))[1]["results"]]
    assert len(after) == 6 and "서울특별시 종로구 창경궁로 86" in after  # and the row written before


async def test_the_document_declares_the_search(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    op = doc["paths"]["/api/v1/addresses"]["get"]
    assert op["x-access"] and set(op["responses"]) >= {"200", "400", "422", "429"}
    [q] = op["parameters"]
    assert q["name"] == "q" and q["required"] is True
    assert q["schema"]["pattern"] == QUERY_PATTERN and q["schema"]["maxLength"] == 80


async def test_an_import_adds_each_address_once(db: AsyncSession) -> None:
    rows = [HEADER, "04524,서울특별시 중구 세종대로 110,서울특별시 중구 태평로1가 31,서울특별시청",
            "03195,서울특별시 종로구 창경궁로 88,,광장시장", "03195,서울특별시 종로구 창경궁로 88,,광장시장"]
    first = await import_csv(db, rows, batch=2)
    await db.commit()
    assert (first.added, first.skipped, first.bad) == (2, 1, 0)  # twice in the file: once
    again = await import_csv(db, rows)
    await db.commit()
    assert (again.added, again.skipped, again.bad) == (0, 3, 0)
    assert await addresses(db) == 2
    bad = await import_csv(db, [*rows, "0319,서울특별시 종로구 창경궁로 90,,"])
    assert bad.bad == 1 and [str(p) for p in bad.problems] == ["line 5: postal_code must be 5 digits (got '0319')"]


async def test_an_import_names_what_it_cannot_read(db: AsyncSession) -> None:
    raw = [f"{HEADER}\n".encode(), "04524,서울특별시 중구 세종대로 110,,\n".encode(),
           "04519,Café 99,,\n".encode("latin-1")]
    latin = await import_csv(db, (line.decode("utf-8") for line in raw))  # decoded as the command does
    assert [str(p) for p in latin.problems] == ["line 3: not UTF-8 text"]
    header = await import_csv(db, ["우편번호,도로명주소", "04524,서울특별시 중구 세종대로 110"])
    assert [p.line for p in header.problems] == [1] and header.added == 0
    assert "the header must be postal_code,road_address" in header.problems[0].problem
    many = await import_csv(db, [HEADER, *(f"{n},서울특별시 중구 세종대로 {n},," for n in range(30))])
    assert many.bad == 30 and len(many.problems) == many.SHOWN and many.added == 0
    await db.rollback()
    assert await addresses(db) == 0


# -- the command -----------------------------------------------------------------------------------

def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOMMERCE_")}
    return subprocess.run([sys.executable, "-m", "livecommerce.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


async def count_in(url: str) -> int:
    engine = make_engine(build_config({"database": {"url": url}}, env={}).database)
    try:
        async with make_sessionmaker(engine, write=False)() as db:
            return int(await db.scalar(select(func.count()).select_from(Address)) or 0)
    finally:
        await engine.dispose()


async def test_the_import_command_adds_a_file_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/livecommerce.db"
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n04524,서울특별시 중구 세종대로 110,서울특별시 중구 태평로1가 31,서울특별시청\n"
                    "03195,서울특별시 종로구 창경궁로 88,,광장시장\n04007,서울특별시 마포구 포은로8길 14,,\n",
                    encoding="utf-8")
    proc = run(["addresses", "import", str(good)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3 addresses added, 0 skipped (already in the address book)"
    again = run(["addresses", "import", str(good)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "0 addresses added, 3 skipped (already in the address book)"
    assert await count_in(url) == 3


async def test_the_import_command_names_bad_rows_and_imports_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/livecommerce.db"
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n04524,서울특별시 중구 세종대로 110,,\n4524,서울특별시 중구 세종대로 99,,\n"
                   "04519,서울특별시 중구 세종대로 99\n", encoding="utf-8")
    proc = run(["addresses", "import", str(bad)], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{bad}: line 3: postal_code must be 5 digits (got '4524')",
                                        f"{bad}: line 4: expected 4 columns, found 2",
                                        "nothing imported: 2 bad rows"]
    assert await count_in(url) == 0  # the good row before them is not kept either
    missing = run(["addresses", "import", str(tmp_path / "nowhere.csv")], tmp_path)
    assert missing.returncode == 2 and "no file" in missing.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_demo_fills_the_address_book_once(config: Config, db: AsyncSession) -> None:
    from livecommerce.db import utcnow
    from livecommerce.demo import seed

    engine = make_engine(config.database)
    try:
        for _ in range(2):
            async with make_sessionmaker(engine).begin() as s:
                await seed(s, config, utcnow())
    finally:
        await engine.dispose()
    n = await addresses(db)
    assert n == len(DEMO_ADDRESSES.read_text(encoding="utf-8").splitlines()) - 1
