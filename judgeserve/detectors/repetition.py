"""Repetition and loops: the failure a falling loss hides best ("morning morning morning").

Scores per sample:

* ``repetition.rep2`` / ``rep3`` / ``rep4`` — share of the text's n-grams that repeat an
  earlier one (``1 - distinct / total``, the seq-rep-n of Welleck et al. 2019).
* ``repetition.longest_repeat`` — length in tokens of the longest token sequence that
  occurs twice (within ``max_distance`` tokens); details hold both occurrences' offsets.
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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schema import Sample, Score
from ..scorers import SampleScorer
from .tokens import token_ids, token_spans, tokenize

__all__ = ["RepetitionScorer", "Repeats", "analyse"]

_SENTINEL = np.int64(-0x5A5A5A5A5A5A5A5B)  # padding id; equal to a token hash with p≈2^-64


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


def _rep_n(ids: npt.NDArray[np.int64], n: int) -> float:
    count = len(ids) - n + 1
    if count <= 0:
        return 0.0
    # Combine the ids of each n-gram into one int64 (wrapping); collisions ~ 2^-64.
    h = ids[:count].copy()
    for j in range(1, n):
        h = h * np.int64(1_000_003) ^ ids[j : j + count]
    return 1.0 - len(np.unique(h)) / count


def analyse(
    ids: npt.NDArray[np.int64],
    *,
    orders: Sequence[int] = (2, 3, 4),
    max_distance: int = 512,
    is_word: npt.NDArray[np.bool_] | None = None,
    min_repeats: int = 3,
) -> Repeats:
    """Repeat statistics of one token-id sequence; ``is_word`` marks tokens with letters.

    A loop's unit must contain a word token (when ``is_word`` is given): a Markdown table
    rule ``| --- | --- |`` is periodic but is formatting, not a loop.
    """
    rep = {n: _rep_n(ids, n) for n in orders}
    length = len(ids)
    p_max = min(length - 1, max_distance)
    if p_max < 1:
        return Repeats(rep, 0, (0, 0), 0, 0, 0)
    padded = np.concatenate([ids, np.full(p_max, _SENTINEL)])
    win = np.lib.stride_tricks.sliding_window_view(padded, p_max + 1)[:length]
    # eq[p-1, i]: token i equals token i+p. Rows are contiguous so runs lie along memory.
    eq = np.zeros((p_max, length + 2), dtype=np.int8)
    eq[:, 1:-1] = (win[:, 1:] == win[:, :1]).T
    edges = np.diff(eq.ravel())
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return Repeats(rep, 0, (0, 0), 0, 0, 0)
    runs = ends - starts
    rows = starts // (length + 2)
    first = starts - rows * (length + 2)  # token index where the run starts
    periods = rows + 1
    best = int(np.argmax(runs))
    longest = int(runs[best])
    longest_at = (int(first[best]), int(first[best] + periods[best]))
    # A run of m matches at distance p covers m + p tokens holding (m + p) / p units.
    span = runs + periods
    looping = np.flatnonzero(span >= min_repeats * periods)
    loop = (0, 0, 0)
    # Longest span first; among equal spans the shortest period (the true unit).
    for k in looping[np.lexsort((periods[looping], -span[looping]))]:
        p, s = int(periods[k]), int(first[k])
        if is_word is None or bool(is_word[s : s + p].any()):
            loop = (p, s, s + int(span[k]))
            break
    return Repeats(rep, longest, longest_at, *loop)


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
        is_word = np.fromiter((t[0].isalnum() for t in tokens), dtype=bool, count=len(tokens))
        r = analyse(
            ids,
            orders=self.orders,
            max_distance=self.max_distance,
            is_word=is_word,
            min_repeats=self.min_repeats,
        )
        raw = text.encode("utf-8", "surrogatepass")
        # level 1: the ratio is what matters, not the smallest output; it is twice as fast.
        compression = len(raw) / len(zlib.compress(raw, 1)) if raw else 1.0
        v = self.version
        loop_tokens = r.loop_end - r.loop_start
        is_loop = r.loop_period > 0 and loop_tokens >= self.min_tokens
        scores = [
            Score.model_construct(scorer=f"repetition.rep{n}", value=r.rep[n], details={}, version=v)
            for n in self.orders
        ]
        details: dict[str, object] = {"tokens": r.longest}
        loop_details: dict[str, object] = {}
        if r.longest or is_loop:
            spans = token_spans(text)  # offsets only for texts that repeat at all
            if r.longest:
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
            Score.model_construct(
                scorer="repetition.longest_repeat", value=float(r.longest), details=details, version=v
            ),
            Score.model_construct(
                scorer="repetition.compression", value=compression, details={"bytes": len(raw)}, version=v
            ),
            Score.model_construct(scorer="repetition.loop", value=is_loop, details=loop_details, version=v),
        ]
        return scores
