"""Drift control: a changed judge is measured against people before its scores are
trusted, and its scores are never averaged with another judge's.

A judge version (:class:`judgeserve.judge.version.JudgeVersion`: model, backend, prompt
hash, rubric version) changes when a rubric's wording, its prompt templates, the judge
model or its backend change. The worker (:mod:`judgeserve.worker`) hands this module
every batch's scores and every checkpoint it recomputes:

* **a version seen for the first time** is recorded in the store (``judge_versions``,
  once however many workers see it), and the worker whose judge gave it re-scores the
  rubric's labelled items with it, a few per loop turn between batches (bounded by
  ``drift_rescore_max`` items, ``drift_rescore_batch`` at a time), keeping the verdicts
  apart from the run's scores (``judge_verdicts``). The rubric page then shows the new
  version's agreement with people beside the old one's. A worker that dies mid-way is
  replaced by another with the same judge after ``drift_stale_s``; a judge that fails
  leaves the version ``failed`` with the reason, shown on the rubric page, and is tried
  again after ``drift_stale_s`` (a judge that was down comes back).
* **a checkpoint's judge aggregate** covers one version only: the one that scored most of
  its samples (ties: the newest). Every version's aggregate is kept
  (``judge_aggregates``), so the run page draws one series per version, with a marker
  where it changed, and the API names the version of each judge aggregate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .aggregates import aggregate
from .exceptions import StoreError, StoreUnavailable
from .judge.version import JudgeVersion
from .schema import Aggregate, Sample, Score
from .scorers import Context, SampleScorer
from .settings import Settings
from .store import Store, samples

__all__ = ["DriftControl", "judge_step_aggregates", "UNVERSIONED"]

log = logging.getLogger(__name__)

# The version key of judge scores that record no version (written before versions were).
UNVERSIONED = ""
# How often a worker looks for re-scoring to take on while it has none.
LOOK_EVERY_S = 5.0
_SAMPLE_COLUMNS = tuple(samples.c.keys())


def _split(scorer: str) -> tuple[str, str] | None:
    parts = scorer.split(".", 2)
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "judge" else None


def judge_step_aggregates(
    values: Iterable[tuple[str, float, Any]], first_seen: Mapping[tuple[str, str], datetime]
) -> tuple[dict[str, Aggregate], list[dict[str, Any]]]:
    """One step's judge scores ``(scorer, value, details)`` grouped by judge version:
    ``({scorer: aggregate of its main version}, rows of judge_aggregates)``. The main
    version scored most of the step's samples; on a tie, the one first seen last."""
    groups: dict[str, dict[str, list[float]]] = {}
    for scorer, value, details in values:
        version = JudgeVersion.of(details)
        key = version.key if version is not None else UNVERSIONED
        groups.setdefault(scorer, {}).setdefault(key, []).append(value)
    never = datetime.min.replace(tzinfo=UTC)
    main: dict[str, Aggregate] = {}
    rows: list[dict[str, Any]] = []
    for scorer, by_version in groups.items():
        chosen = max(
            by_version,
            key=lambda k: (len(by_version[k]), _aware(first_seen.get((scorer, k), never)), k),
        )
        for key, vals in by_version.items():
            agg = aggregate(vals)
            if key == chosen:
                main[scorer] = agg
            rows.append({"metric": scorer, "version": key, **agg.model_dump(), "main": key == chosen})
    return main, rows


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)  # SQLite drops the zone


@dataclass
class _Job:
    """One version's re-scoring, as this worker carries it out."""

    scorer: str
    key: str
    rubric: str
    items: list[dict[str, Any]]
    done: int
    seen: set[str] = field(default_factory=set)


