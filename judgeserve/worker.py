"""The worker: consume → score → store → aggregate → alert, then acknowledge.

The one place that joins the queue, the scorers, the store and the alerts. A batch is
acknowledged only after its rows are committed; a scorer that fails on one sample fails
only that sample, which is retried and finally dead-lettered by the queue.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .exceptions import QueueError, StoreError
from .queue import Entry, Queue
from .schema import Aggregate, Sample, Score
from .scorers import AnyScorer, SampleScorer, SetScorer, load_scorers
from .settings import Settings
from .store import Store

__all__ = ["Worker", "BatchResult", "run_worker"]

log = logging.getLogger(__name__)

CheckpointHook = Callable[[Store, str, int], None]


@dataclass
class BatchResult:
    stored: int = 0
    failed: int = 0
    dead: int = 0
    checkpoints: set[tuple[str, int]] = field(default_factory=set)


class Worker:
    """Scores batches from the stream until :meth:`stop` is called."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        queue: Queue | None = None,
        scorers: Sequence[AnyScorer] | None = None,
        consumer: str | None = None,
        hooks: Sequence[CheckpointHook] = (),
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store or Store(settings.database_url)
        self.queue = queue or Queue(
            settings.redis_url,
            prefix=settings.stream_prefix,
            group=settings.consumer_group,
            consumer=consumer,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=settings.claim_idle_ms,
        )
        loaded = (
            list(scorers)
            if scorers is not None
            else load_scorers(settings.scorers, settings.disabled_scorers)
        )
        self.sample_scorers = [s for s in loaded if isinstance(s, SampleScorer)]
        self.set_scorers = [s for s in loaded if isinstance(s, SetScorer)]
        self.hooks = list(hooks)
        self._stop = threading.Event()

    # -- loop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in flight, acknowledge it, then return from :meth:`run`."""
        self._stop.set()

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Process batches until stopped (or, for tools and tests, idle for ``idle_exit_s``)."""
        idle_since = time.monotonic()
        backoff = 0.5
        while not self._stop.is_set():
            try:
                entries = self.queue.read(self.settings.worker_batch, block_ms=500)
            except QueueError as e:
                log.warning("%s; retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if not entries:
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    return
                continue
            self.process(entries)
            idle_since = time.monotonic()

    def close(self) -> None:
        every: list[AnyScorer] = [*self.sample_scorers, *self.set_scorers]
        for s in every:
            s.close()
        self.queue.close()
        if self._own_store:
            self.store.close()

    # -- one batch ---------------------------------------------------------------------------

    def process(self, entries: list[Entry]) -> BatchResult:
        result = BatchResult()
        good: list[tuple[Entry, Sample]] = []
        for e in entries:
            try:
                good.append((e, _to_sample(e.payload)))
            except ValidationError as err:
                # A payload that cannot be parsed never will be: dead-letter it at once.
                e.deliveries = self.queue.max_deliveries
                self.queue.fail(e, f"invalid payload: {err}")
                result.dead += 1

        scored, errors = self._score([s for _, s in good])
        ok = [(e, s) for e, s in good if s.id_key not in errors]
        try:
            with self.store.begin() as conn:
                runs: dict[str, tuple[int, list[str] | None]] = {}
                for e, s in ok:
                    step, rubrics = runs.get(s.run, (0, None))
                    runs[s.run] = (max(step, s.step), e.payload.get("rubrics") or rubrics)
                for run, (step, rubrics) in runs.items():
                    self.store.upsert_run(conn, run, step, rubrics)
                self.store.save_samples(conn, [s for _, s in ok])
                for _, s in ok:
                    self.store.save_scores(conn, s.run, s.step, s.id, scored[s.id_key])
        except StoreError as err:
            # Nothing acknowledged: every entry comes back after claim_idle_ms.
            log.error("store failed, batch left pending: %s", err)
            result.failed = len(good)
            return result

        self.queue.ack([e.id for e, _ in ok])
        result.stored = len(ok)
        for e, s in good:
            if s.id_key in errors:
                result.failed += 1
                if self.queue.fail(e, errors[s.id_key]):
                    result.dead += 1
        result.checkpoints = {(s.run, s.step) for _, s in ok}
        for run, step in sorted(result.checkpoints):
            self.update_checkpoint(run, step)
        return result

    def _score(self, batch: list[Sample]) -> tuple[dict[tuple[str, str], list[Score]], dict[Any, str]]:
        scored: dict[tuple[str, str], list[Score]] = {s.id_key: [] for s in batch}
        errors: dict[Any, str] = {}
        for scorer in self.sample_scorers:
            try:
                out = scorer.score(batch)
                for s, sc in zip(batch, out, strict=True):
                    scored[s.id_key].extend(sc)
                continue
            except Exception:
                log.exception("scorer %s failed on a batch; isolating samples", scorer.name)
            for s in batch:  # one at a time, to find the poison sample
                if s.id_key in errors:
                    continue
                try:
                    scored[s.id_key].extend(scorer.score([s])[0])
                except Exception as err:
                    errors[s.id_key] = f"{scorer.name}: {type(err).__name__}: {err}\n" + (
                        traceback.format_exc(limit=3)
                    )
        return scored, errors

    def update_checkpoint(self, run: str, step: int) -> None:
        """Recompute a checkpoint's aggregates and set-level metrics, then run the hooks."""
        from .aggregates import aggregate

        values = self.store.step_score_values(run, step)
        aggs: dict[str, Aggregate] = {m: aggregate(v) for m, v in values.items()}
        flags = []
        if self.set_scorers:
            samples = self.store.all_step_samples(run, step)
            for scorer in self.set_scorers:
                if len(samples) < scorer.min_samples:
                    continue
                try:
                    res = scorer.score_set(samples)
                except Exception:
                    log.exception("set scorer %s failed on %s@%d", scorer.name, run, step)
                    continue
                for m, v in res.metrics.items():
                    aggs[m] = Aggregate(mean=v, ci_low=None, ci_high=None, n=len(samples))
                flags.extend(res.flags)
        with self.store.begin() as conn:
            self.store.save_aggregates(conn, run, step, aggs)
            if self.set_scorers:
                self.store.save_flags(conn, run, step, flags)
        for hook in self.hooks:
            try:
                hook(self.store, run, step)
            except Exception:
                log.exception("checkpoint hook failed on %s@%d", run, step)


def _to_sample(payload: dict[str, Any]) -> Sample:
    data = {k: v for k, v in payload.items() if k != "rubrics"}
    return Sample.model_validate(data)


def run_worker(settings: Settings, *, consumer: str | None = None) -> None:
    """Entry point of ``judgeserve worker``: SIGTERM/SIGINT finish the batch in flight."""
    worker = Worker(settings, consumer=consumer)

    def _graceful(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the batch in flight", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    for warning in worker.queue.durability_warnings():
        log.warning(warning)
    log.info("worker %s consuming %s", worker.queue.consumer, worker.queue.keys.samples)
    try:
        worker.run()
    finally:
        worker.close()
