"""Near-periodic loops: a unit repeated with a word or number changed each time.

Exact periodicity (``repetition.analyse``) misses the loops real models fall into most:
a verse sung again with one word swapped, list items that differ only in their number, a
table of contents restarting with new numbers. Here a text is near-periodic over a region
when almost every token there lies in a 4-gram that also occurred about one period
earlier:

1. Numbers are folded into one token (list numbering changes in every repeat) and each
   token position gets the distance back to the previous occurrence of its 4-gram.
2. The most frequent distances are the candidate periods ``P``.
3. For each, a token is *covered* when a 4-gram holding it recurs at a distance within
   20% of ``P`` (a swapped word or an inserted one shifts the copy a little), and the
   longest region where at least 80% of the tokens are covered is the candidate loop.

What is measured per candidate (:class:`Candidate`): the period, the region, the share of
it covered, the number of repeats (region / period + 1), the covered tokens, and the
share of the covered elements that are words (a run of one mark, such as a dot leader,
is one element): tables of numbers, dice grids and JSON records repeat their
punctuation and keys, not words, and are structure rather than loops. Which
candidates are loops is decided by :class:`NearLoopRule`, whose thresholds were
calibrated on ``tests/data/loops.jsonl`` (see docs/detectors.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._jit import jit
from ._tokens import token_spans, tokenize

__all__ = [
    "Candidate",
    "NearLoopRule",
    "TokenClasses",
    "token_classes",
    "text_classes",
    "candidates",
    "previous_equal",
]

NGRAM = 4
NUMBER_ID = -1  # Python's hash() never returns -1, so no token collides with it
TOLERANCE = 0.2  # a copy may sit this share of the period nearer or further
DENSITY = 0.8  # share of covered tokens in a loop region
MAX_CANDIDATES = 8
MIN_STARTS = 15  # 4-grams repeated about one period back; 15 cover at most 60 tokens

_LETTER = re.compile(r"[^\W\d_]")
WORD, NUMBER, OTHER = 1, 2, 0


class _Codes(dict[str, int]):
    """Token -> its hash with the token's class in the two low bits (one lookup for both)."""

    def __missing__(self, token: str) -> int:
        # A lone ASCII letter is a variable, a chess piece or a list label more often than
        # a word: "| p | p | p | p |" is a pawn row, not a loop. CJK characters are words.
        lone = len(token) == 1 and token.isascii()
        cls = NUMBER if token.isdecimal() else WORD if _LETTER.search(token) and not lone else OTHER
        code = (hash(token) & ~3) | cls
        if len(self) < 1_000_000:  # bound memory on huge vocabularies
            self[token] = code
        return code


_codes = _Codes()
_LT, _SLASH = _codes["<"], _codes["/"]


