"""The worker: consume → score → store → aggregate → alert, then acknowledge.

The one place that joins the queue, the scorers, the store and the alerts. A batch is
acknowledged only after its rows are committed; a scorer that fails on a sample costs
only that scorer's scores of that sample, which are retried later and finally
dead-lettered with the error.

Nothing a sample carries and no outage stops a worker. A batch moves through stages —
triage, score, store, settle (acknowledge, and schedule retries, in one transaction) —
and each failure has its place:

- an entry that cannot be a sample, or that the store refuses (the batch is then stored
  one sample at a time to find it), is dead-lettered at once with the error;
- the store or Redis unreachable: the batch is held, already scored, and the same stage
  is tried again with a growing backoff; nothing more is read meanwhile, and the held
  entries are kept claimed (:mod:`judgeserve.liveness`), so an outage costs no delivery
  and turns no backlog into dead letters;
- anything else is logged and the loop goes on; the entries come back after
  ``claim_idle_ms``, one at a time, each with its own delivery count.

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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import read
from .drift import DriftControl, judge_step_aggregates
from .exceptions import QueueError, StoreError, StoreUnavailable
from .liveness import Keeper
from .schema import Aggregate, Sample, Score
from .scorers import AnyScorer, Context, SampleScorer, SetScorer, load_scorers, registered
from .settings import Settings
from .store import Store
from .stream import Entry, Queue, Retry
from .telemetry import Telemetry

__all__ = ["Worker", "BatchResult", "Backoff", "run_worker"]

log = logging.getLogger(__name__)

CheckpointHook = Callable[[Store, str, int], None]
# Samples a scorer did not score: (run, step, scorer, kind, reason) -> count.
StatusCounts = Counter[tuple[str, int, str, str, str]]
# Per sample, the scorers that did not score it: (scorer, kind, reason).
Unscored = dict[tuple[str, str], list[tuple[str, str, str]]]
DISABLED = "disabled in this worker's settings (JUDGESERVE_DISABLED_SCORERS)"


@dataclass
class BatchResult:
    stored: int = 0
    failed: int = 0  # samples with a scorer to retry
    dead: int = 0
    checkpoints: set[tuple[str, int]] = field(default_factory=set)
    # Why the batch is held (the store or Redis unavailable): it is not finished, and
    # :meth:`Worker.resume` takes it on from where it stopped.
    waiting: str | None = None


Scored = dict[tuple[str, str], list[Score]]
Failed = dict[tuple[str, str], dict[str, str]]


@dataclass
class _Batch:
    """A batch in progress: what each stage made, so a retry starts where it stopped."""

    entries: list[Entry]
    result: BatchResult = field(default_factory=BatchResult)
    good: list[tuple[Entry, Sample]] | None = None
    dead: list[tuple[Entry, str, dict[str, Any] | None]] = field(default_factory=list)
    scored: Scored | None = None
    errors: Failed = field(default_factory=dict)
    unscored: Unscored = field(default_factory=dict)
    stored: bool = False
    settled: bool = False

    def unsettled(self) -> list[str]:
        return [] if self.settled else [e.id for e in self.entries]


def _named_rubrics(pairs: Sequence[tuple[Entry, Sample]]) -> dict[str, list[str]]:
    """The rubrics a batch names for each of its runs (the last sample naming some wins)."""
    return {s.run: r for e, s in pairs if (r := e.payload.get("rubrics"))}


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
        try:
            self.queue = queue or Queue.from_settings(settings, consumer)
        except QueueError:
            if self._own_store:
                self.store.close()
            raise
        loaded = (
            list(scorers)
            if scorers is not None
            else load_scorers(settings.scorers, settings.disabled_scorers, settings)
        )
        # Disabled scorers are named on every step they skip, like any scorer not run.
        known = registered(settings.scorers) if scorers is None else {}
        self.disabled = sorted(set(settings.disabled_scorers) & set(known))
        self.sample_scorers = [s for s in loaded if isinstance(s, SampleScorer)]
        self.set_scorers = [s for s in loaded if isinstance(s, SetScorer)]
        # None: the alert engine (unless settings.alerts is off); () for no hooks at all.
        self.hooks = list(hooks) if hooks is not None else _default_hooks(settings)
        # A new judge version: its labelled items re-scored between batches (drift.py).
        self.drift = DriftControl(self.store, self.sample_scorers, settings, self.queue.consumer)
        self._stop = threading.Event()
        self._dirty: dict[tuple[str, int], float] = {}  # checkpoint -> first touched
        self._looked_for_complete = -math.inf
        self._rubrics_cache: dict[str, list[str] | None] = {}
        # Samples scored per scorer, for /metrics (judgeserve.telemetry: shared through Redis).
        self.telemetry = Telemetry(self.queue.redis, self.queue.keys)
        self._batch: _Batch | None = None  # in progress, or held while the store is down
        self._status: dict[str, Any] = {"state": "starting", "detail": "", "since": time.time()}

    # -- loop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in flight, acknowledge it, then return from :meth:`run`."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if :meth:`stop` was called."""
        return self._stop.wait(timeout)

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Process batches until stopped (or, for tools and tests, idle for ``idle_exit_s``).

        Meanwhile a keeper thread beats for ``/healthz`` and keeps the held entries claimed.
        """
        keeper = Keeper(self.queue, self._held, self.status, self.settings.worker_heartbeat_s)
        keeper.start()
        try:
            self._loop(idle_exit_s)
        finally:
            keeper.stop()

    def status(self) -> dict[str, Any]:
        """What this worker is doing: ``{"state", "detail", "since"}``."""
        return dict(self._status)

    def _set_status(self, state: str, detail: str = "") -> None:
        if self._status["state"] != state or self._status["detail"] != detail:
            self._status = {"state": state, "detail": detail[:500], "since": time.time()}

    def _held(self) -> list[str]:
        batch = self._batch
        return (batch.unsettled() if batch is not None else []) + self.queue.held()

    def _loop(self, idle_exit_s: float | None) -> None:
        idle_since = time.monotonic()
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                if self._batch is not None:
                    # Held: finish it before reading anything more.
                    result = self.resume()
                    if result.waiting:
                        self._wait(backoff, result.waiting)
                        continue
                    idle_since = time.monotonic()
                self.queue.promote_due_retries()
                entries = self.queue.read(self.settings.worker_batch, block_ms=500)
            except QueueError as e:
                self._wait(backoff, f"waiting for Redis: {e}", "waiting for Redis")
                continue
            except Exception as e:
                # A bug must not stop the worker: held entries come back after claim_idle_ms.
                log.exception("worker loop failed; going on")
                self._batch = None
                self._wait(backoff, f"{type(e).__name__}: {e}", "recovering")
                continue
            backoff.reset()
            if entries:
                self._set_status("scoring", f"{len(entries)} entries")
                result = self.process(entries, defer_checkpoints=True)
                if result.waiting:
                    self._wait(backoff, result.waiting)
                    continue
                idle_since = time.monotonic()
            self._set_status("idle")
            self.flush_checkpoints(idle=not entries)
            if self.drift.work():
                idle_since = time.monotonic()  # re-scoring labelled items is work too
            idle_for = time.monotonic() - idle_since
            if not entries and idle_exit_s is not None and idle_for > idle_exit_s:
                break
        self.flush_checkpoints(idle=True)

    def _wait(self, backoff: Backoff, why: str, state: str | None = None) -> None:
        if state is None:
            state = "waiting for the store" if why.startswith("store") else "waiting for Redis"
        self._set_status(state, why)
        delay = backoff.next()
        log.warning("%s; trying again in %.1fs", why, delay)
        self._stop.wait(delay)

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
            since = self._dirty.pop((run, step))
            try:
                self.update_checkpoint(run, step)
            except StoreUnavailable as e:
                self._dirty[(run, step)] = since  # again once the store is back
                log.error("checkpoint %s@%d not updated: %s", run, step, e)
            except Exception:
                log.exception("checkpoint %s@%d not updated", run, step)
        for run, step in complete:
            self._dirty.pop((run, step), None)
            try:
                self.evaluate_checkpoint(run, step)
            except StoreError as e:  # still not evaluated: the store offers it again
                log.error("checkpoint %s@%d not evaluated: %s", run, step, e)
            except Exception:
                log.exception("checkpoint %s@%d not evaluated", run, step)

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
        (``Queue.settle``), then dead-lettered with the error. When the store or Redis is
        unavailable the result says why (``waiting``) and the batch is held, scored, for
        :meth:`resume`; its entries stay pending, unacknowledged.
        """
        self._batch = _Batch(entries)
        return self.resume(defer_checkpoints=defer_checkpoints)

    def resume(self, *, defer_checkpoints: bool = True) -> BatchResult:
        """Take the batch in progress on from the stage where it stopped."""
        batch = self._batch
        if batch is None:
            return BatchResult()
        result = batch.result
        result.waiting = None
        try:
            self._triage(batch)
            if batch.scored is None:
                self._prepare(batch)
            if not batch.stored:
                self._commit(batch)
            if not batch.settled:
                self._settle(batch)
        except StoreUnavailable as e:
            result.waiting = f"store unavailable: {e}"
            return result
        except QueueError as e:
            result.waiting = f"Redis unavailable: {e}"
            return result
        except BaseException:
            self._batch = None  # its entries come back after claim_idle_ms
            raise
        self._batch = None
        now = time.monotonic()
        for key in result.checkpoints:
            self._dirty.setdefault(key, now)
        if not defer_checkpoints:
            self.flush_checkpoints(idle=True)
        return result

    def _triage(self, batch: _Batch) -> None:
        """Set aside what can never be stored; then dead-letter it (again, if Redis failed)."""
        if batch.good is None:
            batch.good = []
            for e in batch.entries:
                if e.deliveries > self.queue.max_deliveries:
                    # Never acknowledged in all its deliveries: it kills its worker, or
                    # something keeps failing on it. Set it aside rather than loop on it.
                    batch.dead.append(
                        (e, f"delivered {e.deliveries} times without being stored", None)
                    )
                    continue
                try:
                    batch.good.append((e, _to_sample(e.payload)))
                except ValidationError as err:
                    # A payload that cannot be parsed never will be: dead-letter it at once.
                    batch.dead.append((e, f"invalid payload: {err}", None))
        self._flush_dead(batch)

    def _flush_dead(self, batch: _Batch) -> None:
        while batch.dead:
            e, error, payload = batch.dead[0]
            self.queue.dead_letter(e, error, e.deliveries, payload)
            batch.dead.pop(0)
            batch.result.dead += 1

    def _prepare(self, batch: _Batch) -> None:
        """Contexts (reads the store) and scores of the batch's samples."""
        assert batch.good is not None
        try:
            contexts = self._contexts(batch.good)
        except StoreUnavailable:
            raise
        except Exception as err:
            log.warning("contexts failed for a batch (%s); one sample at a time", err)
            contexts = []
            for pair in list(batch.good):
                try:
                    contexts.extend(self._contexts([pair]))
                except StoreUnavailable:
                    raise
                except Exception as one:
                    batch.good.remove(pair)
                    batch.dead.append((pair[0], f"cannot read its context: {_why(one)}", None))
            self._flush_dead(batch)
        samples = [s for _, s in batch.good]
        only = [set(e.payload["only"]) if e.payload.get("only") else None for e, _ in batch.good]
        batch.scored, batch.errors, batch.unscored = self._score(samples, contexts, only)

    def _commit(self, batch: _Batch) -> None:
        """Store the batch in one transaction; if the store refuses it (not unavailable:
        refused), store its samples one by one and dead-letter the ones it refuses."""
        assert batch.good is not None
        try:
            self._store(batch.good, batch)
        except StoreUnavailable:
            raise
        except Exception as err:
            log.warning("the store refused a batch (%s); storing one sample at a time", _why(err))
            for pair in list(batch.good):
                try:
                    self._store([pair], batch)
                except StoreUnavailable:
                    raise  # the samples stored so far are stored again later: idempotent
                except Exception as one:
                    batch.good.remove(pair)
                    batch.dead.append((pair[0], f"the store refused it: {_why(one)}", None))
            self._flush_dead(batch)
        batch.stored = True
        scored = batch.scored or {}
        self.drift.observe((s.run, s.step, sc) for _, s in batch.good for sc in scored[s.id_key])

    def _store(self, pairs: list[tuple[Entry, Sample]], batch: _Batch) -> None:
        assert batch.scored is not None
        samples = [s for _, s in pairs]
        with self.store.begin() as conn:
            named = _named_rubrics(pairs)
            steps: dict[str, int] = {}
            for _, s in pairs:
                steps[s.run] = max(steps.get(s.run, 0), s.step)
            for run, step in steps.items():
                self.store.upsert_run(conn, run, step, named.get(run))
            self.store.save_samples(conn, samples)
            for again in (False, True):  # `judgeserve rescore` entries replace what was stored
                self.store.save_batch_scores(
                    conn,
                    [
                        (s.run, s.step, s.id, batch.scored[s.id_key])
                        for e, s in pairs
                        if bool(e.payload.get("rescore")) is again
                    ],
                    replace=again,
                )
            # Counted per sample stored, so storing a refused batch one by one counts each once.
            status: StatusCounts = Counter(
                (s.run, s.step, scorer, kind, why)
                for _, s in pairs
                for scorer, kind, why in batch.unscored.get(s.id_key, ())
            )
            self.store.save_scorer_status(conn, status)
            self.store.touch_checkpoints(conn, _expected(pairs))
        # What the store now holds for these runs, for their later samples naming none.
        self._rubrics_cache.update(named)

    def _settle(self, batch: _Batch) -> None:
        """Acknowledge what was stored and schedule its retries, in one transaction."""
        assert batch.good is not None
        retries = [
            Retry(e, sorted(failed), "\n".join(failed.values()))
            for e, s in batch.good
            if (failed := batch.errors.get(s.id_key))
        ]
        ids = [e.id for e, _ in batch.good]
        dead = self.queue.settle(ids, retries)
        batch.settled = True
        result = batch.result
        result.failed = len(retries)
        result.dead += dead
        result.stored = len(batch.good)
        result.checkpoints = {(s.run, s.step) for _, s in batch.good}
        scored = batch.scored or {}
        for _, s in batch.good:
            for family in {sc.scorer.split(".", 1)[0] for sc in scored.get(s.id_key, ())}:
                self.telemetry.inc("judgeserve_samples_scored_total", scorer=family)
        # Never fails (Redis down: the counts wait for the next flush).
        self.telemetry.flush()

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
        # A new run's first batch may name its rubrics on some samples only: the others get
        # them too, as the store will hold them once this batch is stored.
        named = _named_rubrics(good)
        out = []
        for e, s in good:
            rubrics = e.payload.get("rubrics") or self._run_rubrics(s.run) or named.get(s.run)
            base = baselines.get((s.run, f"{s.step}\0{s.probe_id}"))
            out.append(Context(rubrics=rubrics, baseline=base))
        return out

    def _run_rubrics(self, run: str) -> list[str] | None:
        if run not in self._rubrics_cache:
            found = read.get_run(self.store, run)
            if found is None:
                return None  # not stored yet: looked up again next time, not cached as none
            self._rubrics_cache[run] = found["rubrics"]
        return self._rubrics_cache[run]

    def _score(
        self, batch: list[Sample], contexts: list[Context], only: list[set[str] | None]
    ) -> tuple[Scored, Failed, Unscored]:
        """Scores per sample; per sample, the scorers that failed on it (with why); and per
        sample the scorers that did not score it, with the kind (skipped, failed,
        disabled) and the reason."""
        scored: Scored = {s.id_key: [] for s in batch}
        errors: Failed = {}
        unscored: Unscored = {}
        for name in self.disabled:
            for s, o in zip(batch, only, strict=True):
                if o is None:
                    unscored.setdefault(s.id_key, []).append((name, "disabled", DISABLED))
        for scorer in self.sample_scorers:
            idx = []
            for i, o in enumerate(only):
                if o is not None and scorer.name not in o:
                    continue
                s = batch[i]
                try:
                    why = scorer.skip_reason(s, contexts[i])
                except Exception as err:  # it would fail on scoring too: say so the same way
                    self._failed(scorer, s, err, errors, unscored)
                    continue
                if why:
                    unscored.setdefault(s.id_key, []).append((scorer.name, "skipped", why))
                else:
                    idx.append(i)
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
                    self._failed(scorer, s, err, errors, unscored)
        return scored, errors, unscored

    @staticmethod
    def _failed(
        scorer: SampleScorer, sample: Sample, err: Exception, errors: Failed, unscored: Unscored
    ) -> None:
        why = f"{type(err).__name__}: {err}"
        errors.setdefault(sample.id_key, {})[scorer.name] = (
            f"{scorer.name}: {why}\n" + traceback.format_exc(limit=3)
        )
        first_line = why.splitlines()[0] if why.strip() else type(err).__name__
        unscored.setdefault(sample.id_key, []).append((scorer.name, "failed", first_line))

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
        # A judge's aggregate covers one judge version, never a mix (drift.py).
        judged = list(self.store.step_judge_values(run, step)) if any(
            m.startswith("judge.") for m in values
        ) else []
        seen = self.store.judge_versions_seen(s for s, _, _ in judged)
        main, by_version = judge_step_aggregates(judged, seen)
        aggs.update(main)
        flags = []
        status: StatusCounts = Counter()
        if self.set_scorers:
            samples = self.store.all_step_samples(run, step)
            for scorer in self.set_scorers:
                try:
                    why = scorer.skip_reason(samples)
                    if why:
                        status[(run, step, scorer.name, "skipped", why)] = len(samples)
                        continue
                    res = scorer.score_set(samples)
                except Exception as err:
                    log.exception("set scorer %s failed on %s@%d", scorer.name, run, step)
                    why = f"{type(err).__name__}: {err}".splitlines()[0]
                    status[(run, step, scorer.name, "failed", why)] = len(samples)
                    continue
                for m, v in res.metrics.items():
                    aggs[m] = Aggregate(mean=v, ci_low=None, ci_high=None, n=len(samples))
                flags.extend(res.flags)
        with self.store.begin() as conn:
            self.store.save_aggregates(conn, run, step, aggs)
            self.store.save_judge_aggregates(conn, run, step, by_version)
            self.store.save_judge_costs(conn, run, step)
            if self.set_scorers:
                self.store.save_flags(conn, run, step, flags)
                replace = [(run, step, s.name) for s in self.set_scorers]
                self.store.save_scorer_status(conn, status, replace=replace)


