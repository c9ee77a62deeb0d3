"""Whole pipeline, submit → scored in the store, with the per-sample detectors (no judge,
no embeddings), for 1, 2 and 4 worker processes on PostgreSQL; then the recovery time after a worker is killed
holding a batch (the reclaim delay), and a burst against the backlog bound (429s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa
from _stack import auth_headers, free_port, table, text, wait_healthy

from judgeserve import JudgeClient
from judgeserve.store import Store
from judgeserve.stream import Queue

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/12"
N = 2048  # a multiple of PER_SUBMIT
PER_SUBMIT = 64
CLAIM_IDLE_MS = 2000
# The per-sample detectors. The embedding ones (diversity, reference) run at ~9 samples/s
# per core here (MiniLM on this CPU: see detectors.py) and would measure only that.
DISABLED = '["judge", "diversity", "reference", "reference_lc"]'


class Stack:
    def __init__(self, env_extra: dict[str, str] | None = None) -> None:
        self.schema = f"bench_{uuid.uuid4().hex[:8]}"
        self.prefix = f"bp{uuid.uuid4().hex[:6]}"
        self.engine = sa.create_engine(PG)
        with self.engine.begin() as c:
            c.execute(sa.text(f"CREATE SCHEMA {self.schema}"))
        self.db = f"{PG}?options=-csearch_path%3D{self.schema}"
        Store(self.db).close()
        self.env = {**os.environ, "JUDGESERVE_REDIS_URL": REDIS, "JUDGESERVE_DATABASE_URL": self.db,
                    "JUDGESERVE_STREAM_PREFIX": self.prefix, "JUDGESERVE_DISABLED_SCORERS": DISABLED,
                    "JUDGESERVE_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS), **(env_extra or {})}
        self.port = free_port()
        self.api = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "api", "--port", str(self.port)],
                                    env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen[bytes]] = []
        wait_healthy(self.url, self.api)

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker", "--name", name],
                             env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(p)
        return p

    def scored(self) -> int:
        with self.engine.begin() as c:
            return int(c.execute(sa.text(f"SELECT count(DISTINCT sample_id) FROM {self.schema}.scores")).scalar_one())

    def close(self) -> None:
        for p in [*self.workers, self.api]:
            p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.api]:
            p.wait(timeout=60)
        with self.engine.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {self.schema} CASCADE"))
        r = redis.Redis.from_url(REDIS)
        for key in r.scan_iter(f"{self.prefix}:*"):
            r.delete(key)


def submit_all(url: str, run: str, n: int) -> None:
    assert n % PER_SUBMIT == 0, "the wait for all samples counts whole batches"
    with JudgeClient(url, run=run, spool_dir=tempfile.mkdtemp()) as client:
        for k in range(n // PER_SUBMIT):
            client.submit(k // 4, [{"prompt": text(20, i), "completion": text(200, i + k)} for i in range(PER_SUBMIT)])
        assert client.flush(300)


def throughput(n_workers: int) -> float:
    stack = Stack()
    try:
        for i in range(n_workers):
            stack.worker(f"w{i}")
        time.sleep(8)  # workers load their scorers (MiniLM) before the clock starts
        t0 = time.perf_counter()
        submit_all(stack.url, "bench", N)
        while stack.scored() < N:
            time.sleep(0.2)
        return N / (time.perf_counter() - t0)
    finally:
        stack.close()


def recovery() -> float:
    """Kill a worker holding entries; time until another worker has stored them."""
    stack = Stack({"JUDGESERVE_SCORERS": '["tests.plugins:SlowScorer"]', "JUDGESERVE_TEST_SLOW_S": "600",
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        victim = stack.worker("victim")
        q = Queue(REDIS, prefix=stack.prefix)
        q.add([{"run": "rec", "step": 1, "id": f"r{i}", "prompt": "", "completion": "x"} for i in range(32)])
        r = redis.Redis.from_url(REDIS)
        while r.xpending(q.keys.samples, "workers")["pending"] < 32:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed = time.perf_counter()
        env = {k: v for k, v in stack.env.items() if k != "JUDGESERVE_SCORERS"}
        stack.env = env
        stack.worker("rescuer")
        while stack.scored() < 32:
            time.sleep(0.05)
        return time.perf_counter() - killed
    finally:
        stack.close()


def burst(bound: int = 2000) -> tuple[int, int, int]:
    """A burst far over the bound with no worker: the backlog must stop at the bound."""
    stack = Stack({"JUDGESERVE_MAX_BACKLOG": str(bound)})
    try:
        q = Queue(REDIS, prefix=stack.prefix)
        rejected = accepted = 0
        body = {"step": 0, "samples": [{"id": "", "prompt": "", "completion": text(50)} for _ in range(100)]}
        for k in range(60):
            for i, s in enumerate(body["samples"]):
                s["id"] = f"{k}-{i}"
            r = httpx.post(f"{stack.url}/v1/runs/burst/samples", json=body, headers=auth_headers())
            if r.status_code == 429:
                rejected += 1
            else:
                accepted += 1
        return q.backlog(), accepted, rejected
    finally:
        stack.close()


def main() -> None:
    rows = [("measure", "value", "note")]
    base = None
    for n in (1, 2, 4):
        rate = throughput(n)
        base = base or rate
        rows.append((f"pipeline, {n} worker(s)", f"{rate:,.0f} samples/s", f"{rate / base:.2f}x of 1 worker"))
    rows.append(("recovery after a worker kill", f"{recovery():.1f} s", f"claim_idle_ms={CLAIM_IDLE_MS}"))
    backlog, ok, refused = burst()
    rows.append(("burst: backlog after 6,000 offered", f"{backlog:,}", f"bound 2,000; {ok} accepted, {refused} answered 429"))
    table(rows)


if __name__ == "__main__":
    main()
