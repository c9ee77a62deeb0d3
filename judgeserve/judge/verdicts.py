"""From a judge's output to a score: probability-weighted levels, parsing, pairwise order swap.

* G-Eval scoring: the judge's next-token distribution over the scale's labels, read from
  one forward step, gives ``score = Σ p(level) · level`` (renormalised over the labels).
  This is finer than the argmax and costs one step instead of a generation.
* If the backend has no logprobs, or the labels got less than ``min_label_mass`` of the
  probability (the judge wanted to say something else), the judge generates a short
  answer which is parsed. A reply without a valid verdict is recorded as unparseable
  (value ``None``); nothing is ever guessed.
* Pairwise: each pair is judged in both orders. A verdict counts only if it survives the
  swap; otherwise the pair is a tie marked ``consistent=False`` (judges prefer a position).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .backends.base import JudgeBackend
from .prompt import JudgePrompt, PromptBuilder
from .rubric import Rubric

__all__ = [
    "Item",
    "Verdict",
    "PairVerdict",
    "weighted_score",
    "parse_verdict",
    "Judge",
]

Method = Literal["logprobs", "parsed", "unparseable"]


@dataclass(frozen=True)
class Item:
    """What is judged: one answer, plus the baseline's answer in pairwise mode."""

    prompt: str
    completion: str
    reference: str | None = None
    baseline: str | None = None


@dataclass
class Verdict:
    """The judge's answer to one prompt."""

    label: str | None  # most likely / parsed label; None when unparseable
    value: float | None  # probability-weighted level (single mode); None if unparseable
    method: Method
    distribution: dict[str, float] = field(default_factory=dict)  # over labels, sums to 1
    mass: float | None = None  # raw probability the labels got (before renormalising)
    raw: str | None = None  # generated text, when parsed

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "label": self.label}
        if self.distribution:
            out["distribution"] = {k: round(v, 6) for k, v in self.distribution.items()}
        if self.mass is not None:
            out["label_mass"] = round(self.mass, 6)
        if self.raw is not None:
            out["raw"] = self.raw[:500]
        return out


@dataclass
class PairVerdict:
    """Pairwise outcome for the candidate against the baseline."""

    outcome: Literal["win", "loss", "tie"] | None  # None when an order was unparseable
    value: float | None  # 1 win, 0.5 tie, 0 loss
    consistent: bool
    p_win: float | None  # mean over both orders of P(candidate better) + P(tie) / 2
    orders: tuple[Verdict, Verdict]


