"""The callbacks' options: one ProbeOptions object, or the same names as keyword arguments."""

from __future__ import annotations

import pytest

from judgeserve.callbacks import GenerationConfig, ProbeOptions, ProbeRunner

PROBES = ["What is the capital of Velmora?", "Name a river."]


def test_keywords_and_options_object_configure_the_runner_alike() -> None:
    by_keywords = ProbeRunner(PROBES, every_n_steps=5, max_new_tokens=7, probe_at_start=False,
                              poll_interval_s=0.25, stop_on_alert=False, log_back=False)
    by_object = ProbeRunner(PROBES, ProbeOptions(every_n_steps=5, max_new_tokens=7,
                                                 probe_at_start=False, poll_interval_s=0.25,
                                                 stop_on_alert=False, log_back=False))
    for runner in (by_keywords, by_object):
        assert runner.every_n_steps == 5 and runner.generation.max_new_tokens == 7
        assert not runner.probe_at_start and runner.probe_at_end
        assert runner.poll_interval_s == 0.25 and not runner.stop_on_alert and not runner.log_back
        assert not runner.due(0) and runner.due(10) and not runner.due(11)


def test_keywords_override_the_options_object() -> None:
    runner = ProbeRunner(PROBES, ProbeOptions(every_n_steps=5, max_new_tokens=7), every_n_steps=3)
    assert runner.every_n_steps == 3 and runner.generation.max_new_tokens == 7


def test_generation_config_wins_over_max_new_tokens() -> None:
    gen = GenerationConfig(max_new_tokens=9, greedy=False, samples=2)
    runner = ProbeRunner(PROBES, generation=gen, max_new_tokens=3)
    assert runner.generation is gen and runner.expected_samples == 4


def test_unknown_or_bad_option_is_refused() -> None:
    with pytest.raises(TypeError, match="every_n_step"):
        ProbeRunner(PROBES, every_n_step=5)
    with pytest.raises(ValueError, match="every_n_steps"):
        ProbeOptions(every_n_steps=0)


def test_hf_callback_takes_both_forms() -> None:
    pytest.importorskip("transformers")
    from judgeserve.callbacks.hf import JudgeCallback

    cb = JudgeCallback(PROBES, options=ProbeOptions(every_n_steps=4), max_new_tokens=5, on_save=True)
    assert cb.runner.every_n_steps == 4 and cb.runner.generation.max_new_tokens == 5
    assert cb.on_save_probe and not cb.on_evaluate_probe


def test_checkpoint_mode_generates_nothing_and_says_which_kind_a_folder_is(tmp_path: object) -> None:
    from pathlib import Path

    runner = ProbeRunner(PROBES, mode="checkpoint", every_n_steps=5)
    assert runner.mode == "checkpoint"
    assert not runner.due(0) and not runner.due(5)  # saves decide, not the schedule
    folder = Path(str(tmp_path))
    assert runner.checkpoint_kind_of(folder) == "full"
    (folder / "adapter_config.json").write_text("{}")
    assert runner.checkpoint_kind_of(folder) == "lora"
    assert ProbeRunner(PROBES, mode="checkpoint", checkpoint_kind="full").checkpoint_kind_of(folder) == "full"
    # Without a client (not started) nothing is submitted.
    assert runner.submit_checkpoint(5, folder) is False
    with pytest.raises(ValueError, match="mode must be"):
        ProbeOptions(mode="eventually")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_kind"):
        ProbeOptions(checkpoint_kind="merged")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_keep must be at least 1"):
        ProbeOptions(checkpoint_keep=0)
    assert ProbeOptions().checkpoint_keep == 2 and ProbeOptions(checkpoint_keep=None).checkpoint_keep is None
