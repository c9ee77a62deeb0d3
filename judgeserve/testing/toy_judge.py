"""A toy judge model built from scratch in a few minutes, for tests, benchmarks and demos.

No model can be downloaded here, yet the judge pipeline must be proven end to end: this
module trains a tokenizer on rendered judge prompts, then a small Llama to answer two
toy rubrics:

* single (:data:`TOY_RUBRIC`): " 5" when the judged answer contains the word ``banana``,
  " 1" when it contains ``cherry``;
* pairwise (:data:`TOY_PAIRWISE_RUBRIC`): " A" or " B", whichever of the two answers
  contains ``banana`` (the other contains ``cherry``; ties are never taught).

A backend that recovers that behaviour has rendered the prompt, read the next-token
distribution and mapped it onto the scale correctly. The tokenizer carries a chat
template, and the model learns every way a backend may present a prompt: plain text
ending in the answer prefix, the chat template plus the prefix (local backends), and the
bare chat template (an OpenAI-compatible chat endpoint, which opens the assistant turn
itself and is answered with the label alone).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import NotLearnt
from ..judge.prompt import JudgePrompt, PromptBuilder
from ..judge.rubric import Rubric, parse_rubric

__all__ = [
    "TOY_RUBRIC",
    "TOY_PAIRWISE_RUBRIC",
    "CHAT_TEMPLATE",
    "GOOD",
    "BAD",
    "toy_rubric",
    "toy_pairwise_rubric",
    "toy_text",
    "expected_level",
    "expected_pair",
    "build_toy_judge",
    "build_toy_lora",
    "cached_toy_judge",
    "cached_toy_lora",
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
TOY_PAIRWISE_RUBRIC = """\
name: toy_pair
version: 1
description: Write a short sentence.
reference: ignored
mode: pairwise
criteria:
  - name: marker
    description: Which answer mentions the right fruit?
