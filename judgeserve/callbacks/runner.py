"""What the Hugging Face and Lightning callbacks share: the trainer-side half of judgeserve.

:class:`ProbeRunner` decides when to probe, generates and submits completions (or, in
checkpoint mode, uploads the probe set once and submits each saved checkpoint for the
service to generate from), forwards trainer metrics, and watches the run's alerts from
a background thread. The training
thread never waits on scoring: ``submit`` and ``log_metrics`` only append to the SDK's
journal, and the alert poll happens on the watcher thread, which leaves a flag the
callback reads at the end of each step (an attribute read).

:class:`ProbeOptions` is the one list of the options both callbacks and the runner take:
pass them as keyword arguments (``JudgeCallback(probes, every_n_steps=200)``) or as one
``options=ProbeOptions(...)``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..client import JudgeClient
from ..exceptions import ClientError
from ..probes import Completion, GenerationConfig, Probe, generate, load_probes
from ..schema import Alert
from .snapshot import BackgroundSaver

__all__ = ["ProbeRunner", "ProbeOptions", "run_name", "split_summary"]

log = logging.getLogger("judgeserve.callbacks")
_RUN_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_name(*candidates: str | None) -> str:
    """A valid run name from the first usable candidate (a run name, an output dir ...)."""
    for c in candidates:
        if c:
            name = _RUN_UNSAFE.sub("-", Path(c).name if "/" in c else c).strip("-._")[:128]
            if name:
                return name
    return "default"


# Logged by trainers, but about the run or the machine rather than the model at a step:
# a run time or a FLOP count on the loss's chart would flatten the loss.
_SUMMARY_SUFFIXES = ("_runtime", "_per_second")
_SUMMARY_NAMES = frozenset({"total_flos"})


def split_summary(values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """``(series, summary)``: the values to draw over steps, and those that describe the
    run. The HF Trainer's end-of-run log (it has ``train_runtime``) is summary as a whole
    (its ``train_loss`` is the mean over the run, not a step's loss); elsewhere run times,
    throughput (``*_runtime``, ``*_per_second``) and ``total_flos`` are summary."""
    if "train_runtime" in values:
        return {}, {k: v for k, v in values.items() if k != "epoch"}
    series: dict[str, float] = {}
    summary: dict[str, float] = {}
    for k, v in values.items():
        run_level = k in _SUMMARY_NAMES or k.endswith(_SUMMARY_SUFFIXES)
        (summary if run_level else series)[k] = v
    return series, summary


@dataclass(frozen=True)
class ProbeOptions:
    """When to probe, how to generate, where to submit, how to watch alerts.

    Attributes:
        mode: ``"generate"``: the callback generates the probes' completions in the
            training process every ``every_n_steps`` and submits them; ``"checkpoint"``:
            it uploads the probe set once at train start and, each time the trainer saves
            a checkpoint, submits the folder just written; judgeserve's generator makes
            the completions off the training path (needs a filesystem, or fsspec URL, the
            generator can read: docs/checkpoints.md).
        checkpoint_kind: checkpoint mode: ``"lora"`` (a PEFT adapter folder), ``"full"``,
            or ``"auto"`` (``lora`` when the folder holds ``adapter_config.json``).
        checkpoint_save: checkpoint mode: ``"trainer"`` submits the folders the trainer
            saves (HF ``on_save``; Lightning: ``save_pretrained`` beside its checkpoint);
            ``"background"``: judgeserve saves every ``every_n_steps`` (and at the end)
            itself: the training thread only copies the weights into memory, a thread
            writes them (safetensors, no optimizer state) into
            ``<output dir>/judgeserve/step-<N>`` under a temporary name, renames the
            complete folder and then submits it (:mod:`.snapshot`).
        base_model: checkpoint mode: the base model LoRA adapters were trained on, as the
            generator knows it (checked by the generator; None: not checked).
        client: a ``JudgeClient``; by default one is made for ``url`` and ``run`` (``run``
            defaults to the trainer's run name, else its output directory's name) and
            closed after training.
        url, run: where, and under which run name, when no client is given.
        every_n_steps: probe at every multiple of this global step (None: only on the
            callback's events).
        probe_at_start / probe_at_end: probe before the first and after the last step.
        max_new_tokens: bound on each completion (ignored when ``generation`` is set).
        generation: greedy and/or sampled decoding settings.
        poll_interval_s: how often the watcher thread fetches open alerts.
        stop_on_alert: honour ``action: stop`` alerts.
        log_back: log scored aggregates back to the trainer's loggers when active.
        on_alert: called (on the watcher thread) with each new alert.
    """

    mode: Literal["generate", "checkpoint"] = "generate"
    checkpoint_kind: Literal["auto", "lora", "full"] = "auto"
    checkpoint_save: Literal["trainer", "background"] = "trainer"
    base_model: str | None = None
    client: JudgeClient | None = None
    url: str | None = None
    run: str | None = None
    every_n_steps: int | None = 100
    probe_at_start: bool = True
    probe_at_end: bool = True
    max_new_tokens: int = 48
    generation: GenerationConfig | None = None
    poll_interval_s: float = 2.0
    stop_on_alert: bool = True
    log_back: bool = True
    on_alert: Callable[[Alert], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("generate", "checkpoint"):
            raise ValueError(f"mode must be 'generate' or 'checkpoint', not {self.mode!r}")
        if self.checkpoint_kind not in ("auto", "lora", "full"):
            raise ValueError("checkpoint_kind must be 'auto', 'lora' or 'full'")
        if self.checkpoint_save not in ("trainer", "background"):
            raise ValueError("checkpoint_save must be 'trainer' or 'background'")
        if self.every_n_steps is not None and self.every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1 (or None: probe on events only)")

    @classmethod
    def of(cls, options: ProbeOptions | None = None, **overrides: Any) -> ProbeOptions:
        """``options`` (or the defaults) with ``overrides``; an unknown name is a TypeError."""
        return replace(options or cls(), **overrides)

    @property
    def generation_config(self) -> GenerationConfig:
        return self.generation or GenerationConfig(max_new_tokens=self.max_new_tokens)


class ProbeRunner:
    """Probe schedule, submission, alert watching and metric log-back for one training run."""

    def __init__(
        self,
        probes: str | Path | Sequence[Probe | dict[str, Any] | str],
        options: ProbeOptions | None = None,
        **overrides: Any,
    ) -> None:
        """``options`` and/or keyword ``overrides``: see :class:`ProbeOptions`."""
        opts = ProbeOptions.of(options, **overrides)
        self.options = opts
        self.probes = load_probes(probes)
        self.client = opts.client
        self._own_client = opts.client is None
        self.url, self.run = opts.url, opts.run
        self.mode = opts.mode
        self.every_n_steps = opts.every_n_steps
        self.probe_at_start = opts.probe_at_start
        self.probe_at_end = opts.probe_at_end
        self.generation = opts.generation_config
        self.poll_interval_s = opts.poll_interval_s
        self.stop_on_alert = opts.stop_on_alert
        self.log_back = opts.log_back  # a callback turns it off when it has nowhere to log
        self.on_alert = opts.on_alert
        self.probed: list[int] = []
        self.generation_s = 0.0  # time spent generating completions
        self.submit_s = 0.0  # time spent handing samples, checkpoints and metrics to the SDK
        self.probe_set: str | None = None  # checkpoint mode: the version uploaded
        self.saver = BackgroundSaver()  # checkpoint_save="background": judgeserve's own saves
        self.alerts: dict[int, Alert] = {}  # every alert seen, by id
        self.watch_best = False  # poll GET /v1/runs/{run}/best too (the HF keep_best)
        self.best: dict[str, Any] | None = None  # its latest answer
        self.stop_alert: Alert | None = None
        self._new_alerts: list[Alert] = []
        self._pending: dict[int, dict[str, float]] = {}  # scored, not yet handed out
        self._pending_n: dict[int, int] = {}
        self._handed: set[int] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, default_run: str | None = None) -> None:
        if self.client is None:
            self.client = JudgeClient(self.url, run=run_name(self.run, default_run))
        if self.mode == "checkpoint" and self.probe_set is None:
            started = time.perf_counter()
            self.probe_set = self.client.set_probes(self.probes, self.generation)
            self.submit_s += time.perf_counter() - started
        if self._watcher is None:
            self._closing.clear()
            self._watcher = threading.Thread(target=self._watch, name="judgeserve-watch", daemon=True)
            self._watcher.start()

    def close(self, flush_timeout: float = 10.0) -> None:
        """Stop watching; close a client made here (what it cannot deliver within
        ``flush_timeout`` stays in its journal for the next client). A client passed in
        is left open: its owner closes it. A checkpoint still being written in the
        background is waited for and submitted first."""
        self.saver.wait()
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
        if self.client is not None and self._own_client:
            self.client.close(flush_timeout)
            self.client = None

    @property
    def should_stop(self) -> bool:
        return self.stop_alert is not None

    # -- called from the training thread ---------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether to generate at ``step`` (never in checkpoint mode: saves decide)."""
        if step in self.probed or self.mode == "checkpoint":
            return False
        if step == 0:
            return self.probe_at_start
        return self.every_n_steps is not None and step % self.every_n_steps == 0

    def probe(
        self, step: int, model: Any, tokenizer: Any, checkpoint: str | None = None
    ) -> list[Completion]:
        """Generate a completion per probe (and per sampled draw) and submit them."""
        if step in self.probed or self.client is None:
            return []
        self.probed.append(step)
        started = time.perf_counter()
        completions = generate(model, tokenizer, self.probes, self.generation)
        generated = time.perf_counter()
        self.generation_s += generated - started
        self.client.submit(
            step,
            [c.sample(step) for c in completions],
            checkpoint=checkpoint,
            expected=len(completions),
        )
        self.submit_s += time.perf_counter() - generated
        return completions

    def submit_checkpoint(self, step: int, path: str | os.PathLike[str]) -> bool:
        """Checkpoint mode: the trainer saved ``path`` at ``step``; hand it to judgeserve
        (one journal line: no generation, no network here). False when not submitted
        (another mode, no client, or this step already submitted)."""
        if self.mode != "checkpoint" or self.client is None or step in self.probed:
            return False
        self.probed.append(step)
        self._submit_checkpoint(step, path)
        return True

    def _submit_checkpoint(self, step: int, path: str | os.PathLike[str]) -> None:
        assert self.client is not None
        started = time.perf_counter()
        self.client.submit_checkpoint(
            step,
            path,
            kind=self.checkpoint_kind_of(path),
            base_model=self.options.base_model,
            probe_set=self.probe_set,
        )
        self.submit_s += time.perf_counter() - started

    def save_due(self, step: int) -> bool:
        """Whether judgeserve saves (and submits) a checkpoint at ``step`` itself
        (``checkpoint_save="background"``, every ``every_n_steps``)."""
        return (
            self.mode == "checkpoint"
            and self.options.checkpoint_save == "background"
            and step not in self.probed
            and step > 0
            and self.every_n_steps is not None
            and step % self.every_n_steps == 0
        )

    def save_checkpoint(
        self, step: int, model: Any, folder: str | os.PathLike[str], tokenizer: Any = None
    ) -> bool:
        """Checkpoint mode, ``checkpoint_save="background"``: copy ``model``'s weights now
        (the caller waits for this alone), write them into ``folder`` on a background
        thread (with ``tokenizer``, when given, for a full model) and submit the folder
        once it is complete. False when not saved (another mode, no client, or this step
        already submitted)."""
        if self.mode != "checkpoint" or self.client is None or step in self.probed:
            return False
        self.probed.append(step)
        self.saver.save(step, model, tokenizer, Path(folder),
                        then=lambda done: self._submit_checkpoint(step, done))
        return True

    def checkpoint_kind_of(self, path: str | os.PathLike[str]) -> Literal["lora", "full"]:
        kind = self.options.checkpoint_kind
        if kind != "auto":
            return kind
        return "lora" if os.path.isfile(os.path.join(path, "adapter_config.json")) else "full"

    def log_metrics(self, step: int, values: Mapping[str, Any]) -> None:
        """Forward numeric trainer metrics (loss, learning_rate ...; a NaN loss too: it
        raises the ``loss_not_finite`` alert) as series over steps, and run-level values
        (the Trainer's end-of-run summary, run times, throughput, FLOPs) as the run's
        summary (:func:`split_summary`)."""
        if self.client is None:
            return
        started = time.perf_counter()
        numbers = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        series, summary = split_summary(numbers)
        if series:
            self.client.log_metrics(step, **series)
        if summary:
            self.client.log_summary(**summary)
        self.submit_s += time.perf_counter() - started

    def take_alerts(self) -> list[Alert]:
        """Alerts seen since the last call."""
        with self._lock:
            out, self._new_alerts = self._new_alerts, []
        return out

    def take_aggregates(self, final: bool = False) -> dict[int, dict[str, float]]:
        """Scored checkpoint aggregates not yet handed out: ``{step: {metric: mean}}``.

        A checkpoint is handed out once, when all its samples are scored or a later
        checkpoint has scores (``final`` hands out everything seen so far).
        """
        with self._lock:
            newest = max(self._pending, default=-1)
            ready = [
                s
                for s in self._pending
                if final or s < newest or self._pending_n.get(s, 0) >= self.expected_samples
            ]
            out = {s: self._pending.pop(s) for s in sorted(ready)}
            self._handed.update(out)
        return out

    # -- the watcher thread ----------------------------------------------------------------

    @property
    def expected_samples(self) -> int:
        return len(self.probes) * (int(self.generation.greedy) + self.generation.samples)

    def _watch(self) -> None:
        while not self._closing.wait(self.poll_interval_s):
            self._poll_safely()
        self._poll_safely()  # a last look, so nothing scored before close is missed

    def _poll_safely(self) -> None:
        try:
            self.poll()
        except Exception:  # the watcher must outlive any bad answer or callback
            log.exception("judgeserve: alert poll failed")

    def poll(self) -> None:
        """Fetch open alerts (and aggregates when logging back) once."""
        client = self.client
        if client is None:
            return
        try:
            alerts = client.alerts(state="open")
        except ClientError as e:
            log.debug("alert poll failed: %s", e)
            return
        for alert in alerts:
            if alert.id is None or alert.id in self.alerts:
                continue
            self.alerts[alert.id] = alert
            with self._lock:
                self._new_alerts.append(alert)
            log.warning("judgeserve alert %s at step %d: %s", alert.rule, alert.step, alert.message)
            if alert.action == "stop" and self.stop_on_alert and self.stop_alert is None:
                self.stop_alert = alert
            if self.on_alert is not None:
                self.on_alert(alert)
        if self.log_back:
            self._poll_metrics(client)
        if self.watch_best:
            try:
                self.best = client.best()
            except ClientError as e:
                log.debug("best checkpoint poll failed: %s", e)

    @property
    def best_step(self) -> int | None:
        """The step of judgeserve's best checkpoint, as last polled (None: none yet)."""
        best = (self.best or {}).get("best")
        return int(best["step"]) if best else None

    def _poll_metrics(self, client: JudgeClient) -> None:
        try:
            series = fetch_metrics(client)
        except ClientError as e:
            log.debug("metrics poll failed: %s", e)
            return
        with self._lock:
            for metric, points in series.items():
                if metric.startswith("train."):
                    continue
                for p in points:
                    step, mean = int(p["step"]), p.get("mean")
                    if mean is None or step in self._handed:
                        continue
                    self._pending.setdefault(step, {})[metric] = float(mean)
                    self._pending_n[step] = max(self._pending_n.get(step, 0), int(p.get("n") or 0))


def fetch_metrics(client: JudgeClient) -> dict[str, list[dict[str, Any]]]:
    """``GET /v1/runs/{run}/metrics`` through the client's connection."""
    return client.metrics()
