"""Ranking a run's checkpoints by quality, with an honest statement of uncertainty.

Pure functions over arrays; :mod:`judgeserve.read.compare` fills :class:`RankInput` from the
store. A checkpoint's score is the weighted mean of the quality metrics
(:class:`~judgeserve.ranking.quality.Quality`), each averaged over probes and mapped onto
0-1. Gates disqualify a checkpoint on its aggregate means. The best is the highest score
among the checkpoints no gate disqualified (the earlier step on a tie).

Uncertainty comes from the probes: the same bootstrap resample of probes is applied to
every checkpoint at once (the checkpoints answered the same probes, so their scores are
compared pairwise, as :mod:`.paired` compares two). Each checkpoint gets a percentile CI of
its score (at the expanded levels of :func:`~.paired.expanded_tail`); each other qualified
checkpoint gets the CI of its difference from the best and a one-sided p-value that the
best is better (a t tail from the bootstrap standard error, as the alerts' bootstrap test
uses a normal one), Holm-corrected over the checkpoints compared with the best. Those Holm does not reject *cannot be told apart from the best*: the band.

Resamples are drawn as counts over probes, in chunks that bound memory
(B x P counts per chunk, as the aggregates' bootstrap bounds its draws), and a checkpoint's
bootstrap means are one matrix product per metric: 50 checkpoints x 500 probes rank in
tens of milliseconds (benchmarks/ranking.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..aggregates import RESAMPLES, SEED
from .paired import expanded_tail
from .quality import Quality, QualityMetric

__all__ = ["RankInput", "Ranked", "Ranking", "rank"]

Floats = npt.NDArray[np.float64]
_CHUNK = 1 << 21  # resample counts per chunk (16 MiB of float64)


@dataclass(frozen=True)
class RankInput:
    """A run's checkpoints as the ranking sees them.

    ``values[metric]`` is a (checkpoints x probes) array of per-probe means (each probe's
    draws averaged; NaN where a checkpoint has no value for that probe), rows in ``steps``
    order, columns in ``probes`` order. ``means[step][metric]`` are the checkpoint's aggregate
    means (per-sample and set-level metrics), which gates are checked against.
    ``excluded`` names metrics of the run left out of the score, and why.
    """

    steps: Sequence[int]
    probes: Sequence[str]
    values: Mapping[str, Floats]
    means: Mapping[int, Mapping[str, float | None]]
    complete: Mapping[int, bool] = field(default_factory=dict)
    excluded: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Ranked:
    """One checkpoint of a ranking."""

    step: int
    score: float | None = None  # None: not scored (``missing`` says why)
    ci_low: float | None = None
    ci_high: float | None = None
    probes: int = 0  # probes with a value of every metric of the score
    terms: dict[str, float] = field(default_factory=dict)  # metric -> probe mean
    disqualified: list[str] = field(default_factory=list)  # the gates it failed
    missing: list[str] = field(default_factory=list)  # score metrics it has no value of
    complete: bool | None = None  # its scoring finished (None: unknown)
    rank: int | None = None  # 1 = best, among the qualified
    best: bool = False
    indistinguishable: bool = False  # cannot be told apart from the best
    diff: float | None = None  # best's score minus this one's
    diff_ci_low: float | None = None  # simultaneous (at the critical value) with the others
    diff_ci_high: float | None = None

    @property
    def qualified(self) -> bool:
        return self.score is not None and not self.disqualified

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Ranking:
    """The best checkpoint, its band, and every checkpoint's score and gates."""

    best: int | None
    checkpoints: list[Ranked]
    weights: dict[str, float]  # metric -> share of the score (sums to 1)
    confidence: float
    reason: str | None = None  # why there is no best
    not_scored: dict[str, str] = field(default_factory=dict)  # metric -> why not in the score
    unchecked_gates: list[str] = field(default_factory=list)  # no checkpoint has their metric
    critical_value: float | None = None  # standard errors that tell a checkpoint apart

    @property
    def band(self) -> list[int]:
        """Steps that cannot be told apart from the best (the best excluded)."""
        return [c.step for c in self.checkpoints if c.indistinguishable]

    def get(self, step: int) -> Ranked | None:
        return next((c for c in self.checkpoints if c.step == step), None)

    def as_dict(self) -> dict[str, Any]:
        best = self.get(self.best) if self.best is not None else None
        return {
            "best": None if best is None else {
                "step": best.step, "score": best.score, "ci_low": best.ci_low,
                "ci_high": best.ci_high,
            },
            "indistinguishable": self.band,
            "reason": self.reason,
            "confidence": self.confidence,
            "critical_value": self.critical_value,
            "weights": self.weights,
            "not_scored": self.not_scored,
            "unchecked_gates": self.unchecked_gates,
            "checkpoints": [c.as_dict() for c in self.checkpoints],
        }


