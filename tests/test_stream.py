"""At-least-once delivery: idempotent re-delivery, reclaim from dead workers, dead letters."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from judgeserve import read, stream
from judgeserve.detectors.length import LengthScorer
from judgeserve.exceptions import QueueError
from judgeserve.schema import Score
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.stream import AsyncProducer, Entry, Queue, Retry
from judgeserve.worker import Worker

from .conftest import free_port, wait_for
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


# -- the queue's own contract, call by call (fast: no worker, no store) ----------------------


@pytest.fixture
def rc(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def make_queue(settings: Settings) -> Iterator[Callable[..., Queue]]:
    made: list[Queue] = []

    def factory(consumer: str = "c1", **kwargs: Any) -> Queue:
        kwargs.setdefault("prefix", settings.stream_prefix)
        q = Queue(settings.redis_url, consumer=consumer, **kwargs)
        made.append(q)
        return q

    yield factory
    for q in made:
        q.close()


def pending(rc: redis.Redis, q: Queue) -> dict[str, tuple[str, int]]:
    """Each pending id: (its consumer, times delivered)."""
    return {p["message_id"].decode(): (p["consumer"].decode(), p["times_delivered"])
            for p in rc.xpending_range(q.stream_key, q.group, "-", "+", 100)}


def idle_ms(rc: redis.Redis, q: Queue) -> dict[str, int]:
    return {p["message_id"].decode(): p["time_since_delivered"]
            for p in rc.xpending_range(q.stream_key, q.group, "-", "+", 100)}


def timeouts(client: redis.Redis | AsyncRedis) -> tuple[Any, Any]:
    kw = client.connection_pool.connection_kwargs
    return kw["socket_timeout"], kw["socket_connect_timeout"]


def test_queue_and_producer_defaults_and_settings(settings: Settings, rc: redis.Redis) -> None:
    q = Queue(settings.redis_url)
    try:
        assert (q.stream, q.stream_key, q.dead_key, q.retry_key) == (
            "samples", "js:samples", "js:deadletter", "js:retry")
        assert (q.group, q.consumer) == ("workers", f"{socket.gethostname()}-{os.getpid()}")
        assert (q.max_deliveries, q.claim_idle_ms, q.retry_delay_s) == (5, 60_000, 5.0)
        assert [g["name"] for g in rc.xinfo_groups("js:samples")] == [b"workers"]  # made at once
        assert timeouts(q.redis) == (10.0, 5.0) == timeouts(stream.redis_client(settings.redis_url))
    finally:
        q.close()
        rc.delete("js:samples")
    s = settings.model_copy(update={
        "consumer_group": "grp", "max_deliveries": 7, "claim_idle_ms": 1234, "retry_delay_s": 0.5,
        "redis_socket_timeout_s": 3.0, "redis_connect_timeout_s": 2.0})
    jobs = Queue.from_settings(s, "me", create_group=False, stream="checkpoints")
    p = s.stream_prefix
    assert (jobs.stream, jobs.stream_key, jobs.dead_key, jobs.retry_key) == (
        "checkpoints", f"{p}:checkpoints", f"{p}:checkpoints:deadletter", f"{p}:checkpoints:retry")
    assert (jobs.group, jobs.consumer, jobs.max_deliveries, jobs.claim_idle_ms, jobs.retry_delay_s) == (
        "grp", "me", 7, 1234, 0.5)
    assert timeouts(jobs.redis) == (3.0, 2.0)
    assert not rc.exists(jobs.stream_key)  # no group: left to the workers
    worker = Queue.from_settings(s)
    assert (worker.stream, worker.stream_key, worker.consumer) == (
        "samples", f"{p}:samples", stream.default_consumer_name())
    assert [g["name"] for g in rc.xinfo_groups(f"{p}:samples")] == [b"grp"]
    assert timeouts(stream.redis_client(s.redis_url, socket_timeout=None, connect_timeout=1.5)) == (None, 1.5)
    jobs.close()
    worker.close()
    producer, own = AsyncProducer(settings.redis_url), AsyncProducer.from_settings(s)
    assert (producer.keys.prefix, timeouts(producer.redis)) == ("js", (10.0, 5.0))
    assert (own.keys.prefix, timeouts(own.redis)) == (p, (3.0, 2.0))
    asyncio.run(producer.close())
    asyncio.run(own.close())


def test_unreachable_redis_is_a_queue_error_naming_the_call() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    q = Queue(url, consumer="c", create_group=False)
    e = Entry("1-0", {"id": "x"})
    calls: dict[str, Callable[[], object]] = {
        "add": lambda: q.add([{}]), "still_queued": lambda: q.still_queued(["1-0"]),
        "claim": lambda: q.claim_stale(1), "keep claimed": lambda: q.keep_claimed(["1-0"]),
        "hand off": lambda: q.hand_off(e, []), "settle": lambda: q.ack(["1-0"]),
        "dead letter": lambda: q.dead_letter(e, "x", 1), "promote retries": q.promote_due_retries,
        "dead letters": q.deadletters, "requeue": q.requeue_deadletters, "backlog": q.backlog,
        "read": lambda: q.read(1, block_ms=1),
    }
    for what, call in calls.items():
        with pytest.raises(QueueError, match=rf"^Redis unavailable \({what}\): ConnectionError: "):
            call()
    with pytest.raises(QueueError, match=r"^Redis unavailable \(dead letter\): ConnectionError: "):
        q.deadletter("1-0")
    for call in (q.ensure_group, q.durability_warnings):
        with pytest.raises(QueueError, match=r"^Redis unreachable: "):
            call()

    async def produce() -> bool:
        p = AsyncProducer(url)
        for coro in (p.add(["{}"]), p.add_job("{}"), p.backlog()):
            with pytest.raises(QueueError, match=r"^Redis unreachable: "):
                await coro
        up = await p.ping()
        await p.close()
        return up

    assert asyncio.run(produce()) is False


def test_add_read_and_still_queued(make_queue: Callable[..., Queue], rc: redis.Redis) -> None:
    q = make_queue()
    ids = q.add([payload(i) for i in range(5)])
    assert ids == [mid.decode() for mid, _ in rc.xrange(q.stream_key)]
    assert [json.loads(f[b"data"]) for _, f in rc.xrange(q.stream_key)] == [payload(i) for i in range(5)]
    assert [(e.id, e.payload, e.deliveries) for e in q.read(2, block_ms=10)] == [
        (ids[0], payload(0), 1), (ids[1], payload(1), 1)]
    assert [e.id for e in q.read(10, block_ms=10)] == ids[2:]
    assert q.read(10, block_ms=10) == []
    q.ack([ids[0], ids[2], ids[4]])  # an acknowledged entry leaves the stream and its PEL
    assert q.still_queued(list(reversed(ids))) == [ids[3], ids[1]] and q.still_queued([]) == []
    assert set(pending(rc, q)) == {ids[1], ids[3]} and q.backlog() == 2
    q.ack([])
    assert q.backlog() == 2


def test_read_waits_for_an_entry_up_to_block_ms(make_queue: Callable[..., Queue]) -> None:
    q = make_queue()
    q.read(10, block_ms=1)  # its own pending checked: the next read only waits
    t = threading.Timer(0.2, lambda: q.add([payload(1)]))
    t.start()
    start = time.monotonic()
    assert [e.payload["id"] for e in q.read(10, block_ms=5000)] == ["s1"]
    assert time.monotonic() - start < 4
    t.join()


def test_group_sees_entries_added_before_it(make_queue: Callable[..., Queue], rc: redis.Redis, settings: Settings) -> None:
    key = f"{settings.stream_prefix}:samples"
    rc.xadd(key, {"data": json.dumps(payload(0))})
    q = make_queue()
    assert [e.payload for e in q.read(10, block_ms=10)] == [payload(0)]
    q.ensure_group()  # BUSYGROUP: already there, nothing lost
    assert set(pending(rc, q)) == {rc.xrange(key)[0][0].decode()}
    fresh = make_queue(create_group=False, stream="checkpoints")
    assert not rc.exists(fresh.stream_key)
    fresh.ensure_group()  # MKSTREAM: the group of a stream nobody wrote yet
    assert rc.xinfo_groups(fresh.stream_key)[0]["name"] == b"workers"
    rc.set(f"{settings.stream_prefix}:checkpoints:retry", "x")
    broken = make_queue(create_group=False)
    broken.stream_key = f"{settings.stream_prefix}:checkpoints:retry"
    with pytest.raises(QueueError, match=r"^cannot create consumer group: WRONGTYPE"):
        broken.ensure_group()


def test_restarted_consumer_finishes_its_own_pending_one_at_a_time(
    make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    a = make_queue("a")
    ids = a.add([payload(i) for i in range(3)])
    assert len(a.read(10, block_ms=10)) == 3
    b = make_queue("b")
    [other] = b.add([payload(9)])
    assert [e.id for e in b.read(10, block_ms=10)] == [other]
    rc.xdel(a.stream_key, ids[0])  # deleted while pending: nothing left to deliver
    again = make_queue("a")  # a restart under the same name, long before the claim time
    got = again.read(10, block_ms=10)
    assert [(e.id, e.payload, e.deliveries) for e in got] == [(ids[1], payload(1), 2)]
    assert again.held() == [ids[2]]
    assert [(e.id, e.deliveries) for e in again.read(10, block_ms=10)] == [(ids[2], 2)]
    assert again.held() == [] and again.read(10, block_ms=10) == []  # b's entry stays b's
    assert pending(rc, a) == {ids[1]: ("a", 2), ids[2]: ("a", 2), other: ("b", 1)}
    [new] = again.add([payload(5)])
    assert [e.id for e in again.read(10, block_ms=10)] == [new]


def test_stale_entries_are_taken_over_one_at_a_time(make_queue: Callable[..., Queue], rc: redis.Redis) -> None:
    dead = make_queue("dead")
    ids = dead.add([payload(i) for i in range(3)])
    assert len(dead.read(10, block_ms=10)) == 3
    survivor = make_queue("survivor", claim_idle_ms=300)
    assert survivor.read(2, block_ms=10) == []  # idle less than claim_idle_ms: not taken
    assert survivor.claim_stale(10) == []
    assert set(pending(rc, dead).values()) == {("dead", 1)}
    time.sleep(0.35)
    # Takes over as many as it asked for, without counting them, then tries one.
    assert [(e.id, e.deliveries) for e in survivor.read(2, block_ms=10)] == [(ids[0], 2)]
    assert survivor.held() == [ids[1]]
    assert pending(rc, dead) == {ids[0]: ("survivor", 2), ids[1]: ("survivor", 1), ids[2]: ("dead", 1)}
    assert [e.id for e in survivor.read(2, block_ms=10)] == [ids[1]]
    assert [(e.id, e.payload) for e in survivor.read(2, block_ms=10)] == [(ids[2], payload(2))]
    assert survivor.held() == [] and survivor.read(2, block_ms=10) == []


def test_claim_stale_delivers_up_to_count(make_queue: Callable[..., Queue], rc: redis.Redis) -> None:
    dead = make_queue("dead")
    ids = dead.add([payload(i) for i in range(4)])
    dead.read(10, block_ms=10)
    rc.xdel(dead.stream_key, ids[1])  # deleted while pending: skipped
    tool = make_queue("tool", claim_idle_ms=100)
    time.sleep(0.15)
    assert [(e.id, e.payload, e.deliveries) for e in tool.claim_stale(2)] == [(ids[0], payload(0), 2)]
    assert [(e.id, e.deliveries) for e in tool.claim_stale(5)] == [(ids[2], 2), (ids[3], 2)]
    assert tool.claim_stale(5) == []
    assert pending(rc, dead) == {i: ("tool", 2) for i in (ids[0], ids[2], ids[3])}


def test_read_recreates_a_deleted_stream_and_forgets_what_it_held(
    make_queue: Callable[..., Queue], rc: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="judgeserve.stream")
    dead = make_queue("dead")
    dead.add([payload(i) for i in range(3)])
    dead.read(10, block_ms=10)
    q = make_queue("q", claim_idle_ms=50)
    time.sleep(0.1)
    assert len(q.read(10, block_ms=10)) == 1 and len(q.held()) == 2
    assert caplog.messages == ["took over 3 stale entries; trying them one at a time"]
    rc.delete(q.stream_key)
    assert q.read(10, block_ms=10) == [] and q.held() == []
    assert caplog.messages[1].startswith("stream or consumer group vanished (NOGROUP ")
    assert caplog.messages[1].endswith("); recreating")
    assert rc.xinfo_groups(q.stream_key)[0]["name"] == b"workers"
    q.add([payload(7)])
    assert [e.payload["id"] for e in q.read(10, block_ms=10)] == ["s7"]
    # Deleted while the read waits (UNBLOCKED): recreated too.
    t = threading.Timer(0.2, lambda: rc.delete(q.stream_key))
    t.start()
    assert q.read(10, block_ms=5000) == []
    t.join()
    assert rc.xinfo_groups(q.stream_key)[0]["name"] == b"workers"
    rc.delete(q.stream_key)
    rc.set(q.stream_key, "not a stream")
    with pytest.raises(QueueError, match=r"^Redis refused the read: WRONGTYPE"):
        make_queue("r", create_group=False).read(10, block_ms=10)


def test_keep_claimed_refreshes_only_this_consumers_entries(
    make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    a, b = make_queue("a"), make_queue("b")
    ids = a.add([payload(i) for i in range(3)])
    a.read(10, block_ms=10)
    [theirs] = b.add([payload(3)])
    b.read(10, block_ms=10)
    time.sleep(0.15)
    assert a.keep_claimed(iter([ids[0], ids[2], theirs])) == 2
    idle = idle_ms(rc, a)
    assert idle[ids[0]] < 100 and idle[ids[2]] < 100 and idle[ids[1]] >= 150 and idle[theirs] >= 150
    # No delivery counted, and another consumer's entry stays its own.
    assert pending(rc, a) == {ids[0]: ("a", 1), ids[1]: ("a", 1), ids[2]: ("a", 1), theirs: ("b", 1)}
    assert a.keep_claimed([]) == 0 and a.keep_claimed([theirs]) == 0
    time.sleep(0.1)
    a.heartbeat([ids[1].encode(), ids[2]])  # ids as Redis gives them, or as text
    assert idle_ms(rc, a)[ids[1]] < 100 and idle_ms(rc, a)[ids[2]] < 100 and pending(rc, a)[ids[1]] == ("a", 1)


def test_keep_claimed_orders_ids_by_number(make_queue: Callable[..., Queue], rc: redis.Redis) -> None:
    q = make_queue()
    for i in ("9-1", "10-2", "10-10"):  # as text, "9-1" is last and "10-10" first
        rc.xadd(q.stream_key, {"data": json.dumps({"id": i})}, id=i)
    assert len(q.read(10, block_ms=10)) == 3
    assert q.keep_claimed(["10-10", "9-1"]) == 2
    assert q.keep_claimed(["10-2", "10-10"]) == 2


def test_hand_off_moves_a_jobs_samples_and_acks_the_job(
    make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    jobs = make_queue("gen", stream="checkpoints")
    jobs.add([{"job": 1}, {"job": 2}])
    first, second = jobs.read(10, block_ms=10)
    jobs.hand_off(first, [payload(1), payload(2)])
    assert jobs.still_queued([first.id, second.id]) == [second.id]
    assert set(pending(rc, jobs)) == {second.id}
    scorer = make_queue("w")
    assert [e.payload for e in scorer.read(10, block_ms=10)] == [payload(1), payload(2)]
    jobs.hand_off(second, [])
    assert jobs.backlog() == 0 and pending(rc, jobs) == {}


def test_settle_schedules_retries_with_doubling_delays_and_dead_letters_the_last(
    make_queue: Callable[..., Queue], rc: redis.Redis, settings: Settings
) -> None:
    q = make_queue(max_deliveries=3, retry_delay_s=10.0)
    q.add([payload(0), {**payload(1), "attempt": 1}, {**payload(2), "attempt": 2}, payload(3)])
    e0, e1, e2, e3 = q.read(10, block_ms=10)
    before = time.time()
    dead = q.settle([e0.id, e1.id, e2.id], [
        Retry(e2, ["x"], "boom"), Retry(e0, ["a", "b"], "err0"), Retry(e1, ["y"], "err1")])
    after = time.time()
    assert dead == 1
    retries = {m[32:]: due for m, due in rc.zrange(q.retry_key, 0, -1, withscores=True)}
    assert all(len(m) == 32 + len(m[32:]) for m in rc.zrange(q.retry_key, 0, -1))
    by_id = {json.loads(m)["id"]: (json.loads(m), due) for m, due in retries.items()}
    assert by_id["s0"][0] == {**payload(0), "only": ["a", "b"], "attempt": 1}
    assert by_id["s1"][0] == {**payload(1), "only": ["y"], "attempt": 2}
    assert before + 10 <= by_id["s0"][1] <= after + 10  # 10 s, then 20 s, 40 s...
    assert before + 20 <= by_id["s1"][1] <= after + 20
    [letter] = q.deadletters()
    assert (letter["payload"], letter["error"], letter["deliveries"]) == (
        {**payload(2), "only": ["x"], "attempt": 3}, "boom", 3)
    assert rc.xrange(q.dead_key)[0][1][b"original_id"] == e2.id.encode()
    assert q.still_queued([e0.id, e1.id, e2.id, e3.id]) == [e3.id] and set(pending(rc, q)) == {e3.id}
    assert q.backlog() == 3 and q.settle([], []) == 0
    # Retried alone, the entry stays pending until it is settled.
    assert q.retry_later(e3, ["z"], "later") is False
    assert set(pending(rc, q)) == {e3.id} and rc.zcard(q.retry_key) == 3
    assert {**payload(3), "only": ["z"], "attempt": 1} in [json.loads(m[32:]) for m in rc.zrange(q.retry_key, 0, -1)]
    last = Entry(e3.id, {**payload(3), "attempt": 2})
    assert q.retry_later(last, ["z"], "gave up") is True
    assert q.deadletters()[-1]["error"] == "gave up" and rc.zcard(q.retry_key) == 3
    assert q.settle([], [Retry(last, ["z"], "a"), Retry(last, ["z"], "b")]) == 2


def test_promote_moves_only_due_retries_up_to_the_limit(make_queue: Callable[..., Queue], rc: redis.Redis) -> None:
    q = make_queue(retry_delay_s=0.05)
    q.add([payload(0)])
    [e] = q.read(10, block_ms=10)
    q.settle([e.id], [Retry(e, ["a"], "err")])
    assert q.promote_due_retries() == 0 and q.backlog() == 1  # not due yet
    time.sleep(0.06)
    assert q.promote_due_retries() == 1
    assert [x.payload for x in q.read(10, block_ms=10)] == [{**payload(0), "only": ["a"], "attempt": 1}]
    now = time.time()
    rc.zadd(q.retry_key, {f"{i:032x}" + json.dumps({"n": i}): now - 1 for i in range(101)})
    rc.zadd(q.retry_key, {json.dumps({"payload": {"n": "old"}}): now - 2})  # stored before the nonce
    rc.zadd(q.retry_key, {"f" * 32 + json.dumps({"n": "later"}): now + 60})
    assert q.promote_due_retries(limit=1) == 1
    assert q.promote_due_retries() == 100 and q.promote_due_retries() == 1
    assert q.promote_due_retries() == 0 and rc.zcard(q.retry_key) == 1
    got = [x.payload["n"] for x in q.read(200, block_ms=10)]
    assert got[0] == "old" and sorted(got[1:]) == list(range(101))


def test_dead_letter_keeps_the_error_and_counts_it(
    make_queue: Callable[..., Queue], rc: redis.Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    q = make_queue()
    a, b = q.add([payload(0), payload(1)])
    e0, e1 = q.read(10, block_ms=10)
    error = "x" * 10 + "\udc80" + "y" * 4989  # a lone surrogate, quoted from the bad text
    q.dead_letter(e0, error, 4)
    q.dead_letter(e1, "short", 2, payload={"id": "replaced"})
    assert caplog.messages == [f"dead-lettered {a} after 4 tries: " + error[:200],  # the operator's log
                               f"dead-lettered {b} after 2 tries: short"]
    (_, f0), (_, f1) = rc.xrange(q.dead_key)
    assert f0 == {b"data": json.dumps(payload(0)).encode(), b"error": ("x" * 10 + "\\udc80" + "y" * 3989).encode(),
                  b"original_id": a.encode(), b"deliveries": b"4"}
    assert f1 == {b"data": b'{"id": "replaced"}', b"error": b"short", b"original_id": b.encode(),
                  b"deliveries": b"2"}
    assert q.backlog() == 0 and pending(rc, q) == {}
    metrics = f"{settings.stream_prefix}:metrics"
    assert rc.hgetall(metrics) == {b"judgeserve_deadlettered_total\x1fstream=samples": b"2"}
    jobs = make_queue(stream="checkpoints")
    jobs.dead_letter(Entry("1-1", {"job": 1}), "bad job", 1)
    assert rc.hget(metrics, "judgeserve_deadlettered_total\x1fstream=checkpoints") == b"1"
    assert [d["payload"] for d in q.deadletters(stream="checkpoints")] == [{"job": 1}]
    assert [d["payload"] for d in jobs.deadletters()] == [{"job": 1}]


def test_dead_letters_read_oldest_first_page_and_undecodable(
    make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    q = make_queue()
    fields = {"error": "e", "deliveries": "1"}
    for i in range(101):
        rc.xadd(q.dead_key, {"data": json.dumps({"n": i}), **fields})
    assert [d["payload"]["n"] for d in q.deadletters()] == list(range(100))
    assert [d["payload"]["n"] for d in stream.read_deadletters(rc, q.dead_key)] == list(range(100))
    assert [d["payload"]["n"] for d in q.deadletters(3)] == [0, 1, 2]
    rc.delete(q.dead_key)
    bad = [b"[1, 2]", b"not json \xff", b"\xff" * 5000]
    ids = [rc.xadd(q.dead_key, {"data": d, **fields}).decode() for d in bad]
    last = rc.xadd(q.dead_key, fields).decode()  # no data at all
    got = {d["id"]: d["payload"] for d in q.deadletters()}
    assert got == {ids[0]: {"_undecodable": "[1, 2]"}, ids[1]: {"_undecodable": "not json \\xff"},
                   ids[2]: {"_undecodable": "\\xff" * 1000}, last: {"_undecodable": ""}}
    assert q.deadletter(ids[1]) == {"id": ids[1], "payload": {"_undecodable": "not json \\xff"},
                                    "error": "e", "deliveries": 1}
    assert q.deadletter(ids[1], stream="checkpoints") is None


def test_requeue_puts_dead_letters_back_on_their_stream_without_attempts(
    make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    q = make_queue()  # the API's queue: the sample stream's, reading the jobs' too
    jobs = make_queue(stream="checkpoints")
    for n in range(3):
        jobs.dead_letter(Entry(f"1-{n}", {}), "e", 3, payload={"n": n, "only": ["a"], "attempt": 3})
    first, *_ = q.deadletters(stream="checkpoints")
    assert q.requeue_deadletters([first["id"]], stream="checkpoints") == 1
    assert [json.loads(f[b"data"]) for _, f in rc.xrange(jobs.stream_key)] == [{"n": 0, "only": ["a"]}]
    assert q.requeue_deadletters(stream="checkpoints") == 2
    assert q.deadletters(stream="checkpoints") == [] and jobs.backlog() == 3 and q.backlog() == 0


def test_durability_warnings_for_each_redis_setting(tmp_path: Path) -> None:
    aof = ("Redis has AOF off (appendonly no): a Redis restart loses queued samples; "
           "set appendonly yes with appendfsync everysec (or always)")
    evicts = ("Redis maxmemory-policy is 'allkeys-lru': under memory pressure it may evict the "
              "sample stream; set noeviction")
    with own_redis(tmp_path) as (client, url):
        client.config_set("appendonly", "no")
        assert stream.durability_warnings(client) == [aof]
        client.config_set("appendonly", "yes")
        for fsync in ("everysec", "always"):
            client.config_set("appendfsync", fsync)
            assert stream.durability_warnings(client) == []
        client.config_set("appendfsync", "no")
        assert stream.durability_warnings(client) == ["Redis appendfsync is 'no': set everysec or always"]
        client.config_set("appendfsync", "everysec")
        client.config_set("maxmemory-policy", "allkeys-lru")
        assert stream.durability_warnings(client) == [evicts]
        client.config_set("appendonly", "no")
        q = Queue(url, create_group=False)
        assert q.durability_warnings() == [aof, evicts]
        q.close()
    with own_redis(tmp_path, "--rename-command", "CONFIG", "") as (client, _):
        assert stream.durability_warnings(client) == []  # CONFIG disabled (managed Redis)


def test_a_refused_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    # Redis out of memory refuses what adds data (XADD, ZADD) but would still take XACK and
    # XDEL: only a transaction keeps the entry pending rather than acknowledged and lost.
    with own_redis(tmp_path) as (client, url):
        q, jobs = Queue(url, consumer="c"), Queue(url, consumer="g", stream="checkpoints")
        jobs.add([{"job": 1}])
        q.add([payload(0), payload(1)])
        [job], (e0, e1) = jobs.read(1, block_ms=10), q.read(10, block_ms=10)
        q.dead_letter(Entry("1-1", {}), "e", 1, payload=payload(9))
        client.config_set("maxmemory", "1")
        refused: dict[str, Callable[[], object]] = {
            "hand off": lambda: jobs.hand_off(job, [payload(5)]),
            "settle": lambda: q.settle([e0.id], [Retry(e0, ["a"], "err")]),
            "dead letter": lambda: q.dead_letter(e1, "err", 3), "requeue": q.requeue_deadletters}
        for what, call in refused.items():
            with pytest.raises(QueueError, match=rf"^Redis unavailable \({what}\): OutOfMemoryError"):
                call()
        client.config_set("maxmemory", "0")
        assert set(pending(client, jobs)) == {job.id} and set(pending(client, q)) == {e0.id, e1.id}
        assert len(q.deadletters()) == 1 and q.backlog() == 2 and jobs.backlog() == 1
        q.close()
        jobs.close()


def test_producer_queues_a_request_whole_or_not_at_all(tmp_path: Path) -> None:
    with own_redis(tmp_path) as (client, url):
        used = int(client.info("memory")["used_memory"])
        # Room for one or two of the three (counting the request read): without MULTI, the first
        # ones would be queued.
        client.config_set("maxmemory", str(used + 3_000_000))
        big = json.dumps({"completion": "x" * 1_000_000})

        async def produce() -> None:
            p = AsyncProducer(url)
            try:
                await p.add([big, big, big])
            finally:
                await p.close()

        with pytest.raises(QueueError, match=r"^Redis unreachable: "):
            asyncio.run(produce())
        assert client.xlen("js:samples") == 0


@contextmanager
def own_redis(directory: Path, *args: str) -> Iterator[tuple[redis.Redis, str]]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir",
         str(directory), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        wait_for(lambda: _pings(client), timeout=10, every=0.01)
        yield client, url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_async_producer_appends_samples_and_jobs(
    settings: Settings, make_queue: Callable[..., Queue], rc: redis.Redis
) -> None:
    async def produce() -> tuple[str, str, int, bool]:
        p = AsyncProducer(settings.redis_url, prefix=settings.stream_prefix)
        text = AsyncProducer(settings.redis_url + "?decode_responses=true", prefix=settings.stream_prefix)
        try:
            await p.add([json.dumps(payload(1)), json.dumps(payload(2))])
            return (await p.add_job('{"job": 1}'), await text.add_job('{"job": 2}'),
                    await p.backlog(), await p.ping())
        finally:
            await p.close()
            await text.close()

    job, other, backlog, up = asyncio.run(produce())
    assert (backlog, up) == (2, True)
    assert [e.payload for e in make_queue().read(10, block_ms=10)] == [payload(1), payload(2)]
    jobs = make_queue(stream="checkpoints")
    assert [(e.id, e.payload) for e in jobs.read(10, block_ms=10)] == [(job, {"job": 1}), (other, {"job": 2})]
