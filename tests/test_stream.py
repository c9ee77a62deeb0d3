"""At-least-once delivery: idempotent re-delivery, reclaim from dead workers, dead letters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from judgeserve import read, stream
from judgeserve.detectors.length import LengthScorer
from judgeserve.schema import Score
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import Queue
from judgeserve.worker import Worker

from .conftest import wait_for
from .plugins import PoisonScorer

REPO = Path(__file__).resolve().parents[1]


def payload(i: int, run: str = "q-run", step: int = 1, text: str = "a b c") -> dict:
    return {"run": run, "step": step, "id": f"s{i}", "prompt": "p", "completion": text}


def _queue(settings: Settings, consumer: str) -> Queue:
    return Queue(settings.redis_url, prefix=settings.stream_prefix, consumer=consumer,
                 claim_idle_ms=settings.claim_idle_ms, max_deliveries=settings.max_deliveries)


def test_redelivered_sample_adds_no_rows(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    worker = make_worker()
    worker.queue.add([payload(i) for i in range(5)])
    worker.process(worker.queue.read(100, block_ms=100))
    # The same sample ids arrive again (an SDK retry, or a reclaim after a late ack).
    worker.queue.add([payload(i) for i in range(5)])
    worker.process(worker.queue.read(100, block_ms=100))
    step = read.step_samples(worker.store, "q-run", 1, limit=100)
    assert len(step) == 5
    assert all(len([s for s in x["scores"] if s["scorer"] == "length.tokens"]) == 1 for x in step)
    assert read.count_scored(worker.store, "q-run") == 5
    assert worker.queue.backlog() == 0  # acknowledged entries are gone, nothing owed


def test_entries_of_a_dead_consumer_are_reclaimed(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    settings = settings.model_copy(update={"claim_idle_ms": 1000})
    survivor = make_worker(settings=settings, consumer="survivor")  # loading scorers takes a while
    dead = _queue(settings, "dead-consumer")
    dead.add([payload(i) for i in range(3)])
    assert len(dead.read(10, block_ms=100)) == 3  # delivered, never acknowledged
    r = redis.Redis.from_url(settings.redis_url)
    assert r.xpending(dead.keys.samples, "workers")["pending"] == 3
    assert survivor.queue.read(10, block_ms=50) == []  # not idle long enough yet: not stolen
    time.sleep(settings.claim_idle_ms / 1000 + 0.1)
    # Taken over all at once, tried one at a time: each is counted when it is tried, so
    # one that kills its worker runs up its own count, not its neighbours'.
    seen = []
    for expected in ("s0", "s1", "s2"):
        entries = survivor.queue.read(10, block_ms=50)
        assert [(e.payload["id"], e.deliveries) for e in entries] == [(expected, 2)]
        untried = r.xpending_range(dead.keys.samples, "workers", "-", "+", 10, consumername="survivor")
        # The one being tried counts its second delivery; the others, still untried, one.
        assert sorted(int(p["times_delivered"]) for p in untried) == [1] * (2 - len(seen)) + [2]
        survivor.process(entries)
        seen.append(expected)
    assert read.count_scored(survivor.store, "q-run") == 3
    assert r.xpending(dead.keys.samples, "workers")["pending"] == 0


def test_worker_killed_before_ack_loses_nothing(
    settings: Settings, make_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JUDGESERVE_REDIS_URL": settings.redis_url,
        "JUDGESERVE_DATABASE_URL": settings.database_url,
        "JUDGESERVE_STREAM_PREFIX": settings.stream_prefix,
        "JUDGESERVE_SCORERS": '["tests.plugins:SlowScorer"]',
        "JUDGESERVE_TEST_SLOW_S": "60",
    }
    q = _queue(settings, "producer")
    q.add([payload(i) for i in range(20)])
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "judgeserve.cli", "worker", "--name", "doomed"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        r = redis.Redis.from_url(settings.redis_url)
        wait_for(lambda: r.xpending(q.keys.samples, "workers")["pending"] == 20, timeout=60)
        consumers = {c["name"].decode(): c["pending"] for c in r.xinfo_consumers(q.keys.samples, "workers")}
        assert consumers.get("doomed") == 20
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
    store = Store(settings.database_url)
    assert read.count_scored(store, "q-run") == 0  # it died before storing anything
    time.sleep(settings.claim_idle_ms / 1000 + 0.1)
    survivor = make_worker(consumer="survivor")
    while survivor.queue.backlog():
        survivor.process(survivor.queue.read(64, block_ms=50))
    assert read.count_scored(store, "q-run") == 20
    assert len(read.step_samples(store, "q-run", 1, limit=100)) == 20
    store.close()


def test_poison_sample_is_dead_lettered_after_max_deliveries(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    settings = settings.model_copy(update={"max_deliveries": 3, "retry_delay_s": 0.01})
    worker = make_worker(settings=settings, scorers=[PoisonScorer(), LengthScorer()])
    worker.queue.add([payload(0), payload(1, text="POISON pill"), payload(2)])
    for _ in range(50):
        worker.queue.promote_due_retries()
        entries = worker.queue.read(10, block_ms=20)
        if entries:
            worker.process(entries)
        if worker.queue.backlog() == 0:
            break
        time.sleep(0.02)
    rows = {r["id"]: {sc["scorer"] for sc in r["scores"]} for r in read.step_samples(worker.store, "q-run", 1)}
    # The poison cost only the failing scorer's verdict: its other scores are stored.
    assert rows == {"s0": {"length.tokens", "poison.ok"}, "s1": {"length.tokens"},
                    "s2": {"length.tokens", "poison.ok"}}
    dead = worker.queue.deadletters()
    assert [d["payload"]["id"] for d in dead] == ["s1"]
    assert "cannot score s1" in dead[0]["error"] and dead[0]["deliveries"] == 3
    assert dead[0]["payload"]["only"] == ["poison"]
    # Requeued (after a fix), only the scorer that failed runs again.
    assert worker.queue.requeue_deadletters() == 1
    worker.sample_scorers = [LengthScorer(), FixedPoison()]
    worker.process(worker.queue.read(10, block_ms=50))
    assert worker.queue.deadletters() == []
    s1 = read.get_sample(worker.store, "q-run", "s1")
    assert s1 is not None and {sc["scorer"] for sc in s1["scores"]} == {"length.tokens", "poison.ok"}


class FixedPoison(LengthScorer):
    name = "poison"  # the poison scorer, fixed

    def score(self, samples):  # type: ignore[no-untyped-def]
        return [[Score(scorer="poison.ok", value=True)] for _ in samples]


def test_failed_scorer_is_retried_after_a_delay(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    settings = settings.model_copy(update={"retry_delay_s": 0.3})
    flaky = FlakyOnce()
    worker = make_worker(settings=settings, scorers=[flaky, LengthScorer()])
    worker.queue.add([payload(1)])
    worker.process(worker.queue.read(10, block_ms=50))
    assert worker.queue.backlog() == 1 and worker.queue.promote_due_retries() == 0  # not due yet
    time.sleep(0.35)
    assert worker.queue.promote_due_retries() == 1
    entries = worker.queue.read(10, block_ms=50)
    assert entries[0].payload["only"] == ["flaky"] and entries[0].payload["attempt"] == 1
    worker.process(entries)
    s1 = read.get_sample(worker.store, "q-run", "s1")
    assert s1 is not None and {sc["scorer"] for sc in s1["scores"]} == {"length.tokens", "flaky.ok"}
    assert flaky.calls == 3 and worker.queue.backlog() == 0


class FlakyOnce(LengthScorer):
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, samples):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= 2:  # the batch, then the sample alone: down both times
            raise ConnectionError("judge endpoint down")
        return [[Score(scorer="flaky.ok", value=True)] for _ in samples]


def test_invalid_payload_goes_straight_to_dead_letters(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    worker = make_worker()
    worker.queue.add([{"run": "q-run", "step": -1, "id": "bad", "completion": "x", "prompt": ""}, payload(1)])
    result = worker.process(worker.queue.read(10, block_ms=50))
    assert (result.stored, result.dead) == (1, 1)
    assert worker.queue.deadletters()[0]["payload"]["id"] == "bad"


def test_worker_survives_the_stream_being_deleted(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    worker = make_worker()
    r = redis.Redis.from_url(settings.redis_url)
    r.delete(worker.queue.keys.samples)
    assert worker.queue.read(10, block_ms=50) == []  # NOGROUP: recreated, not raised
    worker.queue.add([payload(1)])
    worker.process(worker.queue.read(10, block_ms=50))
    assert read.count_scored(worker.store, "q-run") == 1


def test_dead_letters_are_visible_through_the_api(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    from fastapi.testclient import TestClient

    from judgeserve.app import create_app

    s = settings.model_copy(update={"max_deliveries": 1})
    worker = make_worker(settings=s, scorers=[PoisonScorer()])
    worker.queue.add([payload(1, text="POISON")])
    worker.process(worker.queue.read(10, block_ms=50))
    with TestClient(create_app(s)) as api:
        items = api.get("/v1/deadletter").json()["deadletters"]
    assert [d["payload"]["id"] for d in items] == ["s1"] and "cannot score" in items[0]["error"]


def test_deadletter_cli_lists_and_requeues(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    from .conftest import run_cli

    s = settings.model_copy(update={"max_deliveries": 1})
    worker = make_worker(settings=s, scorers=[PoisonScorer()])
    worker.queue.add([payload(7, text="POISON")])
    worker.process(worker.queue.read(10, block_ms=50))
    env = {"JUDGESERVE_REDIS_URL": s.redis_url, "JUDGESERVE_STREAM_PREFIX": s.stream_prefix}
    listed = run_cli("deadletter", "list", env=env)
    assert listed.returncode == 0 and "q-run@1" in listed.stdout and "s7" in listed.stdout
    assert "cannot score s7" in listed.stdout
    # Says how many, and which Redis and key it read (an empty answer is no answer).
    where = f"{s.stream_prefix}:deadletter at {s.redis_url}"
    assert listed.stderr.strip() == f"1 dead letters (samples) in {where}"
    requeued = run_cli("deadletter", "requeue", env=env)
    assert requeued.stdout.strip() == f"requeued 1 from {s.stream_prefix}:deadletter to {s.stream_prefix}:samples at {s.redis_url}"
    assert worker.queue.deadletters() == [] and worker.queue.backlog() == 1
    empty = run_cli("deadletter", "list", env=env)
    assert empty.returncode == 0 and empty.stdout == ""
    assert empty.stderr.strip() == f"no dead letters (samples) in {where}"


def test_dead_letters_requeue_by_id_and_all(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "DEADLETTER_PAGE", 2)
    s = settings.model_copy(update={"max_deliveries": 1})
    worker = make_worker(settings=s, scorers=[PoisonScorer()])
    worker.queue.add([payload(i, text="POISON") for i in range(5)])
    worker.process(worker.queue.read(10, block_ms=50))
    dead = worker.queue.deadletters()
    assert [d["payload"]["id"] for d in dead] == [f"s{i}" for i in range(5)]
    assert worker.queue.deadletter(dead[2]["id"]) == dead[2]
    assert worker.queue.deadletter("1-1") is None
    # By id: only those move, whatever their place in the stream.
    assert worker.queue.requeue_deadletters([dead[2]["id"], dead[4]["id"], "1-1"]) == 2
    assert [d["payload"]["id"] for d in worker.queue.deadletters()] == ["s0", "s1", "s3"]
    assert worker.queue.backlog() == 2
    # All: page by page, to the end.
    assert worker.queue.requeue_deadletters() == 3
    assert worker.queue.deadletters() == [] and worker.queue.backlog() == 5


def test_entry_redelivered_past_the_limit_is_dead_lettered(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    # A sample whose processing kills its worker is never acknowledged: each reclaim
    # delivers it again. Past max_deliveries it is set aside, not processed forever.
    settings = settings.model_copy(update={"max_deliveries": 2, "claim_idle_ms": 1})
    dying = _queue(settings, "dies-each-time")
    dying.add([payload(1)])
    for _ in range(3):  # delivered three times, acknowledged never
        time.sleep(0.01)
        assert [e.payload["id"] for e in dying.read(10, block_ms=20)] == ["s1"]
    survivor = make_worker(settings=settings, consumer="survivor")
    time.sleep(0.01)
    entries = survivor.queue.read(10, block_ms=20)
    assert entries[0].deliveries == 4
    result = survivor.process(entries)
    assert result.dead == 1 and result.stored == 0
    dead = survivor.queue.deadletters()
    assert dead[0]["payload"]["id"] == "s1" and "delivered 4 times" in dead[0]["error"]
    assert survivor.queue.backlog() == 0 and read.count_scored(survivor.store, "q-run") == 0
