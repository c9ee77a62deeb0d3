"""The worker: consume → score → store → aggregate → alert, then acknowledge.

The one place that joins the queue, the scorers, the store and the alerts. A batch is
acknowledged only after its rows are committed; a scorer that fails on a sample costs
only that scorer's scores of that sample, which are retried later and finally
dead-lettered with the error.

A checkpoint's aggregates are recomputed while its samples arrive (the web view shows
progress), but its checkpoint hooks (the alert rules) run once, when the checkpoint is
complete: as many samples stored as its sender said it will have (``expected``), or none
arriving for ``checkpoint_idle_s``. The store decides, so any worker may evaluate a
checkpoint whose samples another stored, and a restarted worker picks up where the
dead one stopped.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import read
from .exceptions import QueueError, StoreError
from .schema import Aggregate, Sample, Score
from .scorers import AnyScorer, Context, SampleScorer, SetScorer, load_scorers
from .settings import Settings
from .store import Store
from .stream import Entry, Queue
from .telemetry import Telemetry

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
        hooks: Sequence[CheckpointHook] | None = None,
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store or Store.from_settings(settings)
        self._own_queue = queue is None
        self.queue = queue or Queue.from_settings(settings, consumer)
        loaded = (
            list(scorers)
            if scorers is not None
            else load_scorers(settings.scorers, settings.disabled_scorers, settings)
        )
        self.sample_scorers = [s for s in loaded if isinstance(s, SampleScorer)]
        self.set_scorers = [s for s in loaded if isinstance(s, SetScorer)]
        # None: the alert engine (unless settings.alerts is off); () for no hooks at all.
        self.hooks = list(hooks) if hooks is not None else _default_hooks(settings)
        self._stop = threading.Event()
        self._dirty: dict[tuple[str, int], float] = {}  # checkpoint -> first touched
        self._looked_for_complete = -math.inf
        self._rubrics_cache: dict[str, list[str] | None] = {}
        # Samples scored per scorer, for /metrics (judgeserve.telemetry: shared through Redis).
        self.telemetry = Telemetry(self.queue.redis, self.queue.keys)

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
                self.queue.promote_due_retries()
                entries = self.queue.read(self.settings.worker_batch, block_ms=500)
            except QueueError as e:
                log.warning("%s; retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            if entries:
                self.process(entries, defer_checkpoints=True)
                idle_since = time.monotonic()
            self.flush_checkpoints(idle=not entries)
            idle_for = time.monotonic() - idle_since
            if not entries and idle_exit_s is not None and idle_for > idle_exit_s:
                break
        self.flush_checkpoints(idle=True)

    def flush_checkpoints(self, *, idle: bool = True) -> None:
        """Recompute the checkpoints touched since last time; evaluate the complete ones.

        While a checkpoint's samples keep arriving it is recomputed at most every
        ``checkpoint_delay_s`` (set-level scorers embed every sample of the step: doing
        that per batch would cost O(n²) per checkpoint); at once when the stream is idle.
        The store is asked for complete checkpoints at most once a second (always when
        ``idle``); each is recomputed a last time and handed to the hooks.
        """
        now = time.monotonic()
        complete: list[tuple[str, int]] = []
        if idle or now - self._looked_for_complete >= 1.0:
            self._looked_for_complete = now
            try:
                complete = self.store.complete_checkpoints(self.settings.checkpoint_idle_s)
            except StoreError as e:
                log.error("cannot look for complete checkpoints: %s", e)
        due = [
            key
            for key, since in self._dirty.items()
            if idle or now - since >= self.settings.checkpoint_delay_s
        ]
        for run, step in sorted(set(due) - set(complete)):
            del self._dirty[(run, step)]
            try:
                self.update_checkpoint(run, step)
            except StoreError as e:
                log.error("checkpoint %s@%d not updated: %s", run, step, e)
        for run, step in complete:
            self._dirty.pop((run, step), None)
            try:
                self.evaluate_checkpoint(run, step)
            except StoreError as e:
                log.error("checkpoint %s@%d not evaluated: %s", run, step, e)

    def close(self) -> None:
        every: list[AnyScorer] = [*self.sample_scorers, *self.set_scorers]
        for s in every:
            s.close()
        for hook in self.hooks:
            close = getattr(hook, "close", None)
            if callable(close):
                close()
        self.telemetry.flush()
        if self._own_queue:
            self.queue.close()
        if self._own_store:
            self.store.close()

    # -- one batch ---------------------------------------------------------------------------

    def process(self, entries: list[Entry], *, defer_checkpoints: bool = False) -> BatchResult:
        """Score, store and acknowledge one batch; then update its checkpoints (or mark
        them for :meth:`flush_checkpoints` when ``defer_checkpoints``).

        A scorer failing on a sample costs only that scorer's scores: the others are
        stored, and the failed scorers are retried for that sample alone after a backoff
        (``Queue.retry_later``), then dead-lettered with the error.
        """
        result = BatchResult()
        good: list[tuple[Entry, Sample]] = []
        for e in entries:
            if e.deliveries > self.queue.max_deliveries:
                # Never acknowledged in all its deliveries: it kills its worker, or the
                # store keeps refusing it. Set it aside rather than loop on it.
                self.queue.dead_letter(
                    e, f"delivered {e.deliveries} times without being stored", e.deliveries
                )
                result.dead += 1
                continue
            try:
                good.append((e, _to_sample(e.payload)))
            except ValidationError as err:
                # A payload that cannot be parsed never will be: dead-letter it at once.
                self.queue.dead_letter(e, f"invalid payload: {err}", e.deliveries)
                result.dead += 1

        samples = [s for _, s in good]
        only = [set(e.payload["only"]) if e.payload.get("only") else None for e, _ in good]
        scored, errors = self._score(samples, self._contexts(good), only)
        try:
            with self.store.begin() as conn:
                runs: dict[str, tuple[int, list[str] | None]] = {}
                for e, s in good:
                    step, rubrics = runs.get(s.run, (0, None))
                    runs[s.run] = (max(step, s.step), e.payload.get("rubrics") or rubrics)
                for run, (step, rubrics) in runs.items():
                    self.store.upsert_run(conn, run, step, rubrics)
                self.store.save_samples(conn, samples)
                self.store.save_batch_scores(
                    conn, [(s.run, s.step, s.id, scored[s.id_key]) for s in samples]
                )
                self.store.touch_checkpoints(conn, _expected(good))
        except StoreError as err:
            # Nothing acknowledged: every entry comes back after claim_idle_ms.
            log.error("store failed, batch left pending: %s", err)
            result.failed = len(good)
            return result

        for e, s in good:
            failed = errors.get(s.id_key)
            if failed:
                result.failed += 1
                # Scheduled before the ack: a crash in between repeats work, loses none.
                if self.queue.retry_later(e, sorted(failed), "\n".join(failed.values())):
                    result.dead += 1
        self.queue.ack([e.id for e, _ in good])
        result.stored = len(good)
        for s in samples:
            for family in {sc.scorer.split(".", 1)[0] for sc in scored[s.id_key]}:
                self.telemetry.inc("judgeserve_samples_scored_total", scorer=family)
        self.telemetry.flush()
        result.checkpoints = {(s.run, s.step) for s in samples}
        now = time.monotonic()
        for key in result.checkpoints:
            self._dirty.setdefault(key, now)
        if not defer_checkpoints:
            self.flush_checkpoints(idle=True)
        return result

    def _contexts(self, good: list[tuple[Entry, Sample]]) -> list[Context]:
        """The run's rubrics and, when a scorer wants it, each probe's previous answer."""
        baselines: dict[tuple[str, str], str] = {}
        if any(s.wants_baseline for s in self.sample_scorers):
            wanted: dict[tuple[str, int], list[str]] = {}
            for _, s in good:
                if s.probe_id is not None:
                    wanted.setdefault((s.run, s.step), []).append(s.probe_id)
            for (run, step), probes in wanted.items():
                for probe, prev in read.previous_samples(self.store, run, step, probes).items():
                    baselines[(run, f"{step}\0{probe}")] = prev["completion"]
        out = []
        for e, s in good:
            rubrics = e.payload.get("rubrics") or self._run_rubrics(s.run)
            base = baselines.get((s.run, f"{s.step}\0{s.probe_id}"))
            out.append(Context(rubrics=rubrics, baseline=base))
        return out

    def _run_rubrics(self, run: str) -> list[str] | None:
        if run not in self._rubrics_cache:
            found = read.get_run(self.store, run)
            self._rubrics_cache[run] = found["rubrics"] if found else None
        return self._rubrics_cache[run]

    def _score(
        self, batch: list[Sample], contexts: list[Context], only: list[set[str] | None]
    ) -> tuple[dict[tuple[str, str], list[Score]], dict[tuple[str, str], dict[str, str]]]:
        """Scores per sample, and per sample the scorers that failed on it (with why)."""
        scored: dict[tuple[str, str], list[Score]] = {s.id_key: [] for s in batch}
        errors: dict[tuple[str, str], dict[str, str]] = {}
        for scorer in self.sample_scorers:
            idx = [i for i, o in enumerate(only) if o is None or scorer.name in o]
            if not idx:
                continue
            part, ctx = [batch[i] for i in idx], [contexts[i] for i in idx]
            try:
                out = scorer.score_in_context(part, ctx)
                for s, sc in zip(part, out, strict=True):
                    scored[s.id_key].extend(sc)
                continue
            except Exception:
                log.exception("scorer %s failed on a batch; isolating samples", scorer.name)
            for s, c in zip(part, ctx, strict=True):  # one at a time, to find the poison
                try:
                    scored[s.id_key].extend(scorer.score_in_context([s], [c])[0])
                except Exception as err:
                    errors.setdefault(s.id_key, {})[scorer.name] = (
                        f"{scorer.name}: {type(err).__name__}: {err}\n"
                        + traceback.format_exc(limit=3)
                    )
        return scored, errors

    def evaluate_checkpoint(self, run: str, step: int) -> None:
        """A complete checkpoint: recompute it a last time, run the hooks, mark it evaluated."""
        self.update_checkpoint(run, step)
        for hook in self.hooks:
            try:
                hook(self.store, run, step)
            except Exception:
                log.exception("checkpoint hook failed on %s@%d", run, step)
        # After the hooks: a crash in between evaluates it again (alerts de-duplicate)
        # rather than never.
        self.store.mark_evaluated(run, step)

    def update_checkpoint(self, run: str, step: int) -> None:
        """Recompute a checkpoint's aggregates and set-level metrics."""
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
            self.store.save_judge_costs(conn, run, step)
            if self.set_scorers:
                self.store.save_flags(conn, run, step, flags)


def _default_hooks(settings: Settings) -> list[CheckpointHook]:
    if not settings.alerts:
        return []
    from .alerts import AlertEngine

    return [AlertEngine.from_settings(settings)]


def _to_sample(payload: dict[str, Any]) -> Sample:
    data = {
        k: v for k, v in payload.items() if k not in ("rubrics", "only", "attempt", "expected")
    }
    return Sample.model_validate(data)


def _expected(good: list[tuple[Entry, Sample]]) -> dict[tuple[str, int], int | None]:
    """Each checkpoint of the batch, with the sample count its sender announced (if any)."""
    out: dict[tuple[str, int], int | None] = {}
    for e, s in good:
        n = e.payload.get("expected")
        said = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
        prev = out.get((s.run, s.step))
        out[(s.run, s.step)] = max(prev or 0, said or 0) or None
    return out


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
