"""The web view's read queries: SQLAlchemy Core over the store's tables, one page at a time.

Every query is bounded (``LIMIT``) and walks an index the store already has, so a page
costs the same for a run of ten steps as for one of thousands of steps and 100k+ samples:

* runs, newest first, by page; a run's steps by page (``ix_samples_run_step``);
* a step's samples by page, sorted by any score and filtered (flagged, probe, detector);
* a sample and its probe's completion at the previous checkpoint (``ix_samples_run_probe``);
* alerts by page; the series the run page charts (one pass over the run's aggregates).

The store module owns the tables and the writes; these are only reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Integer, and_, cast, exists, func, literal, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from ..exceptions import StoreError
from ..store import aggregates, alerts, flags, run_metrics, runs, samples, scores

__all__ = [
    "SEVERITY_RANK",
    "HEADLINE_PREFERENCE",
    "StepFilter",
    "read",
    "engine_of",
    "list_runs",
    "count_runs",
    "open_alerts_by_run",
    "headline_series",
    "get_run",
    "run_steps",
    "flagged_counts",
    "step_neighbours",
    "nearest_step",
    "chart_rows",
    "train_rows",
    "alert_markers",
    "step_scorers",
    "step_probes",
    "step_samples",
    "count_step_samples",
    "scores_for",
    "step_aggregates",
    "step_flags",
    "get_sample",
    "previous_of_probe",
    "list_alerts",
    "count_alerts",
    "live_stamp",
    "alerts_after",
]

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# The runs list draws one "headline" metric per run: the first of these the run has.
HEADLINE_PREFERENCE = (
    "judge.",
    "reference.semscore",
    "memorization.memorized",
    "repetition.loop",
    "diversity.",
    "length.tokens",
)


def engine_of(request: Request) -> Engine:
    """The store's engine, shared with the API routes."""
    engine: Engine = request.app.state.store.engine
    return engine


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read connection; database errors become :class:`StoreError` (HTTP 503 in one place)."""
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as e:
        raise StoreError(str(e)) from e


# -- runs ---------------------------------------------------------------------------------


def _project_runs(project: str | None) -> list[ColumnElement[bool]]:
    # ``project`` is the viewer's (auth on) or None (auth off: every run is visible).
    return [] if project is None else [runs.c.project == project]


def list_runs(
    conn: Connection, limit: int, offset: int, project: str | None = None
) -> list[dict[str, Any]]:
    q = (
        select(runs.c.name, runs.c.last_step, runs.c.updated, runs.c.rubrics)
        .where(*_project_runs(project))
        .order_by(runs.c.updated.desc(), runs.c.name)
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def count_runs(conn: Connection, project: str | None = None) -> int:
    q = select(func.count()).select_from(runs).where(*_project_runs(project))
    return int(conn.execute(q).scalar_one())


def get_run(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(runs).where(runs.c.name == name)).mappings().first()
    return dict(row) if row else None


def open_alerts_by_run(conn: Connection, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{run: {"count": n, "worst": severity}}`` of open alerts, for the given runs."""
    out: dict[str, dict[str, Any]] = {}
    if not names:
        return out
    q = (
        select(alerts.c.run, alerts.c.severity, func.count())
        .where(and_(alerts.c.run.in_(names), alerts.c.state == "open"))
        .group_by(alerts.c.run, alerts.c.severity)
    )
    for run, severity, n in conn.execute(q):
        entry = out.setdefault(run, {"count": 0, "worst": severity})
        entry["count"] += int(n)
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(entry["worst"], 0):
            entry["worst"] = severity
    return out


def _headline_metric(metrics: Sequence[str]) -> str | None:
    for prefix in HEADLINE_PREFERENCE:
        for m in sorted(metrics):
            if m == prefix or (prefix.endswith(".") and m.startswith(prefix)):
                return m
    return min(metrics) if metrics else None


def headline_series(conn: Connection, run: str, points: int) -> tuple[str | None, list[float]]:
    """The run's headline metric and its last ``points`` means, oldest first."""
    last = conn.execute(
        select(aggregates.c.step)
        .where(aggregates.c.run == run)
        .order_by(aggregates.c.step.desc())
        .limit(1)
    ).scalar()
    if last is None:
        return None, []
    names = conn.execute(
        select(aggregates.c.metric).where(and_(aggregates.c.run == run, aggregates.c.step == last))
    ).scalars()
    metric = _headline_metric(list(names))
    if metric is None:
        return None, []
    q = (
        select(aggregates.c.mean)
        .where(
            and_(
                aggregates.c.run == run,
                aggregates.c.metric == metric,
                aggregates.c.mean.is_not(None),
            )
        )
        .order_by(aggregates.c.step.desc())
        .limit(points)
    )
    values = [float(v) for v in conn.execute(q).scalars()]
    return metric, values[::-1]


# -- a run's steps ------------------------------------------------------------------------


