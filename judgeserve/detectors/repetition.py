"""Repetition and loops: the failure a falling loss hides best ("morning morning morning").

Scores per sample:

* ``repetition.rep2`` / ``rep3`` / ``rep4`` — share of the text's n-grams that repeat an
  earlier one (``1 - distinct / total``, the seq-rep-n of Welleck et al. 2019).
* ``repetition.longest_repeat`` — length in tokens of the longest token sequence that
  occurs twice (within ``max_distance`` tokens); for repeats of ``2 * min_tokens`` tokens
  or more, details hold both occurrences' character offsets (``first``, ``second``).
* ``repetition.compression`` — raw bytes / zlib-compressed bytes: loops compress well.
* ``repetition.loop`` — True when a unit of tokens repeats back to back at least
  ``min_repeats`` times over at least ``min_tokens`` tokens; details hold the character
  offsets of the looping span (``start``, ``end``) so a viewer can highlight it.

Everything comes from one boolean matrix ``eq[p, i] = token[i] == token[i + p]``: a run of
``m`` Trues in row ``p`` is a repeat of ``m`` tokens at distance ``p``; when ``m >= p`` the
text is periodic with period ``p`` over ``m + p`` tokens, which is a loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schema import Sample, Score
from ..scorers import SampleScorer
from ._jit import jit
from ._tokens import token_ids, token_spans, tokenize

__all__ = ["RepetitionScorer", "Repeats", "analyse"]

MAX_CANDIDATES = 256  # loop candidates kept per text; a text has a handful in practice


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
        keys.sort()
        distinct = 1
        for m in range(1, count):
            distinct += keys[m] != keys[m - 1]
        out[k] = distinct
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
    order = np.argsort(ids, kind="mergesort")
    prev = np.full(n, -1, dtype=np.int64)  # previous occurrence of the same token
    for k in range(1, n):
        if ids[order[k]] == ids[order[k - 1]]:
            prev[order[k]] = order[k - 1]
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


def analyse(
    ids: npt.NDArray[np.int64],
    *,
    orders: Sequence[int] = (2, 3, 4),
    max_distance: int = 512,
    unit_ok: Callable[[int, int], bool] | None = None,
    min_repeats: int = 3,
) -> Repeats:
    """Repeat statistics of one token-id sequence.

    ``unit_ok(start, end)`` may veto a loop unit: a Markdown table rule ``| --- | --- |``
    is periodic but is formatting, not a loop, so the scorer asks for a word token in it.
    """
    length = len(ids)
    distinct = _distinct(ids, np.array(orders, dtype=np.int64)).tolist()
    rep = {
        n: 1.0 - d / (length - n + 1) if length >= n else 0.0
        for n, d in zip(orders, distinct, strict=True)
    }
    cand = np.zeros((MAX_CANDIDATES, 3), dtype=np.int64)
    longest, at, dist, found = _runs(ids, max(1, min(length - 1, max_distance)), min_repeats, cand)
    loop = (0, 0, 0)
    rows = cand[:found]
    # Longest span first; among equal spans the shortest period (the true unit).
    for p, s, span in rows[np.lexsort((rows[:, 0], -rows[:, 2]))].tolist():
        if unit_ok is None or unit_ok(s, s + p):
            loop = (p, s, s + span)
            break
    return Repeats(rep, longest, (at, at + dist), *loop)


class RepetitionScorer(SampleScorer):
    """Repeated n-grams, longest repeat, compression ratio and a loop flag with its span."""

    name = "repetition"

    def __init__(
        self,
        orders: Sequence[int] = (2, 3, 4),
        min_repeats: int = 3,
        min_tokens: int = 8,
        max_distance: int = 512,
    ) -> None:
        self.orders = tuple(orders)
        self.min_repeats = min_repeats
        self.min_tokens = min_tokens
        self.max_distance = max_distance

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return [self._one(s.completion) for s in samples]

    def _one(self, text: str) -> list[Score]:
        tokens = tokenize(text)
        ids = token_ids(tokens)

        def has_word(start: int, end: int) -> bool:
            return any(t[0].isalnum() for t in tokens[start:end])

        r = analyse(
            ids,
            orders=self.orders,
            max_distance=self.max_distance,
            unit_ok=has_word,
            min_repeats=self.min_repeats,
        )
        raw = text.encode("utf-8", "surrogatepass")
        # level 1: the ratio is what matters, not the smallest output; it is twice as fast.
        compression = len(raw) / len(zlib.compress(raw, 1)) if raw else 1.0
        v = self.version
        loop_tokens = r.loop_end - r.loop_start
        is_loop = r.loop_period > 0 and loop_tokens >= self.min_tokens
        scores = [
            Score(scorer=f"repetition.rep{n}", value=r.rep[n], details={}, version=v)
            for n in self.orders
        ]
        details: dict[str, object] = {"tokens": r.longest}
        loop_details: dict[str, object] = {}
        # Offsets of a repeat cost as much as the analysis; only long ones are worth showing.
        show_repeat = r.longest >= 2 * self.min_tokens
        if show_repeat or is_loop:
            stop = max(
                r.longest_at[1] + r.longest if show_repeat else 0, r.loop_end if is_loop else 0
            )
            spans = token_spans(text, tokens, stop)
            if show_repeat:
                a, b = r.longest_at
                details["first"] = [spans[a][0], spans[a + r.longest - 1][1]]
                details["second"] = [spans[b][0], spans[b + r.longest - 1][1]]
            if is_loop:
                start, end = spans[r.loop_start][0], spans[r.loop_end - 1][1]
                unit_end = spans[r.loop_start + r.loop_period - 1][1]
                loop_details = {
                    "start": start,
                    "end": end,
                    "period_tokens": r.loop_period,
                    "repeats": round(r.loop_repeats, 2),
                    "unit": text[start:unit_end][:200],
                }
        scores += [
            Score(
                scorer="repetition.longest_repeat",
                value=float(r.longest),
                details=details,
                version=v,
            ),
            Score(
                scorer="repetition.compression",
                value=compression,
                details={"bytes": len(raw)},
                version=v,
            ),
            Score(scorer="repetition.loop", value=is_loop, details=loop_details, version=v),
        ]
        return scores
