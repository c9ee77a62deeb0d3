"""Repetition and loops: the failure a falling loss hides best ("morning morning morning").

Scores per sample:

* ``repetition.rep2`` / ``rep3`` / ``rep4`` — share of the text's n-grams that repeat an
  earlier one (``1 - distinct / total``, the seq-rep-n of Welleck et al. 2019).
* ``repetition.longest_repeat`` — length in tokens of the longest token sequence that
  occurs twice (within ``max_distance`` tokens); for repeats of ``2 * min_tokens`` tokens
  or more, details hold both occurrences' character offsets (``first``, ``second``).
* ``repetition.compression`` — raw bytes / zlib-compressed bytes: loops compress well.
* ``repetition.loop`` — True when the text loops, in one of three ways (``details.kind``):

  - ``exact``: a unit holding a word repeats back to back at least ``min_repeats`` times
    over at least ``min_tokens`` tokens;
  - ``wordless``: a unit of punctuation, digits or spaces only (an "ASCII art" line, a
    bar of dashes) repeats at least ``wordless_min_repeats`` times over at least
    ``wordless_min_tokens`` tokens; shorter ones are table rules and separators;
  - ``near``: a unit repeats with a small share of its tokens changed each time (a verse
    with one word swapped, list items that differ in their number, a table of contents
    restarting with new numbers), as decided by :class:`~._near_periodic.NearLoopRule`.

  Details hold the character offsets of the looping span (``start``, ``end``) so a viewer
  can highlight it, with ``period_tokens``, ``repeats`` and the ``unit`` text.

Exact repeats come from one boolean matrix ``eq[p, i] = token[i] == token[i + p]``: a run
of ``m`` Trues in row ``p`` is a repeat of ``m`` tokens at distance ``p``; when ``m >= p``
the text is periodic with period ``p`` over ``m + p`` tokens. Near-periodic loops are
found by :mod:`._near_periodic`.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schema import Sample, Score
from ..scorers import SampleScorer
from ._jit import jit
from ._near_periodic import (
    MIN_STARTS,
    NUMBER_ID,
    Candidate,
    NearLoopRule,
    TokenClasses,
    candidates,
    previous_equal,
    text_classes,
)

__all__ = ["RepetitionScorer", "Repeats", "Loop", "analyse"]

MAX_CANDIDATES = 256  # loop candidates kept per text; a text has a handful in practice
NEAR_LOOPS = NearLoopRule()


@dataclass(frozen=True)
class Repeats:
    """What :func:`analyse` finds in one token sequence (token indices, end exclusive)."""

    rep: dict[int, float]
    longest: int  # tokens in the longest sequence that occurs twice
    longest_at: tuple[int, int]  # token index of its first and second occurrence
    loop_period: int  # tokens in the repeating unit of the longest loop (0: none)
    loop_start: int
    loop_end: int

    @property
    def loop_repeats(self) -> float:
        return (self.loop_end - self.loop_start) / self.loop_period if self.loop_period else 0.0


@jit
def _distinct(ids: npt.NDArray[np.int64], orders: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Distinct n-grams for each n in ``orders`` (keys combine ids; collisions ~2^-64)."""
    out = np.zeros(len(orders), dtype=np.int64)
    for k in range(len(orders)):
        n = orders[k]
        count = len(ids) - n + 1
        if count <= 0:
            continue
        keys = ids[:count].copy()
        for j in range(1, n):
            keys = keys * 1_000_003 ^ ids[j : j + count]
        out[k] = np.count_nonzero(previous_equal(keys) < 0)  # first occurrences
    return out


