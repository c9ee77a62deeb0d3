"""Fixtures of the judge tests: one toy judge model per session, trained here (no download).

The model is a 2-layer Llama taught the toy rubric (judgeserve.judge.toy): " 5" when the
judged answer contains "banana", " 1" when it contains "cherry". Engines that load it are
module- or session-scoped and shut down in teardown; the machine has 2 cores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from judgeserve.judge.rubric import Rubric
from judgeserve.judge.scoring import Item
from judgeserve.judge.toy import BAD, GOOD, cached_toy_judge, toy_rubric, toy_text


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Training the toy judge (~1 min alone, once per machine: it is cached) lands in the first
    # test that needs it, and this 2-core machine is shared: allow more than the 120 s default.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "toy_model" in fixtures and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def toy_model() -> Path:
    """Directory of the trained toy judge (model + tokenizer, saved as Hugging Face files).

    Trained once per machine and cached, keyed by everything the model depends on.
    """
    return cached_toy_judge()


@pytest.fixture(scope="session")
def rubric() -> Rubric:
    return toy_rubric()


@pytest.fixture(scope="session")
def toy_items() -> list[Item]:
    """Held-out judged texts (a seed the training never used), alternating good / bad."""
    rng = random.Random(12345)
    return [
        Item(
            prompt=toy_text(rng, "question", 3),
            completion=toy_text(rng, GOOD if i % 2 == 0 else BAD),
        )
        for i in range(12)
    ]


@pytest.fixture(scope="session")
def transformers_backend(toy_model: Path) -> Iterator[object]:
    from judgeserve.judge.backends.transformers import TransformersBackend

    backend = TransformersBackend(str(toy_model), batch_size=8)
    yield backend
    backend.close()
