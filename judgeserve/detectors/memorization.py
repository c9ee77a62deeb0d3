"""Verbatim memorization of the run's own training data.

Scores per sample, when the run has an index (``judgeserve index build --run RUN FILE``
writes it to ``<settings.index_dir>/<run>``; a run without one gets no scores, and its
steps say "memorization: not checked — no index for run RUN"):

* ``memorization.ngram_overlap`` — share of the completion's token n-grams (n = 8 by
  default) found in the training data; Bloom-filter lookups, so it may be over by the
  filter's false-positive rate (``details.fpr``, 0.2% by default).
* ``memorization.longest_span`` — tokens in the longest span copied verbatim from the
  training data, with its character offsets in the completion (``start``, ``end``) and
  where it was found (``source``, ``offset``). Spans that contain an index anchor, which
  every span of ``min_span`` tokens or more does, are confirmed token by token against
  the training text (``confirmed: true``); shorter ones are estimated from runs of Bloom
  hits and capped below ``min_span``.
* ``memorization.memorized`` — True when a confirmed span reaches ``min_span`` tokens
  (50 by default, as in the training-data extraction literature).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..exceptions import ConfigError, IndexFileError
from ..schema import RUN_NAME_PATTERN, Sample, Score
from ..scorers import Context, SampleScorer
from ..settings import Settings, get_settings
from ._index_build import IndexStats, build_index
from ._ngram_index import NgramIndex
from ._tokens import ngram_hashes, stable_ids, token_spans, tokenize

__all__ = [
    "MemorizationScorer",
    "build_index",
    "IndexStats",
    "run_index_dir",
    "indexed_runs",
    "describe_indexes",
]

U64 = npt.NDArray[np.uint64]


def run_index_dir(run: str, index_dir: Path | None = None) -> Path:
    """Where the index of ``run`` lives: ``<index_dir or settings.index_dir>/<run>``.

    ``run`` is a run name, never a path: building an index replaces this folder, so
    ``/abs/dir`` or ``../x`` would delete whatever lies there."""
    if not re.fullmatch(RUN_NAME_PATTERN, run):
        raise ConfigError(
            f"invalid run name {run!r}: a run name is letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, not a path"
        )
    return (index_dir or get_settings().index_dir) / run


def indexed_runs(index_dir: Path | None = None) -> list[str]:
    """The runs that have an index in ``index_dir`` (default ``settings.index_dir``)."""
    root = index_dir or get_settings().index_dir
    try:
        folders = list(root.iterdir())
    except OSError:  # no folder yet: no index
        return []
    return sorted(
        p.name
        for p in folders
        if re.fullmatch(RUN_NAME_PATTERN, p.name) and (p / "meta.json").is_file()
    )


def describe_indexes(index_dir: Path | None = None, shown: int = 20) -> str:
    """One line for a process's start: where indexes are looked for, and for which runs."""
    root = index_dir or get_settings().index_dir
    runs = indexed_runs(root)
    if not runs:
        return (
            f"no memorization index in {root}: memorization is not checked for any run "
            "(`judgeserve index build --run RUN FILE` makes one)"
        )
    more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
    return f"memorization indexes in {root} for runs: {', '.join(runs[:shown])}{more}"


def _agree(a: U64, b: U64) -> int:
    """Length of the common prefix of two id arrays."""
    m = min(len(a), len(b))
    differ = np.flatnonzero(a[:m] != b[:m])
    return int(differ[0]) if len(differ) else m


def _runs(hits: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], hits.view(np.int8), [0]))))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