class Backoff:
    """Waits that double from 0.5 s up to 10 s while a failure lasts."""

    def __init__(self, first: float = 0.5, most: float = 10.0) -> None:
        self.first, self.most = first, most
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self.delay = self.first


def _why(err: BaseException) -> str:
    # The error text, and the database's own message when it was wrapped.
    cause = err.__cause__
    text = f"{type(err).__name__}: {err}"
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text[:2000]


def _default_hooks(settings: Settings) -> list[CheckpointHook]:
    if not settings.alerts:
        return []
    from .alerts import AlertEngine

    return [AlertEngine.from_settings(settings)]


def _to_sample(payload: dict[str, Any]) -> Sample:
    data = {
        k: v
        for k, v in payload.items()
        if k not in ("rubrics", "only", "attempt", "expected", "rescore")
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
    """Entry point of ``judgeserve worker``: SIGTERM/SIGINT finish the batch in flight.

    Started while the store or Redis is down (a restart during an outage), it waits for
    them instead of exiting, saying so in its log."""
    stopping = threading.Event()
    worker: Worker | None = None

    def _graceful(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the batch in flight", signum)
        stopping.set()
        if worker is not None:
            worker.stop()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    backoff = Backoff()
    while worker is None:
        try:
            worker = Worker(settings, consumer=consumer)
        except (StoreUnavailable, QueueError) as e:
            delay = backoff.next()
            log.warning("cannot start yet: %s; trying again in %.1fs", e, delay)
            if stopping.wait(delay):
                return
    if stopping.is_set():
        worker.stop()
    try:
        for warning in worker.queue.durability_warnings():
            log.warning(warning)
    except QueueError as e:
        log.warning("cannot check Redis durability: %s", e)
    if any(s.name == "memorization" for s in worker.sample_scorers):
        from .detectors.memorization import describe_indexes

        log.info(describe_indexes(settings.index_dir))
    log.info("worker %s consuming %s", worker.queue.consumer, worker.queue.keys.samples)
    try:
        worker.run()
    finally:
        worker.close()