@dataclass(frozen=True)
class TokenClasses:
    """Per token of one text: an id (equal tokens, equal ids; per process), the id with
    numbers folded into one, whether it is a word, and where it is."""

    ids: npt.NDArray[np.int64]
    norm: npt.NDArray[np.int64]
    word: npt.NDArray[np.bool_]
    text: str
    tokens: tuple[str, ...] | None = None  # the tokenizer's strings, or
    spans: npt.NDArray[np.int64] | None = None  # (start, end) per token (ASCII fast path)

    def __len__(self) -> int:
        return len(self.ids)

    def token(self, i: int) -> str:
        if self.tokens is not None:
            return self.tokens[i]
        assert self.spans is not None
        return self.text[self.spans[i, 0] : self.spans[i, 1]]

    def offsets(self, stop: int) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of the first ``stop`` tokens."""
        if self.spans is not None:
            return [(s, e) for s, e in self.spans[:stop].tolist()]
        return token_spans(self.text, self.tokens, stop)


def token_classes(tokens: tuple[str, ...] | list[str], text: str = "") -> TokenClasses:
    """Ids, folded ids and words (tokens with a letter, not lone ASCII letters or tag names)."""
    ids = np.fromiter(map(_codes.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    norm, word = _classify(ids, _LT, _SLASH)
    return TokenClasses(ids, norm, word, text, tuple(tokens))


def text_classes(text: str) -> TokenClasses:
    """:func:`token_classes` of ``tokenize(text)``, without making strings for ASCII text.

    For ASCII text the tokenizer's regex is replayed over the bytes in compiled code (the
    tests check that both agree), which costs a tenth of splitting the text into Python
    strings and looking each one up.
    """
    if not text.isascii():
        return token_classes(tokenize(text), text)
    spans, ids = _ascii_tokens(np.frombuffer(text.encode("ascii"), dtype=np.uint8), _ASCII_TABLE)
    norm, word = _classify(ids, _ASCII_LT, _ASCII_SLASH)
    return TokenClasses(ids, norm, word, text, None, spans)


# The ASCII tokenizer's character classes (judgeserve.detectors._tokens): runs of \w are
# tokens, other characters are one-character tokens, whitespace and 0x1c-0x1f separate.
_SPACE, _WORDCHAR, _MARK = 0, 1, 2
_ASCII_TABLE = np.full(128, _MARK, dtype=np.int8)
for _c in range(128):
    if chr(_c).isalnum() or chr(_c) == "_":
        _ASCII_TABLE[_c] = _WORDCHAR
    elif chr(_c) in " \t\n\r\x0b\x0c" or 0x1C <= _c <= 0x1F:
        _ASCII_TABLE[_c] = _SPACE
_FNV_OFFSET, _FNV_PRIME = -3750763034362895579, 1099511628211  # 64-bit FNV-1a


@jit
def _ascii_tokens(
    data: npt.NDArray[np.uint8], table: npt.NDArray[np.int8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Token spans and ids (class in the two low bits, as ``_Codes`` makes them)."""
    n = len(data)
    spans = np.empty((n, 2), dtype=np.int64)
    ids = np.empty(n, dtype=np.int64)
    k = 0
    i = 0
    while i < n:
        kind = table[data[i]]
        if kind == _SPACE:
            i += 1
            continue
        j = i + 1
        if kind == _WORDCHAR:
            while j < n and table[data[j]] == _WORDCHAR:
                j += 1
        h = _FNV_OFFSET
        digits = True
        letters = 0
        for b in data[i:j]:
            h = (h ^ int(b)) * _FNV_PRIME
            if b < 48 or b > 57:
                digits = False
            if (65 <= b <= 90) or (97 <= b <= 122):
                letters += 1
        if kind == _WORDCHAR and digits:
            cls = NUMBER
        elif letters and j - i >= 2:  # a lone letter is not a word (see _Codes)
            cls = WORD
        else:
            cls = OTHER
        spans[k, 0], spans[k, 1] = i, j
        ids[k] = (h & ~3) | cls
        k += 1
        i = j
    return spans[:k], ids[:k]


def _ascii_id(char: str) -> int:
    return int(_ascii_tokens(np.frombuffer(char.encode(), dtype=np.uint8), _ASCII_TABLE)[1][0])


_ASCII_LT, _ASCII_SLASH = _ascii_id("<"), _ascii_id("/")


