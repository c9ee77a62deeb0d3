"""Drift control's part of the store, on SQLite and PostgreSQL: judge versions as first
seen, the claiming of a version's re-scoring (one worker at a time), verdicts kept when
scores are replaced, judge aggregates per version. Straight to the store, no judge model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from judgeserve.judge.version import JudgeVersion
from judgeserve.schema import Sample, Score
from judgeserve.store import (
    Store,
    judge_aggregates,
    judge_verdicts,
    judge_versions,
    plain,
)
from tests.test_store_writes import rows_of


def version_row(scorer: str, key: str, run: str = "r1", step: int = 3) -> dict[str, Any]:
    rubric, criterion = scorer.split(".")[1:3]
    return {
        "scorer": scorer, "key": key, "rubric": rubric, "criterion": criterion,
        "model": f"model-{key}", "backend": "transformers", "prompt_hash": f"ph-{key}",
        "rubric_version": "2", "first_run": run, "first_step": step,
    }


def details(model: str, **more: Any) -> dict[str, Any]:
    """A judge score's details, naming its judge version."""
    return {"judge_model": model, "judge_backend": "vllm", "prompt_hash": "abc",
            "rubric_version": "1", **more}


def key_of(model: str) -> str:
    version = JudgeVersion.of(details(model))
    assert version is not None
    return version.key


def sample(run: str, sid: str, step: int = 1, completion: str | None = None) -> Sample:
    return Sample(run=run, step=step, id=sid, prompt=f"p-{sid}",
                  completion=completion or f"c-{sid}", probe_id=f"probe-{sid}")


def label(run: str, sid: str, rubric: str = "help", criterion: str = "overall",
          labeller: str = "ann", baseline: str | None = None, value: float = 1.0) -> dict[str, Any]:
    return {"run": run, "sample_id": sid, "rubric": rubric, "criterion": criterion,
            "labeller": labeller, "value": value, "baseline_id": baseline}


def age(store: Store, scorer: str, key: str, seconds: float, state: str | None = None) -> None:
    """Make a version's row look last touched ``seconds`` ago (a worker gone quiet)."""
    values: dict[str, Any] = {"updated": datetime.now(UTC) - timedelta(seconds=seconds)}
    if state is not None:
        values["rescore_state"] = state
    with store.begin() as conn:
        conn.execute(
            update(judge_versions)
            .where(judge_versions.c.scorer == scorer, judge_versions.c.key == key)
            .values(**values)
        )


def version(store: Store, scorer: str, key: str) -> dict[str, Any]:
    found = [r for r in rows_of(store, judge_versions, "scorer", "key")
             if (r["scorer"], r["key"]) == (scorer, key)]
    assert len(found) == 1
    return found[0]


# -- judge versions --------------------------------------------------------------------------


def test_record_judge_versions_adds_each_version_once(store: Store) -> None:
    before = datetime.now(UTC)
    with store.begin() as conn:
        added = store.record_judge_versions(
            conn, [version_row("judge.help.overall", "k1"), version_row("judge.help.tone", "k1")]
        )
    assert added == [("judge.help.overall", "k1"), ("judge.help.tone", "k1")]
    # Another worker sees k1 again and a new k2 at the same time: only k2 is its to add.
    with store.begin() as conn:
        again = store.record_judge_versions(
            conn,
            [version_row("judge.help.overall", "k1", run="other", step=9),
             version_row("judge.help.overall", "k2", run="r2", step=7)],
            "off",
        )
    assert again == [("judge.help.overall", "k2")]
    got = rows_of(store, judge_versions, "scorer", "key")
    assert [(r["scorer"], r["key"], r["rescore_state"]) for r in got] == [
        ("judge.help.overall", "k1", "pending"),
        ("judge.help.overall", "k2", "off"),
        ("judge.help.tone", "k1", "pending"),
    ]
    first = got[0]
    # The first sighting stays: the second worker's run and step replace nothing.
    assert {k: first[k] for k in version_row("judge.help.overall", "k1")} == version_row(
        "judge.help.overall", "k1"
    )
    assert got[1]["first_run"] == "r2" and got[1]["first_step"] == 7
    for r in got:
        assert r["rescored"] == 0 and r["rescore_by"] is None and r["rescore_total"] is None
        assert r["rescore_reason"] is None
        assert before <= r["first_seen"] <= datetime.now(UTC)
        assert r["updated"] == r["first_seen"]
    with store.begin() as conn:
        assert store.record_judge_versions(conn, []) == []
        with pytest.raises(AssertionError):
            store.record_judge_versions(conn, [version_row("judge.help.x", "k9")], "bogus")


