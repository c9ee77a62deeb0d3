"""The Lightning callback: same behaviour as the Hugging Face one, on a real Lightning Trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from judgeserve import JudgeClient, read
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..conftest import wait_for
from .conftest import Stack, Tiny
from .test_hf import STOP_RULE

L = pytest.importorskip("lightning.pytorch")
pytestmark = [
    # Lightning suggests more dataloader workers for a 15-batch toy dataset; not a problem here.
    pytest.mark.filterwarnings("ignore:The '?train_dataloader'? does not have many workers"),
    # Lightning 2.6 calls torch's deprecated pytree LeafSpec check (torch 2.13 warns).
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning"),
]


def lightning_run(tiny: Tiny, tmp_path: Path, callback: Any, max_steps: int) -> Any:
    import torch
    from torch.utils.data import DataLoader

    from judgeserve.callbacks.lightning import JudgeLightningCallback

    assert isinstance(callback, JudgeLightningCallback)

    class Module(L.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny.model().train()  # from_pretrained returns eval mode

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
            return self.model(**batch).loss

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.parameters(), lr=2e-3)

    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=L.loggers.CSVLogger(str(tmp_path / "logs"), name="run"),
        log_every_n_steps=5,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        default_root_dir=str(tmp_path),
    )
    loader = DataLoader(tiny.dataset(), batch_size=8, shuffle=True, collate_fn=tiny.collate)
    trainer.fit(Module(), loader)
    return trainer


def test_lightning_probes_scored_and_stop_alert_halts(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], settings: Settings
) -> None:
    from judgeserve.callbacks.lightning import JudgeLightningCallback

    s = stack(STOP_RULE)
    client = JudgeClient(s.url, run="pl-stop", spool_dir=tmp_path / "spool")
    cb = JudgeLightningCallback(
        tiny.probes, tokenizer=tiny.tokenizer, client=client, every_n_steps=10,
        max_new_tokens=8, poll_interval_s=0.1,
    )
    max_steps = 2000
    try:
        trainer = lightning_run(tiny, tmp_path, cb, max_steps)
    finally:
        client.close(10)
    store = Store(settings.database_url)
    try:
        (alert,) = read.list_alerts(store, "pl-stop")
        assert alert.action == "stop" and alert.step == 10
        assert cb.stopped_at is not None and alert.step < cb.stopped_at < max_steps
        assert trainer.global_step == cb.stopped_at
        assert cb.runner.probed[:2] == [0, 10]
        wait_for(lambda: read.count_step_samples(store, "pl-stop", 10) == 6)
        assert all(r["scores"] for r in read.step_samples(store, "pl-stop", 10))
        series = read.metric_series(store, "pl-stop")
        assert series["train.loss"][0]["step"] == 5 and "train.learning_rate" in series
    finally:
        store.close()


def test_lightning_logs_aggregates_to_its_loggers(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack]
) -> None:
    from judgeserve.callbacks.lightning import JudgeLightningCallback

    s = stack("rules: []")
    client = JudgeClient(s.url, run="pl-log", spool_dir=tmp_path / "spool")
    cb = JudgeLightningCallback(
        tiny.probes, tokenizer=tiny.tokenizer, client=client, every_n_steps=5,
        max_new_tokens=4, poll_interval_s=0.05,
    )
    logged: list[tuple[dict[str, float], int | None]] = []
    original = L.loggers.CSVLogger.log_metrics

    def spy(self: Any, metrics: dict[str, float], step: int | None = None) -> None:
        logged.append((dict(metrics), step))
        original(self, metrics, step)

    L.loggers.CSVLogger.log_metrics = spy
    try:
        # Scoring runs beside training; hold each step briefly so checkpoints get scored.
        cb.on_train_batch_start = lambda *a, **k: wait_for(  # type: ignore[method-assign]
            lambda: not cb.runner.probed or cb.runner.probed[-1] in cb.runner._pending
            or cb.runner.probed[-1] in cb.runner._handed, timeout=10)
        lightning_run(tiny, tmp_path, cb, 12)
    finally:
        L.loggers.CSVLogger.log_metrics = original
        client.close(10)
    steps = [step for metrics, step in logged if "judgeserve/length.tokens" in metrics]
    assert 0 in steps and 5 in steps
