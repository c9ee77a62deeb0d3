"""Evaluating rules on a run's history: pure functions, no store, no network.

:class:`History` is what a rule sees: every metric as a series of checkpoint points, and
a way to fetch one checkpoint's per-sample values (with sample ids, for evidence).
:func:`evaluate` asks one rule about one checkpoint and returns a :class:`Finding` or
``None``. The engine (``judgeserve.alerts.engine``) builds the history from the store;
tests build it from plain dicts with :meth:`History.from_values`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from ..aggregates import bootstrap_means
from .rules import DivergenceRule, RegressionRule, ThresholdRule, TrendRule

__all__ = ["Point", "History", "Finding", "evaluate", "compare_samples"]

AnyRule = ThresholdRule | RegressionRule | TrendRule | DivergenceRule
SampleValues = list[tuple[str, float]]  # (sample id, value)
EVIDENCE_SAMPLES = 5


@dataclass(frozen=True)
class Point:
    step: int
    mean: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 1
    # Said instead of the statistic when a threshold fires on this point, for derived series
    # whose number means little to a reader ("train.loss is NaN at step 520").
    note: str = ""

    def stat(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value if value is not None else self.mean


@dataclass
class History:
    """A run's metric series, and per-sample values fetched on demand."""

    run: str
    series: dict[str, list[Point]]
    fetch_samples: Callable[[int, str], SampleValues] = lambda step, metric: []
    _cache: dict[tuple[int, str], SampleValues] = field(default_factory=dict, repr=False)

    @classmethod
    def from_values(
        cls,
        run: str,
        series: Mapping[str, Mapping[int, float]],
        samples: Mapping[tuple[int, str], Sequence[float]] | None = None,
        n: int | None = None,
    ) -> History:
        """A history from ``{metric: {step: mean}}`` and ``{(step, metric): values}``."""
        samples = samples or {}
        out: dict[str, list[Point]] = {}
        for metric, points in series.items():
            out[metric] = [
                Point(
                    step,
                    float(v),
                    n=len(samples.get((step, metric), ())) or n or (1 if metric.startswith("train.") else 24),
                )
                for step, v in sorted(points.items())
            ]

        def fetch(step: int, metric: str) -> SampleValues:
            return [(f"{metric}@{step}#{i}", float(v)) for i, v in enumerate(samples.get((step, metric), ()))]

        return cls(run, out, fetch)

    def samples(self, step: int, metric: str) -> SampleValues:
        key = (step, metric)
        if key not in self._cache:
            self._cache[key] = self.fetch_samples(step, metric)
        return self._cache[key]

    def checkpoints(self, metric: str, min_samples: int, from_step: int, upto: int) -> list[Point]:
        """Points of ``metric`` with a value and enough samples, ``from_step ≤ step ≤ upto``."""
        need = 1 if metric.startswith("train.") else min_samples
        return [
            p
            for p in self.series.get(metric, [])
            if p.mean is not None and p.n >= need and from_step <= p.step <= upto
        ]

    def value_at(self, metric: str, step: int) -> Point | None:
        """The last point at or before ``step`` (trainer metrics are logged on their own steps);
        the first point when none is that early."""
        points = [p for p in self.series.get(metric, []) if p.mean is not None]
        before = [p for p in points if p.step <= step]
        if before:
            return before[-1]
        return points[0] if points else None


@dataclass
class Finding:
    """A rule that fired at a checkpoint: what the alert will say and carry."""

    rule: AnyRule
    step: int
    message: str
    evidence: dict[str, Any]


def evaluate(rule: AnyRule, history: History, step: int) -> Finding | None:
    """Ask ``rule`` about the checkpoint at ``step``; ``None`` when it does not fire."""
    if not rule.enabled or step < rule.from_step:
        return None
    if isinstance(rule, ThresholdRule):
        return _threshold(rule, history, step)
    if isinstance(rule, RegressionRule):
        return _regression(rule, history, step)
    if isinstance(rule, TrendRule):
        return _trend(rule, history, step)
    return _divergence(rule, history, step)


# --- the four rule types ------------------------------------------------------------------


