"""Reads of human labels, the judge verdicts they are compared with, and calibration
reports (the package's docstring: how every read is made).

A labelled item is a sample judged on one criterion of a rubric: the judge's score is the
row of ``scores`` named ``judge.<rubric>.<criterion>`` for the same run and sample. Reads
that a viewer makes take ``project`` (None: auth is off, everything is visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, and_, func, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from ..store import calibration_reports, labels, plain, runs, samples, scores, tune_reports
from ._base import _reads

__all__ = [
    "MAX_LABEL_ROWS",
    "judged_candidates",
    "labelled_items",
    "latest_label",
    "label_counts",
    "labels_with_verdicts",
    "label_export_rows",
    "list_calibrations",
    "latest_calibrations",
    "list_tunes",
]

# Agreement and the queue are computed on at most this many rows (newest first): enough for
# tight intervals, and a page costs the same however many labels pile up.
MAX_LABEL_ROWS = 20_000
CANDIDATE_RUNS = 50
CANDIDATES_PER_RUN = 400


def _visible_runs(project: str | None) -> list[ColumnElement[bool]]:
    if project is None:
        return []
    return [labels.c.run.in_(select(runs.c.name).where(runs.c.project == project))]


# One text per item, to count distinct items (SQLite has no COUNT(DISTINCT a, b)); the
# separator is a control character no run name, sample id or criterion holds.
_item = labels.c.run + literal("\x1f") + labels.c.sample_id + literal("\x1f") + labels.c.criterion


def _scorer_of(rubric: str) -> Any:
    # judge.<rubric>.<criterion>, built in SQL so a label joins its judge score on the index.
    return literal(f"judge.{rubric}.") + labels.c.criterion


@_reads
def judged_candidates(
    conn: Connection,
    rubric: str,
    criteria: Sequence[str],
    project: str | None = None,
    runs_limit: int = CANDIDATE_RUNS,
    per_run: int = CANDIDATES_PER_RUN,
) -> list[dict[str, Any]]:
    """Judge scores of the rubric's criteria, from each of the most recently updated runs
    the viewer may see, newest steps first: ``run, sample_id, step, criterion, value,
    details``. Each run's query walks its (run, step) index from the top."""
    names = [f"judge.{rubric}.{c}" for c in criteria]
    q_runs = select(runs.c.name).order_by(runs.c.updated.desc()).limit(runs_limit)
    if project is not None:
        q_runs = q_runs.where(runs.c.project == project)
    out: list[dict[str, Any]] = []
    prefix = len(f"judge.{rubric}.")
    for run in conn.execute(q_runs).scalars():
        q = (
            select(
                scores.c.run, scores.c.sample_id, scores.c.step, scores.c.scorer,
                scores.c.value, scores.c.details,
            )
            .where(and_(scores.c.run == run, scores.c.scorer.in_(names)))
            .order_by(scores.c.step.desc(), scores.c.sample_id)
            .limit(per_run)
        )
        for r in conn.execute(q).mappings():
            row = dict(r)
            row["criterion"] = str(row.pop("scorer"))[prefix:]
            out.append(row)
    return out


@_reads
def labelled_items(
    conn: Connection, rubric: str, labeller: str, run_names: Sequence[str]
) -> set[tuple[str, str, str]]:
    """``(run, sample_id, criterion)`` the labeller has labelled on the rubric, in these runs."""
    if not run_names:
        return set()
    q = select(labels.c.run, labels.c.sample_id, labels.c.criterion).where(
        and_(
            labels.c.rubric == rubric,
            labels.c.labeller == labeller,
            labels.c.run.in_(list(run_names)),
        )
    )
    return {(str(r), str(s), str(c)) for r, s, c in conn.execute(q)}


@_reads
def latest_label(
    conn: Connection, rubric: str, labeller: str, project: str | None = None
) -> dict[str, Any] | None:
    """The labeller's most recent label on the rubric (what undo takes back)."""
    q = (
        select(labels)
        .where(and_(labels.c.rubric == rubric, labels.c.labeller == labeller, *_visible_runs(project)))
        .order_by(labels.c.created.desc(), labels.c.id.desc())
        .limit(1)
    )
    row = conn.execute(q).mappings().first()
    return plain(row) if row else None


