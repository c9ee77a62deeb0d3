"""Fixtures of the web view's tests: a seeded run, and Debian's Chromium driven by Playwright.

The browser tests share one stack per module (a real uvicorn API, a real worker thread,
SQLite in a temporary folder, its own Redis key prefix): the run is seeded through the
API like a trainer would, and scored by the worker. Alerts and judge verdicts, which no
built-in scorer makes without a judge model, are written with the store's own methods.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.schema import Aggregate, Alert, Score
from judgeserve.scorers import load_scorers
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from ..conftest import REDIS_HOST, REDIS_PORT, LiveServer, free_port, wait_for
from .plugins import LoopMarker

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

RUN = "web-run"
STEPS = (10, 20, 30)
PROBES = 6
LOOP_TEXT = "morning morning morning morning morning"
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
XSS_ID = 'x"><svg/onload=window.__pwned=3>'
LOSS_STEPS = tuple(range(0, 31, 5))


def sample_id(step: int, probe: int) -> str:
    return XSS_ID if (step, probe) == (30, 2) else f"s{step}-p{probe}"


def completion(step: int, probe: int) -> str:
    if probe == 1 and step == 30:
        return f"The answer is good {LOOP_TEXT} and then it stops."
    if probe == 2:
        return f"Careful: {XSS} step {step}"
    return f"Answer {probe} at step {step}: " + "word " * (probe + step // 10)


def seed_run(url: str, run: str, steps: tuple[int, ...] = STEPS, probes: int = PROBES) -> list[str]:
    """Submit samples and the loss through the real API; returns the sample ids."""
    ids = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for step in steps:
            batch = [
                {
                    "id": sample_id(step, p),
                    "prompt": f"Question {p}: say something <b>nice</b>",
                    "completion": completion(step, p),
                    "reference": f"Reference answer {p}",
                    "probe_id": f"p{p}",
                    "tags": {"note": "<i>tagged</i>"},
                }
                for p in range(probes)
            ]
            ids += [str(b["id"]) for b in batch]
            r = http.post(f"/v1/runs/{run}/samples", json={"step": step, "checkpoint": f"ckpt-{step}",
                                                           "samples": batch})
            assert r.status_code == 202, r.text
        for step in range(0, max(steps) + 1, 5):
            r = http.post(f"/v1/runs/{run}/metrics", json={"step": step, "values": {"loss": 3.0 / (1 + step)}})
            assert r.status_code == 202, r.text
    return ids


def scored(store: Store, run: str, step: int, n: int) -> bool:
    rows = read.step_samples(store, run, step, limit=1000)
    return len(rows) == n and all(r["scores"] for r in rows) and bool(read.step_aggregates(store, run, step))


def add_judge(store: Store, run: str, step: int, sid: str) -> None:
    """A judge verdict as the judge scorer writes it, and the rubric's aggregate."""
    with store.begin() as conn:
        store.save_scores(conn, run, step, sid, [Score(
            scorer="judge.helpfulness.clarity",
            value=3.6,
            details={"distribution": {"1": 0.05, "2": 0.05, "3": 0.2, "4": 0.6, "5": 0.1},
                     "rationale": "Clear, but <b>repeats</b> itself."},
        )])
        store.save_aggregates(conn, run, step, {
            "judge.helpfulness.clarity": Aggregate(mean=3.6, ci_low=3.2, ci_high=4.0, n=1)})


def add_alert(store: Store, run: str, step: int, rule: str, ids: list[str], severity: str = "critical") -> int:
    alert_id = store.add_alert(Alert(
        run=run, step=step, rule=rule, severity=severity,
        message="loop rate rose to 17% <i>(was 0%)</i>", evidence={"sample_ids": ids, "rate": 0.17},
    ))
    assert alert_id is not None
    return alert_id


@dataclass
class Stack:
    settings: Settings
    url: str
    store: Store
    worker: Worker


@pytest.fixture(scope="module")
def stack(redis_db: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("web")
    prefix = f"w{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        database_url=f"sqlite:///{tmp / 'web.db'}",
        stream_prefix=prefix,
        spool_dir=tmp / "spool",
        index_dir=tmp / "indexes",
        data_dir=tmp / "data",
        claim_idle_ms=300,
        port=free_port(),
        auth="off",  # the pages themselves; tests/web/test_auth.py logs in
    )
    server = LiveServer(settings).start()
    scorers = [*load_scorers(settings.scorers, settings.disabled_scorers), LoopMarker()]
    worker = Worker(settings, scorers=scorers)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    store = Store(settings.database_url)
    try:
        yield Stack(settings, server.url, store, worker)
    finally:
        worker.stop()
        thread.join(timeout=10)
        server.stop()
        worker.close()
        store.close()
        r = redis.Redis.from_url(settings.redis_url)
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)
        r.close()


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict[str, Any]:
    """``web-run``: 3 steps x 6 probes through the API, scored; a judge verdict; an alert."""
    seed_run(stack.url, RUN)
    for step in STEPS:
        wait_for(lambda step=step: scored(stack.store, RUN, step, PROBES), timeout=60)  # type: ignore[misc]
    loop_id = sample_id(30, 1)
    add_judge(stack.store, RUN, 30, loop_id)
    alert_id = add_alert(stack.store, RUN, 30, "web.loop_rate", [loop_id, XSS_ID])
    return {"run": RUN, "loop_id": loop_id, "alert_id": alert_id}


# -- the browser --------------------------------------------------------------------------


def chromium_path() -> str | None:
    env = os.environ.get("JUDGESERVE_CHROMIUM")
    for candidate in (env, *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium not found (looked for $JUDGESERVE_CHROMIUM, /usr/bin/chromium): "
            "run `bash scripts/browser.sh` (or `make test`) to install Debian's chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; console errors (a CSP violation, a script error) fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    pg.console_errors = errors
    yield pg
    context.close()
    assert not errors, f"errors in the browser console: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# The pages' in-process tests: the app on the test's store, no server.
@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings.database_url)
    yield s
    s.close()


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=store)) as c:
        yield c
