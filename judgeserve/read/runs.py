"""A run: its list entry, steps, metric series, alert markers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from ..store import (
    aggregates,
    alerts,
    plain,
    run_metrics,
    run_summary,
    runs,
    samples,
    scores,
)
from ._base import HEADLINE_PREFERENCE, SEVERITY_RANK, _flag_clause, _project_runs, _reads
from .judging import main_judge_versions

__all__ = [
    "list_runs",
    "count_runs",
    "get_run",
    "open_alerts_by_run",
    "headline_series",
    "run_steps",
    "flagged_counts",
    "step_neighbours",
    "nearest_step",
    "metric_series",
    "nonfinite_metrics",
    "run_summary_values",
    "run_samples",
    "count_run_samples",
    "alert_markers",
]

# -- runs ---------------------------------------------------------------------------------


@_reads
def list_runs(
    conn: Connection, limit: int = 100, offset: int = 0, project: str | None = None
) -> list[dict[str, Any]]:
    """Runs, most recently updated first."""
    q = (
        select(runs)
        .where(*_project_runs(project))
        .order_by(runs.c.updated.desc(), runs.c.name)
        .limit(limit)
        .offset(offset)
    )
    return [plain(r) for r in conn.execute(q).mappings()]


@_reads
def count_runs(conn: Connection, project: str | None = None) -> int:
    q = select(func.count()).select_from(runs).where(*_project_runs(project))
    return int(conn.execute(q).scalar_one())


@_reads
def get_run(conn: Connection, name: str) -> dict[str, Any] | None:
    """The run's row (``name``, ``project``, ``rubrics``, ``last_step`` ...), or None."""
    row = conn.execute(select(runs).where(runs.c.name == name)).mappings().first()
    return plain(row) if row else None


@_reads
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


@_reads
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


@_reads
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


@_reads
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


@_reads
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


@_reads
def nearest_step(conn: Connection, run: str, step: int) -> int | None:
    """The step with samples closest to ``step`` (the later one on a tie)."""
    before, after = step_neighbours(conn, run, step + 1)
    if before == step or after is None:
        return before
    if before is None or after - step <= step - before:
        return after
    return before


@_reads
def metric_series(
    conn: Connection, run: str, from_step: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Every aggregate and trainer metric (``train.<name>``) of a run as series over steps,
    ``{metric: [{"step", "mean", "ci_low", "ci_high", "n"}, ...]}``, from ``from_step`` on;
    a judge metric's points name the judge version each covers (``"judge_version"``, a
    key; every version's series apart: :func:`judgeserve.read.judge_series`).
    A trainer metric that was NaN or infinite has ``"mean": None`` and ``"nonfinite"``
    ('nan', 'inf' or '-inf')."""
    out: dict[str, list[dict[str, Any]]] = {}
    # In step order, which the primary keys (run, step, ...) give without a sort.
    q = (
        select(
            aggregates.c.metric,
            aggregates.c.step,
            aggregates.c.mean,
            aggregates.c.ci_low,
            aggregates.c.ci_high,
            aggregates.c.n,
        )
        .where(and_(aggregates.c.run == run, aggregates.c.step >= from_step))
        .order_by(aggregates.c.step)
    )
    for metric, step, mean, ci_low, ci_high, n in conn.execute(q):
        out.setdefault(metric, []).append(
            {"step": step, "mean": mean, "ci_low": ci_low, "ci_high": ci_high, "n": n}
        )
    if any(m.startswith("judge.") for m in out):
        # Each judge point names the judge version its mean covers (drift.py).
        versions = main_judge_versions(conn, run, from_step)
        for metric, points in out.items():
            if metric.startswith("judge."):
                for p in points:
                    p["judge_version"] = versions.get((metric, int(p["step"])))
    q2 = (
        select(run_metrics.c.name, run_metrics.c.step, run_metrics.c.value, run_metrics.c.nonfinite)
        .where(and_(run_metrics.c.run == run, run_metrics.c.step >= from_step))
        .order_by(run_metrics.c.step)
    )
    for name, step, value, nonfinite in conn.execute(q2):
        point = {"step": step, "mean": value, "ci_low": None, "ci_high": None, "n": 1}
        if nonfinite is not None:
            point["nonfinite"] = nonfinite
        out.setdefault(f"train.{name}", []).append(point)
    return dict(sorted(out.items()))


@_reads
def nonfinite_metrics(conn: Connection, run: str, limit: int = 5) -> list[dict[str, Any]]:
    """``{"name", "step", "value"}`` of the run's trainer metrics that were NaN or infinite
    (``value``: 'nan', 'inf' or '-inf'), earliest first: the first is where it diverged."""
    q = (
        select(run_metrics.c.name, run_metrics.c.step, run_metrics.c.nonfinite)
        .where(and_(run_metrics.c.run == run, run_metrics.c.nonfinite.is_not(None)))
        .order_by(run_metrics.c.step, run_metrics.c.name)
        .limit(limit)
    )
    return [{"name": f"train.{n}", "step": int(s), "value": v} for n, s, v in conn.execute(q)]


@_reads
def run_summary_values(conn: Connection, run: str) -> dict[str, float | str]:
    """The run's summary values by name (a trainer's end-of-run ``train_runtime``,
    ``total_flos`` ...); a non-finite one as 'nan', 'inf' or '-inf'."""
    q = (
        select(run_summary.c.name, run_summary.c.value, run_summary.c.nonfinite)
        .where(run_summary.c.run == run)
        .order_by(run_summary.c.name)
    )
    return {n: (bad if bad is not None else float(v)) for n, v, bad in conn.execute(q)}


def _in_steps(run: str, first: int | None, last: int | None) -> list[Any]:
    where = [samples.c.run == run]
    if first is not None:
        where.append(samples.c.step >= first)
    if last is not None:
        where.append(samples.c.step <= last)
    return where


@_reads
def run_samples(
    conn: Connection,
    run: str,
    first: int | None = None,
    last: int | None = None,
    *,
    after: tuple[int, str] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """A page of the run's stored samples with steps in ``[first, last]`` (None: open),
    ordered by step then id, after ``(step, id)``: every field a sample was sent with."""
    where = _in_steps(run, first, last)
    if after is not None:
        step, sid = after
        where.append(
            or_(samples.c.step > step, and_(samples.c.step == step, samples.c.id > sid))
        )
    q = select(samples).where(*where).order_by(samples.c.step, samples.c.id).limit(limit)
    return [plain(r) for r in conn.execute(q).mappings()]


@_reads
def count_run_samples(
    conn: Connection, run: str, first: int | None = None, last: int | None = None
) -> int:
    """How many samples the run has stored with steps in ``[first, last]``."""
    q = select(func.count()).select_from(samples).where(*_in_steps(run, first, last))
    return int(conn.execute(q).scalar_one())


@_reads
def alert_markers(conn: Connection, run: str, limit: int = 1000) -> list[dict[str, Any]]:
    """``{"id", "step", "severity", "rule", "state"}`` of a run's alerts, newest first."""
    q = (
        select(alerts.c.id, alerts.c.step, alerts.c.severity, alerts.c.rule, alerts.c.state)
        .where(alerts.c.run == run)
        .order_by(alerts.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]
