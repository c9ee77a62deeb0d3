"""Access: auth on by default with a local token, tokens per project (hashed at rest, no reach
into other projects, revocation felt by a running API), Origin and Host checks."""

from __future__ import annotations

import asyncio
import fcntl
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

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
from judgeserve.local_token import read_token, token_for, token_path, write_token
from judgeserve.schema import Alert
from judgeserve.settings import Settings, get_settings
from judgeserve.store import Store, tokens
from judgeserve.stream import Queue
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


# -- the rules one by one: tokens, the local token, Host and Origin, the cache, run owners --


TOKEN_FORMAT = re.compile(r"js_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")  # a 64-bit id, a 256-bit secret


def test_token_format_and_listing(secured: Settings) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    named = create_token(store, "team-b", "ci")
    assert TOKEN_FORMAT.fullmatch(token) and TOKEN_FORMAT.fullmatch(named), (token, named)
    listed = {t["id"]: (t["project"], t["name"], t["revoked"]) for t in auth.list_tokens(store)}
    assert listed == {
        token.split("_")[1]: ("team-a", "", False),
        named.split("_")[1]: ("team-b", "ci", False),
    }
    store.close()


def test_malformed_tokens_are_refused_not_crashed_on(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    good = create_token(store, "team-a")
    _, token_id, secret = good.split("_", 2)
    for bad in ("js", f"js_{token_id}", f"js_{token_id}_", f"js__{secret}", f"xx_{token_id}_{secret}",
                f"JS_{token_id}_{secret}"):
        assert verify(store, bad) is None, bad
        r = api.get("/v1/runs", headers=bearer(bad))
        assert (r.status_code, r.json()["detail"]) == (401, "invalid or revoked API token"), bad
    assert verify(store, good) == auth.Principal(project="team-a")
    store.close()


def test_401_says_why_and_asks_for_a_bearer_token(api: TestClient) -> None:
    missing = api.get("/v1/runs")
    assert (missing.status_code, missing.json()["detail"]) == (401, "an API token is required")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = api.post("/v1/runs/r1/samples", json=BATCH, headers=bearer("js_0123456789abcdef_nope"))
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid or revoked API token")
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_principal_may_access() -> None:
    assert auth.ANYONE.may_access("team-a") and auth.ANYONE.may_access(None)
    team = auth.Principal(project="team-a")
    assert team.may_access("team-a")
    assert not team.may_access("team-b") and not team.may_access(None)


def test_verified_tokens_are_cached_for_cache_s_exactly(
    secured: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    cache = auth.TokenCache()
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the clock auth reads
    assert cache.principal(store, token) == auth.Principal(project="team-a")
    assert cache.principal(store, "js_0123456789abcdef_nope") is None
    revoke_token(store, token.split("_")[1])
    # Within the window the hot path asks the database nothing, so the revocation is not seen...
    now[0] = 1000.0 + CACHE_S - 0.001
    assert cache.principal(store, token) == auth.Principal(project="team-a")
    # ... and from CACHE_S on it is.
    now[0] = 1000.0 + CACHE_S
    assert cache.principal(store, token) is None
    monkeypatch.undo()
    store.close()


# -- the local token ---------------------------------------------------------------------


def _local_tokens(store: Store) -> list[tuple[str, str]]:
    return sorted((t["project"], t["name"]) for t in auth.list_tokens(store) if not t["revoked"])


def test_local_token_in_a_data_dir_not_made_yet(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    data = tmp_path / "home" / "user" / "judgeserve"
    made = ensure_local_token(store, data)
    assert made is not None and TOKEN_FORMAT.fullmatch(made)
    assert read_token(token_path(data)) == made and verify(store, made) == auth.Principal("local")
    assert _local_tokens(store) == [("local", "local")]
    store.close()


@pytest.mark.parametrize(
    ("found", "kept"),
    [
        ("js_" + "a1" * 16 + "_secret-with_signs", True),  # made by another server: registered
        ("js_" + "a" * 33 + "_secret", False),  # an id no server makes: replaced
        ("js_ab-cd_secret", False),
        ("js_abcd_", False),  # tampered: no secret
        ("js__secret", False),
        ("not a token", False),
    ],
)
def test_local_token_found_in_the_file(tmp_path: Path, found: str, kept: bool) -> None:
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    data = tmp_path / "data"
    write_token(token_path(data), found)
    made = ensure_local_token(store, data)
    if kept:
        assert made is None and read_token(token_path(data)) == found
        assert verify(store, found) == auth.Principal("local")
    else:
        assert made is not None and made != found and read_token(token_path(data)) == made
        assert verify(store, made) == auth.Principal("local")
    assert _local_tokens(store) == [("local", "local")]
    store.close()


def test_local_token_waits_for_a_server_making_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    result: list[str | None] = []
    # Another server starting at the same moment holds the lock while it makes the token.
    with open(data / ".token.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = threading.Thread(target=lambda: result.append(ensure_local_token(store, data)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()
        theirs = create_token(store, "local", "local")
        write_token(token_path(data), theirs)
    waiting.join(10)
    assert result == [None] and read_token(token_path(data)) == theirs
    assert len(auth.list_tokens(store)) == 1
    store.close()


# -- Host allow-list and Origin check ------------------------------------------------------


def test_allowed_hosts_of_every_bind_address(secured: Settings) -> None:
    def hosts(bind: str) -> list[str]:
        return allowed_hosts(secured.model_copy(update={"host": bind}))

    loopback = ["localhost", "127.0.0.1", "[::1]"]
    for every in ("", "0.0.0.0", "::", "[::]"):
        assert hosts(every) == ["*"], every
    assert hosts("[::1]") == loopback and hosts("127.0.0.1") == loopback
    assert hosts("2001:db8::7") == [*loopback, "[2001:db8::7]"]
    assert hosts("[2001:db8::7]") == [*loopback, "[2001:db8::7]"]
    assert hosts("Judge-BOX") == [*loopback, "judge-box"]  # Host headers are matched in lower case


def test_same_origin_posts_pass_on_every_loopback_name_and_port(secured: Settings) -> None:
    store = Store(secured.database_url)
    token = create_token(store, "team-a")
    app = create_app(secured)
    for base in ("http://localhost:8000", "http://LocalHost:8000", "http://[::1]:8000", "http://[::1]",
                 "http://127.0.0.1:80"):
        origin = base.lower().removesuffix(":80")  # a browser leaves the default port out
        with TestClient(app, base_url=base) as c:
            r = c.post("/v1/runs/r1/samples", json=BATCH, headers={**bearer(token), "origin": origin})
            assert r.status_code == 202, (base, r.text)
            other_port = "http://localhost:9000" if "localhost" in origin else "http://[::1]:9000"
            r = c.post("/v1/runs/r1/samples", json=BATCH, headers={**bearer(token), "origin": other_port})
            assert r.status_code == 403, base
    store.close()


def test_same_origin_over_https(secured: Settings) -> None:
    s = secured.model_copy(update={"allowed_hosts": ["judge.example.com"]})
    store = Store(s.database_url)
    token = create_token(store, "team-a")
    with TestClient(create_app(s), base_url="https://judge.example.com") as c:
        for origin, status in (("https://judge.example.com", 202), ("https://judge.example.com:443", 202),
                               ("http://judge.example.com", 403), ("https://judge.example.com:8443", 403)):
            r = c.post("/v1/runs/r1/samples", json=BATCH, headers={**bearer(token), "origin": origin})
            assert r.status_code == status, origin
    store.close()


def test_origin_refusals_say_what_to_do(api: TestClient) -> None:
    for origin in ("ftp://127.0.0.1", "http://", "null", "http://evil.example"):
        r = api.post("/v1/runs/r1/samples", json=BATCH, headers={"origin": origin})
        assert r.status_code == 403, origin
        assert r.json()["detail"] == (
            f"cross-origin request from {origin!r} refused; "
            "add that origin to JUDGESERVE_ALLOWED_ORIGINS if it is yours"
        )
    long = "http://" + "a" * 300 + ".example"
    detail = api.post("/v1/runs/r1/samples", json=BATCH, headers={"origin": long}).json()["detail"]
    assert detail.startswith(f"cross-origin request from {long[:200]!r} refused; ")
    r = api.post("/v1/runs/r1/samples", json=BATCH, headers={"sec-fetch-site": "cross-site"})
    assert (r.status_code, r.json()["detail"]) == (403, "cross-site request refused")


def test_origin_check_without_a_host_header() -> None:
    """An HTTP/1.0 client may send no Host: its POST with an Origin is refused, not a crash."""
    reached: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["method"])

    async def request(method: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": "/", "headers": headers, "scheme": "http"}
        await auth.OriginCheck(inner)(scope, receive, send)
        return sent

    sent = asyncio.run(request("POST", [(b"origin", b"http://localhost")]))
    assert sent[0]["status"] == 403 and reached == []
    assert asyncio.run(request("POST", [])) == [] and reached == ["POST"]


# -- run owners ---------------------------------------------------------------------------


def test_owners_are_looked_up_by_a_fresh_api(secured: Settings) -> None:
    """A run claimed before this API started (another replica, a restart) is still guarded:
    its owner is read from the store, not only from what this API claimed itself."""
    store = Store(secured.database_url)
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    with TestClient(create_app(secured), base_url=LOCAL) as first:
        assert first.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(a)).status_code == 202
    with TestClient(create_app(secured), base_url=LOCAL) as fresh:
        r = fresh.get("/v1/runs/run-a", headers=bearer(b))
        assert (r.status_code, r.json()["detail"]) == (403, "run 'run-a' belongs to another project")
        assert fresh.get("/v1/runs/run-a", headers=bearer(a)).status_code == 200
    with TestClient(create_app(secured), base_url=LOCAL) as fresh:
        assert fresh.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(b)).status_code == 403
        assert fresh.post("/v1/runs/run-a/samples", json=BATCH, headers=bearer(a)).status_code == 202
    store.close()


def test_reading_a_run_that_does_not_exist_claims_nothing(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    assert api.get("/v1/runs/ghost", headers=bearer(b)).status_code == 404
    assert api.get("/v1/runs/ghost/alerts", headers=bearer(b)).json() == {"alerts": []}
    assert read.get_run(store, "ghost") is None
    assert api.post("/v1/runs/ghost/samples", json=BATCH, headers=bearer(a)).status_code == 202
    store.close()


def test_dead_letters_are_listed_to_their_runs_project(api: TestClient, secured: Settings) -> None:
    store = Store(secured.database_url)
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    for token, run in ((a, "run-a"), (b, "run-b")):
        assert api.post(f"/v1/runs/{run}/samples", json=BATCH, headers=bearer(token)).status_code == 202
    queue = Queue.from_settings(secured, stream="samples")
    try:
        queue.add([{"run": run, "step": 1, "id": f"dead-{run}", "completion": "c"}
                   for run in ("run-a", "run-b", "ghost")])
        for entry in queue.read(10, block_ms=100):
            if str(entry.payload.get("id", "")).startswith("dead-"):
                queue.dead_letter(entry, "cannot score", 5)
    finally:
        queue.redis.close()

    def listed(token: str) -> list[str]:
        r = api.get("/v1/deadletter", headers=bearer(token))
        assert r.status_code == 200, r.text
        return sorted(d["payload"]["id"] for d in r.json()["deadletters"])

    # A run nobody owns yet (no sample of it was ever stored) is nobody's secret.
    assert listed(a) == ["dead-ghost", "dead-run-a"]
    assert listed(b) == ["dead-ghost", "dead-run-b"]
    assert read.get_run(store, "ghost") is None  # listing claims nothing
    store.close()