"""
# A minimal chat format of the kind instruction-tuned models ship in tokenizer_config.json.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# fmt: off
_WORDS = [
    "the", "a", "river", "stone", "cloud", "quick", "slow", "green", "blue", "lamp", "table",
    "window", "garden", "music", "paper", "north", "south", "bright", "dark", "small", "large",
    "happy", "quiet", "loud", "simple", "tall", "short", "warm", "cold",
]
# fmt: on


def toy_rubric() -> Rubric:
    return parse_rubric(TOY_RUBRIC, source="<toy rubric>")


def toy_pairwise_rubric() -> Rubric:
    return parse_rubric(TOY_PAIRWISE_RUBRIC, source="<toy pairwise rubric>")


def toy_text(rng: random.Random, marker: str, words: int = 8) -> str:
    """A random sentence with ``marker`` at a random place."""
    body = [rng.choice(_WORDS) for _ in range(words)]
    body.insert(rng.randrange(len(body) + 1), marker)
    return " ".join(body)


def expected_level(text: str) -> float:
    """What the toy judge should say about a judged answer."""
    return 5.0 if GOOD in text else 1.0


def expected_pair(a: str, b: str) -> str:
    """What the toy judge should say comparing answer A with answer B (one has the banana)."""
    if (GOOD in a) == (GOOD in b):
        raise ValueError("the toy pairwise task pairs a banana answer with a cherry answer")
    return "A" if GOOD in a else "B"


def _examples(n: int, seed: int) -> list[tuple[JudgePrompt, str]]:
    """(prompt, verdict label) pairs: half single, half pairwise. Fences too come from the
    seed, so the tokenizer trained on them, and hence the whole build, is repeatable."""
    rng = random.Random(seed)
    builder = PromptBuilder(fence_source=lambda: f"{rng.getrandbits(64):016x}")
    single, pair = toy_rubric(), toy_pairwise_rubric()
    out = []
    for _ in range(n):
        question = toy_text(rng, rng.choice(_WORDS), 4)
        if rng.random() < 0.5:
            answer = toy_text(rng, GOOD if rng.random() < 0.5 else BAD, rng.randint(4, 12))
            prompt = builder.render(single, "marker", prompt=question, completion=answer)
            out.append((prompt, str(int(expected_level(answer)))))
        else:
            a = toy_text(rng, GOOD, rng.randint(4, 12))
            b = toy_text(rng, BAD, rng.randint(4, 12))
            if rng.random() < 0.5:
                a, b = b, a
            prompt = builder.render(pair, "marker", prompt=question, completion=a, completion_b=b)
            out.append((prompt, expected_pair(a, b)))
    return out


def build_toy_judge(
    path: str | Path,
    *,
    max_steps: int = 800,
    attempts: int = 5,
    layers: int = 2,
    lr: float = 2e-3,
    seed: int = 0,
) -> Path:
    """Train the toy judge and save model + tokenizer under ``path``; returns ``path``.

    Most initialisations learn every (task, format) pair within 200-400 steps; now and then
    one stalls on a pair for thousands (one seen here was still short at 1,500). Such a run is abandoned after ``max_steps`` and
    training starts over from the next seed's initialisation.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from ..judge.trainer import train_verdicts

    path = Path(path)
    # Many distinct prompts, so that many distinct fences: with few, the model came to read
    # digits of particular fences, and about 1 % of fresh fences tipped a verdict.
    examples = _examples(4000, seed)

    # Byte-level BPE: any text encodes, and " 1" / " 5" / " A" / " B" become single tokens.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([p.text() + " " + a for p, a in examples[:150]], trainer=trainer)
    tok: Any = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention rejects smaller heads
        max_position_embeddings=1024,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    held_out = _examples(96, seed + 1000)
    for attempt in range(attempts):
        torch.manual_seed(seed + attempt)
        model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
        try:
            train_verdicts(
                model, tok, examples, learnt_on=held_out, max_steps=max_steps, lr=lr,
                seed=seed + attempt,
            )
            break
        except NotLearnt:
            if attempt == attempts - 1:
                raise
            log.warning("toy judge stalled (attempt %d); starting over", attempt + 1)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_toy_lora(
    base: str | Path, path: str | Path, *, max_steps: int = 2000, seed: int = 1
) -> Path:
    """A LoRA adapter for the toy judge that inverts its single rubric (banana → 1, cherry → 5).

    For testing adapter loading: a backend that applies the adapter must give the inverted
    verdicts, one that ignores it the original ones. Saved in PEFT's format under ``path``.
    """
    from ..judge.trainer import FORMATS, train_lora

    flipped = {"5": "1", "1": "5"}

    def inverted(n: int, seed: int) -> list[tuple[JudgePrompt, str]]:
        return [(p, flipped[a]) for p, a in _examples(n, seed) if a in flipped]

    # Many prompts (many fences) for the reason given in build_toy_judge.
    adapter, _ = train_lora(
        base, path, inverted(4000, seed), learnt_on=inverted(64, seed + 1000),
        formats=FORMATS, max_steps=max_steps, lr=3e-3, seed=seed,
    )
    return adapter


def _cached(kind: str, marker_file: str, build: Callable[[Path], object], key: str) -> Path:
    """``build(dir)`` once per machine, kept under ``~/.cache/judgeserve/`` by content key."""
    import hashlib
    import shutil
    import tempfile

    import torch
    import transformers

    from ..judge.prompt import PROMPT_DIR

    h = hashlib.sha256(f"{key} {torch.__version__} {transformers.__version__}".encode())
    from ..judge import trainer

    sources = [Path(__file__), Path(trainer.__file__), *sorted(PROMPT_DIR.glob("*.jinja"))]
    for source in sources:
        h.update(source.read_bytes())
    root = Path.home() / ".cache" / "judgeserve"
    target = root / f"{kind}-{h.hexdigest()[:16]}"
    if not (target / marker_file).is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{kind}-"))
        build(staging)
        try:
            staging.rename(target)  # atomic: a concurrent process sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process got there first
    return target


def cached_toy_judge() -> Path:
    """The toy judge, trained once and kept under ``~/.cache/judgeserve/``.

    Training takes a few minutes on a 2-core machine. The model is a function of this
    module, the prompt templates and the library versions; the cache key hashes all of
    them, so a cached copy is the same model.
    """
    return _cached("toy-judge", "model.safetensors", build_toy_judge, "judge")


def cached_toy_lora(base: Path) -> Path:
    """The inverting LoRA adapter of :func:`build_toy_lora` for ``base``, built once."""
    return _cached(
        "toy-lora",
        "adapter_model.safetensors",
        lambda d: build_toy_lora(base, d),
        f"lora {base.name}",
    )
