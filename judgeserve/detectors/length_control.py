"""Length-controlled reference score of a checkpoint, after AlpacaEval's length control.

A judge that prefers long answers rewards a checkpoint for growing wordy. AlpacaEval 2
(Dubois et al. 2024) controls for it by regressing each model's preference on the
length difference to the baseline, ``tanh(Δlen / std)``, and reporting the prediction
for a zero difference. Here the checkpoint's per-sample ``reference.score`` (SemScore,
0 for empty or looping answers) is regressed the same way on
``tanh(log(words / reference words) / std)``:

* ``reference_lc.score`` — the intercept: the score an answer as long as its reference
  would get;
* ``reference_lc.length_slope`` — the fitted length effect (positive: longer answers
  scored higher at this checkpoint).

It is a set-level metric (one value per checkpoint, like ``diversity.*``), computed from
the samples that carry a reference; embeddings come from the process's cache, so the
``reference`` scorer has usually embedded them already.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..schema import Sample
from ..scorers import SetResult, SetScorer
from ._embeddings import embed
from .reference import degenerate

__all__ = ["LengthControlScorer", "length_controlled"]


def length_controlled(
    scores: npt.ArrayLike, log_length_ratios: npt.ArrayLike
) -> tuple[float, float]:
    """``(intercept, slope)`` of ``scores ~ tanh(log_length_ratios / std)`` by least squares."""
    y = np.asarray(scores, dtype=np.float64)
    x = np.asarray(log_length_ratios, dtype=np.float64)
    spread = float(x.std())
    if len(y) < 2 or spread < 1e-9:  # no length variation: nothing to control for
        return float(y.mean()) if len(y) else float("nan"), 0.0
    t = np.tanh(x / spread)
    design = np.column_stack([np.ones_like(t), t])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(intercept), float(slope)


def _has_reference(sample: Sample) -> bool:
    return bool(sample.reference and sample.reference.strip())


def _words(text: str) -> int:
    return len(text.split())


class LengthControlScorer(SetScorer):
    """``reference_lc.score``: a checkpoint's reference score at its references' length."""

    name = "reference_lc"
    min_samples = 8

    def skip_reason(self, samples: Sequence[Sample]) -> str | None:
        have = sum(1 for s in samples if _has_reference(s))
        if have < self.min_samples:
            return f"needs {self.min_samples} samples with a reference, the step has {have}"
        return None

    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        pairs = [(s.completion, s.reference or "") for s in samples if _has_reference(s)]
        if len(pairs) < self.min_samples:
            return SetResult()
        vectors = embed([c for c, _ in pairs] + [r for _, r in pairs])
        cosine = np.einsum("ij,ij->i", vectors[: len(pairs)], vectors[len(pairs) :])
        scores = [
            0.0 if degenerate(c) else float(x) for (c, _), x in zip(pairs, cosine, strict=True)
        ]
        ratios = [np.log((_words(c) + 1) / (_words(r) + 1)) for c, r in pairs]
        intercept, slope = length_controlled(scores, ratios)
        return SetResult(
            metrics={"reference_lc.score": intercept, "reference_lc.length_slope": slope}
        )
