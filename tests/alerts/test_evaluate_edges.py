"""The edges of each rule: where windows and thresholds start and stop, which checkpoint is
the baseline, what an alert says and carries. Alert rules stop runs, so every expected number
here is worked out by hand (series of exact binary fractions, separated samples whose
Mann-Whitney p-value is 1 / C(n+m, n)), never taken from the code under test."""

from __future__ import annotations

from typing import Any

import pytest

from judgeserve.alerts import History, Point, evaluate, evaluate_checkpoint, parse_rules
from judgeserve.alerts.evaluate import SampleValues, compare_samples

# A rule's first look may spend 0.05 · (1 - ln 2 / ln 3) of its alpha; the second
# 0.05 · ln 2 · (1/ln 3 - 1/ln 4) (statistics.look_alpha; worked out with a calculator).
FIRST_LOOK = 0.0184535
SECOND_LOOK = 0.0065465
THIRD_LOOK = 0.0034662
# Four samples all above four others: the one-sided Mann-Whitney p is 1 / C(8, 4) = 1/70.
P_4_VS_4 = 1 / 70
LOW4, HIGH4 = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]  # means 2.5 and 6.5


def rule(text: str) -> Any:
    (r,) = parse_rules("rules:\n  - " + text.strip().replace("\n", "\n    ")).rules
    return r


def points_history(series: dict[str, list[Point]],
                   samples: dict[tuple[int, str], list[float]] | None = None) -> History:
    """A history whose points' sample counts are set apart from the samples it can fetch."""
    found = samples or {}

    def fetch(step: int, metric: str) -> SampleValues:
        return [(f"{metric}@{step}#{i}", v) for i, v in enumerate(found.get((step, metric), []))]

    return History("r", series, fetch)


# --- History ------------------------------------------------------------------------------


def test_from_values_counts_samples_sorts_steps_and_defaults_counts_by_kind() -> None:
    h = History.from_values("r", {"m": {3: 1, 1: 2}, "train.loss": {5: 0.5}},
                            {(1, "m"): [1, 0, 1]})
    assert h.run == "r"
    # Steps come out in order, whatever order the dict gave them in.
    assert h.series["m"] == [Point(1, 2.0, n=3), Point(3, 1.0, n=24)]
    assert all(type(p.mean) is float for p in h.series["m"])
    # A trainer metric is one number per step; an aggregate without samples counts as 24.
    assert h.series["train.loss"] == [Point(5, 0.5, n=1)]
    given = History.from_values("r", {"m": {1: 0.5}, "train.loss": {1: 1.0}},
                                {(1, "m"): [0.1, 0.2]}, n=7)
    assert given.series["m"][0].n == 2 and given.series["train.loss"][0].n == 7


def test_from_values_samples_are_floats_or_flags_with_ids() -> None:
    h = History.from_values("r", {"m": {1: 0.5}, "f": {1: 0.5}},
                            {(1, "m"): [1, 0], (1, "f"): [True, False]})
    got = h.samples(1, "m")
    assert got == [("m@1#0", 1.0), ("m@1#1", 0.0)] and all(type(v) is float for _, v in got)
    flags = h.samples(1, "f")
    assert flags == [("f@1#0", True), ("f@1#1", False)] and all(type(v) is bool for _, v in flags)
    assert h.samples(2, "m") == [] and h.samples(1, "other") == []


def test_each_checkpoints_samples_are_fetched_once() -> None:
    """The engine's fetch is a store query: a step's samples are read once per evaluation."""
    calls: list[tuple[int, str]] = []

    def fetch(step: int, metric: str) -> SampleValues:
        calls.append((step, metric))
        return [(f"{step}", float(step))]

    h = History("r", {}, fetch)
    assert h.samples(1, "m") == [("1", 1.0)] and h.samples(1, "m") == [("1", 1.0)]
    assert h.samples(2, "m") == [("2", 2.0)]
    assert calls == [(1, "m"), (2, "m")]


def test_checkpoints_keep_valued_points_with_enough_samples_within_the_steps() -> None:
    h = History("r", {"m": [Point(10, 0.1, n=4), Point(20, 0.2, n=3), Point(30, None, n=24),
                            Point(40, 0.4, n=24), Point(50, 0.5, n=24)],
                      "train.loss": [Point(10, 1.0, n=1)]})
    assert [p.step for p in h.checkpoints("m", 4, 10, 40)] == [10, 40]  # both ends count
    assert [p.step for p in h.checkpoints("m", 3, 11, 50)] == [20, 40, 50]
    assert [p.step for p in h.checkpoints("m", 4, 0, 39)] == [10]
    assert [p.step for p in h.checkpoints("train.loss", 4, 0, 10)] == [10]  # one value a step
    assert h.checkpoints("absent", 4, 0, 100) == []


