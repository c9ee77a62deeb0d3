"""Each rule type fires on a constructed metric series and stays quiet on a healthy one."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from judgeserve.alerts import History, evaluate, parse_rules
from judgeserve.alerts.statistics import bootstrap_diff_ci, mann_whitney_worse

LOSS_FALLING = {100: 3.0, 200: 2.0, 300: 1.2, 400: 0.6, 500: 0.3}
LOSS_FLAT = {100: 1.0, 200: 1.01, 300: 0.99, 400: 1.0, 500: 1.0}


def rule(text: str) -> Any:
    (r,) = parse_rules("rules:\n  - " + text.strip().replace("\n", "\n    ")).rules
    return r


def per_sample(rng: np.random.Generator, mean: float, n: int = 24, sd: float = 0.05) -> list[float]:
    return list(np.clip(rng.normal(mean, sd, n), 0, 1))


def history(series: dict[str, dict[int, float]], spread: bool = True) -> History:
    """Aggregates from per-sample values drawn around each mean (deterministic)."""
    rng = np.random.default_rng(0)
    samples: dict[tuple[int, str], list[float]] = {}
    means: dict[str, dict[int, float]] = {}
    for metric, points in series.items():
        if metric.startswith("train.") or not spread:
            means[metric] = dict(points)
            continue
        means[metric] = {}
        for step, m in points.items():
            values = per_sample(rng, m)
            samples[(step, metric)] = values
            means[metric][step] = float(np.mean(values))
    return History.from_values("r", means, samples)


def fired(r: Any, h: History, step: int) -> bool:
    return evaluate(r, h, step) is not None


# --- threshold ----------------------------------------------------------------------------

THRESHOLD = "name: loops\ntype: threshold\nmetric: repetition.loop\nabove: 0.2"


def test_threshold_fires_above_and_carries_evidence() -> None:
    h = history({"repetition.loop": {100: 0.05, 200: 0.1, 300: 0.4}})
    r = rule(THRESHOLD)
    assert not fired(r, h, 100) and not fired(r, h, 200)
    f = evaluate(r, h, 300)
    assert f is not None and f.evidence["above"] == 0.2 and f.evidence["value"] > 0.2
    assert len(f.evidence["sample_ids"]) == 5 and all("@300#" in i for i in f.evidence["sample_ids"])
    assert "above 0.2 at step 300" in f.message


def test_threshold_below_and_ci_statistic() -> None:
    h = History.from_values("r", {"reference.chrf": {1: 40.0, 2: 20.0}})
    r = rule("name: low\ntype: threshold\nmetric: reference.chrf\nbelow: 30")
    assert not fired(r, h, 1) and fired(r, h, 2)
    # ci_low above the bound: only when the whole interval is over it.
    from judgeserve.alerts import Point

    h2 = History("r", {"m": [Point(1, 0.3, ci_low=0.1, ci_high=0.5, n=24)]})
    r2 = rule("name: ci\ntype: threshold\nmetric: m\nabove: 0.2\nstatistic: ci_low")
    assert not fired(r2, h2, 1)
    assert fired(rule("name: mean\ntype: threshold\nmetric: m\nabove: 0.2"), h2, 1)


def test_threshold_ignores_small_checkpoints_and_early_steps() -> None:
    h = History.from_values("r", {"m": {10: 0.9}}, n=2)
    assert not fired(rule("name: t\ntype: threshold\nmetric: m\nabove: 0.5"), h, 10)  # n < 4
    h = History.from_values("r", {"m": {10: 0.9, 50: 0.9}})
    late = rule("name: t\ntype: threshold\nmetric: m\nabove: 0.5\nfrom_step: 20")
    assert not fired(late, h, 10) and fired(late, h, 50)


def test_threshold_on_a_flag() -> None:
    h = History.from_values("r", {"flag.diversity.collapse": {100: 0.0, 200: 1.0}})
    r = rule("name: c\ntype: threshold\nmetric: flag.diversity.collapse\nabove: 0.5")
    assert not fired(r, h, 100) and fired(r, h, 200)


# --- regression ---------------------------------------------------------------------------

REGRESSION = """
name: sem
type: regression
metric: reference.semscore
worse: lower
baseline: {baseline}
test: {test}
min_change: 0.05
"""


@pytest.mark.parametrize("test", ["mann_whitney", "bootstrap"])
@pytest.mark.parametrize("baseline", ["first", "previous", "100"])
def test_regression_fires_on_a_significant_drop(test: str, baseline: str) -> None:
    h = history({"reference.semscore": {100: 0.80, 200: 0.81, 300: 0.65}})
    r = rule(REGRESSION.format(baseline=baseline, test=test))
    f = evaluate(r, h, 300)
    assert f is not None
    assert f.evidence["test"] == test and f.evidence["current"]["step"] == 300
    assert f.evidence["p_value"] < f.evidence["alpha"]
    assert ("diff_ci" in f.evidence) == (test == "bootstrap")
    assert "regressed" in f.message


@pytest.mark.parametrize("test", ["mann_whitney", "bootstrap"])
def test_regression_quiet_on_noise_and_on_improvement(test: str) -> None:
    r = rule(REGRESSION.format(baseline="first", test=test))
    healthy = history({"reference.semscore": {100: 0.80, 200: 0.79, 300: 0.82, 400: 0.78}})
    assert not any(fired(r, healthy, s) for s in (100, 200, 300, 400))
    # A drop bigger than min_change but within noise is not significant.
    rng = np.random.default_rng(1)
    noisy = History.from_values(
        "r",
        {"reference.semscore": {1: 0.5, 2: 0.44}},
        {(1, "reference.semscore"): list(rng.uniform(0, 1, 8)), (2, "reference.semscore"): list(rng.uniform(0, 1, 8))},
    )
    assert not fired(r.model_copy(update={"min_change": 0.0}), noisy, 2)


def test_regression_without_per_sample_values_compares_means() -> None:
    h = History.from_values("r", {"diversity.distinct2": {100: 0.8, 200: 0.5}})
    r = rule("name: d\ntype: regression\nmetric: diversity.distinct2\nworse: lower\nmin_change: 0.1")
    f = evaluate(r, h, 200)
    assert f is not None and f.evidence["test"] == "none"
    assert not fired(r.model_copy(update={"min_change": 0.4}), h, 200)


def test_statistics() -> None:
    worse = np.array([0.9] * 12 + [0.8] * 12)
    base = np.array([0.1] * 12 + [0.2] * 12)
    assert mann_whitney_worse(worse, base, "higher") < 1e-6
    assert mann_whitney_worse(worse, base, "lower") > 0.99
    assert mann_whitney_worse(np.ones(5), np.ones(5), "higher") == 1.0
    low, high = bootstrap_diff_ci(worse, base, 0.95)
    assert 0.6 < low < 0.7 < high < 0.8


def test_bootstrap_diff_ci_memory_is_bounded_for_large_checkpoints() -> None:
    import tracemalloc

    rng = np.random.default_rng(1)
    n = 100_000  # a resamples x n index matrix would be 1.6 GB
    worse, base = rng.normal(0.6, 0.2, n), rng.normal(0.5, 0.2, n)
    tracemalloc.start()
    try:
        low, high = bootstrap_diff_ci(worse, base, 0.95)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, peak
    assert 0.095 < low < 0.1 < high < 0.105


# --- trend --------------------------------------------------------------------------------

TREND = "name: t\ntype: trend\nmetric: reference.chrf\nworse: lower\ncheckpoints: 3\nmin_change: 0.5"


def test_trend_fires_after_k_consecutive_worse_checkpoints() -> None:
    h = History.from_values("r", {"reference.chrf": {1: 50, 2: 52, 3: 48, 4: 45, 5: 41}})
    r = rule(TREND)
    assert not fired(r, h, 3) and not fired(r, h, 4)  # only 1 and 2 worsenings so far
    f = evaluate(r, h, 5)
    assert f is not None and f.evidence["values"] == {2: 52, 3: 48, 4: 45, 5: 41}
    assert "fell at 3 checkpoints in a row" in f.message


def test_trend_quiet_when_broken_or_too_small() -> None:
    r = rule(TREND)
    broken = History.from_values("r", {"reference.chrf": {1: 50, 2: 48, 3: 49, 4: 45, 5: 41}})
    tiny = History.from_values("r", {"reference.chrf": {1: 50, 2: 49.9, 3: 49.8, 4: 49.7}})
    assert not fired(r, broken, 5) and not fired(r, tiny, 4)


# --- divergence ---------------------------------------------------------------------------

DIVERGENCE = """
name: mem
type: divergence
metric: memorization.ngram_overlap
worse: higher
min_change: 0.15
"""
QUALITY = """
name: q
type: divergence
metric: reference.semscore
worse: lower
min_change: 0.05
"""


def test_divergence_fires_when_loss_falls_and_memorization_rises() -> None:
    h = history({"train.loss": LOSS_FALLING, "memorization.ngram_overlap": {100: 0.0, 200: 0.02, 300: 0.1, 400: 0.3, 500: 0.5}})
    r = rule(DIVERGENCE)
    assert [s for s in (100, 200, 300, 400, 500) if fired(r, h, s)] == [400, 500]
    f = evaluate(r, h, 400)
    assert f is not None
    assert f.evidence["loss"]["baseline"]["value"] == 3.0 and f.evidence["loss"]["current"]["value"] == 0.6
    assert f.evidence["baseline"]["step"] == 100 and f.evidence["p_value"] < 0.05
    assert "while train.loss fell 3 → 0.6" in f.message


def test_divergence_fires_when_loss_falls_and_quality_falls() -> None:
    h = history({"train.loss": LOSS_FALLING, "reference.semscore": {100: 0.7, 200: 0.72, 300: 0.71, 400: 0.6, 500: 0.5}})
    r = rule(QUALITY)
    assert not fired(r, h, 200) and not fired(r, h, 300)
    f = evaluate(r, h, 400)
    assert f is not None and f.evidence["baseline"]["step"] == 100  # the first checkpoint


def test_divergence_quiet_when_both_improve() -> None:
    h = history({"train.loss": LOSS_FALLING, "reference.semscore": {100: 0.5, 200: 0.6, 300: 0.65, 400: 0.7, 500: 0.8}})
    assert not any(fired(rule(QUALITY), h, s) for s in LOSS_FALLING)
    h = history({"train.loss": LOSS_FALLING, "memorization.ngram_overlap": {100: 0.3, 200: 0.2, 300: 0.1, 400: 0.05, 500: 0.0}})
    assert not any(fired(rule(DIVERGENCE), h, s) for s in LOSS_FALLING)


def test_divergence_quiet_when_loss_does_not_fall() -> None:
    h = history({"train.loss": LOSS_FLAT, "reference.semscore": {100: 0.8, 200: 0.7, 300: 0.6, 400: 0.5, 500: 0.4}})
    assert not any(fired(rule(QUALITY), h, s) for s in LOSS_FLAT)
    rising = {s: 1.0 + s / 100 for s in LOSS_FLAT}
    h = history({"train.loss": rising, "reference.semscore": {100: 0.8, 200: 0.7, 300: 0.6, 400: 0.5, 500: 0.4}})
    assert not any(fired(rule(QUALITY), h, s) for s in LOSS_FLAT)


def test_divergence_on_a_set_metric_uses_the_loss_logged_before_the_checkpoint() -> None:
    # The trainer logs loss every 25 steps; checkpoints fall between logging steps.
    loss = {25: 4.0, 50: 2.0, 75: 1.0, 100: 0.5, 125: 0.3}
    h = History.from_values("r", {"train.loss": loss, "diversity.unique_ratio": {60: 0.9, 110: 0.4}})
    r = rule("name: c\ntype: divergence\nmetric: diversity.unique_ratio\nworse: lower\nmin_change: 0.25")
    f = evaluate(r, h, 110)
    assert f is not None and f.evidence["test"] == "none"
    assert f.evidence["loss"]["baseline"] == {"step": 50, "value": 2.0}
    assert f.evidence["loss"]["current"] == {"step": 100, "value": 0.5}


def test_disabled_rules_never_fire() -> None:
    h = history({"repetition.loop": {1: 0.9}})
    assert not fired(rule(THRESHOLD + "\nenabled: false"), h, 1)


# --- corrections: over checkpoints (spending) and over rules (Holm) --------------------------


def test_each_look_spends_a_share_and_all_looks_together_spend_alpha() -> None:
    from judgeserve.alerts.statistics import look_alpha

    shares = [look_alpha(0.05, k) for k in range(1, 100_001)]
    assert all(a > b > 0 for a, b in pairwise(shares[:200]))
    # The shares telescope: the first K sum to alpha * (1 - ln 2 / ln(K + 2)), under alpha.
    for k in (1, 10, 50, 100_000):
        assert sum(shares[:k]) == pytest.approx(0.05 * (1 - np.log(2) / np.log(k + 2)), rel=1e-9)
    assert shares[0] == pytest.approx(0.05 * (1 - np.log(2) / np.log(3)))
    with pytest.raises(ValueError):
        look_alpha(0.05, 0)


def test_holm_steps_down() -> None:
    from judgeserve.alerts.statistics import Tested, holm

    family = [Tested(p, 0.05) for p in (0.01, 0.04, 0.03, 0.5)]
    holm(family)  # 0.01 <= 0.05/4; then 0.03 > 0.05/3 stops it
    assert [t.rejected for t in family] == [True, False, False, False]
    assert family[0].level == pytest.approx(0.0125)
    family = [Tested(p, 0.05) for p in (0.001, 0.02, 0.04)]
    holm(family)  # Bonferroni would keep 0.02 (> 0.05/3); Holm tests it at 0.05/2
    assert [t.rejected for t in family] == [True, True, True]


def _two_drops() -> History:
    base = list(np.round(np.linspace(0.3, 0.9, 30), 4))
    drop = list(np.round(np.array(base) - 0.11, 4))  # Mann-Whitney p = 0.0135 each
    series = {m: {1: float(np.mean(base)), 2: float(np.mean(drop))} for m in ("a.score", "b.score")}
    samples = {(s, m): v for m in ("a.score", "b.score") for s, v in ((1, base), (2, drop))}
    return History.from_values("r", series, samples)


def test_rules_of_one_checkpoint_are_corrected_together() -> None:
    from judgeserve.alerts import evaluate_checkpoint

    h = _two_drops()
    a, b = (rule(f"name: {m[0]}\ntype: regression\nmetric: {m}\nworse: lower\nmin_change: 0.05")
            for m in ("a.score", "b.score"))
    # Alone, each drop is significant at the first look's share of 0.05 (0.018).
    fa, fb = evaluate(a, h, 2), evaluate(b, h, 2)
    assert fa is not None and fb is not None
    assert fa.evidence["alpha"] == pytest.approx(0.01845, abs=1e-5) and fa.evidence["family"] == 1
    assert "p=0.014 < level 0.018" in fa.message
    # Tested together, the smaller p must pass half of it: neither does.
    assert evaluate_checkpoint([a, b], h, 2) == []
    # A rule whose other conditions fail still counts in the family (p = 1).
    quiet = rule("name: q\ntype: regression\nmetric: b.score\nworse: higher")
    assert evaluate_checkpoint([a, quiet], h, 2) == []


def test_a_baseline_picked_after_looking_is_refused() -> None:
    from judgeserve.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"'best' is no longer a baseline.*use 'first', 'previous'"):
        rule("name: b\ntype: regression\nmetric: m\nworse: lower\nbaseline: best")


def test_min_relative_change_asks_for_a_share_of_the_baseline() -> None:
    r = rule("name: short\ntype: regression\nmetric: length.tokens\nworse: lower\nbaseline: previous\n"
             "min_relative_change: 0.5")
    rng = np.random.default_rng(3)
    long = list(rng.normal(200, 20, 40))
    for factor, fires in ((0.4, True), (0.6, False)):
        shorter = [v * factor for v in long]
        h = History.from_values("r", {"length.tokens": {1: float(np.mean(long)), 2: float(np.mean(shorter))}},
                                {(1, "length.tokens"): long, (2, "length.tokens"): shorter})
        assert fired(r, h, 2) is fires


def test_a_trend_must_also_be_significant() -> None:
    r = rule(TREND.replace("min_change: 0.5", "min_change: 0"))
    spread = np.linspace(20.0, 80.0, 24)

    def falling(per_step: float) -> History:
        samples = {(s, "reference.chrf"): list(spread - per_step * (s - 1)) for s in (1, 2, 3, 4)}
        means = {s: float(np.mean(v)) for (s, _), v in samples.items()}
        return History.from_values("r", {"reference.chrf": means}, samples)

    # Fell at three checkpoints in a row, by 3 points in all: noise beside a spread of 60.
    assert not fired(r, falling(1.0), 4)
    f = evaluate(r, falling(15.0), 4)
    assert f is not None and f.evidence["p_value"] < f.evidence["alpha"]
    assert fired(r.model_copy(update={"test": "none"}), falling(1.0), 4)  # means only: monotone is enough


def test_boolean_evidence_lists_the_flagged_samples_only() -> None:
    h = History.from_values("r", {"repetition.loop": {1: 0.25}},
                            {(1, "repetition.loop"): [False, True, False, False]})
    f = evaluate(rule(THRESHOLD), h, 1)
    assert f is not None and f.evidence["sample_ids"] == ["repetition.loop@1#1"]
    # Lower is worse: the samples whose flag is off are the evidence.
    low = rule("name: ok\ntype: threshold\nmetric: repetition.loop\nbelow: 0.9")
    f = evaluate(low, h, 1)
    assert f is not None and f.evidence["sample_ids"] == ["repetition.loop@1#0", "repetition.loop@1#2", "repetition.loop@1#3"]


def test_threshold_bounds_are_strict_and_evidence_names_every_number() -> None:
    h = history({"judge.help.score": {100: 3.0, 200: 2.5, 300: 2.4}}, spread=False)
    above = rule("name: high\ntype: threshold\nmetric: judge.help.score\nabove: 3.0")
    below = rule("name: low\ntype: threshold\nmetric: judge.help.score\nbelow: 2.5")
    assert not fired(above, h, 100)  # at the bound is not above it
    assert not fired(below, h, 200)  # nor below it
    f = evaluate(below, h, 300)
    assert f is not None and f.rule is below and f.step == 300
    assert f.evidence == {
        "metric": "judge.help.score",
        "statistic": "mean",
        "value": 2.4,
        "below": 2.5,
        "n": 24,
        "ci": [None, None],
        "sample_ids": [],
    }
    assert f.message == "judge.help.score mean 2.4 is below 2.5 at step 300"
