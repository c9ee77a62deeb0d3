"""Simulated runs of a model that never changes: how often do alert rules cry wolf?

A rule set is only useful if a healthy, unchanging model stays quiet. :func:`simulate`
plays many runs of many complete checkpoints through the alert engine's own evaluation
(:meth:`judgeserve.alerts.AlertEngine.findings`, the code a worker runs) and counts the
runs in which any rule fired. With a :class:`Shift` from some checkpoint on, the same
runs measure whether the rules still catch a real change, and how soon.

Each checkpoint draws ``n`` different answers from a pool of one real model's
per-sample scores (:meth:`SteadyModel.from_jsonl`; the tests use
``tests/data/steady_scores.jsonl``, the detectors' verdicts on vicuna-13b's MT-Bench
answers). A pool of different prompts makes checkpoints differ more than re-sampling a
fixed probe set would, so the false-alarm rate measured is, if anything, too high.
What the pool lacks is drawn from stated distributions: the share of 8-grams an answer
copies from training data (``memorization.ngram_overlap``: 0, or Beta(1, 8) for one
answer in five), confirmed copies (``memorization.memorized``, 1 %), and the training
loss, which falls at every checkpoint (the worst case for the divergence rules, whose
loss condition then always holds). ``diversity.unique_ratio`` is the share of distinct
answers drawn. Checkpoints carry means, not bootstrap intervals: a rule on ``ci_low`` or
``ci_high`` reads the mean here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..alerts.engine import AlertEngine
from ..alerts.evaluate import AnyRule, History

__all__ = ["SteadyModel", "Shift", "SHIFTS", "Tally", "steady_history", "simulate"]

Values = dict[str, list[float]]
BOOLEAN = {"repetition.loop", "truncation.truncated", "memorization.memorized"}
Shift = Callable[[Values, np.random.Generator], Values]


@dataclass(frozen=True)
class SteadyModel:
    """Per-sample scores of one model's answers, drawn from at every checkpoint."""

    rows: tuple[dict[str, float], ...]
    overlap_share: float = 0.2
    memorized_rate: float = 0.01

    @classmethod
    def from_jsonl(cls, path: str | Path) -> SteadyModel:
        rows = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            rows.append({k: float(v) for k, v in d.items() if k != "id" and v is not None})
        return cls(tuple(rows))

    def draw(self, rng: np.random.Generator, n: int) -> tuple[Values, int]:
        """``n`` answers' values by metric, and how many distinct answers were drawn.

        A probe set has distinct prompts: the answers are drawn without replacement while
        the pool is large enough."""
        picks = rng.choice(len(self.rows), size=n, replace=n > len(self.rows))
        metrics = sorted({k for r in self.rows for k in r})
        values = {m: [self.rows[i][m] for i in picks if m in self.rows[i]] for m in metrics}
        copies = rng.random(n) < self.overlap_share
        values["memorization.ngram_overlap"] = list(np.where(copies, rng.beta(1, 8, n), 0.0))
        values["memorization.memorized"] = list((rng.random(n) < self.memorized_rate) * 1.0)
        return values, len(set(picks.tolist()))


def _length_collapse(values: Values, rng: np.random.Generator) -> Values:
    # Answers a third as long: the model learnt to stop early.
    return {**values, "length.tokens": [max(1.0, round(v / 3)) for v in values["length.tokens"]]}


def _memorizes(values: Values, rng: np.random.Generator) -> Values:
    # Half the answers copy long stretches of training text.
    n = len(values["memorization.ngram_overlap"])
    copies = rng.random(n) < 0.5
    overlap = np.where(copies, rng.beta(6, 4, n), values["memorization.ngram_overlap"])
    return {**values, "memorization.ngram_overlap": list(overlap)}


def _quality_drop(values: Values, rng: np.random.Generator) -> Values:
    # Every answer 0.15 less similar to its reference.
    return {**values, "reference.semscore": [v - 0.15 for v in values["reference.semscore"]]}


def _loops(values: Values, rng: np.random.Generator) -> Values:
    # Three answers in ten loop.
    n = len(values["repetition.loop"])
    return {**values, "repetition.loop": list((rng.random(n) < 0.3) * 1.0)}


SHIFTS: dict[str, tuple[str, Shift]] = {
    "length_collapse": ("length_collapse", _length_collapse),
    "memorization": ("memorization_while_loss_falls", _memorizes),
    "quality_drop": ("reference_quality_regression", _quality_drop),
    "loops": ("loops", _loops),
}
"""Named changes, each with the default rule that should catch it."""


def steady_history(
    model: SteadyModel,
    rng: np.random.Generator,
    *,
    checkpoints: int = 50,
    n: int = 64,
    every: int = 100,
    shift: Shift | None = None,
    shift_at: int = 0,
    run: str = "steady",
) -> History:
    """A run's history: ``checkpoints`` checkpoints every ``every`` steps, ``n`` samples
    each, changed by ``shift`` from the ``shift_at``-th checkpoint (0-based) on."""
    series: dict[str, dict[int, float]] = {"train.loss": {}, "diversity.unique_ratio": {}}
    samples: dict[tuple[int, str], Sequence[float | bool]] = {}
    for k in range(checkpoints):
        step = every * (k + 1)
        values, distinct = model.draw(rng, n)
        if shift is not None and k >= shift_at:
            values = shift(values, rng)
        for metric, vs in values.items():
            series.setdefault(metric, {})[step] = float(np.mean(vs))
            # Booleans as the store gives them back, so evidence lists the flagged samples.
            samples[(step, metric)] = [v == 1.0 for v in vs] if metric in BOOLEAN else vs
        series["diversity.unique_ratio"][step] = distinct / n
        series["train.loss"][step] = 0.3 + 2.7 * 0.93**k
    return History.from_values(run, series, samples, n=n)


@dataclass
class Tally:
    """What the rules did over simulated runs."""

    runs: int
    checkpoints: int
    n: int
    alerts: list[list[tuple[str, int]]] = field(default_factory=list)  # per run: (rule, step)
    fired: Counter[str] = field(default_factory=Counter)  # runs in which each rule fired
    delays: dict[str, list[int]] = field(default_factory=dict)  # checkpoints after the shift

    @property
    def quiet(self) -> int:
        """Runs in which no rule fired."""
        return sum(1 for a in self.alerts if not a)


def simulate(
    rules: Sequence[AnyRule],
    model: SteadyModel,
    *,
    runs: int = 100,
    checkpoints: int = 50,
    n: int = 64,
    seed: int = 0,
    shift: Shift | None = None,
    shift_at: int = 0,
) -> Tally:
    """Play ``runs`` runs through the engine's evaluation; a rule that fired stays quiet
    for the rest of its run, as an open alert keeps it."""
    tally = Tally(runs, checkpoints, n)
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        history = steady_history(
            model, rng, checkpoints=checkpoints, n=n, shift=shift, shift_at=shift_at
        )
        steps = [p.step for p in history.series["train.loss"]]
        alerts: list[tuple[str, int]] = []
        for k, step in enumerate(steps):
            fired = {name for name, _ in alerts}
            active = [rule for rule in rules if rule.enabled and rule.name not in fired]
            for finding in AlertEngine.findings(active, history, step):
                alerts.append((finding.rule.name, step))
                tally.fired[finding.rule.name] += 1
                if shift is not None and k >= shift_at:
                    tally.delays.setdefault(finding.rule.name, []).append(k - shift_at)
        tally.alerts.append(alerts)
    return tally
