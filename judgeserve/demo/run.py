"""``judgeserve demo``: the silent failure, reproduced on this machine in a few minutes.

The demo starts the stack (API + worker in this process, Redis and the store from the
settings), writes a synthetic corpus of made-up facts (:mod:`judgeserve.demo.data`),
builds the run's memorization index from it, trains a tokenizer and a 3-layer GPT-2 from
scratch with the Hugging Face ``Trainer`` on CPU, and lets
:class:`~judgeserve.callbacks.hf.JudgeCallback` evaluate it with held-out questions every
``every`` steps. Nothing is scripted: the detectors score what the model really writes,
the default alert rules decide, and the console shows the training bar, one line per
scored checkpoint (loss next to the quality metrics) and every alert as it fires.

In checkpoint mode (the default) the trainer only saves a checkpoint every ``every``
steps and submits its folder; the generator, on a local Ray Serve instance
(:mod:`.generator`), completes the probes from it, and a generation worker in the stack
queues them for scoring. Each checkpoint's line says how long the trainer was blocked
(save + submit) next to how long generating the probes in the trainer would have blocked
it (measured at the same save, outside the blocked time). ``mode="generate"``: the
callback generates in the trainer, as without a generator.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..settings import Settings

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["run_demo", "DemoResult"]

# (metric, column title, format) shown on each checkpoint line, when present.
COLUMNS = (
    ("memorization.ngram_overlap", "copied-8g", "{:.2f}"),
    ("repetition.loop", "loops", "{:.2f}"),
    ("diversity.unique_ratio", "unique", "{:.2f}"),
    ("reference.chrf", "chrF", "{:.1f}"),
    ("reference.semscore", "sem", "{:.2f}"),
)


@dataclass
class DemoResult:
    """What happened, for the caller (and the demo's test)."""

    run: str
    url: str
    losses: dict[int, float] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, float]] = field(default_factory=dict)
    alerts: list[Any] = field(default_factory=list)
    stopped_at: int | None = None
    seconds: float = 0.0
    mode: str = "checkpoint"
    # Checkpoint mode, per saved checkpoint: seconds the trainer was blocked (save +
    # submit), and seconds generating the probes in the trainer took at the same save.
    blocked: dict[int, float] = field(default_factory=dict)
    in_process: dict[int, float] = field(default_factory=dict)
    # GET /v1/runs/{run}/best at the end: the checkpoint to ship, beside the lowest loss.
    best: dict[str, Any] | None = None


