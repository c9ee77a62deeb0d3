"""Teaching a causal LM the verdict token a judge backend reads: one trainer for every judge
judgeserve trains (the toy judge of the tests, its inverting LoRA adapter, and the LoRA
adapters ``judgeserve judge tune`` fits to people's labels).

An example is a rendered :class:`~judgeserve.judge.prompt.JudgePrompt` and the label the
judge should answer (``"5"``, ``"A"``, ``"tie"``). The model sees the prompt exactly as a
backend presents it (:data:`FORMATS`: plain text ending in the answer prefix, the chat
template plus the prefix, or the bare chat turn an OpenAI-compatible chat server opens) and
is taught, with the loss on those tokens only, the label's first token and then the end of
text (so that generating stops there, as a real judge's reply does). The prompt itself
needs no modelling. Backends read a label's first token only
(:func:`~judgeserve.judge.backends.base.label_token_ids`), so that is the one taught.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from ..exceptions import NotLearnt, require
from .backends.base import prompt_text
from .prompt import JudgePrompt

__all__ = [
    "Example",
    "Format",
    "FORMATS",
    "DEFAULT_TARGETS",
    "render",
    "verdict_token",
    "train_verdicts",
    "train_lora",
]

log = logging.getLogger(__name__)

Example = tuple[JudgePrompt, str]  # a rendered prompt and the label to answer it with
Format = Literal["plain", "chat", "chat-bare"]
FORMATS: tuple[Format, ...] = ("plain", "chat", "chat-bare")
# The attention projections of Llama-style models: the adapter the toy tests proved on vLLM.
DEFAULT_TARGETS = ("q_proj", "v_proj", "o_proj")


def render(prompt: JudgePrompt, fmt: Format, tokenizer: Any) -> str:
    """The text a backend would feed the model for ``prompt`` in format ``fmt``."""
    if fmt == "chat-bare":  # what a chat server builds from the messages
        text: str = tokenizer.apply_chat_template(
            prompt.messages(), tokenize=False, add_generation_prompt=True
        )
        return text
    return prompt_text(prompt, tokenizer, use_chat_template=fmt == "chat")


def verdict_token(tokenizer: Any, label: str, fmt: Format) -> int:
    """The token that answers with ``label``: after the answer prefix ("Score:") the label
    follows a space, while a bare assistant turn starts with it. Where the spaced spelling
    starts with a bare space token (SentencePiece's "▁" alone), the unspaced one is taught:
    both count for the label when a backend reads the distribution."""
    spellings = [label] if fmt == "chat-bare" else [" " + label, label]
    for spelling in spellings:
        ids: list[int] = tokenizer.encode(spelling, add_special_tokens=False)
        if ids and tokenizer.decode([ids[0]]).strip():
            return ids[0]
    raise ValueError(f"label {label!r} has no usable first token in this tokenizer")


def _decay_over(steps: int) -> Callable[[int], float]:
    """Learning-rate factor falling linearly from 1 to 0 over ``steps``."""
    return lambda step: max(0.0, 1 - step / steps)


def train_verdicts(
    model: Any,
    tok: Any,
    examples: Sequence[Example],
    *,
    max_steps: int,
    lr: float,
    seed: int,
    batch: int = 24,
    formats: Sequence[Format] = FORMATS,
    learnt_on: Sequence[Example] | None = None,
    must_learn: bool = True,
    check_every: int = 100,
    min_steps: int = 200,
    min_settle: int = 200,
    device: str = "cpu",
) -> int:
    """Teach ``model`` (its parameters that require grad) each example's verdict token, in
    every format of ``formats`` (in equal shares in every batch); returns the steps taken.

    Once every example of ``learnt_on``, in every format, gets its verdict with probability
    >= 0.95 (checked every ``check_every`` steps from ``min_steps`` on), training settles
    (``max(min_settle, steps so far / 2)`` more steps at a rate decaying to zero). Each
    (task, format) pair is learnt abruptly, at a point that varies from run to run, so a
    fixed step count was either wasteful or, now and then, short. Without it being learnt by
    ``max_steps``, :class:`NotLearnt` is raised (``must_learn``) or training just stops
    there (people's labels need not be learnable to the last one).
    """
    import torch

    formats = tuple(formats)
    targets_of: dict[tuple[str, str], int] = {}

    def target(label: str, fmt: Format) -> int:
        if (label, fmt) not in targets_of:
            targets_of[label, fmt] = verdict_token(tok, label, fmt)
        return targets_of[label, fmt]

    def logits(chosen: list[tuple[JudgePrompt, str, Format]], then: Any = None) -> Any:
        """Logits after each prompt (and after the token ``then`` appended to it, if any)."""
        enc = tok([render(p, f, tok) for p, _, f in chosen], return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        if then is not None:
            ids = torch.cat([ids, then[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(then)[:, None]], 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
        return out.logits

    def learnt() -> bool:
        assert learnt_on is not None
        model.eval()
        try:
            with torch.no_grad():
                for fmt in formats:
                    for i in range(0, len(learnt_on), 32):
                        chosen = [(p, a, fmt) for p, a in learnt_on[i : i + 32]]
                        probs = logits(chosen)[:, -1, :].softmax(-1)
                        wanted = torch.tensor([target(a, f) for _, a, f in chosen], device=device)
                        if probs.gather(1, wanted[:, None]).min().item() < 0.95:
                            return False
            return True
        finally:
            model.train()

    F = torch.nn.functional
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    pool = list(examples)
    batch = min(batch, len(pool))
    eos = torch.full((batch,), tok.eos_token_id, device=device)
    padding_side = tok.padding_side
    tok.padding_side = "left"  # every prompt's last token in the last column
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    # Without a warm-up the marker-finding attention never formed (stayed at chance).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 100))
    rng = random.Random(seed)
    start = time.perf_counter()
    settle_until: int | None = None
    step = 0
    model.train()
    while settle_until is None or step < settle_until:
        if settle_until is None and step >= max_steps:
            if must_learn:
                raise NotLearnt(f"the verdicts were not learnt in {max_steps} steps")
            log.info("verdicts not all learnt in %d steps; stopping there", max_steps)
            break
        step += 1
        chosen = [
            (p, a, formats[i % len(formats)]) for i, (p, a) in enumerate(rng.sample(pool, batch))
        ]
        targets = torch.tensor([target(a, f) for _, a, f in chosen], device=device)
        out = logits(chosen, then=targets)
        loss = F.cross_entropy(out[:, -2, :], targets) + F.cross_entropy(out[:, -1, :], eos)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        if step % check_every == 0:
            log.info("verdict training step %d loss %.3f", step, loss.item())
            if learnt_on is not None and settle_until is None and step >= min_steps and learnt():
                # Learnt; settle it with a rate decaying to zero.
                settle = max(min_settle, step // 2)
                settle_until = step + settle
                sched = torch.optim.lr_scheduler.LambdaLR(opt, _decay_over(settle))
    model.eval()
    tok.padding_side = padding_side
    log.info("verdicts trained in %d steps, %.1fs", step, time.perf_counter() - start)
    return step


def train_lora(
    base: str | Path,
    path: str | Path,
    examples: Sequence[Example],
    *,
    learnt_on: Sequence[Example] | None = None,
    must_learn: bool = True,
    formats: Sequence[Format] = FORMATS,
    max_steps: int = 2000,
    lr: float = 3e-3,
    seed: int = 1,
    rank: int = 8,
    target_modules: Sequence[str] | None = None,
    batch: int = 24,
    check_every: int = 100,
    min_steps: int = 200,
    min_settle: int = 200,
    device: str = "cpu",
) -> tuple[Path, int]:
    """Train a LoRA adapter (PEFT) on ``base`` with :func:`train_verdicts` and save it in
    PEFT's format under ``path`` (the directory vLLM's ``LoRARequest`` and PEFT's
    ``PeftModel.from_pretrained`` load); returns the path and the steps taken.

    ``target_modules`` defaults to the attention projections :data:`DEFAULT_TARGETS` where
    the model has them, else PEFT's default for the architecture.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    peft: Any = require("peft", "judge")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if target_modules is None:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        target_modules = list(DEFAULT_TARGETS) if set(DEFAULT_TARGETS) <= names else None
    model = peft.get_peft_model(
        model,
        peft.LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=list(target_modules) if target_modules else None,
        ),
    ).to(device)
    tok = AutoTokenizer.from_pretrained(base)
    steps = train_verdicts(
        model,
        tok,
        examples,
        max_steps=max_steps,
        lr=lr,
        seed=seed,
        formats=formats,
        learnt_on=learnt_on,
        must_learn=must_learn,
        batch=batch,
        check_every=check_every,
        min_steps=min_steps,
        min_settle=min_settle,
        device=device,
    )
    model.save_pretrained(path)
    return Path(path), steps
