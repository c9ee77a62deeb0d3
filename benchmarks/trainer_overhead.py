"""What the trainer pays for judgeserve, and how fast an alert comes back.

1. Training steps/s of the demo's tiny GPT-2 with and without ``JudgeCallback``, in one
   process, interleaved runs, probe generation excluded (target: overhead < 1%). The
   wall-clock comparison is noisy on a shared machine, so the time spent inside the
   callback's own code (everything but generation) is measured directly as well.
2. Probe generation per evaluation as a fraction of the training time between evaluations.
3. Detection latency: a checkpoint's samples submitted → the alert visible through
   ``client.alerts()``, against ``judgeserve up`` (API + worker, default scorers) in its
   own process (target ≤ 30 s).

Steps 1-2 run against the API alone (``judgeserve api``): samples queue in Redis, and no
worker competes with the trainer for the two cores, as it would not where scoring runs
on its own machine.

    python benchmarks/trainer_overhead.py [--steps 600] [--every 100] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from _stack import judgeserve_processes, table
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from judgeserve import JudgeClient
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.demo.data import write_corpus
from judgeserve.demo.model import TextDataset, collate, tiny_gpt2, train_tokenizer

CANARY_RULES = """
rules:
  - name: checkpoint_scored
    type: threshold
    description: Fires on every scored checkpoint; measures detection latency.
    metric: length.tokens
    above: 0
