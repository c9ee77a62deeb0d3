"""Similarity to a reference answer: the built-in judge when no LLM judge runs.

Scores per sample that carries a ``reference`` (samples without one get none, and the
step says "reference: not checked — no reference on these samples"):

* ``reference.semscore`` — cosine similarity of the MiniLM embeddings of completion and
  reference (SemScore, Aynetdinov & Akbik 2024), in [-1, 1]; 1 means same meaning.
* ``reference.chrf`` — sacrebleu's sentence-level chrF (0-100): character n-gram
  overlap, which rewards the reference's exact wording and is cheap.
* ``reference.score`` — the score to rank checkpoints by: ``reference.semscore``, but 0
  for a degenerate completion (empty, or looping: ``repetition.loop``), which can still
  sit close to the reference in embedding space; ``details.degenerate`` says which.
  Its per-checkpoint mean, and the length-controlled ``reference_lc.score``
  (:mod:`.length_control`), rank 31 chat models against a public leaderboard as
  measured in docs/detectors.md.

Embeddings are computed for all of a batch's texts in one call; set ``semantic=False``
to keep only the lexical score (no model is then loaded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..schema import Sample, Score
from ..scorers import Context, SampleScorer
from ._chrf import chrf_batch
from ._embeddings import embed
from .repetition import RepetitionScorer

__all__ = ["ReferenceScorer", "degenerate"]

_loops = RepetitionScorer()


def degenerate(completion: str) -> str | None:
    """Why ``completion`` cannot count as an answer: ``"empty"``, ``"loop"`` or None."""
    if not completion.strip():
        return "empty"
    return "loop" if _loops.loop(completion) is not None else None


class ReferenceScorer(SampleScorer):
    """SemScore (MiniLM cosine) and chrF against the sample's reference answer."""

    name = "reference"
    version = "2"  # v2: reference.score

    def __init__(self, semantic: bool = True) -> None:
        self.semantic = semantic

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        if sample.reference and sample.reference.strip():
            return None
        return "no reference on these samples"

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
                why = degenerate(samples[i].completion)
                out[i].append(
                    Score(
                        scorer="reference.score",
                        value=0.0 if why else cosine[k],
                        details={"degenerate": why} if why else {},
                        version=v,
                    )
                )
            out[i].append(Score(scorer="reference.chrf", value=chrf[k], details={}, version=v))
        return out
