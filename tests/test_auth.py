"""Tokens per project: hashed at rest, required when on, and no reach into other projects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from judgeserve import JudgeClient, read
from judgeserve.app import create_app
from judgeserve.auth import auth_enabled, create_token, revoke_token
from judgeserve.settings import Settings
from judgeserve.store import Store, tokens
from judgeserve.worker import Worker

from .conftest import LiveServer, run_cli, wait_for

BATCH = {"step": 1, "samples": [{"id": "a", "prompt": "p", "completion": "c"}]}


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth": "on"})


@pytest.fixture
def api(secured: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(secured)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_required_and_checked(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    good = create_token(store, "team-a")
    assert api.post("/v1/runs/r1/samples", json=BATCH).status_code == 401
    assert api.post("/v1/runs/r1/samples", json=BATCH, headers=bearer("js_nope_nope")).status_code == 401
    wrong_secret = good.rsplit("_", 1)[0] + "_" + "x" * 43
    assert api.post("/v1/runs/r1/samples", json=BATCH, headers=bearer(wrong_secret)).status_code == 401
    assert api.post("/v1/runs/r1/samples", json=BATCH, headers=bearer(good)).status_code == 202
    api.cookies.set("judgeserve_token", good)  # the web view's way in
    assert api.get("/v1/runs").status_code == 200
    api.cookies.clear()
    assert api.get("/healthz").status_code == 200  # probes stay open
    store.close()


def test_projects_cannot_reach_each_other(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    assert api.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(a)).status_code == 202
    assert api.post("/v1/runs/run-a/metrics", json={"step": 1, "values": {"loss": 1}}, headers=bearer(a)).status_code == 202
    assert api.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(b)).status_code == 403
    assert api.post("/v1/runs/run-a/metrics", json={"step": 1, "values": {"loss": 9}}, headers=bearer(b)).status_code == 403
    for path in ("/v1/runs/run-a", "/v1/runs/run-a/steps/1", "/v1/runs/run-a/metrics",
                 "/v1/runs/run-a/alerts", "/v1/runs/run-a/samples/a"):
        r = api.get(path, headers=bearer(b))
        assert r.status_code == 403 and "another project" in r.json()["detail"], path
    assert [r["name"] for r in api.get("/v1/runs", headers=bearer(a)).json()["runs"]] == ["run-a"]
    assert api.get("/v1/runs", headers=bearer(b)).json()["runs"] == []
    from judgeserve.schema import Alert

    aid = store.add_alert(Alert(run="run-a", step=1, rule="r", message="m"))
    assert api.post(f"/v1/alerts/{aid}/resolve", headers=bearer(b)).status_code == 403
    assert api.post(f"/v1/alerts/{aid}/resolve", headers=bearer(a)).status_code == 200
    store.close()


def test_tokens_are_stored_only_as_hashes_and_revocable(secured: Settings) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    secret = token.split("_", 2)[2]
    with store.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(tokens)).mappings()]
    assert len(rows) == 1 and secret not in str(rows) and len(rows[0]["hash"]) == 64
    assert revoke_token(store, rows[0]["id"])
    with TestClient(create_app(secured)) as api:  # a fresh app: nothing cached
        assert api.get("/v1/runs", headers=bearer(token)).status_code == 401
    store.close()


@pytest.mark.parametrize(
    ("host", "on"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True),
     ("10.1.2.3", True), ("judge.internal", True)],
)
def test_auth_on_by_default_beyond_loopback(host: str, on: bool) -> None:
    assert auth_enabled("auto", host) is on
    assert auth_enabled("off", host) is False and auth_enabled("on", host) is True


def test_sdk_with_token_end_to_end(secured: Settings, make_worker: object) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    server = LiveServer(secured).start()
    worker = Worker(secured)
    try:
        with JudgeClient(server.url, run="tok-run", token=token, spool_dir=secured.spool_dir) as client:
            client.submit(1, [{"prompt": "p", "completion": "c"}])
            assert client.flush(10)
            assert client.alerts() == []
        worker.process(worker.queue.read(10, block_ms=500))
        wait_for(lambda: read.count_scored(store, "tok-run") == 1)
        run = read.get_run(store, "tok-run")
        assert run is not None and run["project"] == "team-a"  # the worker kept the owner
    finally:
        worker.close()
        server.stop()
        store.close()


def test_token_cli(settings: Settings) -> None:
    env = {"JUDGESERVE_DATABASE_URL": settings.database_url}
    made = run_cli("token", "create", "--project", "p1", "--name", "ci", env=env)
    assert made.returncode == 0 and made.stdout.startswith("js_")
    listed = run_cli("token", "list", env=env)
    token_id = made.stdout.split("_")[1]
    assert token_id in listed.stdout and "p1" in listed.stdout and "active" in listed.stdout
    assert run_cli("token", "revoke", token_id, env=env).returncode == 0
    assert "revoked" in run_cli("token", "list", env=env).stdout
    bad = run_cli("token", "revoke", "nope", env=env)
    assert bad.returncode == 1 and "no token" in bad.stderr
