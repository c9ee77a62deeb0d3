from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from judgeserve.aggregates import aggregate, aggregate_all


def test_no_values_and_one_value() -> None:
    empty = aggregate([])
    assert (empty.mean, empty.ci_low, empty.ci_high, empty.n) == (None, None, None, 0)
    one = aggregate([3.0])
    assert one.mean == 3.0 and one.n == 1 and one.ci_low is None and one.ci_high is None


def test_bools_count_as_zero_one_and_missing_values_are_skipped() -> None:
    agg = aggregate([True, False, False, True, None, float("nan"), False, False])
    assert agg.n == 6 and agg.mean == pytest.approx(2 / 6)
    assert agg.ci_low is not None and agg.ci_high is not None
    assert 0.0 <= agg.ci_low <= agg.mean <= agg.ci_high <= 1.0


def test_constant_values_give_a_point_interval() -> None:
    agg = aggregate([0.5] * 10)
    assert agg.ci_low == agg.ci_high == agg.mean == 0.5


@pytest.mark.parametrize("kind", ["float", "levels", "bool"])
def test_interval_is_deterministic_contains_the_mean_and_narrows_with_n(kind: str) -> None:
    rng = random.Random(1)

    def draw(n: int) -> list[float]:
        if kind == "float":
            return [rng.gauss(10, 2) for _ in range(n)]
        if kind == "levels":
            return [float(rng.randrange(5)) for _ in range(n)]
        return [float(rng.random() < 0.3) for _ in range(n)]

    small, large = draw(30), draw(3000)
    assert aggregate(small) == aggregate(small)
    a, b = aggregate(small), aggregate(large)
    for agg in (a, b):
        assert agg.ci_low is not None and agg.ci_high is not None and agg.mean is not None
        assert agg.ci_low <= agg.mean <= agg.ci_high
    assert b.ci_high - b.ci_low < a.ci_high - a.ci_low  # type: ignore[operator]


def test_coverage_of_a_known_mean() -> None:
    rng = random.Random(5)
    hits = 0
    for _ in range(100):
        agg = aggregate([rng.gauss(0, 1) for _ in range(50)], resamples=500)
        hits += agg.ci_low <= 0 <= agg.ci_high  # type: ignore[operator]
    assert 85 <= hits <= 100  # a 95% interval


def test_thousands_of_values_are_fast() -> None:
    values = [random.random() for _ in range(5000)]
    started = time.perf_counter()
    agg = aggregate(values)
    assert time.perf_counter() - started < 1.0
    assert agg.n == 5000 and not math.isnan(agg.mean or math.nan)


def test_aggregate_all_maps_metrics() -> None:
    out = aggregate_all({"a": [1.0, 2.0], "b": [True, True, False]})
    assert set(out) == {"a", "b"} and out["a"].n == 2 and out["b"].mean == pytest.approx(2 / 3)


def _general_bootstrap(values: list[float], resamples: int = 20_000) -> tuple[float, float]:
    """The textbook percentile bootstrap (index resampling), written out here."""
    x = np.array(values, dtype=float)
    idx = np.random.default_rng(11).integers(0, len(x), size=(resamples, len(x)))
    low, high = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    return float(low), float(high)


@pytest.mark.parametrize(("flagged", "n"), [(3, 100), (1, 24), (12, 64), (50, 100), (63, 64)])
def test_zero_one_shortcut_matches_binomial_quantiles_and_the_general_bootstrap(flagged: int, n: int) -> None:
    from scipy.stats import binom

    values = [True] * flagged + [False] * (n - flagged)
    agg = aggregate(values)
    assert agg.ci_low is not None and agg.ci_high is not None
    # The bootstrap mean of 0/1 values is Binomial(n, k/n) / n: its quantiles are known.
    p = flagged / n
    assert agg.ci_low == pytest.approx(binom.ppf(0.025, n, p) / n, abs=1 / n + 1e-9)
    assert agg.ci_high == pytest.approx(binom.ppf(0.975, n, p) / n, abs=1 / n + 1e-9)
    low, high = _general_bootstrap([float(v) for v in values])
    assert agg.ci_low == pytest.approx(low, abs=1 / n + 1e-9)
    assert agg.ci_high == pytest.approx(high, abs=1 / n + 1e-9)


def test_a_three_percent_loop_rate_gets_about_zero_to_seven_percent() -> None:
    agg = aggregate([1.0] * 3 + [0.0] * 97)
    assert agg.mean == pytest.approx(0.03)
    assert agg.ci_low == 0.0 and agg.ci_high == pytest.approx(0.07, abs=0.005)


def test_few_levels_shortcut_matches_the_general_bootstrap() -> None:
    rng = random.Random(2)
    values = [float(rng.choice([1, 2, 2, 3, 5])) for _ in range(80)]
    agg = aggregate(values)
    low, high = _general_bootstrap(values)
    assert agg.ci_low == pytest.approx(low, abs=0.03) and agg.ci_high == pytest.approx(high, abs=0.03)


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_the_interval_has_the_confidence_asked_for(confidence: float) -> None:
    from scipy.stats import norm

    # 400 distinct values (the index bootstrap): the percentile interval of a mean is close
    # to mean +- z * s / sqrt(n), z of the two-sided level.
    values = [float(v) for v in np.random.default_rng(4).normal(0.0, 1.0, 400)]
    agg = aggregate(values, confidence=confidence)
    assert agg.ci_low is not None and agg.ci_high is not None and agg.mean is not None
    half = norm.ppf(0.5 + confidence / 2) * np.std(values, ddof=1) / math.sqrt(len(values))
    assert agg.ci_high - agg.ci_low == pytest.approx(2 * half, rel=0.06)
    assert (agg.ci_low + agg.ci_high) / 2 == pytest.approx(agg.mean, abs=0.1 * half)
    # aggregate_all hands the level on.
    assert aggregate_all({"m": values}, confidence=confidence)["m"] == agg
