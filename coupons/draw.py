"""A giveaway draw that anyone can check, with nothing but SHA-256.

Before the entries close, the server makes a secret **seed** and publishes only its **commitment**;
when the entries close it publishes the **digest** of the entry list; then it draws, and publishes
the seed, the list and the winners. Anyone can then recompute all three: the seed was fixed before
the entries were known (the commitment), the list was not changed afterwards (the digest), and the
winners follow from both (the draw). `web/static/js/draw.js` does the same in a browser.

The algorithm, exactly:

1. **Seed**: 32 random bytes from `secrets`, written as 64 lowercase hexadecimal characters.
2. **Commitment**: SHA-256 of the seed's 64 ASCII characters (the hex text, not the 32 bytes it
   encodes), as 64 lowercase hex characters. In a shell: `printf %s SEED | sha256sum`.
3. **Entry digest**: the entry numbers (distinct integers from 0 to 2**53 - 1) sorted ascending,
   written in decimal without sign or leading zeros, joined by a single "\\n" (no newline at the
   end), encoded as ASCII; SHA-256 of that, as lowercase hex. The list `[12, 3, 7]` is the text
   `"3\\n7\\n12"`.
4. **Random stream**: block k (k = 0, 1, 2, ...) is SHA-256 of the ASCII text `f"{seed}:{digest}:{k}"`
   (k in decimal); each 32-byte block gives eight unsigned 32-bit words, read big-endian, in order.
   The words of block 0 come first, then those of block 1, and so on.
5. **Uniform number below n** (1 <= n <= 2**32), without modulo bias: let
   `limit = 2**32 - (2**32 mod n)`; take the next word w, and again while `w >= limit`; the number
   is `w mod n`.
6. **Draw**: `pool` is the entry numbers sorted ascending, N of them. For i = 0 .. winners - 1:
   `j = i + (uniform number below N - i)`, swap `pool[i]` and `pool[j]` (a partial Fisher-Yates
   shuffle). The winners are `pool[0 .. winners - 1]` in that order: the first drawn is first.

Errors are `DrawError` with a `code`: `invalid_seed`, `invalid_digest`, `invalid_entry`,
`duplicate_entry`, `no_entries`, `invalid_winners`, `too_many_winners`, `digest_mismatch`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from livecommerce.errors import N_

MAX_ENTRY = 2**53 - 1  # the largest integer a browser's numbers hold exactly
WORD = 2**32
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DrawError(Exception):
    """A draw that cannot be made; `code` is stable, `message` an English msgid with `%(name)s`
    params (translated where it is shown)."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        self.code = code
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)


def new_seed() -> str:
    """A fresh secret seed: 32 random bytes as 64 lowercase hex characters."""
    return secrets.token_hex(32)


def _check_seed(seed: str) -> None:
    if not isinstance(seed, str) or not _HEX64.fullmatch(seed):
        raise DrawError("invalid_seed", N_("A draw's seed is 64 lowercase hexadecimal characters."))


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise DrawError("invalid_digest", N_("An entry digest is 64 lowercase hexadecimal characters."))


def commitment(seed: str) -> str:
    """SHA-256 (lowercase hex) of the seed's 64 ASCII hex characters."""
    _check_seed(seed)
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def canonical_entries(entry_numbers: Sequence[int]) -> list[int]:
    """The entry numbers sorted ascending; refuses a number outside 0..2**53-1 or one given twice."""
    numbers = sorted(entry_numbers)
    for n in numbers:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_ENTRY:
            raise DrawError("invalid_entry", N_("An entry number is a whole number from 0 to %(max)s."),
                            max=MAX_ENTRY)
    for a, b in pairwise(numbers):
        if a == b:
            raise DrawError("duplicate_entry", N_("Entry number %(number)s appears twice."), number=a)
    return numbers


def entries_text(entry_numbers: Sequence[int]) -> str:
    """The canonical text the digest is taken of: sorted decimal numbers joined by "\\n"."""
    return "\n".join(str(n) for n in canonical_entries(entry_numbers))


