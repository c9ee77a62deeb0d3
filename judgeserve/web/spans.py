"""Highlighting: cut a completion into segments, each labelled with the scorers that flag it.

Any score may point at parts of the completion through its details: ``"spans": [[start,
end], ...]`` (character offsets, end exclusive), e.g. ``repetition.loop`` for the looping
part or ``memorization.longest_span`` for text copied from the training data. A single
``"start"``/``"end"`` pair is read the same way. Offsets that are not integers, are out
of range or empty are ignored: a detector's bug must not break the page.

The template renders each segment as text (escaped like every other string) and wraps
the labelled ones in ``<mark>``; no HTML is ever built from the completion.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Span", "Segment", "by_scorer", "flags_of", "spans_of", "segments", "css_family"]

MAX_SPANS_PER_SCORE = 1000


def by_scorer(scores: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A sample's scores as the read path gives them (a list) keyed by scorer, as the pages
    use them: ``{scorer: {"value", "is_bool", "details"}}`` (details always a dict)."""
    return {
        sc["scorer"]: {
            "value": sc["value"],
            "is_bool": isinstance(sc["value"], bool),
            "details": sc["details"] if isinstance(sc["details"], dict) else {},
        }
        for sc in scores
    }


def flags_of(scores: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The scorers that flagged a sample (a true boolean score), sorted."""
    return sorted(k for k, v in scores.items() if v["is_bool"] and v["value"])


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    scorer: str


@dataclass(frozen=True)
class Segment:
    text: str
    scorers: tuple[str, ...] = ()

    @property
    def families(self) -> tuple[str, ...]:
        """CSS-safe family names (``repetition``, ``memorization``) for class names."""
        return tuple(dict.fromkeys(css_family(s) for s in self.scorers))


def css_family(scorer: str) -> str:
    """``"repetition.loop"`` → ``"repetition"``, reduced to characters valid in a class name."""
    return re.sub(r"[^a-z0-9_-]", "-", scorer.split(".", 1)[0].lower()) or "other"


def _pairs(details: Mapping[str, Any]) -> Iterable[Any]:
    raw = details.get("spans")
    if isinstance(raw, list):
        yield from raw[:MAX_SPANS_PER_SCORE]
    if "start" in details and "end" in details:
        yield [details["start"], details["end"]]


def spans_of(scores: Mapping[str, Mapping[str, Any]], length: int) -> list[Span]:
    """Valid spans from ``{scorer: {"details": {...}}}``, clipped to ``[0, length]``."""
    out: list[Span] = []
    for scorer, score in sorted(scores.items()):
        details = score.get("details")
        if not isinstance(details, Mapping):
            continue
        for pair in _pairs(details):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                continue
            start, end = pair
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
                continue
            start, end = max(0, start), min(length, end)
            if start < end:
                out.append(Span(start, end, scorer))
    return out


def segments(text: str, spans: Iterable[Span]) -> list[Segment]:
    """Cut ``text`` at every span boundary; overlapping spans give segments with several labels."""
    spans = list(spans)
    cuts = sorted({0, len(text), *(s.start for s in spans), *(s.end for s in spans)})
    out: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        if a >= b:
            continue
        labels = tuple(sorted({s.scorer for s in spans if s.start <= a and b <= s.end}))
        if out and out[-1].scorers == labels:
            out[-1] = Segment(out[-1].text + text[a:b], labels)
        else:
            out.append(Segment(text[a:b], labels))
    return out