def _bootstrap_scores(
    units: Mapping[str, Floats], weights: Mapping[str, float], resamples: int, seed: int
) -> Floats:
    """(resamples x checkpoints) bootstrap scores; one probe resample shared by all rows."""
    first = next(iter(units.values()))
    n_ckpt, n_probes = first.shape
    rng = np.random.default_rng(seed)
    filled = {m: np.nan_to_num(u, nan=0.0).T for m, u in units.items()}
    present = {m: np.isfinite(u).astype(np.float64).T for m, u in units.items()}
    out = np.zeros((resamples, n_ckpt))
    rows = max(1, _CHUNK // n_probes)
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, resamples, rows):
            stop = min(resamples, start + rows)
            # Each resample as counts over probes: one bincount over index draws.
            draws = rng.integers(0, n_probes, size=(stop - start, n_probes))
            draws += np.arange(stop - start)[:, None] * n_probes
            counts = np.bincount(draws.ravel(), minlength=(stop - start) * n_probes)
            counts = counts.reshape(stop - start, n_probes).astype(np.float64)
            for m, w in weights.items():
                out[start:stop] += w * (counts @ filled[m]) / (counts @ present[m])
    return out


def _gates(ranked: list[Ranked], quality: Quality, inp: RankInput) -> list[str]:
    """Disqualify checkpoints; return the gates no checkpoint could be checked against."""
    unchecked = []
    for gate in quality.gates:
        seen = any(inp.means.get(c.step, {}).get(gate.metric) is not None for c in ranked)
        if not seen:
            unchecked.append(gate.text())
            continue
        for c in ranked:
            mean = inp.means.get(c.step, {}).get(gate.metric)
            if mean is None:
                c.disqualified.append(f"{gate.text()} (no value)")
            elif gate.failed_by(mean):
                c.disqualified.append(f"{gate.text()} (was {mean:.3g})")
    return unchecked


def rank(inp: RankInput, quality: Quality, resamples: int = RESAMPLES, seed: int = SEED) -> Ranking:
    """Score, gate and rank the checkpoints of ``inp`` by ``quality``."""
    ranked = [Ranked(step=s, complete=inp.complete.get(s)) for s in inp.steps]
    unchecked = _gates(ranked, quality, inp)
    scored_metrics = {m for m in inp.values if m not in inp.excluded}
    chosen = quality.weights(scored_metrics)
    not_scored = {
        m: why for m, why in inp.excluded.items() if quality.direction(m) is not None
    }
    for term in quality.metrics:
        if not any(term.matches(m) for m in inp.values) and not any(
            term.matches(m) for m in inp.excluded
        ):
            not_scored[term.metric] = "no per-sample values in this run"
    ranking = Ranking(
        best=None, checkpoints=ranked, weights={m: w for m, (w, _) in chosen.items()},
        confidence=quality.confidence, not_scored=not_scored, unchecked_gates=unchecked,
    )
    if not ranked:
        ranking.reason = "the run has no checkpoint with aggregates yet"
        return ranking
    if not chosen:
        ranking.reason = "no metric of the quality definition has per-sample values in this run"
        return ranking

    units = {m: _unit(term, inp.values[m]) for m, (_, term) in chosen.items()}
    with warnings.catch_warnings():
        # A checkpoint with no value of a metric is an answer here (it is not scored).
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        probe_means = {m: np.nanmean(u, axis=1) for m, u in units.items()}
    has_all = np.ones(len(ranked), dtype=bool)
    for i, c in enumerate(ranked):
        c.missing = [m for m in chosen if not np.isfinite(probe_means[m][i])]
        has_all[i] = not c.missing
        if not c.missing:
            c.terms = {m: float(np.nanmean(inp.values[m][i])) for m in chosen}
            c.score = float(sum(w * probe_means[m][i] for m, (w, _) in chosen.items()))
            finite = np.all([np.isfinite(u[i]) for u in units.values()], axis=0)
            c.probes = int(np.count_nonzero(finite))

    idx = np.flatnonzero(has_all)
    if len(idx) == 0:
        ranking.reason = "no checkpoint has a value of every metric of the score"
        return ranking
    weights = {m: w for m, (w, _) in chosen.items()}
    boot = _bootstrap_scores({m: u[idx] for m, u in units.items()}, weights, resamples, seed)
    n_probes = len(inp.probes)
    tail = expanded_tail(max(n_probes, 2), quality.confidence)
    for j, i in enumerate(idx):
        col = boot[:, j]
        col = col[np.isfinite(col)]
        if len(col) > 1 and np.ptp(col) > 0:
            low, high = np.quantile(col, [tail, 1 - tail])
            ranked[i].ci_low, ranked[i].ci_high = float(low), float(high)
        else:
            ranked[i].ci_low = ranked[i].ci_high = ranked[i].score

    qualified = [j for j, i in enumerate(idx) if not ranked[i].disqualified]
    if not qualified:
        ranking.reason = "every scored checkpoint is disqualified by a gate"
        return ranking
    order = sorted(qualified, key=lambda j: (-(ranked[idx[j]].score or 0.0), ranked[idx[j]].step))
    top = order[0]
    best = ranked[idx[top]]
    best.best, ranking.best = True, best.step
    for position, j in enumerate(order, start=1):
        ranked[idx[j]].rank = position
    _best_set(ranking, [ranked[idx[j]] for j in qualified], boot[:, qualified], n_probes,
              1.0 - quality.confidence)
    return ranking


