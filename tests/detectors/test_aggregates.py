from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from judgeserve.aggregates import aggregate, aggregate_all, resample_count, resample_indices
from judgeserve.schema import Aggregate


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


@pytest.mark.parametrize("values", [[0.5] * 10, [7.0, 7.0], [0.1] * 20, [0.1] * 50])
def test_constant_values_give_a_point_interval(values: list[float]) -> None:
    # 0.1 x 20 sums to a mean an ulp above 0.1 and 0.1 x 50 to one below, while a resample
    # of n copies gives n * 0.1 / n = 0.1: only the all-equal shortcut makes it a point.
    agg = aggregate(values)
    assert agg.ci_low == agg.ci_high == agg.mean == pytest.approx(values[0], rel=1e-12)
    assert agg.n == len(values)


def test_two_values_give_the_two_values_as_bounds() -> None:
    # Resampling [1, 3] gives a mean of 1, 2 or 3 with chances 1/4, 1/2, 1/4: the 2.5 % and
    # 97.5 % quantiles lie inside the outer quarters. inf/-inf/NaN/None are left out.
    for values in ([1.0, 3.0], [3.0, None, math.inf, 1.0, -math.inf, math.nan]):
        assert aggregate(values) == Aggregate(mean=2.0, ci_low=1.0, ci_high=3.0, n=2)


@pytest.mark.parametrize(
    ("value", "rounded", "n", "k"),
    [
        (0.7, 0.1 * 7, 20, 2),  # the mean lands 2 ulps under both raw bounds
        (0.1, 0.3 - 0.2, 20, 2),  # ... 1 ulp over both raw bounds
        (123456.789, 0.1 * 1234567.89, 20, 10),  # large scores: the slack scales with them
        (1e5 / 3, 1e5 * (1 / 3), 20, 2),
    ],
)
def test_scores_equal_up_to_rounding_keep_the_mean_inside_its_interval(
    value: float, rounded: float, n: int, k: int
) -> None:
    """One score computed in two orders differs in its last bits; the bootstrap then puts a
    bound an ulp past the mean, which alert rules would read as the mean outside its own CI."""
    assert value != rounded and value == pytest.approx(rounded, rel=1e-15)
    agg = aggregate([value] * (n - k) + [rounded] * k)
    assert agg.mean is not None and agg.ci_low is not None and agg.ci_high is not None
    assert agg.ci_low <= agg.mean <= agg.ci_high
    assert agg.ci_low == pytest.approx(value, rel=1e-14)
    assert agg.ci_high == pytest.approx(value, rel=1e-14)


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


@pytest.mark.parametrize(
    ("low_level", "high_level", "n", "k"), [(0.0, 2.0, 40, 10), (0.5, 1.0, 40, 30), (-1.0, 1.0, 60, 20)]
)
def test_two_levels_other_than_zero_one_scale_the_binomial(
    low_level: float, high_level: float, n: int, k: int
) -> None:
    from scipy.stats import binom

    # k of n values at the high level: a resample's mean is low + (high - low) * K / n,
    # K ~ Binomial(n, k / n). Only 0/1 values may take the bare binomial shortcut.
    agg = aggregate([high_level] * k + [low_level] * (n - k))
    step = high_level - low_level
    assert agg.mean == pytest.approx(low_level + step * k / n)
    expected = [low_level + step * binom.ppf(q, n, k / n) / n for q in (0.025, 0.975)]
    assert agg.ci_low == pytest.approx(expected[0], abs=step / n + 1e-9)
    assert agg.ci_high == pytest.approx(expected[1], abs=step / n + 1e-9)


def test_three_levels_starting_at_zero_one_are_not_zero_one_values() -> None:
    values = [0.0] * 20 + [1.0] * 10 + [2.0] * 10  # mean 0.75; the 1s alone are 0.25
    agg = aggregate(values)
    low, high = _general_bootstrap(values)
    assert agg.mean == pytest.approx(0.75)
    assert agg.ci_low == pytest.approx(low, abs=0.03) and agg.ci_high == pytest.approx(high, abs=0.03)


