"""Chaos: the store's PostgreSQL goes down for 60 s while samples keep arriving; a worker
started while it is down waits for it.

The test runs a PostgreSQL of its own (``initdb`` + ``pg_ctl`` on a temporary data
directory, never the shared server), two ``judgeserve worker`` processes and the API,
and submits samples through the SDK before, during and after the outage. At the end:
0 lost, 0 dead letters, 0 duplicates, and the outage cost no delivery.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from judgeserve import JudgeClient
from judgeserve.settings import Settings
from judgeserve.store import Store, samples, scores
from judgeserve.stream import Queue

from .conftest import LiveServer, free_port, wait_for

OUTAGE_S = 60
PER_SUBMIT = 50
DISABLED = '["diversity", "reference", "reference_lc", "judge", "memorization"]'


class PostgresServer:
    """A PostgreSQL server of the test's own: its own data directory, port and socket.

    As root (containers, CI images) the server runs as the ``postgres`` user, as
    PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="judgeserve-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Down at once, as a crashed server: clients' connections break mid-transaction."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


def _count(store: Store, table: Any, col: Any) -> tuple[int, int]:
    with store.begin() as conn:
        rows = conn.execute(select(func.count()).select_from(table).where(table.c.run == "outage")).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(col))).where(table.c.run == "outage")).scalar_one()
    return int(rows), int(distinct)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_store_down_for_a_minute_mid_stream_loses_nothing(
    own_postgres: PostgresServer, settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"database_url": own_postgres.url, "claim_idle_ms": 2000})
    env = {**os.environ, "JUDGESERVE_REDIS_URL": s.redis_url, "JUDGESERVE_DATABASE_URL": s.database_url,
           "JUDGESERVE_STREAM_PREFIX": s.stream_prefix, "JUDGESERVE_CLAIM_IDLE_MS": "2000",
           "JUDGESERVE_WORKER_BATCH": "50", "JUDGESERVE_WORKER_HEARTBEAT_S": "0.5",
           "JUDGESERVE_MAX_DELIVERIES": "2", "JUDGESERVE_DISABLED_SCORERS": DISABLED}
    store = Store(s.database_url)  # the tables exist before the workers start
    logs = open(tmp_path / "workers.log", "wb")
    workers = [
        subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker", "--name", f"w{i}"],
                         env=env, stdout=logs, stderr=subprocess.STDOUT)
        for i in range(2)
    ]
    api = LiveServer(s).start()
    q = Queue(s.redis_url, prefix=s.stream_prefix)
    r = redis.Redis.from_url(s.redis_url)
    sent = 0

    def submit(client: JudgeClient, n_requests: int, pause_s: float) -> None:
        nonlocal sent
        for _ in range(n_requests):
            step = sent // 500
            client.submit(step, [{"id": f"x{sent + i}", "prompt": "q", "completion": f"answer {sent + i} " * 4}
                                 for i in range(PER_SUBMIT)])
            sent += PER_SUBMIT
            time.sleep(pause_s)

    try:
        with JudgeClient(api.url, run="outage", spool_dir=s.spool_dir) as client:
            submit(client, 20, 0.05)
            wait_for(lambda: _count(store, samples, samples.c.id)[0] >= 300, timeout=60)
            store.engine.dispose()
            own_postgres.stop()
            down_since = time.monotonic()
            submit(client, 20, 1.0)  # the trainer goes on during the outage
            health = httpx.get(f"{api.url}/healthz").json()
            assert {w["state"] for w in health["workers"]} <= {"waiting for the store", "idle"}, health
            assert any(w["state"] == "waiting for the store" for w in health["workers"]), health
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
            held = r.xpending_range(q.keys.samples, "workers", "-", "+", 10_000)
            assert held and all(p["times_delivered"] == 1 for p in held), held[:3]  # no delivery spent
            assert q.deadletters() == []
            own_postgres.start()
            submit(client, 20, 0.05)
            assert client.flush(timeout=120)
            assert client.errors == []
        wait_for(lambda: q.backlog() == 0 and _count(store, samples, samples.c.id)[0] == sent,
                 timeout=180, every=0.5)
        n, distinct = _count(store, samples, samples.c.id)
        assert n == distinct == sent == 3000  # 0 lost, 0 duplicates
        score_rows, scored = _count(store, scores, scores.c.sample_id)
        assert scored == sent and score_rows % sent == 0  # every sample, one set of scores each
        with store.begin() as conn:
            per_sample = conn.execute(
                select(func.count()).where(scores.c.run == "outage").group_by(scores.c.sample_id)
            ).scalars().all()
        assert set(per_sample) == {score_rows // sent}
        assert q.deadletters() == []  # 0 dead letters
        assert r.xpending(q.keys.samples, "workers")["pending"] == 0
        assert all(w.poll() is None for w in workers)  # both workers lived through it
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        logs.close()
        api.stop()
        q.close()
        r.close()
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_started_while_the_store_is_down_waits_for_it(
    own_postgres: PostgresServer, settings: Settings, tmp_path: Path
) -> None:
    """Restarted during an outage, ``judgeserve worker`` must not exit (leaving nobody to
    score once the store is back): it waits, and then scores."""
    own_postgres.stop()
    q = Queue(settings.redis_url, prefix=settings.stream_prefix)
    q.add([{"run": "late", "step": 1, "id": f"s{i}", "prompt": "p", "completion": "c"} for i in range(5)])
    env = {**os.environ, "JUDGESERVE_REDIS_URL": settings.redis_url,
           "JUDGESERVE_DATABASE_URL": own_postgres.url, "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
           "JUDGESERVE_DISABLED_SCORERS": DISABLED}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"cannot start yet" in log.read_bytes(), timeout=60)
        time.sleep(2)
        assert proc.poll() is None, log.read_text()
        own_postgres.start()
        store = Store(own_postgres.url)
        wait_for(lambda: _scored(store, "late") == 5 and q.backlog() == 0, timeout=90, every=0.5)
        store.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        q.close()


def _scored(store: Store, run: str) -> int:
    from judgeserve import read

    return read.count_scored(store, run)