def _best_set(
    ranking: Ranking, cands: list[Ranked], boot: Floats, n_probes: int, alpha: float
) -> None:
    """Mark the checkpoints that cannot be told apart from the best: simultaneous
    comparisons of every pair (Tukey's studentized range, its critical value from the
    bootstrap).

    ``d`` is the 1 - alpha quantile of the bootstrap's largest centred, standardised
    difference over all pairs of checkpoints; checkpoint c is told apart (worse than the
    best) only when some checkpoint beats it by more than ``d`` standard errors of their
    difference. Every pairwise statement then holds together with probability at least
    1 - alpha, so a checkpoint as good as the best is told apart in at most 5 % of runs,
    however many there are. Testing "best vs c" at Holm's levels instead ignores that the
    best was picked for its high score: on ten identical checkpoints it told one apart in
    a third of the runs; Hsu's comparisons with the best (d per candidate best) keep only
    one of several equally good checkpoints, and did the same.
    """
    if len(cands) < 2:
        return
    ok = np.all(np.isfinite(boot), axis=1)
    reps = boot[ok]
    scores = np.array([c.score or 0.0 for c in cands])
    if len(reps) < 2:
        return
    cov = np.atleast_2d(np.cov(reps, rowvar=False))
    var = np.diag(cov)
    # The standard error of each difference j - c (expanded as the CIs are).
    se = np.sqrt(np.maximum(var[:, None] + var[None, :] - 2 * cov, 0.0))
    se *= math.sqrt(n_probes / max(n_probes - 1, 1))
    errors = reps - scores
    largest = np.full(len(reps), -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(len(cands)):
            z = (errors - errors[:, [k]]) / se[:, k]
            z = np.where(se[:, k] > 0, z, 0.0)
            z[:, k] = -np.inf
            largest = np.maximum(largest, z.max(axis=1))
        d = _t_critical(float(np.quantile(largest, 1.0 - alpha)), n_probes - 1)
        gap = scores[:, None] - scores[None, :]  # [j, c]: how much j beats c
        t = np.where(se > 0, gap / se, np.where(gap > 0, np.inf, 0.0))
    np.fill_diagonal(t, -np.inf)
    ranking.critical_value = d
    top = next(i for i, c in enumerate(cands) if c.best)
    for i, c in enumerate(cands):
        if i == top:
            continue
        c.diff = float(scores[top] - scores[i])
        c.diff_ci_low = c.diff - d * float(se[top, i])
        c.diff_ci_high = c.diff + d * float(se[top, i])
        c.indistinguishable = bool(t[:, i].max() <= d)


def _t_critical(z: float, df: int) -> float:
    """The critical value of the same tail under Student's t: the standard errors are
    estimated from the probes, so the observed statistics have t's heavier tails, which
    the bootstrap (standardised by one fixed estimate) does not show. Without this, ten
    identical checkpoints of 100 probes had one told apart in 8.5 % of runs."""
    from scipy.stats import norm, t

    if not math.isfinite(z) or df < 1:
        return z
    return float(t.isf(norm.sf(z), df))


def _unit(term: QualityMetric, values: Floats) -> Floats:
    """``values`` on 0-1 by the term's scale, 1 the better end (as ``QualityMetric.unit``)."""
    low, high = term.scale
    x: Floats = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return x if term.better == "higher" else 1.0 - x
