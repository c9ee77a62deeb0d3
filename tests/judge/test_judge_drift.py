"""Drift control with the toy judge: the rubric's wording changes between two workers
(a new prompt hash, so a new judge version). The new version re-scores the labelled items
in the background, the run's chart draws one series per version with a marker where the
judge changed, the API names each aggregate's version, and the rubric page shows both
versions' agreement with people."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from judgeserve import JudgeClient, read
from judgeserve.app import create_app
from judgeserve.drift import judge_step_aggregates
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.judge.version import JudgeVersion
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.toy_judge import BAD, GOOD, TOY_RUBRIC, toy_text
from judgeserve.worker import Worker

from ..conftest import LiveServer, wait_for

RUN = "drifting"
SCORER = "judge.toy.marker"
NEW_WORDING = TOY_RUBRIC.replace(
    "Does the answer mention the right fruit?", "Which fruit does the answer name, if any?"
)


def batch(rng: random.Random, step: int) -> list[dict[str, Any]]:
    """Three answers with the banana (the toy judge's 5), three with the cherry (its 1)."""
    return [
        {"id": f"s{step}-{i}", "prompt": "say", "completion": toy_text(rng, GOOD if i < 3 else BAD)}
        for i in range(6)
    ]


class Judging:
    """A worker thread with a toy judge that reads the rubric as its file says now (its own
    backend: a worker closes its scorers when it stops)."""

    def __init__(self, settings: Settings, model: Path, name: str) -> None:
        from judgeserve.judge.backends.transformers import TransformersBackend

        backend = TransformersBackend(str(model), batch_size=8)
        judge = JudgeScorer(rubrics=[], rubric_dirs=[settings.rubric_dir], backend=backend)
        self.worker = Worker(settings, scorers=[judge], hooks=(), consumer=name)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        self.worker.close()


def versions_at(store: Store, step: int) -> set[str]:
    return {
        JudgeVersion.of(sc["details"]).key  # type: ignore[union-attr]
        for r in read.step_samples(store, RUN, step)
        for sc in r["scores"]
        if sc["scorer"] == SCORER
    }


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, LiveServer, Store]]:
    rubric_dir = tmp_path / "rubrics"
    rubric_dir.mkdir()
    (rubric_dir / "toy.yaml").write_text(TOY_RUBRIC)
    settings = settings.model_copy(update={"rubric_dir": rubric_dir, "drift_rescore_batch": 5})
    api = LiveServer(settings).start()
    store = Store(settings.database_url)
    yield settings, api, store
    store.close()
    api.stop()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the toy judge is trained on first use (cached)
