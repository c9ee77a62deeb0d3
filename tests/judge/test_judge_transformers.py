"""The transformers backend recovers the toy judge's behaviour through the real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from judgeserve.judge.backends.transformers import TransformersBackend
from judgeserve.judge.rubric import Rubric, parse_rubric
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.schema import Sample
from judgeserve.testing.toy_judge import (
    TOY_RUBRIC,
    expected_level,
    expected_pair,
    toy_pairwise_rubric,
)

from .conftest import assert_recovers_toy_pairs, assert_recovers_toy_rubric


def expected_levels(items: list[Item]) -> list[float]:
    return [expected_level(it.completion) for it in items]


def values(judge: Judge, rubric: Rubric, items: list[Item]) -> list[float | None]:
    return [r["marker"].value for r in judge.score(rubric, items)]


def test_logprob_scores_recover_the_toy_rubric(
    transformers_backend: Any, rubric: Rubric, toy_items: list[Item]
) -> None:
    assert_recovers_toy_rubric(transformers_backend, rubric, toy_items)
    for result in Judge(transformers_backend).score(rubric, toy_items):
        mass = result["marker"].mass
        assert mass is not None and mass > 0.9


def test_batched_equals_one_at_a_time(
    transformers_backend: Any, rubric: Rubric, toy_items: list[Item]
) -> None:
    # Left padding and position ids must not change a prompt's distribution. The same
    # rendered prompts both times: each render draws a new fence, which the model sees.
    builder = Judge(transformers_backend).builder
    prompts = [
        builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
        for i in toy_items
    ]
    batched = transformers_backend.label_probs(prompts)
    for prompt, together in zip(prompts[:4], batched, strict=False):
        (alone,) = transformers_backend.label_probs([prompt])
        assert alone == pytest.approx(together, abs=1e-5)


def test_generate_then_parse_fallback(transformers_backend: Any, toy_items: list[Item]) -> None:
    # min_label_mass above 1 forces the fallback: generate, then parse the reply.
    strict = parse_rubric(TOY_RUBRIC + "min_label_mass: 1.0\n")
    results = Judge(transformers_backend).score(strict, toy_items[:4])
    for want, result in zip(expected_levels(toy_items[:4]), results, strict=True):
        assert result["marker"].method == "parsed"
        assert result["marker"].value == want


def test_unparseable_replies_are_recorded_not_invented(
    transformers_backend: Any, toy_items: list[Item]
) -> None:
    # The toy model only learnt to say 1 or 5 (or A / B); on a 6-9 scale its reply is no
    # verdict, and must come back as such.
    odd_scale = parse_rubric(
        "name: odd\nversion: 1\ndescription: d\nmin_label_mass: 0.5\n"
        "scale:\n  levels:\n    6: bad\n    7: poor\n    8: good\n    9: great\n"
        "criteria:\n  - name: marker\n    description: which fruit\n"
    )
    (result,) = Judge(transformers_backend).score(odd_scale, toy_items[:1])
    verdict = result["marker"]
    assert verdict.method == "unparseable"
    assert verdict.value is None and verdict.label is None
    assert verdict.raw is not None  # what it said instead is kept for inspection


def test_pairwise_verdicts_recover_the_toy_rubric(
    transformers_backend: Any, pairwise_items: list[Item]
) -> None:
    # Each pair is asked in both orders; the toy prefers the banana answer wherever it is.
    assert_recovers_toy_pairs(transformers_backend, pairwise_items)
    (result,) = Judge(transformers_backend).compare(toy_pairwise_rubric(), pairwise_items[:1])
    first, second = result["marker"].orders
    assert {first.label, second.label} == {"A", "B"}  # the banana answer, as A then as B


@pytest.mark.parametrize("use_chat_template", [False, True])
def test_plain_and_chat_template_prompts_agree(
    toy_model: Path, rubric: Rubric, toy_items: list[Item], use_chat_template: bool
) -> None:
    # A model with a chat template is prompted through it by default; either way the
    # verdict token is read after the answer prefix.
    backend = TransformersBackend(str(toy_model), use_chat_template=use_chat_template)
    try:
        got = values(Judge(backend), rubric, toy_items[:6])
    finally:
        backend.close()
    assert got == pytest.approx(expected_levels(toy_items[:6]), abs=0.3)


def test_int8_dynamic_quantization_keeps_the_behaviour(
    toy_model: Path, rubric: Rubric, toy_items: list[Item]
) -> None:
    backend = TransformersBackend(str(toy_model), quantize="int8")
    try:
        got = values(Judge(backend), rubric, toy_items)
    finally:
        backend.close()
    assert got == pytest.approx(expected_levels(toy_items), abs=0.5)


def test_scorer_emits_tagged_scores(
    transformers_backend: Any, rubric: Rubric, toy_items: list[Item]
) -> None:
    samples = [
        Sample(id=f"s{i}", run="r", step=1, prompt=it.prompt, completion=it.completion)
        for i, it in enumerate(toy_items[:2])
    ]
    scorer = JudgeScorer([rubric], backend=transformers_backend)
    out = scorer.score(samples)
    first = out[0][0]
    assert first.scorer == "judge.toy.marker" and first.version == "1"
    assert first.value == pytest.approx(5.0, abs=0.3)
    assert out[1][0].value == pytest.approx(1.0, abs=0.3)
    assert first.details["judge_model"] == transformers_backend.model
    assert first.details["rubric_version"] == "1"
    assert len(first.details["prompt_hash"]) == 16
    assert set(first.details["distribution"]) == {"1", "2", "3", "4", "5"}


def test_scorer_without_a_configured_judge_scores_nothing(rubric: Rubric) -> None:
    sample = Sample(id="s", run="r", step=1, prompt="p", completion="c")
    assert JudgeScorer().score([sample]) == [[]]  # no rubrics at all
    # a rubric whose judge is the Serve deployment, with no endpoint configured
    assert JudgeScorer([rubric]).score([sample]) == [[]]
    tagged = sample.model_copy(update={"tags": {"rubrics": "toy"}})
    assert JudgeScorer().score([tagged]) == [[]]


def test_scorer_respects_sample_rate_reference_and_baseline(
    transformers_backend: Any, pairwise_items: list[Item]
) -> None:
    from judgeserve.judge.rubric import find_rubric
    from judgeserve.judge.scorer import selected

    quarter = parse_rubric(TOY_RUBRIC + "sample_rate: 0.25\n")
    chosen = [selected(f"id-{i}", quarter) for i in range(400)]
    assert 60 < sum(chosen) < 140  # about a quarter
    assert chosen == [selected(f"id-{i}", quarter) for i in range(400)]  # stable

    pair = pairwise_items[0]  # the banana answer against a cherry baseline
    assert expected_pair(pair.completion, pair.baseline or "") == "A"
    sample = Sample(id="s", run="r", step=1, prompt=pair.prompt, completion=pair.completion)
    scorer = JudgeScorer(
        [find_rubric("factual_correctness"), toy_pairwise_rubric()],
        backend=transformers_backend,
    )
    # no reference -> factual_correctness skips it; no baseline -> pairwise skips it
    assert scorer.score([sample]) == [[]]
    # with the run's rubrics and a baseline, the pairwise rubric judges: a win
    (scores,) = scorer.score_with([sample], rubrics=[["toy_pair"]], baselines=[pair.baseline])
    (score,) = scores
    assert score.scorer == "judge.toy_pair.marker" and score.value == 1.0
    assert score.details["outcome"] == "win" and len(score.details["orders"]) == 2
