"""A real Prometheus server (Debian's ``prometheus``, started here on a free port) scrapes the
live API's /metrics with a token, and its HTTP API answers queries with judgeserve's series;
it also accepts every query of the Grafana dashboard."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from judgeserve.auth import create_token
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue

from .conftest import LiveServer, free_port, wait_for
from .test_metrics import dashboard_exprs


def prometheus_path() -> str | None:
    env = os.environ.get("JUDGESERVE_PROMETHEUS")
    for candidate in (env, "/usr/bin/prometheus", shutil.which("prometheus")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def prometheus_bin() -> str:
    path = prometheus_path()
    if path is None:
        why = (
            "Prometheus not found (looked for $JUDGESERVE_PROMETHEUS, /usr/bin/prometheus): "
            "run `bash scripts/prometheus.sh` (or `make test`) to install Debian's prometheus"
        )
        if os.environ.get("CI"):
            pytest.fail(why)  # CI installs it (make test): missing there is a broken setup
        pytest.skip(why)
    return path


class Prometheus:
    """One Prometheus server of this test's own: its config, data and port."""

    def __init__(self, binary: str, target: str, token: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: judgeserve\n"
            "    metrics_path: /metrics\n"
            "    authorization:\n"
            "      type: Bearer\n"
            f"      credentials: {token}\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        body = self.query(expr)
        assert body["status"] == "success", body
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def ready(self) -> bool:
        assert self.proc.poll() is None, "prometheus exited (see prometheus.log)"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def secured_api(default_access: Settings) -> Iterator[tuple[LiveServer, str]]:
    store = Store(default_access.database_url)
    token = create_token(store, "ops")
    server = LiveServer(default_access, store).start()
    yield server, token
    server.stop()
    store.close()


def test_prometheus_scrapes_judgeserve(
    prometheus_bin: str,
    secured_api: tuple[LiveServer, str],
    default_access: Settings,
    tmp_path: Path,
) -> None:
    server, token = secured_api
    queue = Queue.from_settings(default_access)
    queue.add([{"run": "prom", "step": 1, "id": f"s{i}"} for i in range(3)])
    with httpx.Client(base_url=server.url) as http:
        for _ in range(5):
            assert http.get("/healthz").status_code == 200
        assert http.get("/v1/runs").status_code == 401  # no token: counted as a 401

    prom = Prometheus(prometheus_bin, server.url.removeprefix("http://"), token, tmp_path)
    try:
        wait_for(prom.ready, timeout=60, every=0.2)
        wait_for(lambda: bool(prom.values('up{job="judgeserve"} == 1')), timeout=60, every=0.5)

        healthz = prom.values('judgeserve_http_requests_total{route="/healthz",status="200"}')
        assert [(m["method"], v) for m, v in healthz] == [("GET", 5.0)]
        assert healthz[0][0]["job"] == "judgeserve"
        denied = prom.values('judgeserve_http_requests_total{route="/v1/runs",status="401"}')
        assert [v for _, v in denied] == [1.0]
        backlog = prom.values('judgeserve_queue_backlog{stream="samples"}')
        assert [v for _, v in backlog] == [3.0]
        # The scrapes themselves, with the token, answered 200 (each shows in the next).
        scrapes = 'judgeserve_http_requests_total{route="/metrics",status="200"} >= 1'
        wait_for(lambda: bool(prom.values(scrapes)), timeout=30, every=0.5)

        # Every query of the dashboard is valid PromQL to a real Prometheus.
        for expr in dashboard_exprs():
            body = prom.query(expr.replace("$__rate_interval", "1m"))
            assert body["status"] == "success", (expr, body)
    finally:
        prom.stop()
        queue.close()
