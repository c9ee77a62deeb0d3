"""The one read path: every read the JSON API and the web view make, once.

The API routes (``api/``) and the pages (``web/views/``) call these same functions; a
page adds only presentation (datasette's one ``data()`` feeding JSON and HTML). The
store (:mod:`judgeserve.store`) owns the tables, the engine and the writes.

Every function takes a :class:`~sqlalchemy.engine.Connection` first, so a page makes
all its reads on one connection (``with connect(store) as conn: ...``); a
:class:`~judgeserve.store.Store` or an ``Engine`` works too, for a single read on a
connection of its own. Database errors become :class:`StoreUnavailable` (HTTP 503, in
one place) or :class:`StoreError`. Every list is bounded (``LIMIT``) and walks an index
the store has, so a page costs the same for a run of ten steps as for one of thousands
and 100k+ samples.

Dead letters (samples' and checkpoint jobs') live in Redis, not the database:
:func:`deadletters` reads them through the process's :class:`~judgeserve.stream.Queue`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Integer, and_, cast, exists, func, literal, or_, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from .schema import Alert
from .store import (
    Store,
    aggregates,
    alerts,
    checkpoint_jobs,
    checkpoints,
    flags,
    plain,
    probe_sets,
    run_metrics,
    runs,
    samples,
    scores,
    store_error,
    tokens,
)

if TYPE_CHECKING:
    from .stream import Queue, StreamName

__all__ = [
    "SEVERITY_RANK",
    "HEADLINE_PREFERENCE",
    "Source",
    "StepFilter",
    "connect",
    # runs
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
    "alert_markers",
    # one step
    "step_scorers",
    "step_probes",
    "step_samples",
    "count_step_samples",
    "scores_for",
    "step_aggregates",
    "step_evaluation",
    "step_flags",
    # samples
    "get_sample",
    "previous_samples",
    "count_scored",
    # alerts
    "list_alerts",
    "count_alerts",
    "alert_run",
    "alerts_after",
    "live_stamp",
    # checkpoint mode
    "probe_set",
    "list_checkpoint_jobs",
    "count_checkpoint_jobs",
    "checkpoint_job",
    # tokens, dead letters
    "token",
    "list_tokens",
    "deadletters",
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

Source = Connection | Engine | Store
P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def connect(source: Source) -> Iterator[Connection]:
    """A read connection; database errors become :class:`StoreUnavailable` or
    :class:`StoreError` (:func:`judgeserve.store.store_error`)."""
    if isinstance(source, Connection):
        yield source
        return
    engine = source.engine if isinstance(source, Store) else source
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as e:
        raise store_error(e) from e


def _reads(fn: Callable[Concatenate[Connection, P], R]) -> Callable[Concatenate[Source, P], R]:
    # A read called with a store or engine gets a connection of its own.
    @functools.wraps(fn)
    def wrapper(source: Source, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with connect(source) as conn:
            return fn(conn, *args, **kwargs)

    return wrapper


# -- runs ---------------------------------------------------------------------------------


def _project_runs(project: str | None) -> list[ColumnElement[bool]]:
    # ``project`` is the caller's (auth on) or None (auth off: every run is visible).
    return [] if project is None else [runs.c.project == project]


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


def _flag_clause() -> ColumnElement[bool]:
    # A boolean score is a flag: true means the detector fired (repetition.loop, ...).
    return and_(scores.c.is_bool.is_(True), scores.c.value == 1.0)


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
def metric_series(conn: Connection, run: str, from_step: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Every aggregate and trainer metric (``train.<name>``) of a run as series over steps,
    ``{metric: [{"step", "mean", "ci_low", "ci_high", "n"}, ...]}``, from ``from_step`` on.
    A trainer metric that was NaN or infinite has ``"mean": None`` and ``"nonfinite"``
    ('nan', 'inf' or '-inf')."""
    out: dict[str, list[dict[str, Any]]] = {}
    # In step order, which the primary keys (run, step, ...) give without a sort.
    q = (
        select(
            aggregates.c.metric, aggregates.c.step, aggregates.c.mean, aggregates.c.ci_low,
            aggregates.c.ci_high, aggregates.c.n,
        )
        .where(and_(aggregates.c.run == run, aggregates.c.step >= from_step))
        .order_by(aggregates.c.step)
    )
    for metric, step, mean, ci_low, ci_high, n in conn.execute(q):
        out.setdefault(metric, []).append(
            {"step": step, "mean": mean, "ci_low": ci_low, "ci_high": ci_high, "n": n}
        )
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
    return [
        {"name": f"train.{n}", "step": int(s), "value": v} for n, s, v in conn.execute(q)
    ]


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
            {"scorer": r["scorer"], "value": value, "details": r["details"], "version": r["version"]}
        )
    return out


