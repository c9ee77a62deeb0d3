"""The web view behind tokens: login, a project's own runs only, 403 on another's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.auth import create_token
from judgeserve.schema import Alert
from judgeserve.settings import Settings
from judgeserve.store import Store

BATCH = {"step": 1, "samples": [{"id": "a", "prompt": "p", "completion": "c"}]}


@pytest.fixture
def setup(settings: Settings) -> Iterator[tuple[TestClient, str, str]]:
    s = settings.model_copy(update={"auth": "on"})
    store = Store(s.database_url)
    a, b = create_token(store, "team-a"), create_token(store, "team-b")
    with TestClient(create_app(s)) as client:
        for token, run in ((a, "run-a"), (b, "run-b")):
            r = client.post(f"/v1/runs/{run}/samples", json=BATCH, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 202
            client.post(f"/v1/runs/{run}/metrics", json={"step": 1, "values": {"loss": 1.0}},
                        headers={"Authorization": f"Bearer {token}"})
        store.add_alert(Alert(run="run-a", step=1, rule="rule-a", message="alert of a"))
        store.add_alert(Alert(run="run-b", step=1, rule="rule-b", message="alert of b"))
        yield client, a, b
    store.close()


def test_pages_need_a_login(setup: tuple[TestClient, str, str]) -> None:
    client, _, _ = setup
    r = client.get("/runs/run-a", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs/run-a"
    assert client.get("/runs/run-a/charts.json").status_code == 401
    assert client.get("/live").status_code == 401
    assert client.get("/login").status_code == 200
    assert client.get("/static/app.css").status_code == 200  # assets stay public


def test_login_shows_only_the_projects_runs(setup: tuple[TestClient, str, str]) -> None:
    client, a, _ = setup
    bad = client.post("/login", content=b"token=js_x_y&next=/", headers={"content-type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 401 and "not valid" in bad.text
    r = client.post("/login", content=f"token={a}&next=/alerts".encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    home = client.get("/")
    assert "run-a" in home.text and "run-b" not in home.text
    alerts = client.get("/alerts")
    assert "alert of a" in alerts.text and "alert of b" not in alerts.text
    assert client.get("/runs/run-a").status_code == 200
    assert client.get("/runs/run-b").status_code == 403
    assert client.get("/runs/run-b/steps/1").status_code == 403
    assert client.get("/runs/run-b/samples/a").status_code == 403
    assert client.get("/live", params={"run": "run-b"}).status_code == 403
    assert client.post("/logout", follow_redirects=False).status_code == 303


def test_next_cannot_leave_the_site(setup: tuple[TestClient, str, str]) -> None:
    client, a, _ = setup
    r = client.post("/login", content=f"token={a}&next=//evil.example/x".encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_resolve_another_projects_alert_is_refused(setup: tuple[TestClient, str, str], settings: Settings) -> None:
    client, a, _ = setup
    store = Store(settings.database_url)
    other = next(x for x in read.list_alerts(store, "run-b") if x.rule == "rule-b")
    client.cookies.set("judgeserve_token", a)
    r = client.post(f"/alerts/{other.id}/resolve", headers={"accept": "application/json"})
    assert r.status_code == 403
    assert read.list_alerts(store, "run-b")[0].state == "open"
    store.close()
