"""A scorer that cannot run says so: the step endpoint and the run page name every scorer
that did not score a step's samples, and why (no index, no reference, judge not
configured, disabled, failing), through the real worker, store and app."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.detectors.length import LengthScorer
from judgeserve.detectors.reference import ReferenceScorer
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.schema import Sample, Score
from judgeserve.scorers import Context, SampleScorer, SetResult, SetScorer
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import run_cli

TRAINING = (
    "The lighthouse keeper of Marrow Point wrote every evening in a leather book about the "
    "ships that passed, the colour of the sea, the number of gulls on the rocks, and the "
    "letters he never sent to his sister who lived in the city beyond the hills."
)


@pytest.fixture
def user_settings(settings: Settings, tmp_path: Path) -> Settings:
    """``settings`` with the index folder at its default, as a user who set nothing has it."""
    fields = settings.model_dump(exclude={"index_dir"})
    s = Settings(**fields)
    assert s.index_dir == (tmp_path / "data" / "indexes") and s.index_dir.is_absolute()
    return s


@pytest.fixture
def api(user_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(user_settings)) as client:
        yield client


def send(api: TestClient, run: str, step: int, samples: list[dict[str, Any]], **kw: Any) -> None:
    r = api.post(f"/v1/runs/{run}/samples", json={"step": step, "samples": samples, **kw})
    assert r.status_code == 202, r.text


def samples(step: int, n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    texts = [TRAINING, "A short note on tomatoes: stake them and water them in summer.",
             "Copper kettles were hammered by hand in the old town square."]
    return [{"id": f"s{step}-{i}", "prompt": f"q{i}", "completion": texts[i % 3], **extra}
            for i in range(n)]


def status(api: TestClient, run: str, step: int) -> dict[str, dict[str, Any]]:
    body = api.get(f"/v1/runs/{run}/steps/{step}").json()
    return {s["scorer"]: s for s in body["scorers"]}


def page_text(api: TestClient, path: str) -> str:
    html = api.get(path).text
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).replace("&#39;", "'")


def test_a_run_without_an_index_says_memorization_is_not_checked_until_one_is_built(
    user_settings: Settings, api: TestClient, make_worker: Any, tmp_path: Path
) -> None:
    settings = user_settings.model_copy(update={"disabled_scorers": ["diversity", "reference_lc"]})
    worker: Worker = make_worker(settings=settings, hooks=())  # the registered scorers
    send(api, "no-index", 1, samples(1))
    worker.run(idle_exit_s=0.3)

    got = status(api, "no-index", 1)
    mem = got["memorization"]
    assert mem["state"] == "not run" and mem["scored"] == 0 and mem["samples"] == 3
    assert mem["summary"].startswith("memorization: not checked — no index for run no-index")
    assert str(settings.index_dir / "no-index") in mem["summary"]  # where it looked
    assert got["reference"]["summary"] == "reference: not checked — no reference on these samples"
    assert got["judge"]["summary"].startswith("judge: not checked — judge not configured")
    assert got["diversity"]["not_scored"] == [
        {"kind": "disabled", "samples": 3,
         "reason": "disabled in this worker's settings (JUDGESERVE_DISABLED_SCORERS)"}]
    assert got["length"] == {"scorer": "length", "state": "ran", "samples": 3, "scored": 3,
                             "not_scored": [], "summary": "length: ran on all 3 samples"}
    text = page_text(api, "/runs/no-index")
    assert "memorization: not checked — no index for run no-index" in text
    assert "reference: not checked — no reference on these samples" in text
    assert "memorization: not checked — no index for run no-index" in page_text(
        api, "/runs/no-index/steps/1")

    # The index is built the way a user does it: the CLI in another folder, with only the
    # data directory in common (no JUDGESERVE_INDEX_DIR): it lands where the worker looks.
    data = tmp_path / "train.txt"
    data.write_text(TRAINING)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JUDGESERVE_INDEX_DIR"}
    built = run_cli_in(elsewhere, env | {"JUDGESERVE_DATA_DIR": str(settings.data_dir)},
                       "index", "build", str(data), "--run", "no-index", "--min-span", "20")
    assert built.returncode == 0, built.stderr
    assert f"wrote {settings.index_dir / 'no-index'}" in built.stdout
    assert not (elsewhere / "judgeserve-indexes").exists()

    send(api, "no-index", 2, samples(2))
    worker.run(idle_exit_s=0.3)
    assert status(api, "no-index", 2)["memorization"]["state"] == "ran"
    memorized = {s["id"]: {x["scorer"]: x["value"] for x in s["scores"]}
                 for s in api.get("/v1/runs/no-index/steps/2").json()["samples"]}
    assert memorized["s2-0"]["memorization.memorized"] is True
    text = page_text(api, "/runs/no-index")
    assert "Scorers at step 2" in text and "memorization: not checked" not in text
    assert status(api, "no-index", 1)["memorization"]["state"] == "not run"  # still honest

    # Step 1 rescored for memorization (what `judgeserve rescore` queues: the stored
    # samples, for the named scorers only): the old reason is not shown any more.
    worker.queue.add([{**s, "run": "no-index", "step": 1, "only": ["memorization"]}
                      for s in samples(1)])
    worker.run(idle_exit_s=0.3)
    mem = status(api, "no-index", 1)["memorization"]
    assert mem["state"] == "ran" and mem["scored"] == 3 and mem["not_scored"] == []


def run_cli_in(cwd: Path, env: dict[str, str], *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "judgeserve.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


class Picky(SampleScorer):
    """A plug-in that scores only some samples, says why for the others, and fails on one."""

    name = "picky"

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        return None if sample.tags.get("lang") == "en" else "only scores English samples"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        if any("boom" in s.completion for s in samples):
            raise ValueError("cannot parse 'boom'")
        return [[Score(scorer="picky.ok", value=1.0)] for _ in samples]


def test_a_plugin_says_why_it_skips_and_a_failure_is_shown_with_its_error(
    settings: Settings, make_worker: Any
) -> None:
    worker: Worker = make_worker(scorers=[Picky(), LengthScorer()], hooks=())
    batch = [
        {"id": f"e{i}", "prompt": "p", "completion": "fine", "tags": {"lang": "en"}}
        for i in range(4)
    ] + [
        {"id": "fr", "prompt": "p", "completion": "bien", "tags": {"lang": "fr"}},
        {"id": "bad", "prompt": "p", "completion": "boom", "tags": {"lang": "en"}},
    ]
    worker.queue.add([{**s, "run": "picky-run", "step": 5} for s in batch])
    worker.run(idle_exit_s=0.3)
    store = worker.store
    [picky] = [s for s in read.step_scorer_status(store, "picky-run", 5) if s["scorer"] == "picky"]
    assert picky["state"] == "partial" and (picky["scored"], picky["samples"]) == (4, 6)
    assert sorted((m["kind"], m["reason"], m["samples"]) for m in picky["not_scored"]) == [
        ("failed", "ValueError: cannot parse 'boom'", 1),
        ("skipped", "only scores English samples", 1),
    ]
    assert picky["summary"].startswith("picky: ran on 4 of 6 samples; 1 ")
    assert "failed — ValueError: cannot parse 'boom'" in picky["summary"]


def test_set_scorers_and_the_judge_say_why(settings: Settings, make_worker: Any) -> None:
    from judgeserve.detectors.diversity import DiversityScorer
    from judgeserve.detectors.length_control import LengthControlScorer

    judge = JudgeScorer(["helpfulness"], settings=settings)  # its judge is Ray Serve: no URL set
    worker: Worker = make_worker(
        scorers=[judge, ReferenceScorer(semantic=False), DiversityScorer(), LengthControlScorer()],
        hooks=(),
    )
    worker.queue.add([{"id": "only", "prompt": "p", "completion": "c", "reference": "r",
                       "run": "set-run", "step": 1}])
    worker.run(idle_exit_s=0.3)
    got = {s["scorer"]: s for s in read.step_scorer_status(worker.store, "set-run", 1)}
    assert got["diversity"]["summary"] == "diversity: not checked — needs 2 samples, the step has 1"
    assert got["reference_lc"]["summary"] == (
        "reference_lc: not checked — needs 8 samples with a reference, the step has 1")
    assert got["judge"]["summary"] == (
        "judge: not checked — judge not configured: rubric 'helpfulness' uses the 'serve' judge "
        "and no endpoint is set (JUDGESERVE_JUDGE_URL or the rubric's judge.url)")
    assert got["reference"]["state"] == "ran"

    # Once the step has enough samples the set scorer runs, and its old reason is gone.
    worker.queue.add([{"id": "two", "prompt": "q", "completion": "d", "run": "set-run", "step": 1}])
    worker.run(idle_exit_s=0.3)
    got = {s["scorer"]: s for s in read.step_scorer_status(worker.store, "set-run", 1)}
    assert got["diversity"]["state"] == "ran" and got["diversity"]["scored"] == 2
    assert got["reference"]["summary"] == (
        "reference: ran on 1 of 2 samples; 1 not checked — no reference on these samples")


def test_the_judge_names_the_rubric_it_could_not_apply(settings: Settings) -> None:
    judge = JudgeScorer(["conciseness", "factual_correctness", "nope"], settings=settings,
                        judge_url="http://127.0.0.1:9/judge")
    s = Sample(run="r", step=1, id="x", prompt="p", completion="c")
    why = judge.skip_reason(s, Context())
    assert why is not None
    assert "rubric 'factual_correctness' needs a reference and these samples have none" in why
    assert "rubric 'nope' skipped:" in why
    # conciseness is pairwise (and samples a quarter): either reason, never silence
    assert "rubric 'conciseness'" in why
    assert judge.skip_reason(s.model_copy(update={"reference": "r"}), Context()) is None


def test_the_server_logs_which_runs_have_an_index(
    user_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from judgeserve.detectors.memorization import build_index, run_index_dir

    with caplog.at_level("INFO", logger="judgeserve.app"), TestClient(create_app(user_settings)):
        pass
    assert f"no memorization index in {user_settings.index_dir}" in caplog.text
    data = tmp_path / "t.txt"
    data.write_text(TRAINING)
    for run in ("run-b", "run-a"):
        build_index([data], run_index_dir(run, user_settings.index_dir), min_span=20,
                    progress=False)
    caplog.clear()
    with caplog.at_level("INFO", logger="judgeserve.app"), TestClient(create_app(user_settings)):
        pass
    assert f"memorization indexes in {user_settings.index_dir} for runs: run-a, run-b" in caplog.text


def test_index_build_prints_skipped_lines(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "' + TRAINING + '"}\n{"body": "no text"}\n{"text": 3}\n')
    r = run_cli("index", "build", str(data), "--run", "skips", "--min-span", "20",
                env={"JUDGESERVE_INDEX_DIR": str(tmp_path / "idx")})
    assert r.returncode == 0, r.stderr
    assert "skipped 2 JSONL line(s) without a string 'text' field" in r.stdout
    assert f"wrote {tmp_path / 'idx' / 'skips'}" in r.stdout


def test_the_status_survives_a_store_on_postgresql(database_url: str, settings: Settings) -> None:
    store = Store(database_url)
    try:
        with store.begin() as conn:
            store.save_samples(conn, [Sample(run="pg", step=3, id=f"i{i}", prompt="p",
                                             completion="c") for i in range(4)])
            store.save_batch_scores(conn, [("pg", 3, "i0", [Score(scorer="memorization.memorized",
                                                                  value=False)])])
            key = ("pg", 3, "memorization", "skipped", "no index for run pg")
            store.save_scorer_status(conn, {key: 3})
            store.save_scorer_status(conn, {key: 2})  # counted twice (a redelivery)
        [mem] = read.step_scorer_status(store, "pg", 3)
        # 3 + 2 recorded, but only 3 samples lack a score: the count is capped there.
        assert mem["not_scored"] == [{"kind": "skipped", "reason": "no index for run pg",
                                      "samples": 3}]
        assert mem["summary"] == "memorization: ran on 1 of 4 samples; 3 not checked — no index for run pg"
    finally:
        store.drop()
        store.close()


class Fragile(SetScorer):
    """Scores a step of two samples; fails once a third arrives."""

    name = "fragile"

    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        if len(samples) > 2:
            raise RuntimeError("out of memory")
        return SetResult(metrics={"fragile.x": 1.0})


def test_a_set_scorer_failing_after_it_ran_shows_the_failure(make_worker: Any) -> None:
    worker: Worker = make_worker(scorers=[Fragile()], hooks=())
    row = {"prompt": "p", "completion": "c", "run": "frag", "step": 1}
    worker.queue.add([{**row, "id": "a"}, {**row, "id": "b"}])
    worker.run(idle_exit_s=0.3)
    [st] = read.step_scorer_status(worker.store, "frag", 1)
    assert (st["state"], st["scored"]) == ("ran", 2)
    worker.queue.add([{**row, "id": "c"}])
    worker.run(idle_exit_s=0.3)
    [st] = read.step_scorer_status(worker.store, "frag", 1)
    # The metric of two samples is still stored, but the step's last recompute failed.
    assert "fragile.x" in read.step_aggregates(worker.store, "frag", 1)
    assert st["summary"] == "fragile: failed — RuntimeError: out of memory"


def test_a_batch_the_store_refuses_counts_each_stored_sample_once(
    settings: Settings, make_worker: Any
) -> None:
    """The store refuses one sample, so the worker stores the batch again one sample at a
    time: each stored sample's reasons are counted once, the refused one's not at all (the
    read caps at the samples unscored, so the table itself is checked)."""
    from sqlalchemy import select

    from judgeserve.exceptions import StoreError
    from judgeserve.store import scorer_status

    class Refusing(Store):
        def save_samples(self, conn: Any, items: Any) -> None:
            if any(s.completion == "POISON" for s in items):
                raise StoreError("database refused the write: DataError: value too long")
            super().save_samples(conn, items)

    store = Refusing(settings.database_url)
    try:
        worker: Worker = make_worker(store=store, scorers=[Picky(), LengthScorer()], hooks=())
        batch = [{"id": f"f{i}", "prompt": "p", "completion": "bien", "tags": {"lang": "fr"}}
                 for i in range(5)]
        batch.insert(2, {"id": "poison", "prompt": "p", "completion": "POISON",
                         "tags": {"lang": "fr"}})
        worker.queue.add([{**s, "run": "refused-run", "step": 2} for s in batch])
        worker.run(idle_exit_s=0.3)
        assert len(worker.queue.deadletters()) == 1
        with store.begin() as conn:
            got = conn.execute(
                select(scorer_status.c.kind, scorer_status.c.reason, scorer_status.c.n)
                .where(scorer_status.c.run == "refused-run", scorer_status.c.scorer == "picky")
            ).all()
        assert [tuple(r) for r in got] == [("skipped", "only scores English samples", 5)]
    finally:
        store.close()