def test_judge_versions_seen_are_of_the_named_scorers_only(store: Store) -> None:
    with store.begin() as conn:
        store.record_judge_versions(conn, [version_row("judge.help.overall", "k1"),
                                           version_row("judge.help.overall", "k2"),
                                           version_row("judge.safe.overall", "k1")])
    seen = store.judge_versions_seen(iter(["judge.help.overall", "judge.help.overall"]))
    stored = {(r["scorer"], r["key"]): r["first_seen"]
              for r in rows_of(store, judge_versions, "scorer", "key")}
    assert set(seen) == {("judge.help.overall", "k1"), ("judge.help.overall", "k2")}
    for k, t in seen.items():
        assert plain({"first_seen": t})["first_seen"] == stored[k]
    both = store.judge_versions_seen(["judge.safe.overall", "judge.help.overall", "judge.none"])
    assert set(both) == set(stored)
    assert store.judge_versions_seen([]) == {}


# -- claiming a version's re-scoring ---------------------------------------------------------


def test_only_one_worker_rescores_a_version_until_it_goes_quiet(store: Store) -> None:
    s = "judge.help.overall"
    with store.begin() as conn:
        store.record_judge_versions(conn, [version_row(s, "k1"), version_row(s, "k2"),
                                           version_row("judge.help.tone", "k1")])
    before = datetime.now(UTC)
    row = store.claim_rescore(s, "k1", "w1", stale_s=60)
    assert row is not None
    assert (row["scorer"], row["key"], row["rescore_state"], row["rescore_by"]) == (s, "k1", "running", "w1")
    assert row["model"] == "model-k1" and row["rescored"] == 0
    assert plain(row)["updated"] >= before
    # w2 does not get it while w1 works; w1 asking again keeps it.
    assert store.claim_rescore(s, "k1", "w2", stale_s=60) is None
    again = store.claim_rescore(s, "k1", "w1", stale_s=60)
    assert again is not None and again["rescore_by"] == "w1"
    # The claim touched that version only: the same key of another scorer, another key.
    assert version(store, s, "k2")["rescore_state"] == "pending"
    assert version(store, "judge.help.tone", "k1")["rescore_state"] == "pending"
    assert version(store, s, "k2")["rescore_by"] is None
    # w1 fell quiet for less than the stale time: still its own.
    age(store, s, "k1", 20)
    assert store.claim_rescore(s, "k1", "w2", stale_s=60) is None
    # ... for longer: w2 takes it over, and w1 (back) does not take it back.
    age(store, s, "k1", 120)
    taken = store.claim_rescore(s, "k1", "w2", stale_s=60)
    assert taken is not None and taken["rescore_by"] == "w2" and taken["rescore_state"] == "running"
    assert store.claim_rescore(s, "k1", "w1", stale_s=60) is None
    assert version(store, s, "k1")["rescore_by"] == "w2"
    assert store.claim_rescore(s, "nope", "w1", stale_s=60) is None
    assert store.claim_rescore("judge.other.x", "k1", "w1", stale_s=60) is None


def test_failed_versions_are_retried_late_finished_ones_never(store: Store) -> None:
    s = "judge.help.overall"
    with store.begin() as conn:
        store.record_judge_versions(conn, [version_row(s, k) for k in ("done", "failed", "off")])
    for key in ("done", "failed", "off"):
        age(store, s, key, 10, state=key)
    assert store.claim_rescore(s, "failed", "w1", stale_s=60) is None  # failed just now
    age(store, s, "failed", 300)
    retried = store.claim_rescore(s, "failed", "w1", stale_s=60)
    assert retried is not None and retried["rescore_state"] == "running"
    for key in ("done", "off"):
        age(store, s, key, 3600)
        assert store.claim_rescore(s, key, "w1", stale_s=60) is None
        assert store.rescore_state(s, key) == key