# --- threshold ----------------------------------------------------------------------------


def test_threshold_counts_a_checkpoint_with_exactly_min_samples_and_from_step() -> None:
    r = rule("name: t\ntype: threshold\nmetric: m\nabove: 0.5\nfrom_step: 20")
    h = History("r", {"m": [Point(20, 0.9, n=4), Point(30, 0.9, n=3)]})
    assert evaluate(r, h, 20) is not None  # at from_step, with min_samples samples
    assert evaluate(r, h, 30) is None  # one sample short
    assert evaluate(r, h, 10) is None


def test_threshold_only_at_a_checkpoint_of_its_metric() -> None:
    r = rule("name: t\ntype: threshold\nmetric: m\nabove: 0.5")
    h = History.from_values("r", {"m": {100: 0.9, 200: 0.1}})
    assert evaluate(r, h, 150) is None  # 100 is over the bound, but 150 is no checkpoint
    assert evaluate(r, h, 50) is None  # before any checkpoint
    assert evaluate(r, h, 200) is None
    assert evaluate(rule("name: t\ntype: threshold\nmetric: other\nabove: 0.5"), h, 100) is None
    # A point without a value is no checkpoint of the metric.
    assert evaluate(r, History("r", {"m": [Point(1, None, n=24)]}), 1) is None


def test_threshold_on_a_trainer_metric_needs_one_value() -> None:
    h = History.from_values("r", {"train.loss": {100: 2.0, 200: 7.5}})
    r = rule("name: blowup\ntype: threshold\nmetric: train.loss\nabove: 5")
    assert evaluate(r, h, 100) is None
    f = evaluate(r, h, 200)
    assert f is not None and f.evidence["n"] == 1 and f.evidence["value"] == 7.5
    assert f.message == "train.loss mean 7.5 is above 5 at step 200"


def test_threshold_above_evidence_lists_the_highest_samples_first() -> None:
    values = [0.0, 1.0, 0.25, 0.75, 0.5, 0.5]  # mean 0.5
    h = History.from_values("r", {"m": {1: 0.5}}, {(1, "m"): values})
    f = evaluate(rule("name: high\ntype: threshold\nmetric: m\nabove: 0.4"), h, 1)
    assert f is not None and f.step == 1 and f.rule.name == "high"
    assert f.evidence == {
        "metric": "m",
        "statistic": "mean",
        "value": 0.5,
        "above": 0.4,
        "n": 6,
        "ci": [None, None],
        "sample_ids": ["m@1#1", "m@1#3", "m@1#4", "m@1#5", "m@1#2"],
    }
    assert f.message == "m mean 0.5 is above 0.4 at step 1"
    f = evaluate(rule("name: low\ntype: threshold\nmetric: m\nbelow: 0.6"), h, 1)
    assert f is not None and f.evidence["below"] == 0.6 and "above" not in f.evidence
    assert f.evidence["sample_ids"] == ["m@1#0", "m@1#2", "m@1#4", "m@1#5", "m@1#3"]


def test_flag_evidence_stops_at_five_samples() -> None:
    flags = [True] * 7 + [False]
    h = History.from_values("r", {"repetition.loop": {1: 0.875}}, {(1, "repetition.loop"): flags})
    f = evaluate(rule("name: l\ntype: threshold\nmetric: repetition.loop\nabove: 0.5"), h, 1)
    assert f is not None and f.evidence["sample_ids"] == [f"repetition.loop@1#{i}" for i in range(5)]


def test_threshold_with_both_bounds() -> None:
    r = rule("name: band\ntype: threshold\nmetric: m\nabove: 0.8\nbelow: 0.2")
    h = History.from_values("r", {"m": {1: 0.5, 2: 0.9, 3: 0.1}})
    assert evaluate(r, h, 1) is None
    high, low = evaluate(r, h, 2), evaluate(r, h, 3)
    assert high is not None and high.message == "m mean 0.9 is above 0.8 at step 2"
    assert low is not None and low.message == "m mean 0.1 is below 0.2 at step 3"


