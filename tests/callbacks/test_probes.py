"""Probe files and generation with a real tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from judgeserve.callbacks.runner import run_name
from judgeserve.exceptions import ConfigError
from judgeserve.probes import GenerationConfig, Probe, generate, load_probes, sample_id

from .conftest import Tiny


def test_probe_file(tiny: Tiny) -> None:
    probes = load_probes(tiny.probes)
    assert len(probes) == 6 and probes[0].reference and probes[0].kind == "heldout"
    assert probes[-1].kind == "training_prefix" and probes[-1].prompt.startswith("Question:")


def test_probe_sources_and_errors(tmp_path: Path) -> None:
    assert [p.id for p in load_probes(["a", {"prompt": "b", "id": 7}])] == ["0", "7"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n\n{"promt": "b"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:3: .*prompt"):
        load_probes(bad)
    bad.write_text('{"prompt": "a"\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: invalid JSON"):
        load_probes(bad)
    with pytest.raises(ConfigError, match="unique"):
        load_probes([{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}])
    with pytest.raises(ConfigError, match="not both"):
        load_probes([{"prompt": "a", "training_prefix": "b"}])
    with pytest.raises(ConfigError, match="empty"):
        load_probes([])


def test_generate_greedy_and_sampled(tiny: Tiny) -> None:
    import torch

    model = tiny.model()
    model.train()
    probes = load_probes(tiny.probes)
    before = torch.random.get_rng_state()
    out = generate(model, tiny.tokenizer, probes, GenerationConfig(max_new_tokens=6, samples=2, batch_size=4))
    assert torch.equal(before, torch.random.get_rng_state())  # training's random stream untouched
    assert model.training and tiny.tokenizer.padding_side == "right"
    assert len(out) == 3 * len(probes)
    assert {c.decoding for c in out} == {"greedy", "sampled-0", "sampled-1"}
    for c in out:
        assert c.tokens <= 6 and c.finish_reason in ("stop", "length")
        assert c.finish_reason == "stop" or c.tokens == 6
    # Greedy decoding is deterministic; batching does not change it (left padding).
    again = generate(model, tiny.tokenizer, probes, GenerationConfig(max_new_tokens=6, batch_size=1))
    assert [c.text for c in again] == [c.text for c in out if c.decoding == "greedy"]
    sample = out[0].sample(40)
    assert sample["id"] == f"s40-{probes[0].id}-greedy" and sample["probe_id"] == probes[0].id
    assert sample["tags"]["finish_reason"] == out[0].finish_reason and sample["reference"]


def test_ids_and_run_names_are_valid() -> None:
    assert sample_id(3, "a probe/é", "greedy") == "s3-a_probe/_-greedy"
    assert run_name(None, "/tmp/out/my run!") == "my-run"
    assert run_name("", None) == "default"
    with pytest.raises(ValidationError, match="greedily"):
        GenerationConfig(greedy=False, samples=0)
    with pytest.raises(ValidationError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValidationError, match="top_k"):
        GenerationConfig.model_validate({"top_k": 5})  # unknown settings are refused


def test_generation_config_travels_and_hashes_its_decoding() -> None:
    config = GenerationConfig(samples=2, seed=7, stop=["\n\n"])
    again = GenerationConfig.model_validate_json(config.model_dump_json())
    assert again == config and again.stop == ("\n\n",)
    assert config.draws() == [("greedy", None), ("sampled-0", 7), ("sampled-1", 8)]
    # The decoding hash names what decides the text: the batch size does not, a seed does.
    assert config.model_copy(update={"batch_size": 1}).decoding_hash() == config.decoding_hash()
    assert config.model_copy(update={"seed": 8}).decoding_hash() != config.decoding_hash()


def test_probe_model_round_trips(tmp_path: Path) -> None:
    p = Probe(id="x", prompt="p", tags={"topic": "geo"})
    (tmp_path / "p.jsonl").write_text(json.dumps(p.model_dump()) + "\n")
    assert load_probes(tmp_path / "p.jsonl") == [p]