class DriftControl:
    """The worker's part of drift control (see the module docstring)."""

    def __init__(
        self, store: Store, scorers: Sequence[SampleScorer], settings: Settings, worker: str
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker
        self.judge = next((s for s in scorers if s.name == "judge"), None)
        self._known: set[tuple[str, str]] = set()  # versions recorded in the store
        self._mine: dict[tuple[str, str], str] = {}  # versions this worker's judge gave
        self._finished: set[tuple[str, str]] = set()
        self._job: _Job | None = None
        self._next_look = 0.0

    # -- new versions -------------------------------------------------------------------------

    def observe(self, scored: Iterable[tuple[str, int, Score]]) -> list[tuple[str, str]]:
        """Record the judge versions in ``(run, step, score)`` the store does not know;
        those this call added first, ``(scorer, key)``. Never raises: a version not
        recorded now is recorded with the next batch it appears in."""
        new: dict[tuple[str, str], dict[str, Any]] = {}
        for run, step, score in scored:
            names = _split(score.scorer)
            version = JudgeVersion.of(score.details) if names else None
            if names is None or version is None:
                continue
            k = (score.scorer, version.key)
            if k in self._known or k in new:
                continue
            new[k] = {
                "scorer": score.scorer, "key": version.key, "rubric": names[0],
                "criterion": names[1], "model": version.model, "backend": version.backend,
                "prompt_hash": version.prompt_hash, "rubric_version": version.rubric_version,
                "first_run": run, "first_step": step,
            }
        if not new:
            return []
        try:
            with self.store.begin() as conn:
                added = self.store.record_judge_versions(
                    conn, list(new.values()), "pending" if self.enabled else "off"
                )
        except StoreError as e:
            log.warning("judge versions not recorded yet: %s", e)
            return []
        self._known.update(new)
        for k, row in new.items():
            self._mine[k] = row["rubric"]
        for scorer, key in added:
            log.info("new judge version %s for %s: its labelled items will be re-scored", key, scorer)
        return added

    # -- re-scoring labelled items ------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.judge is not None and self.settings.drift_rescore_max > 0

    def busy(self) -> bool:
        """Whether a re-scoring is in progress in this worker."""
        return self._job is not None

    def work(self) -> int:
        """Re-score one chunk of labelled items, when a version of this worker's judge
        waits for it; the number of items tried (0: nothing to do). Call between batches."""
        if not self.enabled:
            return 0
        if self._job is None and not self._take():
            return 0
        job = self._job
        assert job is not None
        try:
            return self._chunk(job)
        except StoreUnavailable as e:  # the job stays; the next turn tries again
            log.warning("re-scoring %s paused: %s", job.scorer, e)
            return 0
        except Exception as e:
            log.exception("re-scoring labelled items of %s with %s failed", job.scorer, job.key)
            self._finish(job, "failed", f"{type(e).__name__}: {e}"[:2000])
            return 0

    def _take(self) -> bool:
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + LOOK_EVERY_S
        for (scorer, key), rubric in sorted(self._mine.items()):
            if (scorer, key) in self._finished:
                continue
            try:
                row = self.store.claim_rescore(scorer, key, self.worker, self.settings.drift_stale_s)
                if row is None:
                    if self.store.rescore_state(scorer, key) == "done":
                        self._finished.add((scorer, key))
                    continue
                items = self.store.labelled_for_rescore(rubric, self.settings.drift_rescore_max)
            except StoreError as e:
                log.warning("cannot look for re-scoring to do: %s", e)
                return False
            self._job = _Job(scorer, key, rubric, items, min(int(row["rescored"] or 0), len(items)))
            log.info("re-scoring %d labelled items of %s with judge %s", len(items), scorer, key)
            return True
        return False

    def _chunk(self, job: _Job) -> int:
        chunk = job.items[job.done : job.done + self.settings.drift_rescore_batch]
        if not chunk:
            self._finish(job, "done")
            return 0
        prefix = f"judge.{job.rubric}."
        have = self.store.verdicts_of([(r["run"], r["id"]) for r in chunk], prefix)
        judged = {
            (run, sid, v.key)
            for (run, sid), found in have.items()
            for d in found
            if (v := JudgeVersion.of(d)) is not None
        }
        todo = [r for r in chunk if (r["run"], r["id"], job.key) not in judged]
        if todo:
            assert self.judge is not None
            batch = [Sample.model_validate({k: r[k] for k in _SAMPLE_COLUMNS}) for r in todo]
            contexts = [Context(rubrics=[job.rubric], baseline=r["baseline"]) for r in todo]
            out = self.judge.score_in_context(batch, contexts)
            rows = []
            for r, scores in zip(todo, out, strict=True):
                for sc in scores:
                    version = JudgeVersion.of(sc.details)
                    if not sc.scorer.startswith(prefix) or version is None:
                        continue
                    if sc.scorer == job.scorer:
                        job.seen.add(version.key)
                    if (r["run"], r["id"], version.key) in judged:
                        continue
                    value = None if sc.value is None else float(sc.value)
                    rows.append({"run": r["run"], "sample_id": r["id"], "scorer": sc.scorer,
                                 "version": version.key, "value": value, "details": sc.details})
            self.store.save_verdicts(rows)
        job.done += len(chunk)
        if job.seen and job.key not in job.seen:
            # This worker's judge no longer gives the version (its rubric was reloaded):
            # another worker with that judge must do it.
            other = ", ".join(sorted(job.seen))
            self._finish(job, "failed", f"the judge now gives version {other}, not {job.key}")
        elif job.done >= len(job.items):
            self._finish(job, "done")
        else:
            self.store.rescore_progress(job.scorer, job.key, rescored=job.done, total=len(job.items))
        return len(chunk)

    def _finish(self, job: _Job, state: str, reason: str | None = None) -> None:
        self._job = None
        if state == "done":
            self._finished.add((job.scorer, job.key))
        try:
            self.store.rescore_progress(
                job.scorer, job.key, rescored=job.done, total=len(job.items), state=state,
                reason=reason,
            )
        except StoreError as e:  # stays 'running': taken over once stale
            log.warning("re-scoring state of %s not saved: %s", job.scorer, e)
        if state == "done":
            log.info("re-scored %d labelled items of %s with judge %s", job.done, job.scorer, job.key)
