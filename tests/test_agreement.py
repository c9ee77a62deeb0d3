"""Agreement statistics (judgeserve.agreement): against scikit-learn and SciPy, on fixtures
whose answer is known, and per judge version."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from judgeserve.agreement import (
    cohen_kappa,
    kappa_estimate,
    labeller_agreement,
    length_bias,
    nearest_level,
    pairwise_agreement,
    position_bias,
    rate,
    rubric_agreement,
    single_agreement,
    spearman_estimate,
)
from judgeserve.judge.version import JudgeVersion

LEVELS = [1, 2, 3, 4, 5]


def shifted(level: int) -> int:
    """Two levels away, staying on the 1..5 scale."""
    return level + 2 if level <= 3 else level - 2


def half_agreeing(n: int = 40, seed: int = 7) -> tuple[list[float], list[int]]:
    """Judge scores (weighted, off the level by up to 0.3) and labels equal to the judge's
    level on even items, shifted by 2 on odd ones: exact agreement is 0.5 by construction."""
    rng = random.Random(seed)
    judge, human = [], []
    for i in range(n):
        level = rng.choice(LEVELS)
        judge.append(level + rng.uniform(-0.3, 0.3))
        human.append(level if i % 2 == 0 else shifted(level))
    return judge, human


@pytest.mark.parametrize("weights", [None, "quadratic"])
def test_kappa_matches_sklearn(weights: str | None) -> None:
    rng = random.Random(3)
    for _ in range(20):
        a = [rng.choice(LEVELS) for _ in range(30)]
        b = [x if rng.random() < 0.6 else rng.choice(LEVELS) for x in a]
        expected = cohen_kappa_score(a, b, labels=LEVELS, weights=weights)
        assert cohen_kappa(a, b, LEVELS, weights) == pytest.approx(expected, abs=1e-12)


def test_known_answer_half_agree_half_shifted_by_two() -> None:
    judge, human = half_agreeing()
    judged = [nearest_level(v, LEVELS) for v in judge]
    m = single_agreement(judge, human, LEVELS)
    assert m["exact"].value == pytest.approx(0.5) and m["exact"].n == 40
    assert m["within_1"].value == pytest.approx(0.5)  # every miss is by 2
    assert m["kappa_quadratic"].value == pytest.approx(
        cohen_kappa_score(judged, human, labels=LEVELS, weights="quadratic"), abs=1e-12
    )
    assert m["spearman"].value == pytest.approx(spearmanr(judge, human).statistic, abs=1e-12)
    for name, e in m.items():
        assert e.ci_low is not None and e.ci_high is not None, name
        assert e.ci_low < e.value < e.ci_high, name  # type: ignore[operator]
    # A binomial 95 % interval at n = 40, p = 0.5 is about ±0.15.
    assert 0.3 < m["exact"].ci_low < 0.4 and 0.6 < m["exact"].ci_high < 0.7  # type: ignore[operator]


def test_intervals_are_deterministic_and_shrink_with_n() -> None:
    judge, human = half_agreeing(40)
    assert single_agreement(judge, human, LEVELS) == single_agreement(judge, human, LEVELS)
    big_j, big_h = half_agreeing(400, seed=8)
    small = kappa_estimate([nearest_level(v, LEVELS) for v in judge], human, LEVELS)
    big = kappa_estimate([nearest_level(v, LEVELS) for v in big_j], big_h, LEVELS)
    assert small.ci_high - small.ci_low > 2 * (big.ci_high - big.ci_low)  # type: ignore[operator]


def test_kappa_interval_covers_the_truth_by_simulation() -> None:
    # Raters that agree 70 % of the time, else pick at random: the bootstrap interval of a
    # sample of 60 should hold the kappa of a huge sample most of the time.
    rng = np.random.default_rng(1)

    def draw(n: int) -> tuple[list[int], list[int]]:
        a = rng.integers(1, 6, n)
        b = np.where(rng.random(n) < 0.7, a, rng.integers(1, 6, n))
        return a.tolist(), b.tolist()

    truth = cohen_kappa(*draw(200_000), LEVELS, "quadratic")
    covered = 0
    for _ in range(40):
        e = kappa_estimate(*draw(60), LEVELS, resamples=1000)
        covered += e.ci_low <= truth <= e.ci_high  # type: ignore[operator]
    assert covered >= 33  # ~95 % nominal; 33/40 leaves room for chance


def test_undefined_statistics_are_none_not_numbers() -> None:
    assert kappa_estimate([3, 3, 3], [3, 3, 3], LEVELS).value is None
    assert spearman_estimate([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).value is None
    one = rate([True])
    assert one.value == 1.0 and one.ci_low is None and one.n == 1
    assert rate([]).value is None


def test_pairwise_accuracy_position_bias_and_people() -> None:
    m = pairwise_agreement(["win", "loss", "tie", "win"], ["win", "win", "tie", "tie"])
    assert m["accuracy_with_ties"].value == pytest.approx(0.5)
    assert m["accuracy_without_ties"].value == pytest.approx(0.5) and m["accuracy_without_ties"].n == 2
    assert position_bias([True, True, False, True]).value == pytest.approx(0.25)
    people = labeller_agreement([1, 2, 3, 5], [1, 3, 3, 2], LEVELS)
    assert people["exact"].value == pytest.approx(0.5)
    assert people["within_1"].value == pytest.approx(0.75)
    assert labeller_agreement(["win", "tie"], ["win", "loss"], None)["exact"].value == 0.5


def test_length_bias_separates_a_length_loving_judge() -> None:
    lengths = [float(10 * i) for i in range(30)]
    judge = [1 + 4 * i / 29 for i in range(30)]  # longer is better, always
    human = [float(random.Random(i).choice(LEVELS)) for i in range(30)]
    bias = length_bias(lengths, judge, human)
    assert bias["judge"].value == pytest.approx(1.0)
    assert abs(bias["human"].value) < 0.5  # type: ignore[arg-type]


# -- one rubric, per judge version --------------------------------------------------------


def version(prompt_hash: str, model: str = "toy") -> dict[str, str]:
    return {"judge_model": model, "judge_backend": "transformers", "prompt_hash": prompt_hash,
            "rubric_version": "1"}


def row(i: int, criterion: str, human: float, judge: float | None, details: dict[str, Any],
        labeller: str = "ann", minutes: int = 0, length: int = 100) -> dict[str, Any]:
    return {
        "run": "r", "sample_id": f"s{i}", "criterion": criterion, "labeller": labeller,
        "value": human, "baseline_id": None,
        "created": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes + i),
        "judge_value": judge, "judge_details": details, "length": length, "baseline_length": None,
    }


def test_rubric_agreement_keeps_judge_versions_apart() -> None:
    judge, human = half_agreeing(40)
    old, new = version("aaaa"), version("bbbb")
    rows = [row(i, "c", human[i], judge[i], old) for i in range(40)]
    # A second judge version agrees perfectly on its own 20 items.
    rows += [row(100 + i, "c", float(i % 5 + 1), float(i % 5 + 1), new) for i in range(20)]
    # A second person on the first 10 items of the old version: agrees on 8 of 10.
    rows += [
        row(i, "c", human[i] if i < 8 else float(shifted(int(human[i]))), judge[i], old,
            labeller="bo", minutes=500)
        for i in range(10)
    ]
    rows.append(row(999, "c", 3.0, None, {}))  # labelled, never judged
    report = rubric_agreement(rows, [], {"c": LEVELS})
    assert report["labels"] == 71 and report["items"] == 61 and report["labellers"] == 2
    c = report["criteria"]["c"]
    assert c["labelled"] == 61 and c["unjudged"] == 1
    by_key = {v["version"]["key"]: v for v in c["versions"]}
    assert set(by_key) == {JudgeVersion.of(old).key, JudgeVersion.of(new).key}  # type: ignore[union-attr]
    first = by_key[JudgeVersion.of(old).key]  # type: ignore[union-attr]
    assert first["n"] == 40 and first["metrics"]["exact"]["value"] == pytest.approx(0.5)
    second = by_key[JudgeVersion.of(new).key]  # type: ignore[union-attr]
    assert second["n"] == 20 and second["metrics"]["exact"]["value"] == 1.0
    # The judge is measured against the first label; people against each other.
    assert c["labellers"]["items"] == 10
    assert c["labellers"]["exact"]["value"] == pytest.approx(0.8)


def test_rubric_agreement_pairwise_position_bias_per_version() -> None:
    v1 = version("pppp")
    rows = [
        row(i, "c", [1.0, 0.0, 0.5][i % 3], [1.0, 0.0, 0.5][i % 3] if i < 8 else 1.0 - [1.0, 0.0, 0.5][i % 3],
            {**v1, "outcome": ["win", "loss", "tie"][i % 3] if i < 8 else ["loss", "win", "tie"][i % 3]})
        for i in range(12)
    ]
    verdicts = [
        {"criterion": "c", "value": 0.5, "details": {**v1, "consistent": i % 4 != 0}} for i in range(20)
    ]
    report = rubric_agreement(rows, verdicts, {"c": None})
    (entry,) = report["criteria"]["c"]["versions"]
    # From item 8 on the judge says the opposite, which for a tie (items 8 and 11) is a tie.
    assert entry["metrics"]["accuracy_with_ties"]["value"] == pytest.approx(10 / 12)
    assert entry["position_bias"]["value"] == pytest.approx(5 / 20)
    assert entry["position_bias"]["n"] == 20
