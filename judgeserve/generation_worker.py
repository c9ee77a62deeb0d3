"""The generation worker: checkpoint jobs in, probe completions out onto the sample stream.

The one place (like :mod:`judgeserve.worker` for scoring) that joins the checkpoint
stream, the store and a generator; the generators themselves (:mod:`judgeserve.generator`)
stay pure: a job in, completions out.

It consumes the checkpoint stream (``<prefix>:checkpoints``, written by ``POST
/v1/runs/{run}/checkpoints``) in its consumer group, with the sample stream's guarantees:
a job is acknowledged only once its completions are on the sample stream, in the same
Redis transaction; a job a dead worker held is reclaimed with XAUTOCLAIM (a live worker
keeps its job's idle time low while generating, however long that takes); a job that
cannot succeed is dead-lettered with the reason.

For each job it loads the run's probe set (the version the API recorded), asks the
generator (in-process, or the ``generator`` application on Ray Serve through its client,
per :class:`~judgeserve.settings.Settings`), and appends one sample per probe and draw
with an id made of (step, probe id, draw) — a redelivered job adds no new samples —
tagged with the checkpoint, the finish reason and which generator made it. Its state
(queued, generating, retrying, generated, failed with the reason) is kept in the store
for the API and the web view.

=================================  =====================================================
what went wrong                    what happens to the job
=================================  =====================================================
checkpoint folder gone             dead-lettered at once: ``checkpoint folder gone: ...``
checkpoint unusable                dead-lettered at once with the generator's message
no such probe set, invalid job     dead-lettered at once
engine failed, generator down,     left pending: retried when reclaimed, dead-lettered
store or Redis unreachable         after ``max_deliveries``
=================================  =====================================================
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import read
from .exceptions import (
    CheckpointError,
    ConfigError,
    GeneratorError,
    MissingExtraError,
    QueueError,
    StoreError,
)
from .generator import GenerationJob, GenerationResult, Generator, load_generator
from .probes import ProbeSet
from .schema import CheckpointKind
from .settings import Settings
from .store import Store
from .stream import Entry, Queue

__all__ = ["CheckpointJob", "GenerationWorker", "make_generator", "run_generation_worker"]

log = logging.getLogger(__name__)
TAG_MAX = 256  # sample tags and the checkpoint column hold at most this much


class CheckpointJob(BaseModel):
    """A checkpoint stream entry, as the API wrote it."""

    model_config = ConfigDict(extra="ignore")

    run: str = Field(description="The run.")
    step: int = Field(ge=0, description="Step the checkpoint was saved at.")
    path: str = Field(min_length=1, description="Folder or URL of the checkpoint.")
    kind: CheckpointKind = Field("lora", description="'lora' or 'full'.")
    base_model: str | None = Field(None, description="Base model the adapter was trained on.")
    probe_set: str = Field(description="Version of the run's probe set to complete.")


def make_generator(settings: Settings) -> Generator:
    """The generator ``settings`` name: the Serve client, or an in-process engine."""
    if settings.generator is None:
        raise ConfigError(
            "no generator configured: set JUDGESERVE_GENERATOR (serve, vllm, transformers) "
            "and JUDGESERVE_GENERATOR_URL or JUDGESERVE_GENERATOR_BASE_MODEL"
        )
    if settings.generator == "serve":
        return load_generator("serve", settings.generator_base_model, url=settings.generator_url)
    if not settings.generator_base_model:
        raise ConfigError(
            f"generator {settings.generator!r} needs JUDGESERVE_GENERATOR_BASE_MODEL (the "
            "policy's base model)"
        )
    return load_generator(
        settings.generator, settings.generator_base_model, **settings.generator_options
    )


def _tail(text: str, limit: int = TAG_MAX) -> str:
    # Paths differ at their end (…/checkpoint-400): keep that part.
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


class GenerationWorker:
    """Consumes checkpoint jobs until :meth:`stop`; one job at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        queue: Queue | None = None,
        generator: Generator | None = None,
        consumer: str | None = None,
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store or Store.from_settings(settings)
        self._own_queue = queue is None
        self.queue = queue or Queue.from_settings(settings, consumer, stream="checkpoints")
        self._own_generator = generator is None
        self.generator = generator or make_generator(settings)
        self._stop = threading.Event()
        self.done = 0  # jobs handed off
        self.failed = 0  # jobs dead-lettered

    def stop(self) -> None:
        """Return from :meth:`run` after the job in flight."""
        self._stop.set()

    def close(self) -> None:
        if self._own_generator:
            self.generator.close()
        if self._own_queue:
            self.queue.close()
        if self._own_store:
            self.store.close()

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Process jobs until stopped (or, for tools and tests, idle for ``idle_exit_s``)."""
        idle_since = time.monotonic()
        backoff = 0.5
        while not self._stop.is_set():
            try:
                entries = self.queue.read(1, block_ms=500)
            except QueueError as e:
                log.warning("%s; retrying in %.1fs", e, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            for entry in entries:
                self.process(entry)
            if entries:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break

    # -- one job -----------------------------------------------------------------------------

    def process(self, entry: Entry) -> str:
        """Generate one job's completions and hand them off; returns what became of it:
        ``generated``, ``failed`` (dead-lettered) or ``retry`` (left pending)."""
        try:
            job = CheckpointJob.model_validate(entry.payload)
        except ValidationError as e:
            return self._fail(entry, None, f"invalid checkpoint job: {e}")
        if entry.deliveries > self.queue.max_deliveries:
            return self._fail(
                entry, job, f"delivered {entry.deliveries} times without finishing; the last "
                "attempt's error is in the job's reason"
            )
        try:
            found = read.probe_set(self.store, job.run, job.probe_set)
            if found is None:
                return self._fail(entry, job, f"run {job.run!r} has no probe set {job.probe_set}")
            probe_set = ProbeSet.model_validate(
                {"probes": found["probes"], "generation": found["generation"]}
            )
            self.store.update_checkpoint_job(
                job.run, job.step, "generating", job=entry.payload, reason=None
            )
        except StoreError as e:
            log.error("store unavailable; job %s left pending: %s", entry.id, e)
            return "retry"
        except ValidationError as e:
            return self._fail(entry, job, f"stored probe set {job.probe_set} is invalid: {e}")
        log.info("generating %s@%d from %s (%s)", job.run, job.step, job.path, job.kind)
        try:
            with self._heartbeat(entry):
                result = self.generator.generate(
                    GenerationJob(
                        checkpoint=job.path,
                        kind=job.kind,
                        base_model=job.base_model,
                        probes=list(probe_set.probes),
                        config=probe_set.generation,
                    )
                )
        except (CheckpointError, ConfigError, MissingExtraError, ValidationError) as e:
            # Retrying cannot help: the folder is gone, unusable, or the setup is wrong.
            return self._fail(entry, job, str(e))
        except Exception as e:  # GeneratorError, or anything else: worth another try
            return self._retry(entry, job, e)
        return self._hand_off(entry, job, result)

    def _hand_off(self, entry: Entry, job: CheckpointJob, result: GenerationResult) -> str:
        samples = self.samples(job, result)
        # The state first, then the hand-off: a worker lost between the two leaves the job
        # pending, and whoever generates it again sets the state again. The other order
        # would leave a job handed off (acknowledged, never redelivered) shown as
        # "generating" for good.
        try:
            self.store.update_checkpoint_job(
                job.run,
                job.step,
                "generated",
                reason=None,
                generator=result.identity.model_dump(mode="json"),
                samples=len(samples),
                load_s=result.load_s,
                generate_s=result.generate_s,
            )
        except StoreError as e:  # the samples are queued below; only the displayed state lags
            log.error("job state of %s@%d not saved: %s", job.run, job.step, e)
        try:
            self.queue.hand_off(entry, samples)
        except QueueError as e:
            log.error("cannot hand off %s@%d; left pending: %s", job.run, job.step, e)
            self._set_state(job, "retrying", reason=f"could not queue its samples: {e}", entry=entry)
            return "retry"
        self.done += 1
        log.info(
            "generated %d samples of %s@%d (load %.2fs, generate %.2fs)",
            len(samples), job.run, job.step, result.load_s, result.generate_s,
        )
        return "generated"

    def samples(self, job: CheckpointJob, result: GenerationResult) -> list[dict[str, Any]]:
        """The sample-stream payloads of a job's completions (as the API would queue them)."""
        ident = result.identity
        made_by = {
            "generator": ident.backend,
            "engine": _tail(ident.engine),
            "base_model": _tail(ident.base_model),
            "checkpoint_kind": ident.kind,
            "decoding_hash": ident.decoding,
        }
        if ident.kind == "lora":
            made_by["adapter"] = _tail(ident.checkpoint)
        created = time.time()
        out = []
        for c in result.completions:
            sample = c.sample(job.step)
            sample["tags"] = {**sample["tags"], **made_by}
            if sample["reference"] is None:
                del sample["reference"]
            out.append(
                {
                    "run": job.run,
                    "step": job.step,
                    "checkpoint": _tail(job.path),
                    "expected": len(result.completions),
                    "created": created,
                    **sample,
                }
            )
        return out

    def _fail(self, entry: Entry, job: CheckpointJob | None, reason: str) -> str:
        log.warning("checkpoint job %s failed: %s", entry.id, reason)
        try:
            self.queue.dead_letter(entry, reason, entry.deliveries)
        except Exception as e:  # Redis down: the job stays pending and comes back
            log.error("cannot dead-letter %s: %s", entry.id, e)
            return "retry"
        self.failed += 1
        if job is not None:
            self._set_state(job, "failed", reason=reason, entry=entry)
        return "failed"

    def _retry(self, entry: Entry, job: CheckpointJob, error: Exception) -> str:
        reason = f"{type(error).__name__}: {error}"
        if not isinstance(error, GeneratorError):
            log.exception("generating %s@%d failed", job.run, job.step)
        if entry.deliveries >= self.queue.max_deliveries:
            return self._fail(
                entry, job, f"failed on all {entry.deliveries} deliveries; last: {reason}"
            )
        # Not acknowledged: it is reclaimed after claim_idle_ms and tried again.
        self._set_state(job, "retrying", reason=reason, entry=entry)
        return "retry"

    def _set_state(self, job: CheckpointJob, state: str, *, entry: Entry, **values: Any) -> None:
        try:
            self.store.update_checkpoint_job(job.run, job.step, state, job=entry.payload, **values)
        except StoreError as e:
            log.error("job state of %s@%d not saved: %s", job.run, job.step, e)

    def _heartbeat(self, entry: Entry) -> _Heartbeat:
        return _Heartbeat(self.queue, entry.id, self.queue.claim_idle_ms / 3000)


class _Heartbeat:
    """While the block runs, keeps the entry's idle time under ``claim_idle_ms`` so no other
    consumer reclaims a job that is still being generated."""

    def __init__(self, queue: Queue, entry_id: str, every_s: float) -> None:
        self.queue, self.entry_id, self.every_s = queue, entry_id, max(every_s, 0.01)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="judgeserve-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                self.queue.heartbeat([self.entry_id])
            except Exception as e:  # keep generating; at worst the job runs twice
                log.warning("heartbeat of %s failed: %s", self.entry_id, e)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._done.set()
        self._thread.join()


def run_generation_worker(settings: Settings, *, consumer: str | None = None) -> None:
    """Entry point of ``judgeserve generate-worker``: SIGTERM/SIGINT finish the job in flight."""
    worker = GenerationWorker(settings, consumer=consumer)

    def _graceful(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the job in flight", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    log.info(
        "generation worker %s consuming %s with generator %s",
        worker.queue.consumer, worker.queue.stream_key, worker.generator.name,
    )
    try:
        worker.run()
    finally:
        worker.close()
