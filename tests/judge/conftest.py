"""Fixtures of the judge tests: one toy judge model per session, trained here (no download).

The model is a 2-layer Llama taught the toy rubrics (judgeserve.testing.toy_judge): " 5" when the
judged answer contains "banana", " 1" when it contains "cherry", and in pairwise mode the
letter of the answer with the banana; as plain text, through its chat template, and as a
bare chat turn. Engines that load it are module- or session-scoped and shut down in
teardown; the machine has 2 cores.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgeserve.judge.rubric import Rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.testing.toy_judge import (
    BAD,
    GOOD,
    cached_toy_judge,
    expected_level,
    expected_pair,
    toy_pairwise_rubric,
    toy_rubric,
    toy_text,
)

from ..conftest import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Outside `make test` (which trains it first), training the toy judge (a few minutes,
    # once per machine: it is cached) lands in the first test that needs it.
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "toy_model" in fixtures and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(1200))


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
def pairwise_items(toy_items: list[Item]) -> list[Item]:
    """Held-out pairs: each good answer against a bad baseline, then the other way round."""
    pairs = []
    for good, bad in zip(toy_items[0::2], toy_items[1::2], strict=True):
        pairs.append(Item(prompt=good.prompt, completion=good.completion, baseline=bad.completion))
        pairs.append(Item(prompt=bad.prompt, completion=bad.completion, baseline=good.completion))
    return pairs


@pytest.fixture(scope="session")
def transformers_backend(toy_model: Path) -> Iterator[object]:
    from judgeserve.judge.backends.transformers import TransformersBackend

    backend = TransformersBackend(str(toy_model), batch_size=8)
    yield backend
    backend.close()


def assert_recovers_toy_rubric(backend: Any, rubric: Rubric, items: list[Item]) -> None:
    """Judging ``items`` through ``backend`` gives the toy's scores, read from logprobs."""
    results = Judge(backend).score(rubric, items)
    for item, result in zip(items, results, strict=True):
        verdict = result["marker"]
        assert verdict.method == "logprobs"
        assert verdict.value == pytest.approx(expected_level(item.completion), abs=0.3), item
        assert sum(verdict.distribution.values()) == pytest.approx(1.0)


def assert_recovers_toy_pairs(backend: Any, items: list[Item]) -> None:
    """Comparing each pair in both orders through ``backend``: the banana answer wins."""
    pairs = Judge(backend).compare(toy_pairwise_rubric(), items)
    for item, result in zip(items, pairs, strict=True):
        verdict = result["marker"]
        want = "win" if expected_pair(item.completion, item.baseline or "") == "A" else "loss"
        assert verdict.outcome == want and verdict.consistent, item
        assert verdict.value == (1.0 if want == "win" else 0.0)
        assert verdict.p_win == pytest.approx(verdict.value, abs=0.2)


@contextlib.contextmanager
def serve_judge(directory: Path, args: dict[str, Any], deployment: dict[str, Any]) -> Iterator[str]:
    """A judge application on a real local Ray Serve, deployed from a serve.yaml-format file
    written to ``directory`` (as `judgeserve serve` does); yields its HTTP URL."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from judgeserve.serve_config import run

    # Ray's own processes bind random ports as it starts: start it before choosing ours.
    ray.init(num_cpus=2, include_dashboard=False)
    port = free_port()
    config = directory / "serve.yaml"
    app = {
        "name": "judge",
        "route_prefix": "/judge",
        "import_path": "judgeserve.judge.serve:build_app",
        "args": args,
        "deployments": [{"name": "JudgeDeployment", **deployment}],
    }
    config.write_text(
        yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [app]})
    )
    try:
        run(config, blocking=False)
        yield f"http://127.0.0.1:{port}/judge"
    finally:
        serve.shutdown()
        ray.shutdown()
