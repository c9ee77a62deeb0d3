"""Tuning a judge on people's labels: a LoRA adapter for the rubric's judge model, measured
before and after on labels it never saw.

``judgeserve judge tune RUBRIC`` reads the rubric's stored labels
(:func:`judgeserve.labels.stored_records`) and hands them here:

1. A seeded share of the labelled items is held out (:func:`split_held_out`); tuning never
   sees them.
2. Each training item becomes examples of the verdict people gave, rendered exactly as the
   judge renders it (:class:`~judgeserve.judge.prompt.PromptBuilder`), many times over with
   fresh fences (a model that sees few fences learns to read their digits), in the format
   the judge's backend presents it (chat template or plain text). Pairwise items teach both
   orders: a win is "A" with the candidate first and "B" with it second.
3. :func:`judgeserve.judge.trainer.train_lora` fits the adapter (the same trainer that
   makes the toy judge of the tests); it is saved as ``ADAPTERS/<adapter id>/``, named by
   its content (:func:`judgeserve.judge.version.adapter_id`).
4. The held-out items are judged by the rubric's backend without the adapter and with it
   (``lora_path``: vLLM's ``LoRARequest`` or PEFT in transformers), through
   :func:`judgeserve.judge.calibrate.calibrate`: the :class:`TuneReport` holds both
   calibration reports. The tuned judge reports the model ``<model>+lora:<adapter id>``,
   so its verdicts form a judge version of their own.

This module never touches the store: the CLI keeps the report there, where the rubric page
shows agreement before and after.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..exceptions import ConfigError
from .backends.base import load_backend
from .calibrate import CalibrationReport, LabelRecord, calibrate
from .prompt import PromptBuilder
from .rubric import Rubric
from .trainer import Example, Format, train_lora
from .verdicts import Judge
from .version import adapter_id

__all__ = [
    "LORA_BACKENDS",
    "MIN_ITEMS",
    "TuneReport",
    "split_held_out",
    "training_examples",
    "headline",
    "tune_judge",
    "format_tune",
]

log = logging.getLogger(__name__)

# Backends that serve a LoRA adapter from ``lora_path``.
LORA_BACKENDS = ("vllm", "vllm_async", "transformers")
# Fewer labelled items than this leave nothing worth measuring on.
MIN_ITEMS = 10
# Each training item is rendered until the examples number about this many (fresh fences).
EXAMPLES_TARGET = 2000
# The pairwise label a candidate's outcome reads as, shown first and shown second.
_AS_FIRST = {"win": "A", "loss": "B", "tie": "tie"}
_AS_SECOND = {"win": "B", "loss": "A", "tie": "tie"}


class TuneReport(BaseModel):
    """What ``judgeserve judge tune`` did and measured; kept in the store per rubric."""

    model_config = ConfigDict(extra="forbid")

    rubric: str = Field(description="The rubric the judge was tuned for.")
    rubric_version: str = Field(description="The rubric version tuned on.")
    base_model: str = Field(description="The judge model the adapter sits on.")
    backend: str = Field(description="The backend that measured both judges (serves the adapter).")
    adapter: str = Field(description="The adapter directory (PEFT format), under the data dir.")
    adapter_id: str = Field(description="The adapter's content hash, part of its judge version.")
    tuned_model: str = Field(description="The model name the tuned judge's verdicts record.")
    serve_options: dict[str, Any] = Field(
        description="What to add to the rubric's judge options to serve the tuned judge."
    )
    held_out_share: float = Field(description="The share of labelled items held out.")
    seed: int = Field(description="Seed of the held-out split and of training.")
    n_train: int = Field(description="Labelled items trained on.")
    n_held_out: int = Field(description="Labelled items measured on (never trained on).")
    examples: int = Field(description="Rendered training examples (items x fresh fences).")
    steps: int = Field(description="Optimizer steps taken.")
    train_seconds: float = Field(description="Wall time of training.")
    rank: int = Field(description="LoRA rank.")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC), description="When.")
    before: CalibrationReport = Field(description="The base judge on the held-out labels.")
    after: CalibrationReport = Field(description="The tuned judge on the held-out labels.")


def split_held_out(
    records: Sequence[LabelRecord], share: float, seed: int
) -> tuple[list[LabelRecord], list[LabelRecord]]:
    """(train, held out): a seeded shuffle, ``share`` of the items (at least one) held out."""
    if not 0 < share < 1:
        raise ConfigError(f"held_out share must be between 0 and 1, not {share}")
    if len(records) < MIN_ITEMS:
        raise ConfigError(
            f"tuning needs at least {MIN_ITEMS} labelled items, this rubric has {len(records)}"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(share * len(records)))
    held = sorted(order[:n_held])
    train = sorted(order[n_held:])
    return [records[i] for i in train], [records[i] for i in held]


def _label(record: LabelRecord, criterion: str, only: bool) -> Any:
    if isinstance(record.label, dict):
        return record.label.get(criterion)
    return record.label if only else None


def training_examples(
    rubric: Rubric, records: Sequence[LabelRecord], *, seed: int, target: int = EXAMPLES_TARGET
) -> tuple[list[Example], list[Example]]:
    """(examples, one of each): every labelled (item, criterion) rendered about
    ``target / items`` times with fresh fences, and once each (what training is checked on)."""
    rng = random.Random(seed)
    builder = PromptBuilder(fence_source=lambda: f"{rng.getrandbits(64):016x}")
    only = len(rubric.criteria) == 1
    pairs: list[tuple[LabelRecord, str, Any]] = [
        (r, c.name, _label(r, c.name, only))
        for r in records
        for c in rubric.criteria
        if _label(r, c.name, only) is not None
    ]
    if not pairs:
        raise ConfigError(f"rubric {rubric.name!r}: no labelled items to train on")
    per_render = len(pairs) * (2 if rubric.mode == "pairwise" else 1)  # both orders
    renders = max(1, math.ceil(target / per_render))
    examples: list[Example] = []
    once: list[Example] = []
    for n in range(renders):
        for record, crit, label in pairs:
            made = _render(builder, rubric, record, crit, label)
            examples.extend(made)
            if n == 0:
                once.extend(made)
    return examples, once


def _render(
    builder: PromptBuilder, rubric: Rubric, record: LabelRecord, crit: str, label: Any
) -> list[Example]:
    if rubric.mode == "single":
        prompt = builder.render(
            rubric,
            crit,
            prompt=record.prompt,
            completion=record.completion,
            reference=record.reference,
        )
        return [(prompt, str(int(label)))]
    assert record.baseline is not None  # stored_records and load_labels make sure
    out: list[Example] = []
    for a, b, names in (
        (record.completion, record.baseline, _AS_FIRST),
        (record.baseline, record.completion, _AS_SECOND),
    ):
        prompt = builder.render(
            rubric,
            crit,
            prompt=record.prompt,
            completion=a,
            completion_b=b,
            reference=record.reference,
        )
        out.append((prompt, names[str(label)]))
    return out


def headline(report: CalibrationReport) -> dict[str, float | None]:
    """Per criterion, the one agreement figure before/after compares: exact agreement
    (single) or accuracy with ties (pairwise)."""
    out: dict[str, float | None] = {}
    for name, metrics in report.criteria.items():
        value = metrics.get("exact_agreement", metrics.get("accuracy_with_ties"))
        out[name] = None if value is None else float(value)
    return out


def _format_of(model: str, options: dict[str, Any]) -> Format:
    """How the judge's backend presents prompts to this model (see ``prompt_text``)."""
    from transformers import AutoTokenizer

    chat = options.get("use_chat_template")
    if chat is None:
        chat = bool(getattr(AutoTokenizer.from_pretrained(model), "chat_template", None))
    return "chat" if chat else "plain"


