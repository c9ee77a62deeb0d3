"""The store's writes (and the worker's own reads) for drift control: judge versions as
the workers first see them, labelled items re-scored by a new version, and judge
aggregates per version (:mod:`judgeserve.drift` decides; this module only keeps).

A mixin of :class:`judgeserve.store.Store`, kept apart so the store's module stays one
screenful per subject.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection

from .tables import judge_aggregates, judge_verdicts, judge_versions, labels, samples, scores

__all__ = ["JudgeWrites", "RESCORE_STATES"]

# pending: nobody re-scores it yet; running: a worker does (rescore_by); done; failed (reason);
# off: the worker that saw it first re-scores nothing (JUDGESERVE_DRIFT_RESCORE_MAX=0).
RESCORE_STATES = ("pending", "running", "done", "failed", "off")


def _now() -> datetime:
    return datetime.now(UTC)


class JudgeWrites:
    """Drift control's part of the store."""

    if TYPE_CHECKING:  # provided by Store

        def begin(self) -> AbstractContextManager[Connection]: ...

        def _insert(self, table: Any) -> Any: ...

    def record_judge_versions(
        self, conn: Connection, seen: Sequence[Mapping[str, Any]], state: str = "pending"
    ) -> list[tuple[str, str]]:
        """Add the judge versions not known yet (columns of ``judge_versions`` without the
        state); return ``(scorer, key)`` of the ones this call added, in ``state``. Two
        workers seeing a new version at once add it once."""
        assert state in RESCORE_STATES
        added: list[tuple[str, str]] = []
        now = _now()
        for row in seen:
            ins = self._insert(judge_versions).values(
                **row, first_seen=now, updated=now, rescore_state=state, rescored=0
            )
            # RETURNING says whether a row went in (rowcount does not, on PostgreSQL).
            ins = ins.on_conflict_do_nothing().returning(judge_versions.c.key)
            if conn.execute(ins).first() is not None:
                added.append((str(row["scorer"]), str(row["key"])))
        return added

    def claim_rescore(
        self, scorer: str, key: str, worker: str, stale_s: float
    ) -> dict[str, Any] | None:
        """Take the re-scoring of one version for ``worker``: a pending one, one whose
        worker has said nothing for ``stale_s`` (it died), or one that failed that long
        ago. The row, or None when another worker has it or it is finished."""
        stale = _now() - timedelta(seconds=stale_s)
        row = and_(judge_versions.c.scorer == scorer, judge_versions.c.key == key)
        with self.begin() as conn:
            took = conn.execute(
                update(judge_versions)
                .where(
                    row,
                    or_(
                        judge_versions.c.rescore_state == "pending",
                        and_(
                            judge_versions.c.rescore_state == "running",
                            judge_versions.c.rescore_by == worker,
                        ),
                        and_(
                            judge_versions.c.rescore_state.in_(("running", "failed")),
                            judge_versions.c.updated < stale,
                        ),
                    ),
                )
                .values(rescore_state="running", rescore_by=worker, updated=_now())
            ).rowcount
            if not took:
                return None
            found = conn.execute(select(judge_versions).where(row)).mappings().first()
        return dict(found) if found else None

    def rescore_progress(
        self,
        scorer: str,
        key: str,
        *,
        rescored: int,
        total: int,
        state: str = "running",
        reason: str | None = None,
    ) -> None:
        """Where a version's re-scoring stands (``rescored`` of ``total`` items tried)."""
        assert state in RESCORE_STATES
        with self.begin() as conn:
            conn.execute(
                update(judge_versions)
                .where(and_(judge_versions.c.scorer == scorer, judge_versions.c.key == key))
                .values(
                    rescored=rescored,
                    rescore_total=total,
                    rescore_state=state,
                    rescore_reason=reason,
                    updated=_now(),
                )
            )

    def save_verdicts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Re-scored verdicts (columns of ``judge_verdicts`` but ``created``); a verdict
        already kept for the same item and version stays."""
        if not rows:
            return
        now = _now()
        with self.begin() as conn:
            conn.execute(
                self._insert(judge_verdicts).on_conflict_do_nothing(),
                [{**r, "created": now} for r in rows],
            )

    def save_judge_aggregates(
        self, conn: Connection, run: str, step: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """A step's judge aggregates per version: ``metric, version, mean, ci_low, ci_high,
        n, main``; as for ``aggregates``, a recompute over fewer samples replaces nothing."""
        if not rows:
            return
        now = _now()
        ins = self._insert(judge_aggregates)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run", "step", "metric", "version"],
                set_={
                    k: ins.excluded[k]
                    for k in ("mean", "ci_low", "ci_high", "n", "main", "updated")
                },
                where=ins.excluded.n >= judge_aggregates.c.n,
            ),
            [{**r, "run": run, "step": step, "updated": now} for r in rows],
        )

    def keep_replaced_verdicts(self, conn: Connection, items: Sequence[tuple[str, str]]) -> int:
        """Before ``judgeserve rescore`` replaces judge scores of these ``(run, sample_id)``,
        keep the labelled ones in ``judge_verdicts`` under their judge version, so the old
        version's agreement with people is not lost with them. How many were kept."""
        from ..judge.version import JudgeVersion

        if not items:
            return 0
        runs = sorted({r for r, _ in items})
        ids = sorted({i for _, i in items})
        q = (
            select(scores.c.run, scores.c.sample_id, scores.c.scorer, scores.c.value, scores.c.details)
            .where(
                scores.c.run.in_(runs),
                scores.c.sample_id.in_(ids),
                scores.c.scorer.like("judge.%"),
                select(labels.c.id)
                .where(labels.c.run == scores.c.run, labels.c.sample_id == scores.c.sample_id)
                .exists(),
            )
        )
        wanted = set(items)
        now = _now()
        rows = [
            {"run": run, "sample_id": sid, "scorer": scorer, "version": version.key,
             "value": value, "details": details, "created": now}
            for run, sid, scorer, value, details in conn.execute(q)
            if (run, sid) in wanted and (version := JudgeVersion.of(details)) is not None
        ]
        if rows:
            conn.execute(self._insert(judge_verdicts).on_conflict_do_nothing(), rows)
        return len(rows)

    # -- the worker's reads ------------------------------------------------------------------

    def step_judge_values(self, run: str, step: int) -> Iterator[tuple[str, float, Any]]:
        """``(scorer, value, details)`` of every judge score at one step."""
        q = select(scores.c.scorer, scores.c.value, scores.c.details).where(
            and_(
                scores.c.run == run,
                scores.c.step == step,
                scores.c.scorer.like("judge.%"),
                scores.c.value.is_not(None),
            )
        )
        with self.begin() as conn:
            rows = conn.execute(q).all()
        for scorer, value, details in rows:
            yield str(scorer), float(value), details

    def judge_versions_seen(self, scorers: Iterable[str]) -> dict[tuple[str, str], datetime]:
        """When each version of these judge scorers was first seen."""
        names = sorted(set(scorers))
        if not names:
            return {}
        q = select(judge_versions.c.scorer, judge_versions.c.key, judge_versions.c.first_seen).where(
            judge_versions.c.scorer.in_(names)
        )
        with self.begin() as conn:
            return {(str(s), str(k)): t for s, k, t in conn.execute(q)}

    def labelled_for_rescore(self, rubric: str, limit: int) -> list[dict[str, Any]]:
        """The rubric's labelled samples, oldest label first (a stable order, so progress is
        an offset), at most ``limit``: each sample's columns, its label's ``baseline_id``
        and the baseline's completion (``baseline``) for a pairwise rubric."""
        first = (
            select(
                labels.c.run,
                labels.c.sample_id,
                func.max(labels.c.baseline_id).label("baseline_id"),
                func.min(labels.c.id).label("first"),
            )
            .where(labels.c.rubric == rubric)
            .group_by(labels.c.run, labels.c.sample_id)
            .subquery()
        )
        base = samples.alias("base")
        q = (
            select(samples, first.c.baseline_id, base.c.completion.label("baseline"))
            .select_from(
                first.join(
                    samples, and_(samples.c.run == first.c.run, samples.c.id == first.c.sample_id)
                ).outerjoin(
                    base, and_(base.c.run == first.c.run, base.c.id == first.c.baseline_id)
                )
            )
            .order_by(first.c.first)
            .limit(limit)
        )
        with self.begin() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def rescore_state(self, scorer: str, key: str) -> str | None:
        """The version's re-scoring state (None: no such version)."""
        q = select(judge_versions.c.rescore_state).where(
            and_(judge_versions.c.scorer == scorer, judge_versions.c.key == key)
        )
        with self.begin() as conn:
            found = conn.execute(q).scalar()
        return None if found is None else str(found)

    def verdicts_of(
        self, items: Sequence[tuple[str, str]], scorer_prefix: str
    ) -> dict[tuple[str, str], list[Any]]:
        """The judge details kept for these ``(run, sample_id)``, in ``scores`` and in
        ``judge_verdicts``, of scorers under ``scorer_prefix``: what a version already
        judged needs no re-scoring."""
        out: dict[tuple[str, str], list[Any]] = {}
        if not items:
            return out
        runs = sorted({r for r, _ in items})
        ids = sorted({i for _, i in items})
        wanted = set(items)
        with self.begin() as conn:
            for table in (scores, judge_verdicts):
                q = select(table.c.run, table.c.sample_id, table.c.scorer, table.c.details).where(
                    and_(
                        table.c.run.in_(runs),
                        table.c.sample_id.in_(ids),
                        table.c.scorer.like(f"{scorer_prefix}%"),
                    )
                )
                for run, sid, scorer, details in conn.execute(q):
                    # LIKE reads '_' in a rubric's name as any character: check exactly.
                    if (run, sid) in wanted and str(scorer).startswith(scorer_prefix):
                        out.setdefault((str(run), str(sid)), []).append(details)
        return out
