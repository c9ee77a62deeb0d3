"""The worker's loop, its status, its checkpoints and its command: driven for a bounded
time on a real Redis and a real SQLite store, with small scorers defined here."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from judgeserve import read
from judgeserve.exceptions import QueueError, StoreError, StoreUnavailable
from judgeserve.schema import Sample, Score
from judgeserve.scorers import Flag, SampleScorer, SetResult, SetScorer
from judgeserve.settings import Settings
from judgeserve.store import Store, scorer_status
from judgeserve.stream import Queue
from judgeserve.worker import Worker, run_worker

from .conftest import free_port, wait_for

# Every built-in but the length scorer: a worker made from settings loads nothing heavy.
HEAVY = ["diversity", "judge", "reference", "reference_lc", "repetition", "truncation"]


def payload(i: int, run: str = "l-run", step: int = 1, text: str = "a b c", **extra: Any) -> dict[str, Any]:
    return {"run": run, "step": step, "id": f"s{i}", "prompt": "p", "completion": text, **extra}


class Words(SampleScorer):
    name = "words"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return [[Score(scorer="words.count", value=float(len(s.completion.split())))] for s in samples]


class Spread(SetScorer):
    """Distinct completions over samples; flags a step whose completions are all alike."""

    name = "spread"

    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        distinct = len({s.completion for s in samples}) / len(samples)
        flags = [Flag("spread.collapse", message="all alike")] if distinct < 0.5 else []
        return SetResult(metrics={"spread.distinct": distinct}, flags=flags)


class Broken(SetScorer):
    name = "broken"

    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        raise RuntimeError("no model loaded\nsee the log")


def status_rows(store: Store, run: str = "l-run") -> list[tuple[int, str, str, str, int]]:
    with store.begin() as conn:
        rows = conn.execute(select(scorer_status).where(scorer_status.c.run == run)).mappings()
        return sorted((r["step"], r["scorer"], r["kind"], r["reason"], r["n"]) for r in rows)


def aggs(store: Store, run: str = "l-run", step: int = 1) -> dict[str, tuple[float, int]]:
    return {m: (a["mean"], a["n"]) for m, a in read.step_aggregates(store, run, step).items()}



# -- the loop ----------------------------------------------------------------------------------


def test_an_idle_worker_exits_when_told_to_and_its_status_holds_still(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[..., threading.Thread]
) -> None:
    worker = make_worker(scorers=[Words()], hooks=())
    assert {k: v for k, v in worker.status().items() if k != "since"} == {"state": "starting", "detail": ""}
    assert worker.wait_stopped(0.01) is False and not worker.stopped
    worker.queue.add([payload(0), payload(1)])
    t = running(worker, idle_exit_s=0.2)
    t.join(timeout=10)
    assert not t.is_alive()
    assert read.count_scored(worker.store, "l-run") == 2 and worker.queue.backlog() == 0
    assert worker.status()["state"] == "idle" and worker.status()["detail"] == ""
    # The same state again keeps its "since"; a new one, or new words, starts it anew.
    since = worker.status()["since"]
    worker._set_status("idle")
    assert worker.status()["since"] == since
    worker._set_status("scoring", "2 entries")
    assert worker.status()["state"] == "scoring" and worker.status()["since"] >= since
    later = worker.status()["since"]
    time.sleep(0.01)
    worker._set_status("scoring", "3 entries")
    assert worker.status()["detail"] == "3 entries" and worker.status()["since"] > later
    worker._set_status("recovering", "x" * 600)
    assert worker.status()["detail"] == "x" * 500


def test_a_stopped_worker_recomputes_its_checkpoints_before_it_returns(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[..., threading.Thread]
) -> None:
    s = settings.model_copy(update={"checkpoint_delay_s": 3600.0})
    worker: Worker

    class Stopping(Words):
        def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
            worker.stop()  # stop asked while a batch is scored: it is finished first
            return super().score(samples)

    worker = make_worker(settings=s, scorers=[Stopping()], hooks=())
    worker.queue.add([payload(0, text="a b"), payload(1, text="a b c d")])
    t = running(worker)
    t.join(timeout=10)
    assert not t.is_alive() and worker.queue.backlog() == 0
    assert aggs(worker.store) == {"words.count": (3.0, 2)}
    assert worker.stopped and worker.wait_stopped(5.0) is True


def watch(worker: Worker, fail: Callable[[int], Exception | None]) -> list[dict[str, Any]]:
    """Make the loop's first Redis call fail as ``fail(call)`` says; record the status the
    worker shows at each call (the one it showed while it waited)."""
    seen: list[dict[str, Any]] = []
    real = worker.queue.promote_due_retries

    def promote() -> int:
        seen.append(worker.status())
        err = fail(len(seen))
        if err is not None:
            raise err
        return real()

    worker.queue.promote_due_retries = promote  # type: ignore[method-assign,assignment]
    return seen


@pytest.mark.parametrize(("error", "state", "detail"), [
    (QueueError("Redis unavailable (read): Connection refused"), "waiting for Redis",
     "waiting for Redis: Redis unavailable (read): Connection refused"),
    (RuntimeError("a bug"), "recovering", "RuntimeError: a bug"),
], ids=["redis", "bug"])
def test_a_failing_loop_says_why_waits_and_goes_on(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[..., threading.Thread],
    error: Exception, state: str, detail: str, caplog: pytest.LogCaptureFixture,
) -> None:
    worker = make_worker(scorers=[Words()], hooks=())
    seen = watch(worker, lambda n: error if n in (1, 3) else None)
    worker.queue.add([payload(0)])
    running(worker)
    wait_for(lambda: read.count_scored(worker.store, "l-run") == 1 and len(seen) >= 2, timeout=10)
    assert (seen[1]["state"], seen[1]["detail"]) == (state, detail)
    wait_for(lambda: len(seen) >= 4, timeout=10)
    # A success in between: the next failure waits the first, shortest delay again.
    assert caplog.messages.count(f"{detail}; trying again in 0.5s") == 2
    assert ("worker loop failed; going on" in caplog.messages) is (state == "recovering")
    wait_for(lambda: worker.status()["state"] == "idle", timeout=10)
    time.sleep(0.6)  # more than one empty read: the worker goes on all the same
    worker.queue.add([payload(1)])
    wait_for(lambda: read.count_scored(worker.store, "l-run") == 2, timeout=10)


def test_while_the_store_is_down_the_batch_is_held_and_nothing_more_is_read(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[..., threading.Thread]
) -> None:
    from .test_worker_batches import FlakyStore

    s = settings.model_copy(update={"worker_batch": 2})
    store = FlakyStore(s.database_url)
    store.down = True
    worker = make_worker(settings=s, store=store, scorers=[Words()], hooks=())
    worker.queue.add([payload(i) for i in range(4)])
    running(worker)
    wait_for(lambda: worker.status()["state"] == "waiting for the store", timeout=10)
    assert worker.status()["detail"] == "store unavailable: commit failed: server closed the connection"
    time.sleep(0.8)  # more than one wait: it tries the held batch again, reads nothing
    assert worker.queue.redis.xpending(worker.queue.keys.samples, "workers")["pending"] == 2  # type: ignore[index]
    store.down = False
    wait_for(lambda: read.count_scored(store, "l-run") == 4 and worker.queue.backlog() == 0, timeout=15)
    assert worker.queue.deadletters() == []
    store.close()


def test_redis_down_while_acknowledging_is_waited_out_in_the_loop(
    settings: Settings, make_worker: Callable[..., Worker], running: Callable[..., threading.Thread]
) -> None:
    import redis

    worker = make_worker(scorers=[Words()], hooks=())
    real = worker.queue.redis.pipeline
    fail = [2]
    seen: list[dict[str, Any]] = []

    def pipeline(**kw: Any) -> Any:
        if kw.get("transaction") and fail[0]:
            seen.append(worker.status())
            fail[0] -= 1
            raise redis.ConnectionError("Connection refused")
        return real(**kw)

    worker.queue.redis.pipeline = pipeline  # type: ignore[method-assign,assignment]
    worker.queue.add([payload(0)])
    running(worker)
    wait_for(lambda: worker.queue.backlog() == 0 and fail[0] == 0, timeout=15)
    assert seen[1]["state"] == "waiting for Redis"
    assert seen[1]["detail"].startswith("Redis unavailable: ")
    assert read.count_scored(worker.store, "l-run") == 1


# -- checkpoints -------------------------------------------------------------------------------


def test_a_complete_checkpoint_runs_its_hooks_once(
    settings: Settings, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, Any, str, int]] = []

    def hook(name: str) -> Callable[[Store, str, int], None]:
        def run(store: Store, run: str, step: int) -> None:
            calls.append((name, store, run, step))
            if name == "bad":
                raise RuntimeError("hook failed")
        return run

    worker = make_worker(scorers=[Words()], hooks=[hook("first"), hook("bad"), hook("last")])
    worker.queue.add([payload(0, expected=3), payload(1, text="a")])
    worker.process(worker.queue.read(10, block_ms=50))
    assert calls == []  # two of three: still filling
    assert aggs(worker.store) == {"words.count": (2.0, 2)}  # recomputed meanwhile
    assert read.step_evaluation(worker.store, "l-run", 1)["evaluated"] is None
    worker.queue.add([payload(2, text="a b c d e")])
    worker.process(worker.queue.read(10, block_ms=50))
    assert calls == [(n, worker.store, "l-run", 1) for n in ("first", "bad", "last")]
    assert caplog.messages == ["checkpoint hook failed on l-run@1"]
    evaluation = read.step_evaluation(worker.store, "l-run", 1)
    assert evaluation["evaluated"] is not None and evaluation["n"] == 3
    assert aggs(worker.store) == {"words.count": (3.0, 3)}
    worker.flush_checkpoints(idle=True)
    assert len(calls) == 3  # evaluated once


def test_an_idle_checkpoint_is_complete_after_checkpoint_idle_s(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    calls: list[tuple[str, int]] = []
    s = settings.model_copy(update={"checkpoint_idle_s": 0.0})
    worker = make_worker(settings=s, scorers=[Words()], hooks=[lambda _s, r, st: calls.append((r, st))])
    worker.queue.add([payload(0), payload(1, step=2)])
    worker.process(worker.queue.read(10, block_ms=50))
    assert sorted(calls) == [("l-run", 1), ("l-run", 2)]


def test_checkpoints_are_recomputed_at_most_every_delay_while_samples_arrive(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    calls: list[tuple[str, int]] = []
    s = settings.model_copy(update={"checkpoint_delay_s": 3600.0})
    worker = make_worker(settings=s, scorers=[Words()], hooks=[lambda _s, r, st: calls.append((r, st))])
    worker.flush_checkpoints(idle=False)  # looked for complete checkpoints just now
    worker.queue.add([payload(0, expected=1), payload(1, step=2, expected=5)])
    result = worker.process(worker.queue.read(10, block_ms=50), defer_checkpoints=True)
    assert result.checkpoints == {("l-run", 1), ("l-run", 2)}
    worker.flush_checkpoints(idle=False)
    # Not due yet, and the store was asked less than a second ago.
    assert calls == [] and aggs(worker.store) == {} and aggs(worker.store, step=2) == {}
    time.sleep(1.05)
    worker.flush_checkpoints(idle=False)
    assert calls == [("l-run", 1)] and aggs(worker.store) == {"words.count": (3.0, 1)}
    assert aggs(worker.store, step=2) == {}  # still filling, recomputed later
    worker.flush_checkpoints(idle=True)
    assert aggs(worker.store, step=2) == {"words.count": (3.0, 1)} and calls == [("l-run", 1)]
    now = settings.model_copy(update={"checkpoint_delay_s": 0.0})
    eager = make_worker(settings=now, scorers=[Words()], hooks=())
    eager.queue.add([payload(5, run="eager", expected=9)])
    eager.process(eager.queue.read(10, block_ms=50), defer_checkpoints=True)
    eager.flush_checkpoints(idle=False)
    assert aggs(eager.store, run="eager") == {"words.count": (3.0, 1)}


def test_a_checkpoint_is_recomputed_again_once_the_store_is_back(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = make_worker(scorers=[Words()], hooks=())
    worker.queue.add([payload(0, expected=5), payload(1, step=2, expected=5)])
    worker.process(worker.queue.read(10, block_ms=50), defer_checkpoints=True)
    real = worker.store.step_score_values
    errors: dict[int, Exception] = {1: StoreUnavailable("database is locked"), 2: RuntimeError("a bug")}

    def values(run: str, step: int) -> Any:
        if step in errors:
            raise errors[step]
        return real(run, step)

    monkeypatch.setattr(worker.store, "step_score_values", values)
    worker.flush_checkpoints(idle=True)
    assert caplog.messages == ["checkpoint l-run@1 not updated: database is locked",
                               "checkpoint l-run@2 not updated"]
    errors.clear()
    worker.flush_checkpoints(idle=True)
    # Unavailable: tried again; a bug: dropped (the next sample of the step marks it again).
    assert aggs(worker.store) == {"words.count": (3.0, 1)} and aggs(worker.store, step=2) == {}


def test_a_checkpoint_that_cannot_be_evaluated_is_offered_again(
    settings: Settings, make_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    worker = make_worker(scorers=[Words()], hooks=[lambda _s, _r, st: calls.append(st)])
    real_mark, real_complete = worker.store.mark_evaluated, worker.store.complete_checkpoints
    failing = {"mark": StoreError("disk full"), "complete": StoreError("no connection")}

    def mark(run: str, step: int) -> None:
        if "mark" in failing:
            raise failing["mark"]
        real_mark(run, step)

    def complete(idle_s: float) -> list[tuple[str, int]]:
        if "complete" in failing:
            raise failing["complete"]
        return real_complete(idle_s)

    monkeypatch.setattr(worker.store, "mark_evaluated", mark)
    monkeypatch.setattr(worker.store, "complete_checkpoints", complete)
    worker.queue.add([payload(0, expected=1)])
    worker.process(worker.queue.read(10, block_ms=50))
    # Cannot ask which are complete: the touched ones are recomputed all the same.
    assert calls == [] and aggs(worker.store) == {"words.count": (3.0, 1)}
    del failing["complete"]
    worker.flush_checkpoints(idle=True)
    assert calls == [1] and read.step_evaluation(worker.store, "l-run", 1)["evaluated"] is None
    assert caplog.messages == ["cannot look for complete checkpoints: no connection",
                               "checkpoint l-run@1 not evaluated: disk full"]
    del failing["mark"]
    worker.flush_checkpoints(idle=True)
    worker.flush_checkpoints(idle=True)
    assert calls == [1, 1] and read.step_evaluation(worker.store, "l-run", 1)["evaluated"] is not None


def test_set_scorers_score_the_whole_step_and_say_why_they_did_not(
    settings: Settings, make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(scorers=[Words(), Spread(), Broken()], hooks=())
    assert [s.name for s in worker.set_scorers] == ["spread", "broken"]
    worker.queue.add([payload(0)])
    worker.process(worker.queue.read(10, block_ms=50))
    assert status_rows(worker.store) == [
        (1, "broken", "skipped", "needs 2 samples, the step has 1", 1),
        (1, "spread", "skipped", "needs 2 samples, the step has 1", 1),
    ]
    assert aggs(worker.store) == {"words.count": (3.0, 1)}
    worker.queue.add([payload(1), payload(2)])
    worker.process(worker.queue.read(10, block_ms=50))
    # The last recompute's status replaces the one before.
    assert status_rows(worker.store) == [(1, "broken", "failed", "RuntimeError: no model loaded", 3)]
    assert "set scorer broken failed on l-run@1" in caplog.messages
    assert aggs(worker.store) == {"words.count": (3.0, 3), "spread.distinct": (pytest.approx(1 / 3), 3)}
    agg = read.step_aggregates(worker.store, "l-run", 1)["spread.distinct"]
    assert (agg["ci_low"], agg["ci_high"]) == (None, None)
    flags = read.step_flags(worker.store, "l-run", 1)
    assert [(f["name"], f["message"]) for f in flags] == [("spread.collapse", "all alike")]
    worker.queue.add([payload(3, text="x y"), payload(4, text="z"), payload(5, text="w w")])
    worker.process(worker.queue.read(10, block_ms=50))
    assert read.step_flags(worker.store, "l-run", 1) == []  # the flag of the last recompute only


class Judge(SampleScorer):
    """Judge scores of two judge versions: the step's aggregate must cover only one."""

    name = "judge"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        out = []
        for s in samples:
            old = s.id == "s2"
            details = {"judge_model": "m", "judge_backend": "b", "prompt_hash": "h",
                       "rubric_version": "v1" if old else "v2"}
            out.append([Score(scorer="judge.helpful.score", value=0.0 if old else 1.0, details=details)])
        return out