def test_threshold_on_an_interval_bound_and_its_fallback_to_the_mean() -> None:
    r = rule("name: ci\ntype: threshold\nmetric: m\nabove: 0.2\nstatistic: ci_high")
    h = History("r", {"m": [Point(1, 0.1, ci_low=0.0, ci_high=0.3, n=24), Point(2, 0.3, n=24),
                            Point(3, 0.1, n=24)]})
    f = evaluate(r, h, 1)
    assert f is not None and f.evidence["value"] == 0.3 and f.evidence["ci"] == [0.0, 0.3]
    assert f.message == "m ci_high 0.3 is above 0.2 at step 1"
    # No interval (a set-level metric): the statistic is the mean itself.
    f = evaluate(r, h, 2)
    assert f is not None and f.evidence["value"] == 0.3 and f.evidence["ci"] == [None, None]
    assert evaluate(r, h, 3) is None


def test_a_point_with_a_note_says_the_note() -> None:
    note = "train.loss is NaN at step 520"
    h = History("r", {"nonfinite.train.loss": [Point(600, 1.0, n=24, note=note)]})
    f = evaluate(rule("name: nan\ntype: threshold\nmetric: nonfinite.train.loss\nabove: 0.5"), h, 600)
    assert f is not None and f.message == "train.loss is NaN at step 520 (checkpoint 600)"


@pytest.mark.parametrize(("value", "bound", "said"), [
    (1000.0, "above: 500", "1000 is above 500"),
    (1234.6, "above: 999.4", "1235 is above 999"),
    (-5000.0, "below: -1000", "-5000 is below -1000"),
    (0.123456, "above: 0.1", "0.123 is above 0.1"),
])
def test_messages_round_small_numbers_and_print_large_ones_whole(
    value: float, bound: str, said: str
) -> None:
    h = History.from_values("r", {"length.tokens": {1: value}})
    f = evaluate(rule(f"name: t\ntype: threshold\nmetric: length.tokens\n{bound}"), h, 1)
    assert f is not None and f.message == f"length.tokens mean {said} at step 1"


# --- regression: baselines, looks, boundaries ---------------------------------------------

# Exact binary fractions, so that each change is exactly what it looks like.
FALLING = {100: 1.0, 200: 0.75, 300: 0.625, 400: 0.5}
REGRESSION = "name: r\ntype: regression\nmetric: d\nworse: lower\nmin_change: 0.25\nbaseline: {}"


def _fired_at(r: Any, h: History, steps: Any) -> dict[int, tuple[int, int]]:
    """step → (baseline step, look) of each step where ``r`` fires."""
    out = {}
    for s in steps:
        f = evaluate(r, h, s)
        if f is not None:
            out[s] = (f.evidence["baseline"]["step"], f.evidence["look"])
    return out


@pytest.mark.parametrize(("baseline", "fires"), [
    ("first", {200: (100, 1), 300: (100, 2), 400: (100, 3)}),
    ("previous", {200: (100, 1)}),  # each later step fell by 0.125 only
    ("200", {400: (200, 2)}),  # looks count the checkpoints after the baseline: 300 and 400
    ("100", {200: (100, 1), 300: (100, 2), 400: (100, 3)}),
    ("150", {}),  # no checkpoint at 150
])
def test_regression_baseline_and_look(baseline: str, fires: dict[int, tuple[int, int]]) -> None:
    h = History.from_values("r", {"d": FALLING})
    assert _fired_at(rule(REGRESSION.format(baseline)), h, FALLING) == fires


def test_regression_counts_only_checkpoints_from_from_step() -> None:
    r = rule(REGRESSION.format("first") + "\nfrom_step: 200")
    h = History.from_values("r", {"d": FALLING})
    assert _fired_at(r, h, FALLING) == {400: (200, 2)}
    # A checkpoint with too few samples is neither baseline nor a look.
    h = History("r", {"d": [Point(100, 1.0, n=3), Point(200, 0.75, n=24), Point(300, 0.5, n=24)]})
    assert _fired_at(rule(REGRESSION.format("first")), h, (200, 300)) == {300: (200, 1)}


def test_regression_only_at_a_checkpoint_of_its_metric() -> None:
    h = History.from_values("r", {"d": FALLING})
    for baseline in ("first", "previous", "100"):
        r = rule(REGRESSION.format(baseline))
        assert evaluate(r, h, 350) is None and evaluate(r, h, 100) is None
        assert evaluate(r.model_copy(update={"metric": "absent"}), h, 200) is None


