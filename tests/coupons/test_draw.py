"""The verifiable giveaway draw: the published values, determinism, the draw's errors, tampering
caught by `verify`, fairness over many seeds, and the browser's draw.js giving exactly the same
results as the server (run in Node.js)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import Counter
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupons.draw import (
    MAX_ENTRY,
    DrawError,
    below,
    commitment,
    draw,
    entries_digest,
    entries_text,
    new_seed,
    verify,
    words,
)

PROPERTIES = settings(max_examples=200, deadline=None, database=None)
SEED = "0123456789abcdef" * 4
ENTRIES = [42, 7, 1000, 3, 19, 256, 88, 5]
DIGEST = entries_digest(ENTRIES)
CHECK_SCRIPT = Path(__file__).with_name("draw_check.mjs")


def seeded(i: int) -> str:
    """A fixed seed for case `i`, so a failure can be replayed."""
    return hashlib.sha256(f"case {i}".encode()).hexdigest()


# -- the published values -------------------------------------------------------------------------

def test_a_seed_is_32_random_bytes_in_hex() -> None:
    seeds = {new_seed() for _ in range(100)}
    assert len(seeds) == 100
    for seed in seeds:
        assert len(seed) == 64 and seed == seed.lower() and bytes.fromhex(seed)


def test_the_commitment_is_the_sha256_of_the_seed_text() -> None:
    assert commitment(SEED) == hashlib.sha256(SEED.encode("ascii")).hexdigest()
    assert commitment(SEED) == "a8ae6e6ee929abea3afcfc5258c8ccd6f85273e0d4626d26c7279f3250f77c8e"
    for bad in ("", "ABCDEF" + SEED[6:], SEED[:-1], SEED + "0", "g" * 64):
        with pytest.raises(DrawError) as info:
            commitment(bad)
        assert info.value.code == "invalid_seed"


def test_the_digest_is_taken_of_sorted_decimal_lines() -> None:
    assert entries_text(ENTRIES) == "3\n5\n7\n19\n42\n88\n256\n1000"
    assert DIGEST == hashlib.sha256(b"3\n5\n7\n19\n42\n88\n256\n1000").hexdigest()
    assert DIGEST == "ad38255ee46521df12f8a759ad87d2acb20f9bad634a01b9dd3f5975c3a05151"
    assert entries_digest(list(reversed(ENTRIES))) == DIGEST  # the order given does not matter
    assert entries_digest([]) == hashlib.sha256(b"").hexdigest()
    assert entries_digest([0, MAX_ENTRY]) == hashlib.sha256(b"0\n9007199254740991").hexdigest()


@pytest.mark.parametrize(("entries", "code"), [
    ([1, 2, 2], "duplicate_entry"),
    ([1, -1], "invalid_entry"),
    ([1, MAX_ENTRY + 1], "invalid_entry"),
    ([1, True], "invalid_entry"),
    ([1, 2.0], "invalid_entry"),
])
def test_an_entry_list_that_is_not_canonical_is_refused(entries: list[Any], code: str) -> None:
    with pytest.raises(DrawError) as info:
        entries_digest(entries)
    assert info.value.code == code


# -- the random stream ----------------------------------------------------------------------------

def test_the_stream_is_counter_mode_sha256_in_big_endian_words() -> None:
    stream = words(SEED, DIGEST)
    got = [next(stream) for _ in range(16)]
    block0 = hashlib.sha256(f"{SEED}:{DIGEST}:0".encode()).digest()
    block1 = hashlib.sha256(f"{SEED}:{DIGEST}:1".encode()).digest()
    assert got[0] == int.from_bytes(block0[:4], "big")
    assert got[7] == int.from_bytes(block0[28:], "big")
    assert got[8] == int.from_bytes(block1[:4], "big")


def test_a_number_below_n_rejects_the_biased_tail() -> None:
    assert below(3, iter([2**32 - 1, 7])) == 1  # 2**32 - 1 would favour 0: drawn again
    assert below(3, iter([2**32 - 2])) == (2**32 - 2) % 3
    big = 2**31 + 1  # limit = 2**31 + 1: almost half the words are drawn again
    assert below(big, iter([2**31 + 1, 2**32 - 1, 5])) == 5
    assert below(2**32, iter([2**32 - 1])) == 2**32 - 1
    assert below(1, iter([123456])) == 0
    with pytest.raises(ValueError):
        below(0, iter([1]))


# -- the draw -------------------------------------------------------------------------------------

def test_the_draw_follows_the_documented_steps() -> None:
    assert draw(SEED, DIGEST, ENTRIES, 3) == [1000, 5, 7]
    assert draw(SEED, DIGEST, ENTRIES, 8) == [1000, 5, 7, 256, 19, 3, 42, 88]
    # the first winner by hand: the first word of block 0 (no rejection for n = 8) picks the index
    first_word = int.from_bytes(hashlib.sha256(f"{SEED}:{DIGEST}:0".encode()).digest()[:4], "big")
    assert draw(SEED, DIGEST, ENTRIES, 1) == [sorted(ENTRIES)[first_word % 8]]


def test_the_draw_is_deterministic_and_ignores_the_order_given() -> None:
    assert draw(SEED, DIGEST, ENTRIES, 5) == draw(SEED, DIGEST, sorted(ENTRIES, reverse=True), 5)
    assert draw(SEED, DIGEST, ENTRIES, 5) == draw(SEED, DIGEST, tuple(ENTRIES), 5)


def test_one_entry_one_winner() -> None:
    digest = entries_digest([77])
    assert draw(SEED, digest, [77], 1) == [77]


@pytest.mark.parametrize(("seed", "digest", "entries", "winners", "code"), [
    (SEED, entries_digest([]), [], 1, "no_entries"),
    (SEED, DIGEST, ENTRIES, 0, "invalid_winners"),
    (SEED, DIGEST, ENTRIES, -2, "invalid_winners"),
    (SEED, DIGEST, ENTRIES, 9, "too_many_winners"),
    (SEED, DIGEST, [*ENTRIES, 9999], 1, "digest_mismatch"),
    (SEED, DIGEST.upper(), ENTRIES, 1, "invalid_digest"),
    ("not a seed", DIGEST, ENTRIES, 1, "invalid_seed"),
    (SEED, DIGEST, [*ENTRIES, 7], 1, "duplicate_entry"),
])
def test_a_draw_that_cannot_be_made_is_refused(seed: str, digest: str, entries: list[int], winners: int,
                                               code: str) -> None:
    with pytest.raises(DrawError) as info:
        draw(seed, digest, entries, winners)
    assert info.value.code == code
    assert info.value.message


def test_too_many_winners_says_how_many() -> None:
    with pytest.raises(DrawError) as info:
        draw(SEED, DIGEST, ENTRIES, 10)
    assert info.value.params == {"winners": 10, "entries": 8}


@PROPERTIES
@given(st.sets(st.integers(0, MAX_ENTRY), min_size=1, max_size=60), st.data(),
       st.binary(min_size=32, max_size=32))
def test_winners_are_distinct_entries_and_a_prefix_of_a_longer_draw(
        entries: set[int], data: st.DataObject, seed_bytes: bytes) -> None:
    seed = seed_bytes.hex()
    numbers = list(entries)
    digest = entries_digest(numbers)
    count = data.draw(st.integers(1, len(numbers)))
    winners = draw(seed, digest, numbers, count)
    assert len(winners) == count == len(set(winners))
    assert set(winners) <= entries
    assert draw(seed, digest, numbers, len(numbers))[:count] == winners  # drawing more keeps the first ones
    assert verify(seed, commitment(seed), numbers, digest, winners, count).ok


# -- verifying ------------------------------------------------------------------------------------

def test_an_honest_draw_verifies() -> None:
    result = verify(SEED, commitment(SEED), ENTRIES, DIGEST, [1000, 5, 7], 3)
    assert (result.commitment_ok, result.digest_ok, result.winners_ok, result.ok) == (True, True, True, True)
    assert result.reason == "ok"
    assert verify(SEED, commitment(SEED).upper(), ENTRIES, DIGEST, [1000, 5, 7], 3).ok


def test_another_seed_fails_the_commitment() -> None:
    other = seeded(1)
    result = verify(other, commitment(SEED), ENTRIES, DIGEST, [1000, 5, 7], 3)
    assert not result.ok and not result.commitment_ok and result.digest_ok
    assert result.reason == "commitment_mismatch"
    assert result.winners_ok == (draw(other, DIGEST, ENTRIES, 3) == [1000, 5, 7])


def test_a_changed_list_fails_the_digest() -> None:
    for changed in ([*ENTRIES, 2000], ENTRIES[1:], [43 if n == 42 else n for n in ENTRIES]):
        result = verify(SEED, commitment(SEED), changed, DIGEST, [1000, 5, 7], 3)
        assert result.commitment_ok and not result.digest_ok and not result.ok
        assert result.reason == "digest_mismatch"


def test_other_winners_fail() -> None:
    for claimed in ([1000, 5, 8], [5, 1000, 7], [1000, 5], [1000, 5, 7, 256]):
        result = verify(SEED, commitment(SEED), ENTRIES, DIGEST, claimed, 3)
        assert result.commitment_ok and result.digest_ok and not result.winners_ok
        assert result.reason == "winners_mismatch"


def test_a_broken_publication_says_what_is_wrong() -> None:
    assert verify("nope", commitment(SEED), ENTRIES, DIGEST, [], 1).reason == "invalid_seed"
    assert verify(SEED, commitment(SEED), [1, 1], DIGEST, [], 1).reason == "duplicate_entry"
    assert verify(SEED, commitment(SEED), ENTRIES, DIGEST, [], 9).reason == "too_many_winners"
    empty = entries_digest([])
    assert verify(SEED, commitment(SEED), [], empty, [], 1).reason == "no_entries"


# -- fairness -------------------------------------------------------------------------------------

def test_every_entry_wins_about_as_often() -> None:
    """2,000 draws of 1 winner among 10 on fresh seeds. Each entry is expected 200 times; a
    chi-square (9 degrees of freedom) above 80 has a probability below 2e-13 for a fair draw, and
    an entry never winning one below 10 × 0.9**2000."""
    entries = list(range(10, 20))
    digest = entries_digest(entries)
    wins = Counter(draw(new_seed(), digest, entries, 1)[0] for _ in range(2000))
    assert set(wins) == set(entries)
    chi_square = sum((wins[e] - 200) ** 2 / 200 for e in entries)
    assert chi_square < 80, wins


def test_every_ordered_pair_of_winners_comes_up() -> None:
    """First and second prize among 4 entries: 12 ordered pairs, each with probability 1/12 per
    draw; one missing from 1,000 draws has a probability below 12 × (11/12)**1000 < 1e-36."""
    entries = [1, 2, 3, 4]
    digest = entries_digest(entries)
    seen = {tuple(draw(new_seed(), digest, entries, 2)) for _ in range(1000)}
    assert seen == set(permutations(entries, 2))


# -- the browser's draw.js ------------------------------------------------------------------------

def run_node(cases: list[dict[str, Any]]) -> list[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, str(CHECK_SCRIPT)], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: list[Any] = json.loads(done.stdout)
    return result


def expected(seed: str, entries: list[int], winners: int) -> dict[str, Any]:
    def attempt(step: Any) -> Any:
        try:
            return step()
        except DrawError as exc:
            return {"error": exc.code}
    digest = attempt(lambda: entries_digest(entries))
    return {"commitment": attempt(lambda: commitment(seed)), "digest": digest,
            "winners": attempt(lambda: draw(seed, digest, entries, winners))}


def test_draw_js_gives_the_same_results_as_the_server() -> None:
    cases: list[tuple[str, list[int], int]] = [
        (SEED, ENTRIES, 3),
        (SEED, ENTRIES, 8),
        (seeded(1), [5], 1),
        (seeded(2), list(range(1, 1001)), 50),  # many blocks of the stream
        (seeded(3), [MAX_ENTRY, 0, 2**32, 2**32 + 1, 2**53 - 2], 5),  # numbers past 32 bits
        (seeded(4), [3, 1, 2], 2),
        (new_seed(), list(range(7, 700, 7)), 10),
        (new_seed(), [9, 99, 999, 9999], 4),
        (seeded(5), [], 1),  # no entries
        (seeded(6), [1, 2], 3),  # too many winners
        (seeded(7), [1, 2, 2], 1),  # an entry twice
        (seeded(8), [1, 2], 0),  # no winner
        ("ABC", [1, 2], 1),  # not a seed
    ]
    results = run_node([{"seed": s, "entries": e, "winners": w} for s, e, w in cases])
    assert results == [expected(s, e, w) for s, e, w in cases]


def test_draw_js_verifies_as_the_server_does() -> None:
    c = commitment(SEED)
    arguments: list[list[Any]] = [
        [SEED, c, ENTRIES, DIGEST, [1000, 5, 7], 3],
        [SEED, c.upper(), ENTRIES, DIGEST, [1000, 5, 7], 3],
        [seeded(1), c, ENTRIES, DIGEST, [1000, 5, 7], 3],
        [SEED, c, [*ENTRIES, 2000], DIGEST, [1000, 5, 7], 3],
        [SEED, c, ENTRIES, DIGEST, [5, 1000, 7], 3],
        [SEED, c, ENTRIES, DIGEST, [1000, 5, 7], 9],
        [SEED, c, [1, 1], DIGEST, [1], 1],
        ["nope", c, ENTRIES, DIGEST, [1000], 1],
    ]
    results = run_node([{"seed": SEED, "entries": ENTRIES, "winners": 1, "verify": a} for a in arguments])
    for args, got in zip(arguments, results, strict=True):
        mine = verify(*args)
        assert got["verify"] == {"commitmentOk": mine.commitment_ok, "digestOk": mine.digest_ok,
                                 "winnersOk": mine.winners_ok, "ok": mine.ok, "reason": mine.reason}, args


def test_draw_js_streams_and_rejects_as_the_server_does() -> None:
    below_cases: list[tuple[int, list[int]]] = [
        (3, [2**32 - 1, 7]), (3, [2**32 - 2]), (2**31 + 1, [2**31 + 1, 2**32 - 1, 5]), (2**32, [2**32 - 1]),
        (1, [123456]), (1000, [4294967000, 4294967295, 1234567])]  # 1000: both first words are rejected
    results = run_node([{"words": [SEED, DIGEST, 20]}, *({"below": list(c)} for c in below_cases)])
    stream = words(SEED, DIGEST)
    assert results[0] == [next(stream) for _ in range(20)]
    assert results[1:] == [below(n, iter(given)) for n, given in below_cases]
