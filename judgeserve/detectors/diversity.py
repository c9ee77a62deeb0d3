"""Diversity and mode collapse, across the samples of one checkpoint.

Set-level metrics (stored as checkpoint aggregates):

* ``diversity.distinct1`` / ``distinct2`` — distinct tokens / bigrams over all tokens /
  bigrams of the step's completions (Li et al. 2016).
* ``diversity.unique_ratio`` — distinct completions / completions, after folding case
  and whitespace.
* ``diversity.self_bleu`` — mean sacrebleu sentence BLEU (0-100) of each completion
  against the others as references (Zhu et al. 2018); high means alike.
* ``diversity.embedding_cosine`` — mean pairwise cosine of MiniLM embeddings.
* ``diversity.vendi`` — Vendi score (Friedman & Dieng 2023): the exponential of the
  entropy of the eigenvalues of the cosine-similarity matrix / n; the "effective number"
  of different completions, from 1 (all alike) to n (all orthogonal).
* ``diversity.cross_prompt_duplicates`` / ``diversity.cross_prompt_cosine`` — the collapse
  signal, below.

Collapse means answers to *different* prompts converge. Samples are grouped by prompt:
the ``probe_id`` when the sample has one, otherwise the prompt text (whitespace-trimmed).
Several samples of one group may legitimately be alike, so only pairs from different
groups count: ``cross_prompt_duplicates`` is the share of samples whose folded text also
answers another group, ``cross_prompt_cosine`` the mean cosine across groups. The flag
``diversity.collapse`` is raised when there are at least ``min_groups`` groups and either
exceeds its threshold.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from sacrebleu.metrics.bleu import BLEU

from ..schema import Sample
from ..scorers import Flag, SetResult, SetScorer
from ._embeddings import embed
from ._tokens import tokenize

__all__ = ["DiversityScorer", "prompt_group", "vendi_score"]

T = TypeVar("T")


def prompt_group(sample: Sample) -> str:
    """The key samples are grouped by for the collapse signal."""
    return f"probe:{sample.probe_id}" if sample.probe_id else f"prompt:{sample.prompt.strip()}"


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def vendi_score(unit_vectors: npt.NDArray[np.float32]) -> float:
    """exp(entropy) of the eigenvalues of K/n, K the cosine matrix of the rows.

    K = X Xᵀ shares its non-zero eigenvalues with the d x d matrix Xᵀ X, so the cost is
    O(n d²) rather than O(n³): a thousand samples take milliseconds.
    """
    n = len(unit_vectors)
    if n == 0:
        return 0.0
    x = unit_vectors.astype(np.float64)
    small = x.T @ x if n > x.shape[1] else x @ x.T
    eig = np.linalg.eigvalsh(small / n)
    eig = eig[eig > 1e-12]
    return float(np.exp(-np.sum(eig * np.log(eig))))


class DiversityScorer(SetScorer):
    """Distinct-n, unique ratio, self-BLEU, embedding cosine/Vendi and the collapse flag."""

    name = "diversity"
    min_samples = 2

    def __init__(
        self,
        semantic: bool = True,
        max_samples: int = 512,
        self_bleu_samples: int = 64,
        min_groups: int = 3,
        duplicate_threshold: float = 0.5,
        cosine_threshold: float = 0.85,
    ) -> None:
        self.semantic = semantic
        self.max_samples = max_samples
        self.self_bleu_samples = self_bleu_samples
        self.min_groups = min_groups
        self.duplicate_threshold = duplicate_threshold
        self.cosine_threshold = cosine_threshold

    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        samples = _spread(samples, self.max_samples)
        texts = [s.completion for s in samples]
        groups = [prompt_group(s) for s in samples]
        metrics = {f"{self.name}.{k}": v for k, v in _lexical(texts).items()}
        metrics[f"{self.name}.self_bleu"] = _self_bleu(_spread(texts, self.self_bleu_samples))
        dup, evidence = _cross_prompt_duplicates(samples, groups)
        metrics[f"{self.name}.cross_prompt_duplicates"] = dup
        cross_cos: float | None = None
        if self.semantic:
            vectors = embed(texts)
            sims = vectors @ vectors.T
            n = len(texts)
            metrics[f"{self.name}.embedding_cosine"] = float(
                (sims.sum() - np.trace(sims)) / (n * (n - 1))
            )
            metrics[f"{self.name}.vendi"] = vendi_score(vectors)
            g = np.array(groups, dtype=object)
            across = g[:, None] != g[None, :]
            if across.any():
                cross_cos = float(sims[across].mean())
                metrics[f"{self.name}.cross_prompt_cosine"] = cross_cos
        flags = []
        n_groups = len(set(groups))
        collapsed = dup >= self.duplicate_threshold or (
            cross_cos is not None and cross_cos >= self.cosine_threshold
        )
        if n_groups >= self.min_groups and collapsed:
            text, ids = evidence
            message = (
                f"{dup:.0%} of completions repeat an answer given to another prompt"
                if dup >= self.duplicate_threshold
                else f"answers to different prompts have mean cosine {cross_cos:.2f}"
            )
            flags.append(
                Flag(
                    name=f"{self.name}.collapse",
                    severity="warning",
                    message=f"mode collapse across {n_groups} prompts: {message}",
                    details={
                        "groups": n_groups,
                        "cross_prompt_duplicates": dup,
                        "cross_prompt_cosine": cross_cos,
                        "most_common": text[:200],
                        "sample_ids": ids[:20],
                    },
                )
            )
        return SetResult(metrics=metrics, flags=flags)


def _spread(items: Sequence[T], limit: int) -> Sequence[T]:
    """At most ``limit`` items, evenly spaced: deterministic and covering all prompts."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(k * step)] for k in range(limit)]


def _lexical(texts: Sequence[str]) -> dict[str, float]:
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for text in texts:
        toks = tokenize(text)
        unigrams.update(toks)
        bigrams.update(pairwise(toks))
    n1, n2 = sum(unigrams.values()), sum(bigrams.values())
    return {
        "distinct1": len(unigrams) / n1 if n1 else 0.0,
        "distinct2": len(bigrams) / n2 if n2 else 0.0,
        "unique_ratio": len({_fold(t) for t in texts}) / len(texts),
    }


def _self_bleu(texts: Sequence[str]) -> float:
    bleu = BLEU(effective_order=True)
    scores = [
        bleu.sentence_score(text, [o for j, o in enumerate(texts) if j != i]).score
        for i, text in enumerate(texts)
    ]
    return float(np.mean(scores)) if scores else 0.0


def _cross_prompt_duplicates(
    samples: Sequence[Sample], groups: list[str]
) -> tuple[float, tuple[str, list[str]]]:
    """Share of samples whose folded answer is also given to another prompt group."""
    by_text: dict[str, set[str]] = defaultdict(set)
    folded = [_fold(s.completion) for s in samples]
    for text, group in zip(folded, groups, strict=True):
        by_text[text].add(group)
    shared = [len(by_text[t]) > 1 for t in folded]
    if not any(shared):
        return 0.0, ("", [])
    top = max(by_text, key=lambda t: len(by_text[t]))
    ids = [s.id for s, t in zip(samples, folded, strict=True) if t == top]
    text = next(s.completion for s, t in zip(samples, folded, strict=True) if t == top)
    return sum(shared) / len(samples), (text, ids)