def run_demo(
    settings: Settings,
    *,
    steps: int = 1000,
    every: int = 100,
    stop: bool = False,
    serve: bool | None = None,
    workdir: str | Path | None = None,
    out: Any = None,
    mode: Literal["checkpoint", "generate"] = "checkpoint",
) -> DemoResult:
    """Run the demo; ``serve`` keeps the web view up afterwards (default: on a terminal).
    ``mode``: ``checkpoint`` (the trainer saves, the generator on a local Ray Serve
    generates) or ``generate`` (the callback generates in the trainer)."""
    from ..exceptions import require

    for module in ("transformers", "tokenizers", "torch"):
        require(module, "train")
    out = out or sys.stdout
    for name in ("httpx", "judgeserve.alerts", "judgeserve.callbacks"):
        # The console lines below say the same; keep the log for errors.
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.monotonic()
    url = f"http://{settings.host}:{settings.port}"
    run = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="judgeserve-demo-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if stop:
        settings = settings.model_copy(update={"alert_rules": _stop_rules(tmp)})

    from ..detectors.memorization import build_index, run_index_dir
    from .data import write_corpus

    train_path, probe_path = write_corpus(tmp / "data")
    stats = build_index([train_path], run_index_dir(run, settings.index_dir), min_span=12,
                        progress=False)
    say = _printer(out)
    say(f"corpus: {stats.documents} training examples of made-up facts, "
        f"{_count(probe_path)} held-out probes  ({tmp / 'data'})")

    from ..launch import background_stack

    model, tokenizer, texts = _model(tmp, train_path, probe_path)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: GPT-2, 3 layers x 128 wide, {n_params / 1e6:.2f}M parameters, from scratch; "
        f"{steps} steps, " + (f"a checkpoint saved every {every}" if mode == "checkpoint"
                               else f"probes every {every}"))
    with ExitStack() as stack:
        if mode == "checkpoint":
            from .generator import local_generator

            base = tmp / "base"  # the initial weights: what the generator hosts
            model.save_pretrained(base)
            tokenizer.save_pretrained(base)
            say("starting the generator on a local Ray Serve (transformers, 1 CPU) ...")
            gen_url = stack.enter_context(local_generator(base, _free_port(), tmp))
            settings = settings.model_copy(update={
                "generator": "serve", "generator_url": gen_url,
                "generator_base_model": str(base),
            })
            say(f"generator up: {gen_url}")
        worker = stack.enter_context(background_stack(settings))
        say(f"stack up: API {url}  store {settings.database_url}  redis {settings.redis_url}")
        result = _train(worker.store, run, url, tmp, model, tokenizer, texts, probe_path,
                        steps, every, mode, out)
        result.best = _best(worker.store, run, settings)
        result.seconds = time.monotonic() - started
        _summary(result, say)
        if serve if serve is not None else (out is sys.stdout and sys.stdin.isatty()):
            say(f"\nserving the web view at {url}/runs/{run}  (Ctrl-C to stop)")
            if settings.auth == "on":
                say("log in with the local token: `judgeserve token local` prints it")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
        else:
            say(f"\nthe run is kept in {settings.database_url}: run `judgeserve up` and open "
                f"{url}/runs/{run}")
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _best(store: Store, run: str, settings: Settings) -> dict[str, Any]:
    """The ranking of the run's checkpoints, as ``judgeserve best`` shows it."""
    from .. import read
    from ..ranking import load_quality

    return read.best(store, run, load_quality(settings.quality))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(tmp: Path, train_path: Path, probe_path: Path) -> tuple[Any, Any, list[str]]:
    """The tokenizer trained on the corpus and a fresh GPT-2 for it; the training texts."""
    import torch
    from transformers.utils import logging as hf_logging

    from .model import tiny_gpt2, train_tokenizer

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Writing model shards"
    # One intra-op thread: the worker scores in this process too, and on a small shared
    # machine two torch threads spinning against other work run ~10x slower, not faster.
    torch.set_num_threads(1)
    texts = [json.loads(line)["text"] for line in train_path.read_text().splitlines()]
    probes = [json.loads(line) for line in probe_path.read_text().splitlines()]
    tokenizer = train_tokenizer(texts + [p["prompt"] + " " + p["reference"] for p in probes],
                                tmp / "tokenizer")
    return tiny_gpt2(tokenizer), tokenizer, texts


