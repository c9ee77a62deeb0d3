"""The LLM judge: rubrics (YAML), prompts (Jinja), scoring, backends and Ray Serve hosting.

Names load lazily: ``from judgeserve.judge import Rubric`` needs only pydantic and PyYAML
(the SDK may validate rubrics), while the scorer pulls Jinja and the backends pull torch,
vLLM or Ray only when they are built.

=================  ===================================================================
``rubric``         YAML schema, loading with file/line/field errors, JSON Schema
``prompt``         Jinja templates from ``prompts/``, per-request fences
``verdicts``       verdict arithmetic: logprob-weighted scores, parsing, pairwise order swap
``backends/``      the backend Protocol and registry; transformers, vllm, openai, serve
``scorer``         :class:`JudgeScorer`, the worker's ``judge`` scorer
``serve``          the Ray Serve deployment and ``judgeserve serve``
``calibrate``      agreement with human labels
``version``        the judge version (model, backend, prompt hash, rubric version)
=================  ===================================================================

The toy judge the tests and benchmarks train lives in :mod:`judgeserve.testing.toy_judge`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Rubric",
    "load_rubric",
    "parse_rubric",
    "find_rubric",
    "rubric_json_schema",
    "JudgePrompt",
    "PromptBuilder",
    "Item",
    "Judge",
    "Verdict",
    "PairVerdict",
    "JudgeScorer",
    "JudgeBackend",
    "load_backend",
    "register_backend",
    "backend_names",
    "CalibrationReport",
    "JudgeVersion",
]

_WHERE = {
    "Rubric": "rubric",
    "load_rubric": "rubric",
    "parse_rubric": "rubric",
    "find_rubric": "rubric",
    "rubric_json_schema": "rubric",
    "JudgePrompt": "prompt",
    "PromptBuilder": "prompt",
    "Item": "verdicts",
    "Judge": "verdicts",
    "Verdict": "verdicts",
    "PairVerdict": "verdicts",
    "JudgeScorer": "scorer",
    "JudgeBackend": "backends.base",
    "load_backend": "backends.base",
    "register_backend": "backends.base",
    "backend_names": "backends.base",
    "CalibrationReport": "calibrate",
    "JudgeVersion": "version",
}
# No lazy name may be a submodule's name: the first ``from . import <name>`` would bind the
# attribute instead of the module (``judgeserve calibrate`` once crashed so). The
# function ``calibrate`` is ``judgeserve.judge.calibrate.calibrate``.


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_WHERE[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
