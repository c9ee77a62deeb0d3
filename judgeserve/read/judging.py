"""Reads of judge versions (drift control, :mod:`judgeserve.drift`): the versions a
rubric has had and the re-scoring of its labelled items with each, labelled items'
verdicts by other versions than the run's own, and judge aggregates per version for the
charts and the API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from ..judge.version import JudgeVersion
from ..store import judge_aggregates, judge_verdicts, judge_versions, labels, plain, runs
from ._base import _reads

__all__ = [
    "rubric_versions",
    "labelled_verdicts",
    "judge_series",
    "step_judge_versions",
    "main_judge_versions",
    "version_dict",
]

MAX_VERSIONS = 200


def version_dict(row: Any) -> dict[str, Any]:
    """A ``judge_versions`` row as the API names a version: its parts, key and label
    (:meth:`JudgeVersion.as_dict`)."""
    v = JudgeVersion(row["model"], row["backend"], row["prompt_hash"], row["rubric_version"])
    return v.as_dict()


@_reads
def rubric_versions(conn: Connection, rubric: str) -> list[dict[str, Any]]:
    """The rubric's judge versions, per criterion, first seen first: ``scorer, criterion,
    key, version`` (:func:`version_dict`), ``first_run, first_step, first_seen``, and the
    re-scoring of its labelled items: ``rescore_state, rescored, rescore_total,
    rescore_reason``."""
    q = (
        select(judge_versions)
        .where(judge_versions.c.rubric == rubric)
        .order_by(judge_versions.c.first_seen, judge_versions.c.scorer)
        .limit(MAX_VERSIONS)
    )
    out = []
    for r in conn.execute(q).mappings():
        row = plain(r)
        row["version"] = version_dict(r)
        out.append(row)
    return out


@_reads
def labelled_verdicts(
    conn: Connection, rubric: str, project: str | None = None, limit: int = 20_000
) -> list[dict[str, Any]]:
    """Verdicts of the rubric's labelled items by judge versions re-scoring them
    (``judge_verdicts``): ``run, sample_id, criterion, value, details``."""
    prefix = f"judge.{rubric}."
    labelled = select(labels.c.run, labels.c.sample_id).where(labels.c.rubric == rubric)
    if project is not None:
        labelled = labelled.where(
            labels.c.run.in_(select(runs.c.name).where(runs.c.project == project))
        )
    q = (
        select(
            judge_verdicts.c.run, judge_verdicts.c.sample_id, judge_verdicts.c.scorer,
            judge_verdicts.c.value, judge_verdicts.c.details,
        )
        .where(
            judge_verdicts.c.scorer.like(f"{prefix}%"),
            judge_verdicts.c.run.in_(select(labels.c.run).where(labels.c.rubric == rubric)),
        )
        .order_by(judge_verdicts.c.created.desc())
        .limit(limit)
    )
    items = {(str(r), str(s)) for r, s in conn.execute(labelled.distinct())}
    out = []
    for run, sid, scorer, value, details in conn.execute(q):
        if (run, sid) in items and str(scorer).startswith(prefix):
            out.append({"run": run, "sample_id": sid, "criterion": str(scorer)[len(prefix):],
                        "value": value, "details": details})
    return out


def _labels(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    if not keys:
        return {}
    q = select(judge_versions).where(
        judge_versions.c.scorer.in_(sorted({s for s, _ in keys})),
        judge_versions.c.key.in_(sorted({k for _, k in keys})),
    )
    return {(str(r["scorer"]), str(r["key"])): version_dict(r) for r in conn.execute(q).mappings()}


def _unknown(key: str) -> dict[str, Any]:
    # Scores that record no version (written before versions were), or a version whose
    # record is missing: named by what is known.
    return {"key": key, "label": "unversioned" if not key else f"judge {key}"}


@_reads
def judge_series(
    conn: Connection, run: str, from_step: int = 0
) -> dict[str, dict[str, Any]]:
    """Every judge metric of a run, one series per judge version, from ``from_step`` on:
    ``{metric: {"split", "versions": [{"key", "label", ...version parts, "first_step",
    "first", "steps", "mean", "ci_low", "ci_high", "n", "main"}]}}``, versions in the order
    they appeared. ``split``: the run's metric was judged by more than one version (over
    the whole run, not only from ``from_step``); ``first_step``: where the version first
    appeared in the run; ``first``: it is the run's first version of the metric."""
    first_q = (
        select(judge_aggregates.c.metric, judge_aggregates.c.version, func.min(judge_aggregates.c.step))
        .where(judge_aggregates.c.run == run)
        .group_by(judge_aggregates.c.metric, judge_aggregates.c.version)
    )
    firsts: dict[str, dict[str, int]] = {}
    for metric, key, step in conn.execute(first_q):
        firsts.setdefault(str(metric), {})[str(key)] = int(step)
    q = (
        select(judge_aggregates)
        .where(and_(judge_aggregates.c.run == run, judge_aggregates.c.step >= from_step))
        .order_by(judge_aggregates.c.step, judge_aggregates.c.metric, judge_aggregates.c.version)
    )
    series: dict[str, dict[str, dict[str, Any]]] = {}
    for r in conn.execute(q).mappings():
        s = series.setdefault(str(r["metric"]), {}).setdefault(
            str(r["version"]),
            {"steps": [], "mean": [], "ci_low": [], "ci_high": [], "n": [], "main": []},
        )
        s["steps"].append(int(r["step"]))
        for k in ("mean", "ci_low", "ci_high", "n", "main"):
            s[k].append(r[k])
    names = _labels(conn, {(m, k) for m, vs in series.items() for k in vs})
    out: dict[str, dict[str, Any]] = {}
    for metric, versions in sorted(series.items()):
        first = firsts.get(metric, {})
        earliest = min(first.items(), key=lambda kv: (kv[1], kv[0]))[0] if first else None
        out[metric] = {
            "split": len(first) > 1,
            "versions": [
                {**names.get((metric, key), _unknown(key)), "first_step": first.get(key),
                 "first": key == earliest, **s}
                for key, s in sorted(versions.items(), key=lambda kv: (first.get(kv[0], 0), kv[0]))
            ],
        }
    return out


