"""``checkpoint_keep``: judgeserve's own background-saved folders are rotated like the
Trainer's ``save_total_limit``, but a folder goes only once its checkpoint job has ended.

Real parts: an HF ``Trainer`` on a tiny GPT-2 saving in the background, the API, a
scoring worker, and (started mid-training) the transformers generation worker. While no
generation worker runs, every job stays queued and every folder stays; once one runs,
the folders beyond the limit go as their jobs end. With ``keep_best`` the jobs' ends and
scores are planted into the store (the best step is then known) and the best survives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from judgeserve import JudgeClient, read
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.callbacks.rotation import Rotation
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.checkpoints import write_checkpoint

from ..conftest import LiveServer, wait_for
from .conftest import Generating, Stack, Tiny
from .test_checkpoint_mode import hf_trainer

pytest.importorskip("torch")


def at_step(step: int, action: Callable[[], None]) -> Any:
    """A callback running ``action`` at the end of ``step`` (after the judge callback's
    save), inside training: what it waits for happens while training is under way."""
    from transformers import TrainerCallback

    class At(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == step:
                action()

    return At()


def folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_old_folders_go_only_once_their_jobs_have_ended(
    tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack],
    generating: Callable[[], Generating], settings: Settings,
) -> None:
    s = stack("rules: []")
    run = "rotate"
    client = JudgeClient(s.url, run=run, spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, mode="checkpoint", checkpoint_save="background",
                       every_n_steps=5, max_new_tokens=4, checkpoint_keep=1, poll_interval_s=0.05)
    out = tmp_path / "out"
    root = out / "judgeserve"
    store = Store(settings.database_url)
    seen: dict[str, Any] = {}

    def check() -> None:  # at step 20, its folder just copied (being written)
        assert cb.runner.saver.wait(60)
        wait_for(lambda: len(client.checkpoints()) == 4, timeout=30)  # all four delivered
        looks = cb.runner.rotation.looks
        # ... and looked at (or, were it deleting anyway, nothing left to look at).
        wait_for(lambda: cb.runner.rotation.looks >= looks + 3 or not cb.runner.rotation.candidates(),
                 timeout=30)
        # No generation worker: every job is queued, so every folder stays.
        seen["queued"] = [j["state"] for j in read.list_checkpoint_jobs(store, run)]
        seen["kept while queued"] = folders(root)
        generating()  # now the jobs run, and end
        wait_for(lambda: folders(root) == ["step-20"], timeout=200, every=0.2)
        seen["states when gone"] = {j["step"]: j["state"] for j in read.list_checkpoint_jobs(store, run)}

    trainer = hf_trainer(tiny, tiny.model(), out, cb, steps=20, save_strategy="no")
    trainer.add_callback(at_step(20, check))
    try:
        trainer.train()
        assert client.flush(20) and client.errors == []
    finally:
        client.close(10)
        store.close()
    assert cb.runner.probed == [5, 10, 15, 20]
    assert seen["queued"] == ["queued"] * 4
    assert seen["kept while queued"] == ["step-10", "step-15", "step-20", "step-5"]
    # The three beyond the limit went once their jobs had ended; the newest stays (its
    # job may still be running: it is within the limit anyway).
    for step in (5, 10, 15):
        assert seen["states when gone"][step] in ("generated", "scored"), seen
    assert folders(root) == ["step-20"]  # nothing half-deleted left beside it
    assert sorted(p.name for p in cb.runner.rotation.deleted) == ["step-10", "step-15", "step-5"]
    assert cb.runner.rotation.failed == {}


QUALITY = """
metrics:
  - metric: reference.semscore
    better: higher
"""
BEST = 10


def test_keep_best_keeps_the_best_folder_beyond_the_limit(
    tiny: Tiny, tmp_path: Path, settings: Settings,
) -> None:
    quality = tmp_path / "quality.yaml"
    quality.write_text(QUALITY)
    s = settings.model_copy(update={"quality": quality})
    server = LiveServer(s).start()
    store = Store(s.database_url)
    run = "rotate-best"
    client = JudgeClient(server.url, run=run, spool_dir=tmp_path / "spool")
    cb = JudgeCallback(tiny.probes, client=client, mode="checkpoint", checkpoint_save="background",
                       every_n_steps=5, checkpoint_keep=1, poll_interval_s=0.05, keep_best=True)
    out = tmp_path / "out"
    root = out / "judgeserve"
    seen: dict[str, Any] = {}

    def end_jobs() -> None:  # as a generation worker and a scoring worker would
        assert cb.runner.saver.wait(60)
        wait_for(lambda: len(client.checkpoints()) == 4, timeout=30)
        for step in (5, 10, 15, 20):
            score = 0.9 if step == BEST else 0.2 + 0.01 * step
            write_checkpoint(store, run, step, [f"p{i}" for i in range(12)],
                             {"reference.semscore": np.full(12, score) + np.linspace(0, 0.01, 12)})
            store.update_checkpoint_job(run, step, "generated", samples=12)
        wait_for(lambda: folders(root) == [f"step-{BEST}", "step-20"], timeout=30)
        looks = cb.runner.rotation.looks
        wait_for(lambda: cb.runner.rotation.looks >= looks + 3 or not cb.runner.rotation.candidates(),
                 timeout=30)
        seen["after"] = folders(root)

    trainer = hf_trainer(tiny, tiny.model(), out, cb, steps=20, save_strategy="no")
    trainer.add_callback(at_step(20, end_jobs))
    try:
        trainer.train()
    finally:
        client.close(5)
        store.close()
        server.stop()
    assert seen["after"] == [f"step-{BEST}", "step-20"]  # and it stayed there
    assert folders(root) == [f"step-{BEST}", "step-20"]
    assert cb.best_checkpoint == str(root / f"step-{BEST}")


def test_a_folder_that_cannot_be_deleted_is_logged_and_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deletion's failure stays on the watcher thread: logged once, never raised;
    the other folders are still rotated."""
    import shutil

    root = tmp_path / "judgeserve"
    rotation = Rotation(keep=1)
    for step in (1, 2, 3, 4, 5):
        (root / f"step-{step}").mkdir(parents=True)
        (root / f"step-{step}" / "model.safetensors").write_bytes(b"x")
        rotation.saved(step, root / f"step-{step}")
    jobs = [{"step": s, "path": str(root / f"step-{s}"), "state": st}
            for s, st in ((1, "scored"), (2, "retrying"), (3, "failed"), (4, "generated"), (5, "queued"))]
    # The filesystem refuses to remove step 1's files (tests run as root: permissions
    # would not stop it), and step 4's folder was removed by hand.
    real_rmtree = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if ".step-1." in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    real_rmtree(root / "step-4")
    with caplog.at_level(logging.WARNING, logger="judgeserve.callbacks"):
        gone = rotation.rotate(lambda: jobs)
        assert rotation.rotate(lambda: jobs) == []  # given up on: not retried every poll
    assert gone == [root / "step-3"]  # dead-lettered: gone; retrying and the newest: kept
    left = [p.name for p in root.iterdir() if p.name.startswith(".step-1.deleting-")]
    assert len(left) == 1 and folders(root) == [left[0], "step-2", "step-5"]
    assert sorted(rotation.failed) == [root / "step-1", root / "step-4"]
    assert "PermissionError" in rotation.failed[root / "step-1"]
    assert "FileNotFoundError" in rotation.failed[root / "step-4"]
    assert caplog.text.count("could not delete the old checkpoint folder") == 2
    assert f"left on disk as {root / left[0]}" in caplog.text
