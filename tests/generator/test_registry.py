"""The generator registry and the job model (no engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from judgeserve.exceptions import CheckpointError, ConfigError
from judgeserve.generator import GenerationJob, generator_names, load_generator, register_generator
from judgeserve.generator.base import AdapterSlots, check_base_model


def test_built_ins_register_through_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="judgeserve.generators")}
    assert {"vllm", "transformers", "serve"} <= names
    assert {"vllm", "transformers", "serve"} <= set(generator_names())
    with pytest.raises(ConfigError, match=r"unknown generator 'nope'; registered: .*transformers"):
        load_generator("nope", "m")


def test_a_users_generator_registers_like_the_built_ins() -> None:
    class Mine:
        name = "mine"

        def __init__(self, base_model: str | None = None, **options: Any) -> None:
            self.base_model, self.options = base_model, options

    register_generator("mine", Mine)
    made: Any = load_generator("mine", "base", temperature_scale=2)
    assert (
        isinstance(made, Mine)
        and made.base_model == "base"
        and made.options == {"temperature_scale": 2}
    )
    with pytest.raises(ConfigError, match="needs url"):
        load_generator("serve")


def test_jobs_are_checked() -> None:
    job = GenerationJob.model_validate(
        {"checkpoint": "/c", "probes": [{"id": "a", "prompt": "p"}], "config": {"samples": 2}}
    )
    assert job.kind == "lora" and job.config.samples == 2
    assert GenerationJob.model_validate_json(job.model_dump_json()) == job
    for bad, where in [
        ({"checkpoint": "/c", "probes": []}, "probes"),
        ({"checkpoint": "/c", "probes": [{"id": "a", "prompt": "p"}] * 2}, "unique"),
        ({"checkpoint": "/c", "kind": "merged", "probes": [{"prompt": "p", "id": "a"}]}, "kind"),
        ({"checkpoint": "/c", "probes": [{"prompt": "p", "id": "a"}], "step": 3}, "step"),
        (
            {"checkpoint": "/c", "probes": [{"prompt": "p", "id": "a"}], "config": {"top_p": 2}},
            "top_p",
        ),
    ]:
        with pytest.raises(ValidationError, match=where):
            GenerationJob.model_validate(bad)


def test_base_model_must_match_for_adapters(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "base")
    probes = [{"id": "a", "prompt": "p"}]

    def job(**kw: Any) -> GenerationJob:
        return GenerationJob.model_validate({"checkpoint": "/c", "probes": probes, **kw})

    check_base_model(job(), "org/base")
    check_base_model(job(base_model="org/base"), "org/base")
    check_base_model(job(base_model=str(tmp_path / "alias")), str(tmp_path / "base"))
    check_base_model(job(base_model="org/other", kind="full"), "org/base")  # full: its own
    with pytest.raises(
        CheckpointError, match=r"adapter for base model 'org/other'.*hosts 'org/base'"
    ):
        check_base_model(job(base_model="org/other"), "org/base")


def test_adapter_slots_keep_ids_and_evict_the_least_recent() -> None:
    slots = AdapterSlots(2)
    assert slots.use("a") == (1, True, [])
    assert slots.use("b") == (2, True, [])
    assert slots.use("a") == (1, False, [])  # a is now the most recent
    assert slots.use("c") == (3, True, [2])  # b goes
    assert slots.use("b") == (2, True, [1])  # b keeps its id; a goes
    assert slots.loaded == [3, 2]
    slots.forget("b")
    assert slots.loaded == [3]
    with pytest.raises(ConfigError):
        AdapterSlots(0)
