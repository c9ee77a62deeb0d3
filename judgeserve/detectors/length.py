"""Length of a completion in tokens: the simplest scorer, and the template for the others."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..schema import Sample, Score
from ..scorers import SampleScorer

# Words and single punctuation marks: deterministic, fast, and close to what people count.
TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


class LengthScorer(SampleScorer):
    name = "length"

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return [
            [
                Score(
                    scorer="length.tokens",
                    value=float(len(tokenize(s.completion))),
                    details={"chars": len(s.completion)},
                    version=self.version,
                )
            ]
            for s in samples
        ]
