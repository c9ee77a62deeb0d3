"""The statistics behind the comparing rules: one-sided tests, and the corrections that
keep a run's false alarms rare however many metrics and checkpoints are looked at.

Two corrections, because a run is looked at many times:

* **Over checkpoints** (:func:`look_alpha`): a rule with ``confidence: 0.95`` has
  alpha = 0.05 to spend over the *whole run*. Its k-th look (the k-th checkpoint it compares
  with a baseline) may use ``alpha · ln 2 · (1/ln(k+1) - 1/ln(k+2))``; these shares sum to alpha
  over any number of checkpoints (the sum telescopes), so fifty looks at alpha = 0.05 each —
  which on an unchanged model fire in most runs — become fifty looks that together fire
  in at most 5 % of them. The shares shrink slowly (1/(k ln²k)): the 10th look gets
  1.0 % of alpha, the 50th 0.09 %.
* **Over metrics at one checkpoint** (:func:`holm`): the rules tested at a checkpoint
  form a family; Holm's step-down procedure tests the one with the smallest p/alpha at alpha/m,
  the next at alpha/(m-1), and so on, stopping at the first that fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "look_alpha",
    "holm",
    "Tested",
    "mann_whitney_worse",
    "bootstrap_worse",
    "bootstrap_diff_ci",
]


def look_alpha(alpha: float, look: int) -> float:
    """The share of a run's ``alpha`` that its ``look``-th look (1, 2, ...) may spend."""
    if look < 1:
        raise ValueError(f"looks count from 1, not {look}")
    return alpha * math.log(2) * (1 / math.log(look + 1) - 1 / math.log(look + 2))


@dataclass
class Tested:
    """One hypothesis of a family: its p-value and the level it would be tested at alone."""

    p_value: float
    alpha: float
    level: float = 0.0  # filled by holm(): the level it was held to in the family
    rejected: bool = False


def holm(family: Sequence[Tested]) -> None:
    """Holm's step-down procedure, weighted by each member's own ``alpha``: in order of
    p/alpha, the i-th of m is rejected when p ≤ alpha/(m - i), and testing stops at the first
    that is not. With equal alpha this is Holm (1979); with unequal alpha the chance of any
    false rejection stays ≤ the largest alpha (each intersection is Bonferroni-tested)."""
    m = len(family)
    order = sorted(family, key=lambda t: t.p_value / t.alpha if t.alpha > 0 else math.inf)
    stopped = False
    for i, t in enumerate(order):
        t.level = t.alpha / (m - i)
        t.rejected = not stopped and t.p_value <= t.level
        stopped = stopped or not t.rejected


def mann_whitney_worse(current: np.ndarray, baseline: np.ndarray, worse: str) -> float:
    """One-sided p-value that ``current`` is stochastically worse than ``baseline``."""
    if np.all(current == current[0]) and np.all(baseline == current[0]):
        return 1.0  # identical constants: no evidence of any change
    from scipy.stats import mannwhitneyu

    alternative = "greater" if worse == "higher" else "less"
    return float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)


def _boot_diffs(current: np.ndarray, baseline: np.ndarray, resamples: int) -> np.ndarray:
    """Bootstrap differences of means; deterministic, and memory bounded whatever the
    sample sizes (the aggregates' bootstrap, per side)."""
    from ..aggregates import bootstrap_means

    rng = np.random.default_rng(0)
    a = bootstrap_means(np.asarray(current, dtype=np.float64), resamples, rng)
    b = bootstrap_means(np.asarray(baseline, dtype=np.float64), resamples, rng)
    k = min(len(a), len(b))  # a large side may have been given fewer resamples
    diffs: np.ndarray = a[:k] - b[:k]
    return diffs


def bootstrap_diff_ci(
    current: np.ndarray, baseline: np.ndarray, confidence: float, resamples: int = 2000
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(current) - mean(baseline)``; deterministic."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(_boot_diffs(current, baseline, resamples), [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_worse(
    current: np.ndarray, baseline: np.ndarray, worse: str, resamples: int = 2000
) -> float:
    """One-sided p-value that ``mean(current)`` is worse than ``mean(baseline)``, from the
    bootstrap standard error of the difference (a normal tail, so that the small levels
    of late looks are reachable: counting resamples stops at 1/resamples)."""
    from scipy.stats import norm

    diff = float(current.mean() - baseline.mean())
    se = float(_boot_diffs(current, baseline, resamples).std(ddof=1))
    sign = 1.0 if worse == "higher" else -1.0
    if se == 0.0:
        return 0.0 if sign * diff > 0 else 1.0
    return float(norm.sf(sign * diff / se))