def test_a_judge_aggregate_covers_the_version_that_scored_most(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    worker = make_worker(scorers=[Judge()], hooks=())
    worker.queue.add([payload(0), payload(1), payload(2)])
    worker.process(worker.queue.read(10, block_ms=50))
    assert aggs(worker.store) == {"judge.helpful.score": (1.0, 2)}  # a mix would be (0.67, 3)
    versions = read.step_judge_versions(worker.store, "l-run", 1)["judge.helpful.score"]
    assert versions["other_versions"][0]["n"] == 1
    # Both versions are recorded as the worker met them (drift control re-scores labels).
    with worker.store.begin() as conn:
        from judgeserve.store import judge_versions

        seen = conn.execute(select(judge_versions.c.rubric_version)).scalars().all()
    assert sorted(seen) == ["v1", "v2"]
    # Counted for /metrics under the scorer's family, the first part of the name.
    from judgeserve.telemetry import read_shared

    counts = read_shared(worker.queue.redis, worker.queue.keys)
    assert counts[("judgeserve_samples_scored_total", (("scorer", "judge"),))] == 3


# -- lifecycle ---------------------------------------------------------------------------------


def test_close_closes_the_scorers_and_hooks_but_not_what_the_caller_owns(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Any] = []
    real_store, real_queue = Store.close, Queue.close

    def close_store(self: Store) -> None:
        closed.append(self)
        real_store(self)

    def close_queue(self: Queue) -> None:
        closed.append(self)
        real_queue(self)

    monkeypatch.setattr(Store, "close", close_store)
    monkeypatch.setattr(Queue, "close", close_queue)

    class Closing(Words):
        def close(self) -> None:
            closed.append("scorer")

    class Hook:
        def __call__(self, store: Store, run: str, step: int) -> None: ...

        def close(self) -> None:
            closed.append("hook")

    store = Store(settings.database_url)
    worker = Worker(settings, store=store, scorers=[Closing(), Spread()], hooks=[Hook(), lambda *a: None])
    worker.queue.add([payload(0)])
    worker.process(worker.queue.read(10, block_ms=50))
    worker.close()
    assert closed == ["scorer", "hook", worker.queue]  # its own queue; the store is the caller's
    assert worker.telemetry.flush()
    closed.clear()
    queue = Queue.from_settings(settings, "mine")
    other = Worker(settings, queue=queue, scorers=[Words()], hooks=())
    other.close()
    assert closed == [other.store]
    queue.close()
    store.close()


def test_hooks_default_to_the_alert_engine_unless_alerts_are_off(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    on = make_worker(scorers=[Words()])
    assert [type(h).__name__ for h in on.hooks] == ["AlertEngine"]
    off = make_worker(settings=settings.model_copy(update={"alerts": False}), scorers=[Words()])
    assert off.hooks == []


def test_a_worker_that_cannot_reach_redis_closes_its_store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[Store] = []
    real = Store.close

    def close(self: Store) -> None:
        closed.append(self)
        real(self)

    monkeypatch.setattr(Store, "close", close)
    s = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0",
                                    "redis_connect_timeout_s": 0.5})
    mine = Store(settings.database_url)
    with pytest.raises(QueueError):
        Worker(s, store=mine, scorers=[Words()])
    assert closed == []  # the caller's
    with pytest.raises(QueueError):
        Worker(s, scorers=[Words()])
    assert len(closed) == 1
    mine.close()


