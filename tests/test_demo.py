"""The demo's headline: a memorization or collapse alert fires while the loss still falls."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from judgeserve.settings import Settings

HEADLINE_RULES = {
    "memorization_while_loss_falls",
    "memorized_completions",
    "collapse_while_loss_falls",
    "mode_collapse",
}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_catches_memorization_while_loss_falls(settings: Settings, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from judgeserve.demo import run_demo

    out = io.StringIO()
    result = run_demo(settings, steps=800, every=100, serve=False, workdir=tmp_path / "demo", out=out)
    text = out.getvalue()
    assert result.seconds < 300, text
    assert sorted(result.checkpoints) == list(range(100, 801, 100)), text
    losses = result.losses
    headline = [a for a in result.alerts if a.rule in HEADLINE_RULES]
    assert headline, text
    alert = min(headline, key=lambda a: a.step)
    # The loss logged at the alert's step is below every earlier one, and falls further after.
    at = max(s for s in losses if s <= alert.step)
    assert losses[at] < min(v for s, v in losses.items() if s < at), text
    assert losses[max(losses)] < losses[at], text
    # The console told the story: checkpoint lines, the alert, and where to look.
    assert f"step   {alert.step} | loss" in text or f"step  {alert.step} | loss" in text
    assert "ALERT [" in text and alert.rule in text
    assert f"/runs/{result.run}" in text
    memorized = [result.checkpoints[s].get("memorization.ngram_overlap", 0.0) for s in sorted(result.checkpoints)]
    assert max(memorized) > 0.3 and memorized[0] < 0.1, text
    # Checkpoint mode (the default): the generator on Ray Serve made every checkpoint's
    # samples; the trainer was only blocked by its saves, each shown next to what
    # generating in the trainer cost at that save.
    assert result.mode == "checkpoint"
    assert sorted(result.blocked) == sorted(result.in_process) == list(range(100, 801, 100))
    for step in result.blocked:
        assert result.blocked[step] > 0 and result.in_process[step] > 0, (step, text)
    assert sum(result.blocked.values()) < sum(result.in_process.values()), text
    assert "trainer blocked" in text and "in-process generation:" in text
    assert "checkpoint mode: the trainer was blocked" in text
    from judgeserve import read
    from judgeserve.store import Store

    store = Store(settings.database_url)
    try:
        jobs = read.list_checkpoint_jobs(store, result.run)
    finally:
        store.close()
    assert sorted(j["step"] for j in jobs) == list(range(100, 801, 100))
    assert {j["state"] for j in jobs} == {"scored"}, jobs
    assert {j["generator"]["backend"] for j in jobs} == {"transformers"}
    assert {j["kind"] for j in jobs} == {"full"}
