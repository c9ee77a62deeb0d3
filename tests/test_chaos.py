"""Chaos: 10,000 samples through the SDK while 3 worker processes are SIGKILLed and restarted.

At the end every sample has exactly one set of scores: none lost, no row duplicated.
Runs on PostgreSQL (the store for many workers) and SQLite.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from judgeserve import JudgeClient, read
from judgeserve.settings import Settings
from judgeserve.store import Store, samples, scores
from judgeserve.stream import Queue

from .conftest import LiveServer, pg_schema_url, wait_for

N_SAMPLES = 10_000
PER_SUBMIT = 100
KILLS = 5
# Delivery, not scoring, is under test: the cheap per-sample detectors are enough.
DISABLED = '["diversity", "reference", "reference_lc", "judge", "memorization"]'


@pytest.fixture(params=["postgresql", "sqlite"])
def chaos_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chaos.db'}"
    else:
        yield from pg_schema_url()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_workers_while_submitting(settings: Settings, chaos_db: str, tmp_path: Path) -> None:
    s = settings.model_copy(update={"database_url": chaos_db, "claim_idle_ms": 1000})
    env = {**os.environ, "JUDGESERVE_REDIS_URL": s.redis_url, "JUDGESERVE_DATABASE_URL": chaos_db,
           "JUDGESERVE_STREAM_PREFIX": s.stream_prefix, "JUDGESERVE_CLAIM_IDLE_MS": "1000",
           "JUDGESERVE_WORKER_BATCH": "50", "JUDGESERVE_DISABLED_SCORERS": DISABLED}
    store = Store(chaos_db)  # tables exist before three processes race to create them
    logs = open(tmp_path / "workers.log", "wb")

    def spawn(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker", "--name", f"w{i}"],
                                env=env, stdout=logs, stderr=subprocess.STDOUT)

    workers = [spawn(i) for i in range(3)]
    api = LiveServer(s).start()
    rng = random.Random(7)
    kills = 0
    try:
        with JudgeClient(api.url, run="chaos", spool_dir=s.spool_dir) as client:
            for k in range(N_SAMPLES // PER_SUBMIT):
                client.submit(k, [{"id": f"{k}-{i}", "prompt": "q", "completion": f"answer {i} of {k} " * 5}
                                  for i in range(PER_SUBMIT)])
                if k % 20 == 10 and kills < KILLS:
                    time.sleep(0.3)  # let the victim hold unacknowledged entries
                    victim = rng.randrange(3)
                    workers[victim].send_signal(signal.SIGKILL)
                    workers[victim].wait()
                    kills += 1
                    workers[victim] = spawn(victim)  # same name: it finishes its own pending first
                time.sleep(0.01)
            assert client.flush(timeout=120)
        assert kills == KILLS
        q = Queue(s.redis_url, prefix=s.stream_prefix)
        wait_for(lambda: q.backlog() == 0 and read.count_scored(store, "chaos") == N_SAMPLES, timeout=300, every=0.5)
        with store.begin() as conn:
            n_samples = conn.execute(select(func.count()).select_from(samples).where(samples.c.run == "chaos")).scalar_one()
            per_sample = conn.execute(
                select(scores.c.sample_id, func.count()).where(scores.c.run == "chaos").group_by(scores.c.sample_id)
            ).all()
        assert n_samples == N_SAMPLES
        counts = {c for _, c in per_sample}
        assert len(per_sample) == N_SAMPLES and len(counts) == 1  # one identical set of scores each
        assert q.deadletters() == []
        q.close()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        logs.close()
        api.stop()
        store.close()