def test_regression_evidence_and_message_for_a_set_level_metric() -> None:
    h = History.from_values("r", {"diversity.distinct2": {100: 0.75, 200: 0.5}})
    r = rule("name: d\ntype: regression\nmetric: diversity.distinct2\nworse: lower\nmin_change: 0.25")
    f = evaluate(r, h, 200)  # a change of exactly min_change counts
    assert f is not None and f.rule is r and f.step == 200
    assert f.evidence == {
        "metric": "diversity.distinct2",
        "baseline": {"step": 100, "mean": 0.75, "n": 24},
        "current": {"step": 200, "mean": 0.5, "n": 24},
        "change": -0.25,
        "test": "none",
        "look": 1,
        "sample_ids": [],
    }
    assert f.message == "diversity.distinct2 regressed 0.75 → 0.5 (step 100 → 200)"
    assert evaluate(r.model_copy(update={"min_change": 0.26}), h, 200) is None
    assert evaluate(r.model_copy(update={"worse": "higher"}), h, 200) is None


def test_regression_needs_some_change_even_with_no_minimum() -> None:
    h = History.from_values("r", {"d": {1: 0.5, 2: 0.5, 3: 0.25}})
    r = rule("name: d\ntype: regression\nmetric: d\nworse: lower\nbaseline: previous")
    assert evaluate(r, h, 2) is None
    assert evaluate(r, h, 3) is not None


def test_min_relative_change_is_a_share_of_the_baselines_size() -> None:
    r = rule("name: d\ntype: regression\nmetric: d\nworse: lower\nmin_relative_change: 0.5")
    h = History.from_values("r", {"d": {1: 0.5, 2: 0.25}})
    assert evaluate(r, h, 2) is not None  # exactly half
    assert evaluate(r.model_copy(update={"min_relative_change": 0.5625}), h, 2) is None
    # A negative baseline (a reward): the share is of its size.
    up = rule("name: u\ntype: regression\nmetric: d\nworse: higher\nmin_relative_change: 0.625")
    assert evaluate(up, History.from_values("r", {"d": {1: -2.0, 2: -1.0}}), 2) is None
    assert evaluate(up, History.from_values("r", {"d": {1: -2.0, 2: -0.75}}), 2) is not None


def test_a_significant_regression_says_its_test() -> None:
    h = History.from_values("r", {"m": {1: 2.5, 2: 6.5}}, {(1, "m"): LOW4, (2, "m"): HIGH4})
    r = rule("name: up\ntype: regression\nmetric: m\nworse: higher")
    f = evaluate(r, h, 2)
    assert f is not None
    ev = dict(f.evidence)
    assert ev.pop("p_value") == pytest.approx(P_4_VS_4)
    assert ev.pop("alpha") == pytest.approx(FIRST_LOOK, abs=1e-7)
    assert ev == {
        "metric": "m",
        "baseline": {"step": 1, "mean": 2.5, "n": 4},
        "current": {"step": 2, "mean": 6.5, "n": 4},
        "change": 4.0,
        "test": "mann_whitney",
        "confidence": 0.95,
        "look": 1,
        "family": 1,
        "sample_ids": ["m@2#3", "m@2#2", "m@2#1", "m@2#0"],
    }
    assert f.message == "m regressed 2.5 → 6.5 (step 1 → 2, p=0.014 < level 0.018)"
    # Lower is worse: the same samples are an improvement.
    assert evaluate(r.model_copy(update={"worse": "lower"}), h, 2) is None
    # confidence 0.99 leaves the first look 0.01 · (1 - ln 2 / ln 3) = 0.0037 < 1/70.
    assert evaluate(r.model_copy(update={"confidence": 0.99}), h, 2) is None


def test_bootstrap_regression_carries_the_interval_of_the_difference() -> None:
    h = History.from_values("r", {"m": {1: 2.5, 2: 6.5}}, {(1, "m"): LOW4, (2, "m"): HIGH4})
    f = evaluate(rule("name: up\ntype: regression\nmetric: m\nworse: higher\ntest: bootstrap"), h, 2)
    assert f is not None and f.evidence["test"] == "bootstrap" and f.evidence["confidence"] == 0.95
    low, high = f.evidence["diff_ci"]
    # Resampled means of each side stay within [1, 4] and [5, 8]: the difference in [1, 7].
    assert 1.0 <= low < 4.0 < high <= 7.0
    assert 0 <= f.evidence["p_value"] < 0.001


