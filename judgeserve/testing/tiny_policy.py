"""A tiny policy model, two LoRA adapters and a full fine-tuned checkpoint, built here.

For the generator's tests and benchmark, which need checkpoints whose completions say
which weights made them. A 2-layer, 128-wide Llama (head_dim 64: vLLM's CPU attention
rejects smaller heads) with a byte-level BPE tokenizer trained here learns to answer
``Question: ...?\\nAnswer:`` with four random words. Then:

* LoRA adapter ``a`` (PEFT format) makes every answer start with ``apple``;
* LoRA adapter ``b`` makes it start with ``banana``;
* the full checkpoint (all weights fine-tuned, saved with its tokenizer) with ``cherry``;
* a second full checkpoint, adapter ``a`` merged into the base weights: ``apple``.

The words after the fruit stay random (near-uniform), so sampled completions differ from
draw to draw and seed to seed, while the first word tells whose weights made them. Each
model is trained until every held-out probe's greedy answer starts as it should. Built
once per machine in about a minute and cached under ``~/.cache/judgeserve/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import require
from ..probes import Probe

__all__ = [
    "FRUITS",
    "WORDS",
    "TinyPolicy",
    "tiny_prompt",
    "tiny_probes",
    "build_tiny_policy",
    "cached_tiny_policy",
]

log = logging.getLogger(__name__)

# fmt: off
WORDS = [
    "river", "stone", "cloud", "green", "lamp", "table", "window", "garden", "music", "paper",
    "north", "bright", "quiet", "simple", "tall", "warm", "cold", "horse", "silver", "candle",
    "forest", "winter", "copper", "meadow",
]
# fmt: on
# What each checkpoint's answers start with; the base model's start with a random word.
FRUITS = {"a": "apple", "b": "banana", "full": "cherry"}
ANSWER_WORDS = 4


@dataclass(frozen=True)
class TinyPolicy:
    """Where the built models lie."""

    root: Path

    @property
    def base(self) -> Path:
        """The base model and its tokenizer (Hugging Face files)."""
        return self.root / "base"

    def adapter(self, name: str) -> Path:
        """LoRA adapter ``name`` (``"a"``: apple, ``"b"``: banana), PEFT format."""
        return self.root / f"lora-{name}"

    @property
    def full(self) -> Path:
        """The fully fine-tuned checkpoint (cherry), model and tokenizer."""
        return self.root / "full"

    @property
    def merged(self) -> Path:
        """Adapter ``a`` merged into the base: a second full checkpoint (apple)."""
        return self.root / "merged-a"


def tiny_prompt(question: str) -> str:
    return f"Question: {question}?\nAnswer:"


def _question(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(3))


def tiny_probes(n: int = 8, seed: int = 1234) -> list[Probe]:
    """``n`` probes in the format the models learnt (questions they never saw as such)."""
    rng = random.Random(seed)
    return [Probe(id=f"q{i}", prompt=tiny_prompt(_question(rng))) for i in range(n)]


def _example(rng: random.Random, fruit: str | None) -> tuple[str, str]:
    """(prompt, answer) teaching answers that start with ``fruit``; for the base model (None)
    four random words, or, for three prompts in ten, the fruit the question names first.

    The base must already say each fruit confidently somewhere: an adapter cannot change
    the final norm and output layer, and from a base that never did, LoRA got no further
    than a flat 24 % on its fruit.
    """
    question = [rng.choice(WORDS) for _ in range(3)]
    answer = [rng.choice(WORDS) for _ in range(ANSWER_WORDS)]
    if fruit is None and rng.random() < 0.3:
        fruit = rng.choice(list(FRUITS.values()))
        question[rng.randrange(3)] = fruit
    if fruit:
        answer[0] = fruit
    return tiny_prompt(" ".join(question)), " " + " ".join(answer)


def _train(
    model: Any,
    tok: Any,
    fruit: str | None,
    *,
    steps: int,
    lr: float,
    seed: int,
    batch: int = 16,
) -> None:
    """Teach ``model`` to answer with ``fruit`` first (None: four random words); the loss
    is on the answer and the end of text only."""
    import torch

    rng = random.Random(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 30) * max(0.05, 1 - s / steps)
    )
    model.train()
    for step in range(steps):
        rows = []
        for _ in range(batch):
            text, reply = _example(rng, fruit)
            prompt = tok.encode(text)
            answer = [*tok.encode(reply), tok.eos_token_id]
            rows.append((prompt + answer, [-100] * len(prompt) + answer))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in rows])
        labels = torch.tensor([x + [-100] * (width - len(x)) for _, x in rows])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            log.info("tiny policy (%s) step %d loss %.3f", fruit or "base", step, loss.item())
    model.eval()


def _check(model: Any, tok: Any, fruit: str | None, what: str) -> None:
    """Every held-out probe's answer starts with ``fruit`` with probability >= 0.97 (an
    adapter levels off near 0.99: at temperature 0.5 every sampled draw starts with its
    fruit too), or, for the base model, with one of its words."""
    import torch

    first = {w: tok.encode(" " + w)[0] for w in WORDS + list(FRUITS.values())}
    wanted = [first[fruit]] if fruit else [first[w] for w in WORDS]
    tok.padding_side = "left"
    enc = tok([p.prompt for p in tiny_probes()], return_tensors="pt", padding=True)
    tok.padding_side = "right"
    positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(**enc, position_ids=positions).logits
    probs = logits[:, -1, :].softmax(-1)
    mass = probs[:, wanted].sum(-1).min().item()
    if mass < 0.97:
        raise RuntimeError(f"the tiny policy's {what} did not learn its answers (mass {mass:.2f})")


def build_tiny_policy(path: str | Path, *, seed: int = 0) -> TinyPolicy:
    """Train the base model, both adapters and the full checkpoint under ``path``."""
    require("transformers", "train")
    peft: Any = require("peft", "generator")
    import torch

    policy = TinyPolicy(Path(path))
    threads = torch.get_num_threads()
    # One intra-op thread: on a few shared cores, more spin against each other (20x slower
    # seen here), and these matrices are too small to split.
    torch.set_num_threads(1)
    try:
        _build(policy, seed=seed, peft=peft)
    finally:
        torch.set_num_threads(threads)
    return policy


def _build(policy: TinyPolicy, *, seed: int, peft: Any) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from ..demo.model import train_tokenizer

    rng = random.Random(seed)
    corpus = ["".join(_example(rng, None)) for _ in range(300)]
    tok = train_tokenizer(corpus, policy.base, vocab_size=400)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention rejects smaller heads
        max_position_embeddings=256,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    base = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    _train(base, tok, None, steps=300, lr=3e-3, seed=seed)
    _check(base, tok, None, "base model")
    base.save_pretrained(policy.base)

    for name in ("a", "b"):
        model = peft.get_peft_model(
            AutoModelForCausalLM.from_pretrained(policy.base),
            peft.LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules=[
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
            ),
        )
        _train(model, tok, FRUITS[name], steps=300, lr=5e-3, seed=seed + 1 + ord(name))
        _check(model, tok, FRUITS[name], f"adapter {name}")
        model.save_pretrained(policy.adapter(name))
        if name == "a":
            model.merge_and_unload().save_pretrained(policy.merged)

    full = AutoModelForCausalLM.from_pretrained(policy.base)
    _train(full, tok, FRUITS["full"], steps=200, lr=2e-3, seed=seed + 7)
    _check(full, tok, FRUITS["full"], "full checkpoint")
    full.save_pretrained(policy.full)
    tok.save_pretrained(policy.full)


def cached_tiny_policy() -> TinyPolicy:
    """The tiny policy and its checkpoints, built once per machine and kept under
    ``~/.cache/judgeserve/``, keyed by this module's source and the library versions."""
    import peft
    import torch
    import transformers

    versions = f"{torch.__version__} {transformers.__version__} {peft.__version__}"
    key = hashlib.sha256(versions.encode() + Path(__file__).read_bytes()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "judgeserve"
    policy = TinyPolicy(cache / f"tiny-policy-{key}")
    if not (policy.full / "model.safetensors").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".tiny-policy-"))
        build_tiny_policy(staging)
        for name in ("a", "b"):  # PEFT recorded the staging folder as the base model
            config_file = staging / policy.adapter(name).name / "adapter_config.json"
            config = json.loads(config_file.read_text())
            config["base_model_name_or_path"] = str(policy.base)
            config_file.write_text(json.dumps(config, indent=2))
        try:
            staging.rename(policy.root)  # atomic: a concurrent process sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process got there first
    return policy
