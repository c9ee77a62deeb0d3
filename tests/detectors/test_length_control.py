from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from judgeserve.detectors.length_control import LengthControlScorer, length_controlled
from judgeserve.schema import Sample


def test_the_intercept_removes_a_preference_for_length() -> None:
    rng = np.random.default_rng(3)
    ratios = rng.normal(0.0, 0.8, 400)  # log(words / reference words)
    # A judge that pays 0.2 for every standard deviation of extra length, around 0.5.
    scores = 0.5 + 0.2 * np.tanh(ratios / ratios.std()) + rng.normal(0, 0.02, 400)
    wordy = ratios + 0.6  # the same answers, all padded to longer ones
    wordy_scores = 0.5 + 0.2 * np.tanh(wordy / ratios.std()) + rng.normal(0, 0.02, 400)
    assert wordy_scores.mean() > scores.mean() + 0.05  # the plain mean rewards padding
    plain, slope = length_controlled(scores, ratios)
    padded, _ = length_controlled(wordy_scores, wordy)
    assert abs(plain - 0.5) < 0.02 and abs(slope - 0.2) < 0.03
    assert abs(padded - plain) < abs(wordy_scores.mean() - scores.mean()) / 2


def test_without_length_variation_it_is_the_mean() -> None:
    intercept, slope = length_controlled([0.2, 0.4, 0.6], [0.1, 0.1, 0.1])
    assert intercept == pytest.approx(0.4) and slope == 0.0


def test_a_checkpoint_gets_a_length_controlled_reference_score(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    reference = "Paris is the capital of France."
    answers = [
        "The capital of France is Paris.",
        "Paris.",
        "France's capital city is Paris, on the Seine.",
        "It is Paris, which is also the largest city of France.",
        "Paris is the capital.",
        "The answer is Paris, the French capital.",
        "Lyon.",
        "Paris is the capital of France. " * 10,  # a loop: scored 0
    ]
    scorer = LengthControlScorer()
    result = scorer.score_set([make_sample(a, reference=reference) for a in answers])
    assert set(result.metrics) == {"reference_lc.score", "reference_lc.length_slope"}
    assert 0.0 < result.metrics["reference_lc.score"] < 1.0
    few = scorer.score_set([make_sample(a, reference=reference) for a in answers[:3]])
    assert few.metrics == {}