def run_steps(conn: Connection, run: str, limit: int, offset: int) -> list[dict[str, Any]]:
    """Steps that have samples, newest first: step, sample count, checkpoint."""
    q = (
        select(
            samples.c.step,
            func.count().label("n"),
            func.max(samples.c.checkpoint).label("checkpoint"),
        )
        .where(samples.c.run == run)
        .group_by(samples.c.step)
        .order_by(samples.c.step.desc())
        .limit(limit)
        .offset(offset)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def _flag_clause() -> ColumnElement[bool]:
    # A boolean score is a flag: true means the detector fired (repetition.loop, ...).
    return and_(scores.c.is_bool.is_(True), scores.c.value == 1.0)


def flagged_counts(conn: Connection, run: str, steps: Sequence[int]) -> dict[int, int]:
    """Samples with at least one flag, per step."""
    if not steps:
        return {}
    q = (
        select(scores.c.step, func.count(func.distinct(scores.c.sample_id)))
        .where(and_(scores.c.run == run, scores.c.step.in_(steps), _flag_clause()))
        .group_by(scores.c.step)
    )
    return {int(s): int(n) for s, n in conn.execute(q)}


def step_neighbours(conn: Connection, run: str, step: int) -> tuple[int | None, int | None]:
    """The previous and next steps that have samples."""
    prev = conn.execute(
        select(samples.c.step)
        .where(and_(samples.c.run == run, samples.c.step < step))
        .order_by(samples.c.step.desc())
        .limit(1)
    ).scalar()
    nxt = conn.execute(
        select(samples.c.step)
        .where(and_(samples.c.run == run, samples.c.step > step))
        .order_by(samples.c.step)
        .limit(1)
    ).scalar()
    return prev, nxt


def nearest_step(conn: Connection, run: str, step: int) -> int | None:
    """The step with samples closest to ``step`` (the later one on a tie)."""
    before, after = step_neighbours(conn, run, step + 1)
    if before == step or after is None:
        return before
    if before is None or after - step <= step - before:
        return after
    return before


def chart_rows(conn: Connection, run: str, from_step: int = 0) -> list[tuple[Any, ...]]:
    """``(metric, step, mean, ci_low, ci_high)`` of every aggregate from ``from_step`` on."""
    q = (
        select(
            aggregates.c.metric,
            aggregates.c.step,
            aggregates.c.mean,
            aggregates.c.ci_low,
            aggregates.c.ci_high,
        )
        .where(and_(aggregates.c.run == run, aggregates.c.step >= from_step))
        .order_by(aggregates.c.step)
    )
    return [tuple(r) for r in conn.execute(q)]


def train_rows(conn: Connection, run: str, from_step: int = 0) -> list[tuple[Any, ...]]:
    """``(name, step, value)`` of the trainer's metrics from ``from_step`` on."""
    q = (
        select(run_metrics.c.name, run_metrics.c.step, run_metrics.c.value)
        .where(and_(run_metrics.c.run == run, run_metrics.c.step >= from_step))
        .order_by(run_metrics.c.step)
    )
    return [tuple(r) for r in conn.execute(q)]


def alert_markers(conn: Connection, run: str, limit: int = 1000) -> list[dict[str, Any]]:
    q = (
        select(alerts.c.id, alerts.c.step, alerts.c.severity, alerts.c.rule, alerts.c.state)
        .where(alerts.c.run == run)
        .order_by(alerts.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


# -- one step -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFilter:
    """Which of a step's samples to show, in which order."""

    flagged: bool = False
    probe: str | None = None
    detector: str | None = None  # a scorer family ("repetition") or a scorer name
    sort: str | None = None  # a scorer name, "id" or "probe"
    descending: bool = True


def step_scorers(conn: Connection, run: str, step: int) -> list[tuple[str, bool]]:
    """``(scorer, is_bool)`` of every scorer that scored a sample at this step."""
    q = (
        select(scores.c.scorer, func.max(cast(scores.c.is_bool, Integer)))  # PG has no max(bool)
        .where(and_(scores.c.run == run, scores.c.step == step))
        .group_by(scores.c.scorer)
        .order_by(scores.c.scorer)
    )
    return [(str(s), bool(b)) for s, b in conn.execute(q)]


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


def step_samples(
    conn: Connection, run: str, step: int, f: StepFilter, limit: int, offset: int
) -> list[dict[str, Any]]:
    """One page of a step's samples (without scores: see :func:`scores_for`)."""
    cols = [
        samples.c.id,
        samples.c.probe_id,
        samples.c.checkpoint,
        func.substr(samples.c.completion, 1, 120).label("preview"),
        func.length(samples.c.completion).label("chars"),
    ]
    q = select(*cols).where(and_(*_step_where(run, step, f)))
    if f.sort in (None, "id"):
        order = [samples.c.id.desc() if f.descending and f.sort else samples.c.id]
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
    return [dict(r) for r in conn.execute(q).mappings()]


def count_step_samples(conn: Connection, run: str, step: int, f: StepFilter) -> int:
    q = select(func.count()).select_from(samples).where(and_(*_step_where(run, step, f)))
    return int(conn.execute(q).scalar_one())


def scores_for(
    conn: Connection, run: str, ids: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{sample_id: {scorer: {"value", "is_bool", "details"}}}`` for the given samples."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not ids:
        return out
    q = select(
        scores.c.sample_id, scores.c.scorer, scores.c.value, scores.c.is_bool, scores.c.details
    ).where(and_(scores.c.run == run, scores.c.sample_id.in_(ids)))
    for sid, scorer, value, is_bool, details in conn.execute(q):
        v: float | bool | None = value
        if is_bool and value is not None:
            v = bool(value)
        out.setdefault(sid, {})[scorer] = {
            "value": v,
            "is_bool": bool(is_bool),
            "details": details if isinstance(details, dict) else {},
        }
    return out


def step_aggregates(conn: Connection, run: str, step: int) -> list[dict[str, Any]]:
    q = (
        select(aggregates.c.metric, aggregates.c.mean, aggregates.c.ci_low, aggregates.c.ci_high,
               aggregates.c.n)
        .where(and_(aggregates.c.run == run, aggregates.c.step == step))
        .order_by(aggregates.c.metric)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def step_flags(conn: Connection, run: str, step: int) -> list[dict[str, Any]]:
    q = (
        select(flags.c.name, flags.c.severity, flags.c.message, flags.c.details)
        .where(and_(flags.c.run == run, flags.c.step == step))
        .order_by(flags.c.name)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


# -- one sample ---------------------------------------------------------------------------


def get_sample(conn: Connection, run: str, sample_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(samples).where(and_(samples.c.run == run, samples.c.id == sample_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def previous_of_probe(conn: Connection, run: str, probe_id: str, step: int) -> dict[str, Any] | None:
    """The same probe's sample at the latest earlier step (the previous checkpoint)."""
    q = (
        select(samples.c.id, samples.c.step, samples.c.checkpoint, samples.c.completion)
        .where(and_(samples.c.run == run, samples.c.probe_id == probe_id, samples.c.step < step))
        .order_by(samples.c.step.desc(), samples.c.id)
        .limit(1)
    )
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


# -- alerts -------------------------------------------------------------------------------


def _alert_where(
    run: str | None, state: str | None, project: str | None = None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if project is not None:
        where.append(alerts.c.run.in_(select(runs.c.name).where(runs.c.project == project)))
    if run is not None:
        where.append(alerts.c.run == run)
    if state is not None:
        where.append(alerts.c.state == state)
    return where


def list_alerts(
    conn: Connection,
    run: str | None,
    state: str | None,
    limit: int,
    offset: int,
    project: str | None = None,
) -> list[dict[str, Any]]:
    q = select(alerts).order_by(alerts.c.id.desc()).limit(limit).offset(offset)
    where = _alert_where(run, state, project)
    if where:
        q = q.where(and_(*where))
    return [dict(r) for r in conn.execute(q).mappings()]


def count_alerts(
    conn: Connection, run: str | None, state: str | None, project: str | None = None
) -> int:
    q = select(func.count()).select_from(alerts)
    where = _alert_where(run, state, project)
    if where:
        q = q.where(and_(*where))
    return int(conn.execute(q).scalar_one())


# -- live updates -------------------------------------------------------------------------


def live_stamp(conn: Connection, run: str | None, project: str | None = None) -> str:
    """A string that changes whenever a step, a score or an alert the page shows changes.

    For one run it also covers the aggregates of its last step, which the worker writes
    after the samples (one primary-key lookup); for all runs, the runs' last update.
    """
    if run is None:
        updated = conn.execute(
            select(func.max(runs.c.updated)).where(*_project_runs(project))
        ).scalar()
        part = str(updated)
    else:
        row = conn.execute(
            select(runs.c.updated, runs.c.last_step).where(runs.c.name == run)
        ).first()
        agg = None
        if row is not None:
            agg = conn.execute(
                select(func.max(aggregates.c.updated)).where(
                    and_(aggregates.c.run == run, aggregates.c.step == row.last_step)
                )
            ).scalar()
        part = f"{row.updated if row else None}/{agg}"
    where = _alert_where(run, None, project)
    last_alert = conn.execute(select(func.max(alerts.c.id)).where(*where)).scalar()
    open_alerts = conn.execute(
        select(func.count()).select_from(alerts).where(*_alert_where(run, "open", project))
    ).scalar()
    return f"{part}|{last_alert or 0}|{open_alerts or 0}"


def alerts_after(
    conn: Connection, run: str | None, after_id: int, limit: int = 20, project: str | None = None
) -> list[dict[str, Any]]:
    q = (
        select(alerts.c.id, alerts.c.run, alerts.c.step, alerts.c.rule, alerts.c.severity,
               alerts.c.message)
        .where(and_(alerts.c.id > after_id, *_alert_where(run, None, project)))
        .order_by(alerts.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]