class MemorizationScorer(SampleScorer):
    """Looks each completion's n-grams up in its run's training-data index."""

    name = "memorization"

    def __init__(
        self,
        index_dir: Path | None = None,
        min_span: int | None = None,
        max_checks: int = 64,
        settings: Settings | None = None,
    ) -> None:
        self.index_dir = index_dir or (settings.index_dir if settings is not None else None)
        self.min_span = min_span
        self.max_checks = max_checks
        self._indexes: dict[str, tuple[tuple[int, int], NgramIndex | IndexFileError]] = {}
        self._lock = threading.Lock()

    def index(self, run: str) -> NgramIndex | None:
        """The run's index, loaded once and reloaded when it is rebuilt; None if absent."""
        path = run_index_dir(run, self.index_dir)
        if not path.exists():
            return None
        try:
            st = (path / "meta.json").stat()
            stamp = (st.st_ino, st.st_mtime_ns)  # a rebuild writes a new file
        except OSError:
            stamp = (-1, -1)  # NgramIndex.load explains what is missing
        with self._lock:
            cached = self._indexes.get(run)
            if cached is None or cached[0] != stamp:
                try:
                    cached = (stamp, NgramIndex.load(path))
                except IndexFileError as e:
                    cached = (stamp, e)  # do not re-hash a broken index for every batch
                self._indexes[run] = cached
        if isinstance(cached[1], IndexFileError):
            raise IndexFileError(str(cached[1]))
        index = cached[1]
        if self.min_span is not None and self.min_span < index.min_span:
            raise ConfigError(
                f"min_span={self.min_span} is below the {index.min_span} tokens the index of "
                f"run {run!r} can confirm; rebuild it with a smaller min_span"
            )
        return index

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        path = run_index_dir(sample.run, self.index_dir)
        if path.exists():
            return None
        return (
            f"no index for run {sample.run} (looked in {path}; "
            f"`judgeserve index build --run {sample.run} FILE` makes one)"
        )

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        indexes = {run: self.index(run) for run in {s.run for s in samples}}
        return [
            self._one(index, s.completion) if (index := indexes[s.run]) else [] for s in samples
        ]

    def _one(self, index: NgramIndex, text: str) -> list[Score]:
        n, min_span, v = index.n, self.min_span or index.min_span, self.version
        tokens = tokenize(text)
        ids = stable_ids(tokens)
        hashes = ngram_hashes(ids, n)
        hits = index.contains(hashes)
        overlap = float(hits.mean()) if len(hits) else 0.0
        runs = _runs(hits)
        # Bloom estimate: a run of k hit n-grams spans k + n - 1 tokens (an upper bound).
        bloom_start, bloom_len = 0, 0
        for a, b in runs:
            if b - a + n - 1 > bloom_len:
                bloom_start, bloom_len = a, b - a + n - 1
        exact, exact_start, record = self._confirm(index, ids, hashes, runs)
        if exact >= min(bloom_len, min_span - 1):
            length, start, confirmed = exact, exact_start, exact > 0
        else:  # any copy of min_span tokens holds an anchor, so the rest is shorter
            length, start, confirmed = min(bloom_len, min_span - 1), bloom_start, False
        details: dict[str, object] = {"tokens": length, "confirmed": confirmed}
        if length:
            spans = token_spans(text, tokens, start + length)
            details |= {"start": spans[start][0], "end": spans[start + length - 1][1]}
        if confirmed and record is not None:
            details |= index.source_of(record)
        return [
            Score(
                scorer="memorization.ngram_overlap",
                value=overlap,
                details={"ngrams": len(hashes), "n": n, "fpr": index.meta["fpr"]},
                version=v,
            ),
            Score(
                scorer="memorization.longest_span", value=float(length), details=details, version=v
            ),
            Score(
                scorer="memorization.memorized",
                value=confirmed and length >= min_span,
                details={"min_span": min_span},
                version=v,
            ),
        ]

    def _confirm(
        self, index: NgramIndex, ids: U64, hashes: U64, runs: list[tuple[int, int]]
    ) -> tuple[int, int, int | None]:
        """Longest span around an anchored n-gram that the training text really contains."""
        n = index.n
        best: tuple[int, int, int | None] = (0, 0, None)
        checks = 0
        for a, b in sorted(runs, key=lambda r: r[0] - r[1]):  # longest runs first
            if b - a + n - 1 <= best[0]:
                break
            for pos, record in index.anchored(hashes[a:b]):
                if best[0] and best[1] <= a + pos <= best[1] + best[0] - n:
                    continue  # inside the span already confirmed: it would find it again
                if checks >= self.max_checks:
                    return best
                checks += 1
                length, start = self._extend(index, record, ids, hashes, a + pos)
                if length > best[0]:
                    best = (length, start, record)
        return best

    def _extend(
        self, index: NgramIndex, record: int, ids: U64, hashes: U64, q: int
    ) -> tuple[int, int]:
        """Grow the match of n-gram ``q`` left and right through the record's document."""
        n = index.n
        radius = 1
        while True:
            window, window_hashes, first, last = index.window(record, radius)
            found = np.flatnonzero(window_hashes == hashes[q])
            best, more = (0, 0), False
            for t in found.tolist():
                if not np.array_equal(window[t : t + n], ids[q : q + n]):
                    continue  # a hash collision, not a copy
                left = _agree(ids[:q][::-1], window[:t][::-1])
                right = _agree(ids[q + n :], window[t + n :])
                if n + left + right > best[0]:
                    best = (n + left + right, q - left)
                # Stopped at the window's edge while the sample goes on: look further.
                more |= t == left and left < q and not index.is_doc_edge(first, -1)
                more |= (
                    t + n + right == len(window)
                    and q + n + right < len(ids)
                    and not index.is_doc_edge(last, 1)
                )
            if not more:
                return best
            radius *= 2