"""


def stack(tmp: Path, rules: Path, command: str) -> AbstractContextManager[str]:
    """``judgeserve up`` (or ``api``) in its own process, on its own Redis prefix and store."""
    return judgeserve_processes(command, {
        "JUDGESERVE_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        "JUDGESERVE_INDEX_DIR": str(tmp / "indexes"),
        "JUDGESERVE_ALERT_RULES": str(rules),
    })


class Timed(JudgeCallback):
    """JudgeCallback that clocks its own event handlers."""

    spent = 0.0

    def _timed(self, name: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getattr(super(), name)(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - t0

    def on_step_end(self, *a: Any, **k: Any) -> None:
        self._timed("on_step_end", *a, **k)

    def on_log(self, *a: Any, **k: Any) -> None:
        self._timed("on_log", *a, **k)

    def on_train_begin(self, *a: Any, **k: Any) -> None:
        self._timed("on_train_begin", *a, **k)


class StepClock(TrainerCallback):
    """Wall time of the training loop itself, from the first step's start to the last's end."""

    def on_train_begin(self, *a: Any, **k: Any) -> None:
        self.start = 0.0

    def on_step_begin(self, *a: Any, **k: Any) -> None:
        if not self.start:
            self.start = time.perf_counter()

    def on_step_end(self, *a: Any, **k: Any) -> None:
        self.end = time.perf_counter()


def cpu_seconds(client: JudgeClient) -> float:
    """user + system CPU seconds of the client's delivery agent process (Linux)."""
    pid = client._agent.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_once(data: dict[str, Any], steps: int, callback: Timed | None, out: Path) -> float:
    clock = StepClock()
    trainer = Trainer(
        model=tiny_gpt2(data["tokenizer"]),
        args=TrainingArguments(
            output_dir=str(out), max_steps=steps, per_device_train_batch_size=8,
            learning_rate=2e-3, logging_steps=25, save_strategy="no", report_to=[],
            use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
        ),
        train_dataset=data["dataset"],
        data_collator=lambda b: collate(b, data["tokenizer"].pad_token_id),
        processing_class=data["tokenizer"],
        callbacks=[clock] + ([callback] if callback else []),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return clock.end - clock.start


def overhead(data: dict[str, Any], url: str, tmp: Path, steps: int, every: int, reps: int) -> list[tuple[str, str, str]]:
    plain: list[float] = []
    judged: list[float] = []
    own: list[float] = []
    watcher: list[float] = []
    agent: list[float] = []
    gen_per_eval: list[float] = []
    for rep in range(reps):
        # ABBA order: load drifting on a shared machine falls on both arms alike.
        if rep % 2 == 0:
            plain.append(train_once(data, steps, None, tmp / "out"))
        client = JudgeClient(url, run=f"bench-overhead-{rep}-{uuid.uuid4().hex[:4]}", spool_dir=tmp / "spool")
        cb = Timed(data["probes"], client=client, every_n_steps=every, max_new_tokens=48,
                   probe_at_start=False, probe_at_end=False)
        polls = [0.0]
        poll = cb.runner.poll

        def timed_poll(poll: Any = poll, polls: list[float] = polls) -> None:
            t0 = time.perf_counter()
            poll()
            polls[0] += time.perf_counter() - t0

        cb.runner.poll = timed_poll  # type: ignore[method-assign]
        agent_before = cpu_seconds(client)
        wall = train_once(data, steps, cb, tmp / "out")
        agent.append(cpu_seconds(client) - agent_before)
        client.close(30)
        gen = cb.runner.generation_s
        judged.append(wall - gen)
        own.append(cb.spent - gen)
        watcher.append(polls[0])
        if rep % 2 == 1:
            plain.append(train_once(data, steps, None, tmp / "out"))
        gen_per_eval.append(gen / max(len(cb.runner.probed), 1))
    base = statistics.median(plain)
    with_cb = statistics.median(judged)
    paired = statistics.median(j / p - 1 for j, p in zip(judged, plain, strict=True))
    per_eval = statistics.median(gen_per_eval)
    between = base * every / steps
    n_probes = len(data["probe_list"])
    return [
        ("training steps/s without callback", f"{steps / base:.1f}", f"median of {reps} runs of {steps} steps"),
        ("training steps/s with callback", f"{steps / with_cb:.1f}", "probe generation time excluded"),
        ("wall-clock overhead", f"{paired * 100:+.2f}%",
         f"median of paired runs (ABBA); spread {min(plain):.1f}-{max(plain):.1f} s without: "
         "noisy on shared cores; target < 1%"),
        ("time in callback code (no generation)", f"{statistics.median(own) / base * 100:.3f}%",
         "submit + log_metrics + stop check, of training time"),
        ("watcher thread (alert + metric polls)", f"{statistics.median(watcher) / base * 100:.2f}%",
         "wall time of its polls, of training time (shares the GIL)"),
        ("SDK delivery agent process CPU", f"{statistics.median(agent) / base * 100:.2f}%",
         "CPU seconds of the agent, of training time (another process)"),
        ("probe generation per evaluation", f"{per_eval:.2f} s", f"{n_probes} probes x 48 tokens, greedy"),
        (f"  as a share of {every} training steps", f"{per_eval / between * 100:.1f}%", f"{between:.1f} s of training"),
    ]


def latency(data: dict[str, Any], url: str, tmp: Path, reps: int) -> list[tuple[str, str, str]]:
    """Submit a real checkpoint's completions, poll until the canary alert shows."""
    from judgeserve.callbacks import GenerationConfig, generate

    model = tiny_gpt2(data["tokenizer"])
    completions = generate(model, data["tokenizer"], data["probe_list"], GenerationConfig(max_new_tokens=48))
    seen: list[float] = []
    for i in range(reps + 1):  # the first warms the worker's models up
        with JudgeClient(url, run=f"bench-latency-{uuid.uuid4().hex[:6]}", spool_dir=tmp / "spool") as client:
            client.submit(100, [c.sample(100) for c in completions])
            t0 = time.perf_counter()
            while not client.alerts():
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("no alert within 120 s")
                time.sleep(0.05)
            if i:
                seen.append(time.perf_counter() - t0)
    return [
        ("detection latency (submit → alert visible)", f"{statistics.median(seen):.2f} s",
         f"median of {reps}, max {max(seen):.2f} s; {len(completions)} samples, default scorers; "
         "target ≤ 30 s (+ the callback's poll_interval_s, 2 s by default)"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.set_num_threads(1)  # as the demo: two threads on two shared cores thrash
    tmp = Path(tempfile.mkdtemp(prefix="judgeserve-bench-"))
    train_path, probe_path = write_corpus(tmp / "data")
    texts = [json.loads(line)["text"] for line in train_path.read_text().splitlines()]
    from judgeserve.callbacks import load_probes

    probe_list = load_probes(probe_path)
    tokenizer = train_tokenizer(texts + [p.prompt for p in probe_list], tmp / "tok")
    data = {"tokenizer": tokenizer, "dataset": TextDataset(texts, tokenizer),
            "probes": probe_path, "probe_list": probe_list}
    rules = tmp / "rules.yaml"
    rules.write_text(CANARY_RULES)
    # Overhead against the API alone: on 2 shared cores a worker scoring beside the trainer
    # would take CPU from it, which is not the trainer's overhead (scoring runs elsewhere).
    with stack(tmp, rules, "api") as url:
        rows = overhead(data, url, tmp, args.steps, args.every, args.reps)
    with stack(tmp, rules, "up") as url:
        rows += latency(data, url, tmp, args.reps)
    print()
    table([("measure", "value", "notes"), *rows])


if __name__ == "__main__":
    main()