@_reads
def step_aggregates(conn: Connection, run: str, step: int) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "ci_low", "ci_high", "n"}}`` of a checkpoint, by metric name."""
    q = (
        select(aggregates)
        .where(and_(aggregates.c.run == run, aggregates.c.step == step))
        .order_by(aggregates.c.metric)
    )
    return {
        r["metric"]: {k: r[k] for k in ("mean", "ci_low", "ci_high", "n")}
        for r in conn.execute(q).mappings()
    }


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
    return {"expected": state["expected"], "evaluated": state["evaluated"], "n": state["evaluated_n"]}


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
        samples.c.probe_id, samples.c.id, samples.c.step, samples.c.checkpoint,
        samples.c.completion,
    ).where(samples.c.run == run, tuple_(samples.c.probe_id, samples.c.step).in_(last))
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(conn.execute(q).mappings(), key=lambda r: str(r["id"])):
        out.setdefault(str(r["probe_id"]), {k: r[k] for k in ("id", "step", "checkpoint", "completion")})
    return out


@_reads
def count_scored(conn: Connection, run: str) -> int:
    """Samples of a run with at least one score."""
    q = select(func.count(func.distinct(scores.c.sample_id))).where(scores.c.run == run)
    return int(conn.execute(q).scalar_one())


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


@_reads
def list_alerts(
    conn: Connection,
    run: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
    project: str | None = None,
) -> list[Alert]:
    """Alerts, newest first: of one run or all, by state, of one project's runs."""
    q = (
        select(alerts)
        .where(*_alert_where(run, state, project))
        .order_by(alerts.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [Alert.model_validate(plain(r)) for r in conn.execute(q).mappings()]


@_reads
def count_alerts(
    conn: Connection, run: str | None = None, state: str | None = None, project: str | None = None
) -> int:
    q = select(func.count()).select_from(alerts).where(*_alert_where(run, state, project))
    return int(conn.execute(q).scalar_one())


@_reads
def alert_run(conn: Connection, alert_id: int) -> str | None:
    """The run an alert belongs to, or None when there is no such alert."""
    row = conn.execute(select(alerts.c.run).where(alerts.c.id == alert_id)).first()
    return str(row.run) if row else None


@_reads
def alerts_after(
    conn: Connection, run: str | None, after_id: int, limit: int = 20, project: str | None = None
) -> list[dict[str, Any]]:
    """Alerts newer than ``after_id``, oldest first (what a live page has not seen)."""
    q = (
        select(alerts.c.id, alerts.c.run, alerts.c.step, alerts.c.rule, alerts.c.severity,
               alerts.c.message)
        .where(and_(alerts.c.id > after_id, *_alert_where(run, None, project)))
        .order_by(alerts.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


@_reads
def live_stamp(conn: Connection, run: str | None, project: str | None = None) -> str:
    """A string that changes whenever a step, a score or an alert a page shows changes.

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
    last_alert = conn.execute(
        select(func.max(alerts.c.id)).where(*_alert_where(run, None, project))
    ).scalar()
    open_alerts = conn.execute(
        select(func.count()).select_from(alerts).where(*_alert_where(run, "open", project))
    ).scalar()
    return f"{part}|{last_alert or 0}|{open_alerts or 0}"


# -- checkpoint mode ----------------------------------------------------------------------


@_reads
def probe_set(conn: Connection, run: str, version: str | None = None) -> dict[str, Any] | None:
    """The run's current probe set (or the given ``version``): ``{"run", "version",
    "probes", "generation", "completions", "set_at"}``; None when there is none."""
    q = select(probe_sets).where(probe_sets.c.run == run)
    if version is not None:
        q = q.where(probe_sets.c.version == version)
    row = conn.execute(q.order_by(probe_sets.c.set_at.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    out = plain(row)
    del out["n_probes"]
    return out


def _job(row: Any) -> dict[str, Any]:
    out = plain(row)  # "evaluated": when the checkpoint's alert rules ran
    # Scored: the generated samples were scored and the checkpoint's alert rules ran.
    if out["state"] == "generated" and out["evaluated"] is not None:
        out["state"] = "scored"
    return out


def _jobs_query() -> Any:
    return select(checkpoint_jobs, checkpoints.c.evaluated).join(
        checkpoints,
        and_(checkpoints.c.run == checkpoint_jobs.c.run, checkpoints.c.step == checkpoint_jobs.c.step),
        isouter=True,
    )


@_reads
def list_checkpoint_jobs(
    conn: Connection, run: str, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The run's submitted checkpoints, newest step first: path, kind, probe set, state
    (queued, generating, retrying, generated, scored, failed), reason, generator
    identity, sample count, timings."""
    q = (
        _jobs_query()
        .where(checkpoint_jobs.c.run == run)
        .order_by(checkpoint_jobs.c.step.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_job(r) for r in conn.execute(q).mappings()]


@_reads
def count_checkpoint_jobs(conn: Connection, run: str) -> int:
    q = select(func.count()).select_from(checkpoint_jobs).where(checkpoint_jobs.c.run == run)
    return int(conn.execute(q).scalar_one())


@_reads
def checkpoint_job(conn: Connection, run: str, step: int) -> dict[str, Any] | None:
    """One submitted checkpoint (as :func:`list_checkpoint_jobs` lists them), or None."""
    q = _jobs_query().where(and_(checkpoint_jobs.c.run == run, checkpoint_jobs.c.step == step))
    row = conn.execute(q).mappings().first()
    return _job(row) if row else None


# -- tokens, dead letters ------------------------------------------------------------------


@_reads
def token(conn: Connection, token_id: str) -> tuple[str, str] | None:
    """``(project, secret hash)`` of a token that is not revoked, or None."""
    row = conn.execute(
        select(tokens.c.project, tokens.c.hash).where(
            and_(tokens.c.id == token_id, tokens.c.revoked.is_(False))
        )
    ).first()
    return (str(row.project), str(row.hash)) if row else None


@_reads
def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token's id, project, name, created and revoked (never a secret)."""
    q = select(tokens.c.id, tokens.c.project, tokens.c.name, tokens.c.created, tokens.c.revoked)
    return [plain(r) for r in conn.execute(q).mappings()]


def deadletters(
    queue: Queue,
    limit: int,
    visible: Callable[[str], bool] = lambda run: True,
    stream: StreamName = "samples",
) -> list[dict[str, Any]]:
    """Dead letters, oldest first, of the runs ``visible(run)`` lets the caller see: the
    sample or checkpoint job (``payload``), its last ``error`` and how many
    ``deliveries`` it had."""
    found = queue.deadletters(limit, stream=stream)
    return [d for d in found if visible(str(d["payload"].get("run")))]
