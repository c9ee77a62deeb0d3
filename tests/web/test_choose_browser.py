"""Choosing a checkpoint in Debian's Chromium, against the real API: the compare page (the
diff highlighted, sorting by the largest change), the run page's headline chart and its
best checkpoint, and runs overlaid. Screenshots go to test-artifacts/web/.

The story run is planted into the stack's store (``testing.checkpoints``): the loss falls
at every checkpoint while quality peaks at step 300 and the model starts reciting its
training data from step 400, so loss alone would ship step 600.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from judgeserve.testing.checkpoints import write_checkpoint

from .conftest import Stack, screenshot

STORY = "story-run"
TWIN = "story-twin"
PROBES = [f"q{i:02d}" for i in range(30)]
STEPS = (100, 200, 300, 400, 500, 600)
WORDS = ["capital", "river", "mountain", "city", "bridge", "harbour"]


def completion(step: int) -> Any:
    def text(probe: str, draw: str) -> str:
        i = int(probe[1:])
        head = f"The answer to {probe} is {WORDS[i % 6]}"
        if step <= 200:
            return f"{head} and {WORDS[(i + 1) % 6]} {WORDS[(i + 1) % 6]} {WORDS[(i + 1) % 6]}."
        if step == 300:
            return f"{head}, as the atlas says."
        return f"{head}, {WORDS[(i + 2) % 6]} verbatim from the training text."
    return text


def plant(stack: Stack, run: str, shift: float = 0.0) -> None:
    rng = np.random.default_rng(7)
    n = len(PROBES)
    level = rng.uniform(0.3, 0.5, n)
    lift = {100: 0.0, 200: 0.1, 300: 0.35, 400: 0.36, 500: 0.37, 600: 0.38}
    for k, step in enumerate(STEPS):
        write_checkpoint(stack.store, run, step, PROBES, {
            "reference.semscore": level + lift[step] + shift + rng.normal(0, 0.03, n),
            "repetition.loop": np.array([step <= 200 and i % 3 == 0 for i in range(n)]),
            "memorization.memorized": np.array([step >= 400 and i % 2 == 0 for i in range(n)]),
            "memorization.longest_span": np.where(step >= 400, 30.0, 4.0) + rng.integers(0, 5, n),
            "length.tokens": rng.integers(8, 20, n),
        }, completion=completion(step), set_level={"diversity.unique_ratio": 0.9 - 0.1 * k},
           loss=3.0 / (1 + k))
        stack.store.save_metrics(run, step, {
            "learning_rate": 1e-3 * (1 - k / 6), "total_flos": 1e12 * (k + 1), "epoch": k / 2,
            "num_input_tokens_seen": 4096.0 * (k + 1) * (2 if run == TWIN else 1),
        })


@pytest.fixture(scope="module")
def story(stack: Stack) -> str:
    plant(stack, STORY)
    plant(stack, TWIN, shift=-0.05)
    return STORY


def test_compare_page_highlights_the_diff_and_sorts(stack: Stack, story: str, page: Any) -> None:
    response = page.goto(f"{stack.url}/runs/{story}/compare?a=200&b=300")
    assert response is not None and response.status == 200
    # The metric deltas: step 300 is significantly better by reference similarity, and
    # loops less; the row says which side is better and is highlighted.
    sem = page.locator('#deltas tr[data-metric="reference.semscore"]')
    assert "significant" in (sem.get_attribute("class") or "")
    assert "better-b" in (sem.get_attribute("class") or "")
    assert "b better" in sem.inner_text()
    assert page.locator('#deltas tr[data-metric="repetition.loop"].better-b').count() == 1
    assert page.locator('#deltas tr[data-metric="length.tokens"].significant').count() == 0
    # Probe by probe: what a had and b dropped is struck, what b added is marked.
    row = page.locator('#pairs tr[data-probe="q01"]')
    assert "mountain mountain mountain." in "".join(row.locator("pre.side-a del").all_inner_texts())
    assert "as the atlas says." in "".join(row.locator("pre.side-b ins").all_inner_texts())
    assert row.locator("pre.side-a ins").count() == 0 and row.locator("pre.side-b del").count() == 0
    green = page.evaluate("""() => getComputedStyle(document.querySelector('#pairs pre.side-b ins')).backgroundColor""")
    assert green == "rgb(220, 252, 231)"
    screenshot(page, "compare")

    def deltas(metric: str) -> list[float]:
        cells = page.locator(f'#pairs td[data-scorer="{metric}"]')
        return [abs(float(c.get_attribute("data-delta") or 0)) for c in cells.all()]

    # Sorting: by the largest change of a metric, then the other way round.
    page.locator('#pairs thead a.sort', has_text="longest_span").click()
    page.wait_for_url("**sort=memorization.longest_span**")
    first = deltas("memorization.longest_span")
    assert first == sorted(first, reverse=True) and first[0] > first[-1]
    page.locator('#pairs thead a.sort.active').click()
    page.wait_for_url("**order=asc**")
    again = deltas("memorization.longest_span")
    assert again == sorted(again) and again[0] < first[0]
    # Another run with the same probes compares; the run page links lead here.
    page.goto(f"{stack.url}/runs/{story}/compare?a=300&b={TWIN}@300")
    assert page.locator("#compare-sides").inner_text().count("@300") == 2


def test_compare_page_says_why_it_cannot_compare(stack: Stack, story: str, seeded: dict[str, Any],
                                                  page: Any) -> None:
    response = page.goto(f"{stack.url}/runs/{story}/compare?a=300&b=web-run@30")
    assert response is not None and response.status == 422
    assert "not the same probe set" in page.locator("#compare-error").inner_text()
    page.console_errors.remove(
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)")


def test_run_page_tells_the_story_first(stack: Stack, story: str, page: Any) -> None:
    page.goto(f"{stack.url}/runs/{story}")
    page.wait_for_selector("#charts[data-rendered] canvas")
    box = page.locator("#best-checkpoint").inner_text()
    assert "Best checkpoint: step 300" in box
    assert "Lowest training loss: step 600" in box and "compare it with the best" in box
    assert "5 checkpoints disqualified by a gate" in box  # loops at 100, 200; recital from 400
    assert "Not measured in this run, so not in the score: judge.*, reference.chrf" in box
    assert page.locator('tr[data-step="300"].verdict-best .tag-best').count() == 1
    assert page.locator('tr[data-step="600"].verdict-disqualified').count() == 1
    charts = page.evaluate(
        """() => ({
            order: Array.from(document.querySelectorAll('#charts .chart')).map(c => c.dataset.family),
            signals: document.querySelector('[data-family="headline"]').dataset.signals,
            scales: window.judgeserveCharts.headline.series.map(s => s.scale),
            train: window.judgeserveCharts.train.series.map(s => [s.label, s.show]),
            axes: Object.fromEntries(Object.entries(window.judgeserveCharts).map(
                ([k, u]) => [k, u.axes.map(a => a.label)])),
        })"""
    )
    # The headline comes first: the loss, the quality score, the signals that matter.
    assert charts["order"][0] == "headline"
    assert charts["signals"].split(",") == [
        "quality score", "reference.semscore", "memorization.memorized", "repetition.loop",
        "diversity.unique_ratio"]
    assert len(set(charts["scales"][2:])) == 5 and "loss" in charts["scales"]  # a scale each
    # One unit per axis: memorization's shares and its token spans are two charts.
    assert "memorization" in charts["axes"] and "memorization · tokens" in charts["axes"]
    assert charts["axes"]["memorization"][1] == "memorization (0-1)"
    assert charts["axes"]["memorization · tokens"][1] == "memorization · tokens (tokens)"
    # The trainer's counters are there, hidden; the loss and learning rate are shown.
    shown = dict(charts["train"][1:])
    assert shown == {"train.loss": True, "train.epoch": False, "train.learning_rate": True,
                     "train.num_input_tokens_seen": False, "train.total_flos": False}
    screenshot(page, "run-headline")


def test_runs_overlaid_by_step_and_by_tokens(stack: Stack, story: str, page: Any) -> None:
    page.goto(f"{stack.url}/compare?runs={STORY},{TWIN}")
    page.wait_for_selector("#overlay[data-rendered] canvas")
    drawn = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.judgeserveOverlay).map(
            ([k, u]) => [k, {series: u.series.map(s => s.label), x: u.data[0]}]))"""
    )
    assert drawn["reference.semscore"]["series"] == ["step", STORY, TWIN]
    assert drawn["reference.semscore"]["x"] == list(STEPS)
    assert "train.total_flos" not in drawn and "train.loss" in drawn
    screenshot(page, "overlay")
    page.goto(f"{stack.url}/compare?runs={STORY},{TWIN}&x=tokens")
    page.wait_for_selector("#overlay[data-rendered] canvas")
    x = page.evaluate("() => window.judgeserveOverlay['reference.semscore'].data[0]")
    # The twin saw twice the tokens per step: its checkpoints interleave with the story's.
    assert x == sorted({4096 * (k + 1) for k in range(6)} | {8192 * (k + 1) for k in range(6)})
    response = page.goto(f"{stack.url}/compare?runs={STORY},nobody")
    assert response is not None and response.status == 404
    assert "No run named 'nobody'" in page.locator("#overlay-error").inner_text()
    page.console_errors.remove(
        "Failed to load resource: the server responded with a status of 404 (Not Found)")
