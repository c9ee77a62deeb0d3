"""Labelling in Debian's Chromium with the keyboard only, then agreement on the rubric page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sklearn.metrics import cohen_kappa_score

from judgeserve import read
from judgeserve.agreement import nearest_level
from judgeserve.judge.version import JudgeVersion

from ..judged import seed_judged
from .conftest import Stack, screenshot

RUN = "label-run"
N = 24
LEVELS = [1, 2, 3, 4, 5]


def judge_value(i: int) -> float:
    return (i % 5) + 1 + (0.2 if i % 3 else -0.2) * (i % 5 not in (0, 4))


def shifted(level: int) -> int:
    return level + 2 if level <= 3 else level - 2


def shown(page: Any) -> str:
    return str(page.locator("#item").get_attribute("data-sample"))


def press(page: Any, key: str) -> None:
    """One key, and the next page it leads to."""
    with page.expect_navigation():
        page.keyboard.press(key)


@pytest.mark.slow
def test_label_twenty_items_with_the_keyboard_then_agreement(stack: Stack, page: Any) -> None:
    ids = seed_judged(stack.store, RUN, [10], N, lambda step, i: judge_value(i),
                      mass=lambda step, i: 0.5 + i / (2 * N))
    level = {sid: nearest_level(judge_value(i), LEVELS) for i, sid in enumerate(ids)}
    page.goto(f"{stack.url}/rubrics/helpfulness/label?labeller=ann")
    assert page.locator("#waiting").inner_text().startswith(f"{N} judged items waiting")

    answers: dict[str, int] = {}
    # A skip (s) leaves the item for later; it does not come back in this session.
    skipped = shown(page)
    press(page, "s")
    assert shown(page) != skipped
    while len(answers) < 20:
        sid = shown(page)
        assert sid != skipped and sid not in answers
        # People agree with the judge on every other item, and are 2 levels off on the rest.
        answer = level[sid] if len(answers) % 2 == 0 else shifted(level[sid])
        press(page, str(answer))
        assert page.locator("#saved").inner_text().startswith(f"Saved {answer} for {sid}")
        answers[sid] = answer
        if len(answers) == 5:
            # u takes the last label back and shows its item again; it is labelled anew.
            press(page, "u")
            assert shown(page) == sid and "took back the label" in page.locator("#note").inner_text()
            assert len(read.labels_with_verdicts(stack.store, "helpfulness")) == 4
            press(page, str(answer))
        if len(answers) == 12:
            screenshot(page, "label")
    stored = {r["sample_id"]: int(r["value"]) for r in read.labels_with_verdicts(stack.store, "helpfulness")}
    assert stored == answers

    page.goto(f"{stack.url}/rubrics/helpfulness")
    version = JudgeVersion("toy-judge", "transformers", "ph-one", "1").key
    row = page.locator(f'tr[data-version="{version}"]')
    exact = row.locator('td[data-metric="exact"]')
    assert float(exact.get_attribute("data-value")) == pytest.approx(0.5)
    low, high = float(exact.get_attribute("data-ci-low")), float(exact.get_attribute("data-ci-high"))
    assert 0.2 <= low < 0.5 < high <= 0.8  # binomial, n = 20: about ±0.22
    assert re.fullmatch(r"0\.5 \[0\.\d+, 0\.\d+\]", exact.inner_text())  # the CI is on the page
    judged = [level[s] for s in answers]
    kappa = float(row.locator('td[data-metric="kappa_quadratic"]').get_attribute("data-value"))
    assert kappa == pytest.approx(
        cohen_kappa_score(judged, list(answers.values()), weights="quadratic", labels=LEVELS),
        abs=1e-9,
    )
    assert "20 labels on 20 items by 1 labeller" in page.locator("#label-count").inner_text()
    screenshot(page, "rubric-agreement")


@pytest.mark.slow
def test_the_chart_draws_each_judge_version_apart_with_a_marker(stack: Stack, page: Any) -> None:
    """The rubric's wording changed at step 30: the run page draws the old judge's scores
    and the new judge's as two series, with a marker at 30, never one line through both."""
    run = "drift-web"
    seed_judged(stack.store, run, [10, 20], 6, lambda step, i: 2.0)
    seed_judged(stack.store, run, [30, 40], 6, lambda step, i: 4.0, prompt_hash="ph-two")
    for step in (10, 20, 30, 40):
        stack.worker.update_checkpoint(run, step)
    old = JudgeVersion("toy-judge", "transformers", "ph-one", "1").key
    new = JudgeVersion("toy-judge", "transformers", "ph-two", "1").key
    page.goto(f"{stack.url}/runs/{run}")
    page.wait_for_selector("#charts[data-rendered]")
    card = page.locator('[data-family="judge.helpfulness"]')
    names = str(card.get_attribute("data-series")).split("|")
    assert sorted(names) == sorted(f"judge.helpfulness.helpfulness · judge {k[:8]}" for k in (old, new))
    assert card.get_attribute("data-judge-changes") == "30"
    assert page.locator('[data-family="headline"]').get_attribute("data-judge-changes") == "30"
    # Each series holds its own version's steps only: 2.0 at 10 and 20, 4.0 at 30 and 40.
    drawn = page.evaluate(
        """() => { const u = window.judgeserveCharts["judge.helpfulness"];
                   return u.series.map((s, i) => [s.label, u.data[i]]); }"""
    )
    by_label = {label: values for label, values in drawn}
    assert by_label["step"] == [10, 20, 30, 40]
    assert by_label[f"judge.helpfulness.helpfulness · judge {old[:8]}"] == [2.0, 2.0, None, None]
    assert by_label[f"judge.helpfulness.helpfulness · judge {new[:8]}"] == [None, None, 4.0, 4.0]
    screenshot(page, "judge-versions")
