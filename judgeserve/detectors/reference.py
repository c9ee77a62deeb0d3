"""Similarity to a reference answer: the built-in judge when no LLM judge runs.

Scores per sample that carries a ``reference`` (samples without one get none):

* ``reference.semscore`` — cosine similarity of the MiniLM embeddings of completion and
  reference (SemScore, Aynetdinov & Akbik 2024), in [-1, 1]; 1 means same meaning.
* ``reference.chrf`` — sacrebleu's sentence-level chrF (0-100): character n-gram
  overlap, which rewards the reference's exact wording and is cheap.

Embeddings are computed for all of a batch's texts in one call; set ``semantic=False``
to keep only the lexical score (no model is then loaded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..schema import Sample, Score
from ..scorers import SampleScorer
from ._chrf import chrf_batch
from ._embeddings import embed

__all__ = ["ReferenceScorer"]


class ReferenceScorer(SampleScorer):
    """SemScore (MiniLM cosine) and chrF against the sample's reference answer."""

    name = "reference"

    def __init__(self, semantic: bool = True) -> None:
        self.semantic = semantic

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        out: list[list[Score]] = [[] for _ in samples]
        # A blank reference says nothing to compare against: treated as no reference.
        with_ref = [i for i, s in enumerate(samples) if s.reference and s.reference.strip()]
        if not with_ref:
            return out
        pairs = [(samples[i].completion, samples[i].reference or "") for i in with_ref]
        chrf = chrf_batch(pairs)
        cosine: list[float | None] = [None] * len(pairs)
        if self.semantic:
            # One batch for completions and references: the model sorts by length inside.
            vectors = embed([c for c, _ in pairs] + [r for _, r in pairs])
            hyp, ref = vectors[: len(pairs)], vectors[len(pairs) :]
            cosine = [float(x) for x in np.einsum("ij,ij->i", hyp, ref)]
        v = self.version
        for k, i in enumerate(with_ref):
            if cosine[k] is not None:
                out[i].append(
                    Score(scorer="reference.semscore", value=cosine[k], details={}, version=v)
                )
            out[i].append(Score(scorer="reference.chrf", value=chrf[k], details={}, version=v))
        return out