def entries_digest(entry_numbers: Sequence[int]) -> str:
    """SHA-256 (lowercase hex) of `entries_text` in ASCII."""
    return hashlib.sha256(entries_text(entry_numbers).encode("ascii")).hexdigest()


def words(seed: str, digest: str) -> Iterator[int]:
    """The endless stream of unsigned 32-bit words: SHA-256 of `"{seed}:{digest}:{k}"` for
    k = 0, 1, 2..., each block read as eight big-endian words."""
    counter = 0
    while True:
        block = hashlib.sha256(f"{seed}:{digest}:{counter}".encode("ascii")).digest()
        for i in range(0, 32, 4):
            yield int.from_bytes(block[i:i + 4], "big")
        counter += 1


def below(n: int, stream: Iterator[int]) -> int:
    """A uniform number in [0, n) from a stream of 32-bit words, by rejection (no modulo bias)."""
    if not 1 <= n <= WORD:
        raise ValueError("n is 1 to 2**32")
    limit = WORD - WORD % n
    while True:
        w = next(stream)
        if w < limit:
            return w % n


def draw(seed: str, digest: str, entry_numbers: Sequence[int], winners: int) -> list[int]:
    """`winners` distinct entry numbers, the first drawn first, as the module docstring describes.
    `digest` must be the digest of `entry_numbers`: the draw depends on both."""
    _check_seed(seed)
    _check_digest(digest)
    pool = canonical_entries(entry_numbers)
    if not pool:
        raise DrawError("no_entries", N_("Nobody has entered this giveaway."))
    if winners < 1:
        raise DrawError("invalid_winners", N_("A giveaway has at least one winner."))
    if winners > len(pool):
        raise DrawError("too_many_winners", N_("There are %(winners)s prizes but only %(entries)s entries."),
                        winners=winners, entries=len(pool))
    if len(pool) > WORD:
        raise DrawError("invalid_entry", N_("A draw has at most %(max)s entries."), max=WORD)
    if entries_digest(pool) != digest:
        raise DrawError("digest_mismatch", N_("The entry digest does not match the entries."))
    stream = words(seed, digest)
    for i in range(winners):
        j = i + below(len(pool) - i, stream)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:winners]


@dataclass(frozen=True)
class Verification:
    """What a check of a published draw found. `reason` is "ok" or what failed first, in the order
    seed, commitment, entries, digest, winners (`invalid_seed`, `commitment_mismatch`,
    `invalid_entry`, `duplicate_entry`, `digest_mismatch`, `no_entries`, `invalid_winners`,
    `too_many_winners`, `winners_mismatch`)."""

    commitment_ok: bool
    digest_ok: bool
    winners_ok: bool
    reason: str

    @property
    def ok(self) -> bool:
        return self.commitment_ok and self.digest_ok and self.winners_ok


def verify(seed: str, commitment_hex: str, entry_numbers: Sequence[int], digest: str,
           winners_claimed: Sequence[int], count: int) -> Verification:
    """Recompute a published draw: the seed's commitment, the list's digest, and the `count` winners
    drawn from the seed and the list's own digest, compared in order with `winners_claimed`."""
    try:
        _check_seed(seed)
    except DrawError as exc:
        return Verification(False, False, False, exc.code)
    commitment_ok = commitment(seed) == commitment_hex.strip().lower()
    try:
        actual_digest = entries_digest(entry_numbers)
    except DrawError as exc:
        return Verification(commitment_ok, False, False,
                            "commitment_mismatch" if not commitment_ok else exc.code)
    digest_ok = actual_digest == digest.strip().lower()
    try:
        winners_ok = draw(seed, actual_digest, entry_numbers, count) == list(winners_claimed)
        failure = "winners_mismatch"
    except DrawError as exc:
        winners_ok, failure = False, exc.code
    if not commitment_ok:
        reason = "commitment_mismatch"
    elif not digest_ok:
        reason = "digest_mismatch"
    elif not winners_ok:
        reason = failure
    else:
        reason = "ok"
    return Verification(commitment_ok, digest_ok, winners_ok, reason)