def test_compare_samples_alone_is_a_first_look() -> None:
    h = History.from_values("r", {"m": {1: 2.5, 2: 6.5}}, {(1, "m"): LOW4, (2, "m"): HIGH4})
    base, current = h.series["m"]
    evidence, test = compare_samples(rule("name: up\ntype: regression\nmetric: m\nworse: higher"),
                                     h, base, current)
    assert evidence is not None and evidence["look"] == 1
    assert test is not None and test.alpha == pytest.approx(FIRST_LOOK, abs=1e-7)
    assert test.p_value == pytest.approx(P_4_VS_4)


def test_a_test_needs_min_samples_on_both_sides() -> None:
    series = {"m": [Point(1, 2.5, n=24), Point(2, 6.5, n=24)]}
    r = rule("name: up\ntype: regression\nmetric: m\nworse: higher")
    three = evaluate(r, points_history(series, {(1, "m"): LOW4[:3], (2, "m"): HIGH4}), 2)
    assert three is not None and three.evidence["test"] == "none"  # on the means alone
    assert three.message == "m regressed 2.5 → 6.5 (step 1 → 2)" and "alpha" not in three.evidence
    four = evaluate(r, points_history(series, {(1, "m"): LOW4, (2, "m"): HIGH4}), 2)
    assert four is not None and four.evidence["test"] == "mann_whitney"


# --- trend --------------------------------------------------------------------------------

RISE = "name: t\ntype: trend\nmetric: m\nworse: higher\ncheckpoints: 2"


def test_trend_evidence_and_message_on_means() -> None:
    h = History.from_values("r", {"m": {1: 1.0, 2: 2.0, 3: 3.5}})
    r = rule(RISE)
    assert evaluate(r, h, 2) is None  # one rise only
    f = evaluate(r, h, 3)  # checkpoints + 1 points: enough
    assert f is not None and f.rule is r and f.step == 3
    assert f.evidence == {"metric": "m", "values": {1: 1.0, 2: 2.0, 3: 3.5}, "test": "none",
                          "sample_ids": []}
    assert f.message == "m rose at 2 checkpoints in a row: 1 → 2 → 3.5 (steps 1-3)"
    assert evaluate(r, h, 4) is None  # no checkpoint at 4
    fell = History.from_values("r", {"m": {1: 3.5, 2: 2.0, 3: 1.0}})
    assert evaluate(r, fell, 3) is None
    f = evaluate(r.model_copy(update={"worse": "lower"}), fell, 3)
    assert f is not None and f.message == "m fell at 2 checkpoints in a row: 3.5 → 2 → 1 (steps 1-3)"


@pytest.mark.parametrize(("worse", "values", "fires"), [
    ("higher", (1.0, 1.5, 2.0), False),  # each rise is exactly min_change: not larger
    ("higher", (1.0, 1.75, 2.5), True),
    ("higher", (1.0, 1.75, 1.75), False),
    ("lower", (10.0, 9.5, 9.0), False),
    ("lower", (10.0, 9.25, 8.5), True),
    ("lower", (10.0, 9.25, 9.5), False),
])
def test_each_step_of_a_trend_must_exceed_min_change(
    worse: str, values: tuple[float, ...], fires: bool
) -> None:
    r = rule(RISE.replace("higher", worse) + "\nmin_change: 0.5")
    h = History.from_values("r", {"m": dict(enumerate(values, start=1))})
    assert (evaluate(r, h, 3) is not None) is fires


def test_trend_window_is_the_last_checkpoints_from_from_step() -> None:
    h = History.from_values("r", {"m": {1: 9.0, 2: 1.0, 3: 2.0, 4: 3.0}})
    assert evaluate(rule(RISE), h, 4) is not None  # the fall before the window does not count
    assert evaluate(rule(RISE.replace("2", "3")), h, 4) is None
    assert evaluate(rule(RISE.replace("2", "3") + "\nfrom_step: 2"), h, 4) is None


def _rising(steps: int) -> History:
    """Samples rising by 2 a checkpoint: the first and third checkpoints do not overlap."""
    samples = {(s, "m"): [v + 2.0 * (s - 1) for v in LOW4] for s in range(1, steps + 1)}
    return History.from_values("r", {"m": {s: 2.5 + 2.0 * (s - 1) for s in range(1, steps + 1)}},
                               samples)