def test_rescore_progress_and_state_of_one_version(store: Store) -> None:
    s = "judge.help.overall"
    with store.begin() as conn:
        store.record_judge_versions(conn, [version_row(s, "k1"), version_row(s, "k2"),
                                           version_row("judge.help.tone", "k1")])
    assert store.rescore_state(s, "k1") == "pending"
    assert store.rescore_state(s, "missing") is None
    assert store.rescore_state("judge.none.x", "k1") is None
    age(store, s, "k1", 600)
    before = datetime.now(UTC)
    store.rescore_progress(s, "k1", rescored=4, total=10)
    row = version(store, s, "k1")
    assert (row["rescored"], row["rescore_total"], row["rescore_state"], row["rescore_reason"]) == (
        4, 10, "running", None)
    assert row["updated"] >= before
    store.rescore_progress(s, "k1", rescored=6, total=10, state="failed", reason="judge gone")
    row = version(store, s, "k1")
    assert (row["rescored"], row["rescore_total"], row["rescore_state"], row["rescore_reason"]) == (
        6, 10, "failed", "judge gone")
    assert store.rescore_state(s, "k1") == "failed"
    # A later success says no reason any more.
    store.rescore_progress(s, "k1", rescored=10, total=10, state="done")
    assert version(store, s, "k1")["rescore_reason"] is None
    assert store.rescore_state(s, "k1") == "done"
    for other in (version(store, s, "k2"), version(store, "judge.help.tone", "k1")):
        assert (other["rescored"], other["rescore_total"], other["rescore_state"]) == (0, None, "pending")
    assert store.rescore_state(s, "k2") == "pending"
    with pytest.raises(AssertionError):
        store.rescore_progress(s, "k1", rescored=1, total=1, state="bogus")


# -- labelled items and their verdicts -------------------------------------------------------


def test_labelled_for_rescore_one_row_per_sample_oldest_label_first(store: Store) -> None:
    with store.begin() as conn:
        store.save_samples(conn, [sample("r1", "a"), sample("r1", "b"), sample("r1", "base1"),
                                  sample("r2", "a", step=4), sample("r2", "base1", completion="r2 base"),
                                  sample("r1", "other")])
    store.save_labels([label("r1", "b", baseline="base1")])
    store.save_labels([label("r2", "a"), label("r1", "b", criterion="tone", baseline="base1")])
    store.save_labels([label("r1", "a", labeller="x"), label("r1", "a", labeller="y"),
                       label("r1", "other", rubric="safety"),
                       label("r1", "ghost")])  # a label of a sample the store never got
    got = store.labelled_for_rescore("help", 10)
    assert [(r["run"], r["id"]) for r in got] == [("r1", "b"), ("r2", "a"), ("r1", "a")]
    b, r2a, a = got
    assert b["baseline_id"] == "base1" and b["baseline"] == "c-base1"  # r1's, not r2's
    assert r2a["baseline_id"] is None and r2a["baseline"] is None
    assert (r2a["step"], r2a["prompt"], r2a["completion"], r2a["probe_id"]) == (4, "p-a", "c-a", "probe-a")
    assert a["baseline"] is None
    assert [(r["run"], r["id"]) for r in store.labelled_for_rescore("help", 2)] == [("r1", "b"), ("r2", "a")]
    assert [r["id"] for r in store.labelled_for_rescore("safety", 10)] == ["other"]
    assert store.labelled_for_rescore("none", 10) == []


def test_labelled_for_rescore_baseline_of_the_samples_run(store: Store) -> None:
    with store.begin() as conn:
        store.save_samples(conn, [sample("r1", "a"), sample("r2", "base1")])
    store.save_labels([label("r1", "a", baseline="base1")])
    (row,) = store.labelled_for_rescore("help", 5)
    assert row["baseline_id"] == "base1" and row["baseline"] is None


def judge_scores(store: Store) -> None:
    """Judge and other scores of labelled and unlabelled samples in two runs."""
    with store.begin() as conn:
        store.save_samples(conn, [sample(r, i) for r in ("r1", "r2") for i in ("s1", "s2")])
        store.save_batch_scores(conn, [
            ("r1", 1, "s1", [Score(scorer="judge.help.overall", value=0.25, details=details("m1")),
                             Score(scorer="judge.help.tone", value=None, details=details("m1")),
                             Score(scorer="judge.help.old", value=1.0, details={"reason": "x"}),
                             Score(scorer="length.tokens", value=12, details=details("m1"))]),
            ("r1", 1, "s2", [Score(scorer="judge.help.overall", value=0.5, details=details("m1"))]),
            ("r2", 1, "s1", [Score(scorer="judge.help.overall", value=0.75, details=details("m2"))]),
            ("r2", 1, "s2", [Score(scorer="judge.help.overall", value=1.0, details=details("m2"))]),
        ])
    # Labelled: r1/s1, r2/s2, and r2/s1 (whose score is not among the items below).
    store.save_labels([label("r1", "s1"), label("r2", "s2"), label("r2", "s1")])


