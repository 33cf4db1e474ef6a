"""The postcode search's rules, without a server: a query read and normalised, which addresses match, how
they rank, and the address book's CSV rows checked. The API document's pattern agrees with the reading."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from orders.addresses import (
    LIMIT,
    QUERY_MAX,
    QUERY_PATTERN,
    AddressQuery,
    AddressRow,
    RowProblem,
    matches,
    normalise,
    parse_query,
    pick,
    rank_key,
    read_csv,
    search_text,
)
from orders.rules import RuleError

CITY_HALL = AddressRow("04524", "서울특별시 중구 세종대로 110", "서울특별시 중구 태평로1가 31", "서울특별시청")
DEOKSUGUNG = AddressRow("04519", "서울특별시 중구 세종대로 99", "서울특별시 중구 정동 5-1", "덕수궁")
SEJONG_CENTER = AddressRow("03172", "서울특별시 종로구 세종대로 175", "서울특별시 종로구 세종로 81-3", "세종문화회관")
NAMDAEMUN = AddressRow("04529", "서울특별시 중구 남대문시장4길 21", "서울특별시 중구 남창동 49", "남대문시장")
GWANGJANG = AddressRow("03195", "서울특별시 종로구 창경궁로 88", None, None)
BOOK = [CITY_HALL, DEOKSUGUNG, SEJONG_CENTER, NAMDAEMUN, GWANGJANG]


def test_a_query_is_trimmed_its_spaces_collapsed_and_its_punctuation_a_separator() -> None:
    assert normalise("  서울 중구,  세종대로-110!  ") == "서울 중구 세종대로 110"
    assert normalise("Seoul (Jung-gu)") == "seoul jung gu"
    assert normalise("《세종대로》…110번지") == "세종대로 110번지"
    assert normalise("세종대로\u3000110\t") == "세종대로 110"  # every kind of space
    assert normalise("漢字 ㄱㄴ é") == ""  # other scripts and lone jamo are not searched by
    assert normalise("İK") == "k"  # lower case is ASCII's: the dotted I is not an i


def test_every_word_must_be_in_the_address() -> None:
    q = parse_query("세종대로 110")
    assert q == AddressQuery(("세종대로", "110"))
    assert matches(q, CITY_HALL.postal_code, CITY_HALL.search_text)
    assert not matches(q, DEOKSUGUNG.postal_code, DEOKSUGUNG.search_text)  # 세종대로 but not 110
    assert matches(parse_query("중구 시청"), CITY_HALL.postal_code, CITY_HALL.search_text)  # in the building's name
    assert matches(parse_query("태평로1가"), CITY_HALL.postal_code, CITY_HALL.search_text)  # the jibun address
    assert parse_query("세종대로 세종대로 110").words == ("세종대로", "110")  # a word twice is one word


def test_five_digits_are_a_postal_code_searched_exactly() -> None:
    q = parse_query(" 04524 ")
    assert q.postal_code == "04524"
    assert matches(q, "04524", CITY_HALL.search_text)
    assert not matches(q, "04519", "04524 somewhere else")  # the code itself, not the text
    assert parse_query("0452").postal_code is None  # four digits: a word like any other
    assert parse_query("04524 세종대로").postal_code is None  # a word with it: words, the code ranked first


def test_too_short_or_too_long_queries_are_refused_with_their_reason() -> None:
    for raw in ("", " ", "가", "a", "!!", "ㅅㅈ", "漢字", "- 1 -"):
        with pytest.raises(RuleError) as refused:
            parse_query(raw)
        assert refused.value.code == "address_query_too_short", raw
        assert refused.value.params == {"min": 2}
    assert parse_query("가 1").words == ("가", "1")  # two characters, counted across words
    assert parse_query("x" * QUERY_MAX).words == ("x" * QUERY_MAX,)
    with pytest.raises(RuleError) as refused:
        parse_query("x" * (QUERY_MAX + 1))
    assert refused.value.code == "address_query_too_long" and refused.value.params == {"max": QUERY_MAX}


@given(st.text(st.one_of(st.characters(), st.sampled_from("가힣세종aZ09 -!\u3000ㄱ\u0301")), max_size=QUERY_MAX))
def test_the_documents_pattern_says_which_queries_are_taken(raw: str) -> None:
    assume("\x00" not in raw)  # refused before: no text field takes it
    try:
        parse_query(raw)
        taken = True
    except RuleError:
        taken = False
    assert taken == (re.search(QUERY_PATTERN, raw) is not None)


def test_the_search_text_holds_every_part_of_the_address_normalised() -> None:
    assert CITY_HALL.search_text == "04524 서울특별시 중구 세종대로 110 서울특별시 중구 태평로1가 31 서울특별시청"
    assert search_text("03195", "서울특별시 종로구 창경궁로 88") == "03195 서울특별시 종로구 창경궁로 88"
    assert search_text("04524", "세종대로 １１０") == "04524 세종대로 110"  # full-width digits read as digits


def test_the_postal_code_asked_for_comes_first_then_the_shortest_road_address() -> None:
    q = parse_query("세종대로")
    assert [r.postal_code for r in pick(q, BOOK).results] == ["04519", "04524", "03172"]  # 99, 110, 175
    q = parse_query("04524 세종대로")
    assert rank_key(q, CITY_HALL) < rank_key(q, DEOKSUGUNG)
    assert pick(q, BOOK).results == (CITY_HALL,)


def test_at_most_twenty_and_says_when_there_were_more() -> None:
    many = [AddressRow("04529", f"서울특별시 중구 남대문시장길 {n}") for n in range(1, 31)]
    result = pick(parse_query("남대문시장길"), many)
    assert len(result.results) == LIMIT and result.truncated
    assert result.results[0].road_address == "서울특별시 중구 남대문시장길 1"
    assert [len(r.road_address) for r in result.results] == sorted(len(r.road_address) for r in result.results)
    exact = pick(parse_query("남대문시장길"), many[:LIMIT])
    assert len(exact.results) == LIMIT and not exact.truncated
    assert pick(parse_query("광장시장"), BOOK).results == ()  # a building name the book does not have


def test_a_csv_file_gives_its_addresses_and_names_its_bad_lines() -> None:
    text = ("\ufeffpostal_code,road_address,jibun_address,building_name\n"
            "04524,서울특별시 중구 세종대로 110,서울특별시 중구 태평로1가 31,서울특별시청\n"
            "\n"
            "03195, 서울특별시 종로구 창경궁로 88 ,,\n"
            "4524,서울특별시 중구 세종대로 99,,\n"
            "04519,,,\n"
            "04519,서울특별시 중구 세종대로 99,\n"
            '04519,"서울특별시 중구 세종대로 99",정동,"덕수궁, 대한문"\n'
            "04519,---,,\n")
    got = list(read_csv(text.splitlines()))
    assert got[0] == CITY_HALL
    assert got[1] == AddressRow("03195", "서울특별시 종로구 창경궁로 88")  # trimmed; empty is none
    problems = [(p.line, p.problem) for p in got if isinstance(p, RowProblem)]
    assert problems == [
        (5, "postal_code must be 5 digits (got '4524')"),
        (6, "road_address is empty"),
        (7, "expected 4 columns, found 3"),
        (9, "road_address has no letters or digits to search by"),
    ]
    assert got[5] == AddressRow("04519", "서울특별시 중구 세종대로 99", "정동", "덕수궁, 대한문")


def test_a_csv_file_needs_its_header() -> None:
    [problem] = list(read_csv(["postal,road", "04524,서울특별시 중구 세종대로 110"]))
    assert isinstance(problem, RowProblem) and problem.line == 1
    assert "postal_code,road_address,jibun_address,building_name" in problem.problem
    [empty] = list(read_csv([]))
    assert isinstance(empty, RowProblem) and empty.problem == "the file is empty"
    long = "가" * 201
    [bad] = list(read_csv(["postal_code,road_address,jibun_address,building_name", f"04524,{long},,"]))
    assert isinstance(bad, RowProblem) and bad.problem == "road_address is longer than 200 characters"