def test_a_significant_trend_compares_its_first_and_last_checkpoints() -> None:
    r = rule(RISE)
    f = evaluate(r, _rising(3), 3)
    assert f is not None
    assert f.evidence["test"] == "mann_whitney" and f.evidence["p_value"] == pytest.approx(P_4_VS_4)
    assert f.evidence["alpha"] == pytest.approx(FIRST_LOOK, abs=1e-7) and f.evidence["family"] == 1
    assert f.evidence["confidence"] == 0.95
    assert f.evidence["sample_ids"] == ["m@3#3", "m@3#2", "m@3#1", "m@3#0"]
    assert f.message == "m rose at 2 checkpoints in a row: 2.5 → 4.5 → 6.5 (steps 1-3, p=0.014 < level 0.018)"
    # The next trend is the second look: 1/70 is over its share.
    assert evaluate(r, _rising(4), 4) is None
    assert evaluate(r.model_copy(update={"test": "none"}), _rising(4), 4) is not None
    f = evaluate(r.model_copy(update={"test": "bootstrap", "confidence": 0.9}), _rising(3), 3)
    assert f is not None and f.evidence["confidence"] == 0.9
    low, high = f.evidence["diff_ci"]  # the first and last checkpoints differ by 4
    assert 1.0 <= low < 4.0 < high <= 7.0


def test_a_trend_is_tested_only_with_min_samples_on_both_ends() -> None:
    series = {"m": [Point(s, 2.5 + 2.0 * (s - 1), n=24) for s in (1, 2, 3)]}
    r = rule(RISE)
    short = points_history(series, {(1, "m"): LOW4[:3], (3, "m"): HIGH4})
    f = evaluate(r, short, 3)
    assert f is not None and f.evidence["test"] == "none" and "alpha" not in f.evidence
    full = points_history(series, {(1, "m"): LOW4, (3, "m"): HIGH4})
    f = evaluate(r, full, 3)
    assert f is not None and f.evidence["test"] == "mann_whitney"


# --- divergence ---------------------------------------------------------------------------


def test_divergence_evidence_and_message() -> None:
    h = History.from_values("r", {"train.loss": {50: 2.0, 100: 1.0},
                                  "diversity.unique_ratio": {60: 0.75, 110: 0.5}})
    r = rule("name: c\ntype: divergence\nmetric: diversity.unique_ratio\nworse: lower\nmin_change: 0.25")
    f = evaluate(r, h, 110)
    assert f is not None and f.rule is r and f.step == 110
    assert f.evidence == {
        "metric": "diversity.unique_ratio",
        "baseline": {"step": 60, "mean": 0.75, "n": 24},
        "current": {"step": 110, "mean": 0.5, "n": 24},
        "change": -0.25,
        "test": "none",
        "look": 1,
        "sample_ids": [],
        "loss": {"metric": "train.loss", "baseline": {"step": 50, "value": 2.0},
                 "current": {"step": 100, "value": 1.0}},
    }
    assert f.message == ("diversity.unique_ratio fell 0.75 → 0.5 while train.loss fell 2 → 1 "
                         "(step 60 → 110)")
    h = History.from_values("r", {"train.loss": {50: 2.0, 100: 1.0},
                                  "memorization.ngram_overlap": {60: 0.25, 110: 0.5}})
    up = rule("name: m\ntype: divergence\nmetric: memorization.ngram_overlap\nworse: higher")
    f = evaluate(up, h, 110)
    assert f is not None and f.message == (
        "memorization.ngram_overlap rose 0.25 → 0.5 while train.loss fell 2 → 1 (step 60 → 110)")


DIVERGE = "name: c\ntype: divergence\nmetric: d\nworse: lower"


def test_divergence_takes_the_first_loss_when_none_was_logged_before_the_baseline() -> None:
    h = History.from_values("r", {"train.loss": {80: 2.0, 90: 1.5, 100: 1.0}, "d": {60: 0.75, 110: 0.5}})
    f = evaluate(rule(DIVERGE), h, 110)
    assert f is not None and f.evidence["loss"]["baseline"] == {"step": 80, "value": 2.0}
    assert f.evidence["loss"]["current"] == {"step": 100, "value": 1.0}