# -- judgeserve worker ---------------------------------------------------------------------------


@pytest.fixture
def signals() -> Iterator[None]:
    """run_worker installs its own SIGTERM/SIGINT handlers: put the test runner's back."""
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in old.items():
        signal.signal(s, handler)


def sigterm_when(predicate: Callable[[], bool], signum: int = signal.SIGTERM) -> threading.Thread:
    def send() -> None:
        deadline = time.monotonic() + 20
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


def test_judgeserve_worker_consumes_as_its_name_until_sigterm(
    settings: Settings, signals: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="judgeserve")
    s = settings.model_copy(update={"disabled_scorers": HEAVY, "alerts": False})
    q = Queue(s.redis_url, prefix=s.stream_prefix, consumer="producer")
    q.add([payload(0), payload(1)])
    store = Store(s.database_url)
    sender = sigterm_when(lambda: read.count_scored(store, "l-run") == 2)
    started = time.monotonic()
    run_worker(s, consumer="named-1")
    sender.join(timeout=5)
    assert time.monotonic() - started < 20
    assert read.count_scored(store, "l-run") == 2 and q.backlog() == 0
    consumers = [c["name"] for c in q.redis.xinfo_consumers(q.keys.samples, "workers")]  # type: ignore[union-attr]
    assert "named-1" in [c.decode() if isinstance(c, bytes) else c for c in consumers]
    messages = [r.getMessage() for r in caplog.records if r.name == "judgeserve.worker"]
    assert f"worker named-1 consuming {s.stream_prefix}:samples" in messages
    assert f"signal {int(signal.SIGTERM)}: finishing the batch in flight" in messages
    from judgeserve.detectors.memorization import describe_indexes

    assert describe_indexes(s.index_dir) in messages  # memorization runs: where its indexes are
    for warning in q.durability_warnings():
        assert warning in messages
    q.close()
    store.close()


def test_judgeserve_worker_waits_for_redis_at_start_and_stops_on_sigterm(
    settings: Settings, signals: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="judgeserve")
    port = free_port()
    s = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0", "redis_connect_timeout_s": 0.5,
                                    "disabled_scorers": [*HEAVY, "memorization"], "alerts": False})

    def waiting() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot start yet: ")]

    sender = sigterm_when(lambda: len(waiting()) >= 2, signal.SIGINT)
    started = time.monotonic()
    run_worker(s)
    sender.join(timeout=5)
    assert time.monotonic() - started < 10
    first, second = waiting()[:2]
    assert str(port) in first and first.endswith("; trying again in 0.5s")
    assert second.endswith("; trying again in 1.0s")
    messages = [r.getMessage() for r in caplog.records]
    assert f"signal {int(signal.SIGINT)}: finishing the batch in flight" in messages