@jit
def _runs(
    ids: npt.NDArray[np.int64],
    max_distance: int,
    min_repeats: int,
    cand: npt.NDArray[np.int64],
) -> tuple[int, int, int, int]:
    """Runs of equal tokens at a fixed distance; returns the longest and loop candidates.

    Visits only pairs of equal tokens (``i`` and its earlier occurrences ``j`` within
    ``max_distance``): a few hundred in ordinary text, so the cost is near linear. A run
    of ``m`` pairs at distance ``p`` is a repeat of ``m`` tokens; when ``m + p >=
    min_repeats * p`` it is also a loop of period ``p``. Candidates go to ``cand`` rows
    ``(period, start, span)``; returns ``(longest, its start, its distance, candidates)``.
    """
    n = len(ids)
    prev = previous_equal(ids)  # previous occurrence of the same token
    last = np.full(max_distance + 1, -2, dtype=np.int64)  # j of the last pair at distance p
    run = np.zeros(max_distance + 1, dtype=np.int64)
    state = (0, 0, 0, 0)  # longest, its start, its distance, candidates found
    for i in range(n):
        j = prev[i]
        while j >= 0 and i - j <= max_distance:
            p = i - j
            if last[p] == j - 1:
                run[p] += 1
            else:
                state = _record(p, run[p], last[p], min_repeats, cand, state)
                run[p] = 1
            last[p] = j
            j = prev[j]
    for p in range(1, max_distance + 1):
        state = _record(p, run[p], last[p], min_repeats, cand, state)
    return state


