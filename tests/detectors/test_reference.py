from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from judgeserve.detectors._embeddings import embed
from judgeserve.detectors.reference import ReferenceScorer
from judgeserve.schema import Sample

REFERENCE = "Paris is the capital of France."


def test_near_answers_score_higher_than_far_ones(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    near = make_sample("The capital city of France is Paris.", reference=REFERENCE)
    far = make_sample("Photosynthesis turns light into chemical energy.", reference=REFERENCE)
    [near_scores, far_scores] = ReferenceScorer().score([near, far])
    n = {s.scorer: s.value for s in near_scores}
    f = {s.scorer: s.value for s in far_scores}
    assert set(n) == set(f) == {"reference.semscore", "reference.score", "reference.chrf"}
    assert n["reference.score"] == n["reference.semscore"]  # a real answer keeps its score
    assert n["reference.semscore"] > f["reference.semscore"]
    assert n["reference.chrf"] > f["reference.chrf"]
    assert -1.0 <= f["reference.semscore"] < n["reference.semscore"] <= 1.0


def test_identical_answer_is_a_perfect_match(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    [scores] = ReferenceScorer().score([make_sample(REFERENCE, reference=REFERENCE)])
    values = {s.scorer: s.value for s in scores}
    assert values["reference.semscore"] > 0.99
    assert values["reference.chrf"] == 100.0


def test_samples_without_reference_get_no_scores(make_sample: Callable[..., Sample]) -> None:
    samples = [make_sample("no reference here"), make_sample("blank", reference="  ")]
    assert ReferenceScorer().score(samples) == [[], []]


def test_lexical_only_mode_loads_no_model(make_sample: Callable[..., Sample]) -> None:
    [scores] = ReferenceScorer(semantic=False).score([make_sample("Paris.", reference=REFERENCE)])
    assert [s.scorer for s in scores] == ["reference.chrf"]


def test_embeddings_are_remembered(minilm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["a sentence to embed once", "another one"]
    first = embed(texts)
    monkeypatch.setattr(minilm, "encode", None)  # a second encode would fail
    again = embed(list(reversed(texts)))
    assert np.array_equal(first, again[::-1])
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_a_looping_or_empty_answer_scores_zero_however_close_it_sits(
    make_sample: Callable[..., Sample], minilm: Any
) -> None:
    looping = make_sample("Paris is the capital of France. " * 12, reference=REFERENCE)
    empty = make_sample("   ", reference=REFERENCE)
    [loop_scores, empty_scores] = ReferenceScorer().score([looping, empty])
    loop = {s.scorer: s for s in loop_scores}
    assert loop["reference.semscore"].value > 0.7  # close in embedding space all the same
    assert loop["reference.score"].value == 0.0
    assert loop["reference.score"].details == {"degenerate": "loop"}
    assert {s.scorer: s.value for s in empty_scores}["reference.score"] == 0.0
