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
* Each distinct prompt is asked once: prompts equal but for their fence share one request
  within a call, and a :mod:`verdict cache <judgeserve.judge.cache>` shares verdicts
  across calls, workers and steps. Every verdict says what it cost (:class:`Cost`): the
  judge's wall time (its share of the call, by prompt length), tokens, requests, and
  whether the cache answered.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from .backends.base import JudgeBackend, TokenUsage, reports_usage
from .cache import VerdictCache, cache_key
from .prompt import JudgePrompt, PromptBuilder
from .rubric import Rubric
from .version import JudgeVersion

__all__ = [
    "Item",
    "Cost",
    "JudgeStats",
    "Verdict",
    "PairVerdict",
    "weighted_score",
    "parse_verdict",
    "Judge",
]

Method = Literal["logprobs", "parsed", "unparseable"]
T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """What is judged: one answer, plus the baseline's answer in pairwise mode."""

    prompt: str
    completion: str
    reference: str | None = None
    baseline: str | None = None


@dataclass(frozen=True)
class Cost:
    """What judging cost: judge wall time, tokens, requests sent, prompts the cache answered.

    Summed over the prompts of a score (a pairwise score has two), then over a step and a
    run (the run page). Tokens are None when the backend does not count them.
    """

    judge_s: float = 0.0  # this prompt's share of its calls' wall time (by prompt length)
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    calls: int = 0  # prompts the judge was asked (a generated fallback shows in the tokens)
    cache_hits: int = 0  # prompts answered without asking the judge

    def __add__(self, other: Cost) -> Cost:
        def total(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Cost(
            self.judge_s + other.judge_s,
            total(self.prompt_tokens, other.prompt_tokens),
            total(self.generated_tokens, other.generated_tokens),
            self.calls + other.calls,
            self.cache_hits + other.cache_hits,
        )

    def details(self) -> dict[str, Any]:
        """The score details keys the store sums per step (``judge_s``, ``judge_calls`` ...)."""
        out: dict[str, Any] = {
            "judge_s": round(self.judge_s, 6),
            "judge_calls": self.calls,
            "cache_hits": self.cache_hits,
        }
        if self.prompt_tokens is not None:
            out["prompt_tokens"] = self.prompt_tokens
        if self.generated_tokens is not None:
            out["generated_tokens"] = self.generated_tokens
        return out


def hit_cost(counts_tokens: bool) -> Cost:
    """What a prompt answered without the judge cost: nothing (tokens unknown, rather than
    zero, where the backend never counts them: sums then never pass off unknown as zero)."""
    zero = 0 if counts_tokens else None
    return Cost(prompt_tokens=zero, generated_tokens=zero, cache_hits=1)


@dataclass
class JudgeStats:
    """What a :class:`Judge` did since it was last asked (:meth:`Judge.take_stats`)."""

    backend: str = ""
    latencies: list[float] = field(default_factory=list)  # one per backend call
    prompts: int = 0  # sent to the backend
    prompt_tokens: int = 0
    generated_tokens: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass
class Verdict:
    """The judge's answer to one prompt."""

    label: str | None  # most likely / parsed label; None when unparseable
    value: float | None  # probability-weighted level (single mode); None if unparseable
    method: Method
    distribution: dict[str, float] = field(default_factory=dict)  # over labels, sums to 1
    mass: float | None = None  # raw probability the labels got (before renormalising)
    raw: str | None = None  # generated text, when parsed
    cost: Cost = field(default_factory=Cost)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "label": self.label}
        if self.distribution:
            out["distribution"] = {k: round(v, 6) for k, v in self.distribution.items()}
        if self.mass is not None:
            out["label_mass"] = round(self.mass, 6)
        if self.raw is not None:
            out["raw"] = self.raw[:500]
        out.update(self.cost.details())
        return out

    def to_cache(self) -> dict[str, Any]:
        """What the verdict cache keeps: the answer, not what it cost."""
        return {
            "label": self.label,
            "value": self.value,
            "method": self.method,
            "distribution": self.distribution,
            "mass": self.mass,
            "raw": self.raw,
        }

    @classmethod
    def from_cache(cls, data: Mapping[str, Any], cost: Cost) -> Verdict:
        return cls(
            label=data["label"],
            value=data["value"],
            method=data["method"],
            distribution=dict(data.get("distribution") or {}),
            mass=data.get("mass"),
            raw=data.get("raw"),
            cost=cost,
        )


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
    """Scores items against rubrics with one backend: renders, asks, reads, falls back.

    ``cache`` (a :class:`~judgeserve.judge.cache.VerdictCache`) keeps verdicts across
    calls; without one, duplicates are still asked once per call.
    """

    def __init__(
        self,
        backend: JudgeBackend,
        builder: PromptBuilder | None = None,
        fallback_max_tokens: int = 8,
        cache: VerdictCache | None = None,
    ) -> None:
        self.backend = backend
        self.builder = builder or PromptBuilder()
        self.fallback_max_tokens = fallback_max_tokens
        self.cache = cache
        self.stats = JudgeStats(backend=backend.name)

    def take_stats(self) -> JudgeStats:
        """What this judge did since the last call (for ``/metrics``), and start again."""
        stats, self.stats = self.stats, JudgeStats(backend=self.backend.name)
        return stats

    def ask(
        self, prompts: Sequence[JudgePrompt], min_mass: float = 0.5, *, rubric_version: str = ""
    ) -> list[Verdict]:
        """One verdict per prompt: from the cache, else from the judge (logprobs first,
        generate-and-parse where they fall short), each distinct prompt asked once."""
        model = str(self.backend.model)
        keys = [
            cache_key(JudgeVersion(model, self.backend.name, p.prompt_hash, rubric_version), p)
            for p in prompts
        ]
        held = self.cache.get_many(list(dict.fromkeys(keys))) if self.cache is not None else {}
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in held:
                first.setdefault(key, i)
        fresh = self._ask([prompts[i] for i in first.values()], min_mass)
        asked = dict(zip(first, fresh, strict=True))
        if self.cache is not None and asked:
            self.stats.evictions += self.cache.put_many(
                {key: v.to_cache() for key, v in asked.items()}
            )
        out: list[Verdict] = []
        hit = hit_cost(reports_usage(self.backend)) if len(first) < len(keys) else Cost()
        for i, key in enumerate(keys):
            if first.get(key) == i:
                out.append(asked[key])
            elif key in held:
                out.append(Verdict.from_cache(held[key], hit))
            else:  # the same prompt as an earlier one of this call: answered by that one
                out.append(replace(asked[key], cost=hit))
        self.stats.hits += len(prompts) - len(first)
        self.stats.misses += len(first)
        return out

    def _ask(self, prompts: Sequence[JudgePrompt], min_mass: float) -> list[Verdict]:
        """Ask the backend about each prompt (no cache), recording what each one cost."""
        if not prompts:
            return []
        n = len(prompts)
        usage = [TokenUsage() for _ in range(n)] if reports_usage(self.backend) else None
        seconds = [0.0] * n
        everyone = list(range(n))
        found = self._timed(prompts, everyone, seconds, usage, self.backend.label_probs)
        verdicts: list[Verdict | None] = [
            weighted_score(probs, min_mass) if probs is not None else None for probs in found
        ]
        retry = [i for i, v in enumerate(verdicts) if v is None]
        if retry:
            max_tokens = self.fallback_max_tokens

            def generate(ps: Sequence[JudgePrompt], **kw: Any) -> list[str]:
                return self.backend.generate(ps, max_tokens, **kw)

            texts = self._timed(prompts, retry, seconds, usage, generate)
            for i, text in zip(retry, texts, strict=True):
                label = parse_verdict(text, prompts[i].labels)
                if label is None:
                    verdicts[i] = Verdict(label=None, value=None, method="unparseable", raw=text)
                else:
                    verdicts[i] = Verdict(
                        label=label, value=_numeric(label), method="parsed", raw=text
                    )
        out = []
        for i, v in enumerate(verdicts):
            assert v is not None
            u = usage[i] if usage is not None else None
            v.cost = Cost(
                judge_s=seconds[i],
                prompt_tokens=u.prompt_tokens if u else None,
                generated_tokens=u.generated_tokens if u else None,
                calls=1,
            )
            if u is not None:
                self.stats.prompt_tokens += u.prompt_tokens
                self.stats.generated_tokens += u.generated_tokens
            out.append(v)
        return out

    def _timed(
        self,
        prompts: Sequence[JudgePrompt],
        which: list[int],
        seconds: list[float],
        usage: list[TokenUsage] | None,
        call: Callable[..., list[T]],
    ) -> list[T]:
        """One backend call on ``prompts[which]``; its wall time is shared among them by
        length (a longer prompt costs more of a forward pass)."""
        part = [prompts[i] for i in which]
        start = time.perf_counter()
        kw = {} if usage is None else {"usage": [usage[i] for i in which]}
        results = call(part, **kw)
        took = time.perf_counter() - start
        self.stats.latencies.append(took)
        self.stats.prompts += len(part)
        sizes = [len(p.system) + len(p.user) for p in part]
        whole = sum(sizes) or 1
        for i, size in zip(which, sizes, strict=True):
            seconds[i] += took * size / whole
        return results

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
            keys, self.ask(prompts, rubric.min_label_mass, rubric_version=rubric.version),
            strict=True,
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
        verdicts = self.ask(prompts, rubric.min_label_mass, rubric_version=rubric.version)
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