def _numeric(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def weighted_score(probs: Mapping[str, float], min_mass: float = 0.0) -> Verdict | None:
    """G-Eval score from label probabilities; None when the labels got under ``min_mass``."""
    mass = sum(probs.values())
    if mass <= 0 or mass < min_mass:
        return None
    dist = {label: p / mass for label, p in probs.items()}
    label = max(dist, key=lambda k: dist[k])
    numeric = {k: _numeric(k) for k in dist}
    value = None
    if all(v is not None for v in numeric.values()):
        value = sum(p * (numeric[k] or 0.0) for k, p in dist.items())
    return Verdict(label=label, value=value, method="logprobs", distribution=dist, mass=mass)


def parse_verdict(text: str, labels: Sequence[str]) -> str | None:
    """The label a generated reply gives, or None. Accepts 'Score: 4', '**4**', '4/5', 'B.'.

    The first label-shaped word decides; if it is not a valid label the reply is
    unparseable, rather than searching further for something that happens to fit.
    """
    word = re.search(r"[A-Za-z]+|\d+", text)
    if word is None:
        return None
    token = word.group(0)
    if token.casefold() in ("score", "verdict", "answer"):
        rest = text[word.end() :]
        word = re.search(r"[A-Za-z]+|\d+", rest)
        if word is None:
            return None
        token = word.group(0)
    for label in labels:
        if token.casefold() == label.casefold():
            return label
    return None


class Judge:
    """Scores items against rubrics with one backend: renders, asks, reads, falls back."""

    def __init__(
        self,
        backend: JudgeBackend,
        builder: PromptBuilder | None = None,
        fallback_max_tokens: int = 8,
    ) -> None:
        self.backend = backend
        self.builder = builder or PromptBuilder()
        self.fallback_max_tokens = fallback_max_tokens

    def ask(self, prompts: Sequence[JudgePrompt], min_mass: float = 0.5) -> list[Verdict]:
        """One verdict per prompt: logprobs first, generate-and-parse where they fall short."""
        verdicts: list[Verdict | None] = [None] * len(prompts)
        for i, probs in enumerate(self.backend.label_probs(prompts)):
            if probs is not None:
                verdicts[i] = weighted_score(probs, min_mass)
        retry = [i for i, v in enumerate(verdicts) if v is None]
        if retry:
            texts = self.backend.generate([prompts[i] for i in retry], self.fallback_max_tokens)
            for i, text in zip(retry, texts, strict=True):
                label = parse_verdict(text, prompts[i].labels)
                if label is None:
                    verdicts[i] = Verdict(label=None, value=None, method="unparseable", raw=text)
                else:
                    verdicts[i] = Verdict(
                        label=label, value=_numeric(label), method="parsed", raw=text
                    )
        return [v for v in verdicts if v is not None]

    def score(self, rubric: Rubric, items: Sequence[Item]) -> list[dict[str, Verdict]]:
        """Single mode: per item, criterion → verdict (one forward step each)."""
        prompts, keys = [], []
        for i, item in enumerate(items):
            for crit in rubric.criteria:
                prompts.append(
                    self.builder.render(
                        rubric,
                        crit.name,
                        prompt=item.prompt,
                        completion=item.completion,
                        reference=item.reference,
                    )
                )
                keys.append((i, crit.name))
        out: list[dict[str, Verdict]] = [{} for _ in items]
        for (i, crit_name), verdict in zip(
            keys, self.ask(prompts, rubric.min_label_mass), strict=True
        ):
            out[i][crit_name] = verdict
        return out

    def compare(self, rubric: Rubric, items: Sequence[Item]) -> list[dict[str, PairVerdict]]:
        """Pairwise mode: per item, criterion → verdict of item.completion vs item.baseline."""
        prompts, keys = [], []
        for i, item in enumerate(items):
            if item.baseline is None:
                raise ValueError(f"item {i} has no baseline to compare against")
            for crit in rubric.criteria:
                for first, second in (
                    (item.completion, item.baseline),
                    (item.baseline, item.completion),
                ):
                    prompts.append(
                        self.builder.render(
                            rubric,
                            crit.name,
                            prompt=item.prompt,
                            completion=first,
                            completion_b=second,
                            reference=item.reference,
                        )
                    )
                keys.append((i, crit.name))
        verdicts = self.ask(prompts, rubric.min_label_mass)
        out: list[dict[str, PairVerdict]] = [{} for _ in items]
        for k, (i, crit_name) in enumerate(keys):
            out[i][crit_name] = combine_orders(verdicts[2 * k], verdicts[2 * k + 1])
        return out


# Label in each order → outcome for the candidate (shown as A first, then as B).
_FIRST = {"A": "win", "B": "loss", "tie": "tie"}
_SECOND = {"A": "loss", "B": "win", "tie": "tie"}
_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def combine_orders(first: Verdict, second: Verdict) -> PairVerdict:
    """Keep a pairwise verdict only if both orders agree; disagreement is a counted tie."""
    if first.label is None or second.label is None:
        return PairVerdict(None, None, consistent=False, p_win=None, orders=(first, second))
    a, b = _FIRST[first.label], _SECOND[second.label]
    p_win = None
    if first.distribution and second.distribution:
        d1, d2 = first.distribution, second.distribution
        p_win = (d1.get("A", 0) + d1.get("tie", 0) / 2 + d2.get("B", 0) + d2.get("tie", 0) / 2) / 2
    if a == b:
        return PairVerdict(a, _VALUE[a], consistent=True, p_win=p_win, orders=(first, second))  # type: ignore[arg-type]
    return PairVerdict("tie", 0.5, consistent=False, p_win=p_win, orders=(first, second))