def test_replaced_judge_scores_of_labelled_items_are_kept(store: Store) -> None:
    judge_scores(store)
    # r1/s2 is not labelled; r2/s1 is, but is not being replaced.
    with store.begin() as conn:
        kept = store.keep_replaced_verdicts(conn, [("r1", "s1"), ("r1", "s2"), ("r2", "s2")])
    assert kept == 3
    got = rows_of(store, judge_verdicts, "run", "sample_id", "scorer")
    assert [(r["run"], r["sample_id"], r["scorer"], r["version"], r["value"]) for r in got] == [
        ("r1", "s1", "judge.help.overall", key_of("m1"), 0.25),
        ("r1", "s1", "judge.help.tone", key_of("m1"), None),
        ("r2", "s2", "judge.help.overall", key_of("m2"), 1.0),
    ]
    assert got[0]["details"] == details("m1") and got[2]["details"] == details("m2")
    assert all(r["created"] is not None for r in got)
    # Kept again (a retried rescore): nothing doubles.
    with store.begin() as conn:
        assert store.keep_replaced_verdicts(conn, [("r2", "s2")]) == 1
        assert store.keep_replaced_verdicts(conn, []) == 0
        assert store.keep_replaced_verdicts(conn, [("r1", "s2")]) == 0
    assert len(rows_of(store, judge_verdicts, "run")) == 3


def test_rescore_replaces_scores_and_keeps_the_old_verdict(store: Store) -> None:
    judge_scores(store)
    new = details("m3")
    with store.begin() as conn:
        store.save_batch_scores(
            conn,
            [("r1", 1, "s1", [Score(scorer="judge.help.overall", value=0.9, details=new, version="2"),
                              Score(scorer="length.tokens", value=float("inf"))]),
             ("r1", 1, "s2", [Score(scorer="judge.help.overall", value=True, details=new)])],
            replace=True,
        )
    assert [(r["sample_id"], r["version"], r["value"]) for r in rows_of(
        store, judge_verdicts, "run", "sample_id", "scorer") if r["scorer"] == "judge.help.overall"] == [
        ("s1", key_of("m1"), 0.25)]  # s2 was not labelled
    have = store.verdicts_of([("r1", "s1"), ("r1", "s2")], "judge.help.")
    # scores: m3 (new), tone's m1, the unversioned one; kept: overall's and tone's m1.
    assert sorted(d.get("judge_model", "-") for d in have[("r1", "s1")]) == ["-", "m1", "m1", "m1", "m3"]
    assert [d["judge_model"] for d in have[("r1", "s2")]] == ["m3"]
    with store.begin() as conn:
        from judgeserve.store import scores
        now = {(r["sample_id"], r["scorer"]): r for r in conn.execute(
            select(scores).where(scores.c.run == "r1")).mappings()}
    assert (now[("s1", "judge.help.overall")]["value"], now[("s1", "judge.help.overall")]["version"]) == (0.9, "2")
    assert now[("s1", "judge.help.overall")]["details"] == new
    assert now[("s1", "length.tokens")]["value"] is None  # not finite: no value
    assert now[("s2", "judge.help.overall")]["value"] == 1.0 and now[("s2", "judge.help.overall")]["is_bool"]
    # Without replace, a re-delivered score changes nothing.
    with store.begin() as conn:
        store.save_batch_scores(conn, [("r1", 1, "s1", [Score(scorer="judge.help.overall", value=0.1, details=new)])])
    assert store.step_score_ids("r1", 1, "judge.help.overall") == [("s1", 0.9), ("s2", True)]


def test_verdicts_of_the_rubric_in_scores_and_kept_verdicts(store: Store) -> None:
    judge_scores(store)
    store.save_verdicts([
        {"run": "r1", "sample_id": "s1", "scorer": "judge.help.overall", "version": "old",
         "value": 0.0, "details": details("m0")},
        {"run": "r2", "sample_id": "s2", "scorer": "judge.help_x.overall", "version": "old",
         "value": 0.0, "details": details("underscore")},
    ])
    store.save_verdicts([])
    have = store.verdicts_of([("r1", "s1"), ("r2", "s2")], "judge.help.")
    assert set(have) == {("r1", "s1"), ("r2", "s2")}  # not r1/s2 nor r2/s1
    assert sorted(d.get("judge_model", "-") for d in have[("r1", "s1")]) == ["-", "m0", "m1", "m1"]
    # LIKE reads '_' as any character: judge.help_x. is not judge.help.'s.
    assert [d["judge_model"] for d in have[("r2", "s2")]] == ["m2"]
    only = store.verdicts_of([("r2", "s2")], "judge.help_")
    assert [d["judge_model"] for d in only[("r2", "s2")]] == ["underscore"]
    assert store.verdicts_of([], "judge.") == {}
    assert store.verdicts_of([("r1", "s1")], "judge.safe.") == {}


