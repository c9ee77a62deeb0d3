"""A judge that cannot be reached is named in the error: the URL, not only "Connection refused"."""

from __future__ import annotations

import re

import pytest

from judgeserve.exceptions import ScorerError
from judgeserve.judge.backends.openai_compat import OpenAIBackend
from judgeserve.judge.backends.serve import ServeBackend
from judgeserve.judge.scorer import JudgeScorer
from judgeserve.schema import Sample
from judgeserve.testing.toy_judge import toy_rubric

from ..conftest import free_port


def test_serve_judge_unreachable_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/judge"  # nothing listens there
    scorer = JudgeScorer([toy_rubric()], backend=ServeBackend(url=url, timeout=5))
    sample = Sample(run="r", step=1, id="s1", prompt="p", completion="banana")
    try:
        with pytest.raises(ScorerError) as e:
            scorer.score([sample])
    finally:
        scorer.close()
    assert f"judge at {url} unreachable" in str(e.value)
    assert "JUDGESERVE_JUDGE_URL" in str(e.value)


def test_openai_judge_unreachable_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend("m", url=url, timeout=5)
    scorer = JudgeScorer([toy_rubric()], backend=backend)
    try:
        with pytest.raises(ScorerError, match=re.escape(f"judge at {url}/chat/completions unreachable")):
            scorer.score([Sample(run="r", step=1, id="s1", prompt="p", completion="x")])
    finally:
        scorer.close()
