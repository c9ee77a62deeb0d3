"""A toy judge model built from scratch in seconds, for tests, benchmarks and demos.

No model can be downloaded here, yet the judge pipeline must be proven end to end: this
module trains a tokenizer on rendered judge prompts, then a 2-layer Llama to answer the
toy rubric below: " 5" when the judged answer contains the word ``banana``, " 1" when it
contains ``cherry``. A backend that recovers that behaviour has rendered the prompt, read
the next-token distribution and mapped it onto the scale correctly. (A pairwise toy task,
"which answer has the banana", did not train in seconds at this size: 2 layers do not
learn to compare two fenced segments in a few hundred steps.)
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from .prompt import PromptBuilder
from .rubric import Rubric, parse_rubric

__all__ = [
    "TOY_RUBRIC",
    "GOOD",
    "BAD",
    "toy_rubric",
    "toy_text",
    "expected_level",
    "build_toy_judge",
    "cached_toy_judge",
]

log = logging.getLogger(__name__)

GOOD, BAD = "banana", "cherry"
TOY_RUBRIC = """\
name: toy
version: 1
description: Write a short sentence.
reference: ignored
scale:
  levels:
    1: mentions cherry
    2: poor
    3: fair
    4: good
    5: mentions banana
criteria:
  - name: marker
    description: Does the answer mention the right fruit?
"""
# fmt: off
_WORDS = [
    "the", "a", "river", "stone", "cloud", "quick", "slow", "green", "blue", "lamp", "table",
    "window", "garden", "music", "paper", "north", "south", "bright", "dark", "small", "large",
    "happy", "quiet", "loud", "simple", "tall", "short", "warm", "cold",
]
# fmt: on


def toy_rubric() -> Rubric:
    return parse_rubric(TOY_RUBRIC, source="<toy rubric>")


def toy_text(rng: random.Random, marker: str, words: int = 8) -> str:
    """A random sentence with ``marker`` at a random place."""
    body = [rng.choice(_WORDS) for _ in range(words)]
    body.insert(rng.randrange(len(body) + 1), marker)
    return " ".join(body)


def expected_level(text: str) -> float:
    """What the toy judge should say about a judged answer."""
    return 5.0 if GOOD in text else 1.0


def _examples(builder: PromptBuilder, n: int, seed: int) -> list[tuple[str, str]]:
    rubric = toy_rubric()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        good = rng.random() < 0.5
        prompt = builder.render(
            rubric,
            "marker",
            prompt=toy_text(rng, rng.choice(_WORDS), 4),
            completion=toy_text(rng, GOOD if good else BAD),
        )
        out.append((prompt.text(), " 5" if good else " 1"))
    return out


def build_toy_judge(path: str | Path, *, steps: int = 120, batch: int = 16, seed: int = 0) -> Path:
    """Train the toy judge and save model + tokenizer under ``path``; returns ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    torch.manual_seed(seed)
    examples = _examples(PromptBuilder(), 400, seed)

    # Byte-level BPE: any text encodes, and " 1" / " 5" become single tokens.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([p + a for p, a in examples[:100]], trainer=trainer)
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention rejects smaller heads
        max_position_embeddings=1024,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    answer_ids = {a: tok.encode(a) for a in (" 1", " 5")}
    assert all(len(v) == 1 for v in answer_ids.values()), answer_ids

    tok.padding_side = "left"
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        chosen = rng.sample(examples, batch)
        enc = tok([p for p, _ in chosen], return_tensors="pt", padding=True)
        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions
        ).logits[:, -1, :]
        # Loss on the answer token only: the prompt itself needs no modelling.
        target = torch.tensor([answer_ids[a][0] for _, a in chosen])
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step % 50 == 0:
            log.info("toy judge step %d loss %.3f", step, loss.item())
    log.info(
        "toy judge trained in %.1fs (final loss %.4f)", time.perf_counter() - start, loss.item()
    )

    model.eval()  # type: ignore[no-untyped-call]
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.padding_side = "right"
    tok.save_pretrained(path)
    return path


def cached_toy_judge(steps: int = 400, cache_root: Path | None = None) -> Path:
    """The toy judge, trained once and kept under ``~/.cache/judgeserve/``.

    Training costs about a minute alone and several on a busy 2-core machine. The model
    is a function of this module, the prompt templates, the step count and the library
    versions; the cache key hashes all of them, so a cached copy is the same model.
    """
    import hashlib
    import shutil
    import tempfile

    import torch
    import transformers

    from .prompt import PROMPT_DIR

    h = hashlib.sha256(f"{steps} {torch.__version__} {transformers.__version__}".encode())
    for source in [Path(__file__), *sorted(PROMPT_DIR.glob("*.jinja"))]:
        h.update(source.read_bytes())
    root = cache_root or Path.home() / ".cache" / "judgeserve"
    target = root / f"toy-judge-{h.hexdigest()[:16]}"
    if not (target / "model.safetensors").is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".toy-judge-"))
        build_toy_judge(staging, steps=steps)
        try:
            staging.rename(target)  # atomic: a concurrent process sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process got there first
    return target
