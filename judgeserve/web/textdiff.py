"""Word-level diff of two completions (difflib), as segments the template renders as text."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["DiffPart", "Diff", "word_diff", "MAX_TOKENS"]

# SequenceMatcher is quadratic at worst; 64 KiB completions are cut to this many words.
MAX_TOKENS = 4000
# A word with the whitespace after it: edits line up on words, not on the gaps between them.
_TOKEN = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class DiffPart:
    op: Literal["equal", "insert", "delete"]
    text: str


@dataclass(frozen=True)
class Diff:
    parts: list[DiffPart]
    truncated: bool
    ratio: float


def word_diff(before: str, after: str) -> Diff:
    """What changed from ``before`` to ``after``: equal, deleted and inserted runs of words."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    truncated = len(a) > MAX_TOKENS or len(b) > MAX_TOKENS
    a, b = a[:MAX_TOKENS], b[:MAX_TOKENS]
    matcher = difflib.SequenceMatcher(None, a, b)
    parts: list[DiffPart] = []

    def add(op: Literal["equal", "insert", "delete"], words: list[str]) -> None:
        if not words:
            return
        text = "".join(words)
        if parts and parts[-1].op == op:
            parts[-1] = DiffPart(op, parts[-1].text + text)
        else:
            parts.append(DiffPart(op, text))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", a[i1:i2])
        else:
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return Diff(parts, truncated, matcher.ratio())
