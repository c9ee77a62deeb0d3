"""Trainer integrations: probe the model being trained and hand completions to judgeserve.

* :class:`judgeserve.callbacks.hf.JudgeCallback` — Hugging Face ``Trainer``.
* :class:`judgeserve.callbacks.lightning.JudgeLightningCallback` — Lightning ``Trainer``.

Both share :mod:`judgeserve.probes` (probe files and generation, the same model the
server-side generator uses) and :mod:`.runner` (schedule, submission, alert watching,
and :class:`~.runner.ProbeOptions`, the options both take).
Importing this package imports neither transformers nor lightning; each callback module
imports its framework when it is imported.
"""

from __future__ import annotations

from typing import Any

from ..probes import Completion, GenerationConfig, Probe, generate, load_probes
from .runner import ProbeOptions, ProbeRunner

__all__ = [
    "JudgeCallback",
    "JudgeLightningCallback",
    "ProbeRunner",
    "ProbeOptions",
    "Probe",
    "GenerationConfig",
    "Completion",
    "generate",
    "load_probes",
]


def __getattr__(name: str) -> Any:
    if name == "JudgeCallback":
        from .hf import JudgeCallback

        return JudgeCallback
    if name == "JudgeLightningCallback":
        from .lightning import JudgeLightningCallback

        return JudgeLightningCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
