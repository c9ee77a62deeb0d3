"""Calibration: how far does a judge agree with people? Measured before trusting it.

Input: JSON Lines of human-labelled examples, one object per line::

    {"prompt": "...", "completion": "...", "reference": "...", "label": 4}
    {"prompt": "...", "completion": "...", "label": {"correctness": 5, "hallucination": 4}}
    {"prompt": "...", "completion": "...", "baseline": "...", "label": "win"}   # pairwise

A bare ``label`` applies to a rubric's only criterion. Pairwise labels say how the
completion fares against the baseline: ``win``, ``loss`` or ``tie``. Labels made in the
web view come as the same records (:func:`judgeserve.labels.stored_records`).

Output: per criterion, for single scores Spearman's rho (judge's weighted score vs the
human level) and Cohen's kappa (judge's rounded score vs the human level, unweighted and
quadratic-weighted); for pairwise, accuracy with ties (a tie on either side counts as an
answer) and without (only pairs where neither judge nor human said tie). The report
carries rubric version, judge model and prompt hashes, so it stays tied to what it measured;
``judgeserve calibrate`` keeps it in the store, where the rubric pages read it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..agreement import cohen_kappa, nearest_level, spearman
from ..exceptions import ConfigError
from .rubric import Rubric
from .verdicts import Item, Judge, PairVerdict

__all__ = [
    "pairwise_agreement",
    "LabelRecord",
    "CalibrationReport",
    "load_labels",
    "calibrate",
    "cohen_kappa",
    "spearman",
]

PairLabel = Literal["win", "loss", "tie"]


class LabelRecord(BaseModel):
    """One line of a labels file."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    completion: str
    reference: str | None = None
    baseline: str | None = None
    label: int | PairLabel | dict[str, int] | dict[str, PairLabel]


class CalibrationReport(BaseModel):
    """Agreement of one judge with human labels on one rubric version."""

    rubric: str
    rubric_version: str
    rubric_fingerprint: str
    judge_backend: str
    judge_model: str
    prompt_hashes: dict[str, str]
    source: str  # where the labels came from: a file's path, or 'stored labels'
    n: int
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    criteria: dict[str, dict[str, float | int | None]]


def load_labels(path: str | Path, rubric: Rubric) -> list[LabelRecord]:
    """Read a labels file; errors name the file and line."""
    path = Path(path)
    records = []
    names = [c.name for c in rubric.criteria]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read labels: {e.strerror or e}") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = LabelRecord.model_validate_json(line)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(line)"
            raise ConfigError(f"{path}:{number}: {where}: {first['msg']}") from e
        labels = record.label if isinstance(record.label, dict) else None
        if labels is None and len(names) != 1:
            raise ConfigError(
                f"{path}:{number}: label must name criteria {names} (the rubric has several)"
            )
        if labels is not None and not set(labels) <= set(names):
            raise ConfigError(
                f"{path}:{number}: unknown criteria {sorted(set(labels) - set(names))}"
            )
        if rubric.mode == "pairwise" and record.baseline is None:
            raise ConfigError(f"{path}:{number}: pairwise rubric: 'baseline' is required")
        records.append(record)
    if not records:
        raise ConfigError(f"{path}: no labelled examples")
    return records


def _label_of(record: LabelRecord, criterion: str) -> Any:
    return record.label.get(criterion) if isinstance(record.label, dict) else record.label


def _single(judge: Judge, rubric: Rubric, records: list[LabelRecord]) -> dict[str, dict[str, Any]]:
    items = [Item(r.prompt, r.completion, r.reference) for r in records]
    results = judge.score(rubric, items)
    out = {}
    for crit in rubric.criteria:
        levels = sorted(rubric.scale_of(crit.name).levels)
        pairs = [
            (res[crit.name].value, _label_of(rec, crit.name))
            for rec, res in zip(records, results, strict=True)
            if _label_of(rec, crit.name) is not None
        ]
        scored = [(v, h) for v, h in pairs if v is not None]
        judged = [nearest_level(v, levels) for v, _ in scored]
        human = [int(h) for _, h in scored]
        out[crit.name] = {
            "n": len(pairs),
            "unparseable": len(pairs) - len(scored),
            "spearman": spearman([v for v, _ in scored], [float(h) for h in human]),
            "kappa": cohen_kappa(judged, human, levels),
            "kappa_quadratic": cohen_kappa(judged, human, levels, "quadratic"),
            "exact_agreement": float(np.mean([j == h for j, h in zip(judged, human, strict=True)]))
            if scored
            else None,
            "mean_abs_error": float(np.mean([abs(v - h) for v, h in scored])) if scored else None,
        }
    return out


def pairwise_agreement(pairs: list[tuple[PairVerdict, str]]) -> dict[str, Any]:
    """Accuracy of pairwise verdicts against human win/loss/tie labels."""
    answered = [(p.outcome, h) for p, h in pairs if p.outcome is not None]
    decisive = [(j, h) for j, h in answered if j != "tie" and h != "tie"]
    return {
        "n": len(pairs),
        "unparseable": len(pairs) - len(answered),
        "inconsistent": sum(1 for p, _ in pairs if p.outcome is not None and not p.consistent),
        "accuracy_with_ties": _mean([j == h for j, h in answered]),
        "accuracy_without_ties": _mean([j == h for j, h in decisive]),
        "n_without_ties": len(decisive),
    }


def _mean(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _pairwise(
    judge: Judge, rubric: Rubric, records: list[LabelRecord]
) -> dict[str, dict[str, Any]]:
    items = [Item(r.prompt, r.completion, r.reference, r.baseline) for r in records]
    results = judge.compare(rubric, items)
    out = {}
    for crit in rubric.criteria:
        pairs = [
            (res[crit.name], _label_of(rec, crit.name))
            for rec, res in zip(records, results, strict=True)
            if _label_of(rec, crit.name) is not None
        ]
        out[crit.name] = pairwise_agreement(pairs)
    return out


def calibrate(
    judge: Judge,
    rubric: Rubric,
    labels: str | Path | Sequence[LabelRecord],
    source: str | None = None,
) -> CalibrationReport:
    """Judge every labelled example and measure agreement with the labels: a labels file,
    or records made elsewhere (the store's labels, named by ``source``)."""
    if isinstance(labels, (str, Path)):
        records = load_labels(labels, rubric)
        source = source or str(labels)
    else:
        records = list(labels)
        if not records:
            raise ConfigError(f"rubric {rubric.name!r}: no labelled examples")
    criteria = (_pairwise if rubric.mode == "pairwise" else _single)(judge, rubric, records)
    return CalibrationReport(
        rubric=rubric.name,
        rubric_version=rubric.version,
        rubric_fingerprint=rubric.fingerprint()[:16],
        judge_backend=judge.backend.name,
        judge_model=judge.backend.model,
        prompt_hashes={c.name: judge.builder.prompt_hash(rubric, c.name) for c in rubric.criteria},
        source=source or "labels",
        n=len(records),
        criteria=criteria,
    )


def format_report(report: CalibrationReport) -> str:
    """A short table for the terminal."""
    lines = [
        f"rubric {report.rubric} v{report.rubric_version} · judge {report.judge_backend}:"
        f"{report.judge_model} · {report.n} labelled examples"
    ]
    for name, metrics in report.criteria.items():
        shown = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)


def save_report(report: CalibrationReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    return path
