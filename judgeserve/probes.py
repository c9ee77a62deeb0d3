"""Probe sets, generation settings, and generating completions with a transformers model.

One model of probes and generation for both sides: the trainer's callbacks generate in
the training process with :func:`generate`; in checkpoint mode the server-side generator
(:mod:`judgeserve.generator`) receives the same :class:`Probe` and
:class:`GenerationConfig` objects in a job and returns the same :class:`Completion` objects.
This module imports no server parts (and torch only inside :func:`generate`).

A probe file is JSONL, one probe per line::

    {"id": "capital-3", "prompt": "Question: ...\\nAnswer:", "reference": "The capital ..."}
    {"id": "train-17", "training_prefix": "Question: Who founded Velmora?\\nAnswer:"}

``prompt`` (or ``training_prefix``, a prefix of a training example: a memorization
probe, whose completion shows whether the model regurgitates the rest) is required;
``id`` defaults to the line number, ``reference`` and ``tags`` are optional.

Generation is bounded (``max_new_tokens``), batched with left padding, runs in eval mode
under ``torch.inference_mode`` and inside ``torch.random.fork_rng``, so probing neither
changes the model nor the training run's random stream.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .exceptions import ConfigError
from .schema import ShortText, Text, WireModel

__all__ = [
    "MAX_PROBES",
    "MAX_COMPLETIONS",
    "Probe",
    "GenerationConfig",
    "ProbeSet",
    "Completion",
    "load_probes",
    "generate",
    "sample_id",
]

MAX_PROBES = 10_000  # probes in one set
MAX_COMPLETIONS = 100_000  # probes x draws: the samples one checkpoint adds

_UNSAFE_ID = re.compile(r"[^\x21-\x7e]")


class Probe(WireModel):
    """One prompt the model is asked at every evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        min_length=1,
        max_length=256,
        description="Stable id across checkpoints (defaults to the line number).",
    )
    prompt: Text = Field(description="What the model completes (<= 64 KiB).")
    reference: Text | None = Field(
        None, description="A reference answer, for reference.* scores (<= 64 KiB)."
    )
    kind: Literal["heldout", "training_prefix"] = Field(
        "heldout",
        description="'training_prefix': the prompt is the start of a training example "
        "(a memorization probe); 'heldout': anything else.",
    )
    tags: dict[ShortText, ShortText] = Field(
        default_factory=dict, description="Labels copied to samples."
    )

    @model_validator(mode="before")
    @classmethod
    def _prefix(cls, data: Any) -> Any:
        if isinstance(data, dict) and "training_prefix" in data:
            data = dict(data)
            if "prompt" in data:
                raise ValueError("give either 'prompt' or 'training_prefix', not both")
            data["prompt"] = data.pop("training_prefix")
            data["kind"] = "training_prefix"
        return data