@jit
def _classify(
    ids: npt.NDArray[np.int64], lt: int, slash: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    n = len(ids)
    norm = np.empty(n, dtype=np.int64)
    word = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        cls = ids[i] & 3
        norm[i] = NUMBER_ID if cls == NUMBER else ids[i]
        # <div>, </td>: a tag's name is markup, not a word
        tag = i > 0 and (ids[i - 1] == lt or (i > 1 and ids[i - 1] == slash and ids[i - 2] == lt))
        word[i] = cls == WORD and not tag
    return norm, word


@dataclass(frozen=True)
class Candidate:
    """A near-periodic region (token indices, end exclusive)."""

    period: int
    start: int  # first covered token: the first copy of the unit lies before it
    end: int
    coverage: float  # share of the region's tokens covered by a copy one period back
    covered: int
    word_share: float  # share of the covered elements (a run of one mark is one) that are words
    data_share: float = 0.0  # share of the covered tokens that are numbers changed as data

    @property
    def repeats(self) -> float:
        return 1.0 + (self.end - self.start) / self.period

    @property
    def loop_start(self) -> int:
        return max(0, self.start - self.period)


@dataclass(frozen=True)
class NearLoopRule:
    """When a candidate is a loop. Defaults calibrated on ``tests/data/loops.jsonl`` (dev half).

    Every loop needs ``min_coverage`` and ``min_word_share``, and few numbers that change
    as data rather than count (``max_data_share``): "Company X: $3B profit / $30B revenue
    = 10%" row after row is a calculation, "1. Introduction ... 6. Introduction" a loop.
    Then either a short unit repeated many times, or fewer repeats that are nearly exact,
    or a long block (a whole answer) repeated: an answer capped at ~1,000 tokens holds
    only two or three copies of a 300-token block.
    """

    min_coverage: float = 0.8
    min_word_share: float = 0.2
    max_data_share: float = 0.02
    min_covered: int = 60
    many_repeats: float = 6.0
    few_repeats: float = 4.5
    few_repeats_coverage: float = 0.9
    block_covered: int = 300
    block_coverage: float = 0.85
    block_repeats: float = 2.2

    def __call__(self, c: Candidate) -> bool:
        if (
            c.coverage < self.min_coverage
            or c.word_share < self.min_word_share
            or c.data_share > self.max_data_share
        ):
            return False
        if c.covered >= self.min_covered and (
            c.repeats >= self.many_repeats
            or (c.repeats >= self.few_repeats and c.coverage >= self.few_repeats_coverage)
        ):
            return True
        return (
            c.covered >= self.block_covered
            and c.coverage >= self.block_coverage
            and c.repeats >= self.block_repeats
        )


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: 2^64 / the golden ratio


@jit
def previous_equal(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each position, the nearest earlier position holding an equal key (-1: none).

    An open-addressing table, one pass: linear in the length, where sorting to find the
    equal keys cost a third of the repetition detector's time.
    """
    n = len(keys)
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    last = np.full(mask + 1, -1, dtype=np.int64)  # per slot, the last position of its key
    prev = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        key = keys[i]
        slot = np.int64((np.uint64(key) * _GOLDEN) >> shift)
        while last[slot] >= 0 and keys[last[slot]] != key:
            slot = (slot + 1) & mask
        prev[i] = last[slot]
        last[slot] = i
    return prev


@jit
def _previous(norm: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """For each n-gram start, the start of the previous equal n-gram (-1: none)."""
    count = len(norm) - n + 1
    keys = norm[:count].copy()
    for j in range(1, n):
        keys = keys * 1_000_003 ^ norm[j : j + count]
    return previous_equal(keys)


@jit
def _slack(p: int) -> float:
    # A fifth of the period; short units get half a token more, up to two tokens.
    return min(TOLERANCE * p + 0.5, max(2.0, TOLERANCE * p))


@jit
def _periods(prev: npt.NDArray[np.int64], max_distance: int, k: int) -> npt.NDArray[np.int64]:
    """The ``k`` most frequent distances back to a previous equal n-gram.

    Only distances with at least ``MIN_STARTS`` repeats within their tolerance are kept:
    fewer cannot cover a loop's ``min_covered`` tokens, and most answers stop here.
    """
    counts = np.zeros(max_distance + 2, dtype=np.int64)
    for i in range(len(prev)):
        if prev[i] >= 0 and i - prev[i] <= max_distance:
            counts[i - prev[i]] += 1
    cumulative = np.cumsum(counts)
    out = np.zeros(0, dtype=np.int64)
    for _ in range(k):
        best = int(np.argmax(counts))
        if counts[best] < 2:
            break
        counts[best] = 0
        lo = max(1, int(np.ceil(best - _slack(best))))
        hi = min(max_distance, int(best + _slack(best)))
        if cumulative[hi] - cumulative[lo - 1] >= MIN_STARTS:
            out = np.append(out, best)
    return out


@jit
def _prefilter(
    norm: npt.NDArray[np.int64], max_distance: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    prev = _previous(norm, NGRAM)
    return prev, _periods(prev, max_distance, MAX_CANDIDATES)


@jit
def _covered(
    prev: npt.NDArray[np.int64], length: int, n: int, lo: float, hi: float
) -> npt.NDArray[np.int64]:
    """Per token, the distance back to the copy that covers it (0: not covered)."""
    dist = np.zeros(length, dtype=np.int64)
    for i in range(len(prev)):
        j = prev[i]
        while j >= 0 and i - j <= hi:
            if i - j >= lo:
                for t in range(i, i + n):
                    if dist[t] == 0:
                        dist[t] = i - j
                break
            j = prev[j]
    return dist


@jit
def _densest(cov: npt.NDArray[np.int64], density: float) -> tuple[int, int]:
    """Longest ``[s, e)`` whose covered share is at least ``density`` (maximum-width ramp).

    With prefix sums ``S`` of ``cov - density``, that is the widest ``s < e`` with
    ``S[e] >= S[s]``: a stack of the prefix minima from the left, scanned from the right.
    """
    n = len(cov)
    # In millionths, as integers: with floats, 0.2 * 4 - 0.8 < 0 and a region covered at
    # exactly the density was cut short.
    step = round(density * 1_000_000)
    prefix = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        prefix[i + 1] = prefix[i] + (1_000_000 if cov[i] > 0 else 0) - step
    stack = np.zeros(n + 1, dtype=np.int64)
    top = 0
    for i in range(n + 1):
        if top == 0 or prefix[i] < prefix[stack[top - 1]]:
            stack[top] = i
            top += 1
    best_s, best_e = 0, 0
    for e in range(n, -1, -1):
        while top > 0 and prefix[e] >= prefix[stack[top - 1]]:
            s = stack[top - 1]
            if e - s > best_e - best_s:
                best_s, best_e = s, e
            top -= 1
    while best_s < best_e and cov[best_s] == 0:  # the region starts and ends on a copy
        best_s += 1
    while best_e > best_s and cov[best_e - 1] == 0:
        best_e -= 1
    return best_s, best_e


@jit
def _regions(
    prev: npt.NDArray[np.int64],
    periods: npt.NDArray[np.int64],
    classes: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]],
    values: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Rows ``(period, start, end, covered, covered words, data numbers, covered
    elements)``, one per period.

    A number covered by its copy but different from it is a counter when other numbers
    changed by the same step (list numbering, page numbers); the others are data. An
    element is a token, except that a run of one mark (a dot leader "..........", a rule
    "------") is one element: drawn as one thing, it weighs as one in the word share.
    """
    ids, norm, word = classes
    length = len(norm)
    out = np.zeros((len(periods), 7), dtype=np.int64)
    found = 0
    for p in periods:
        slack = _slack(p)
        dist = _covered(prev, length, NGRAM, p - slack, p + slack)
        s, e = _densest(dist, DENSITY)
        covered = 0
        words = 0
        elements = 0
        steps = np.zeros(e - s)
        changed = 0
        for t in range(s, e):
            if dist[t] > 0:
                covered += 1
                words += word[t]
                elements += not (t > 0 and ids[t] == ids[t - 1] and (ids[t] & 3) == OTHER)
                u = t - dist[t]
                if norm[t] == NUMBER_ID and ids[t] != ids[u]:
                    steps[changed] = values[t] - values[u]
                    changed += 1
        # A step taken once is data; a step taken again and again is a counter.
        data = 0
        if changed:
            steps = np.sort(steps[:changed])
            for k in range(changed):
                again = (k > 0 and steps[k - 1] == steps[k]) or (
                    k + 1 < changed and steps[k + 1] == steps[k]
                )
                data += not again
        if covered:
            out[found, 0], out[found, 1], out[found, 2] = p, s, e
            out[found, 3], out[found, 4], out[found, 5] = covered, words, data
            out[found, 6] = elements
            found += 1
    return out[:found]


def candidates(classes: TokenClasses, max_distance: int = 512) -> list[Candidate]:
    """The near-periodic regions of one text, one per candidate period."""
    if len(classes) < 4 * NGRAM:
        return []
    prev, periods = _prefilter(classes.norm, max_distance)
    if not len(periods):  # the common case: too little repetition to look further
        return []
    values = np.zeros(len(classes))
    for i in np.flatnonzero(classes.norm == NUMBER_ID).tolist():
        values[i] = float(classes.token(i))
    rows = _regions(prev, periods, (classes.ids, classes.norm, classes.word), values)
    return [
        Candidate(p, s, e, covered / (e - s), covered, words / max(elements, 1), data / covered)
        for p, s, e, covered, words, data, elements in rows.tolist()
    ]
