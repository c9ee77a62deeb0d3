"""A scorer the web tests plug into the worker: flags looping text with its span offsets.

It stands in for ``repetition.loop`` so the browser tests do not depend on how the real
detector tunes its thresholds; the page reads spans from any score's details the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from judgeserve.schema import Sample, Score
from judgeserve.scorers import SampleScorer

LOOP = re.compile(r"\b(\w+)(?:\s+\1\b){3,}")


class LoopMarker(SampleScorer):
    name = "testloop"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        out = []
        for s in samples:
            m = LOOP.search(s.completion)
            details = {"spans": [[m.start(), m.end()]]} if m else {}
            out.append(
                [
                    Score(scorer="testloop.loop", value=m is not None, details=details),
                    Score(scorer="testloop.words", value=float(len(s.completion.split()))),
                ]
            )
        return out
