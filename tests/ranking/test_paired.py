"""Paired comparison of two checkpoints: planted differences are found, identical
checkpoints are not told apart, Holm keeps the family's false alarms rare."""

from __future__ import annotations

import numpy as np
import pytest

from judgeserve.ranking import compare_sides, probe_differences, wilcoxon_p, win_rate
from judgeserve.ranking.paired import paired_ci


def side(metric: str, values: np.ndarray, draws: tuple[str, ...] = ("greedy",)) -> dict:
    """``{metric: {(probe, draw): value}}`` of a (probes x draws) array."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    return {metric: {(f"p{i}", d): float(values[i, j]) for i in range(len(values))
                     for j, d in enumerate(draws)}}


def planted(seed: int, n: int = 500, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """B better than A by ``margin`` on 60 % of the probes, worse by it on the other 40 %,
    both with their own noise (sd margin / 4) around a per-probe level."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0.5, 0.2, n)
    better = rng.permutation(n) < int(0.6 * n)
    a = level + rng.normal(0, margin / 4, n)
    b = level + np.where(better, margin, -margin) + rng.normal(0, margin / 4, n)
    return a, b


@pytest.mark.parametrize("seed", range(20))
def test_planted_difference_ci_excludes_zero(seed: int) -> None:
    a, b = planted(seed)
    # Two more metrics with no difference share the Holm family.
    rng = np.random.default_rng(1000 + seed)
    noise_a, noise_b = rng.normal(size=500), rng.normal(size=500)
    sa = {**side("quality", a), **side("null1", noise_a), **side("null2", noise_a)}
    sb = {**side("quality", b), **side("null1", noise_b), **side("null2", noise_a)}
    deltas = {d.metric: d for d in compare_sides(sa, sb, directions={"quality": "higher"})}
    q = deltas["quality"]
    # The expected mean difference is 0.6 m - 0.4 m = 0.02 (m = 0.1).
    assert q.ci_low is not None and q.ci_high is not None
    assert 0 < q.ci_low < 0.02 < q.ci_high, q
    assert q.n == 500 and q.p_value is not None and q.p_value < 0.01
    assert q.significant and q.better == "b"
    assert q.holm_level is not None and q.holm_level <= 0.05
    assert not deltas["null2"].significant  # identical values: p = 1
    assert deltas["null2"].p_value == 1.0 and deltas["null2"].ci_low == deltas["null2"].ci_high == 0


def test_the_direction_decides_which_side_is_better() -> None:
    a, b = planted(0)
    (lower,) = compare_sides(side("loop", a), side("loop", b), directions={"loop": "lower"})
    assert lower.significant and lower.better == "a"
    (unknown,) = compare_sides(side("x", a), side("x", b))
    assert unknown.significant and unknown.better is None


def test_identical_checkpoints_ci_covers_zero_in_95_percent_of_seeds() -> None:
    """Same model, fresh noise: per probe a level, each checkpoint's value that level plus
    its own noise; and a 0/1 metric (a 10 % flag rate) at both."""
    seeds, n = 300, 200
    covered = {"score": 0, "flag": 0}
    significant = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        level = rng.normal(size=n)
        sa = {**side("score", level + rng.normal(0, 0.5, n)),
              **side("flag", rng.random(n) < 0.1)}
        sb = {**side("score", level + rng.normal(0, 0.5, n)),
              **side("flag", rng.random(n) < 0.1)}
        deltas = compare_sides(sa, sb)
        for d in deltas:
            assert d.ci_low is not None and d.ci_high is not None
            covered[d.metric] += d.ci_low <= 0 <= d.ci_high
        significant += any(d.significant for d in deltas)
    assert covered["score"] / seeds >= 0.95, covered
    assert covered["flag"] / seeds >= 0.95, covered
    # Holm over the two metrics: a false "significant" in at most ~5 % of the runs.
    assert significant / seeds <= 0.06, significant


def test_the_plain_percentile_interval_is_what_the_expansion_fixes() -> None:
    # At 50 probes the expanded interval is wider than the plain percentile one by the
    # factor sqrt(n/(n-1)) t/z, about 1.04: the plain one covered 0 in ~92 % of runs.
    from judgeserve.aggregates import aggregate

    d = np.random.default_rng(3).normal(size=50)
    low, high = paired_ci(d)
    plain = aggregate(d.tolist())
    assert low is not None and high is not None and plain.ci_low is not None and plain.ci_high is not None
    assert 1.02 < (high - low) / (plain.ci_high - plain.ci_low) < 1.08


def test_pairs_by_probe_and_draw_and_each_probe_counts_once() -> None:
    a = {("p1", "greedy"): 1.0, ("p1", "sampled-0"): 3.0, ("p2", "greedy"): 0.0,
         ("p3", "greedy"): 5.0}  # p3 has no partner
    b = {("p1", "greedy"): 2.0, ("p1", "sampled-0"): 5.0, ("p2", "greedy"): 1.0,
         ("p2", "sampled-0"): 9.0}  # p2's second draw has no partner
    mean_a, mean_b, d = probe_differences(a, b)
    assert mean_a.tolist() == [2.0, 0.0]
    assert mean_b.tolist() == [3.5, 1.0]
    assert d.tolist() == [1.5, 1.0]  # p1: mean of (1, 2) over its draws; p2: its greedy pair


def test_wilcoxon_edge_cases() -> None:
    assert wilcoxon_p(np.array([])) is None
    assert wilcoxon_p(np.zeros(20)) == 1.0
    assert wilcoxon_p(np.full(20, 0.5)) < 0.001


def test_win_rate_per_probe() -> None:
    values = {(f"p{i}", "greedy"): 1.0 for i in range(30)} | {
        (f"p{i}", "sampled-0"): 0.0 for i in range(30)}  # each probe: a win and a loss
    w = win_rate(values)
    assert w.n == 30 and w.mean == 0.5 and w.ci_low == w.ci_high == 0.5
    w = win_rate({(f"p{i}", "g"): float(i % 5 != 0) for i in range(200)})  # 160 wins
    assert w.mean == 0.8 and w.ci_low is not None and w.ci_high is not None
    assert 0.7 < w.ci_low < 0.8 < w.ci_high < 0.9
