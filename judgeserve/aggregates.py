"""Per-checkpoint aggregates of per-sample score values: mean, bootstrap 95% CI, n.

Pure functions. The CI is the percentile bootstrap of the mean with a fixed seed, so the
same values always give the same interval. Three exact shortcuts keep it fast for
thousands of values: the bootstrap mean of 0/1 values (flags such as
``repetition.loop``) is a binomial draw / n; values on a few levels (token counts of
short texts, Likert scores) resample as multinomial counts over the levels; anything
else resamples indices, in chunks that bound memory, with fewer resamples (at least
1000) once n x resamples passes 4M draws. :func:`resample_indices` hands the same bounded
index resampling to statistics that are not means (:mod:`judgeserve.agreement`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from .schema import Aggregate

__all__ = [
    "aggregate",
    "aggregate_all",
    "bootstrap_means",
    "resample_count",
    "resample_indices",
    "RESAMPLES",
    "SEED",
]

RESAMPLES = 2000
SEED = 0
_MAX_LEVELS = 64  # multinomial over levels is B x levels work, indices are B x n
_CHUNK = 1 << 22  # index draws per chunk (32 MiB of int64)
_DRAW_BUDGET = 4_000_000

Value = float | bool | None


def _clean(values: Iterable[Value]) -> npt.NDArray[np.float64]:
    # None (unparseable score) and NaN/inf are missing values, not zeros.
    x = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    finite: npt.NDArray[np.float64] = x[np.isfinite(x)]
    return finite


def bootstrap_means(
    x: npt.NDArray[np.float64], resamples: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Means of bootstrap resamples of ``x`` (finite values, at least one), memory bounded
    whatever ``len(x)``; fewer than ``resamples`` (never under 1000) for large ``x``."""
    n = len(x)
    levels, counts = np.unique(x, return_counts=True)
    if len(levels) == 2 and levels[0] == 0.0 and levels[1] == 1.0:
        return rng.binomial(n, counts[1] / n, size=resamples) / n
    if len(levels) <= _MAX_LEVELS:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ levels / n
    return np.concatenate(
        [x[idx].mean(axis=1) for idx in resample_indices(n, resamples, rng)]
    )


def resample_count(n: int, resamples: int) -> int:
    """How many resamples of ``n`` items :func:`resample_indices` draws: index draws
    dominate (~3 ns each), so past a budget fewer (never under 1000, the usual floor for
    percentile intervals) keep n = 5000 near 20 ms."""
    return max(min(resamples, _DRAW_BUDGET // max(n, 1)), min(resamples, 1000))


def resample_indices(
    n: int, resamples: int, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.int64]]:
    """Bootstrap resamples of ``n`` items as rows of indices, in chunks that bound memory
    (:func:`resample_count` rows in all): for statistics of paired values (a kappa, a
    correlation) that are not means."""
    total = resample_count(n, resamples)
    rows = max(1, _CHUNK // max(n, 1))
    for start in range(0, total, rows):
        stop = min(total, start + rows)
        yield rng.integers(0, n, size=(stop - start, n))


def aggregate(
    values: Sequence[Value] | Iterable[Value],
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Aggregate:
    """Mean, percentile-bootstrap CI and n of one metric's values; bools count as 0/1.

    Missing values (None, NaN) are left out of n. With fewer than two values there is no
    interval (``ci_low``/``ci_high`` are None); with all values equal it is a point.
    """
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Aggregate(mean=None, ci_low=None, ci_high=None, n=0)
    mean = float(x.mean())
    if n == 1:
        return Aggregate(mean=mean, ci_low=None, ci_high=None, n=1)
    if np.all(x == x[0]):
        return Aggregate(mean=mean, ci_low=mean, ci_high=mean, n=n)
    means = bootstrap_means(x, resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2
    low, high = (float(q) for q in np.quantile(means, [alpha, 1.0 - alpha]))
    # Float rounding can put a bound an ulp past the mean it is reported with; only that is
    # evened out. A bound further off is a wrong bootstrap (wrong draw count, say) to see,
    # not to hide behind a clamp.
    tol = 1e-9 * max(1.0, abs(mean))
    low = mean if mean < low <= mean + tol else low
    high = mean if mean - tol <= high < mean else high
    if not (math.isfinite(low) and math.isfinite(high)):
        return Aggregate(mean=mean, ci_low=None, ci_high=None, n=n)
    return Aggregate(mean=mean, ci_low=low, ci_high=high, n=n)


def aggregate_all(
    values: Mapping[str, Iterable[Value]], confidence: float = 0.95
) -> dict[str, Aggregate]:
    """:func:`aggregate` for every metric of a checkpoint, e.g. ``{"repetition.rep4": [...]}``."""
    return {metric: aggregate(list(v), confidence) for metric, v in values.items()}
