"""The judge's public surface and its registration as plug-ins."""

from __future__ import annotations

import subprocess
import sys

import judgeserve.judge as judge
from judgeserve.judge.backends import backend_names, load_backend
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.scorers import registered


def test_public_names_resolve() -> None:
    assert sorted(judge.__all__) == sorted(set(judge.__all__))
    for name in judge.__all__:
        assert getattr(judge, name) is not None, name


def test_rubric_import_is_light() -> None:
    # The SDK may validate rubrics; that must not import Jinja, torch, vLLM or Ray.
    code = (
        "import sys; from judgeserve.judge import Rubric; "
        "print(sorted(m for m in ('jinja2', 'torch', 'vllm', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_judge_registers_like_any_scorer() -> None:
    assert registered()["judge"] is JudgeScorer


def test_builtin_backends_register_through_entry_points() -> None:
    assert {"transformers", "vllm", "openai", "serve"} <= set(backend_names())
    backend = load_backend("serve", url="http://127.0.0.1:9/judge")  # cheap: connects lazily
    assert backend.name == "serve"
    backend.close()