@jit
def _record(
    p: int,
    m: int,
    end: int,
    min_repeats: int,
    cand: npt.NDArray[np.int64],
    state: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """Account for a finished run of ``m`` pairs at distance ``p`` ending at pair ``end``."""
    best, best_at, best_p, found = state
    if m == 0:
        return state
    start = end - m + 1
    if m > best:
        best, best_at, best_p = m, start, p
    if m + p >= min_repeats * p and found < len(cand):
        cand[found, 0], cand[found, 1], cand[found, 2] = p, start, m + p
        found += 1
    return best, best_at, best_p, found


@functools.lru_cache(maxsize=16)
def _orders(orders: tuple[int, ...]) -> npt.NDArray[np.int64]:
    return np.array(orders, dtype=np.int64)


def analyse(
    ids: npt.NDArray[np.int64],
    *,
    orders: Sequence[int] = (2, 3, 4),
    max_distance: int = 512,
    loop_ok: Callable[[int, int, int], bool] | None = None,
    min_repeats: int = 3,
) -> Repeats:
    """Repeat statistics of one token-id sequence.

    ``loop_ok(start, unit_end, end)`` may veto a loop (token indices): a Markdown table
    rule ``| --- | --- |`` is periodic but is formatting, not a loop, so the scorer asks
    for a word in the unit or, for wordless units, a long span.
    """
    length = len(ids)
    distinct = _distinct(ids, _orders(tuple(orders))).tolist()
    rep = {
        n: 1.0 - d / (length - n + 1) if length >= n else 0.0
        for n, d in zip(orders, distinct, strict=True)
    }
    cand = np.zeros((MAX_CANDIDATES, 3), dtype=np.int64)
    longest, at, dist, found = _runs(ids, max(1, min(length - 1, max_distance)), min_repeats, cand)
    loop = (0, 0, 0)
    rows = cand[:found]
    # Longest span first; among equal spans the shortest period (the true unit).
    for p, s, span in rows[np.lexsort((rows[:, 0], -rows[:, 2]))].tolist() if found else ():
        if loop_ok is None or loop_ok(s, s + p, s + span):
            loop = (p, s, s + span)
            break
    return Repeats(rep, longest, (at, at + dist), *loop)


@dataclass(frozen=True)
class Loop:
    """The looping span the scorer reports (token indices, end exclusive)."""

    kind: str  # "exact", "wordless" or "near"
    period: int
    start: int
    end: int

    @property
    def repeats(self) -> float:
        return (self.end - self.start) / self.period


def _compression(raw: bytes) -> float:
    # level 1: the ratio is what matters, not the smallest output; it is twice as fast.
    return len(raw) / len(zlib.compress(raw, 1)) if raw else 1.0


def _score(scorer: str, value: float | bool, details: dict[str, object], version: str) -> Score:
    return Score(scorer=scorer, value=value, details=details, version=version)


class RepetitionScorer(SampleScorer):
    """Repeated n-grams, longest repeat, compression ratio and a loop flag with its span."""

    name = "repetition"
    version = "2"  # v2: wordless and near-periodic loops

    def __init__(
        self,
        orders: Sequence[int] = (2, 3, 4),
        min_repeats: int = 3,
        min_tokens: int = 8,
        max_distance: int = 512,
        wordless_min_tokens: int = 100,
        wordless_min_repeats: int = 10,
        near: NearLoopRule | None = NEAR_LOOPS,
    ) -> None:
        self.orders = tuple(orders)
        self.min_repeats = min_repeats
        self.min_tokens = min_tokens
        self.max_distance = max_distance
        self.wordless_min_tokens = wordless_min_tokens
        self.wordless_min_repeats = wordless_min_repeats
        self.near = near  # None: exact loops only

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return [self._one(s.completion) for s in samples]

    def loop(self, text: str) -> Loop | None:
        """The looping span of ``text``, if any (what ``repetition.loop`` reports)."""
        classes = text_classes(text)
        return self._loop(classes, self._exact(classes))

    def _exact(self, classes: TokenClasses) -> Repeats:
        word = classes.word

        def loop_ok(start: int, unit_end: int, end: int) -> bool:
            if word[start:unit_end].any():
                return end - start >= self.min_tokens
            return (
                end - start >= self.wordless_min_tokens
                and end - start >= self.wordless_min_repeats * (unit_end - start)
            )

        return analyse(
            classes.ids,
            orders=self.orders,
            max_distance=self.max_distance,
            loop_ok=loop_ok,
            min_repeats=self.min_repeats,
        )

    def _loop(self, classes: TokenClasses, r: Repeats) -> Loop | None:
        if r.loop_period:
            unit = classes.word[r.loop_start : r.loop_start + r.loop_period]
            kind = "exact" if unit.any() else "wordless"
            return Loop(kind, r.loop_period, r.loop_start, r.loop_end)
        if self.near is None or not self._may_near_loop(classes, r):
            return None
        rule = self.near
        found = [c for c in candidates(classes, self.max_distance) if rule(c)]
        if not found:
            return None
        best: Candidate = max(found, key=lambda c: c.covered)
        return Loop("near", best.period, best.loop_start, best.end)

    def _may_near_loop(self, classes: TokenClasses, r: Repeats) -> bool:
        # Folding numbers adds at most four repeated 4-grams per number, so when the raw
        # repeats plus that cannot reach MIN_STARTS no period can: most answers stop here.
        if 4 not in r.rep:
            return True
        repeated = r.rep[4] * max(0, len(classes.ids) - 3)
        numbers = int(np.count_nonzero(classes.norm == NUMBER_ID))
        return repeated + 4 * numbers >= MIN_STARTS - 0.5

    def _one(self, text: str) -> list[Score]:
        classes = text_classes(text)
        r = self._exact(classes)
        loop = self._loop(classes, r)
        raw = text.encode("utf-8", "surrogatepass")
        v = self.version
        scores = [_score(f"repetition.rep{n}", r.rep[n], {}, v) for n in self.orders]
        details: dict[str, object] = {"tokens": r.longest}
        loop_details: dict[str, object] = {}
        # Offsets of a repeat cost as much as the analysis; only long ones are worth showing.
        show_repeat = r.longest >= 2 * self.min_tokens
        if show_repeat or loop:
            stop = max(r.longest_at[1] + r.longest if show_repeat else 0, loop.end if loop else 0)
            spans = classes.offsets(stop)
            if show_repeat:
                a, b = r.longest_at
                details["first"] = [spans[a][0], spans[a + r.longest - 1][1]]
                details["second"] = [spans[b][0], spans[b + r.longest - 1][1]]
            if loop:
                start, end = spans[loop.start][0], spans[loop.end - 1][1]
                unit_end = spans[min(loop.start + loop.period, loop.end) - 1][1]
                loop_details = {
                    "kind": loop.kind,
                    "start": start,
                    "end": end,
                    "period_tokens": loop.period,
                    "repeats": round(loop.repeats, 2),
                    "unit": text[start:unit_end][:200],
                }
        scores += [
            _score("repetition.longest_repeat", float(r.longest), details, v),
            _score("repetition.compression", _compression(raw), {"bytes": len(raw)}, v),
            _score("repetition.loop", loop is not None, loop_details, v),
        ]
        return scores