def _current(rule: AnyRule, history: History, step: int) -> Point | None:
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    return points[-1] if points and points[-1].step == step else None


def _threshold(rule: ThresholdRule, history: History, step: int) -> Finding | None:
    point = _current(rule, history, step)
    if point is None:
        return None
    value = point.stat(rule.statistic)
    if value is None:
        return None
    if rule.above is not None and value > rule.above:
        bound, word, worst_high = rule.above, "above", True
    elif rule.below is not None and value < rule.below:
        bound, word, worst_high = rule.below, "below", False
    else:
        return None
    evidence = {
        "metric": rule.metric,
        "statistic": rule.statistic,
        "value": value,
        word: bound,
        "n": point.n,
        "ci": [point.ci_low, point.ci_high],
        "sample_ids": _worst(history.samples(step, rule.metric), worst_high),
    }
    message = (
        f"{point.note} (checkpoint {step})"
        if point.note
        else f"{rule.metric} {rule.statistic} {_fmt(value)} is {word} {_fmt(bound)} at step {step}"
    )
    return Finding(rule, step, message, evidence)


def _baseline(
    rule: RegressionRule | DivergenceRule, points: list[Point], step: int
) -> Point | None:
    earlier = [p for p in points if p.step < step]
    if not earlier:
        return None
    if rule.baseline == "first":
        return earlier[0]
    if rule.baseline == "previous":
        return earlier[-1]
    if rule.baseline == "best":
        pick = min if rule.worse == "higher" else max
        return pick(earlier, key=lambda p: p.mean if p.mean is not None else math.nan)
    return next((p for p in earlier if p.step == rule.baseline), None)


def _against_baseline(
    rule: RegressionRule | DivergenceRule, history: History, step: int
) -> tuple[Point, Point] | None:
    """(this checkpoint's point, the baseline's point), when both exist."""
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    if not points or points[-1].step != step:
        return None
    base = _baseline(rule, points, step)
    return None if base is None else (points[-1], base)


def _regression(rule: RegressionRule, history: History, step: int) -> Finding | None:
    pair = _against_baseline(rule, history, step)
    if pair is None:
        return None
    current, base = pair
    verdict = compare_samples(rule, history, base, current)
    if verdict is None:
        return None
    message = (
        f"{rule.metric} regressed {_fmt(base.mean)} → {_fmt(current.mean)} "
        f"(step {base.step} → {step}{_p(verdict)})"
    )
    return Finding(rule, step, message, verdict)


def _trend(rule: TrendRule, history: History, step: int) -> Finding | None:
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    if len(points) < rule.checkpoints + 1 or points[-1].step != step:
        return None
    window = points[-(rule.checkpoints + 1) :]
    sign = 1.0 if rule.worse == "higher" else -1.0
    for a, b in pairwise(window):
        assert a.mean is not None and b.mean is not None
        if sign * (b.mean - a.mean) <= rule.min_change:
            return None
    values = {p.step: p.mean for p in window}
    word = "rose" if rule.worse == "higher" else "fell"
    message = (
        f"{rule.metric} {word} at {rule.checkpoints} checkpoints in a row: "
        + " → ".join(_fmt(v) for v in values.values())
        + f" (steps {window[0].step}-{step})"
    )
    evidence = {
        "metric": rule.metric,
        "values": values,
        "sample_ids": _worst(history.samples(step, rule.metric), rule.worse == "higher"),
    }
    return Finding(rule, step, message, evidence)


def _divergence(rule: DivergenceRule, history: History, step: int) -> Finding | None:
    pair = _against_baseline(rule, history, step)
    if pair is None:
        return None
    current, base = pair
    loss_now, loss_then = history.value_at(rule.loss, step), history.value_at(rule.loss, base.step)
    if loss_now is None or loss_then is None or loss_now.step <= loss_then.step:
        return None
    assert loss_now.mean is not None and loss_then.mean is not None
    drop = loss_then.mean - loss_now.mean
    if drop <= 0 or drop < rule.min_loss_drop * abs(loss_then.mean):
        return None
    verdict = compare_samples(rule, history, base, current)
    if verdict is None:
        return None
    verdict["loss"] = {
        "metric": rule.loss,
        "baseline": {"step": loss_then.step, "value": loss_then.mean},
        "current": {"step": loss_now.step, "value": loss_now.mean},
    }
    word = "rose" if rule.worse == "higher" else "fell"
    message = (
        f"{rule.metric} {word} {_fmt(base.mean)} → {_fmt(current.mean)} while {rule.loss} "
        f"fell {_fmt(loss_then.mean)} → {_fmt(loss_now.mean)} (step {base.step} → {step}"
        f"{_p(verdict)})"
    )
    return Finding(rule, step, message, verdict)


