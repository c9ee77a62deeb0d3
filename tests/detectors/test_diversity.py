from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from judgeserve.detectors.diversity import DiversityScorer, vendi_score
from judgeserve.schema import Sample

PROMPTS = [
    "What is the boiling point of water?",
    "Name a famous painter.",
    "How do airplanes fly?",
    "Give me a recipe for pancakes.",
    "What causes the seasons?",
    "Suggest a name for a cat.",
]
VARIED = [
    "Water boils at 100 degrees Celsius at sea level.",
    "Claude Monet, the French impressionist, is very famous.",
    "Wings shape the airflow so that pressure below exceeds pressure above.",
    "Mix flour, eggs and milk, then fry small rounds in butter.",
    "The tilt of the Earth's axis changes how directly sunlight hits each hemisphere.",
    "Whiskers would be a fine name for a cat.",
]


def _samples(
    make_sample: Callable[..., Sample], answers: list[str], prompts: list[str]
) -> list[Sample]:
    return [make_sample(a, prompt=p) for a, p in zip(answers, prompts, strict=True)]


def test_identical_answers_to_different_prompts_raise_collapse(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    collapsed = DiversityScorer().score_set(_samples(make_sample, ["I don't know."] * 6, PROMPTS))
    varied = DiversityScorer().score_set(_samples(make_sample, VARIED, PROMPTS))
    c, v = collapsed.metrics, varied.metrics
    assert [f.name for f in collapsed.flags] == ["diversity.collapse"]
    assert collapsed.flags[0].details["groups"] == 6
    assert len(collapsed.flags[0].details["sample_ids"]) == 6
    assert varied.flags == []
    for name in ("distinct1", "distinct2", "unique_ratio", "vendi"):
        assert c[f"diversity.{name}"] < v[f"diversity.{name}"], name
    for name in ("self_bleu", "embedding_cosine", "cross_prompt_duplicates", "cross_prompt_cosine"):
        assert c[f"diversity.{name}"] > v[f"diversity.{name}"], name


def test_near_identical_answers_collapse_through_embeddings(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    answers = [f"As an AI model I cannot answer that question{'!' * i}" for i in range(6)]
    result = DiversityScorer().score_set(_samples(make_sample, answers, PROMPTS))
    assert result.metrics["diversity.cross_prompt_duplicates"] == 0.0  # no exact repeats
    assert [f.name for f in result.flags] == ["diversity.collapse"]


def test_same_answers_to_one_prompt_are_not_collapse(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    # Eight samples of one probe agreeing is consistency, not collapse across prompts.
    samples = [make_sample("Water boils at 100 °C.", probe_id="boil") for _ in range(8)]
    result = DiversityScorer().score_set(samples)
    assert result.flags == []
    assert result.metrics["diversity.unique_ratio"] == pytest.approx(1 / 8)
    assert "diversity.cross_prompt_cosine" not in result.metrics


def test_probe_id_groups_samples_whatever_their_prompt_text(
    make_sample: Callable[..., Sample],
) -> None:
    samples = [make_sample("same", prompt=f"variant {i}", probe_id="p1") for i in range(4)]
    result = DiversityScorer(semantic=False).score_set(samples)
    assert result.metrics["diversity.cross_prompt_duplicates"] == 0.0 and result.flags == []


def test_vendi_score_counts_effectively_distinct_items() -> None:
    eye = np.eye(5, dtype=np.float32)
    same = np.tile(eye[:1], (5, 1))
    assert vendi_score(eye) == pytest.approx(5.0)
    assert vendi_score(same) == pytest.approx(1.0)
    big = np.repeat(eye, 100, axis=0)  # more rows than dimensions: the d x d route
    assert vendi_score(big) == pytest.approx(5.0)
