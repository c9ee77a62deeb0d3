"""The judge version: which judge made a verdict, so that verdicts of different judges are
never mixed and each judge's agreement with people is known on its own.

A judge version is the tuple every judge score records in its details
(:mod:`judgeserve.judge.scorer`)::

    (judge_model, judge_backend, prompt_hash, rubric_version)

* ``judge_model`` names the weights that judged. A backend serving a LoRA adapter reports
  a model that names the adapter too, so a judge tuned on labels is a new version.
* ``judge_backend`` is the backend's registered name (``vllm``, ``transformers``, ``openai``,
  ``serve``...): the same weights behind another backend can read the verdict differently.
* ``prompt_hash`` changes with the rubric's content and the prompt templates
  (:meth:`judgeserve.judge.prompt.PromptBuilder.prompt_hash`); it is per criterion, so a
  version is too: ``judge.<rubric>.<criterion>`` scores are compared within one criterion.
* ``rubric_version`` is the label the rubric's author bumps when its wording changes.

Who uses it: the rubric page's agreement per judge version (:mod:`judgeserve.labels`),
and what comes next: re-scoring labelled items when a version first appears, charts split
by version, the tuned judge's before/after. Everything that groups, stores or links by
version takes :attr:`JudgeVersion.key`, a short stable hash of the tuple.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

__all__ = ["JudgeVersion", "DETAIL_KEYS", "adapter_id", "served_model"]

# The details keys of a judge score that make up its judge version, in tuple order.
DETAIL_KEYS = ("judge_model", "judge_backend", "prompt_hash", "rubric_version")


@dataclass(frozen=True, order=True)
class JudgeVersion:
    """One judge version; ``JudgeVersion.of(score_details)`` reads it off a judge score."""

    model: str
    backend: str
    prompt_hash: str
    rubric_version: str

    @classmethod
    def of(cls, details: Mapping[str, Any] | None) -> JudgeVersion | None:
        """The version a judge score's details record; None when a part is missing (a
        score written before versions were recorded, or not by the judge)."""
        if not isinstance(details, Mapping):
            return None
        parts = [details.get(k) for k in DETAIL_KEYS]
        if any(p is None or p == "" for p in parts):
            return None
        return cls(*(str(p) for p in parts))

    @property
    def key(self) -> str:
        """12 hex digits naming this version, stable across processes and releases."""
        blob = "\0".join((self.model, self.backend, self.prompt_hash, self.rubric_version))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """For people: ``transformers:toy-judge · prompt 3f2a9c01 · rubric v2``."""
        return (
            f"{self.backend}:{self.model} · prompt {self.prompt_hash[:8]} · "
            f"rubric v{self.rubric_version}"
        )

    def as_dict(self) -> dict[str, str]:
        """The parts and the key, as the API and the page show them."""
        return {**asdict(self), "key": self.key, "label": self.label}


# The files of a PEFT adapter directory that decide what it computes.
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def adapter_id(path: str | Path) -> str:
    """12 hex digits naming a LoRA adapter by its content (config and weights): the same
    adapter copied elsewhere keeps its name, a retrained one gets a new one."""
    path = Path(path)
    h = hashlib.sha256()
    found = 0
    for name in _ADAPTER_FILES:
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
            found += 1
    if not (path / "adapter_config.json").is_file() or found < 2:
        raise ConfigError(
            f"lora_path {str(path)!r} is not a PEFT adapter directory "
            "(needs adapter_config.json and adapter_model.safetensors)"
        )
    return h.hexdigest()[:12]


def served_model(model: str, lora_path: str | Path | None) -> str:
    """The ``judge_model`` a backend reports: the base model, and the adapter's identity
    when one is applied (``toy-judge+lora:3f2a9c01e4b7``), so a tuned judge is a version of
    its own."""
    return f"{model}+lora:{adapter_id(lora_path)}" if lora_path else model
