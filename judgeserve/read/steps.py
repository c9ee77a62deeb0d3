"""One checkpoint: its samples (filtered, sorted, paged), scores, aggregates, flags; one sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, cast, exists, func, literal, or_, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from ..store import (
    aggregates,
    checkpoints,
    flags,
    plain,
    samples,
    scores,
)
from ._base import _flag_clause, _reads
from .judging import step_judge_versions

__all__ = [
    "StepFilter",
    "step_scorers",
    "step_probes",
    "step_samples",
    "count_step_samples",
    "scores_for",
    "step_aggregates",
    "step_evaluation",
    "step_flags",
    "get_sample",
    "previous_samples",
    "count_scored",
]

# -- one step -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFilter:
    """Which of a step's samples to read, in which order."""

    flagged: bool = False
    probe: str | None = None
    detector: str | None = None  # a scorer family ("repetition") or a scorer name
    sort: str | None = None  # None: in arrival order; or a scorer name, "id" or "probe"
    descending: bool = True  # for an explicit ``sort``


@_reads
def step_scorers(conn: Connection, run: str, step: int) -> list[tuple[str, bool]]:
    """``(scorer, is_bool)`` of every scorer that scored a sample at this step."""
    q = (
        select(scores.c.scorer, func.max(cast(scores.c.is_bool, Integer)))  # PG has no max(bool)
        .where(and_(scores.c.run == run, scores.c.step == step))
        .group_by(scores.c.scorer)
        .order_by(scores.c.scorer)
    )
    return [(str(s), bool(b)) for s, b in conn.execute(q)]


@_reads
def step_probes(conn: Connection, run: str, step: int, limit: int = 1000) -> list[str]:
    q = (
        select(samples.c.probe_id)
        .where(and_(samples.c.run == run, samples.c.step == step, samples.c.probe_id.is_not(None)))
        .distinct()
        .order_by(samples.c.probe_id)
        .limit(limit)
    )
    return [str(p) for p in conn.execute(q).scalars()]


