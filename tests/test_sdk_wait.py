"""What the README's SDK example promises: a sample needs only its completion, and
``client.wait(step)`` returns once the step is scored and its alert rules ran, so that
``client.alerts()`` right after it shows what they raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from judgeserve import JudgeClient, read
from judgeserve.app import create_app
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

from .conftest import LiveServer, wait_for

RULES = """\
rules:
  - name: long_answers
    type: threshold
    metric: length.tokens
    above: 3
    min_samples: 2
    severity: critical
"""


@pytest.fixture
def ruled(settings: Settings, tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return settings.model_copy(update={"alert_rules": rules})


@pytest.fixture
def stack(ruled: Settings, make_worker: Callable[..., Worker]) -> Iterator[LiveServer]:
    server = LiveServer(ruled).start()
    worker = make_worker(settings=ruled)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    yield server
    worker.stop()
    t.join(timeout=10)
    server.stop()


def test_a_sample_needs_only_its_completion(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    with TestClient(create_app(settings)) as api:
        r = api.post("/v1/runs/r/samples", json={"step": 1, "samples": [{"id": "a", "completion": "one two"}]})
        assert r.status_code == 202, r.text
    make_worker(hooks=()).run(idle_exit_s=0.5)
    store = Store(settings.database_url)
    try:
        sample = read.get_sample(store, "r", "a")
    finally:
        store.close()
    assert sample is not None and sample["prompt"] == ""
    assert {s["scorer"] for s in sample["scores"]} >= {"length.tokens", "repetition.loop"}


def test_wait_then_alerts_shows_what_the_step_raised(stack: LiveServer, ruled: Settings) -> None:
    with JudgeClient(stack.url, run="waited", spool_dir=ruled.spool_dir) as client:
        client.submit(7, [{"completion": "four words right here"}, {"completion": "and five words right here"}],
                      expected=2)
        assert client.alerts() == []  # nothing is scored yet when submit returns
        assert client.wait(7, timeout=60)
        alerts = client.alerts()
    assert [(a.rule, a.step) for a in alerts] == [("long_answers", 7)]


def test_wait_returns_false_when_the_step_is_not_scored_in_time(live_api: LiveServer, settings: Settings) -> None:
    # An API but no worker: delivered, never scored.
    with JudgeClient(live_api.url, run="unscored", spool_dir=settings.spool_dir) as client:
        client.submit(1, [{"completion": "x"}], expected=1)
        started = time.monotonic()
        assert client.wait(1, timeout=1.5) is False
        assert 1.4 < time.monotonic() - started < 5
        assert client.flush(5)


def test_wait_without_expected_waits_for_the_idle_checkpoint(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    quick = settings.model_copy(update={"checkpoint_idle_s": 1.0})
    server = LiveServer(quick).start()
    worker = make_worker(settings=quick)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        with JudgeClient(server.url, run="idle", spool_dir=quick.spool_dir) as client:
            client.submit(3, [{"completion": "a b"}])
            assert client.wait(3, timeout=30)
        store = Store(quick.database_url)
        try:
            assert read.step_evaluation(store, "idle", 3)["evaluated"] is not None
            wait_for(lambda: read.count_scored(store, "idle") == 1, timeout=5)
        finally:
            store.close()
    finally:
        worker.stop()
        t.join(timeout=10)
        server.stop()
