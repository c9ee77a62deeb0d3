"""The Hugging Face callback with a real tiny model and the real Trainer on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from judgeserve import JudgeClient, read
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..conftest import wait_for
from .conftest import Stack, Tiny

STOP_RULE = """
rules:
  - name: answers_exist
    type: threshold
    metric: length.tokens
    above: 0
    from_step: 10
    min_samples: 2
    severity: critical
    action: stop
"""


def trainer(tiny: Tiny, tmp_path: Path, callback: JudgeCallback, max_steps: int, **args: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    return Trainer(
        model=tiny.model(),
        args=TrainingArguments(
            output_dir=str(tmp_path / "out"),
            max_steps=max_steps,
            per_device_train_batch_size=8,
            learning_rate=2e-3,
            logging_steps=5,
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
            **{"report_to": [], **args},
        ),
        train_dataset=tiny.dataset(),
        data_collator=tiny.collate,
        processing_class=tiny.tokenizer,
        callbacks=[callback],
    )


def test_probes_are_scored_and_a_stop_alert_halts_training(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], settings: Settings
) -> None:
    s = stack(STOP_RULE)
    client = JudgeClient(s.url, run="hf-stop", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, every_n_steps=10, max_new_tokens=8, poll_interval_s=0.1)
    max_steps = 2000
    t = trainer(tiny, tmp_path, cb, max_steps)
    try:
        t.train()
    finally:
        client.close(10)
    store = Store(settings.database_url)
    try:
        (alert,) = read.list_alerts(store, "hf-stop")
        assert alert.rule == "answers_exist" and alert.action == "stop" and alert.step == 10
        # Stopped after the alert, well before max_steps; the trainer really ended there.
        assert cb.stopped_at is not None and alert.step < cb.stopped_at < max_steps
        assert t.state.global_step == cb.stopped_at
        assert cb.runner.stop_alert is not None and cb.runner.stop_alert.id == alert.id
        # The probes of each checkpoint were generated, submitted and scored.
        assert cb.runner.probed[:2] == [0, 10] and cb.runner.probed[-1] == cb.stopped_at
        wait_for(lambda: read.count_step_samples(store, "hf-stop", cb.stopped_at or 0) == 6)
        for step in (0, 10):
            rows = read.step_samples(store, "hf-stop", step)
            assert len(rows) == 6 and all(r["scores"] for r in rows)
            assert {r["tags"]["kind"] for r in rows} == {"heldout", "training_prefix"}
            assert read.step_aggregates(store, "hf-stop", step)["length.tokens"]["n"] == 6
        # Trainer metrics went along: loss and learning rate next to quality.
        series = read.metric_series(store, "hf-stop")
        assert series["train.loss"][0]["step"] == 5 and "train.learning_rate" in series
    finally:
        store.close()


def test_training_never_waits_on_scoring(tiny: Tiny, tmp_path: Path, settings: Settings) -> None:
    """No worker and no API at all: training runs at full speed; samples wait in the journal."""
    url = f"http://127.0.0.1:{settings.port}"  # nothing listens here
    client = JudgeClient(url, run="hf-offline", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, every_n_steps=5, max_new_tokens=4, poll_interval_s=0.05)
    t = trainer(tiny, tmp_path, cb, 20)
    started = time.perf_counter()
    t.train()
    elapsed = time.perf_counter() - started
    client.close(0.1)
    assert cb.runner.probed == [0, 5, 10, 15, 20] and cb.stopped_at is None
    assert cb.runner.submit_s < 0.05 * elapsed, (cb.runner.submit_s, elapsed)
    assert not cb.runner.alerts


def test_aggregates_logged_back_to_tensorboard(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = stack("rules: []")
    client = JudgeClient(s.url, run="hf-tb", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, every_n_steps=10, max_new_tokens=4, poll_interval_s=0.05)
    t = trainer(tiny, tmp_path, cb, 1, report_to=["tensorboard"])
    # Slow the loop just enough for checkpoint 0 to be scored while training runs.
    t.add_callback(_Pause(lambda: bool(httpx.get(f"{s.url}/v1/runs/hf-tb/metrics").status_code == 200
                                       and "length.tokens" in httpx.get(f"{s.url}/v1/runs/hf-tb/metrics").json()["metrics"])))
    t.train()
    client.close(10)
    events = EventAccumulator(str(tmp_path / "out" / "runs" / "judgeserve"))
    events.Reload()
    assert "judgeserve/length.tokens" in events.Tags()["scalars"]
    (point,) = [e for e in events.Scalars("judgeserve/length.tokens") if e.step == 0]
    assert point.value > 0


class _Pause:
    """A TrainerCallback that holds the first step until ``ready()`` (at most 20 s)."""

    def __new__(cls, ready: Callable[[], bool]) -> Any:
        from transformers import TrainerCallback

        class Pause(TrainerCallback):
            def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
                wait_for(ready, timeout=20)
                time.sleep(0.3)  # one more poll of the watcher

        return Pause()


@pytest.mark.slow
def test_aggregates_logged_back_to_wandb_offline(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged: list[dict[str, Any]] = []

    def scored_and_spied() -> bool:
        # wandb.init (in the trainer's WandbCallback) rebinds wandb.log: spy on it after that.
        if getattr(wandb.log, "__name__", "") != "spy":
            real_log = wandb.log

            def spy(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                logged.append(dict(data))
                return real_log(data, *args, **kwargs)

            monkeypatch.setattr(wandb, "log", spy)
        metrics = httpx.get(f"{s.url}/v1/runs/hf-wandb/metrics").json().get("metrics", {})
        return "length.tokens" in metrics

    s = stack("rules: []")
    client = JudgeClient(s.url, run="hf-wandb", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, every_n_steps=10, max_new_tokens=4, poll_interval_s=0.05)
    t = trainer(tiny, tmp_path, cb, 1, report_to=["wandb"])
    t.add_callback(_Pause(scored_and_spied))
    try:
        t.train()
    finally:
        client.close(10)
        wandb.finish()
    rows = [r for r in logged if "judgeserve/length.tokens" in r]
    assert rows and rows[0]["train/global_step"] == 0
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_end_of_run_summary_is_no_series(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack], settings: Settings
) -> None:
    # The Trainer logs train_runtime, total_flos, train_samples_per_second ... once at the
    # end: drawn over steps, they spanned a million on the loss's chart.
    s = stack("rules: []")
    client = JudgeClient(s.url, run="hf-summary", spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, every_n_steps=None, probe_at_start=False,
                       probe_at_end=False, poll_interval_s=0.1)
    t = trainer(tiny, tmp_path, cb, 10)
    try:
        t.train()
    finally:
        client.close(10)
    store = Store(settings.database_url)
    try:
        series = read.metric_series(store, "hf-summary")
        summary = read.run_summary_values(store, "hf-summary")
    finally:
        store.close()
    assert [p["step"] for p in series["train.loss"]] == [5, 10]
    assert not any(m.endswith(("_runtime", "_per_second", "total_flos", "train_loss")) for m in series), series
    assert {"train_runtime", "train_samples_per_second", "total_flos", "train_loss"} <= set(summary)
    assert summary["train_runtime"] > 0 and "epoch" not in summary
    run = httpx.get(f"{s.url}/v1/runs/hf-summary").json()
    assert run["summary"]["total_flos"] == summary["total_flos"]


def test_a_nan_loss_reaches_judgeserve(tmp_path: Path, stack: Callable[[str], Stack], settings: Settings) -> None:
    from judgeserve.callbacks.runner import ProbeRunner

    s = stack("rules: []")
    client = JudgeClient(s.url, run="hf-nan", spool_dir=tmp_path / "spool")
    runner = ProbeRunner(["p"], client=client)
    runner.log_metrics(3, {"loss": float("nan"), "learning_rate": 1e-3, "eval_runtime": 2.5})
    client.close(10)
    store = Store(settings.database_url)
    try:
        assert read.nonfinite_metrics(store, "hf-nan") == [{"name": "train.loss", "step": 3, "value": "nan"}]
        assert "train.eval_runtime" not in read.metric_series(store, "hf-nan")
        assert read.run_summary_values(store, "hf-nan") == {"eval_runtime": 2.5}
    finally:
        store.close()
