"""Drift control's bookkeeping on SQLite and PostgreSQL: a new judge version is recorded
once however many workers see it, one worker re-scores its labelled items, a judge that
fails leaves the reason where the rubric page shows it and is tried again later.

The judge here is a plug-in scorer named ``judge`` (registered as a user's own would be)
that writes judge scores as the real one does and can be taken down; the toy judge's run
through the whole path is tests/judge/test_judge_drift.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.agreement import rubric_agreement
from judgeserve.app import create_app
from judgeserve.drift import DriftControl
from judgeserve.exceptions import ScorerError
from judgeserve.judge.version import JudgeVersion
from judgeserve.rescore import queue_rescore
from judgeserve.schema import Sample, Score
from judgeserve.scorers import Context, SampleScorer
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .judged import judge_details, seed_judged

RUN = "drift-run"


class FickleJudge(SampleScorer):
    """Scores ``judge.helpfulness.helpfulness`` by the completion's length, as the judge
    with prompt hash ``new`` would; raises while ``down``."""

    name = "judge"

    def __init__(self) -> None:
        self.down = False
        self.calls: list[list[str]] = []

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return self.score_in_context(samples, [Context()] * len(samples))

    def score_in_context(
        self, samples: Sequence[Sample], contexts: Sequence[Context]
    ) -> list[list[Score]]:
        if self.down:
            raise ScorerError("judge failed on rubric 'helpfulness': connection refused")
        self.calls.append([s.id for s in samples])
        return [
            [Score(scorer="judge.helpfulness.helpfulness", value=float(len(s.completion) % 5 + 1),
                   details=judge_details("new"))]
            for s in samples
        ]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def labelled(store: Store, n: int) -> list[str]:
    """``n`` samples judged by the old version (prompt hash ``ph-one``), all labelled."""
    ids = seed_judged(store, RUN, [1], n, lambda step, i: float(i % 5 + 1))
    store.save_labels([
        {"run": RUN, "sample_id": sid, "rubric": "helpfulness", "criterion": "helpfulness",
         "value": i % 5 + 1, "labeller": "ann"}
        for i, sid in enumerate(ids)
    ])
    return ids


def new_scores(step: int) -> list[tuple[str, int, Score]]:
    return [(RUN, step, Score(scorer="judge.helpfulness.helpfulness", value=3.0,
                              details=judge_details("new")))]


def test_a_new_version_is_recorded_once_and_rescored_by_one_worker(
    settings: Settings, store: Store
) -> None:
    ids = labelled(store, 7)
    settings = settings.model_copy(update={"drift_rescore_batch": 3})
    judges = [FickleJudge(), FickleJudge()]
    workers = [DriftControl(store, [j], settings, f"w{i}") for i, j in enumerate(judges)]
    new = JudgeVersion.of(judge_details("new")).key  # type: ignore[union-attr]
    # Both workers' judges give the new version; the store adds it once.
    assert workers[0].observe(new_scores(2)) == [("judge.helpfulness.helpfulness", new)]
    assert workers[1].observe(new_scores(2)) == []
    assert workers[0].observe(new_scores(3)) == []  # known: no query at all
    # One of them takes the re-scoring; the other finds it taken.
    assert workers[0].work() == 3
    assert workers[1].work() == 0
    (row,) = read.rubric_versions(store, "helpfulness")
    assert (row["rescore_state"], row["rescore_by"], row["rescored"], row["rescore_total"]) == (
        "running", "w0", 3, 7
    )
    assert (row["first_run"], row["first_step"]) == (RUN, 2)
    while workers[0].work():
        pass
    (row,) = read.rubric_versions(store, "helpfulness")
    assert (row["rescore_state"], row["rescored"]) == ("done", 7)
    # Three at a time, each labelled item once, and nothing when asked again.
    assert [len(c) for c in judges[0].calls] == [3, 3, 1] and judges[1].calls == []
    assert sorted(i for c in judges[0].calls for i in c) == sorted(ids)
    again = read.labelled_verdicts(store, "helpfulness")
    assert sorted(v["sample_id"] for v in again) == sorted(ids)
    assert all(JudgeVersion.of(v["details"]).key == new for v in again)  # type: ignore[union-attr]


def test_a_failed_rescoring_says_why_and_is_tried_again(settings: Settings, store: Store) -> None:
    labelled(store, 4)
    settings = settings.model_copy(update={"drift_stale_s": 2.0, "rubric_dir": settings.data_dir})
    judge = FickleJudge()
    drift = DriftControl(store, [judge], settings, "w0")
    drift.observe(new_scores(2))
    judge.down = True
    assert drift.work() == 0
    failed_at = time.monotonic()
    (row,) = read.rubric_versions(store, "helpfulness")
    assert row["rescore_state"] == "failed"
    assert "ScorerError: judge failed on rubric 'helpfulness': connection refused" in row["rescore_reason"]
    # The judge is back, but a failed re-scoring waits drift_stale_s before it is tried again.
    judge.down = False
    drift._next_look = 0.0
    assert drift.work() == 0 and judge.calls == []
    with TestClient(create_app(settings, store=store)) as client:
        page = client.get("/rubrics/helpfulness").text
    assert re.search(r'data-state="failed" data-rescored="0">.*connection refused', page, re.S)
    time.sleep(max(0.0, failed_at + 2.1 - time.monotonic()))
    drift._next_look = 0.0
    assert drift.work() == 4
    (row,) = read.rubric_versions(store, "helpfulness")
    assert (row["rescore_state"], row["rescored"], row["rescore_reason"]) == ("done", 4, None)


def test_rescore_keeps_the_replaced_verdicts_of_labelled_items(
    settings: Settings, store: Store
) -> None:
    """`judgeserve rescore --scorer judge` replaces a run's judge scores with the new judge's;
    the old judge's verdicts on labelled items stay, so both versions' agreement is known."""
    ids = labelled(store, 3)
    old = JudgeVersion.of(judge_details("ph-one")).key  # type: ignore[union-attr]
    new = JudgeVersion.of(judge_details("new")).key  # type: ignore[union-attr]
    with store.begin() as conn:  # one unlabelled sample, judged too
        store.save_samples(conn, [Sample(run=RUN, step=1, id="free", prompt="q", completion="a")])
        store.save_scores(conn, RUN, 1, "free", [Score(
            scorer="judge.helpfulness.helpfulness", value=2.0, details=judge_details("ph-one"))])
    worker = Worker(settings, store=store, scorers=[FickleJudge()], hooks=())
    try:
        job = queue_rescore(store, worker.queue, RUN, scorers=["judge"])
        assert job.queued == 4
        worker.run(idle_exit_s=1.0)
    finally:
        worker.close()
    now = {r["id"]: r for r in read.step_samples(store, RUN, 1)}
    assert {JudgeVersion.of(r["scores"][0]["details"]).key for r in now.values()} == {new}  # type: ignore[union-attr]
    kept = read.labelled_verdicts(store, "helpfulness")
    by = {(v["sample_id"], JudgeVersion.of(v["details"]).key) for v in kept}  # type: ignore[union-attr]
    assert {(sid, old) for sid in ids} <= by and ("free", old) not in by
    # The rubric's agreement: both versions, on the same three labelled items.
    rows = read.labels_with_verdicts(store, "helpfulness")
    agreement = rubric_agreement(rows, [], {"helpfulness": [1, 2, 3, 4, 5]}, kept)
    versions = {v["version"]["key"]: v["n"] for v in agreement["criteria"]["helpfulness"]["versions"]}
    assert versions == {old: 3, new: 3}


def test_overlaid_runs_draw_a_line_per_judge_version() -> None:
    """/compare?runs=a,b: a run whose judge changed is two lines there too."""
    from judgeserve.web.charts import overlay_payload

    def point(step: int, mean: float, version: str | None) -> dict[str, object]:
        return {"step": step, "mean": mean, "ci_low": None, "ci_high": None, "n": 6,
                "judge_version": version}

    runs = {
        "a": {"judge.r.c": [point(1, 2.0, "k-old"), point(2, 2.0, "k-old"), point(3, 4.0, "k-new")]},
        "b": {"judge.r.c": [point(1, 3.0, "k-old"), point(2, 3.0, "k-old")]},
    }
    (metric,) = overlay_payload(runs)["metrics"]
    lines = [(s["label"], s["version"], s["x"], s["mean"]) for s in metric["series"]]
    assert lines == [
        ("a · judge k-old", 0, [1.0, 2.0], [2.0, 2.0]),
        ("a · judge k-new", 1, [3.0], [4.0]),
        ("b", 0, [1.0, 2.0], [3.0, 3.0]),
    ]


def test_comparing_checkpoints_judged_by_two_versions_says_so(settings: Settings, store: Store) -> None:
    from judgeserve.ranking import default_quality

    seed_judged(store, RUN, [1], 4, lambda step, i: 2.0)
    seed_judged(store, RUN, [2, 3], 4, lambda step, i: 4.0, prompt_hash="ph-two")
    worker = Worker(settings, store=store, scorers=[], hooks=())
    try:
        for step in (1, 2, 3):
            worker.update_checkpoint(RUN, step)
    finally:
        worker.close()
    old = JudgeVersion.of(judge_details("ph-one")).key  # type: ignore[union-attr]
    new = JudgeVersion.of(judge_details("ph-two")).key  # type: ignore[union-attr]
    metric = "judge.helpfulness.helpfulness"
    across = read.compare_checkpoints(
        store, read.parse_checkpoint("1", RUN), read.parse_checkpoint("2", RUN), default_quality()
    )
    assert across["judge_versions"][metric] == {"a": [old], "b": [new], "same": False}
    within = read.compare_checkpoints(
        store, read.parse_checkpoint("2", RUN), read.parse_checkpoint("3", RUN), default_quality()
    )
    assert within["judge_versions"][metric] == {"a": [new], "b": [new], "same": True}
    with TestClient(create_app(settings, store=store)) as client:
        page = client.get(f"/runs/{RUN}/compare?a=1&b=2").text
        assert 'id="judge-changed"' in page and f"<code>{metric}</code>" in page
        assert 'id="judge-changed"' not in client.get(f"/runs/{RUN}/compare?a=2&b=3").text


def test_rescoring_off_records_the_version_as_off(settings: Settings, store: Store) -> None:
    labelled(store, 2)
    judge = FickleJudge()
    drift = DriftControl(store, [judge], settings.model_copy(update={"drift_rescore_max": 0}), "w0")
    assert drift.observe(new_scores(2))
    assert drift.work() == 0 and judge.calls == []
    (row,) = read.rubric_versions(store, "helpfulness")
    assert row["rescore_state"] == "off"


def test_a_split_chart_keeps_steps_aggregated_before_versions_were_kept() -> None:
    from judgeserve.web.charts import split_judge_versions

    def pts(steps: list[int]) -> list[dict[str, object]]:
        return [{"step": s, "mean": 1.0, "ci_low": None, "ci_high": None, "n": 2} for s in steps]

    def version(key: str, steps: list[int], first: bool) -> dict[str, object]:
        return {"key": key, "label": key, "first_step": steps[0], "first": first, "steps": steps,
                "mean": [1.0] * len(steps), "ci_low": [None] * len(steps),
                "ci_high": [None] * len(steps), "n": [2] * len(steps), "main": [True] * len(steps)}

    series = {"judge.r.c": pts([1, 2, 3, 4]), "length.tokens": pts([1, 2, 3, 4])}
    judge = {"judge.r.c": {"split": True, "versions": [version("aaaa", [3], True), version("bbbb", [4], False)]}}
    out, changes = split_judge_versions(series, judge)
    assert {k: [p["step"] for p in v] for k, v in out.items()} == {
        "judge.r.c": [1, 2], "judge.r.c · judge aaaa": [3], "judge.r.c · judge bbbb": [4],
        "length.tokens": [1, 2, 3, 4],
    }
    assert [(c["step"], c["key"]) for c in changes] == [(4, "bbbb")]
