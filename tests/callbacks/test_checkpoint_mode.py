"""Checkpoint mode end to end with real parts: a Hugging Face ``Trainer`` training a PEFT
LoRA adapter on a tiny GPT-2 (and a Lightning ``Trainer``), the callbacks submitting each
saved folder, the API, a generation worker with the transformers generator hosting the
base model, a scoring worker, alert rules — and the alert visible to ``client.alerts()``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from judgeserve import JudgeClient, read
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..conftest import wait_for
from .conftest import Generating, Stack, Tiny

peft = pytest.importorskip("peft")

FIRES_AT_ONCE = """
rules:
  - name: answers_exist
    type: threshold
    metric: length.tokens
    above: 0
    min_samples: 2
    severity: warning
"""


def lora_model(tiny: Tiny) -> Any:
    model = peft.get_peft_model(
        tiny.model(), peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM"
        )
    )
    return model


def hf_trainer(tiny: Tiny, model: Any, out: Path, callback: JudgeCallback, steps: int, **args: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    return Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=8,
            learning_rate=5e-3,
            logging_steps=5,
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
            report_to=[],
            **{"save_strategy": "steps", "save_steps": 10, **args},
        ),
        train_dataset=tiny.dataset(),
        data_collator=tiny.collate,
        callbacks=[callback],
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hf_lora_training_in_checkpoint_mode_end_to_end(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], generating: Callable[[], Generating],
    settings: Settings,
) -> None:
    s = stack(FIRES_AT_ONCE)
    generating()
    client = JudgeClient(s.url, run="ckpt-e2e", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(
        tiny.probes, client=client, mode="checkpoint", base_model=str(tiny.model_dir),
        max_new_tokens=8, poll_interval_s=0.1,
    )
    out = tmp_path / "out"
    hf_trainer(tiny, lora_model(tiny), out, cb, steps=30).train()
    try:
        assert client.flush(20) and client.errors == []
        # The trainer generated nothing; it submitted each saved adapter folder.
        assert cb.runner.generation_s == 0.0
        assert cb.runner.probed == [10, 20, 30]
        store = Store(settings.database_url)
        try:
            wait_for(lambda: {j["state"] for j in read.list_checkpoint_jobs(store, "ckpt-e2e")} == {"scored"},
                     timeout=120, every=0.2)
            jobs = {j["step"]: j for j in read.list_checkpoint_jobs(store, "ckpt-e2e")}
            assert sorted(jobs) == [10, 20, 30]
            for step, job in jobs.items():
                assert job["path"] == str(out / f"checkpoint-{step}") and job["kind"] == "lora"
                assert job["probe_set"] == cb.runner.probe_set and job["samples"] == 6
                assert job["generator"]["backend"] == "transformers"
                assert job["generator"]["base_model"] == str(tiny.model_dir)
            samples = read.step_samples(store, "ckpt-e2e", 20, limit=100, offset=0)
            assert len(samples) == 6
            probe_ids = [json.loads(line)["id"] for line in tiny.probes.read_text().splitlines()]
            assert {x["id"] for x in samples} == {f"s20-{p}-greedy" for p in probe_ids}
            for x in samples:
                assert x["checkpoint"] == str(out / "checkpoint-20")
                assert x["tags"]["adapter"] == str(out / "checkpoint-20")
                assert x["tags"]["generator"] == "transformers" and x["tags"]["finish_reason"] in ("stop", "length")
                assert [sc["scorer"] for sc in x["scores"]] == ["length.tokens"]
        finally:
            store.close()
        # The alert its scores raised reaches the trainer's client.
        wait_for(lambda: any(a.rule == "answers_exist" for a in client.alerts()), timeout=60)
        alert = next(a for a in client.alerts() if a.rule == "answers_exist")
        assert alert.step == 10 and "length.tokens" in alert.message
    finally:
        client.close(10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_checkpoints_deleted_before_generation_are_dead_letters_and_the_rest_runs(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], generating: Callable[[], Generating],
    settings: Settings,
) -> None:
    s = stack("rules: []")
    client = JudgeClient(s.url, run="ckpt-limit", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, mode="checkpoint", max_new_tokens=8)
    out = tmp_path / "out"
    # The generator is not running while the trainer keeps only its last checkpoint.
    hf_trainer(tiny, lora_model(tiny), out, cb, steps=30, save_total_limit=1).train()
    try:
        assert client.flush(20)
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint-30"]
        generating()
        store = Store(settings.database_url)
        try:
            wait_for(lambda: (read.checkpoint_job(store, "ckpt-limit", 30) or {}).get("state") == "scored",
                     timeout=120, every=0.2)
            jobs = {j["step"]: j for j in read.list_checkpoint_jobs(store, "ckpt-limit")}
            for step in (10, 20):
                reason = f"checkpoint folder gone: {out / f'checkpoint-{step}'} (deleted by save_total_limit?)"
                assert jobs[step]["state"] == "failed" and jobs[step]["reason"] == reason
            assert read.count_step_samples(store, "ckpt-limit", 30) == 6
            assert read.count_step_samples(store, "ckpt-limit", 10) == 0
        finally:
            store.close()
        r = redis.Redis.from_url(settings.redis_url)
        dead = r.xrange(f"{settings.stream_prefix}:checkpoints:deadletter")
        r.close()
        assert [f[b"error"].decode().split(":")[0] for _, f in dead] == ["checkpoint folder gone"] * 2
    finally:
        client.close(10)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:The '?train_dataloader'? does not have many workers")
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning")
@pytest.mark.parametrize("saves", ["trainer", "background"])
def test_lightning_in_checkpoint_mode_submits_what_model_checkpoint_saves(
    saves: str, tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack],
    generating: Callable[[], Generating], settings: Settings,
) -> None:
    L = pytest.importorskip("lightning.pytorch")
    import torch
    from torch.utils.data import DataLoader

    from judgeserve.callbacks.lightning import JudgeLightningCallback

    s = stack("rules: []")
    generating()
    client = JudgeClient(s.url, run="pl-ckpt", spool_dir=tmp_path / "spool")
    cb = JudgeLightningCallback(tiny.probes, client=client, mode="checkpoint", max_new_tokens=8,
                                checkpoint_save=saves)

    class Module(L.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny.model().train()

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
            return self.model(**batch).loss

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=2e-3)

    saver = L.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpts"), every_n_train_steps=10, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=20, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[saver, cb], default_root_dir=str(tmp_path),
    )
    loader = DataLoader(tiny.dataset(), batch_size=8, shuffle=True, collate_fn=tiny.collate)
    try:
        trainer.fit(Module(), loader)
        assert client.flush(20) and client.errors == []
        assert cb.runner.probed == [10, 20] and cb.runner.generation_s == 0.0
        assert cb.runner.saver.errors == []
        assert len(cb.runner.saver.records) == (2 if saves == "background" else 0)
        store = Store(settings.database_url)
        try:
            wait_for(lambda: len([j for j in read.list_checkpoint_jobs(store, "pl-ckpt") if j["state"] == "generated"
                                  or j["state"] == "scored"]) == 2, timeout=120, every=0.2)
            for job in read.list_checkpoint_jobs(store, "pl-ckpt"):
                folder = tmp_path / "ckpts" / "judgeserve" / f"step-{job['step']}"
                assert job["path"] == str(folder) and job["kind"] == "full"
                assert (folder / "config.json").is_file()
            wait_for(lambda: read.count_step_samples(store, "pl-ckpt", 20) == 6, timeout=60)
        finally:
            store.close()
    finally:
        client.close(10)