@_reads
def label_counts(conn: Connection, project: str | None = None) -> dict[str, dict[str, int]]:
    """Per rubric: ``{"labels", "items", "labellers"}``."""
    q = (
        select(
            labels.c.rubric,
            func.count(),
            func.count(func.distinct(_item)),
            func.count(func.distinct(labels.c.labeller)),
        )
        .where(*_visible_runs(project))
        .group_by(labels.c.rubric)
    )
    return {
        str(rubric): {"labels": int(n), "items": int(items), "labellers": int(people)}
        for rubric, n, items, people in conn.execute(q)
    }


@_reads
def labels_with_verdicts(
    conn: Connection, rubric: str, project: str | None = None, limit: int = MAX_LABEL_ROWS
) -> list[dict[str, Any]]:
    """The rubric's labels, newest first, each with the judge's score of its item (None
    when it was not judged) and the lengths of the completion and of the baseline:
    ``run, sample_id, criterion, labeller, value, baseline_id, created, judge_value,
    judge_details, length, baseline_length``."""
    base = samples.alias("base")
    q = (
        select(
            labels.c.run, labels.c.sample_id, labels.c.criterion, labels.c.labeller,
            labels.c.value, labels.c.baseline_id, labels.c.created,
            scores.c.value.label("judge_value"), scores.c.details.label("judge_details"),
            func.length(samples.c.completion).label("length"),
            func.length(base.c.completion).label("baseline_length"),
        )
        .select_from(
            labels.outerjoin(
                scores,
                and_(
                    scores.c.run == labels.c.run,
                    scores.c.sample_id == labels.c.sample_id,
                    scores.c.scorer == _scorer_of(rubric),
                ),
            )
            .outerjoin(
                samples, and_(samples.c.run == labels.c.run, samples.c.id == labels.c.sample_id)
            )
            .outerjoin(base, and_(base.c.run == labels.c.run, base.c.id == labels.c.baseline_id))
        )
        .where(labels.c.rubric == rubric, *_visible_runs(project))
        .order_by(labels.c.created.desc(), labels.c.id.desc())
        .limit(limit)
    )
    return [plain(r) for r in conn.execute(q).mappings()]


@_reads
def label_export_rows(
    conn: Connection, rubric: str | None = None, project: str | None = None
) -> list[dict[str, Any]]:
    """Every label (of one rubric, or all), oldest first, with the texts it was given on:
    the label's columns plus ``prompt, completion, reference, baseline``."""
    base = samples.alias("base")
    q = (
        select(
            labels,
            samples.c.prompt, samples.c.completion, samples.c.reference,
            base.c.completion.label("baseline"),
        )
        .select_from(
            labels.outerjoin(
                samples, and_(samples.c.run == labels.c.run, samples.c.id == labels.c.sample_id)
            ).outerjoin(base, and_(base.c.run == labels.c.run, base.c.id == labels.c.baseline_id))
        )
        .where(*_visible_runs(project), *([labels.c.rubric == rubric] if rubric else []))
        .order_by(labels.c.created, labels.c.id)
    )
    return [plain(r) for r in conn.execute(q).mappings()]


@_reads
def list_calibrations(conn: Connection, rubric: str, limit: int = 20) -> list[dict[str, Any]]:
    """The rubric's calibration reports (``CalibrationReport`` as JSON), newest first."""
    return _reports(conn, calibration_reports, rubric, limit)


@_reads
def latest_calibrations(conn: Connection, limit: int = 200) -> dict[str, dict[str, Any]]:
    """The newest calibration report of each rubric (of the ``limit`` newest reports)."""
    q = (
        select(calibration_reports.c.rubric, calibration_reports.c.report)
        .order_by(calibration_reports.c.created.desc(), calibration_reports.c.id.desc())
        .limit(limit)
    )
    out: dict[str, dict[str, Any]] = {}
    for rubric, report in conn.execute(q):
        out.setdefault(str(rubric), dict(report))
    return out


@_reads
def list_tunes(conn: Connection, rubric: str, limit: int = 20) -> list[dict[str, Any]]:
    """The rubric's tune reports (``TuneReport`` as JSON), newest first."""
    return _reports(conn, tune_reports, rubric, limit)


def _reports(conn: Connection, table: Table, rubric: str, limit: int) -> list[dict[str, Any]]:
    # Calibration and tune reports: one JSON report per row, per rubric, newest first.
    q = (
        select(table.c.report)
        .where(table.c.rubric == rubric)
        .order_by(table.c.created.desc(), table.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).scalars()]
