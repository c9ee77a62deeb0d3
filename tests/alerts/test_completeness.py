"""Rules run once per checkpoint, when it is complete; aggregates never lose samples.

Real Redis stream, real store, real worker, real length scorer: a rule on the mean length
sees the whole checkpoint or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from judgeserve import read
from judgeserve.aggregates import aggregate
from judgeserve.alerts import AlertEngine, parse_rules
from judgeserve.client.agent import plan
from judgeserve.detectors.length import LengthScorer
from judgeserve.schema import Aggregate
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.worker import Worker

LONG_ANSWERS = parse_rules(
    """
rules:
  - name: long_answers
    type: threshold
    metric: length.tokens
    above: 5
"""
)


class Calls:
    """A checkpoint hook that records what it was called with, and what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, store: Store, run: str, step: int) -> None:
        agg = read.step_aggregates(store, run, step)["length.tokens"]
        self.calls.append((run, step, agg["n"]))


def send(worker: Worker, run: str, step: int, lengths: list[int], expected: int | None = None,
         start: int = 0) -> None:
    """Samples as the API queues them, then one batch through the worker."""
    extra: dict[str, Any] = {} if expected is None else {"expected": expected}
    worker.queue.add([
        {"run": run, "step": step, "id": f"{step}-{start + i}", "prompt": "p",
         "completion": " ".join(["word"] * n), **extra}
        for i, n in enumerate(lengths)
    ])
    worker.process(worker.queue.read(100, block_ms=100))


def test_rules_wait_for_every_expected_sample(
    settings: Settings, database_url: str, make_worker: Callable[..., Worker]
) -> None:
    engine, calls = AlertEngine(LONG_ANSWERS), Calls()
    s = settings.model_copy(update={"database_url": database_url})
    worker = make_worker(settings=s, scorers=[LengthScorer()], hooks=[engine, calls])
    # The first third of the checkpoint is long answers: its mean (10) is over the bound.
    send(worker, "r", 10, [10] * 4, expected=12)
    assert calls.calls == [] and read.list_alerts(worker.store, "r") == []
    assert read.step_aggregates(worker.store, "r", 10)["length.tokens"]["n"] == 4  # progress shows
    # The whole checkpoint's mean is 4: no alert, and the rules ran once, on all 12.
    send(worker, "r", 10, [1] * 8, expected=12, start=4)
    assert calls.calls == [("r", 10, 12)]
    assert read.list_alerts(worker.store, "r") == []
    state = read.step_evaluation(worker.store, "r", 10)
    assert state["expected"] == 12 and state["n"] == 12 and state["evaluated"] is not None
    # A sample arriving late updates the aggregate but does not run the rules again.
    send(worker, "r", 10, [30], start=12)
    worker.flush_checkpoints()
    assert calls.calls == [("r", 10, 12)]
    assert read.step_aggregates(worker.store, "r", 10)["length.tokens"]["n"] == 13


def test_without_expected_count_rules_run_once_idle(settings: Settings, make_worker: Callable[..., Worker]) -> None:
    calls = Calls()
    s = settings.model_copy(update={"checkpoint_idle_s": 0.5})
    worker = make_worker(settings=s, scorers=[LengthScorer()], hooks=[calls])
    send(worker, "r", 1, [3] * 4)
    send(worker, "r", 1, [3] * 4, start=4)
    assert calls.calls == []  # samples still arriving: not complete
    time.sleep(0.6)
    worker.flush_checkpoints()
    assert calls.calls == [("r", 1, 8)]
    worker.flush_checkpoints()
    assert calls.calls == [("r", 1, 8)]


def test_another_worker_evaluates_what_a_stopped_one_stored(
    settings: Settings, make_worker: Callable[..., Worker]
) -> None:
    s = settings.model_copy(update={"checkpoint_idle_s": 0.2})
    first = make_worker(settings=s, scorers=[LengthScorer()], hooks=[])
    send(first, "r", 7, [10] * 6)
    first.stop()
    time.sleep(0.3)
    calls = Calls()
    second = make_worker(settings=s, scorers=[LengthScorer()], hooks=[calls])
    second.flush_checkpoints()  # nothing of its own was touched: the store says it is due
    assert calls.calls == [("r", 7, 6)]


def test_expected_count_set_before_any_sample(make_worker: Callable[..., Worker]) -> None:
    """A generation worker knows the probe set before it generates: the count it sets
    holds, and a checkpoint with no sample is never evaluated."""
    calls = Calls()
    worker = make_worker(scorers=[LengthScorer()], hooks=[calls])
    worker.store.set_expected("r", 3, 5)
    worker.flush_checkpoints()
    assert calls.calls == []
    send(worker, "r", 3, [2] * 4)
    assert calls.calls == []
    send(worker, "r", 3, [2], start=4)
    assert calls.calls == [("r", 3, 5)]


def test_an_aggregate_is_never_replaced_by_one_from_fewer_samples(database_url: str) -> None:
    store = Store(database_url)
    try:
        full = aggregate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        with store.begin() as conn:
            store.save_aggregates(conn, "r", 1, {"m": full})
        with store.begin() as conn:  # a worker that saw only the first two samples
            store.save_aggregates(conn, "r", 1, {"m": aggregate([1.0, 2.0]), "other": aggregate([5.0])})
        got = read.step_aggregates(store, "r", 1)
        assert got["m"] == full.model_dump() and got["other"]["n"] == 1
        more = Aggregate(mean=3.0, ci_low=2.0, ci_high=4.0, n=6)  # as many samples: replaces
        with store.begin() as conn:
            store.save_aggregates(conn, "r", 1, {"m": more})
        assert read.step_aggregates(store, "r", 1)["m"] == more.model_dump()
    finally:
        store.close()


def test_the_sdk_never_merges_requests_that_announce_different_counts() -> None:
    def line(expected: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"step": 1, "samples": [{"id": "a", "completion": "x"}]}
        if expected is not None:
            body["expected"] = expected
        return {"path": "/v1/runs/r/samples", "body": body}

    requests = plan([(1, line(2)), (2, line(2)), (3, line(None)), (4, line(3))])
    assert [(len(r["body"]["samples"]), r["body"].get("expected")) for r in requests] == [
        (2, 2), (1, None), (1, 3)
    ]