@_reads
def step_judge_versions(conn: Connection, run: str, step: int) -> dict[str, dict[str, Any]]:
    """Per judge metric of one step: ``{"judge_version": the version its aggregate covers,
    "other_versions": [{"judge_version", "mean", "ci_low", "ci_high", "n"}]}`` (others
    only where the step was judged by more than one version)."""
    q = (
        select(judge_aggregates)
        .where(and_(judge_aggregates.c.run == run, judge_aggregates.c.step == step))
        .order_by(judge_aggregates.c.metric, judge_aggregates.c.n.desc())
    )
    rows = [dict(r) for r in conn.execute(q).mappings()]
    names = _labels(conn, {(str(r["metric"]), str(r["version"])) for r in rows})
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        metric, key = str(r["metric"]), str(r["version"])
        named = names.get((metric, key), _unknown(key))
        entry = out.setdefault(metric, {"judge_version": None, "other_versions": []})
        if r["main"]:
            entry["judge_version"] = named
        else:
            entry["other_versions"].append(
                {"judge_version": named, **{k: r[k] for k in ("mean", "ci_low", "ci_high", "n")}}
            )
    return out


@_reads
def main_judge_versions(
    conn: Connection, run: str, from_step: int = 0
) -> dict[tuple[str, int], str]:
    """``{(metric, step): version key}`` of the run's judge aggregates (the version each
    step's aggregate covers)."""
    q = select(judge_aggregates.c.metric, judge_aggregates.c.step, judge_aggregates.c.version).where(
        and_(
            judge_aggregates.c.run == run,
            judge_aggregates.c.step >= from_step,
            judge_aggregates.c.main.is_(True),
        )
    )
    return {(str(m), int(s)): str(k) for m, s, k in conn.execute(q)}