def _train(
    store: Store,
    run: str,
    url: str,
    tmp: Path,
    model: Any,
    tokenizer: Any,
    texts: list[str],
    probe_path: Path,
    steps: int,
    every: int,
    mode: str,
    out: Any,
) -> DemoResult:
    from transformers import (
        PrinterCallback,
        ProgressCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    from ..callbacks.hf import JudgeCallback
    from ..client import JudgeClient
    from .model import TextDataset, collate

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    result = DemoResult(run=run, url=url, mode=mode)
    client = JudgeClient(url, run=run, spool_dir=tmp / "spool")
    # No probe at step 0: a randomly initialised model is no baseline (a pretrained one is).
    judge = JudgeCallback(probe_path, client=client, every_n_steps=every, max_new_tokens=48,
                          probe_at_start=False, poll_interval_s=1.0, log_back=False,
                          mode=mode)
    progress_cls = type("DemoProgress", (_Progress, TrainerCallback), {})
    progress = progress_cls(judge, store, result, out)
    args = TrainingArguments(
        output_dir=str(tmp / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        warmup_steps=50,
        weight_decay=0.0,
        logging_steps=25,
        # Checkpoint mode: the weights only (no optimizer state), every `every` steps.
        save_strategy="steps" if mode == "checkpoint" else "no",
        save_steps=every,
        save_only_model=True,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TextDataset(texts, tokenizer),
        data_collator=lambda b: collate(b, tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[judge, progress],
    )
    for printer in (ProgressCallback, PrinterCallback):  # the demo draws its own bar and lines
        trainer.remove_callback(printer)
    try:
        trainer.train()
        result.stopped_at = judge.stopped_at
        progress.finish(timeout=60)
    finally:
        client.close(10)
    return result


class _Progress:
    """A training bar, and one line per checkpoint once the worker has scored it.

    Mixed into a ``TrainerCallback`` subclass where transformers is imported.
    """

    def __init__(self, judge: Any, store: Store, result: DemoResult, out: Any) -> None:
        from tqdm.auto import tqdm

        self.judge, self.store, self.result, self.out = judge, store, result, out
        self.tqdm = tqdm
        self.bar: Any = None
        self.shown: set[int] = set()
        self.alerts_shown: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="demo-lines", daemon=True)
        self._step_ended = 0.0

    # -- TrainerCallback events ----------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar = self.tqdm(total=state.max_steps, desc="training", unit="step",
                             file=self.out, dynamic_ncols=True, leave=True)
        self._thread.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar.update(state.global_step - self.bar.n)
        # The last callback of the step: from here to the end of on_save (this callback
        # comes after the judge's) the trainer is saving and submitting, not training.
        self._step_ended = time.perf_counter()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if self.judge.runner.mode != "checkpoint" or step not in self.judge.runner.probed:
            return
        self.result.blocked[step] = time.perf_counter() - self._step_ended
        # What generate mode would have cost at this save: the same probes and settings,
        # generated here (outside the time above; fork_rng leaves training untouched).
        from ..probes import generate

        runner = self.judge.runner
        started = time.perf_counter()
        generate(kwargs["model"], kwargs["processing_class"], runner.probes, runner.generation)
        self.result.in_process[step] = time.perf_counter() - started

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.result.losses[state.global_step] = float(logs["loss"])
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar.close()

    # -- the checkpoint lines ----------------------------------------------------------------

    def write(self, line: str) -> None:
        self.tqdm.write(line, file=self.out)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self._show()

    def finish(self, timeout: float) -> None:
        """After training: wait (bounded) for the last checkpoints to be scored and shown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(self.judge.runner.probed) - self.shown:
            time.sleep(0.5)
        self._stop.set()
        self._thread.join(timeout=5)
        time.sleep(1.5)  # the alert hook runs right after the last aggregates
        self._show(final=True)

    def _show(self, final: bool = False) -> None:
        from .. import read

        with self._lock:
            run = self.result.run
            expected = self.judge.runner.expected_samples
            for step in sorted(set(self.judge.runner.probed) - self.shown):
                # Per-sample and set-level aggregates are written in one transaction, after
                # every sample of the step is scored: n tells when the checkpoint is whole.
                aggs = read.step_aggregates(self.store, run, step)
                n = aggs.get("length.tokens", {}).get("n", 0)
                if n < expected and not (final and aggs):
                    break  # lines appear in step order
                metrics = {m: a["mean"] for m, a in aggs.items() if a["mean"] is not None}
                self.result.checkpoints[step] = metrics
                self.shown.add(step)
                line = _line(step, self._loss_at(step), metrics)
                if step in self.result.blocked:
                    line += (f" | trainer blocked {self.result.blocked[step]:.3f}s "
                             f"(in-process generation: {self.result.in_process[step]:.2f}s)")
                self.write(line)
            for alert in sorted(read.list_alerts(self.store, run), key=lambda a: a.id or 0):
                if alert.id not in self.alerts_shown:
                    self.alerts_shown.add(alert.id or 0)
                    self.result.alerts.append(alert)
                    mark = "STOP " if alert.action == "stop" else ""
                    self.write(f"  ALERT {mark}[{alert.severity}] {alert.rule} @ step {alert.step}: "
                               f"{alert.message}")

    def _loss_at(self, step: int) -> float | None:
        before = [s for s in self.result.losses if s <= step]
        return self.result.losses[max(before)] if before else None


def _line(step: int, loss: float | None, metrics: dict[str, float]) -> str:
    cells = [f"step {step:>5}", f"loss {loss:6.3f}" if loss is not None else "loss    n/a"]
    for metric, title, fmt in COLUMNS:
        if metric in metrics:
            cells.append(f"{title} {fmt.format(metrics[metric])}")
    return " | ".join(cells)


def _summary(result: DemoResult, say: Any) -> None:
    steps = sorted(result.checkpoints)
    say("")
    if result.losses:
        first, last = min(result.losses), max(result.losses)
        say(f"training loss {result.losses[first]:.2f} (step {first}) -> "
            f"{result.losses[last]:.2f} (step {last})")
    if steps:
        for metric, title, fmt in COLUMNS[:3]:
            values = [result.checkpoints[s].get(metric) for s in steps]
            shown = [fmt.format(v) if v is not None else "-" for v in values]
            say(f"{title:>10} by checkpoint: {' '.join(shown)}")
    if result.best is not None:
        _say_best(result.best, say)
    if result.alerts:
        say(f"{len(result.alerts)} alert(s):")
        for a in result.alerts:
            say(f"  [{a.severity}] {a.rule} at step {a.step}")
    else:
        say("no alert fired")
    if result.stopped_at is not None:
        say(f"training was stopped at step {result.stopped_at} by a `stop` alert")
    if result.blocked:
        blocked = sum(result.blocked.values())
        generating = sum(result.in_process[s] for s in result.blocked)
        say(f"checkpoint mode: the trainer was blocked {blocked:.2f} s by {len(result.blocked)} "
            f"evaluations (save + submit); generating in the trainer would have blocked it "
            f"{generating:.1f} s ({generating / max(blocked, 1e-9):.0f}x as long)")
    say(f"demo took {result.seconds:.0f} s")


def _say_best(best: dict[str, Any], say: Any) -> None:
    """``best`` beside the lowest-loss step; with no best, why, and each checkpoint's gate."""
    from ..ranking.report import best_headline

    say(best_headline(best))
    if best.get("best") is None:
        for c in best.get("checkpoints", []):
            if c["disqualified"]:
                say(f"  step {c['step']}: disqualified by {'; '.join(c['disqualified'])}")
    elif best.get("lowest_loss") and best["lowest_loss"]["step"] != best["best"]["step"]:
        gated = [c for c in best.get("checkpoints", [])
                 if c["step"] == best["lowest_loss"]["step"] and c["disqualified"]]
        why = f" (disqualified by {'; '.join(gated[0]['disqualified'])})" if gated else ""
        say(f"  loss alone would ship step {best['lowest_loss']['step']}{why}: "
            f"judgeserve compare {best['run']}@{best['lowest_loss']['step']} {best['best']['step']}")


def _stop_rules(tmp: Path) -> Path:
    """The default rules with ``action: stop`` on the critical ones."""
    import yaml

    from ..alerts import default_rules

    rules = [
        r.model_dump(exclude_defaults=True) | {"type": r.type, "action": "stop"}
        if r.severity == "critical"
        else r.model_dump(exclude_defaults=True) | {"type": r.type}
        for r in default_rules().rules
    ]
    path = tmp / "rules-stop.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path


def _printer(out: Any) -> Any:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


def _count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())
