"""The store's writes read back, on SQLite and PostgreSQL: metrics and summaries (non-finite
values named), flags, checkpoint jobs, run ownership, tokens, reports, scorer status; and
how the store opens and names database errors."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from judgeserve.exceptions import StoreError, StoreUnavailable
from judgeserve.schema import Aggregate, Alert, Sample, Score
from judgeserve.scorers import Flag
from judgeserve.store import (
    SQLITE_BUSY_S,
    Store,
    aggregates,
    calibration_reports,
    checkpoint_jobs,
    checkpoints,
    flags,
    judge_costs,
    labels,
    nonfinite_name,
    plain,
    probe_sets,
    run_metrics,
    run_summary,
    runs,
    scorer_status,
    store_error,
    tokens,
    tune_reports,
)
from judgeserve.store import scores as scores_table


def rows_of(store: Store, table: Table, *order: str) -> list[dict[str, Any]]:
    q = select(table).order_by(*(table.c[k] for k in order))
    with store.begin() as conn:
        return [plain(r) for r in conn.execute(q).mappings()]


def run_row(store: Store, name: str) -> dict[str, Any] | None:
    found = [r for r in rows_of(store, runs, "name") if r["name"] == name]
    return found[0] if found else None


# -- errors and the engine ---------------------------------------------------------------------


def test_nonfinite_values_are_named() -> None:
    assert nonfinite_name(None) == "nan"
    assert nonfinite_name(float("nan")) == "nan"
    assert nonfinite_name(math.inf) == "inf"
    assert nonfinite_name(-math.inf) == "-inf"
    for finite in (0.0, -0.0, 1.5, -2.0, 1e308):
        assert nonfinite_name(finite) is None


def test_store_error_says_whether_to_try_again() -> None:
    down = store_error(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert type(down) is StoreUnavailable
    assert str(down).startswith("database unavailable: ") and "connection refused" in str(down)
    refused = store_error(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert type(refused) is StoreError
    assert str(refused).startswith("database refused the write: IntegrityError: ")
    assert "duplicate key" in str(refused)
    odd = store_error(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert type(odd) is StoreError
    assert str(odd).startswith("database refused the write: UnicodeEncodeError: ")


def test_sqlite_store_waits_for_writers_and_serves_threads(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(SQLITE_BUSY_S * 1000)
        # The API's threads share the pool's connections.
        errors: list[BaseException] = []

        def use() -> None:
            try:
                store.add_token("tthread", "p", "n", "h")
            except BaseException as e:  # reported below, in the test thread
                errors.append(e)

        t = threading.Thread(target=use)
        t.start()
        t.join(10)
        assert errors == [] and [r["id"] for r in rows_of(store, tokens, "id")] == ["tthread"]
    finally:
        store.close()


def test_a_server_store_checks_its_connections(database_url: str) -> None:
    store = Store(database_url)
    try:
        # A restarted server's dead connections are replaced; a SQLite file has none to check.
        assert store.engine.pool._pre_ping is (store.dialect == "postgresql")
        assert store.dialect == database_url.split(":")[0].split("+")[0]
        with store.begin() as conn:
            assert conn.execute(select(runs.c.name)).all() == []  # tables made at open
    finally:
        store.close()


def test_a_url_no_driver_can_open_is_named() -> None:
    with pytest.raises(StoreError, match=r"^cannot open database 'nosuch://x/y': ") as e:
        Store("nosuch://x/y")
    assert not isinstance(e.value, StoreUnavailable)


def test_store_not_created_until_asked(sqlite_url: str) -> None:
    bare = Store(sqlite_url, create=False)
    try:
        with pytest.raises(StoreError) as e:
            bare.claim_run("r", "p")
        assert "no such table" in str(e.value)
        bare.create()
        assert bare.claim_run("r", "p") == "p"
    finally:
        bare.close()


def test_a_refused_write_is_a_store_error(store: Store) -> None:
    store.add_token("t1", "proj", "ci", "h" * 64)
    with pytest.raises(StoreError) as e:
        store.add_token("t1", "proj", "again", "x")
    assert not isinstance(e.value, StoreUnavailable)
    assert "IntegrityError" in str(e.value)


# -- runs, tokens, reports -----------------------------------------------------------------------


def test_the_first_project_to_claim_a_run_owns_it(store: Store) -> None:
    assert store.claim_run("r1", "alpha") == "alpha"
    assert store.claim_run("r1", "beta") == "alpha"
    assert store.claim_run("r2", "beta") == "beta"
    r1 = run_row(store, "r1")
    assert r1 is not None and r1["project"] == "alpha" and r1["last_step"] == 0
    assert r1["created"] is not None and r1["updated"] is not None
    # A run made before ownership (no project) stays without one.
    with store.begin() as conn:
        store.upsert_run(conn, "old", 5)
    assert store.claim_run("old", "beta") is None
    old = run_row(store, "old")
    assert old is not None and old["project"] is None and old["last_step"] == 5


def test_upsert_run_keeps_the_largest_step_and_given_rubrics(store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "r", 10, ["a"])
    first = run_row(store, "r")
    assert first is not None and first["rubrics"] == ["a"] and first["last_step"] == 10
    with store.begin() as conn:
        store.upsert_run(conn, "r", 20)
        store.upsert_run(conn, "other", 1, ["z"])
    later = run_row(store, "r")
    assert later is not None and later["rubrics"] == ["a"] and later["last_step"] == 20
    assert later["created"] == first["created"] and later["updated"] > first["updated"]
    with store.begin() as conn:
        store.upsert_run(conn, "r", 15, ["b"])
    last = run_row(store, "r")
    assert last is not None and last["rubrics"] == ["b"] and last["last_step"] == 20


def test_tokens_are_kept_hashed_and_revoked_once(store: Store) -> None:
    before = datetime.now(UTC)
    store.add_token("tok1", "proj", "laptop", "a" * 64)
    store.add_token("tok2", "proj2", "ci", "b" * 64)
    got = rows_of(store, tokens, "id")
    assert [(r["id"], r["project"], r["name"], r["hash"], r["revoked"]) for r in got] == [
        ("tok1", "proj", "laptop", "a" * 64, False), ("tok2", "proj2", "ci", "b" * 64, False)]
    assert all(before <= r["created"] <= datetime.now(UTC) for r in got)
    assert store.revoke_token("tok1") is True
    assert store.revoke_token("nope") is False
    assert [r["revoked"] for r in rows_of(store, tokens, "id")] == [True, False]


def test_tune_and_calibration_reports_are_kept_whole(store: Store) -> None:
    report = {"rubric": "help", "rubric_version": 3, "before": {"kappa": 0.25},
              "after": {"kappa": 0.5}, "items": [1, 2]}
    store.save_tune_report(report)
    store.save_tune_report({**report, "rubric": "safety", "rubric_version": "v2"})
    store.save_calibration({"rubric": "help", "rubric_version": 1, "agreement": 0.75})
    got = rows_of(store, tune_reports, "id")
    assert [(r["rubric"], r["rubric_version"]) for r in got] == [("help", "3"), ("safety", "v2")]
    assert got[0]["report"] == report and got[1]["report"]["rubric"] == "safety"
    assert all(r["created"] is not None for r in got)
    (cal,) = rows_of(store, calibration_reports, "id")
    assert (cal["rubric"], cal["rubric_version"], cal["report"]) == (
        "help", "1", {"rubric": "help", "rubric_version": 1, "agreement": 0.75})


# -- metrics, summaries, flags ----------------------------------------------------------------


def test_metrics_keep_nonfinite_values_by_name(store: Store) -> None:
    store.save_metrics("r", 7, {"loss": 1.5, "grad": float("nan"), "up": math.inf,
                                "down": -math.inf, "gone": None})
    got = {r["name"]: (r["step"], r["value"], r["nonfinite"]) for r in rows_of(store, run_metrics, "name")}
    assert got == {"loss": (7, 1.5, None), "grad": (7, None, "nan"), "up": (7, None, "inf"),
                   "down": (7, None, "-inf"), "gone": (7, None, "nan")}
    run = run_row(store, "r")
    assert run is not None and run["last_step"] == 7
    # Sent again, a value replaces the old one both ways; another step is its own row.
    store.save_metrics("r", 7, {"loss": math.inf, "grad": 0.25})
    store.save_metrics("r", 3, {"loss": 9.0})
    got2 = {(r["step"], r["name"]): (r["value"], r["nonfinite"]) for r in rows_of(store, run_metrics, "name")}
    assert got2[(7, "loss")] == (None, "inf") and got2[(7, "grad")] == (0.25, None)
    assert got2[(3, "loss")] == (9.0, None) and got2[(7, "up")] == (None, "inf")
    run = run_row(store, "r")
    assert run is not None and run["last_step"] == 7


def test_summary_replaces_each_name_and_keeps_nonfinite(store: Store) -> None:
    with store.begin() as conn:
        store.upsert_run(conn, "r", 40)
    store.save_summary("r", {"train_runtime": 12.5, "total_flos": math.inf, "final": None})
    store.save_summary("new", {"x": -math.inf})
    got = {(r["run"], r["name"]): (r["value"], r["nonfinite"]) for r in rows_of(store, run_summary, "run", "name")}
    assert got == {("r", "train_runtime"): (12.5, None), ("r", "total_flos"): (None, "inf"),
                   ("r", "final"): (None, "nan"), ("new", "x"): (None, "-inf")}
    first = {r["name"]: r["updated"] for r in rows_of(store, run_summary, "name") if r["run"] == "r"}
    store.save_summary("r", {"train_runtime": float("nan"), "total_flos": 3.0})
    again = {r["name"]: r for r in rows_of(store, run_summary, "name") if r["run"] == "r"}
    assert (again["train_runtime"]["value"], again["train_runtime"]["nonfinite"]) == (None, "nan")
    assert (again["total_flos"]["value"], again["total_flos"]["nonfinite"]) == (3.0, None)
    assert again["total_flos"]["updated"] > first["total_flos"]
    assert again["final"]["updated"] == first["final"]
    r, new = run_row(store, "r"), run_row(store, "new")
    assert r is not None and r["last_step"] == 40  # a summary moves no step
    assert new is not None and new["last_step"] == 0


def test_flags_of_a_step_are_replaced_as_a_whole(store: Store) -> None:
    with store.begin() as conn:
        store.save_flags(conn, "r", 1, [Flag("diversity.collapse", "critical", "same answers", {"n": 3}),
                                        Flag("length.short")])
        store.save_flags(conn, "r", 2, [Flag("length.short", message="short")])
        store.save_flags(conn, "other", 1, [Flag("length.short")])
    got = rows_of(store, flags, "run", "step", "name")
    assert [(r["run"], r["step"], r["name"], r["severity"], r["message"], r["details"]) for r in got] == [
        ("other", 1, "length.short", "warning", "", {}),
        ("r", 1, "diversity.collapse", "critical", "same answers", {"n": 3}),
        ("r", 1, "length.short", "warning", "", {}),
        ("r", 2, "length.short", "warning", "short", {}),
    ]
    with store.begin() as conn:
        store.save_flags(conn, "r", 1, [Flag("loop", "info")])
    assert store.run_flags("r") == {"loop": [1], "length.short": [2]}
    with store.begin() as conn:
        store.save_flags(conn, "r", 1, [])
    assert store.run_flags("r") == {"length.short": [2]}
    assert store.run_flags("other") == {"length.short": [1]}


def test_scorer_status_adds_counts_and_replaces_named_scorers(store: Store) -> None:
    long = "x" * 600
    with store.begin() as conn:
        store.save_scorer_status(conn, {
            ("r", 1, "judge", "skipped", "not configured"): 2,
            ("r", 1, "judge", "failed", long): 1,
            ("r", 1, "judge", "failed", long + "y"): 2,  # the same reason once cut
            ("r", 1, "diversity", "failed", "boom"): 1,
            ("r", 2, "judge", "skipped", "not configured"): 5,
            ("q", 2, "judge", "skipped", "not configured"): 1,
        })
        store.save_scorer_status(conn, {("r", 1, "judge", "skipped", "not configured"): 3})

    def read() -> dict[tuple[Any, ...], int]:
        return {(r["run"], r["step"], r["scorer"], r["kind"], r["reason"]): r["n"]
                for r in rows_of(store, scorer_status, "step", "scorer")}

    assert read() == {("r", 1, "judge", "skipped", "not configured"): 5,
                      ("r", 1, "judge", "failed", "x" * 500): 3,
                      ("r", 1, "diversity", "failed", "boom"): 1,
                      ("r", 2, "judge", "skipped", "not configured"): 5,
                      ("q", 2, "judge", "skipped", "not configured"): 1}
    with store.begin() as conn:
        store.save_scorer_status(conn, {("r", 1, "diversity", "disabled", "off"): 1},
                                 replace=[("r", 1, "diversity"), ("r", 1, "none")])
        store.save_scorer_status(conn, {}, replace=[("r", 2, "judge")])
    assert read() == {("r", 1, "judge", "skipped", "not configured"): 5,
                      ("r", 1, "judge", "failed", "x" * 500): 3,
                      ("r", 1, "diversity", "disabled", "off"): 1,
                      ("q", 2, "judge", "skipped", "not configured"): 1}


def test_all_step_samples_are_the_checkpoints_samples(store: Store) -> None:
    made = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    s = Sample(run="r", step=3, id="a", prompt="p", completion="c", reference="ref",
               probe_id="pa", tags={"k": "v"}, checkpoint="ck-3", created=made)
    with store.begin() as conn:
        store.save_samples(conn, [s, Sample(run="r", step=3, id="b", prompt="p2", completion="c2"),
                                  Sample(run="r", step=4, id="c", prompt="p", completion="c"),
                                  Sample(run="q", step=3, id="d", prompt="p", completion="c")])
    got = sorted(store.all_step_samples("r", 3), key=lambda x: x.id)
    assert [x.id for x in got] == ["a", "b"]
    assert got[0] == s
    assert store.all_step_samples("r", 5) == []


# -- checkpoint jobs ---------------------------------------------------------------------------


def job(path: str = "/ck/100") -> dict[str, Any]:
    return {"path": path, "kind": "full", "base_model": None, "probe_set": "0123456789abcdef"}


def job_row(store: Store, run: str, step: int) -> dict[str, Any] | None:
    found = [r for r in rows_of(store, checkpoint_jobs, "run", "step") if (r["run"], r["step"]) == (run, step)]
    return found[0] if found else None


def test_a_queued_job_starts_fresh(store: Store) -> None:
    store.queue_checkpoint("r", 100, {**job(), "kind": "lora", "base_model": "base"})
    row = job_row(store, "r", 100)
    assert row is not None
    assert {k: row[k] for k in ("path", "kind", "base_model", "probe_set", "state", "reason",
                                "generator", "samples", "attempts", "load_s", "generate_s",
                                "started", "finished")} == {
        "path": "/ck/100", "kind": "lora", "base_model": "base", "probe_set": "0123456789abcdef",
        "state": "queued", "reason": None, "generator": None, "samples": None, "attempts": 0,
        "load_s": None, "generate_s": None, "started": None, "finished": None}
    store.update_checkpoint_job("r", 100, "failed", reason="gone")
    store.queue_checkpoint("r", 100, job("/ck/100b"))
    again = job_row(store, "r", 100)
    assert again is not None and (again["state"], again["reason"], again["path"], again["finished"]) == (
        "queued", None, "/ck/100b", None)
    run = run_row(store, "r")
    assert run is not None and run["last_step"] == 100


def test_checkpoint_job_moves_through_its_states(store: Store) -> None:
    store.queue_checkpoint("r", 100, job())
    store.queue_checkpoint("r", 200, job("/ck/200"))
    store.queue_checkpoint("q", 100, job("/q/100"))
    queued = job_row(store, "r", 100)
    assert queued is not None
    with store.begin() as conn:
        conn.execute(update(runs).where(runs.c.name == "r").values(updated=datetime.now(UTC) - timedelta(hours=1)))
    stale = run_row(store, "r")
    assert stale is not None

    store.update_checkpoint_job("r", 100, "generating", reason=None)
    gen = job_row(store, "r", 100)
    assert gen is not None
    assert (gen["state"], gen["attempts"], gen["finished"]) == ("generating", 1, None)
    assert gen["started"] is not None and gen["started"] >= queued["submitted"]
    moved = run_row(store, "r")
    assert moved is not None and moved["updated"] > stale["updated"]  # the run page re-reads

    store.update_checkpoint_job("r", 100, "retrying", reason="GeneratorError: oom")
    retry = job_row(store, "r", 100)
    assert retry is not None
    assert (retry["state"], retry["reason"], retry["attempts"], retry["started"], retry["finished"]) == (
        "retrying", "GeneratorError: oom", 1, gen["started"], None)

    store.update_checkpoint_job("r", 100, "generating", reason=None)
    store.update_checkpoint_job("r", 100, "generated", reason=None, generator={"model": "m"},
                                samples=48, load_s=1.5, generate_s=2.5)
    done = job_row(store, "r", 100)
    assert done is not None
    assert {k: done[k] for k in ("state", "reason", "generator", "samples", "attempts", "load_s",
                                 "generate_s", "path", "kind", "probe_set", "submitted")} == {
        "state": "generated", "reason": None, "generator": {"model": "m"}, "samples": 48,
        "attempts": 2, "load_s": 1.5, "generate_s": 2.5, "path": "/ck/100", "kind": "full",
        "probe_set": "0123456789abcdef", "submitted": queued["submitted"]}
    assert done["started"] >= gen["started"] and done["finished"] >= done["started"]

    store.update_checkpoint_job("r", 200, "failed", reason="no such folder")
    failed = job_row(store, "r", 200)
    assert failed is not None
    assert (failed["state"], failed["reason"], failed["attempts"], failed["started"]) == (
        "failed", "no such folder", 0, None)
    assert failed["finished"] is not None
    other = job_row(store, "q", 100)
    assert other is not None and (other["state"], other["attempts"]) == ("queued", 0)

    store.update_checkpoint_job("r", 300, "generating")  # never queued, no payload: nothing
    assert job_row(store, "r", 300) is None
    with pytest.raises(ValueError, match="unknown job state 'scored'"):
        store.update_checkpoint_job("r", 100, "scored")
    done_again = job_row(store, "r", 100)
    assert done_again is not None and done_again["state"] == "generated"


def test_a_job_the_api_never_wrote_is_made_from_its_payload(store: Store) -> None:
    store.update_checkpoint_job("r", 5, "generating", job=job("/ck/5"), reason=None)
    row = job_row(store, "r", 5)
    assert row is not None
    assert (row["state"], row["path"], row["attempts"], row["kind"]) == ("generating", "/ck/5", 1, "full")
    # With a row there, the payload changes nothing but the state.
    store.update_checkpoint_job("r", 5, "generating", job=job("/elsewhere"), reason=None)
    row = job_row(store, "r", 5)
    assert row is not None and (row["path"], row["attempts"]) == ("/ck/5", 2)


# -- aggregates, probe sets, checkpoint completeness, labels, alerts ------------------------------


def test_aggregates_keep_the_fuller_recompute(store: Store) -> None:
    def read() -> list[tuple[Any, ...]]:
        return [(r["run"], r["step"], r["metric"], r["mean"], r["ci_low"], r["ci_high"], r["n"])
                for r in rows_of(store, aggregates, "run", "step", "metric")]

    with store.begin() as conn:
        store.save_aggregates(conn, "r", 1, {"m": Aggregate(mean=0.5, ci_low=0.25, ci_high=1.0, n=4),
                                             "k": Aggregate(mean=None, ci_low=None, ci_high=None, n=0)})
        store.save_aggregates(conn, "q", 1, {"m": Aggregate(mean=2.0, ci_low=1.0, ci_high=4.0, n=9)})
        store.save_aggregates(conn, "r", 1, {})
    first = {r["metric"]: r["updated"] for r in rows_of(store, aggregates, "metric") if r["run"] == "r"}
    with store.begin() as conn:
        store.save_aggregates(conn, "r", 1, {"m": Aggregate(mean=0.0, ci_low=0.0, ci_high=0.0, n=3)})
    assert read() == [("q", 1, "m", 2.0, 1.0, 4.0, 9), ("r", 1, "k", None, None, None, 0),
                      ("r", 1, "m", 0.5, 0.25, 1.0, 4)]
    with store.begin() as conn:
        store.save_aggregates(conn, "r", 1, {"m": Aggregate(mean=0.75, ci_low=0.5, ci_high=1.5, n=4),
                                             "k": Aggregate(mean=1.0, ci_low=0.5, ci_high=2.0, n=2)})
    assert read() == [("q", 1, "m", 2.0, 1.0, 4.0, 9), ("r", 1, "k", 1.0, 0.5, 2.0, 2),
                      ("r", 1, "m", 0.75, 0.5, 1.5, 4)]
    later = {r["metric"]: r["updated"] for r in rows_of(store, aggregates, "metric") if r["run"] == "r"}
    assert later["m"] > first["m"] and later["k"] > first["k"]


def test_probe_set_saved_again_only_becomes_current(store: Store) -> None:
    content: dict[str, Any] = {"probes": [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}],
               "generation": {"draws": 2, "max_new_tokens": 8}, "completions": "4"}
    store.save_probe_set("r", "v1", content)
    store.save_probe_set("r", "v2", {**content, "probes": content["probes"][:1], "completions": 2})
    got = rows_of(store, probe_sets, "version")
    assert [(r["run"], r["version"], r["n_probes"], r["completions"]) for r in got] == [
        ("r", "v1", 2, 4), ("r", "v2", 1, 2)]
    assert got[0]["probes"] == content["probes"] and got[0]["generation"] == content["generation"]
    store.save_probe_set("r", "v1", {**content, "probes": []})
    again = rows_of(store, probe_sets, "version")
    assert again[0]["n_probes"] == 2 and again[0]["probes"] == content["probes"]
    assert again[0]["set_at"] > got[0]["set_at"] and again[1]["set_at"] == got[1]["set_at"]
    run = run_row(store, "r")
    assert run is not None and run["last_step"] == 0


def test_a_checkpoint_is_complete_when_all_its_samples_are_in_or_it_went_quiet(store: Store) -> None:
    def stored(run: str, step: int, n: int) -> None:
        with store.begin() as conn:
            store.save_samples(conn, [Sample(run=run, step=step, id=f"{step}-{i}", prompt="p",
                                             completion="c") for i in range(n)])

    stored("r", 1, 2)
    stored("r", 2, 3)
    stored("r", 3, 1)
    with store.begin() as conn:
        store.touch_checkpoints(conn, {("r", 1): 3, ("r", 2): 3, ("r", 3): None})
        store.touch_checkpoints(conn, {})
    store.set_expected("r", 9, 4)  # said, no sample yet: not complete however long
    assert store.complete_checkpoints(idle_s=60) == [("r", 2)]
    # A later touch that does not say how many keeps what was said.
    with store.begin() as conn:
        store.touch_checkpoints(conn, {("r", 1): None})
    stored("r", 1, 3)  # ids 1-0 .. 1-2: one more
    assert sorted(store.complete_checkpoints(idle_s=60)) == [("r", 1), ("r", 2)]
    store.set_expected("r", 1, 5)
    assert store.complete_checkpoints(idle_s=60) == [("r", 2)]
    # Quiet for longer than idle_s: complete whatever was said; oldest first.
    with store.begin() as conn:
        for step, ago in ((3, 300), (1, 200)):
            conn.execute(update(checkpoints).where(checkpoints.c.step == step)
                         .values(last_sample=datetime.now(UTC) - timedelta(seconds=ago)))
    assert store.complete_checkpoints(idle_s=60) == [("r", 3), ("r", 1), ("r", 2)]
    assert store.complete_checkpoints(idle_s=60, limit=2) == [("r", 3), ("r", 1)]
    assert store.complete_checkpoints(idle_s=250) == [("r", 3), ("r", 2)]
    store.mark_evaluated("r", 3)
    store.mark_evaluated("r", 2)
    assert store.complete_checkpoints(idle_s=60) == [("r", 1)]
    rows = {r["step"]: r for r in rows_of(store, checkpoints, "step")}
    assert rows[2]["evaluated_n"] == 3 and rows[3]["evaluated_n"] == 1
    assert rows[2]["evaluated"] is not None and rows[1]["evaluated"] is None
    assert (rows[1]["expected"], rows[2]["expected"], rows[3]["expected"], rows[9]["expected"]) == (5, 3, None, 4)
    assert rows[9]["last_sample"] is None
    # A sender that says again how many replaces what was said; the run page re-reads.
    with store.begin() as conn:
        store.touch_checkpoints(conn, {("r", 9): 6})
    nine = {r["step"]: r for r in rows_of(store, checkpoints, "step")}[9]
    assert nine["expected"] == 6 and nine["last_sample"] is not None
    with store.begin() as conn:
        store.upsert_run(conn, "r", 9)
        conn.execute(update(runs).values(updated=datetime.now(UTC) - timedelta(hours=1)))
        store.upsert_run(conn, "q", 1)
    before = {r["name"]: r["updated"] for r in rows_of(store, runs, "name")}
    store.mark_evaluated("r", 9)
    after = {r["name"]: r["updated"] for r in rows_of(store, runs, "name")}
    assert after["r"] > before["r"] and after["q"] == before["q"]


def test_a_labellers_new_label_replaces_their_old_one(store: Store) -> None:
    item = {"run": "r", "sample_id": "s", "rubric": "help", "criterion": "overall"}
    store.save_labels([{**item, "labeller": "ann", "value": 1.0},
                       {**item, "labeller": "bob", "value": 0.0, "details": {"why": "x"}}])
    store.save_labels([])
    store.save_labels([{**item, "labeller": "ann", "value": 0.5, "baseline_id": "b", "project": "p",
                        "rubric_version": "3", "details": {"n": 1}}])
    got = rows_of(store, labels, "labeller")
    assert [(r["labeller"], r["value"], r["baseline_id"], r["project"], r["rubric_version"], r["details"])
            for r in got] == [("ann", 0.5, "b", "p", "3", {"n": 1}), ("bob", 0.0, None, None, None, {"why": "x"})]
    assert all(r["created"] is not None for r in got)
    assert store.delete_label(got[1]["id"]) is True
    assert store.delete_label(got[1]["id"]) is False
    assert [r["labeller"] for r in rows_of(store, labels, "id")] == ["ann"]


def test_latest_alert_of_each_rule_and_evidence_values(store: Store) -> None:
    a1 = store.add_alert(Alert(run="r", step=1, rule="loop", message="m1", severity="critical"))
    assert a1 is not None and store.resolve_alert(a1)
    a2 = store.add_alert(Alert(run="r", step=5, rule="loop", message="m2", action="stop"))
    store.add_alert(Alert(run="r", step=2, rule="len", message="m3", state="resolved"))
    store.add_alert(Alert(run="q", step=9, rule="loop", message="other run"))
    latest = store.latest_alerts("r")
    assert set(latest) == {"loop", "len"}
    assert (latest["loop"].id, latest["loop"].step, latest["loop"].action, latest["loop"].state) == (
        a2, 5, "stop", "open")
    assert latest["loop"].created.tzinfo is not None
    assert latest["len"].state == "resolved" and latest["len"].message == "m3"
    with store.begin() as conn:
        store.save_batch_scores(conn, [
            ("r", 1, "a", [Score(scorer="loop", value=True), Score(scorer="len", value=3)]),
            ("r", 1, "b", [Score(scorer="loop", value=False), Score(scorer="len", value=None)]),
            ("r", 2, "c", [Score(scorer="loop", value=True)]),
        ])
    assert sorted(store.step_score_ids("r", 1, "loop")) == [("a", True), ("b", False)]
    assert store.step_score_ids("r", 1, "len") == [("a", 3.0)]
    values = store.step_score_values("r", 1)
    assert {k: sorted(v) for k, v in values.items()} == {"loop": [0.0, 1.0], "len": [3.0]}
    assert all(type(v) is float for v in values["loop"])


def test_judge_costs_sum_each_rubrics_criteria_and_keep_the_fuller_sum(store: Store) -> None:
    def cost(calls: int, hits: int, secs: float, ptok: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"judge_calls": calls, "cache_hits": hits, "judge_s": secs}
        return d if ptok is None else {**d, "prompt_tokens": ptok, "generated_tokens": ptok // 10}

    def read() -> dict[tuple[str, int, str], tuple[Any, ...]]:
        return {(r["run"], r["step"], r["rubric"]): (r["scores"], r["judge_calls"], r["cache_hits"],
                                                     r["judge_s"], r["prompt_tokens"], r["generated_tokens"])
                for r in rows_of(store, judge_costs, "run", "step", "rubric")}

    with store.begin() as conn:
        store.save_batch_scores(conn, [
            ("r", 1, "a", [Score(scorer="judge.help.overall", value=1, details=cost(2, 1, 0.5, 100)),
                           Score(scorer="judge.help.tone", value=1, details=cost(1, 0, 0.25, 40)),
                           Score(scorer="judge.safe.x", value=1, details={"reason": "no cost kept"}),
                           Score(scorer="length.tokens", value=5, details=cost(9, 9, 9.0, 900))]),
            ("r", 1, "b", [Score(scorer="judge.help.overall", value=0, details=cost(1, 0, 0.125))]),
            ("r", 2, "d", [Score(scorer="judge.help.overall", value=0, details=cost(4, 0, 1.0))]),
            ("q", 1, "a", [Score(scorer="judge.help.overall", value=0, details=cost(8, 0, 2.0))]),
        ])
        store.save_judge_costs(conn, "r", 1)
        store.save_judge_costs(conn, "r", 3)  # no judge score there: nothing
    assert read() == {("r", 1, "help"): (3, 4, 1, 0.875, 140, 14),
                      ("r", 1, "safe"): (1, 0, 0, 0.0, None, None)}
    # A worker that saw fewer of the step's scores replaces nothing; one that saw more does.
    with store.begin() as conn:
        conn.execute(scores_table.delete().where(scores_table.c.sample_id == "b"))
        store.save_judge_costs(conn, "r", 1)
    assert read()[("r", 1, "help")] == (3, 4, 1, 0.875, 140, 14)
    with store.begin() as conn:
        store.save_batch_scores(conn, [("r", 1, "b", [Score(scorer="judge.help.overall", value=0, details=cost(3, 2, 1.0, 5))]),
                                       ("r", 1, "c", [Score(scorer="judge.help.overall", value=0, details=cost(0, 1, 0.0))])])
        store.save_judge_costs(conn, "r", 1)
        store.save_judge_costs(conn, "r", 2)
    got = read()
    assert got[("r", 1, "help")] == (4, 6, 4, 1.75, 145, 14)
    assert got[("r", 2, "help")] == (1, 4, 0, 1.0, None, None) and ("q", 1, "help") not in got


def test_plain_rows_have_their_times_in_utc() -> None:
    naive = datetime(2026, 3, 4, 5, 6, 7)
    keys = ("created", "updated", "resolved_at", "last_sample", "evaluated", "set_at",
            "submitted", "started", "finished", "first_seen")
    other_zone = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    row = plain({**dict.fromkeys(keys, naive), "step": 3, "note": naive, "finished": other_zone})
    for k in keys:
        if k != "finished":
            assert row[k] == naive.replace(tzinfo=UTC) and row[k].tzinfo is UTC, k
    assert row["finished"] is other_zone  # already aware: kept
    assert plain({"evaluated": None, "started": None}) == {"evaluated": None, "started": None}
    assert row["note"] is naive and row["step"] == 3  # not a time column