def test_divergence_looks_and_tests_like_a_regression() -> None:
    loss = {1: 3.0, 2: 2.0, 3: 1.0}
    h = History.from_values("r", {"train.loss": loss, "d": {1: 2.5, 2: 6.5, 3: 6.5}},
                            {(1, "d"): LOW4, (2, "d"): HIGH4, (3, "d"): HIGH4})
    r = rule("name: div\ntype: divergence\nmetric: d\nworse: higher")
    f = evaluate(r, h, 2)
    assert f is not None and f.evidence["look"] == 1 and f.evidence["family"] == 1
    assert f.evidence["p_value"] == pytest.approx(P_4_VS_4)
    assert f.evidence["alpha"] == pytest.approx(FIRST_LOOK, abs=1e-7)
    assert f.message == "d rose 2.5 → 6.5 while train.loss fell 3 → 2 (step 1 → 2, p=0.014 < level 0.018)"
    # The second look spends less than 1/70 ...
    assert evaluate(r, h, 3) is None
    # ... and shows as look 2 when the means alone are compared.
    f = evaluate(r.model_copy(update={"test": "none"}), h, 3)
    assert f is not None and f.evidence["look"] == 2 and f.evidence["baseline"]["step"] == 1
    # Worse by a mean of 1 with overlapping samples: not significant, no alert.
    h = History.from_values("r", {"train.loss": loss, "d": {1: 2.5, 2: 3.5}},
                            {(1, "d"): LOW4, (2, "d"): [2.0, 3.0, 4.0, 5.0]})
    assert evaluate(r, h, 2) is None
    assert evaluate(r.model_copy(update={"test": "none"}), h, 2) is not None


def test_divergence_needs_two_loss_values_between_or_around_the_checkpoints() -> None:
    d = {60: 0.75, 110: 0.5}
    r = rule(DIVERGE)
    for loss in ({10: 2.0}, {200: 1.0, 300: 0.5}, {10: 2.0, 20: 1.0}):
        # The same loss value stands for both checkpoints: nothing is known to have fallen.
        assert evaluate(r, History.from_values("r", {"train.loss": loss, "d": d}), 110) is None
    assert evaluate(r, History.from_values("r", {"d": d}), 110) is None  # no loss logged
    # A step whose loss has no value (not logged there) is skipped.
    h = History("r", {"train.loss": [Point(50, 2.0), Point(100, None)],
                      "d": [Point(60, 0.75, n=24), Point(110, 0.5, n=24)]})
    assert evaluate(r, h, 110) is None
    assert evaluate(r.model_copy(update={"loss": "train.other"}), h, 110) is None


@pytest.mark.parametrize(("loss_then", "loss_now", "min_loss_drop", "fires"), [
    (4.0, 3.5, 0.125, True),  # fell by exactly the share asked for
    (4.0, 3.5, 0.25, False),
    (2.0, 2.0, 0.0, False),  # no fall at all, even when any fall would do
    (2.0, 2.5, 0.0, False),
    (-2.0, -2.05, 0.05, False),  # a negative loss: the share is of its size
    (-2.0, -2.5, 0.05, True),
])
def test_divergence_loss_must_fall_by_its_share(
    loss_then: float, loss_now: float, min_loss_drop: float, fires: bool
) -> None:
    h = History.from_values("r", {"train.loss": {50: loss_then, 100: loss_now}, "d": {60: 0.75, 110: 0.5}})
    r = rule(DIVERGE + f"\nmin_loss_drop: {min_loss_drop}")
    assert (evaluate(r, h, 110) is not None) is fires


# --- one checkpoint's rules together ------------------------------------------------------


def test_rules_that_do_not_fire_leave_the_others_alone() -> None:
    h = History.from_values("r", {"a": {1: 0.1}, "b": {1: 0.9}, "m": {0: 2.5, 1: 3.5}},
                            {(0, "m"): LOW4, (1, "m"): [2.0, 3.0, 4.0, 5.0]})
    quiet = rule("name: quiet\ntype: threshold\nmetric: a\nabove: 0.5")
    loud = rule("name: loud\ntype: threshold\nmetric: b\nabove: 0.5")
    also = rule("name: also\ntype: threshold\nmetric: a\nbelow: 0.5")
    # Worse by a mean of 1 but overlapping samples: a finding the test does not back.
    unsure = rule("name: unsure\ntype: regression\nmetric: m\nworse: higher")
    found = evaluate_checkpoint([quiet, unsure, loud, also], h, 1)
    assert [f.rule.name for f in found] == ["loud", "also"]
    assert "alpha" not in found[0].evidence and "family" not in found[0].evidence
    assert found[0].message == "b mean 0.9 is above 0.5 at step 1"
    assert evaluate(unsure.model_copy(update={"test": "none"}), h, 1) is not None


