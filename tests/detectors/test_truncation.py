from __future__ import annotations

from collections.abc import Callable

import pytest

from judgeserve.detectors.truncation import TruncationScorer
from judgeserve.schema import Sample


def run(
    text: str, make_sample: Callable[..., Sample], **tags: str
) -> tuple[bool, bool, dict[str, object]]:
    [[empty, truncated]] = TruncationScorer().score([make_sample(text, tags=tags)])
    assert empty.scorer == "truncation.empty" and truncated.scorer == "truncation.truncated"
    assert isinstance(empty.value, bool) and isinstance(truncated.value, bool)
    return empty.value, truncated.value, truncated.details


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_and_whitespace_only(text: str, make_sample: Callable[..., Sample]) -> None:
    empty, truncated, _ = run(text, make_sample)
    assert empty and not truncated


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 42.",
        'He said "stop!"',
        "Really?",
        "Use this:\n```python\nprint(1)\n```",
        "| a | b |\n| 1 | 2 |",
        "**Done.**",
        "See the appendix (page 4)",
        "Thanks for reading 🎉",
        "Best regards,\nAnn",  # ends on a name without a period: not evidence of a cut
        "これは文です。",
    ],
)
def test_complete_endings(text: str, make_sample: Callable[..., Sample]) -> None:
    empty, truncated, details = run(text, make_sample)
    assert not empty and not truncated, details


@pytest.mark.parametrize(
    "text",
    [
        "The best way to get there is to take the",
        "First, we need flour, sugar,",
        "Here are the steps:",
        "Call the function like this:\n```python\nresult = compute(",
        "Sincerely,\n[Your Na",
        "The results were mixed and",
    ],
)
def test_cut_off_endings(text: str, make_sample: Callable[..., Sample]) -> None:
    empty, truncated, details = run(text, make_sample)
    assert truncated and not empty
    assert details["source"] == "text" and details["tail"]


def test_finish_reason_tag_overrides_the_text(make_sample: Callable[..., Sample]) -> None:
    assert run("A complete sentence.", make_sample, finish_reason="length")[1] is True
    _, truncated, details = run("and then the", make_sample, finish_reason="stop")
    assert truncated is False and details["source"] == "finish_reason"
