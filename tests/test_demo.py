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
