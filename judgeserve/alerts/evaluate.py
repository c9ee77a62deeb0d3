"""Evaluating rules on a run's history: pure functions, no store, no network.

:class:`History` is what a rule sees: every metric as a series of checkpoint points, and
a way to fetch one checkpoint's per-sample values (with sample ids, for evidence).
:func:`evaluate_checkpoint` asks every rule about one complete checkpoint: each rule's
:func:`consider` gives an :class:`Outcome` (a finding, and the test it hangs on), and
:func:`decide` Holm-corrects the tests of that checkpoint together, each at the share
of its rule's alpha that this look may spend (:mod:`.statistics`). :func:`evaluate` is the
same for one rule. The engine (``judgeserve.alerts.engine``) builds the history from the
store; tests build it from plain dicts with :meth:`History.from_values`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from .rules import DivergenceRule, RegressionRule, ThresholdRule, TrendRule
from .statistics import (
    Tested,
    bootstrap_diff_ci,
    bootstrap_worse,
    holm,
    look_alpha,
    mann_whitney_worse,
)

__all__ = [
    "Point",
    "History",
    "Finding",
    "Outcome",
    "consider",
    "decide",
    "evaluate",
    "evaluate_checkpoint",
    "compare_samples",
]

AnyRule = ThresholdRule | RegressionRule | TrendRule | DivergenceRule
# (sample id, value); boolean scorers' values are bools, so evidence can list the flagged.
SampleValues = list[tuple[str, float]]
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
        samples: Mapping[tuple[int, str], Sequence[float | bool]] | None = None,
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
            return [
                (f"{metric}@{step}#{i}", v if isinstance(v, bool) else float(v))
                for i, v in enumerate(samples.get((step, metric), ()))
            ]

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


@dataclass
class Outcome:
    """What one rule says about one checkpoint, before the checkpoint's correction.

    ``finding`` is what fires if the rule's conditions hold (None: they do not);
    ``test`` the statistical test it also hangs on (None: the rule has none, as with
    thresholds and set-level metrics). A rule whose conditions fail still counts in the
    checkpoint's family when it could have been tested (its p-value is then 1), since
    its conditions were looked at too.
    """

    rule: AnyRule
    finding: Finding | None
    test: Tested | None = None


def evaluate(rule: AnyRule, history: History, step: int) -> Finding | None:
    """Ask ``rule`` alone about the checkpoint at ``step``; ``None`` when it does not fire."""
    found = evaluate_checkpoint([rule], history, step)
    return found[0] if found else None


def evaluate_checkpoint(rules: Sequence[AnyRule], history: History, step: int) -> list[Finding]:
    """Every rule that fires at the complete checkpoint ``step``, Holm-corrected together."""
    return decide([o for r in rules if (o := consider(r, history, step)) is not None])


def decide(outcomes: Sequence[Outcome]) -> list[Finding]:
    """The findings that stand once the tests of one checkpoint are Holm-corrected."""
    family = [o.test for o in outcomes if o.test is not None]
    holm(family)
    fired = []
    for o in outcomes:
        if o.finding is None:
            continue
        stats = ""
        if o.test is not None:
            if not o.test.rejected:
                continue
            o.finding.evidence["alpha"] = o.test.level
            o.finding.evidence["family"] = len(family)
            stats = f", p={o.test.p_value:.2g} < level {o.test.level:.2g}"
        o.finding.message = o.finding.message.replace(STATS, stats)
        fired.append(o.finding)
    return fired


def consider(rule: AnyRule, history: History, step: int) -> Outcome | None:
    """``rule``'s outcome at ``step``; None when it has nothing to look at there."""
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

STATS = "{stats}"  # where decide() puts the p-value and level in a message


def _current(rule: AnyRule, history: History, step: int) -> Point | None:
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    return points[-1] if points and points[-1].step == step else None


def _threshold(rule: ThresholdRule, history: History, step: int) -> Outcome | None:
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
        return Outcome(rule, None)
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
    return Outcome(rule, Finding(rule, step, message, evidence))


def _against_baseline(
    rule: RegressionRule | DivergenceRule, history: History, step: int
) -> tuple[Point, Point, int] | None:
    """(this checkpoint's point, the baseline's point, which look this is), when both exist.

    The k-th look is the k-th checkpoint the rule compared with a baseline: every
    checkpoint after the first for 'first' and 'previous', those after it for a step.
    """
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    if not points or points[-1].step != step:
        return None
    earlier = points[:-1]
    if rule.baseline == "first":
        base = earlier[0] if earlier else None
    elif rule.baseline == "previous":
        base = earlier[-1] if earlier else None
    else:
        base = next((p for p in earlier if p.step == rule.baseline), None)
    if base is None:
        return None
    if isinstance(rule.baseline, str):
        look = len(points) - 1
    else:
        look = sum(1 for p in points if p.step > base.step)
    return points[-1], base, look


def _regression(rule: RegressionRule, history: History, step: int) -> Outcome | None:
    found = _against_baseline(rule, history, step)
    if found is None:
        return None
    current, base, look = found
    evidence, test = compare_samples(rule, history, base, current, look)
    if evidence is None:
        return Outcome(rule, None, test)
    message = (
        f"{rule.metric} regressed {_fmt(base.mean)} → {_fmt(current.mean)} "
        f"(step {base.step} → {step}{STATS})"
    )
    return Outcome(rule, Finding(rule, step, message, evidence), test)


