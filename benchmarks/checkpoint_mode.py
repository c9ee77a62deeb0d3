"""Trainer-blocked time per evaluation: generating the probes in the trainer vs checkpoint mode.

Same model, same probe set, one training run each, side by side at every evaluation: the
Hugging Face ``Trainer`` saves a checkpoint every ``--every`` steps and the real
``JudgeCallback(mode="checkpoint")`` submits it (blocked: from the end of the step to the
end of ``on_save``: the save and the submit); right after, at the same save, a generate-mode
``ProbeRunner`` does what ``mode="generate"`` does at an evaluation (``generate`` the probe
set's completions with the model being trained, ``submit`` them), timed on its own.

Models: (a) the demo's GPT-2 (3 layers x 128, trained from scratch: full checkpoints);
(b) a 12-layer, 512-wide GPT-2 built from scratch, once trained through PEFT LoRA
adapters (the adapter is the checkpoint) and once fully (full checkpoints). Probes: the
demo's 24 held-out questions, 64 new tokens, greedy. The training texts carry no
end-of-text token here, so every completion runs to the 64 tokens asked, as a chat
model's answers run long (the demo's models learn to stop after ~12 tokens, which would
measure a 5x cheaper evaluation than the one configured); the table says how many tokens
were generated. One torch thread, as the demo (two threads on two shared cores thrash).
Submits go to a real ``judgeserve api`` process.

Two ways to save in checkpoint mode, each a row of its own:

* ``trainer``: the Trainer saves (``save_only_model``: weights, config, tokenizer, trainer
  state) and the callback submits the folder on ``on_save``. Blocked: from the end of the
  step (a callback placed before the judge's) to the end of ``on_save``: the save plus
  the submit (one journal line). A trainer that saves checkpoints anyway (to resume from)
  is blocked by the submit alone, shown in its own column.
* ``background`` (``checkpoint_save="background"``, the Trainer's own saving off): the
  callback copies the weights into memory at the end of the step and a thread writes and
  submits the folder. Blocked: from the end of the step to the end of the judge's
  ``on_step_end`` (the copy, and any wait for the previous write). The write's own time is
  shown in its column: it is not blocked time, but it does use the machine (a core and
  the disk) while training goes on. The in-process generation it is compared with starts
  after the write has finished, so the two never share the CPU.

    python benchmarks/checkpoint_mode.py [--every 10] [--evals 4] [--cases 1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from _stack import api_process
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from judgeserve import JudgeClient
from judgeserve.callbacks import GenerationConfig, ProbeRunner, load_probes
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.demo.data import write_corpus
from judgeserve.demo.model import collate, tiny_gpt2, train_tokenizer

# (model, checkpoint kind, new tokens per completion): the measurement (64 tokens),
# and the evaluation its motivation describes (24 probes x 256 tokens).
# The last field: who saves (see the module docstring).
CASES = [
    ("demo", "full", 64, "trainer"),
    ("demo", "full", 64, "background"),
    ("gpt2-12x512", "lora", 64, "trainer"),
    ("gpt2-12x512", "lora", 64, "background"),
    ("gpt2-12x512", "full", 64, "trainer"),
    ("gpt2-12x512", "full", 64, "background"),
    ("gpt2-12x512", "lora", 256, "trainer"),
    ("gpt2-12x512", "full", 256, "trainer"),
]


class StepEnd(TrainerCallback):
    """First of the benchmark's callbacks: when the step's work ended."""

    def __init__(self) -> None:
        self.at = 0.0

    def on_step_end(self, *a: Any, **k: Any) -> None:
        self.at = time.perf_counter()


class Texts:
    """The demo corpus tokenized without an end-of-text token (see the module docstring)."""

    def __init__(self, texts: list[str], tokenizer: Any) -> None:
        self.ids = [tokenizer(t)["input_ids"] for t in texts]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}


class SideBySide(TrainerCallback):
    """After the judge callback (its ``on_save``, or in background mode its
    ``on_step_end``): the blocked time of checkpoint mode, then the generate-mode
    evaluation of the same weights."""

    def __init__(self, judge: JudgeCallback, in_process: ProbeRunner, step_end: StepEnd) -> None:
        self.judge, self.in_process, self.step_end = judge, in_process, step_end
        self.background = judge.runner.options.checkpoint_save == "background"
        self.blocked: dict[int, float] = {}
        self.generating: dict[int, float] = {}
        self.tokens: dict[int, float] = {}
        self.submit: dict[int, float] = {}
        self.write: dict[int, float] = {}
        self._submitted = 0.0

    def on_train_begin(self, *a: Any, **k: Any) -> None:
        self._submitted = self.judge.runner.submit_s  # after the probe set's upload

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.background:
            self.measure(state.global_step, kwargs)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.background:
            self.measure(state.global_step, kwargs)

    def measure(self, step: int, kwargs: dict[str, Any]) -> None:
        if step not in self.judge.runner.probed or step in self.blocked:
            return
        self.blocked[step] = time.perf_counter() - self.step_end.at
        if self.background:
            # Not blocked time: the write runs beside training. Waited for here only so
            # that it does not share the CPU with the in-process generation timed next.
            saver = self.judge.runner.saver
            saver.wait()
            record = saver.records[-1]
            assert record.error is None and record.write_s is not None, record
            self.write[step] = record.write_s
        self.submit[step] = self.judge.runner.submit_s - self._submitted
        self._submitted = self.judge.runner.submit_s
        started = time.perf_counter()
        completions = self.in_process.probe(step, kwargs["model"], kwargs["processing_class"])
        self.generating[step] = time.perf_counter() - started
        self.tokens[step] = statistics.mean(c.tokens for c in completions)


def model_for(name: str, checkpoint: str, tokenizer: Any) -> Any:
    if name == "demo":
        return tiny_gpt2(tokenizer)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer), n_positions=512, n_embd=512, n_layer=12, n_head=8,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    if checkpoint == "lora":
        import peft

        # PEFT's default for GPT-2: the attention projection, rank 8.
        config = peft.LoraConfig(
            r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True,
            task_type="CAUSAL_LM",
        )
        return peft.get_peft_model(model, config)
    return model


def measure(
    case: tuple[str, str, int], data: dict[str, Any], url: str, tmp: Path, every: int, evals: int
) -> dict[str, Any]:
    name, checkpoint, new_tokens, saves = case
    model = model_for(name, checkpoint, data["tokenizer"])
    params = sum(p.numel() for p in model.parameters())
    kind = f"{name}-{checkpoint}-{new_tokens}-{saves}"
    run = f"bench-ckpt-{kind}-{uuid.uuid4().hex[:4]}"
    generation = GenerationConfig(max_new_tokens=new_tokens)
    with JudgeClient(url, run=run, spool_dir=tmp / "spool") as client, \
            JudgeClient(url, run=run + "-gen", spool_dir=tmp / "spool") as gen_client:
        judge = JudgeCallback(data["probes"], client=client, mode="checkpoint",
                              generation=generation, log_back=False, checkpoint_save=saves,
                              every_n_steps=every, probe_at_end=False)
        in_process = ProbeRunner(data["probes"], client=gen_client, generation=generation,
                                 log_back=False)
        step_end = StepEnd()
        side = SideBySide(judge, in_process, step_end)
        out = tmp / f"out-{kind}"
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=str(out), max_steps=every * evals, per_device_train_batch_size=8,
                learning_rate=2e-3, save_only_model=True,
                # background: judgeserve saves; the Trainer's own saving is off.
                save_strategy="no" if saves == "background" else "steps", save_steps=every,
                logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                dataloader_num_workers=0, seed=0,
            ),
            train_dataset=data["dataset"],
            data_collator=lambda b: collate(b, data["tokenizer"].pad_token_id),
            processing_class=data["tokenizer"],
            callbacks=[step_end, judge, side],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        in_process.close()
    saved = sorted(out.glob("judgeserve/step-*" if saves == "background" else "checkpoint-*"))[-1]
    size = sum(f.stat().st_size for f in saved.iterdir() if f.is_file())
    return {
        "name": name, "checkpoint": checkpoint, "saves": saves, "params": params, "bytes": size,
        "write": statistics.median(side.write.values()) if side.write else None,
        "blocked": statistics.median(side.blocked.values()),
        "submit": statistics.median(side.submit.values()),
        "generating": statistics.median(side.generating.values()),
        "tokens": statistics.mean(side.tokens.values()),
        "evals": len(side.blocked),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=10, help="steps between evaluations")
    ap.add_argument("--evals", type=int, default=4, help="evaluations per model")
    ap.add_argument("--cases", default="", help="comma-separated row numbers (1-based) to run; default all")
    args = ap.parse_args()
    cases = [CASES[int(i) - 1] for i in args.cases.split(",")] if args.cases else CASES
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="judgeserve-bench-"))
    train_path, probe_path = write_corpus(tmp / "data")
    texts = [json.loads(line)["text"] for line in train_path.read_text().splitlines()]
    probes = load_probes(probe_path)
    tokenizer = train_tokenizer(texts + [p.prompt for p in probes], tmp / "tok")
    data = {"tokenizer": tokenizer, "dataset": Texts(texts, tokenizer), "probes": probe_path}
    results = []
    with api_process() as url:
        for case in cases:
            # The long evaluations: fewer of them.
            evals = args.evals if case[2] <= 64 else max(2, args.evals - 1)
            results.append(measure(case, data, url, tmp, args.every, evals))
            r = results[-1]
            print(f"{case}: blocked {r['blocked']:.4f} s, in-process {r['generating']:.2f} s",
                  flush=True)
    targets = {"lora": "target >= 200x", "full": "target >= 40x"}
    print()
    header = ("model, checkpoint, saved by", "in-process s", "blocked s", "ratio", "submit s",
              "write s (background)", "notes")
    rows = [header]
    for r in results:
        target = targets[r["checkpoint"]] if r["name"] != "demo" else "the demo model"
        rows.append((
            f"{r['name']} ({r['params'] / 1e6:.1f}M), {r['checkpoint']}, {r['saves']}",
            f"{r['generating']:.3f}",
            f"{r['blocked']:.4f}",
            f"{r['generating'] / r['blocked']:,.0f}x",
            f"{r['submit']:.5f}",
            f"{r['write']:.3f}" if r["write"] is not None else "-",
            f"{target}; checkpoint {r['bytes'] / 1e6:.1f} MB; {len(probes)} probes x "
            f"{r['tokens']:.0f} tokens; median of {r['evals']} evaluations",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
