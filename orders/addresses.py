"""Finding a delivery address, as pure rules on plain data, tested without a server: a query read and
normalised, the text an address is found by, whether an address matches, how the matches rank, and a row
of the address book's CSV file checked. `address_book` runs the same search in the database.

A query and an address are normalised alike (`normalise`): only Hangul syllables, ASCII letters and
digits count, everything else (punctuation, spaces, other scripts) separates words; letters are lower
case. A query needs at least `QUERY_MIN` of those characters and at most `QUERY_MAX` characters in all
(the API document says the same with `QUERY_PATTERN`). Five digits and nothing else is a postal code,
matched exactly; otherwise every word of the query must appear in the address's text (AND). Matches
rank the address whose postal code the query names first, then the shortest road address (the more
of it the query said), at most `LIMIT` of them."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from livecommerce.errors import N_

from .rules import RuleError

QUERY_MIN = 2  # characters that count (`SEARCHABLE`)
QUERY_MAX = 80  # characters in all, as typed
LIMIT = 20  # results at most

# What counts in a query and an address: Hangul syllables, ASCII letters and digits.
SEARCHABLE = "0-9A-Za-z\uac00-\ud7a3"
_SEARCHABLE = re.compile(f"[{SEARCHABLE}]")
_POSTAL = re.compile(r"[0-9]{5}")
# The queries the API takes, as its document says: at least `QUERY_MIN` searchable characters, no NUL.
QUERY_PATTERN = "^" + f"[^\\x00]*[{SEARCHABLE}]" * QUERY_MIN + "[^\\x00]*$"

CSV_HEADER = ("postal_code", "road_address", "jibun_address", "building_name")
ROAD_MAX, JIBUN_MAX, BUILDING_MAX = 200, 200, 100  # the columns' lengths (`models.Address`)


def normalise(text: str) -> str:
    """Searchable characters kept (ASCII letters in lower case), every other one a separator; words
    separated by one space, none at either end."""
    kept = "".join((ch.lower() if ch.isascii() else ch) if _SEARCHABLE.match(ch) else " " for ch in text)
    return " ".join(kept.split())


@dataclass(frozen=True)
class AddressQuery:
    """A query as searched: its words (normalised), and the postal code when it is only that."""

    words: tuple[str, ...]
    postal_code: str | None = None

    @property
    def key(self) -> str:
        """The query as one string: two queries with the same key find the same addresses."""
        return " ".join(self.words)


def parse_query(raw: str) -> AddressQuery:
    """Read what a person typed; refused (`RuleError`) when it is too long or has too little to search by."""
    if len(raw) > QUERY_MAX:
        raise RuleError("address_query_too_long", N_("Type at most %(max)s characters to search."), max=QUERY_MAX)
    text = normalise(raw)
    if len(text.replace(" ", "")) < QUERY_MIN:
        raise RuleError("address_query_too_short",
                        N_("Type at least %(min)s letters or numbers of the address: a road, a building or a "
                           "dong."), min=QUERY_MIN)
    words = tuple(dict.fromkeys(text.split()))  # each word once, in the order typed
    postal = words[0] if len(words) == 1 and _POSTAL.fullmatch(words[0]) else None
    return AddressQuery(words, postal)


def search_text(postal_code: str, road_address: str, jibun_address: str | None = None,
                building_name: str | None = None) -> str:
    """What an address is found by: all of it, normalised (compatibility forms first made plain, so that
    full-width digits or a circled number read as what they show)."""
    parts = [postal_code, road_address, jibun_address or "", building_name or ""]
    return normalise(unicodedata.normalize("NFKC", " ".join(parts)))


@dataclass(frozen=True)
class AddressRow:
    """An address as the search answers it (and as the CSV file gives it)."""

    postal_code: str
    road_address: str
    jibun_address: str | None = None
    building_name: str | None = None

    @property
    def search_text(self) -> str:
        return search_text(self.postal_code, self.road_address, self.jibun_address, self.building_name)


def matches(query: AddressQuery, postal_code: str, text: str) -> bool:
    """Whether an address (its postal code and its `search_text`) answers the query."""
    if query.postal_code is not None:
        return postal_code == query.postal_code
    return all(word in text for word in query.words)


def rank_key(query: AddressQuery, row: AddressRow) -> tuple[int, int, str]:
    """How matches are ordered: the postal code the query names first, then the fewest characters of
    road address, then in the road address's order."""
    return (0 if row.postal_code in query.words else 1, len(row.road_address), row.road_address)


@dataclass(frozen=True)
class SearchResult:
    results: tuple[AddressRow, ...]
    truncated: bool  # more addresses matched than are given: the query could say more


def ranked(query: AddressQuery, found: Iterable[AddressRow], limit: int = LIMIT) -> SearchResult:
    """The first `limit` of addresses that match, in rank order."""
    rows = sorted(found, key=lambda r: rank_key(query, r))
    return SearchResult(tuple(rows[:limit]), len(rows) > limit)


def pick(query: AddressQuery, rows: Iterable[AddressRow], limit: int = LIMIT) -> SearchResult:
    """The best `limit` of the addresses that match, in rank order: the search, on addresses in memory."""
    return ranked(query, (r for r in rows if matches(query, r.postal_code, r.search_text)), limit)


# -- the address book's CSV file ---------------------------------------------------------------------

class RowProblem(Exception):
    """A row of the file that cannot be imported: its line number and what is wrong with it."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


def check_header(line: int, fields: Sequence[str]) -> None:
    names = tuple(f.strip().lstrip("\ufeff") for f in fields)
    if names != CSV_HEADER:
        raise RowProblem(line, f"the header must be {','.join(CSV_HEADER)} (got {','.join(names) or 'nothing'})")


def _text(line: int, name: str, value: str, limit: int) -> str:
    value = unicodedata.normalize("NFC", value.strip())
    if "\x00" in value:
        raise RowProblem(line, f"{name} holds a NUL character")
    if len(value) > limit:
        raise RowProblem(line, f"{name} is longer than {limit} characters")
    return value


def parse_row(line: int, values: Sequence[str]) -> AddressRow:
    """One row of the file (`line`: its line number, for the message) as an address, or `RowProblem`."""
    if len(values) != len(CSV_HEADER):
        raise RowProblem(line, f"expected {len(CSV_HEADER)} columns, found {len(values)}")
    postal = values[0].strip()
    if not _POSTAL.fullmatch(postal):
        raise RowProblem(line, f"postal_code must be 5 digits (got {postal!r})")
    road = _text(line, "road_address", values[1], ROAD_MAX)
    if not road:
        raise RowProblem(line, "road_address is empty")
    if not normalise(road):
        raise RowProblem(line, "road_address has no letters or digits to search by")
    jibun = _text(line, "jibun_address", values[2], JIBUN_MAX) or None
    building = _text(line, "building_name", values[3], BUILDING_MAX) or None
    return AddressRow(postal, road, jibun, building)


def read_csv(lines: Iterable[str]) -> Iterator[AddressRow | RowProblem]:
    """The rows of an address book file (UTF-8 text, its header `CSV_HEADER` first), each an address or
    the problem with it; blank lines are passed over."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        yield RowProblem(1, "the file is empty")
        return
    try:
        check_header(reader.line_num, header)
    except RowProblem as exc:
        yield exc
        return
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue
        try:
            yield parse_row(reader.line_num, fields)
        except RowProblem as exc:
            yield exc
