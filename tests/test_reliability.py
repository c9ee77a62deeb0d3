"""Faults injected for real: a Redis restart, a backlog over its bound, SIGTERM mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from judgeserve import JudgeClient, read
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue, durability_warnings
from judgeserve.worker import Worker

from .conftest import LiveServer, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]


class RedisServer:
    """A redis-server of the test's own, on its own port, with AOF on."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, timeout=10)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis flushes its AOF and exits
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_restart_during_submission_loses_nothing(own_redis: RedisServer, settings: Settings) -> None:
    s = settings.model_copy(update={"redis_url": own_redis.url})
    assert durability_warnings(redis.Redis.from_url(own_redis.url)) == []
    api = LiveServer(s).start()
    worker = Worker(s)
    stop = threading.Event()
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    client = JudgeClient(api.url, run="outage-run", spool_dir=s.spool_dir, max_backoff_s=0.5)
    saw_503 = False
    try:
        for step in range(30):
            client.submit(step, [{"id": f"{step}-{i}", "prompt": "p", "completion": f"c {i}"} for i in range(10)])
            if step == 10:
                own_redis.stop()
                r = httpx.post(f"{api.url}/v1/runs/outage-run/samples",
                               json={"step": 0, "samples": [{"id": "probe", "completion": "x", "prompt": ""}]})
                saw_503 = r.status_code == 503 and "retry-after" in r.headers
            if step == 20:
                own_redis.start()
            time.sleep(0.05)
        assert saw_503
        assert client.flush(timeout=60)
        store = Store(s.database_url)
        wait_for(lambda: read.count_scored(store, "outage-run") == 300, timeout=60)
        store.close()
    finally:
        stop.set()
        client.close(timeout=1)
        worker.stop()
        t.join(timeout=10)
        worker.close()
        api.stop()


def test_durability_warnings_name_the_fix() -> None:
    warnings = durability_warnings(redis.Redis())  # the machine's Redis keeps nothing on disk
    if redis.Redis().config_get("appendonly")["appendonly"] == "no":
        assert any("appendonly yes" in w for w in warnings)


def test_backlog_over_bound_answers_429_and_sdk_waits(settings: Settings) -> None:
    s = settings.model_copy(update={"max_backlog": 50})
    api = LiveServer(s).start()
    client = JudgeClient(api.url, run="bp-run", spool_dir=s.spool_dir, max_backoff_s=0.5)
    try:
        for step in range(10):
            client.submit(step, [{"id": f"{step}-{i}", "prompt": "", "completion": "c"} for i in range(20)])
        assert client.flush(timeout=3) is False  # held back: the backlog is over its bound
        q = Queue(s.redis_url, prefix=s.stream_prefix)
        assert q.backlog() <= 50 + 20  # the bound held (one request may straddle it)
        r = httpx.post(f"{api.url}/v1/runs/bp-run/samples",
                       json={"step": 0, "samples": [{"id": "x", "completion": "x", "prompt": ""}]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        worker = Worker(s)
        t = threading.Thread(target=worker.run, daemon=True)
        t.start()
        assert client.flush(timeout=60)
        store = Store(s.database_url)
        wait_for(lambda: read.count_scored(store, "bp-run") == 200, timeout=60)
        store.close()
        worker.stop()
        t.join(timeout=10)
        worker.close()
        q.close()
    finally:
        client.close(timeout=1)
        api.stop()


def test_sigterm_finishes_the_batch_in_flight(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JUDGESERVE_REDIS_URL": settings.redis_url,
           "JUDGESERVE_DATABASE_URL": settings.database_url, "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
           "JUDGESERVE_SCORERS": '["tests.plugins:SlowScorer"]', "JUDGESERVE_TEST_SLOW_S": "2",
           # The embedding scorers' first batch imports torch (15-20 s on a busy machine):
           # what is timed here is the signal handling, not that import.
           "JUDGESERVE_DISABLED_SCORERS": '["diversity", "reference", "reference_lc", "judge"]'}
    q = Queue(settings.redis_url, prefix=settings.stream_prefix)
    q.add([{"run": "term-run", "step": 1, "id": f"s{i}", "prompt": "", "completion": "c"} for i in range(8)])
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(settings.redis_url)
    wait_for(lambda: r.xpending(q.keys.samples, "workers")["pending"] == 8, timeout=60)
    proc.send_signal(signal.SIGTERM)  # mid-batch: the scorer is still sleeping
    assert proc.wait(timeout=30) == 0
    log.close()
    store = Store(settings.database_url)
    assert read.count_scored(store, "term-run") == 8
    assert r.xpending(q.keys.samples, "workers")["pending"] == 0
    store.close()
    q.close()
