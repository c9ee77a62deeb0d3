"""The judge on a real local Ray Serve: batching batches, HTTP clients get the toy verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from judgeserve.judge.backends.base import TokenUsage
from judgeserve.judge.backends.serve import ServeBackend
from judgeserve.judge.prompt import PromptBuilder
from judgeserve.judge.rubric import Rubric
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.schema import Sample
from judgeserve.testing.toy_judge import expected_level

from .conftest import serve_judge

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
BATCH = 8


@pytest.fixture(scope="module")
def judge_url(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The transformers judge deployed from a serve.yaml-format file, as `judgeserve serve` does."""
    args = {
        "backend": "transformers",
        "model": str(toy_model),
        "max_batch_size": BATCH,
        "batch_wait_timeout_s": 0.05,
        "options": {"threads": 1},
    }
    # Fractional CPUs so the replica fits beside Serve's own actors on 2 cores; more
    # ongoing requests than the batch size, or a batch never fills.
    deployment = {"ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 4 * BATCH}
    with serve_judge(tmp_path_factory.mktemp("serve"), args, deployment) as url:
        yield url


def test_health_and_info(judge_url: str) -> None:
    assert httpx.get(f"{judge_url}/health", timeout=10).json() == {"status": "ok"}
    info = httpx.get(f"{judge_url}/info", timeout=10).json()
    assert info["backend"] == "transformers"
    assert info["reports_usage"] is True  # the worker's ServeBackend passes the counts on


def test_concurrent_requests_are_batched(
    judge_url: str, rubric: Rubric, toy_items: list[Item]
) -> None:
    backend = ServeBackend(url=judge_url)
    judge = Judge(backend)
    before = len(httpx.get(f"{judge_url}/stats", timeout=10).json()["batch_sizes"])
    items = toy_items * 2  # 24 single-prompt requests from 12 threads at once
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda it: judge.score(rubric, [it])[0]["marker"], items))
    finally:
        backend.close()
    for item, verdict in zip(items, results, strict=True):
        assert verdict.value == pytest.approx(expected_level(item.completion), abs=0.3)
    sizes = httpx.get(f"{judge_url}/stats", timeout=10).json()["batch_sizes"][before:]
    assert sum(sizes) == len(items)
    assert max(sizes) > 1, f"no batching happened: {sizes}"


def test_worker_scorer_through_serve(judge_url: str, rubric: Rubric, toy_items: list[Item]) -> None:
    samples = [
        Sample(id=f"s{i}", run="r", step=3, prompt=it.prompt, completion=it.completion)
        for i, it in enumerate(toy_items[:4])
    ]
    scorer = JudgeScorer([rubric], judge_url=judge_url)
    try:
        scores = scorer.score(samples)
    finally:
        scorer.close()
    for sample, (score,) in zip(samples, scores, strict=True):
        assert score.scorer == "judge.toy.marker"
        assert score.value == pytest.approx(expected_level(sample.completion), abs=0.3)
        assert score.details["judge_backend"] == "serve"


def test_tokens_are_counted_by_the_replica(
    judge_url: str, rubric: Rubric, toy_items: list[Item], transformers_backend: Any
) -> None:
    """Each prompt's tokens, as the replica counted them in its batch (padding left out),
    equal the same backend's count in this process."""
    builder = PromptBuilder()
    prompts = [
        builder.render(rubric, "marker", prompt=it.prompt, completion=it.completion)
        for it in toy_items[:6]
    ]
    remote, here = [TokenUsage() for _ in prompts], [TokenUsage() for _ in prompts]
    backend = ServeBackend(url=judge_url)
    try:
        assert backend.reports_usage
        backend.label_probs(prompts, usage=remote)
    finally:
        backend.close()
    transformers_backend.label_probs(prompts, usage=here)
    assert remote == here
    assert all(u.prompt_tokens > 20 and u.generated_tokens == 1 for u in remote)
    assert len({u.prompt_tokens for u in remote}) > 1  # per prompt, not one figure for all


def test_serve_config_is_valid() -> None:
    from ray.serve.schema import ServeDeploySchema

    root = Path(__file__).resolve().parents[2]
    config = ServeDeploySchema.model_validate(
        yaml.safe_load((root / "deploy" / "serve.yaml").read_text())
    )
    (app,) = [a for a in config.applications if a.name == "judge"]
    assert app.import_path == "judgeserve.judge.serve:build_app"
    from judgeserve.judge.serve import DeploymentArgs

    DeploymentArgs.model_validate(app.args)