def _percentiles(means: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@pytest.mark.parametrize(("flagged", "n", "seed", "resamples"),
                         [(6, 12, 0, 2000), (10, 20, 0, 2000), (3, 100, 0, 2000), (10, 20, 1, 500)])
def test_zero_one_interval_is_the_seeded_binomial_draw(
    flagged: int, n: int, seed: int, resamples: int
) -> None:
    # The documented shortcut, reproduced with numpy: Binomial(n, k/n) / n draws from the
    # seeded generator. Half-flagged samples are where a multinomial over {0, 1} (the same
    # distribution, another draw) gives another interval, so the shortcut must be taken.
    draws = np.random.default_rng(seed).binomial(n, flagged / n, size=resamples) / n
    agg = aggregate([True] * flagged + [False] * (n - flagged), resamples=resamples, seed=seed)
    assert (agg.ci_low, agg.ci_high) == _percentiles(draws)


def test_up_to_64_levels_resample_counts_beyond_that_indices() -> None:
    # Reproduced with numpy from the seed: 64 levels are multinomial counts over the levels,
    # 65 are index resamples (2000 rows of 200 indices, one chunk).
    on_64 = np.array([float(i % 64) for i in range(200)])
    levels, counts = np.unique(on_64, return_counts=True)
    draws = np.random.default_rng(0).multinomial(200, counts / 200, size=2000)
    agg = aggregate(list(on_64))
    assert (agg.ci_low, agg.ci_high) == _percentiles(draws @ levels / 200)

    on_65 = np.array([float(i % 65) for i in range(200)])
    idx = np.random.default_rng(0).integers(0, 200, size=(2000, 200))
    agg = aggregate(list(on_65))
    assert (agg.ci_low, agg.ci_high) == _percentiles(on_65[idx].mean(axis=1))


def test_resample_count_keeps_draws_near_four_million_but_never_under_1000() -> None:
    assert resample_count(100, 2000) == 2000  # 200k draws: all
    assert resample_count(2000, 2000) == 2000  # exactly the 4M budget
    assert resample_count(2500, 2000) == 1600  # 4M / 2500
    assert resample_count(5000, 2000) == 1000  # 800 by budget, floored at 1000
    assert resample_count(10**6, 2000) == 1000
    assert resample_count(10**6, 500) == 500  # the floor never raises what was asked
    assert resample_count(1, 3_000_000) == 3_000_000  # under 4M draws of one item
    assert resample_count(0, 2000) == 2000


def test_resample_indices_chunks_rows_of_valid_indices() -> None:
    rng = np.random.default_rng(0)
    # 5000 items: 1000 rows, 838 to a chunk of at most 2^22 draws.
    chunks = list(resample_indices(5000, 2000, rng))
    assert [c.shape for c in chunks] == [(838, 5000), (162, 5000)]
    assert min(int(c.min()) for c in chunks) == 0 and max(int(c.max()) for c in chunks) == 4999
    small = np.concatenate(list(resample_indices(3, 2000, rng)))
    assert small.shape == (2000, 3) and set(np.unique(small).tolist()) == {0, 1, 2}
    # One item: 3M rows fit one chunk; more than 2^22 items: one row a chunk.
    assert [c.shape for c in resample_indices(1, 3_000_000, rng)] == [(3_000_000, 1)]
    first = next(resample_indices(5_000_000, 2000, rng))
    assert first.shape == (1, 5_000_000)


def test_an_interval_past_the_float_range_is_left_out() -> None:
    # One 1e308 among 50 zeros: the mean (2e306) is a float, but a resample holding the big
    # value twice sums past 1.8e308 to inf: the mean and n are reported without a CI.
    with np.errstate(over="ignore", invalid="ignore"):
        agg = aggregate([1e308] + [0.0] * 49)
    assert agg.mean == pytest.approx(2e306) and agg.n == 50
    assert agg.ci_low is None and agg.ci_high is None
