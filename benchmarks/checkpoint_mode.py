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

Checkpoint mode's blocked time is the trainer's save plus the submit (one journal line);
a trainer that saves checkpoints anyway (to resume from) is blocked by the submit alone,
shown in its own column.

    python benchmarks/checkpoint_mode.py [--every 10] [--evals 4]
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
CASES = [
    ("demo", "full", 64),
    ("gpt2-12x512", "lora", 64),
    ("gpt2-12x512", "full", 64),
    ("gpt2-12x512", "lora", 256),
    ("gpt2-12x512", "full", 256),
]


class Texts:
    """The demo corpus tokenized without an end-of-text token (see the module docstring)."""

    def __init__(self, texts: list[str], tokenizer: Any) -> None:
        self.ids = [tokenizer(t)["input_ids"] for t in texts]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}


class SideBySide(TrainerCallback):
    """After the judge callback's ``on_save``: the blocked time of checkpoint mode, then the
    generate-mode evaluation of the same weights."""

    def __init__(self, judge: JudgeCallback, in_process: ProbeRunner) -> None:
        self.judge, self.in_process = judge, in_process
        self.blocked: dict[int, float] = {}
        self.generating: dict[int, float] = {}
        self.tokens: dict[int, float] = {}
        self.submit: dict[int, float] = {}
        self._step_end = 0.0
        self._submitted = 0.0

    def on_train_begin(self, *a: Any, **k: Any) -> None:
        self._submitted = self.judge.runner.submit_s  # after the probe set's upload

    def on_step_end(self, *a: Any, **k: Any) -> None:
        self._step_end = time.perf_counter()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if step not in self.judge.runner.probed:
            return
        self.blocked[step] = time.perf_counter() - self._step_end
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
    name, checkpoint, new_tokens = case
    model = model_for(name, checkpoint, data["tokenizer"])
    params = sum(p.numel() for p in model.parameters())
    kind = f"{name}-{checkpoint}-{new_tokens}"
    run = f"bench-ckpt-{kind}-{uuid.uuid4().hex[:4]}"
    generation = GenerationConfig(max_new_tokens=new_tokens)
    with JudgeClient(url, run=run, spool_dir=tmp / "spool") as client, \
            JudgeClient(url, run=run + "-gen", spool_dir=tmp / "spool") as gen_client:
        judge = JudgeCallback(data["probes"], client=client, mode="checkpoint",
                              generation=generation, log_back=False)
        in_process = ProbeRunner(data["probes"], client=gen_client, generation=generation,
                                 log_back=False)
        side = SideBySide(judge, in_process)
        out = tmp / f"out-{kind}"
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=str(out), max_steps=every * evals, per_device_train_batch_size=8,
                learning_rate=2e-3, save_strategy="steps", save_steps=every, save_only_model=True,
                logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                dataloader_num_workers=0, seed=0,
            ),
            train_dataset=data["dataset"],
            data_collator=lambda b: collate(b, data["tokenizer"].pad_token_id),
            processing_class=data["tokenizer"],
            callbacks=[judge, side],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        in_process.close()
    saved = sorted(out.glob("checkpoint-*"))[-1]
    size = sum(f.stat().st_size for f in saved.iterdir() if f.is_file())
    return {
        "name": name, "checkpoint": checkpoint, "params": params, "bytes": size,
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
    args = ap.parse_args()
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
        for case in CASES:
            # The long evaluations: fewer of them.
            evals = args.evals if case[2] <= 64 else max(2, args.evals - 1)
            results.append(measure(case, data, url, tmp, args.every, evals))
            r = results[-1]
            print(f"{case}: blocked {r['blocked']:.4f} s, in-process {r['generating']:.2f} s",
                  flush=True)
    targets = {"lora": "target >= 200x", "full": "target >= 40x"}
    print()
    header = ("model, checkpoint", "in-process s", "save+submit s", "ratio", "submit s",
              "notes")
    rows = [header]
    for r in results:
        target = targets[r["checkpoint"]] if r["name"] != "demo" else "the demo model"
        rows.append((
            f"{r['name']} ({r['params'] / 1e6:.1f}M), {r['checkpoint']}",
            f"{r['generating']:.3f}",
            f"{r['blocked']:.4f}",
            f"{r['generating'] / r['blocked']:,.0f}x",
            f"{r['submit']:.5f}",
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