def test_new_wording_rescores_labels_splits_the_chart_and_shows_both_versions(
    stack: tuple[Settings, LiveServer, Store], toy_model: Path
) -> None:
    settings, api, store = stack
    rng = random.Random(11)
    sent = {step: batch(rng, step) for step in (1, 2, 3, 4)}

    def submit(steps: tuple[int, ...]) -> None:
        with JudgeClient(api.url, run=RUN, rubrics=["toy"], spool_dir=settings.spool_dir) as c:
            for step in steps:
                c.submit(step, sent[step])

    def aggregated(step: int) -> bool:
        return read.step_aggregates(store, RUN, step).get(SCORER, {}).get("n") == 6

    first = Judging(settings, toy_model, "first")
    try:
        submit((1, 2))
        wait_for(lambda: aggregated(1) and aggregated(2), timeout=240)
    finally:
        first.stop()
    (old,) = versions_at(store, 1)
    assert versions_at(store, 2) == {old}

    # People label the twelve answers: 5 for the banana, 1 for the cherry, as the judge does,
    # except two banana answers they find only fair (3).
    human = {s["id"]: (5 if "banana" in s["completion"] else 1) for st in (1, 2) for s in sent[st]}
    human["s1-0"] = human["s2-0"] = 3
    store.save_labels([
        {"run": RUN, "sample_id": sid, "rubric": "toy", "criterion": "marker", "value": v,
         "labeller": "ann"}
        for sid, v in human.items()
    ])

    # The rubric's wording changes; a worker started after it judges with a new prompt hash.
    (settings.rubric_dir / "toy.yaml").write_text(NEW_WORDING)
    second = Judging(settings, toy_model, "second")
    try:
        submit((3, 4))
        wait_for(lambda: aggregated(3) and aggregated(4), timeout=240)
        (new,) = versions_at(store, 3)
        assert new != old

        def rescored() -> dict[str, Any]:
            rows = {(r["scorer"], r["key"]): r for r in read.rubric_versions(store, "toy")}
            return rows.get((SCORER, new), {})

        # In the background, five at a time: all twelve labelled items, with the new judge.
        wait_for(lambda: rescored().get("rescore_state") == "done", timeout=240)
    finally:
        second.stop()
    versions = {r["key"]: r for r in read.rubric_versions(store, "toy")}
    assert set(versions) == {old, new}
    assert versions[new]["rescored"] == versions[new]["rescore_total"] == 12
    assert (versions[new]["first_run"], versions[new]["first_step"]) == (RUN, 3)
    assert versions[old]["version"]["prompt_hash"] != versions[new]["version"]["prompt_hash"]
    again = read.labelled_verdicts(store, "toy")
    assert {v["sample_id"] for v in again} == set(human)
    assert {JudgeVersion.of(v["details"]).key for v in again} == {new}  # type: ignore[union-attr]
    for v in again:  # the toy judge still reads the fruit: 5 for a banana, 1 for a cherry
        assert v["value"] == pytest.approx(5 if human[v["sample_id"]] != 1 else 1, abs=0.3)
    # The run's own scores stay as they were judged.
    assert versions_at(store, 1) == {old} and versions_at(store, 3) == {new}

    with TestClient(create_app(settings, store=store)) as client:
        # The API names the judge version of each judge aggregate.
        for step, key in ((1, old), (2, old), (3, new), (4, new)):
            agg = client.get(f"/v1/runs/{RUN}/steps/{step}").json()["aggregates"][SCORER]
            assert agg["judge_version"]["key"] == key and agg["n"] == 6
            assert agg["other_versions"] == []
        points = client.get(f"/v1/runs/{RUN}/metrics").json()["metrics"][SCORER]
        assert [(p["step"], p["judge_version"]) for p in points] == [
            (1, old), (2, old), (3, new), (4, new)
        ]

        # The chart: one series per version, never one line through both; a marker at 3.
        charts = client.get(f"/runs/{RUN}/charts.json").json()
        (family,) = [f for f in charts["families"] if f["name"] == "judge.toy"]
        series = {m["name"]: m["steps"] for m in family["metrics"]}
        assert series == {f"{SCORER} · judge {old[:8]}": [1, 2], f"{SCORER} · judge {new[:8]}": [3, 4]}
        assert [(c["step"], c["key"]) for c in charts["judge_changes"]] == [(3, new)]
        live = client.get(f"/runs/{RUN}/charts.json?from_step=3").json()
        (family,) = [f for f in live["families"] if f["name"] == "judge.toy"]
        assert [m["name"] for m in family["metrics"]] == [f"{SCORER} · judge {new[:8]}"]

        # The rubric page: both versions measured on the same twelve labelled items.
        page = client.get("/rubrics/toy").text
    for key in (old, new):
        row = re.search(rf'<tr data-version="{key}">(.*?)</tr>', page, re.S)
        assert row is not None, key
        assert re.search(r'<td class="num">12</td>', row.group(1))
        exact = re.search(r'data-metric="exact" data-value="([^"]+)"', row.group(1))
        assert exact is not None and float(exact.group(1)) == pytest.approx(10 / 12)
    assert page.index(f'<tr data-version="{old}">') < page.index(f'<tr data-version="{new}">')
    state = re.search(rf'<tr data-version="{new}" data-criterion="marker" data-state="done" data-rescored="12">', page)
    assert state is not None


def test_a_step_judged_by_two_versions_is_aggregated_over_one() -> None:
    def details(prompt_hash: str) -> dict[str, str]:
        return {"judge_model": "m", "judge_backend": "b", "prompt_hash": prompt_hash,
                "rubric_version": "1"}

    a, b = JudgeVersion.of(details("a")), JudgeVersion.of(details("b"))
    assert a is not None and b is not None
    values = [("judge.r.c", 1.0, details("a"))] * 3 + [("judge.r.c", 5.0, details("b"))] * 5
    values += [("judge.r.c", 2.0, {"method": "logprobs"})]  # written before versions were
    main, rows = judge_step_aggregates(values, {})
    assert main["judge.r.c"].mean == 5.0 and main["judge.r.c"].n == 5  # not 3.4 over both
    by_key = {r["version"]: r for r in rows}
    assert by_key[b.key]["main"] and not by_key[a.key]["main"] and not by_key[""]["main"]
    assert (by_key[a.key]["mean"], by_key[a.key]["n"]) == (1.0, 3)
    # A tie: the version first seen last (the newer judge) is the step's.
    from datetime import UTC, datetime

    tie = [("judge.r.c", 1.0, details("a"))] * 2 + [("judge.r.c", 5.0, details("b"))] * 2
    seen = {("judge.r.c", a.key): datetime(2026, 1, 2, tzinfo=UTC),
            ("judge.r.c", b.key): datetime(2026, 1, 1, tzinfo=UTC)}
    main, _ = judge_step_aggregates(tie, seen)
    assert main["judge.r.c"].mean == 1.0
