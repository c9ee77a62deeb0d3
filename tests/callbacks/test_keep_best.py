"""``keep_best=True``: the real Trainer's ``save_total_limit`` rotation spares judgeserve's
best checkpoint, and the callback reports it at train end.

A real API (the live server) ranks the run; the checkpoints' scores are planted into its
store as the Trainer reaches each step (step 2 is the best by far), so which folder must
survive is known. What is tested is the callback against the installed transformers'
rotation (``rotate_checkpoints`` / ``sort_checkpoints`` honour
``state.best_model_checkpoint``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from judgeserve import JudgeClient
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.checkpoints import write_checkpoint

from ..conftest import LiveServer, wait_for
from .conftest import Tiny

QUALITY = """
metrics:
  - metric: reference.semscore
    better: higher
"""
BEST = 2


def trainer(tiny: Tiny, out: Path, callbacks: list[Any], **args: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    return Trainer(
        model=tiny.model(),
        args=TrainingArguments(
            output_dir=str(out), max_steps=6, per_device_train_batch_size=4,
            learning_rate=1e-3, logging_steps=1, save_strategy="steps", save_steps=1,
            save_total_limit=2, save_only_model=True, use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0, report_to=[], **args,
        ),
        train_dataset=tiny.dataset(),
        data_collator=tiny.collate,
        processing_class=tiny.tokenizer,
        callbacks=callbacks,
    )


def planter(store: Store, run: str, judge: JudgeCallback | None) -> Any:
    """Scores each step as the trainer reaches it (step 2 best), then waits until the
    callback's watcher has seen the new best, so the next save's rotation knows it."""
    from transformers import TrainerCallback

    class Plant(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step = state.global_step
            score = 0.9 if step == BEST else 0.2 + 0.01 * step
            write_checkpoint(store, run, step, [f"p{i}" for i in range(12)],
                             {"reference.semscore": np.full(12, score) + np.linspace(0, 0.01, 12)})
            if judge is not None:
                expected = step if step < BEST else BEST
                wait_for(lambda: judge.runner.best_step == expected, timeout=20)

    return Plant()


@pytest.mark.parametrize("keep_best", [True, False])
def test_save_total_limit_spares_the_best_checkpoint(
    tiny: Tiny, tmp_path: Path, settings: Settings, keep_best: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    quality = tmp_path / "quality.yaml"
    quality.write_text(QUALITY)
    s = settings.model_copy(update={"quality": quality})
    server = LiveServer(s).start()
    store = Store(s.database_url)
    client = JudgeClient(server.url, run="keep", spool_dir=tmp_path / "spool")
    out = tmp_path / "out"
    try:
        judge = JudgeCallback(tiny.probes, client=client, every_n_steps=None, probe_at_start=False,
                              probe_at_end=False, poll_interval_s=0.05, log_back=False,
                              keep_best=keep_best)
        plant = planter(store, "keep", judge if keep_best else None)
        with caplog.at_level(logging.WARNING, logger="judgeserve.callbacks"):
            trainer(tiny, out, [plant, judge]).train()
    finally:
        client.close(5)
        store.close()
        server.stop()
    kept = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    if not keep_best:
        assert kept == [5, 6]  # the rotation as it is: the two newest
        assert judge.best is None
        return
    assert kept == [BEST, 6]  # the best survived four rotations; the newest is kept to resume
    assert judge.best is not None and judge.best["best"]["step"] == BEST
    assert judge.best_checkpoint == str(out / f"checkpoint-{BEST}")
    assert f"judgeserve: best checkpoint is step {BEST}, kept at {out / f'checkpoint-{BEST}'}" in caplog.text


def test_keep_best_refuses_the_trainers_own_best_metric(tiny: Tiny, tmp_path: Path) -> None:
    client = JudgeClient("http://127.0.0.1:9", run="refused", spool_dir=tmp_path / "spool")
    judge = JudgeCallback(tiny.probes, client=client, every_n_steps=None, probe_at_start=False,
                          keep_best=True)
    t = trainer(tiny, tmp_path / "out", [judge], metric_for_best_model="loss")
    try:
        with pytest.raises(ValueError, match="metric_for_best_model='loss'"):
            t.train()
    finally:
        client.close(0.1)
