"""Length of a completion in tokens: the simplest scorer, and the template for the others."""

from __future__ import annotations

from collections.abc import Sequence

from ..schema import Sample, Score
from ..scorers import SampleScorer

# The project tokenizer (words, CJK characters, single punctuation marks), shared by
# every detector; re-exported here because this module was its first home.
from ._tokens import TOKEN_RE, tokenize

__all__ = ["LengthScorer", "TOKEN_RE", "tokenize"]


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