def _trend(rule: TrendRule, history: History, step: int) -> Outcome | None:
    points = history.checkpoints(rule.metric, rule.min_samples, rule.from_step, step)
    if len(points) < rule.checkpoints + 1 or points[-1].step != step:
        return None
    window = points[-(rule.checkpoints + 1) :]
    first, last = window[0], window[-1]
    now, then = history.samples(last.step, rule.metric), history.samples(first.step, rule.metric)
    testable = rule.test != "none" and min(len(now), len(then)) >= rule.min_samples
    alpha = look_alpha(1 - rule.confidence, len(points) - rule.checkpoints)
    sign = 1.0 if rule.worse == "higher" else -1.0
    for a, b in pairwise(window):
        assert a.mean is not None and b.mean is not None
        if sign * (b.mean - a.mean) <= rule.min_change:
            return Outcome(rule, None, Tested(1.0, alpha) if testable else None)
    values = {p.step: p.mean for p in window}
    evidence: dict[str, Any] = {
        "metric": rule.metric,
        "values": values,
        "test": "none",
        "sample_ids": _worst(now, rule.worse == "higher"),
    }
    test = None
    if testable:
        test = Tested(_p_value(rule.test, now, then, rule.worse, rule.confidence, evidence), alpha)
    word = "rose" if rule.worse == "higher" else "fell"
    message = (
        f"{rule.metric} {word} at {rule.checkpoints} checkpoints in a row: "
        + " → ".join(_fmt(v) for v in values.values())
        + f" (steps {first.step}-{step}{STATS})"
    )
    return Outcome(rule, Finding(rule, step, message, evidence), test)


def _divergence(rule: DivergenceRule, history: History, step: int) -> Outcome | None:
    found = _against_baseline(rule, history, step)
    if found is None:
        return None
    current, base, look = found
    evidence, test = compare_samples(rule, history, base, current, look)
    loss_now, loss_then = history.value_at(rule.loss, step), history.value_at(rule.loss, base.step)
    if loss_now is None or loss_then is None or loss_now.step <= loss_then.step:
        return Outcome(rule, None, _untested(test))
    assert loss_now.mean is not None and loss_then.mean is not None
    drop = loss_then.mean - loss_now.mean
    if evidence is None or drop <= 0 or drop < rule.min_loss_drop * abs(loss_then.mean):
        return Outcome(rule, None, _untested(test))
    evidence["loss"] = {
        "metric": rule.loss,
        "baseline": {"step": loss_then.step, "value": loss_then.mean},
        "current": {"step": loss_now.step, "value": loss_now.mean},
    }
    word = "rose" if rule.worse == "higher" else "fell"
    message = (
        f"{rule.metric} {word} {_fmt(base.mean)} → {_fmt(current.mean)} while {rule.loss} "
        f"fell {_fmt(loss_then.mean)} → {_fmt(loss_now.mean)} (step {base.step} → {step}"
        f"{STATS})"
    )
    return Outcome(rule, Finding(rule, step, message, evidence), test)


def _untested(test: Tested | None) -> Tested | None:
    """The test of a rule whose other conditions failed: still one of the family, p = 1."""
    return None if test is None else Tested(1.0, test.alpha)


# --- statistics ----------------------------------------------------------------------------


def compare_samples(
    rule: RegressionRule | DivergenceRule,
    history: History,
    base: Point,
    current: Point,
    look: int = 1,
) -> tuple[dict[str, Any] | None, Tested | None]:
    """(evidence that ``current`` is worse than ``base`` or None, the test it hangs on).

    The means must differ in the bad direction by more than ``min_change`` (and
    ``min_relative_change`` of the baseline). When both checkpoints have per-sample
    values (set-level metrics do not), the difference must also be significant: the
    returned test carries its p-value and this look's share of the rule's alpha.
    """
    assert base.mean is not None and current.mean is not None
    now = history.samples(current.step, rule.metric)
    then = history.samples(base.step, rule.metric)
    testable = rule.test != "none" and min(len(now), len(then)) >= rule.min_samples
    alpha = look_alpha(1 - rule.confidence, look)
    sign = 1.0 if rule.worse == "higher" else -1.0
    change = sign * (current.mean - base.mean)
    if (
        change <= 0
        or change < rule.min_change
        or change < rule.min_relative_change * abs(base.mean)
    ):
        return None, (Tested(1.0, alpha) if testable else None)
    evidence: dict[str, Any] = {
        "metric": rule.metric,
        "baseline": {"step": base.step, "mean": base.mean, "n": base.n},
        "current": {"step": current.step, "mean": current.mean, "n": current.n},
        "change": current.mean - base.mean,
        "test": "none",
        "look": look,
        "sample_ids": _worst(now, rule.worse == "higher"),
    }
    if not testable:
        return evidence, None
    p = _p_value(rule.test, now, then, rule.worse, rule.confidence, evidence)
    return evidence, Tested(p, alpha)


def _p_value(
    test: str,
    now: SampleValues,
    then: SampleValues,
    worse: str,
    confidence: float,
    evidence: dict[str, Any],
) -> float:
    """One-sided p-value that ``now`` is worse than ``then``; notes the test in evidence."""
    x = np.array([v for _, v in now], dtype=float)
    y = np.array([v for _, v in then], dtype=float)
    evidence["test"] = test
    evidence["confidence"] = confidence
    if test == "mann_whitney":
        p = mann_whitney_worse(x, y, worse)
    else:
        p = bootstrap_worse(x, y, worse)
        evidence["diff_ci"] = list(bootstrap_diff_ci(x, y, confidence))
    evidence["p_value"] = p
    return p


def _worst(values: SampleValues, high_is_bad: bool) -> list[str]:
    """Evidence: the flagged samples of a boolean metric, else the worst values."""
    if values and all(isinstance(v, bool) for _, v in values):
        return [i for i, v in values if v == high_is_bad][:EVIDENCE_SAMPLES]
    ranked = sorted(values, key=lambda iv: iv[1], reverse=high_is_bad)
    return [i for i, _ in ranked[:EVIDENCE_SAMPLES]]


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
