"""The store on SQLite and PostgreSQL: idempotent writes and the queries the API serves."""

from __future__ import annotations

import pytest

from judgeserve import read
from judgeserve.exceptions import StoreError
from judgeserve.schema import Aggregate, Alert, Sample, Score
from judgeserve.store import Store


def sample(i: int, step: int = 1) -> Sample:
    return Sample(run="st-run", step=step, id=f"s{i}", prompt="p", completion=f"c{i}", probe_id=f"p{i}")



def test_writes_are_idempotent(store: Store) -> None:
    for _ in range(2):  # the second pass is a re-delivery
        with store.begin() as conn:
            store.upsert_run(conn, "st-run", 1)
            store.save_samples(conn, [sample(0), sample(1)])
            store.save_scores(conn, "st-run", 1, "s0", [Score(scorer="x.flag", value=True), Score(scorer="x.n", value=2.5)])
    rows = read.step_samples(store, "st-run", 1)
    assert [r["id"] for r in rows] == ["s0", "s1"]
    assert rows[0]["scores"] == [
        {"scorer": "x.flag", "value": True, "details": {}, "version": "1"},
        {"scorer": "x.n", "value": 2.5, "details": {}, "version": "1"},
    ]
    assert store.step_score_values("st-run", 1) == {"x.flag": [1.0], "x.n": [2.5]}


def test_run_last_step_only_grows(store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "st-run", 50, ["helpfulness"])
        store.upsert_run(conn, "st-run", 10)
    run = read.get_run(store, "st-run")
    assert run is not None and run["last_step"] == 50 and run["rubrics"] == ["helpfulness"]


def test_aggregates_are_replaced_and_form_series(store: Store) -> None:
    for step, mean in ((1, 0.5), (2, 0.7), (2, 0.9)):
        with store.begin() as conn:
            store.upsert_run(conn, "st-run", step)
            store.save_aggregates(conn, "st-run", step, {"m": Aggregate(mean=mean, ci_low=0, ci_high=1, n=3)})
    store.save_metrics("st-run", 2, {"loss": 1.5})
    series = read.metric_series(store, "st-run")
    assert [(p["step"], p["mean"]) for p in series["m"]] == [(1, 0.5), (2, 0.9)]
    assert series["train.loss"] == [{"step": 2, "mean": 1.5, "ci_low": None, "ci_high": None, "n": 1}]


def test_alerts_resolve_once(store: Store) -> None:
    aid = store.add_alert(Alert(run="st-run", step=3, rule="r", message="m", evidence={"ids": ["s1"]}))
    assert aid is not None
    # A second open alert of the same rule (another worker, same moment) is not recorded.
    assert store.add_alert(Alert(run="st-run", step=4, rule="r", message="again")) is None
    assert [a.id for a in read.list_alerts(store, "st-run", "open")] == [aid]
    assert store.resolve_alert(aid) is True
    assert store.resolve_alert(aid) is False
    resolved = read.list_alerts(store, "st-run", "resolved")
    assert resolved[0].resolved_at is not None and resolved[0].evidence == {"ids": ["s1"]}
    assert store.add_alert(Alert(run="st-run", step=9, rule="r", message="fires again")) is not None


def test_pagination(store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "st-run", 1)
        store.save_samples(conn, [sample(i) for i in range(25)])
    assert read.count_step_samples(store, "st-run", 1) == 25
    pages = [read.step_samples(store, "st-run", 1, limit=10, offset=o) for o in (0, 10, 20)]
    ids = [r["id"] for page in pages for r in page]
    assert len(ids) == 25 and len(set(ids)) == 25


def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_previous_samples_are_each_probes_latest_earlier_step(store: Store) -> None:
    def s(sid: str, step: int, probe: str) -> Sample:
        return Sample(run="st-run", step=step, id=sid, prompt="p", completion=f"at {step}", probe_id=probe)

    with store.begin() as conn:
        store.save_samples(conn, [s("a1", 1, "pa"), s("b1", 1, "pb"), s("a2-z", 2, "pa"),
                                  s("a2-y", 2, "pa"), s("a5", 5, "pa"), s("c3", 3, "pc")])
    prev = read.previous_samples(store, "st-run", 5, ["pa", "pb", "pc", "nobody"])
    # The latest step before 5 (2, not 1; never 5 itself); of two draws there, the lower id.
    assert prev["pa"] == {"id": "a2-y", "step": 2, "checkpoint": None, "completion": "at 2"}
    assert prev["pb"]["id"] == "b1" and prev["pc"]["id"] == "c3" and "nobody" not in prev
    assert set(read.previous_samples(store, "st-run", 1, ["pa", "pb"])) == set()
    assert read.previous_samples(store, "st-run", 5, []) == {}
