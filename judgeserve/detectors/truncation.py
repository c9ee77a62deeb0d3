"""Empty and cut-off completions: a model that stops mid-sentence or says nothing.

Scores per sample:

* ``truncation.empty`` — True when the completion is empty or only whitespace.
* ``truncation.truncated`` — True when the completion stops mid-sentence, which is what
  hitting the generation limit looks like. When the trainer tells us why generation
  stopped (tag ``finish_reason``: ``length``/``max_tokens`` vs ``stop``/``eos``, as
  OpenAI-style servers report it), that is used instead of guessing from the text.

Without that tag the text decides, conservatively: a completion is cut off when it ends
inside an unclosed code block, on a comma, colon, dash or open bracket, with a bracket
left open on its last line, or on a word no sentence ends with ("the", "and", "of").
Ending on any other word without a period is *not* counted: on MT-Bench several
chat models drop the final period on most answers, and flagging those would drown the
signal. ``details.reason`` says which case applied. Token length stays in
``length.tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..schema import Sample, Score
from ..scorers import SampleScorer

__all__ = ["TruncationScorer", "ending"]

# Sentence-final marks of Latin, CJK, Arabic, Devanagari, Armenian and Ethiopic scripts.
_FINAL = ".!?\u2026\u3002\uff01\uff1f\u061f\u0964\u0965\u0589\u1362"
# What may follow the final mark: closing quotes/brackets, Markdown emphasis, footnotes.
_CLOSERS = "\"')]}*_`>\u201d\u2019\u00bb\u3011\u300d\u300f\uff09"
_COMPLETE_RE = re.compile(rf"[{re.escape(_FINAL)}][{re.escape(_CLOSERS)}\s]*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
# Symbols and emoji (So/Sk-like ranges) end chat answers often enough to count as complete.
_EMOJI_RE = re.compile("[\u2600-\u27bf\U0001f300-\U0001faff]\ufe0f?\\s*$")

_STOPPED = {"stop", "eos", "eos_token", "stop_sequence", "end_turn"}
_CUT = {"length", "max_tokens", "max_length"}


# Words a sentence does not end on: a text stopping on one was cut off.
# fmt: off
_FUNCTION_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "for", "with",
    "from", "by", "as", "into", "onto", "about", "over", "under", "between", "through",
    "during", "without", "within", "than", "then", "so", "because", "while", "when", "where",
    "whereas", "if", "unless", "although", "though", "that", "which", "who", "whom", "whose",
    "this", "these", "those", "their", "its", "his", "her", "our", "your", "my", "is", "are",
    "was", "were", "be", "been", "being", "am", "has", "have", "had", "do", "does", "did",
    "can", "could", "will", "would", "shall", "should", "may", "might", "must", "not", "very",
    "such", "more", "most", "less", "also", "both", "each", "every", "some", "any", "all", "no",
})
# fmt: on
_CONNECTORS = ",;:([{-\u2013\u2014/&+="


def ending(text: str) -> str:
    """How ``text`` ends, as a reason code used in the score's details.

    Complete: ``sentence_end``, ``closing_bracket``, ``code_block``, ``table_row``,
    ``emoji``, ``no_final_punctuation`` (ends on a word but not on one a sentence cannot
    end with: many chat models drop the last period, so this is not evidence of a cut).
    Cut off: ``open_code_block``, ``connector`` (ends on a comma, colon, open bracket,
    dash, or a word such as "the" or "and"), ``open_bracket`` (the last line opens a
    bracket it does not close). And ``empty``.
    """
    if not text.strip():
        return "empty"
    # An odd number of fences means the text ends inside a code block.
    if ("```" in text or "~~~" in text) and len(_FENCE_RE.findall(text)) % 2:
        return "open_code_block"
    tail = text.rstrip()
    if tail.endswith(("```", "~~~")):
        return "code_block"
    if _COMPLETE_RE.search(tail[-16:]):
        return "sentence_end"
    last_line = tail.rsplit("\n", 1)[-1].strip()
    if last_line.startswith("|") and last_line.endswith("|"):
        return "table_row"
    if _EMOJI_RE.search(tail[-4:]):
        return "emoji"
    if tail[-1] in _CONNECTORS:
        return "connector"
    if last_line.count("(") > last_line.count(")") or last_line.count("[") > last_line.count("]"):
        return "open_bracket"
    if tail[-1] in ")]}\"'\u201d\u2019\u00bb":
        return "closing_bracket"
    last_word = tail.rsplit(None, 1)[-1].lower()
    if last_word in _FUNCTION_WORDS:
        return "connector"
    return "no_final_punctuation"


_CUT_REASONS = {"open_code_block", "connector", "open_bracket"}


class TruncationScorer(SampleScorer):
    """Flags empty completions and completions cut off mid-sentence."""

    name = "truncation"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        out = []
        for s in samples:
            reason = ending(s.completion)
            empty = reason == "empty"
            finish = s.tags.get("finish_reason", "").strip().lower()
            if finish in _CUT:
                truncated, source = not empty, "finish_reason"
            elif finish in _STOPPED:
                truncated, source = False, "finish_reason"
            else:
                truncated, source = reason in _CUT_REASONS, "text"
            details = {"reason": reason, "source": source}
            if truncated:
                details["tail"] = s.completion[-40:]
            out.append(
                [
                    Score(scorer="truncation.empty", value=empty, details={}, version=self.version),
                    Score(
                        scorer="truncation.truncated",
                        value=truncated,
                        details=details,
                        version=self.version,
                    ),
                ]
            )
        return out