def _step_where(run: str, step: int, f: StepFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [samples.c.run == run, samples.c.step == step]
    if f.probe is not None:
        where.append(samples.c.probe_id == f.probe)
    if f.flagged or f.detector:
        flag = [
            scores.c.run == samples.c.run,
            scores.c.sample_id == samples.c.id,
            _flag_clause(),
        ]
        if f.detector:
            flag.append(
                or_(scores.c.scorer == f.detector, scores.c.scorer.startswith(f.detector + "."))
            )
        where.append(exists(select(literal(1)).select_from(scores).where(and_(*flag))))
    return where


@_reads
def step_samples(
    conn: Connection,
    run: str,
    step: int,
    f: StepFilter = StepFilter(),
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of a step's samples, filtered and sorted, each with its ``scores``."""
    q = select(samples).where(and_(*_step_where(run, step, f)))
    order: list[ColumnElement[Any]]
    if f.sort is None:
        order = [samples.c.created, samples.c.id]
    elif f.sort == "id":
        order = [samples.c.id.desc() if f.descending else samples.c.id]
    elif f.sort == "probe":
        probe = samples.c.probe_id.desc() if f.descending else samples.c.probe_id.asc()
        order = [probe.nulls_last(), samples.c.id]
    else:
        sort_scores = scores.alias("sort_scores")
        q = q.outerjoin(
            sort_scores,
            and_(
                sort_scores.c.run == samples.c.run,
                sort_scores.c.sample_id == samples.c.id,
                sort_scores.c.scorer == f.sort,
            ),
        )
        value = sort_scores.c.value.desc() if f.descending else sort_scores.c.value.asc()
        order = [value.nulls_last(), samples.c.id]
    q = q.order_by(*order).limit(limit).offset(offset)
    rows = [plain(r) for r in conn.execute(q).mappings()]
    by_id = scores_for(conn, run, [r["id"] for r in rows])
    for r in rows:
        r["scores"] = by_id.get(r["id"], [])
    return rows


@_reads
def count_step_samples(
    conn: Connection,
    run: str,
    step: int,
    f: StepFilter = StepFilter(),
) -> int:
    q = select(func.count()).select_from(samples).where(and_(*_step_where(run, step, f)))
    return int(conn.execute(q).scalar_one())


@_reads
def scores_for(conn: Connection, run: str, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``{sample_id: [{"scorer", "value", "details", "version"}, ...]}`` by scorer name; a
    boolean score's value is a bool."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not ids:
        return out
    q = (
        select(scores)
        .where(and_(scores.c.run == run, scores.c.sample_id.in_(ids)))
        .order_by(scores.c.scorer)
    )
    for r in conn.execute(q).mappings():
        value: float | bool | None = r["value"]
        if r["is_bool"] and value is not None:
            value = bool(value)
        out.setdefault(r["sample_id"], []).append(
            {
                "scorer": r["scorer"],
                "value": value,
                "details": r["details"],
                "version": r["version"],
            }
        )
    return out


@_reads
def step_aggregates(conn: Connection, run: str, step: int) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "ci_low", "ci_high", "n"}}`` of a checkpoint, by metric name.
    A judge metric's aggregate covers one judge version, which it names
    (``"judge_version"``), with the step's scores by other versions apart
    (``"other_versions"``; :func:`judgeserve.read.step_judge_versions`)."""
    q = (
        select(aggregates)
        .where(and_(aggregates.c.run == run, aggregates.c.step == step))
        .order_by(aggregates.c.metric)
    )
    out: dict[str, dict[str, Any]] = {
        r["metric"]: {k: r[k] for k in ("mean", "ci_low", "ci_high", "n")}
        for r in conn.execute(q).mappings()
    }
    if any(m.startswith("judge.") for m in out):
        for metric, versions in step_judge_versions(conn, run, step).items():
            if metric in out:
                out[metric].update(versions)
    return out


@_reads
def step_evaluation(conn: Connection, run: str, step: int) -> dict[str, Any]:
    """Whether a checkpoint's alert rules ran: ``{"expected", "evaluated", "n"}`` — the
    samples its sender said it will have, when the rules ran (None: not yet, the
    checkpoint is still filling) and on how many samples."""
    q = select(checkpoints).where(and_(checkpoints.c.run == run, checkpoints.c.step == step))
    r = conn.execute(q).mappings().first()
    if r is None:
        return {"expected": None, "evaluated": None, "n": None}
    state = plain(r)
    return {
        "expected": state["expected"],
        "evaluated": state["evaluated"],
        "n": state["evaluated_n"],
    }


@_reads
def step_flags(conn: Connection, run: str, step: int) -> list[dict[str, Any]]:
    """Checkpoint-level flags (``diversity.collapse`` ...): name, severity, message, details."""
    q = (
        select(flags.c.name, flags.c.severity, flags.c.message, flags.c.details)
        .where(and_(flags.c.run == run, flags.c.step == step))
        .order_by(flags.c.name)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


# -- samples ------------------------------------------------------------------------------


@_reads
def get_sample(conn: Connection, run: str, sample_id: str) -> dict[str, Any] | None:
    """One sample with its ``scores``, or None."""
    row = (
        conn.execute(select(samples).where(and_(samples.c.run == run, samples.c.id == sample_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = plain(row)
    out["scores"] = scores_for(conn, run, [sample_id]).get(sample_id, [])
    return out


@_reads
def previous_samples(
    conn: Connection, run: str, step: int, probes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each probe's sample at its latest step before ``step`` (the previous checkpoint):
    ``{probe: {"id", "step", "checkpoint", "completion"}}``; the lowest id when a probe
    was drawn more than once there."""
    if not probes:
        return {}
    last = (
        select(samples.c.probe_id, func.max(samples.c.step))
        .where(and_(samples.c.run == run, samples.c.step < step, samples.c.probe_id.in_(probes)))
        .group_by(samples.c.probe_id)
    )
    # A row-value IN (not a join, no ORDER BY) lets SQLite walk ix_samples_run_probe both
    # ways instead of scanning the run's samples.
    q = select(
        samples.c.probe_id,
        samples.c.id,
        samples.c.step,
        samples.c.checkpoint,
        samples.c.completion,
    ).where(samples.c.run == run, tuple_(samples.c.probe_id, samples.c.step).in_(last))
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(conn.execute(q).mappings(), key=lambda r: str(r["id"])):
        out.setdefault(
            str(r["probe_id"]), {k: r[k] for k in ("id", "step", "checkpoint", "completion")}
        )
    return out


@_reads
def count_scored(conn: Connection, run: str) -> int:
    """Samples of a run with at least one score."""
    q = select(func.count(func.distinct(scores.c.sample_id))).where(scores.c.run == run)
    return int(conn.execute(q).scalar_one())
