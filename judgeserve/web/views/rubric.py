"""``/rubrics/{rubric}``: one rubric, its human labels, and how well its judge agrees with them.

Agreement is shown per criterion and per judge version
(:class:`judgeserve.judge.version.JudgeVersion`: model, backend, prompt hash, rubric
version), each figure with its bootstrap 95 % interval (:mod:`judgeserve.agreement`):
exact, within ±1, quadratic-weighted kappa and Spearman for single rubrics; accuracy with
and without ties and the position-bias rate for pairwise ones; length bias (Spearman of
score with completion length, judge beside people) for both; and where items have a
second labeller, people against each other (the ceiling a judge can reach). Labelled items
re-scored by a new judge version (:mod:`judgeserve.drift`) count for that version. Then
the rubric's judge versions, where each first appeared and how far the re-scoring of the
labelled items has got; the judges ``judgeserve judge tune`` fitted to the labels
(agreement before and after on the held-out labels); the calibration reports
``judgeserve calibrate`` kept in the store, newest first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from ... import read
from ...agreement import rubric_agreement
from ..login import viewer_project
from ..templating import not_found, render
from .rubrics import _summary, calibration_summary, find

router = APIRouter()
RubricName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


@router.get("/rubrics/{rubric}", response_class=HTMLResponse)
def rubric_page(request: Request, rubric: RubricName) -> HTMLResponse:
    spec = find(request.app.state.settings, rubric)
    if spec is None:
        return not_found(request, f"No rubric named {rubric!r} where the judge looks.")
    project = viewer_project(request)
    levels: dict[str, list[int] | None] = {
        c.name: None if spec.mode == "pairwise" else sorted(spec.scale_of(c.name).levels)
        for c in spec.criteria
    }
    with read.connect(request.app.state.store) as conn:
        rows = read.labels_with_verdicts(conn, spec.name, project)
        # The position-bias rate is measured on every verdict, labelled or not.
        verdicts: list[dict[str, Any]] = (
            read.judged_candidates(conn, spec.name, list(levels), project)
            if spec.mode == "pairwise"
            else []
        )
        reports = read.list_calibrations(conn, spec.name)
        tunes = read.list_tunes(conn, spec.name)
        # Labelled items re-scored by judge versions other than the run's own (drift.py).
        rescored = read.labelled_verdicts(conn, spec.name, project)
        versions = read.rubric_versions(conn, spec.name)
    agreement = rubric_agreement(rows, verdicts, levels, rescored)
    # Versions in the order they appeared, so a changed judge reads old, then new.
    order = {(v["criterion"], v["key"]): i for i, v in enumerate(versions)}
    for criterion, found in agreement["criteria"].items():
        found["versions"].sort(key=lambda v, c=criterion: order.get((c, v["version"]["key"]), len(order)))
    return render(
        request,
        "rubric.html",
        {
            "title": f"Rubric · {spec.name}",
            "rubric": _summary(spec),
            "mode": spec.mode,
            "agreement": agreement,
            "versions": versions,
            "capped": len(rows) >= read.MAX_LABEL_ROWS,
            "calibrations": [calibration_summary(r, spec.version) for r in reports],
            "tunes": [tune_summary(r, spec.version) for r in tunes],
        },
    )


# The one figure before/after compares, per mode: exact agreement, accuracy with ties.
_HEADLINE = {"exact_agreement": "exact agreement", "accuracy_with_ties": "accuracy with ties"}


def tune_summary(report: dict[str, Any], version: Any) -> dict[str, Any]:
    """What the page shows of a stored ``TuneReport``: per criterion, the held-out
    agreement of the base judge and of the tuned one."""
    from ...judge.version import JudgeVersion

    before = report.get("before") or {}
    after = report.get("after") or {}
    hashes = after.get("prompt_hashes") or {}
    rows = []
    for name, metrics in (before.get("criteria") or {}).items():
        tuned = (after.get("criteria") or {}).get(name) or {}
        metric = next((m for m in _HEADLINE if m in metrics), None)
        rows.append(
            {
                "criterion": name,
                "metric": _HEADLINE.get(metric or "", "agreement"),
                "before": metrics.get(metric) if metric else None,
                "after": tuned.get(metric) if metric else None,
                "kappa_before": metrics.get("kappa_quadratic"),
                "kappa_after": tuned.get("kappa_quadratic"),
                # The tuned judge's version, as its agreement row on this page names it
                # once it has judged labelled items.
                "version": JudgeVersion(
                    str(after.get("judge_model")),
                    str(after.get("judge_backend")),
                    str(hashes.get(name)),
                    str(after.get("rubric_version")),
                ).key,
            }
        )
    return {
        "created": report.get("created"),
        "backend": report.get("backend"),
        "base_model": report.get("base_model"),
        "tuned_model": report.get("tuned_model"),
        "adapter": report.get("adapter"),
        "serve_options": report.get("serve_options") or {},
        "n_train": report.get("n_train"),
        "n_held_out": report.get("n_held_out"),
        "steps": report.get("steps"),
        "train_seconds": report.get("train_seconds"),
        "version": report.get("rubric_version"),
        "stale": str(report.get("rubric_version")) != str(version),
        "criteria": rows,
    }
