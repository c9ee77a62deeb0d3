"""One sample cannot kill a worker, and an outage cannot turn the backlog into dead letters.

Real Redis, real SQLite/PostgreSQL stores, real workers running their own loop in a
thread. Faults are planted at the edges: a store whose commit fails (as a locked or
unreachable database does), a locked SQLite file, Redis commands that time out or are
refused, a server that accepts connections and never answers.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from judgeserve import read
from judgeserve import store as store_module
from judgeserve.app import create_app
from judgeserve.detectors.length import LengthScorer
from judgeserve.exceptions import QueueError, StoreError, StoreUnavailable
from judgeserve.launch import background_stack, keep_running
from judgeserve.settings import Settings
from judgeserve.store import Store, samples, scores
from judgeserve.stream import Queue
from judgeserve.worker import Worker

from .conftest import wait_for


def payload(i: int, run: str = "o-run", step: int = 1, text: str = "a b c", **extra: Any) -> dict[str, Any]:
    return {"run": run, "step": step, "id": f"s{i}", "prompt": "p", "completion": text, **extra}


class FlakyStore(Store):
    """A real store whose commits fail while ``down`` (rolled back, as when the database
    goes away or stays locked), or that refuses samples whose completion says POISON."""

    down = False
    commits = 0

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with super().begin() as conn:
            yield conn
            if self.down:
                raise StoreUnavailable("commit failed: server closed the connection unexpectedly")
            self.commits += 1

    def save_samples(self, conn: Connection, items: Any) -> None:
        if any("POISON" in s.completion for s in items):
            raise StoreError("database refused the write: DataError: value too long")
        super().save_samples(conn, items)


def per_sample() -> int:
    """Score rows the length scorer makes per sample."""
    from judgeserve.schema import Sample

    one = Sample(run="o-run", step=1, id="x", prompt="p", completion="a b c")
    return len(LengthScorer().score([one])[0])


def rows(store: Store, run: str = "o-run") -> tuple[int, int]:
    """(samples stored, score rows): a duplicate would show as more than one row each."""
    with store.begin() as conn:
        n = conn.execute(select(func.count()).select_from(samples).where(samples.c.run == run)).scalar_one()
        k = conn.execute(select(func.count()).select_from(scores).where(scores.c.run == run)).scalar_one()
    return int(n), int(k)


def pending(settings: Settings) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(settings.redis_url)
    try:
        return list(r.xpending_range(f"{settings.stream_prefix}:samples", "workers", "-", "+", 1000))
    finally:
        r.close()



# -- one sample must not kill a worker -----------------------------------------------------


def test_a_sample_the_store_refuses_is_dead_lettered_alone(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[[Worker], threading.Thread]
) -> None:
    store = FlakyStore(settings.database_url)
    worker = make_worker(store=store, scorers=[LengthScorer()])
    worker.queue.add([payload(i) for i in range(5)] + [payload(5, text="POISON")] + [payload(i) for i in range(6, 9)])
    thread = running(worker)
    wait_for(lambda: read.count_scored(store, "o-run") == 8 and len(worker.queue.deadletters()) == 1)
    dead = worker.queue.deadletters()
    assert dead[0]["payload"]["id"] == "s5" and "value too long" in dead[0]["error"]
    assert dead[0]["deliveries"] == 1  # refused by the store: no point trying again
    worker.queue.add([payload(20)])  # and the worker goes on
    wait_for(lambda: read.count_scored(store, "o-run") == 9)
    assert thread.is_alive() and worker.queue.backlog() == 0


def test_unstorable_text_already_in_the_stream_cannot_kill_the_worker(
    settings: Settings, database_url: str, make_worker: Callable[..., Worker],
    running: Callable[[Worker], threading.Thread],
) -> None:
    """Entries queued before validation refused them (or by another producer): a lone
    surrogate made SQLite raise UnicodeEncodeError, NUL made PostgreSQL refuse; either one
    killed the worker thread while the API kept answering 202."""
    store = Store(database_url)
    worker = make_worker(store=store, scorers=[LengthScorer()])
    worker.queue.add([payload(0), payload(1, text="bad \ud800 text"), payload(2, text="nul \x00 here"),
                      payload(3, tags={"k\ud800": "v"}), payload(4)])
    worker.queue.redis.xadd(worker.queue.keys.samples, {"data": b"\xff not json"})
    thread = running(worker)
    wait_for(lambda: read.count_scored(store, "o-run") == 2 and len(worker.queue.deadletters()) == 4)
    errors = {d["payload"].get("id", "?"): d["error"] for d in worker.queue.deadletters()}
    assert "surrogate" in errors["s1"] and "NUL" in errors["s2"] and "unicode" in errors["s3"]
    assert "_undecodable" in str(worker.queue.deadletters()[-1]["payload"])
    worker.queue.add([payload(9)])
    wait_for(lambda: read.count_scored(store, "o-run") == 3)
    assert thread.is_alive()
    worker.stop()
    thread.join(timeout=15)
    store.close()


def test_a_store_error_while_building_contexts_is_isolated(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    running: Callable[[Worker], threading.Thread],
) -> None:
    class WantsBaseline(LengthScorer):
        wants_baseline = True  # makes the worker read each probe's previous answer

    real = read.previous_samples

    def previous(source: Any, run: str, step: int, probes: list[str]) -> dict[str, Any]:
        if "cursed" in probes:
            raise StoreError("database refused the read: invalid byte sequence")
        return real(source, run, step, probes)

    monkeypatch.setattr(read, "previous_samples", previous)
    worker = make_worker(scorers=[WantsBaseline()])
    worker.queue.add([payload(0, probe_id="p0"), payload(1, probe_id="cursed"), payload(2, probe_id="p2")])
    thread = running(worker)
    wait_for(lambda: read.count_scored(worker.store, "o-run") == 2 and len(worker.queue.deadletters()) == 1)
    assert "invalid byte sequence" in worker.queue.deadletters()[0]["error"]
    assert thread.is_alive() and worker.queue.backlog() == 0


@pytest.mark.parametrize("error", [redis.TimeoutError("Timeout reading from socket"),
                                   redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'"),
                                   redis.ConnectionError("Connection reset by peer")],
                         ids=["timeout", "oom", "reset"])
def test_any_redis_error_while_reading_or_acking_is_waited_out(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    running: Callable[[Worker], threading.Thread], error: Exception,
) -> None:
    class Counting(LengthScorer):
        scored = 0

        def score(self, items: Any) -> Any:
            Counting.scored += len(items)
            return super().score(items)

    worker = make_worker(scorers=[Counting()])
    failures = {"read": 2, "settle": 2}
    real_read, real_pipeline = worker.queue.redis.xreadgroup, worker.queue.redis.pipeline

    def xreadgroup(*args: Any, **kwargs: Any) -> Any:
        if failures["read"]:
            failures["read"] -= 1
            raise error
        return real_read(*args, **kwargs)

    class Pipeline:
        def __init__(self, **kwargs: Any) -> None:
            self.pipe = real_pipeline(**kwargs)
            self.acks = False

        def __getattr__(self, name: str) -> Any:
            if name == "xack":
                self.acks = True
            return getattr(self.pipe, name)

        def execute(self) -> Any:
            if self.acks and failures["settle"]:
                failures["settle"] -= 1
                self.pipe.reset()
                raise error
            return self.pipe.execute()

    monkeypatch.setattr(worker.queue.redis, "xreadgroup", xreadgroup)
    monkeypatch.setattr(worker.queue.redis, "pipeline", lambda **kw: Pipeline(**kw))
    worker.queue.add([payload(i) for i in range(4)])
    thread = running(worker)
    wait_for(lambda: failures == {"read": 0, "settle": 0} and worker.queue.backlog() == 0, timeout=30)
    assert thread.is_alive()
    assert rows(worker.store) == (4, 4 * per_sample()) and worker.queue.deadletters() == []
    assert Counting.scored == 4  # held and settled later, never scored again


# -- the store goes away: nothing lost, nothing dead-lettered, nothing stored twice ----------


def test_commit_failure_leaves_entries_pending_until_the_store_is_back(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[[Worker], threading.Thread]
) -> None:
    """Issue 18, item 1: a worker that acknowledged before (or inside) the failed commit
    would leave nothing pending here, and nothing stored afterwards."""
    s = settings.model_copy(update={"claim_idle_ms": 300, "max_deliveries": 2, "worker_heartbeat_s": 0.2})
    store = FlakyStore(s.database_url)
    store.down = True
    worker = make_worker(settings=s, store=store, scorers=[LengthScorer()], consumer="holder")
    other = make_worker(settings=s, scorers=[LengthScorer()], consumer="bystander")
    worker.queue.add([payload(i) for i in range(6)])
    running(worker)
    wait_for(lambda: len(pending(s)) == 6 and worker.status()["state"] == "waiting for the store")
    running(other)  # a second worker must not take the held batch over
    time.sleep(s.claim_idle_ms / 1000 * 6)  # many times claim_idle_ms
    held = pending(s)
    assert len(held) == 6, held
    assert {p["consumer"] for p in held} == {b"holder"}
    assert all(p["times_delivered"] == 1 for p in held)  # the outage costs no delivery
    assert all(p["time_since_delivered"] < s.claim_idle_ms for p in held)  # kept claimed
    reader = Store(s.database_url)
    assert rows(reader) == (0, 0) and worker.queue.deadletters() == []
    reader.close()
    worker.queue.add([payload(10)])  # meanwhile more arrive: not read by the holder
    store.down = False
    wait_for(lambda: read.count_scored(store, "o-run") == 7 and worker.queue.backlog() == 0)
    assert rows(store) == (7, 7 * per_sample())  # each stored once
    assert worker.queue.deadletters() == [] and pending(s) == []


def test_locked_sqlite_file_holds_the_batch_until_the_lock_goes(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    running: Callable[[Worker], threading.Thread],
) -> None:
    monkeypatch.setattr(store_module, "SQLITE_BUSY_S", 0.2)
    s = settings.model_copy(update={"claim_idle_ms": 300})
    store = Store(s.database_url)
    worker = make_worker(settings=s, store=store, scorers=[LengthScorer()])
    path = s.database_url.removeprefix("sqlite:///")
    locker = sqlite3.connect(path, timeout=5)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        worker.queue.add([payload(i) for i in range(3)])
        running(worker)
        wait_for(lambda: worker.status()["state"] == "waiting for the store")
        assert "locked" in worker.status()["detail"]
        time.sleep(1.0)
        assert [p["times_delivered"] for p in pending(s)] == [1, 1, 1]
    finally:
        locker.rollback()
        locker.close()
    wait_for(lambda: read.count_scored(store, "o-run") == 3 and worker.queue.backlog() == 0)
    assert rows(store)[0] == 3 and worker.queue.deadletters() == []


def test_a_slow_batch_is_not_taken_over_while_it_runs(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[[Worker], threading.Thread]
) -> None:
    s = settings.model_copy(update={"claim_idle_ms": 200})

    class Counting(LengthScorer):
        def __init__(self, sleep_s: float = 0.0) -> None:
            self.sleep_s, self.scored = sleep_s, 0

        def score(self, items: Any) -> Any:
            time.sleep(self.sleep_s)  # the slow one: ten times claim_idle_ms
            self.scored += len(items)
            return super().score(items)

    slow_scorer, fast_scorer = Counting(2.0), Counting()
    slow = make_worker(settings=s, scorers=[slow_scorer], consumer="slow")
    fast = make_worker(settings=s, scorers=[fast_scorer], consumer="fast")
    slow.queue.add([payload(i) for i in range(3)])
    running(slow)
    wait_for(lambda: len(pending(s)) == 3)
    running(fast)
    wait_for(lambda: read.count_scored(slow.store, "o-run") == 3 and slow.queue.backlog() == 0)
    # Had the fast worker taken the entries over, it would have scored them a second time.
    assert (slow_scorer.scored, fast_scorer.scored) == (3, 0)


# -- retries, timeouts -------------------------------------------------------------------------


def test_due_retries_move_back_once_whatever_their_format(settings: Settings) -> None:
    qs = [Queue(settings.redis_url, prefix=settings.stream_prefix, consumer=f"c{i}") for i in range(4)]
    r = qs[0].redis
    for i in range(50):
        r.zadd(qs[0].keys.retry, {f"{i:032x}" + json.dumps(payload(i)): time.time() - 1})
    # Written by an earlier version: a JSON object holding the payload.
    r.zadd(qs[0].keys.retry, {json.dumps({"nonce": "n", "payload": payload(99)}): time.time() - 1})
    r.zadd(qs[0].keys.retry, {"f" * 32 + json.dumps(payload(100)): time.time() + 3600})  # not due
    moved: list[int] = []
    threads = [threading.Thread(target=lambda q=q: moved.append(q.promote_due_retries(limit=7))) for q in qs * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while n := qs[0].promote_due_retries(limit=7):
        moved.append(n)
    entries = r.xrange(qs[0].keys.samples)
    ids = sorted(json.loads(f[b"data"])["id"] for _, f in entries)
    assert sum(moved) == 51 and ids == sorted(f"s{i}" for i in [*range(50), 99])
    assert r.zcard(qs[0].keys.retry) == 1
    for q in qs:
        q.close()


def test_promoting_a_retry_is_one_atomic_command(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZREM then XADD as two commands loses the retry if the worker dies in between."""
    q = Queue(settings.redis_url, prefix=settings.stream_prefix)
    q.redis.zadd(q.keys.retry, {"0" * 32 + json.dumps(payload(1)): time.time() - 1})
    sent: list[str] = []
    real = q.redis.execute_command

    def execute_command(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(q.redis, "execute_command", execute_command)
    assert q.promote_due_retries() == 1
    assert sent in (["EVALSHA"], ["EVALSHA", "EVAL"])  # EVAL: the script was not cached yet
    assert q.redis.zcard(q.keys.retry) == 0 and q.redis.xlen(q.keys.samples) == 1
    q.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a network partition."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    sock.close()


def test_redis_that_never_answers_times_out(settings: Settings, silent_server: str) -> None:
    s = settings.model_copy(update={"redis_url": silent_server, "redis_socket_timeout_s": 0.3})
    started = time.monotonic()
    with pytest.raises(QueueError, match="Timeout"):
        Queue.from_settings(s)
    assert time.monotonic() - started < 5
    with TestClient(create_app(s)) as api:
        started = time.monotonic()
        assert api.get("/healthz").status_code == 503
        r = api.post("/v1/runs/r/samples", json={"step": 1, "samples": [{"id": "a", "prompt": "", "completion": "x"}]})
        assert r.status_code == 503 and time.monotonic() - started < 5


# -- liveness --------------------------------------------------------------------------------


def test_healthz_reports_worker_liveness(settings: Settings, make_worker: Callable[..., Worker],
                                         running: Callable[[Worker], threading.Thread]) -> None:
    s = settings.model_copy(update={"worker_heartbeat_s": 0.2})
    store = FlakyStore(s.database_url)
    with TestClient(create_app(s)) as api:
        body = api.get("/healthz").json()
        assert body["status"] == "ok" and body["workers"] == [] and body["scoring"].startswith("no live worker")
        worker = make_worker(settings=s, store=store, scorers=[LengthScorer()], consumer="w-1")
        running(worker)
        wait_for(lambda: [w["name"] for w in api.get("/healthz").json()["workers"]] == ["w-1"])
        assert api.get("/healthz").json()["scoring"] == "ok"
        store.down = True
        worker.queue.add([payload(1)])
        wait_for(lambda: api.get("/healthz").json()["workers"][0]["state"] == "waiting for the store")
        body = api.get("/healthz").json()
        assert body["scoring"].startswith("stalled: waiting for the store")
        assert "server closed the connection" in body["workers"][0]["detail"]
        store.down = False
        wait_for(lambda: api.get("/healthz").json()["workers"][0]["state"] == "idle")
        worker.stop()
        wait_for(lambda: api.get("/healthz").json()["workers"] == [], timeout=10)


def test_a_silent_worker_drops_out_of_healthz(settings: Settings) -> None:
    """A worker killed outright deletes nothing: its heartbeat expires."""
    from judgeserve.liveness import Keeper

    q = Queue(settings.redis_url, prefix=settings.stream_prefix, consumer="doomed")
    keeper = Keeper(q, list, lambda: {"state": "idle", "detail": "", "since": time.time()}, 1.0)
    with TestClient(create_app(settings)) as api:
        keeper.beat()  # one heartbeat, then silence (as after SIGKILL)
        assert [w["name"] for w in api.get("/healthz").json()["workers"]] == ["doomed"]
        gone_by = time.monotonic() + 3 * 1.0  # three beats
        wait_for(lambda: api.get("/healthz").json()["workers"] == [], timeout=10)
        assert time.monotonic() >= gone_by - 0.5  # expired, not deleted early
    q.close()


def test_a_dead_worker_is_restarted(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    worker = make_worker(scorers=[LengthScorer()])
    real_run, calls = worker.run, []

    def run(**kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the worker thread dies")
        real_run(**kwargs)

    worker.run = run  # type: ignore[method-assign]
    t = threading.Thread(target=keep_running, args=(worker,), kwargs={"first_delay_s": 0.05}, daemon=True)
    t.start()
    worker.queue.add([payload(1)])
    wait_for(lambda: read.count_scored(worker.store, "o-run") == 1)
    assert len(calls) == 2 and t.is_alive()
    worker.stop()
    t.join(timeout=10)
    assert not t.is_alive()


def test_judgeserve_up_restarts_its_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    real_run, calls = Worker.run, []

    def run(self: Worker, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the worker thread dies")
        real_run(self, **kwargs)

    monkeypatch.setattr(Worker, "run", run)
    s = settings.model_copy(update={"disabled_scorers": ["diversity", "reference", "reference_lc", "judge", "memorization"]})
    with background_stack(s) as worker:
        url = f"http://{s.host}:{s.port}"
        r = httpx.post(f"{url}/v1/runs/up-run/samples", json={"step": 1, "samples": [{"id": "a", "prompt": "", "completion": "x"}]})
        assert r.status_code == 202
        wait_for(lambda: read.count_scored(worker.store, "up-run") == 1, timeout=30)
        assert len(calls) >= 2
