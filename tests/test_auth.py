"""Access: auth on by default with a local token, tokens per project (hashed at rest, no reach
into other projects, revocation felt by a running API), Origin and Host checks."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from judgeserve import APIError, JudgeClient, auth, read
from judgeserve.app import create_app
from judgeserve.auth import (
    CACHE_S,
    allowed_hosts,
    create_token,
    ensure_local_token,
    revoke_token,
    verify,
)
from judgeserve.local_token import read_token, token_for, token_path
from judgeserve.schema import Alert
from judgeserve.settings import Settings, get_settings
from judgeserve.store import Store, tokens
from judgeserve.worker import Worker

from .conftest import LiveServer, run_cli, wait_for

BATCH = {"step": 1, "samples": [{"id": "a", "prompt": "p", "completion": "c"}]}


LOCAL = "http://127.0.0.1"  # TestClient's own "testserver" is no host the API answers


@pytest.fixture
def secured(default_access: Settings) -> Settings:
    return default_access  # auth as a user gets it: on, by default


@pytest.fixture
def api(secured: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(secured), base_url=LOCAL) as client:
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
    with TestClient(create_app(secured), base_url=LOCAL) as api:  # a fresh app: nothing cached
        assert api.get("/v1/runs", headers=bearer(token)).status_code == 401
    store.close()


def test_auth_is_on_by_default(api: TestClient) -> None:
    assert Settings.model_fields["auth"].default == "on"
    assert api.get("/v1/runs").status_code == 401
    assert api.post("/v1/runs/r1/samples", json=BATCH).status_code == 401
    assert api.get("/healthz").status_code == 200


def test_revoking_a_token_reaches_a_running_api(
    api: TestClient, secured: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    assert api.get("/v1/runs", headers=bearer(token)).status_code == 200
    revoke_token(store, token.split("_")[1])
    # Verified tokens are cached for CACHE_S; once that window has passed, it is refused.
    start = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: start + CACHE_S + 1)
    assert api.get("/v1/runs", headers=bearer(token)).status_code == 401
    store.close()


def test_local_token_made_at_first_start_shown_once_and_found_by_the_sdk(
    secured: Settings, worker_thread: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    s = secured.model_copy(update={"data_dir": tmp_path / "first-start"})
    path = token_path(s.data_dir)
    assert not path.exists()
    server = LiveServer(s).start()
    server.stop()
    shown = capfd.readouterr().out
    token = read_token(path)
    assert token and token in shown and str(path) in shown and "/login" in shown
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store = Store(s.database_url)
    with store.begin() as conn:  # hashed like every token
        assert token.split("_", 2)[2] not in str([dict(r) for r in conn.execute(select(tokens)).mappings()])
    server = LiveServer(s).start()  # a second start: the same token, not shown again
    try:
        assert token not in capfd.readouterr().out and read_token(path) == token
        # The SDK on this machine reads the same data directory (JUDGESERVE_DATA_DIR)...
        monkeypatch.setenv("JUDGESERVE_DATA_DIR", str(s.data_dir))
        get_settings.cache_clear()
        with JudgeClient(server.url, run="local-run", spool_dir=s.spool_dir) as client:
            client.submit(1, [{"completion": "c"}])
            assert client.flush(10) and client.errors == []
        wait_for(lambda: read.count_scored(store, "local-run") == 1)
        found = read.get_run(store, "local-run")
        assert found is not None and found["project"] == "local"
        # ... and sends the local token to no other host.
        assert token_for(server.url, s.data_dir) == token
        assert token_for("http://10.0.0.7:8000", s.data_dir) is None
    finally:
        get_settings.cache_clear()
        server.stop()
        store.close()


def test_local_token_is_shared_by_local_servers_and_replaced_when_revoked(
    settings: Settings, tmp_path: Path
) -> None:
    one, two = Store(f"sqlite:///{tmp_path / 'one.db'}"), Store(f"sqlite:///{tmp_path / 'two.db'}")
    data = tmp_path / "data"
    made = ensure_local_token(one, data)
    assert made is not None and read_token(token_path(data)) == made
    assert ensure_local_token(two, data) is None  # registered in the second store too
    assert verify(one, made) is not None and verify(two, made) is not None
    assert ensure_local_token(one, data) is None
    revoke_token(one, made.split("_")[1])
    remade = ensure_local_token(one, data)
    assert remade is not None and remade != made and read_token(token_path(data)) == remade
    assert verify(one, made) is None and verify(one, remade) is not None
    one.close()
    two.close()


def test_revoked_token_keeps_the_samples_for_a_good_one(secured: Settings, worker_thread: Worker) -> None:
    store = Store(secured.database_url)
    old = create_token(store, "team-a")
    revoke_token(store, old.split("_")[1])
    good = create_token(store, "team-a")
    server = LiveServer(secured).start()
    try:
        client = JudgeClient(server.url, run="rev-run", token=old, spool_dir=secured.spool_dir, max_backoff_s=0.5)
        client.submit(1, [{"id": f"k{i}", "completion": f"kept {i}"} for i in range(4)])
        assert client.flush(timeout=2) is False
        errors = client.errors
        assert len(errors) == 1 and isinstance(errors[0], APIError) and errors[0].status == 401
        assert "nothing was dropped" in str(errors[0].detail)
        client.close(timeout=0.5)
        with JudgeClient(server.url, run="rev-run", token=good, spool_dir=secured.spool_dir) as second:
            assert second.flush(10)
        wait_for(lambda: read.count_scored(store, "rev-run") == 4)
    finally:
        server.stop()
        store.close()


# -- CSRF and DNS rebinding ---------------------------------------------------------------


def test_cross_site_requests_are_refused(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    assert api.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(token)).status_code == 202
    alert_id = store.add_alert(Alert(run="run-a", step=1, rule="r", message="m"))
    api.cookies.set("judgeserve_token", token)  # a logged-in browser
    evil = {"origin": "http://evil.example"}
    # The page of another site posts with the user's cookie: refused, nothing changes.
    assert api.post(f"/alerts/{alert_id}/resolve", headers=evil).status_code == 403
    assert api.post(f"/v1/alerts/{alert_id}/resolve", headers=evil).status_code == 403
    body = b'{"step": 1, "samples": [{"id": "csrf", "prompt": "", "completion": "injected"}]}'
    r = api.post("/v1/runs/run-a/samples", content=body, headers={**evil, "content-type": ""})
    assert r.status_code == 403 and "JUDGESERVE_ALLOWED_ORIGINS" in r.json()["detail"]
    assert api.post("/v1/runs/run-a/samples", content=body, headers={"origin": "null"}).status_code == 403
    assert api.post("/v1/runs/run-a/samples", content=body, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert api.post("/login", content=f"token={token}".encode(), headers=evil).status_code == 403
    assert [a.state for a in read.list_alerts(store, "run-a")] == ["open"]
    # Its own pages (same origin) and programs (no Origin) may.
    assert api.post(f"/alerts/{alert_id}/resolve", headers={"origin": LOCAL, "accept": "application/json"}).status_code == 200
    assert api.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(token)).status_code == 202
    assert api.get("/v1/runs", headers=evil).status_code == 200  # reads: the token decides
    store.close()


def test_allowed_origins_setting(secured: Settings) -> None:
    s = secured.model_copy(update={"allowed_origins": ["https://judge.example.com"]})
    with TestClient(create_app(s), base_url=LOCAL) as api:
        store = Store(s.database_url)
        token = create_token(store, "p")
        ok = api.post("/v1/runs/o/samples", json=BATCH, headers={**bearer(token), "origin": "https://judge.example.com"})
        assert ok.status_code == 202
        other = api.post("/v1/runs/o/samples", json=BATCH, headers={**bearer(token), "origin": "https://judge.example.org"})
        assert other.status_code == 403
        store.close()


def test_host_allow_list_stops_dns_rebinding(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    for base in (LOCAL, "http://localhost:8000", "http://[::1]:8000"):
        with TestClient(api.app, base_url=base) as c:  # type: ignore[arg-type]
            assert c.get("/v1/runs", headers=bearer(token)).status_code == 200, base
    # A page of attacker.example whose name now resolves to 127.0.0.1.
    with TestClient(api.app, base_url="http://attacker.example:8000") as c:  # type: ignore[arg-type]
        assert c.get("/v1/runs", headers=bearer(token)).status_code == 400
        assert c.get("/healthz").status_code == 400
    store.close()
    assert allowed_hosts(secured.model_copy(update={"host": "10.1.2.3"})) == ["localhost", "127.0.0.1", "[::1]", "10.1.2.3"]
    assert allowed_hosts(secured.model_copy(update={"host": "::1"})) == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(secured.model_copy(update={"host": "0.0.0.0"})) == ["*"]
    assert allowed_hosts(secured.model_copy(update={"allowed_hosts": ["judge.example.com"]})) == ["judge.example.com"]


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


def test_token_local_cli(settings: Settings, tmp_path: Path) -> None:
    env = {"JUDGESERVE_DATABASE_URL": settings.database_url, "JUDGESERVE_DATA_DIR": str(tmp_path / "d")}
    missing = run_cli("token", "local", env=env)
    assert missing.returncode == 1 and "start the API once" in missing.stderr
    store = Store(settings.database_url)
    made = ensure_local_token(store, tmp_path / "d")
    store.close()
    shown = run_cli("token", "local", env=env)
    assert shown.returncode == 0 and shown.stdout.strip() == made
