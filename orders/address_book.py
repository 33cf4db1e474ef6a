"""The address book in the database: the postcode search (`search`, the rules of `addresses` as one
statement), the answers each process keeps for a while (`SearchCache`), and the import of a CSV file
(`import_csv`, behind `livecommerce addresses import` and the demo)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.caches import Changed, Watch
from livecommerce.uow import UnitOfWork, dialect_name

from .addresses import LIMIT, AddressQuery, AddressRow, RowProblem, SearchResult, ranked, read_csv
from .models import Address

__all__ = ["ADDRESS_SEARCHES", "WATCHES", "ImportReport", "SearchCache", "import_csv", "search"]

SEARCH_CACHE_SECONDS = 300.0  # an import made by another program is searched after at most this long


async def search(db: UnitOfWork, query: AddressQuery, limit: int = LIMIT) -> SearchResult:
    """The addresses that answer `query`, best first (`addresses.rank_key`): a postal code by its index, words
    each as a LIKE on the normalised text (PostgreSQL's trigram index serves them). One more than `limit` is
    read, to tell whether there were more."""
    stmt = select(Address.postal_code, Address.road_address, Address.jibun_address, Address.building_name)
    if query.postal_code is not None:
        stmt = stmt.where(Address.postal_code == query.postal_code)
    else:
        # the words hold only letters, digits and Hangul (`addresses.normalise`): nothing LIKE would read as a
        # wildcard or an escape
        stmt = stmt.where(*(Address.search_text.like(f"%{word}%") for word in query.words))
    stmt = stmt.order_by(case((Address.postal_code.in_(query.words), 0), else_=1), func.length(Address.road_address),
                         Address.road_address, Address.id).limit(limit + 1)
    rows = (await db.execute(stmt)).all()
    return ranked(query, (AddressRow(*r) for r in rows), limit)


class SearchCache:
    """Answers to the latest queries (by `AddressQuery.key`), kept `ttl` seconds: the same few roads are asked
    for again and again. A commit of the app's that changes the address book forgets them all; an import made
    by another program is seen once they expire."""

    def __init__(self, ttl: float = SEARCH_CACHE_SECONDS, limit: int = 5_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._entries: dict[str, tuple[float, SearchResult]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes when the cache forgets: a search begun before must not keep its answer."""
        return self._generation

    def get(self, key: str) -> SearchResult | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def keep(self, key: str, result: SearchResult, generation: int) -> None:
        if generation != self._generation:
            return
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl, result)

    def forget(self, changed: Changed) -> None:
        self._generation += 1
        self._entries.clear()


ADDRESS_SEARCHES = web.AppKey("orders_address_searches", SearchCache)
WATCHES = (Watch("addresses"),)


# -- importing a file ------------------------------------------------------------------------------

@dataclass
class ImportReport:
    """What an import did: addresses added, rows skipped (already in the book, or twice in the file) and the
    rows refused (`problems`: the first `SHOWN` of them; `bad`: how many). With a refused row nothing should
    be kept: the caller rolls back."""

    SHOWN = 20

    added: int = 0
    skipped: int = 0
    bad: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    def refuse(self, problem: RowProblem) -> None:
        self.bad += 1
        if len(self.problems) < self.SHOWN:
            self.problems.append(problem)


def _insert(db: AsyncSession) -> Any:
    return pg_insert if dialect_name(db) == "postgresql" else sqlite_insert


async def _write(db: AsyncSession, rows: list[AddressRow], report: ImportReport) -> None:
    if not rows:
        return
    values = [{"postal_code": r.postal_code, "road_address": r.road_address, "jibun_address": r.jibun_address,
               "building_name": r.building_name, "search_text": r.search_text} for r in rows]
    stmt = (_insert(db)(Address).values(values)
            .on_conflict_do_nothing(index_elements=["postal_code", "road_address"]).returning(Address.id))
    added = len((await db.execute(stmt)).all())
    report.added += added
    report.skipped += len(rows) - added


async def import_csv(db: AsyncSession, lines: Iterable[str], batch: int = 500) -> ImportReport:
    """Add the addresses of a CSV file (`addresses.read_csv`: UTF-8, with its header) that the book does not
    have yet; an address it has (the same postal code and road address) is skipped. Every row is read, so
    that the report names each bad one; after the first, nothing more is written (roll back)."""
    report = ImportReport()
    pending: dict[tuple[str, str], AddressRow] = {}
    read = 0

    def counted() -> Iterator[str]:
        nonlocal read
        for text in lines:
            read += 1
            yield text

    try:
        for item in read_csv(counted()):
            if isinstance(item, RowProblem):
                report.refuse(item)
                continue
            if report.bad:
                continue
            key = (item.postal_code, item.road_address)
            if key in pending:
                report.skipped += 1
                continue
            pending[key] = item
            if len(pending) >= batch:
                await _write(db, list(pending.values()), report)
                pending.clear()
    except UnicodeDecodeError:  # `lines` decodes as it reads: the line after the last one read
        report.refuse(RowProblem(read + 1, "not UTF-8 text"))
    except csv.Error as exc:  # a row the reader cannot take (a field over its size limit)
        report.refuse(RowProblem(read, f"not a readable CSV row ({exc})"))
    if not report.bad:
        await _write(db, list(pending.values()), report)
    return report