# --- statistics ----------------------------------------------------------------------------


def compare_samples(
    rule: RegressionRule | DivergenceRule, history: History, base: Point, current: Point
) -> dict[str, Any] | None:
    """Evidence that ``current`` is worse than ``base``, or ``None`` when it is not.

    The means must differ in the bad direction by more than ``min_change``. When both
    checkpoints have per-sample values (set-level metrics do not), the difference must
    also be significant at ``confidence`` by the rule's test.
    """
    assert base.mean is not None and current.mean is not None
    sign = 1.0 if rule.worse == "higher" else -1.0
    change = sign * (current.mean - base.mean)
    if change <= 0 or change < rule.min_change:
        return None
    evidence: dict[str, Any] = {
        "metric": rule.metric,
        "baseline": {"step": base.step, "mean": base.mean, "n": base.n},
        "current": {"step": current.step, "mean": current.mean, "n": current.n},
        "change": current.mean - base.mean,
        "test": "none",
    }
    now = history.samples(current.step, rule.metric)
    then = history.samples(base.step, rule.metric)
    evidence["sample_ids"] = _worst(now, rule.worse == "higher")
    if rule.test == "none" or len(now) < rule.min_samples or len(then) < rule.min_samples:
        return evidence
    x = np.array([v for _, v in now], dtype=float)
    y = np.array([v for _, v in then], dtype=float)
    alpha = 1.0 - rule.confidence
    evidence["test"] = rule.test
    evidence["confidence"] = rule.confidence
    if rule.test == "mann_whitney":
        p = mann_whitney_worse(x, y, rule.worse)
        evidence["p_value"] = p
        return evidence if p < alpha else None
    low, high = bootstrap_diff_ci(x, y, rule.confidence)
    evidence["diff_ci"] = [low, high]
    significant = low > 0 if rule.worse == "higher" else high < 0
    return evidence if significant else None


def mann_whitney_worse(current: np.ndarray, baseline: np.ndarray, worse: str) -> float:
    """One-sided p-value that ``current`` is stochastically worse than ``baseline``."""
    if np.all(current == current[0]) and np.all(baseline == current[0]):
        return 1.0  # identical constants: no evidence of any change
    from scipy.stats import mannwhitneyu

    alternative = "greater" if worse == "higher" else "less"
    return float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)


def bootstrap_diff_ci(
    current: np.ndarray, baseline: np.ndarray, confidence: float, resamples: int = 2000
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(current) - mean(baseline)``; deterministic, and
    memory bounded whatever the sample sizes (the aggregates' bootstrap, per side)."""
    rng = np.random.default_rng(0)
    a = bootstrap_means(np.asarray(current, dtype=np.float64), resamples, rng)
    b = bootstrap_means(np.asarray(baseline, dtype=np.float64), resamples, rng)
    k = min(len(a), len(b))  # a large side may have been given fewer resamples
    a, b = a[:k], b[:k]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(a - b, [alpha, 1 - alpha])
    return float(low), float(high)


def _worst(values: SampleValues, high_is_bad: bool) -> list[str]:
    ranked = sorted(values, key=lambda iv: iv[1], reverse=high_is_bad)
    return [i for i, _ in ranked[:EVIDENCE_SAMPLES]]


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _p(evidence: dict[str, Any]) -> str:
    if "p_value" in evidence:
        return f", p={evidence['p_value']:.2g}"
    if "diff_ci" in evidence:
        low, high = evidence["diff_ci"]
        return f", {evidence['confidence']:.0%} CI of change [{_fmt(low)}, {_fmt(high)}]"
    return ""
