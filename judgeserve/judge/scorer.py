"""The judge as a worker scorer: samples in, ``judge.<rubric>.<criterion>`` scores out.

Construction is cheap and loads no model: the worker instantiates every registered
scorer, and most deployments have no judge. A judge backend is built on first use, one
per distinct ``judge:`` block of the rubrics in play. With no rubric for a sample, or a
rubric whose judge is the Ray Serve deployment while no endpoint is configured, the
sample gets no judge scores, never an error; :meth:`JudgeScorer.skip_reason` says why
("judge not configured: ..."), and the run page and the step endpoint show it.

Which rubrics apply to a sample, first match wins: the run's rubrics passed by the worker
(``score_with(samples, rubrics=...)``), the sample's ``rubrics`` tag (comma-separated),
the ``rubrics`` given to the constructor, then the ``judge_rubrics`` setting. Pairwise
rubrics need the baseline's answer to the same probe (``score_with(..., baselines=...)``);
samples without one are not judged by them.

Given the worker's ``settings``, the scorer shares the verdict cache in Redis
(:mod:`judgeserve.judge.cache`, ``verdict_cache_size``) and adds its judge calls, tokens
and cache hits to the metrics every worker shares (:mod:`judgeserve.telemetry`). Built
without settings (a script, a test) it touches no Redis: a ``cache`` may be passed, and
duplicates within one call are judged once either way. Every judge score's details say
what it cost (``judge_s``, ``judge_calls``, ``cache_hits``, ``prompt_tokens``,
``generated_tokens``), which the run page sums per step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ..exceptions import ConfigError, ScorerError
from ..schema import Sample, Score
from ..scorers import Context, SampleScorer
from ..settings import Settings, get_settings
from ..telemetry import Telemetry
from .backends.base import JudgeBackend, load_backend
from .cache import RedisVerdictCache, VerdictCache
from .prompt import PromptBuilder
from .rubric import Rubric, rubric_by_name, rubrics_in_tag
from .verdicts import Cost, Item, Judge

__all__ = ["JudgeScorer", "selected", "rubrics_for"]

log = logging.getLogger(__name__)


def selected(sample_id: str, rubric: Rubric) -> bool:
    """Whether a sample is in the rubric's sampled fraction; stable across redeliveries."""
    if rubric.sample_rate >= 1:
        return True
    digest = hashlib.sha256(f"{rubric.name}\0{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rubric.sample_rate


def rubrics_for(
    sample: Sample, default: Sequence[str], explicit: Sequence[str] | None = None
) -> list[str]:
    """Rubric names that apply to a sample (see the module docstring for the order)."""
    if explicit:
        return list(explicit)
    tagged = rubrics_in_tag(sample.tags.get("rubrics"))
    return tagged or list(default)


class JudgeScorer(SampleScorer):
    """Scores samples with LLM judges as their rubrics say."""

    name = "judge"
    version = "1"
    wants_baseline = True  # pairwise rubrics judge against the previous checkpoint

    def __init__(
        self,
        rubrics: Sequence[str | Rubric] | None = None,
        *,
        judge_url: str | None = None,
        rubric_dirs: Sequence[str | Path] | None = None,
        backend: JudgeBackend | None = None,
        settings: Settings | None = None,
        cache: VerdictCache | None = None,
    ) -> None:
        shared = settings is not None  # the worker's own settings: share Redis with it
        settings = settings or get_settings()
        self._url = judge_url or settings.judge_url
        self._dirs = list(rubric_dirs or [settings.rubric_dir])
        self._rubrics: dict[str, Rubric] = {}
        names: list[str] = []
        for r in rubrics if rubrics is not None else settings.judge_rubrics:
            if isinstance(r, Rubric):
                self._rubrics[r.name] = r
                names.append(r.name)
            else:
                names.append(r)
        self._default = names
        self._fixed_backend = backend  # one backend for every rubric (tests, calibrate)
        self._judges: dict[str, Judge | None] = {}
        self._builder = PromptBuilder()
        self._warned: set[str] = set()
        self._own_cache = cache is None and shared and settings.verdict_cache_size > 0
        self.cache = RedisVerdictCache.from_settings(settings) if self._own_cache else cache
        self.telemetry = Telemetry.from_settings(settings) if shared else None
        self._broken: dict[str, str] = {}  # rubric name -> why it cannot be used

    def _rubric(self, name: str) -> Rubric | None:
        if name not in self._rubrics:
            try:
                self._rubrics[name] = rubric_by_name(name, self._dirs)
            except ConfigError as e:
                self._broken[name] = f"rubric {name!r} skipped: {e}"
                self._warn_once(name, self._broken[name])
                return None
        return self._rubrics[name]

    def _endpoint(self, rubric: Rubric) -> str | None:
        spec = rubric.judge
        return spec.url or (self._url if spec.backend == "serve" else None)

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        names = rubrics_for(sample, self._default, context.rubrics)
        if not names:
            return (
                "judge not configured: no rubric for this run (name rubrics in the SDK, or "
                "set JUDGESERVE_JUDGE_RUBRICS)"
            )
        reasons = []
        for name in names:
            why = self._rubric_skip(name, sample, context.baseline)
            if why is None:
                return None
            reasons.append(why)
        return "; ".join(reasons)

    def _rubric_skip(self, name: str, sample: Sample, baseline: str | None) -> str | None:
        """Why ``rubric`` does not judge ``sample`` (what :meth:`score_with` skips quietly)."""
        rubric = self._rubric(name)
        if rubric is None:
            return self._broken[name]
        backend = rubric.judge.backend
        remote = self._fixed_backend is None and backend in ("serve", "openai")
        if remote and not self._endpoint(rubric):
            return (
                f"judge not configured: rubric {name!r} uses the {backend!r} judge and no "
                "endpoint is set (JUDGESERVE_JUDGE_URL or the rubric's judge.url)"
            )
        if not selected(sample.id, rubric):
            return f"not in rubric {name!r}'s sampled share ({rubric.sample_rate:.0%})"
        if rubric.reference == "required" and sample.reference is None:
            return f"rubric {name!r} needs a reference and these samples have none"
        if rubric.mode == "pairwise" and baseline is None:
            return (
                f"rubric {name!r} compares with the same probe's answer at the baseline "
                f"checkpoint ({rubric.baseline}), and there is none"
            )
        return None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def judge_for(self, rubric: Rubric) -> Judge | None:
        """The judge a rubric asks for, built on first use; None when none is configured."""
        spec = rubric.judge
        if self._fixed_backend is not None:
            key = "fixed"
        else:
            key = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
        if key not in self._judges:
            self._judges[key] = self._make_judge(rubric)
        return self._judges[key]

    def _make_judge(self, rubric: Rubric) -> Judge | None:
        if self._fixed_backend is not None:
            return Judge(self._fixed_backend, self._builder, cache=self.cache)
        spec = rubric.judge
        options = dict(spec.options)
        if spec.backend in ("serve", "openai"):
            url = self._endpoint(rubric)
            if not url:
                self._warn_once(
                    f"url:{rubric.name}",
                    f"rubric {rubric.name!r}: no judge endpoint configured "
                    "(set JUDGESERVE_JUDGE_URL or judge.url); not judging",
                )
                return None
            options["url"] = url
        try:
            backend = load_backend(spec.backend, spec.model, **options)
        except (ConfigError, ImportError):
            raise
        except Exception as e:
            raise ScorerError(f"cannot start judge backend {spec.backend!r}: {e}") from e
        return Judge(backend, self._builder, cache=self.cache)

    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        return self.score_with(samples)

    def score_in_context(
        self, samples: Sequence[Sample], contexts: Sequence[Context]
    ) -> list[list[Score]]:
        return self.score_with(
            samples, [c.rubrics for c in contexts], [c.baseline for c in contexts]
        )

    def score_with(
        self,
        samples: Sequence[Sample],
        rubrics: Sequence[Sequence[str] | None] | None = None,
        baselines: Sequence[str | None] | None = None,
    ) -> list[list[Score]]:
        """Score samples; per sample, the run's rubric names and the baseline's answer.

        ``rubrics[i]`` (None: fall back to tags / defaults) and ``baselines[i]`` (the
        completion of the same probe at the baseline checkpoint, for pairwise rubrics)
        line up with ``samples``.
        """
        out: list[list[Score]] = [[] for _ in samples]
        bases = list(baselines) if baselines is not None else [None] * len(samples)
        by_rubric: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            explicit = rubrics[i] if rubrics is not None else None
            for name in rubrics_for(sample, self._default, explicit):
                by_rubric.setdefault(name, []).append(i)
        for name, indexes in by_rubric.items():
            rubric = self._rubric(name)
            if rubric is None:
                continue
            chosen = [i for i in indexes if self._applies(rubric, samples[i], bases[i])]
            if not chosen:
                continue
            judge = self.judge_for(rubric)
            if judge is None:
                continue
            try:
                items = [
                    Item(s.prompt, s.completion, s.reference, bases[i])
                    for i, s in ((i, samples[i]) for i in chosen)
                ]
                scores = self._judge(judge, rubric, items)
            except (ConfigError, ScorerError):
                raise
            except Exception as e:  # a backend's own errors: the worker retries the batch
                raise ScorerError(f"judge failed on rubric {rubric.name!r}: {e}") from e
            finally:
                self._report(judge)
            for i, sample_scores in zip(chosen, scores, strict=True):
                out[i].extend(sample_scores)
        return out

    def _report(self, judge: Judge) -> None:
        """Add what ``judge`` did to the metrics the workers share (one round trip)."""
        stats = judge.take_stats()
        if self.telemetry is None:
            return
        t, backend = self.telemetry, stats.backend
        for took in stats.latencies:
            t.observe("judgeserve_judge_latency_seconds", took, backend=backend)
        t.inc("judgeserve_judge_requests_total", len(stats.latencies), backend=backend)
        t.inc("judgeserve_judge_prompts_total", stats.prompts, backend=backend)
        t.inc("judgeserve_judge_tokens_total", stats.prompt_tokens, backend=backend, kind="prompt")
        t.inc(
            "judgeserve_judge_tokens_total",
            stats.generated_tokens,
            backend=backend,
            kind="generated",
        )
        t.inc("judgeserve_judge_cache_hits_total", stats.hits)
        t.inc("judgeserve_judge_cache_misses_total", stats.misses)
        t.inc("judgeserve_judge_cache_evictions_total", stats.evictions)
        t.flush()

    @staticmethod
    def _applies(rubric: Rubric, sample: Sample, baseline: str | None) -> bool:
        if not selected(sample.id, rubric):
            return False
        if rubric.reference == "required" and sample.reference is None:
            return False
        return rubric.mode == "single" or baseline is not None

    def _judge(self, judge: Judge, rubric: Rubric, items: Sequence[Item]) -> list[list[Score]]:
        tags = {
            "rubric": rubric.name,
            "rubric_version": rubric.version,
            "judge_backend": judge.backend.name,
            "judge_model": judge.backend.model,
        }
        out: list[list[Score]] = []
        if rubric.mode == "single":
            for verdicts in judge.score(rubric, items):
                out.append(
                    [
                        Score(
                            scorer=f"judge.{rubric.name}.{crit}",
                            value=v.value,
                            details={
                                **v.details(),
                                **tags,
                                "prompt_hash": self._hash(rubric, crit),
                            },
                            version=rubric.version,
                        )
                        for crit, v in verdicts.items()
                    ]
                )
            return out
        for pairs in judge.compare(rubric, items):
            out.append(
                [
                    Score(
                        scorer=f"judge.{rubric.name}.{crit}",
                        value=p.value,
                        details={
                            **sum((v.cost for v in p.orders), Cost()).details(),
                            "outcome": p.outcome,
                            "consistent": p.consistent,
                            "p_win": p.p_win,
                            "baseline": rubric.baseline,
                            "orders": [v.details() for v in p.orders],
                            **tags,
                            "prompt_hash": self._hash(rubric, crit),
                        },
                        version=rubric.version,
                    )
                    for crit, p in pairs.items()
                ]
            )
        return out

    def _hash(self, rubric: Rubric, criterion: str) -> str:
        return self._builder.prompt_hash(rubric, criterion)

    def close(self) -> None:
        for judge in self._judges.values():
            # A backend given to the constructor belongs to the caller, who closes it.
            if judge is not None and judge.backend is not self._fixed_backend:
                judge.backend.close()
        self._judges.clear()
        if self.telemetry is not None:
            self.telemetry.close()
        if self._own_cache and isinstance(self.cache, RedisVerdictCache):
            self.cache.close()