def _significant(metric: str, steps: tuple[int, int]) -> dict[tuple[int, str], list[float]]:
    return {(steps[0], metric): LOW4, (steps[1], metric): HIGH4}


def test_a_broken_trend_that_could_be_tested_counts_in_the_family() -> None:
    # m: a rise with p = 1/70, at its first look (0.018) alone; t: rose, then fell.
    h = History.from_values(
        "r", {"m": {2: 2.5, 3: 6.5}, "t": {1: 2.5, 2: 6.5, 3: 4.5}},
        {**_significant("m", (2, 3)), (1, "t"): LOW4, (2, "t"): HIGH4, (3, "t"): [3.0, 4.0, 5.0, 6.0]},
    )
    reg = rule("name: reg\ntype: regression\nmetric: m\nworse: higher")
    trend = rule("name: t\ntype: trend\nmetric: t\nworse: higher\ncheckpoints: 2")
    assert [f.rule.name for f in evaluate_checkpoint([reg], h, 3)] == ["reg"]
    # Two tests looked at: 1/70 must pass half of 0.018, and does not.
    assert evaluate_checkpoint([trend, reg], h, 3) == []
    assert evaluate_checkpoint([reg, trend.model_copy(update={"test": "none"})], h, 3) != []


@pytest.mark.parametrize("loss", [
    {2: 1.0, 3: 1.0},  # flat
    {1: 1.0},  # logged once: the same value stands for both checkpoints
    {},  # never logged
])
def test_a_divergence_whose_loss_did_not_fall_counts_in_the_family_as_p_1(
    loss: dict[int, float]
) -> None:
    # d: eight samples above eight others (p = 1/C(16, 8) = 1/12870), but the loss did not fall.
    eight_low, eight_high = [float(i) for i in range(8)], [float(i) for i in range(8, 16)]
    series = {"m": {2: 2.5, 3: 6.5}, "d": {2: 3.5, 3: 11.5}}
    h = History.from_values(
        "r", {**series, "train.loss": loss} if loss else series,
        {**_significant("m", (2, 3)), (2, "d"): eight_low, (3, "d"): eight_high},
    )
    reg = rule("name: reg\ntype: regression\nmetric: m\nworse: higher")
    div = rule("name: div\ntype: divergence\nmetric: d\nworse: higher")
    # Were its p-value kept, d would pass first and leave m the whole 0.018.
    assert evaluate_checkpoint([div, reg], h, 3) == []
    assert [f.rule.name for f in evaluate_checkpoint([reg], h, 3)] == ["reg"]


def test_a_rule_that_could_not_be_tested_stays_out_of_the_family() -> None:
    h = History.from_values("r", {"m": {2: 2.5, 3: 6.5}, "s": {2: 0.5, 3: 0.5}},
                            _significant("m", (2, 3)))
    reg = rule("name: reg\ntype: regression\nmetric: m\nworse: higher")
    flat = rule("name: flat\ntype: regression\nmetric: s\nworse: higher")  # set-level
    untested = reg.model_copy(update={"name": "other", "test": "none", "worse": "lower"})
    found = evaluate_checkpoint([flat, untested, reg], h, 3)
    assert [f.rule.name for f in found] == ["reg"] and found[0].evidence["family"] == 1


def test_findings_of_one_checkpoint_come_in_rule_order() -> None:
    h = History.from_values("r", {"a": {1: 0.9}, "b": {1: 0.9}})
    first, second = (rule(f"name: {m}\ntype: threshold\nmetric: {m}\nabove: 0.5") for m in ("b", "a"))
    found = evaluate_checkpoint([first, second], h, 1)
    assert [(f.rule.name, f.step) for f in found] == [("b", 1), ("a", 1)]
    f = evaluate(second, h, 1)
    assert f is not None and f.rule is second


def test_a_history_of_points_alone_has_no_samples() -> None:
    h = History("r", {"m": [Point(1, 0.9, n=24)]})
    assert h.samples(1, "m") == []
    f = evaluate(rule("name: t\ntype: threshold\nmetric: m\nabove: 0.5"), h, 1)
    assert f is not None and f.evidence["sample_ids"] == []