def _measure(
    rubric: Rubric,
    held: Sequence[LabelRecord],
    backend: str,
    model: str,
    options: dict[str, Any],
) -> CalibrationReport:
    judge_backend = load_backend(backend, model, **options)
    try:
        return calibrate(Judge(judge_backend), rubric, held, source="held-out labels")
    finally:
        judge_backend.close()


def tune_judge(
    rubric: Rubric,
    records: Sequence[LabelRecord],
    adapters: str | Path,
    *,
    model: str | None = None,
    backend: str | None = None,
    options: dict[str, Any] | None = None,
    held_out: float = 0.25,
    seed: int = 0,
    max_steps: int = 1000,
    lr: float = 3e-3,
    rank: int = 8,
    device: str = "cpu",
) -> TuneReport:
    """Train a LoRA adapter for the rubric's judge on ``records`` (people's labels), save it
    under ``adapters``, and measure the judge before and after on the held-out share.

    ``model``, ``backend`` and ``options`` default to the rubric's ``judge:`` block; the
    backend must serve adapters (:data:`LORA_BACKENDS`).
    """
    train, held = split_held_out(records, held_out, seed)
    model = model or rubric.judge.model
    backend = backend or rubric.judge.backend
    options = dict(rubric.judge.options if options is None else options)
    options.pop("lora_path", None)  # tuning starts from the base model
    if not model:
        raise ConfigError(f"rubric {rubric.name!r}: its judge names no model to tune (--model)")
    if backend not in LORA_BACKENDS:
        raise ConfigError(
            f"rubric {rubric.name!r}: backend {backend!r} cannot serve a LoRA adapter; "
            f"measure with one of {', '.join(LORA_BACKENDS)} (--backend)"
        )
    examples, once = training_examples(rubric, train, seed=seed)
    fmt = _format_of(model, options)
    adapters = Path(adapters)
    adapters.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=adapters, prefix=".training-"))
    start = time.perf_counter()
    try:
        _, steps = train_lora(
            model,
            staging,
            examples,
            learnt_on=once,
            must_learn=False,
            formats=(fmt,),
            max_steps=max_steps,
            lr=lr,
            seed=seed,
            rank=rank,
            # A judge only bent to new labels learns fast (the toy's inversion: loss 0.02 by
            # step 100); checking early and settling briefly keeps tuning short on a CPU.
            batch=16,
            check_every=25,
            min_steps=50,
            min_settle=50,
            device=device,
        )
        seconds = time.perf_counter() - start
        name = adapter_id(staging)
        path = adapters / name
        if path.exists():  # the same adapter trained before: keep the one already there
            shutil.rmtree(staging)
        else:
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("adapter %s trained in %d steps, %.1fs", path, steps, seconds)
    tuned = {**options, "lora_path": str(path)}
    if backend.startswith("vllm"):
        tuned.setdefault("max_lora_rank", rank)
    before = _measure(rubric, held, backend, model, options)
    after = _measure(rubric, held, backend, model, tuned)
    return TuneReport(
        rubric=rubric.name,
        rubric_version=rubric.version,
        base_model=model,
        backend=backend,
        adapter=str(path),
        adapter_id=name,
        tuned_model=after.judge_model,
        serve_options={k: v for k, v in tuned.items() if k in ("lora_path", "max_lora_rank")},
        held_out_share=held_out,
        seed=seed,
        n_train=len(train),
        n_held_out=len(held),
        examples=len(examples),
        steps=steps,
        train_seconds=round(seconds, 2),
        rank=rank,
        before=before,
        after=after,
    )


def format_tune(report: TuneReport) -> str:
    """A short summary for the terminal."""
    before, after = headline(report.before), headline(report.after)
    lines = [
        f"rubric {report.rubric} v{report.rubric_version} · {report.backend}:{report.base_model}"
        f" · trained on {report.n_train} items ({report.examples} examples, {report.steps} steps,"
        f" {report.train_seconds:.0f}s) · measured on {report.n_held_out} held-out items",
    ]
    for name in before:
        b, a = before[name], after.get(name)
        shown = [f"{v:.3f}" if v is not None else "-" for v in (b, a)]
        lines.append(f"  {name}: agreement {shown[0]} before -> {shown[1]} after")
    lines.append(f"adapter: {report.adapter}  (judge model {report.tuned_model})")
    return "\n".join(lines)
