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
    # Which checkpoint to ship, beside what the loss alone would pick; with none, the gate
    # each checkpoint failed.
    assert result.best is not None and result.best["lowest_loss"] is not None
    line = next(x for x in text.splitlines() if x.startswith("best: "))
    assert f"lowest training loss at step {result.best['lowest_loss']['step']}" in line, text
    if result.best["best"] is None:
        for c in result.best["checkpoints"]:
            assert f"  step {c['step']}: disqualified by {c['disqualified'][0]}" in text, text
    else:
        assert line.startswith(f"best: step {result.best['best']['step']}, score "), text
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


def _summary_of(best: dict) -> str:
    from judgeserve.demo.run import DemoResult, _summary

    lines: list[str] = []
    result = DemoResult(run="demo-x", url="http://x", losses={100: 3.0, 800: 0.2},
                        checkpoints={100: {}, 800: {}}, best=best)
    _summary(result, lines.append)
    return "\n".join(lines)


def test_demo_summary_prints_best_beside_the_lowest_loss(settings: Settings) -> None:
    """The summary's best line, from the same ranking the API answers (a planted run)."""
    import numpy as np

    from judgeserve import read
    from judgeserve.ranking import default_quality
    from judgeserve.store import Store
    from judgeserve.testing.checkpoints import write_checkpoint

    store = Store(settings.database_url)
    probes = [f"p{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    for step, sem, memorized, loss in ((100, 0.3, 0.0, 3.0), (200, 0.7, 0.0, 1.0),
                                       (300, 0.8, 0.5, 0.2)):
        write_checkpoint(store, "demo-x", step, probes, {
            "reference.semscore": sem + rng.normal(0, 0.02, 40),
            "memorization.memorized": np.arange(40) < 40 * memorized,
            "repetition.loop": np.zeros(40)}, loss=loss)
    text = _summary_of(read.best(store, "demo-x", default_quality()))
    store.close()
    line = next(x for x in text.splitlines() if x.startswith("best: "))
    assert line.startswith("best: step 200, score ")
    assert line.endswith("; lowest training loss at step 300 (0.200)")
    assert ("  loss alone would ship step 300 (disqualified by memorization.memorized <= 0.05 "
            "(was 0.5)): judgeserve compare demo-x@300 200") in text


def test_demo_summary_names_the_gate_each_checkpoint_failed() -> None:
    best = {
        "run": "demo-x", "best": None, "reason": "every scored checkpoint is disqualified by a gate",
        "indistinguishable": [], "confidence": 0.95,
        "lowest_loss": {"step": 800, "loss": 0.2, "logged_at": 800},
        "checkpoints": [
            {"step": 100, "disqualified": ["repetition.loop <= 0.02 (was 0.6)"]},
            {"step": 800, "disqualified": ["memorization.memorized <= 0.05 (was 0.4)",
                                           "repetition.loop <= 0.02 (was 0.1)"]},
        ],
    }
    text = _summary_of(best)
    assert ("best: none — every scored checkpoint is disqualified by a gate; lowest training "
            "loss at step 800 (0.200)") in text
    assert "  step 100: disqualified by repetition.loop <= 0.02 (was 0.6)" in text
    assert ("  step 800: disqualified by memorization.memorized <= 0.05 (was 0.4); "
            "repetition.loop <= 0.02 (was 0.1)") in text