def test_save_verdicts_keeps_the_first_of_an_item_and_version(store: Store) -> None:
    row = {"run": "r1", "sample_id": "s1", "scorer": "judge.help.overall", "version": "v1",
           "value": 0.5, "details": {"a": 1}}
    store.save_verdicts([row])
    store.save_verdicts([{**row, "value": 0.9}, {**row, "version": "v2", "value": None}])
    got = rows_of(store, judge_verdicts, "version")
    assert [(r["version"], r["value"], r["details"]) for r in got] == [
        ("v1", 0.5, {"a": 1}), ("v2", None, {"a": 1})]


# -- the worker's reads and judge aggregates ---------------------------------------------------


def test_step_judge_values_are_the_steps_judge_scores(store: Store) -> None:
    with store.begin() as conn:
        store.save_batch_scores(conn, [
            ("r1", 2, "a", [Score(scorer="judge.help.overall", value=True, details=details("m1")),
                            Score(scorer="judge.help.tone", value=None, details=details("m1")),
                            Score(scorer="judgement.x", value=0.5),
                            Score(scorer="length.tokens", value=3)]),
            ("r1", 2, "b", [Score(scorer="judge.help.overall", value=0.5, details={"k": 2})]),
            ("r1", 3, "c", [Score(scorer="judge.help.overall", value=0.1)]),
            ("r2", 2, "a", [Score(scorer="judge.help.overall", value=0.2)]),
        ])
    got = sorted(store.step_judge_values("r1", 2), key=lambda t: t[1])
    assert got == [("judge.help.overall", 0.5, {"k": 2}), ("judge.help.overall", 1.0, details("m1"))]
    assert all(type(v) is float for _, v, _ in got)
    assert list(store.step_judge_values("r1", 4)) == []


def test_judge_aggregates_per_version_keep_the_fuller_one(store: Store) -> None:
    def agg(version: str, mean: float, n: int, main: bool = True) -> dict[str, Any]:
        return {"metric": "judge.help.overall", "version": version, "mean": mean,
                "ci_low": mean / 2, "ci_high": mean * 2, "n": n, "main": main}

    def read() -> list[tuple[Any, ...]]:
        return [(r["run"], r["step"], r["metric"], r["version"], r["mean"], r["ci_low"],
                 r["ci_high"], r["n"], r["main"])
                for r in rows_of(store, judge_aggregates, "run", "step", "metric", "version")]

    with store.begin() as conn:
        store.save_judge_aggregates(conn, "r1", 2, [agg("k1", 0.5, 4), agg("k2", 0.25, 2, False)])
        store.save_judge_aggregates(conn, "r1", 3, [agg("k1", 0.75, 1)])
        store.save_judge_aggregates(conn, "r2", 2, [{**agg("k1", 0.125, 8), "metric": "judge.help.tone"}])
        store.save_judge_aggregates(conn, "r1", 2, [])
    first = rows_of(store, judge_aggregates, "run", "step", "version")[0]["updated"]
    assert read() == [
        ("r1", 2, "judge.help.overall", "k1", 0.5, 0.25, 1.0, 4, True),
        ("r1", 2, "judge.help.overall", "k2", 0.25, 0.125, 0.5, 2, False),
        ("r1", 3, "judge.help.overall", "k1", 0.75, 0.375, 1.5, 1, True),
        ("r2", 2, "judge.help.tone", "k1", 0.125, 0.0625, 0.25, 8, True),
    ]
    # A recompute over fewer samples replaces nothing; as many or more replaces every value.
    with store.begin() as conn:
        store.save_judge_aggregates(conn, "r1", 2, [agg("k1", 0.0, 3, False)])
    assert read()[0] == ("r1", 2, "judge.help.overall", "k1", 0.5, 0.25, 1.0, 4, True)
    with store.begin() as conn:
        store.save_judge_aggregates(conn, "r1", 2, [agg("k1", 1.0, 4, False), agg("k2", 0.5, 5, True)])
    assert read()[:2] == [
        ("r1", 2, "judge.help.overall", "k1", 1.0, 0.5, 2.0, 4, False),
        ("r1", 2, "judge.help.overall", "k2", 0.5, 0.25, 1.0, 5, True),
    ]
    assert rows_of(store, judge_aggregates, "run", "step", "version")[0]["updated"] > first
    assert read()[2:] == [
        ("r1", 3, "judge.help.overall", "k1", 0.75, 0.375, 1.5, 1, True),
        ("r2", 2, "judge.help.tone", "k1", 0.125, 0.0625, 0.25, 8, True),
    ]
