"""GET /v1/compare and GET /v1/runs/{run}/best on a real store (SQLite and PostgreSQL),
with planted checkpoints; and the `judgeserve best|compare` commands on the same data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from judgeserve.app import create_app
from judgeserve.auth import create_token
from judgeserve.cli import app as cli
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.checkpoints import write_checkpoint

PROBES = [f"p{i:03d}" for i in range(300)]
RUN = "choose-run"


@pytest.fixture
def setup(settings: Settings, database_url: str) -> Iterator[tuple[TestClient, Store, Settings]]:
    s = settings.model_copy(update={"database_url": database_url})
    store = Store(database_url)
    with TestClient(create_app(s, store=store)) as client:
        yield client, store, s
    store.close()


def planted_pair(store: Store, run: str = RUN, probes: list[str] = PROBES) -> None:
    """Step 200 better than step 100 on 60 % of the probes by 0.1 of reference.semscore,
    worse by 0.1 on the rest; loops the same; diversity a set-level metric."""
    rng = np.random.default_rng(0)
    n = len(probes)
    level = rng.uniform(0.3, 0.7, n)
    better = rng.permutation(n) < int(0.6 * n)
    loops = rng.random(n) < 0.1
    write_checkpoint(store, run, 100, probes,
                     {"reference.semscore": level + rng.normal(0, 0.02, n), "repetition.loop": loops,
                      "length.tokens": rng.integers(10, 40, n)},
                     set_level={"diversity.unique_ratio": 0.9})
    write_checkpoint(store, run, 200, probes,
                     {"reference.semscore": level + np.where(better, 0.1, -0.1) + rng.normal(0, 0.02, n),
                      "repetition.loop": loops, "length.tokens": rng.integers(10, 40, n)},
                     set_level={"diversity.unique_ratio": 0.7})


def test_compare_finds_the_planted_difference(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    planted_pair(store)
    r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": f"{RUN}@200"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["probes"] == 300 and body["a"]["step"] == 100 and body["b"]["complete"] is True
    sem = body["metrics"]["reference.semscore"]
    assert sem["n"] == 300
    assert 0 < sem["ci_low"] < 0.02 < sem["ci_high"], sem  # expected change 0.6 x 0.1 - 0.4 x 0.1
    assert sem["significant"] and sem["better"] == "b" and sem["p_value"] < 0.01
    loop = body["metrics"]["repetition.loop"]
    assert loop["delta"] == 0 and loop["p_value"] == 1.0 and not loop["significant"]
    assert body["set_level"]["diversity.unique_ratio"] == pytest.approx(
        {"a": 0.9, "b": 0.7, "delta": -0.2})
    assert "diversity.unique_ratio" not in body["metrics"]
    # A bare step is a step of a's run.
    same = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": "200"}).json()
    assert same["metrics"]["reference.semscore"] == sem


def test_two_runs_need_the_same_probe_set(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    planted_pair(store)
    planted_pair(store, "twin")  # the same probes and prompts: comparable across runs
    r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": "twin@200"})
    assert r.status_code == 200 and r.json()["b"]["run"] == "twin"
    write_checkpoint(store, "fewer", 100, PROBES[:250], {"reference.semscore": np.zeros(250)})
    r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": "fewer@100"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", "b"]
    assert "not the same probe set" in err["msg"] and "50 of choose-run@100's are not at fewer@100" in err["msg"]
    assert "p250, p251" in err["msg"]
    write_checkpoint(store, "reworded", 100, PROBES, {"reference.semscore": np.zeros(300)},
                     prompt=lambda p: f"Reworded {p}?" if p == "p007" else f"Question {p}?")
    r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": "reworded@100"})
    assert r.status_code == 422 and "1 probe(s) have another prompt" in r.text and "p007" in r.text


def test_compare_refuses_what_cannot_be_paired(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    planted_pair(store)
    from judgeserve.schema import Sample

    with store.begin() as conn:
        store.upsert_run(conn, "loose", 5)
        store.save_samples(conn, [Sample(id=f"x{i}", run="loose", step=5, prompt="q",
                                         completion="c") for i in range(3)])
    r = client.get("/v1/compare", params={"a": "loose@5", "b": f"{RUN}@100"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "a"]
    assert "its 3 samples have no probe_id" in r.text
    r = client.get("/v1/compare", params={"a": "not a ref", "b": "1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "a"]
    assert "is not RUN@STEP" in r.text
    assert client.get("/v1/compare", params={"a": f"{RUN}@100"}).status_code == 422
    r = client.get("/v1/compare", params={"a": "nobody@1", "b": f"{RUN}@100"})
    assert r.status_code == 404 and "a: run 'nobody' not found" in r.text
    r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": f"{RUN}@150"})
    assert r.status_code == 404 and "no samples at step 150" in r.text


def test_pairwise_rubrics_give_win_rates(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    probes = PROBES[:40]
    write_checkpoint(store, RUN, 100, probes, {"reference.semscore": np.full(40, 0.5)})
    # At step 200 the pairwise judge compared each answer with step 100's: 30 wins, 10 ties.
    verdicts = np.where(np.arange(40) < 30, 1.0, 0.5)
    write_checkpoint(store, RUN, 200, probes,
                     {"reference.semscore": np.full(40, 0.5), "judge.pw.better": verdicts},
                     details={"judge.pw.better": {"outcome": "win", "baseline": "previous"}})
    body = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": f"{RUN}@200"}).json()
    assert "judge.pw.better" not in body["metrics"]  # a verdict, not a level to subtract
    w = body["win_rates"]["judge.pw.better"]
    assert w["b_against_a"] is True and w["b"]["baseline_step"] == 100 and "a" not in w
    assert w["b"]["mean"] == pytest.approx(0.875) and w["b"]["n"] == 40
    assert 0.75 < w["b"]["ci_low"] < 0.875 < w["b"]["ci_high"] <= 1.0


def story(store: Store, run: str = RUN) -> None:
    """Loss falls at every checkpoint; quality peaks at step 300; from step 400 the model
    copies its training data (memorized), so loss alone would pick step 500."""
    rng = np.random.default_rng(1)
    n = 120
    level = rng.uniform(0.3, 0.6, n)
    for step, lift, memorized, loss in ((100, 0.0, 0.0, 3.0), (200, 0.15, 0.0, 2.0),
                                        (300, 0.3, 0.0, 1.2), (400, 0.32, 0.3, 0.6),
                                        (500, 0.33, 0.6, 0.2)):
        write_checkpoint(store, run, step, PROBES[:n], {
            "reference.semscore": level + lift + rng.normal(0, 0.05, n),
            "memorization.memorized": rng.random(n) < memorized,
            "repetition.loop": np.zeros(n),
        }, loss=loss)


def test_best_with_gates_and_the_lowest_loss(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    story(store)
    r = client.get(f"/v1/runs/{RUN}/best")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["best"]["step"] == 300
    assert body["best"]["ci_low"] < body["best"]["score"] < body["best"]["ci_high"]
    assert body["lowest_loss"] == {"step": 500, "loss": 0.2, "logged_at": 500}
    by_step = {c["step"]: c for c in body["checkpoints"]}
    assert by_step[400]["disqualified"][0].startswith("memorization.memorized <= 0.05 (was 0.")
    assert by_step[500]["disqualified"] and by_step[500]["score"] is not None
    assert by_step[100]["indistinguishable"] is False and by_step[100]["rank"] == 3
    assert body["indistinguishable"] == []
    assert set(body["weights"]) == {"reference.semscore", "memorization.memorized", "repetition.loop"}
    assert "reference.chrf" in body["not_scored"] and body["reason"] is None


def test_a_raised_flag_disqualifies(setup: tuple[TestClient, Store, Settings]) -> None:
    """The default gates read the diversity detector's collapse flag: 1 where it was raised
    at a checkpoint, 0 elsewhere (never "no value")."""
    from judgeserve.scorers import Flag

    client, store, _ = setup
    story(store)
    with store.begin() as conn:
        store.save_flags(conn, RUN, 300, [Flag(name="diversity.collapse", severity="warning",
                                               message="collapsed", details={})])
    body = client.get(f"/v1/runs/{RUN}/best").json()
    by_step = {c["step"]: c for c in body["checkpoints"]}
    assert by_step[300]["disqualified"] == ["flag.diversity.collapse <= 0.5 (was 1)"]
    assert by_step[200]["disqualified"] == [] and body["best"]["step"] == 200
    assert "flag.diversity.collapse <= 0.5" not in body["unchecked_gates"]


def test_best_of_unknown_or_empty_runs(setup: tuple[TestClient, Store, Settings]) -> None:
    client, store, _ = setup
    assert client.get("/v1/runs/nobody/best").status_code == 404
    store.save_metrics("empty", 1, {"loss": 1.0})
    with store.begin() as conn:
        store.upsert_run(conn, "empty", 1)
    body = client.get("/v1/runs/empty/best").json()
    assert body["best"] is None and body["reason"] == "the run has no checkpoint with aggregates yet"


def test_a_broken_quality_file_is_the_servers_error(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "q.yaml"
    bad.write_text("metrics:\n  - metric: x\n    better: sideways\n")
    with TestClient(create_app(settings.model_copy(update={"quality": bad}))) as client:
        store = Store(settings.database_url)
        story(store)
        r = client.get(f"/v1/runs/{RUN}/best")
        store.close()
    assert r.status_code == 500 and "q.yaml:3: metrics[0].better" in r.text


def test_another_projects_checkpoints_cannot_be_compared(default_access: Settings) -> None:
    store = Store(default_access.database_url)
    store.claim_run(RUN, "team-a")  # as a trainer's first samples claim a run
    store.claim_run("theirs", "team-b")
    planted_pair(store)
    planted_pair(store, "theirs")
    token = create_token(store, "team-a")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(default_access, store=store), base_url="http://127.0.0.1") as client:
        ok = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": f"{RUN}@200"}, headers=headers)
        assert ok.status_code == 200, ok.text
        r = client.get("/v1/compare", params={"a": f"{RUN}@100", "b": "theirs@200"}, headers=headers)
        assert r.status_code == 403 and "another project" in r.text
        assert client.get("/v1/runs/theirs/best", headers=headers).status_code == 403
    store.close()


def test_cli_best_and_compare(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGESERVE_DATABASE_URL", settings.database_url)
    store = Store(settings.database_url)
    story(store)
    store.close()
    runner = CliRunner()
    out = runner.invoke(cli, ["best", "--run", RUN])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"run {RUN}: best: step 300, score ")
    assert "lowest training loss at step 500 (0.200)" in lines[0]
    assert any(line.split()[0] == "400" and "disqualified: memorization.memorized <= 0.05" in line
               for line in lines[2:])
    out = runner.invoke(cli, ["compare", f"{RUN}@200", "300"])
    assert out.exit_code == 0, out.output
    sem = next(line for line in out.output.splitlines() if line.startswith("reference.semscore"))
    assert sem.endswith("* b better")
    out = runner.invoke(cli, ["compare", f"{RUN}@200", "nowhere@1"])
    assert out.exit_code == 1 and "nowhere@1: no samples" in out.output
    out = runner.invoke(cli, ["best", "--run", RUN, "--json"])
    assert out.exit_code == 0 and '"step": 300' in out.output


def test_the_sdk_asks_for_the_best(live_api: object, settings: Settings, tmp_path: Path) -> None:
    import asyncio

    from judgeserve import AsyncJudgeClient, JudgeClient

    store = Store(settings.database_url)
    story(store)
    store.close()
    url = live_api.url  # type: ignore[attr-defined]
    with JudgeClient(url, run=RUN, spool_dir=tmp_path / "spool") as client:
        found = client.best()
        assert found is not None and found["best"]["step"] == 300
    with JudgeClient(url, run="not-yet", spool_dir=tmp_path / "spool2") as client:
        assert client.best() is None  # the run does not exist yet

    async def ask() -> dict | None:
        aio = AsyncJudgeClient(url, run=RUN, spool_dir=tmp_path / "spool3")
        try:
            return await aio.best()
        finally:
            await aio.close(5)

    found = asyncio.run(ask())
    assert found is not None and found["lowest_loss"]["step"] == 500