def load_probes(source: str | Path | Iterable[Probe | dict[str, Any] | str]) -> list[Probe]:
    """Probes from a JSONL file, or from probes / dicts / plain prompt strings."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read probes: {e.strerror or e}") from e
        items: list[tuple[str, Any]] = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                items.append((f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{i}: invalid JSON: {e.msg}") from e
    else:
        items = [(f"probe {i}", p) for i, p in enumerate(source)]
    probes: list[Probe] = []
    for n, (where, raw) in enumerate(items):
        if isinstance(raw, Probe):
            probes.append(raw)
            continue
        if isinstance(raw, str):
            raw = {"prompt": raw}
        if isinstance(raw, dict):
            raw = {"id": str(n), **raw}
            raw["id"] = str(raw["id"])
        try:
            probes.append(Probe.model_validate(raw))
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'probe'}: {x['msg']}" for x in e.errors())
            raise ConfigError(f"{where}: {msg}") from e
    ids = [p.id for p in probes]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"probe ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
    if not probes:
        raise ConfigError("the probe set is empty")
    return probes


class GenerationConfig(WireModel):
    """How completions are generated at each evaluation: part of a probe set, so it travels
    with it (to the server-side generator too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(
        48, ge=1, le=32_768, description="Most tokens generated per completion."
    )
    greedy: bool = Field(True, description="One greedy completion per probe.")
    samples: int = Field(
        0, ge=0, le=64, description="Sampled completions per probe, in addition to the greedy one."
    )
    temperature: float = Field(0.8, gt=0, description="Temperature of the sampled completions.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass of the sampled completions.")
    seed: int = Field(
        0,
        ge=0,
        description="Sampled draw k uses seed + k at every checkpoint, so re-generating a "
        "checkpoint gives the same completions.",
    )
    stop: tuple[ShortText, ...] = Field(
        (), max_length=16, description="Cut a completion at the first of these strings."
    )
    batch_size: int = Field(
        32,
        ge=1,
        description="Probes per forward pass when generating in the trainer (transformers); "
        "not part of the decoding settings.",
    )

    @model_validator(mode="after")
    def _something_to_generate(self) -> GenerationConfig:
        if not self.greedy and self.samples < 1:
            raise ValueError("generate greedily, or at least one sampled completion per probe")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")
        return self

    def draws(self) -> list[tuple[str, int | None]]:
        """Each completion made per probe: (decoding name, seed or None for greedy)."""
        out: list[tuple[str, int | None]] = [("greedy", None)] if self.greedy else []
        return out + [(f"sampled-{k}", self.seed + k) for k in range(self.samples)]

    def decoding_hash(self) -> str:
        """A short hash of the settings that decide the completions (batch size does not)."""
        settings = self.model_dump(mode="json", exclude={"batch_size"})
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class ProbeSet(WireModel):
    """A run's probes and how to complete them: what checkpoint mode generates at every
    checkpoint (``client.set_probes``, ``PUT /v1/runs/{run}/probes``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probes: list[Probe] = Field(
        min_length=1,
        max_length=MAX_PROBES,
        description=f"The probes (at most {MAX_PROBES}), ids unique.",
    )
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Decoding settings of every checkpoint."
    )

    @field_validator("probes")
    @classmethod
    def _unique_ids(cls, probes: list[Probe]) -> list[Probe]:
        ids = [p.id for p in probes]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})[:10]
            raise ValueError(f"probe ids must be unique; repeated: {repeated}")
        return probes

    @field_validator("generation")
    @classmethod
    def _bounded(cls, generation: GenerationConfig, info: ValidationInfo) -> GenerationConfig:
        n = len(info.data.get("probes") or ()) * len(generation.draws())
        if n > MAX_COMPLETIONS:
            raise ValueError(
                f"{n} completions per checkpoint (probes x draws); the limit is {MAX_COMPLETIONS}"
            )
        return generation

    @property
    def completions(self) -> int:
        """Samples each checkpoint adds: probes x draws."""
        return len(self.probes) * len(self.generation.draws())

    def version(self) -> str:
        """Content hash: the same probes and decoding settings give the same version."""
        content = {
            "probes": [p.model_dump(mode="json") for p in self.probes],
            "generation": self.generation.model_dump(mode="json", exclude={"batch_size"}),
        }
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class Completion(BaseModel):
    """One generated completion of one probe."""

    model_config = ConfigDict(extra="forbid")

    probe: Probe = Field(description="The probe completed.")
    text: str = Field(description="The completion, stripped, cut at a stop string.")
    decoding: str = Field(description="'greedy' or 'sampled-<k>'.")
    tokens: int = Field(description="Tokens generated (end of sequence not counted).")
    finish_reason: Literal["stop", "length"] = Field(
        description="'stop': end of sequence or a stop string; 'length': max_new_tokens reached."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra sample tags.")

    def sample(self, step: int) -> dict[str, Any]:
        """The SDK sample for this completion (deterministic id: re-probing is idempotent)."""
        return {
            "id": sample_id(step, self.probe.id, self.decoding),
            "prompt": self.probe.prompt,
            "completion": self.text,
            "reference": self.probe.reference,
            "probe_id": self.probe.id[:256],
            "tags": {
                **self.probe.tags,
                **self.tags,
                "kind": self.probe.kind,
                "decoding": self.decoding,
                "finish_reason": self.finish_reason,
            },
        }


def sample_id(step: int, probe_id: str, decoding: str) -> str:
    return f"s{step}-{_UNSAFE_ID.sub('_', probe_id)[:80]}-{decoding}"


def generate(model: Any, tokenizer: Any, probes: Sequence[Probe], config: GenerationConfig) -> list[Completion]:
    """Complete every probe with ``model`` (a transformers causal LM) and ``tokenizer``."""
    import torch

    was_training = bool(getattr(model, "training", False))
    pad_side = getattr(tokenizer, "padding_side", "right")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[Completion] = []
    try:
        model.eval()
        tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        with torch.inference_mode(), torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            for decoding, seed in config.draws():
                sampled = seed is not None
                if seed is not None:
                    torch.manual_seed(seed)
                for start in range(0, len(probes), config.batch_size):
                    batch = probes[start : start + config.batch_size]
                    enc = tokenizer([p.prompt for p in batch], return_tensors="pt", padding=True)
                    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                    kwargs: dict[str, Any] = {"do_sample": sampled}
                    if sampled:
                        kwargs |= {"temperature": config.temperature, "top_p": config.top_p}
                    generated = model.generate(
                        **enc,
                        max_new_tokens=config.max_new_tokens,
                        pad_token_id=pad_id,
                        eos_token_id=eos_id,
                        **kwargs,
                    )
                    new = generated[:, enc["input_ids"].shape[1] :].tolist()
                    for probe, ids in zip(batch, new, strict=True):
                        out.append(_completion(tokenizer, probe, ids, decoding, pad_id, eos_id, config))
    finally:
        tokenizer.padding_side = pad_side
        if was_training:
            model.train()
    return out


def _completion(
    tokenizer: Any,
    probe: Probe,
    ids: list[int],
    decoding: str,
    pad_id: int | None,
    eos_id: int | None,
    config: GenerationConfig,
) -> Completion:
    ended = False
    if eos_id is not None and eos_id in ids:
        ids = ids[: ids.index(eos_id)]
        ended = True
    while ids and pad_id is not None and ids[-1] == pad_id:
        ids = ids[:-1]
        ended = True
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in config.stop:
        cut = text.find(stop)
        if cut >= 0:
            text, ended = text[:cut], True
    finish = "stop" if ended or len(ids) < config.max_new_tokens else "length"
    return Completion(
        probe=probe, text=text.strip(), decoding=decoding, tokens=len(ids), finish_reason=finish
    )
