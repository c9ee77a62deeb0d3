"""Ranking checkpoints: the best by quality, gates, the band that cannot be told apart."""

from __future__ import annotations

import numpy as np
import pytest

from judgeserve.ranking import RankInput, default_quality, parse_quality, rank

ONE_METRIC = """
metrics:
  - metric: score
    better: higher
"""


def run(offsets: list[float], probes: int = 100, noise: float = 0.5, seed: int = 0,
        means: dict[int, dict[str, float | None]] | None = None) -> RankInput:
    """Checkpoints at steps 100, 200, ...: per probe a level shared by all, plus the
    checkpoint's offset and its own noise."""
    rng = np.random.default_rng(seed)
    level = rng.normal(size=probes)
    values = level + np.array(offsets)[:, None] + rng.normal(0, noise, (len(offsets), probes))
    steps = [100 * (i + 1) for i in range(len(offsets))]
    return RankInput(steps, [f"p{j}" for j in range(probes)], {"score": values},
                     means or {s: {} for s in steps})


def test_planted_best_and_band() -> None:
    r = rank(run([0.0, 0.1, 0.5, 0.5, 0.3, -0.2]), parse_quality(ONE_METRIC))
    assert r.best in (300, 400) and r.reason is None
    other = 700 - r.best
    assert r.band == [other]  # the other 0.5 checkpoint cannot be told apart from it
    best = r.get(r.best)
    assert best is not None and best.best and best.rank == 1 and best.score is not None
    assert best.ci_low is not None and best.ci_high is not None
    assert best.ci_low < best.score < best.ci_high
    worst = r.get(600)
    assert worst is not None and not worst.indistinguishable and worst.rank == 6
    assert worst.diff is not None and worst.diff_ci_low is not None and worst.diff_ci_low > 0
    assert r.critical_value is not None and r.critical_value > 2


def test_identical_checkpoints_are_rarely_told_apart() -> None:
    runs, told_apart = 100, 0
    for seed in range(runs):
        r = rank(run([0.0] * 8, seed=seed), parse_quality(ONE_METRIC))
        told_apart += len(r.band) < 7
    # Every pair at once at 95 %: measured 4-7 % of runs for 3 to 30 checkpoints.
    assert told_apart / runs <= 0.08, told_apart


def test_gates_disqualify_and_name_the_gate() -> None:
    quality = parse_quality(ONE_METRIC + """
gates:
  - metric: repetition.loop
    at_most: 0.02
  - metric: diversity.unique_ratio
    at_least: 0.5
  - metric: nowhere.metric
    at_most: 1
""")
    means = {100: {"repetition.loop": 0.0, "diversity.unique_ratio": 0.9},
             200: {"repetition.loop": 0.1, "diversity.unique_ratio": 0.9},  # the best score
             300: {"repetition.loop": 0.0, "diversity.unique_ratio": 0.2},
             400: {"repetition.loop": 0.0}}  # no diversity value
    r = rank(run([0.0, 1.0, 0.9, 0.8], means=means), quality)
    assert r.best == 100
    assert r.get(200).disqualified == ["repetition.loop <= 0.02 (was 0.1)"]  # type: ignore[union-attr]
    assert r.get(300).disqualified == ["diversity.unique_ratio >= 0.5 (was 0.2)"]  # type: ignore[union-attr]
    assert r.get(400).disqualified == ["diversity.unique_ratio >= 0.5 (no value)"]  # type: ignore[union-attr]
    assert r.unchecked_gates == ["nowhere.metric <= 1"]
    assert all(c.score is not None for c in r.checkpoints)  # disqualified are still scored


def test_every_checkpoint_disqualified_says_so() -> None:
    quality = parse_quality(ONE_METRIC + "gates:\n  - metric: loop\n    at_most: 0.02\n")
    r = rank(run([0.0, 0.1], means={100: {"loop": 0.5}, 200: {"loop": 0.03}}), quality)
    assert r.best is None and r.reason == "every scored checkpoint is disqualified by a gate"
    assert [c.disqualified for c in r.checkpoints] == [
        ["loop <= 0.02 (was 0.5)"], ["loop <= 0.02 (was 0.03)"]]
    assert r.band == []


def test_weights_scales_and_directions() -> None:
    quality = parse_quality("""
metrics:
  - metric: judge.*
    better: higher
    weight: 2
    scale: [1, 5]
  - metric: loop
    better: lower
""")
    steps, probes = [1, 2], ["a", "b"]
    values = {
        "judge.r.x": np.array([[5.0, 5.0], [3.0, 3.0]]),  # 1.0 and 0.5 on 0-1
        "judge.r.y": np.array([[1.0, 1.0], [3.0, 3.0]]),  # 0.0 and 0.5
        "loop": np.array([[0.0, 1.0], [0.0, 0.0]]),  # 0.5 and 1.0 (lower is better)
    }
    r = rank(RankInput(steps, probes, values, {1: {}, 2: {}}), quality)
    # judge.* weighs 2 split over its two criteria: 2/3 x 1/2 each, loop 1/3.
    assert r.weights == pytest.approx({"judge.r.x": 1 / 3, "judge.r.y": 1 / 3, "loop": 1 / 3})
    s1, s2 = (c.score for c in r.checkpoints)
    assert s1 == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert s2 == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert r.best == 2


def test_missing_values_and_unused_metrics_are_reported() -> None:
    values = {"score": np.array([[1.0, 2.0], [np.nan, np.nan], [0.5, np.nan]])}
    inp = RankInput([1, 2, 3], ["a", "b"], values, {1: {}, 2: {}, 3: {}},
                    complete={1: True, 2: True, 3: False},
                    excluded={"judge.pw.better": "pairwise verdicts"})
    quality = parse_quality(ONE_METRIC + "  - metric: judge.*\n    better: higher\n"
                            "  - metric: chrf\n    better: higher\n")
    r = rank(inp, quality)
    assert r.best == 1
    c2, c3 = r.get(2), r.get(3)
    assert c2 is not None and c2.score is None and c2.missing == ["score"]
    assert c3 is not None and c3.score == 0.5 and c3.probes == 1 and c3.complete is False
    assert r.not_scored == {"judge.pw.better": "pairwise verdicts",
                            "chrf": "no per-sample values in this run"}


def test_no_usable_metric_gives_a_reason() -> None:
    r = rank(RankInput([1], ["a"], {"length.tokens": np.array([[3.0]])}, {1: {}}),
             default_quality())
    assert r.best is None and "no metric of the quality definition" in (r.reason or "")
    r = rank(RankInput([], [], {}, {}), default_quality())
    assert r.best is None and r.reason == "the run has no checkpoint with aggregates yet"
