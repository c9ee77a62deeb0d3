"""Per-checkpoint aggregates of per-sample scores: mean, bootstrap 95% CI, n."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .schema import Aggregate

__all__ = ["aggregate"]

N_RESAMPLES = 1000
_rng_seed = 0


def aggregate(values: Sequence[float], confidence: float = 0.95) -> Aggregate:
    """Mean with a percentile-bootstrap CI; bools count as 0/1; deterministic."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Aggregate(mean=None, ci_low=None, ci_high=None, n=0)
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Aggregate(mean=mean, ci_low=mean, ci_high=mean, n=n)
    rng = np.random.default_rng(_rng_seed)
    idx = rng.integers(0, n, size=(N_RESAMPLES, n))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Aggregate(mean=mean, ci_low=float(lo), ci_high=float(hi), n=n)
