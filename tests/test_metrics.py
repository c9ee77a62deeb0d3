"""GET /metrics: the fleet's metrics, whichever process produced them; the Grafana dashboard
in deploy/ asks only for what /metrics exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from judgeserve.api.metrics import EXPORTED, registry_for
from judgeserve.app import create_app
from judgeserve.auth import create_token
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue

from .conftest import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: TestClient, **kw: object) -> Samples:
    """/metrics parsed by prometheus-client's own parser: (name, labels) -> value."""
    response = api.get("/metrics", **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def dashboard_metrics() -> set[str]:
    return {m for e in dashboard_exprs() for m in re.findall(r"\bjudgeserve_[a-z_]+", e)}


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_requests_are_counted_by_route_template_and_status(api: TestClient) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/v1/runs/nobody").status_code == 404
    assert api.get("/v1/runs/somebody-else").status_code == 404
    assert api.post("/v1/runs/r/samples", json={"step": "x"}).status_code == 422
    assert api.get("/no/such/page").status_code == 404
    samples = scrape(api)
    req = "judgeserve_http_requests_total"
    assert value(samples, req, method="GET", route="/healthz", status="200") == 1
    # One series for the route, whatever the run: a run name never makes a series.
    assert value(samples, req, method="GET", route="/v1/runs/{run}", status="404") == 2
    assert value(samples, req, method="POST", route="/v1/runs/{run}/samples", status="422") == 1
    assert value(samples, req, method="GET", route="unmatched", status="404") == 1
    assert not any("nobody" in dict(labels).get("route", "") for _, labels in samples)
    # The scrape itself is counted once it is done: the next one shows it.
    assert value(scrape(api), req, method="GET", route="/metrics", status="200") == 1


def test_backlog_oldest_entry_and_dead_letters(api: TestClient, settings: Settings) -> None:
    queue = Queue.from_settings(settings)
    r = queue.redis
    empty = scrape(api)
    assert value(empty, "judgeserve_queue_backlog", stream="samples") == 0
    assert value(empty, "judgeserve_queue_oldest_pending_age_seconds", stream="samples") == 0
    # An entry that arrived two minutes ago, two newer ones, one retry waiting for its time.
    two_min_ago = int((time.time() - 120) * 1000)
    r.xadd(queue.stream_key, {"data": "{}"}, id=f"{two_min_ago}-0")
    queue.add([{"run": "r", "step": 1, "id": "a"}, {"run": "r", "step": 1, "id": "b"}])
    r.zadd(queue.retry_key, {"later": time.time() + 60})
    samples = scrape(api)
    assert value(samples, "judgeserve_queue_backlog", stream="samples") == 4
    age = value(samples, "judgeserve_queue_oldest_pending_age_seconds", stream="samples")
    assert age is not None and 119 <= age < 180
    assert value(samples, "judgeserve_queue_backlog", stream="checkpoints") == 0
    assert value(samples, "judgeserve_deadletters", stream="samples") == 0

    entries = queue.read(10, block_ms=100)
    for entry in entries[:2]:
        queue.dead_letter(entry, "planted", 5)
    samples = scrape(api)
    assert value(samples, "judgeserve_deadletters", stream="samples") == 2
    assert value(samples, "judgeserve_deadlettered_total", stream="samples") == 2
    assert value(samples, "judgeserve_queue_backlog", stream="samples") == 2
    # Requeued dead letters leave the gauge; the counter keeps what happened.
    assert queue.requeue_deadletters() == 2
    samples = scrape(api)
    assert value(samples, "judgeserve_deadletters", stream="samples") == 0
    assert value(samples, "judgeserve_deadlettered_total", stream="samples") == 2
    queue.close()


def test_a_worker_process_reaches_the_apis_metrics(
    api: TestClient, settings: Settings, tmp_path: Path
) -> None:
    """Workers are other processes (other hosts): what they count reaches /metrics."""
    queue = Queue.from_settings(settings)
    n = 12
    queue.add(
        [{"run": "mp", "step": 1, "id": f"s{i}", "prompt": "p", "completion": "word " * i}
         for i in range(n)]
        + [{"run": "mp", "step": "not a step", "id": "bad"}]  # dead-lettered, with a reason
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JUDGESERVE_REDIS_URL": settings.redis_url,
        "JUDGESERVE_DATABASE_URL": settings.database_url,
        "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
        # The cheap detectors only: no embedding model to load.
        "JUDGESERVE_DISABLED_SCORERS": '["reference", "reference_lc", "memorization", "judge", '
        '"diversity"]',
    }
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "judgeserve.cli", "worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: queue.backlog() == 0, timeout=90)
            scored = "judgeserve_samples_scored_total"
            try:
                wait_for(lambda: value(scrape(api), scored, scorer="length") == n, timeout=30)
            except AssertionError:
                raise AssertionError(sorted(k for k in scrape(api) if k[0] == scored)) from None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    samples = scrape(api)
    assert value(samples, "judgeserve_samples_scored_total", scorer="repetition") == n
    assert value(samples, "judgeserve_deadlettered_total", stream="samples") == 1
    assert value(samples, "judgeserve_deadletters", stream="samples") == 1
    queue.close()


def test_metrics_want_a_token_when_auth_is_on(default_access: Settings) -> None:
    store = Store(default_access.database_url)
    token = create_token(store, "ops")
    with TestClient(create_app(default_access, store=store), base_url="http://127.0.0.1") as api:
        assert api.get("/metrics").status_code == 401
        samples = scrape(api, headers={"Authorization": f"Bearer {token}"})
        assert value(
            samples, "judgeserve_http_requests_total", method="GET", route="/metrics", status="401"
        ) == 1
    store.close()


def test_redis_down_is_a_failed_scrape_not_zeros(settings: Settings) -> None:
    with TestClient(create_app(settings)) as api:
        state = api.app.state  # type: ignore[attr-defined]
        gone = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
        state.metrics_registry = registry_for(gone, state.queue.keys)
        response = api.get("/metrics")
        assert response.status_code == 503
        assert "Redis unreachable" in response.json()["detail"]
        gone.close()


def test_dashboard_asks_only_for_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["panels"] and all(p["targets"] for p in board["panels"])
    used = dashboard_metrics()
    assert used <= EXPORTED, sorted(used - EXPORTED)
    # The list: requests and errors, backlog and oldest age, scored/s by scorer,
    # judge latency, cache hit rate, dead letters.
    for name in (
        "judgeserve_http_requests_total",
        "judgeserve_queue_backlog",
        "judgeserve_queue_oldest_pending_age_seconds",
        "judgeserve_samples_scored_total",
        "judgeserve_judge_latency_seconds_bucket",
        "judgeserve_judge_cache_hit_ratio",
        "judgeserve_deadletters",
    ):
        assert name in used
    exprs = " ".join(dashboard_exprs())
    assert 'status=~"4.."' in exprs and 'status=~"5.."' in exprs
