"""Human labels: what one is, the JSON Lines they travel in, and calibration's view of them.

A label is one person's verdict on one item: a sample judged on one criterion of a rubric.
For single rubrics it is a level of the criterion's scale; for pairwise rubrics the
candidate's outcome against the baseline answer it was shown with (``win``, ``loss``,
``tie``; stored as 1, 0, 0.5 like the judge's own pairwise scores). Labels are made on the
page ``/rubrics/{rubric}/label`` (:mod:`judgeserve.web.views.label`, the queue in
:mod:`judgeserve.label_queue`), kept in the store's ``labels`` table (one per labeller and
item: a new label replaces the labeller's old one), and travel as JSON Lines
(:class:`LabelLine`) through ``judgeserve labels export|import``.

A label records the project of the token that made it (None with auth off) and an
optional labeller name. Labels are about samples, not about a judge: the same labels
measure every judge version (:mod:`judgeserve.agreement`), re-score a rubric's labelled
items when its judge changes, and train a judge on them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from . import read
from .exceptions import ConfigError
from .schema import RUN_NAME_PATTERN, SampleId
from .store import Store

if TYPE_CHECKING:
    from .judge.calibrate import LabelRecord
    from .judge.rubric import Rubric

__all__ = [
    "PAIR_VALUES",
    "Labeller",
    "LabelLine",
    "value_of",
    "label_of",
    "check_label",
    "export_labels",
    "import_labels",
    "stored_records",
]

PAIR_VALUES: dict[str, float] = {"win": 1.0, "tie": 0.5, "loss": 0.0}
PairOutcome = Literal["win", "loss", "tie"]
# A name people type on the page: printable, no control characters, at most 64.
Labeller = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,64}$", strip_whitespace=True)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class LabelLine(BaseModel):
    """One line of ``judgeserve labels export`` (and of ``import``)."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(pattern=RUN_NAME_PATTERN, description="The run of the labelled sample.")
    sample_id: SampleId = Field(description="The labelled sample's id in its run.")
    rubric: Identifier = Field(description="The rubric the label answers.")
    criterion: Identifier = Field(description="The rubric's criterion the label answers.")
    label: int | PairOutcome = Field(
        description="A level of the criterion's scale, or for pairwise rubrics the sample's "
        "outcome against the baseline: win, loss or tie."
    )
    labeller: Labeller = Field("", description="Who labelled ('' when no name was given).")
    project: str | None = Field(
        None, description="The project of the token that labelled; on import, the run's owner."
    )
    baseline_id: SampleId | None = Field(
        None, description="Pairwise: the sample the labelled one was compared with."
    )
    rubric_version: str | None = Field(None, description="The rubric version the labeller saw.")
    created: datetime | None = Field(None, description="When the label was made.")
    prompt: str | None = Field(None, description="Exported for reading; ignored on import.")
    completion: str | None = Field(None, description="Exported for reading; ignored on import.")
    reference: str | None = Field(None, description="Exported for reading; ignored on import.")
    baseline: str | None = Field(None, description="Exported for reading; ignored on import.")


def value_of(label: int | str, mode: str) -> float:
    """The stored value of a label: the level, or the pairwise outcome as 1 / 0.5 / 0."""
    if mode == "pairwise":
        return PAIR_VALUES[str(label)]
    return float(int(label))


def label_of(value: float, mode: str) -> int | str:
    """The label a stored value stands for (the inverse of :func:`value_of`)."""
    if mode == "pairwise":
        return min(PAIR_VALUES, key=lambda k: abs(PAIR_VALUES[k] - value))
    return int(value)


def check_label(rubric: Rubric, criterion: str, label: int | str) -> str | None:
    """Why a label does not fit the rubric, or None when it does."""
    names = [c.name for c in rubric.criteria]
    if criterion not in names:
        return f"rubric {rubric.name!r} has no criterion {criterion!r} (it has {names})"
    if rubric.mode == "pairwise":
        if label not in PAIR_VALUES:
            return f"pairwise rubric {rubric.name!r}: label must be win, loss or tie, not {label!r}"
        return None
    levels = sorted(rubric.scale_of(criterion).levels)
    if isinstance(label, bool) or not isinstance(label, int) or label not in levels:
        return f"criterion {criterion!r}: label must be one of the levels {levels}, not {label!r}"
    return None


# -- export / import --------------------------------------------------------------------------


def export_labels(store: Store, out: IO[str], rubric: str | None = None) -> int:
    """Write every label (of one rubric, or all) as JSON Lines, oldest first, with the texts
    it was made on; returns how many."""
    n = 0
    for row in read.label_export_rows(store, rubric):
        # Pairwise labels, and only they, name the baseline they were compared with.
        mode = "pairwise" if row["baseline_id"] is not None else "single"
        line = LabelLine(
            run=row["run"],
            sample_id=row["sample_id"],
            rubric=row["rubric"],
            criterion=row["criterion"],
            label=label_of(row["value"], mode),
            labeller=row["labeller"],
            project=row["project"],
            baseline_id=row["baseline_id"],
            rubric_version=row["rubric_version"],
            created=row["created"],
            prompt=row["prompt"],
            completion=row["completion"],
            reference=row["reference"],
            baseline=row["baseline"],
        )
        out.write(line.model_dump_json(exclude_none=True) + "\n")
        n += 1
    return n


def _line_error(path: Path, number: int, e: ValidationError) -> str:
    first = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(line)"
    return f"{path}:{number}: {where}: {first['msg']}"


def import_labels(
    store: Store, path: str | Path, find_rubric: Callable[[str], Rubric], max_errors: int = 20
) -> int:
    """Store the labels of a JSON Lines file (as written by :func:`export_labels`); returns
    how many. All or nothing: every line is checked first (fields, the rubric and its scale,
    the sample and baseline exist), and any error raises :class:`ConfigError` naming file
    and line, with nothing stored. A label's project becomes its run's owner."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read labels: {e}") from e
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    rubrics: dict[str, Rubric | str] = {}
    owners: dict[str, dict[str, Any] | None] = {}
    for number, text in enumerate(lines, 1):
        if len(errors) >= max_errors:
            break
        if not text.strip():
            continue
        try:
            line = LabelLine.model_validate_json(text)
        except ValidationError as e:
            errors.append(_line_error(path, number, e))
            continue
        if line.rubric not in rubrics:
            try:
                rubrics[line.rubric] = find_rubric(line.rubric)
            except ConfigError as e:
                rubrics[line.rubric] = str(e)
        rubric = rubrics[line.rubric]
        if isinstance(rubric, str):
            errors.append(f"{path}:{number}: rubric: {rubric}")
            continue
        problem = check_label(rubric, line.criterion, line.label)
        if problem is None:
            problem = _missing_sample(store, line, rubric.mode, owners)
        if problem is not None:
            errors.append(f"{path}:{number}: {problem}")
            continue
        owner = owners[line.run]
        rows.append(
            {
                "run": line.run,
                "sample_id": line.sample_id,
                "rubric": line.rubric,
                "criterion": line.criterion,
                "value": value_of(line.label, rubric.mode),
                "baseline_id": line.baseline_id,
                "labeller": line.labeller,
                "project": owner["project"] if owner else None,
                "rubric_version": line.rubric_version,
                "details": {"imported_from": path.name},
                **({"created": line.created} if line.created else {}),
            }
        )
    if errors:
        raise ConfigError("labels not imported (nothing was stored):\n" + "\n".join(errors))
    if not rows:
        raise ConfigError(f"{path}: no labels")
    store.save_labels(rows)
    return len(rows)


def _missing_sample(
    store: Store, line: LabelLine, mode: str, owners: dict[str, dict[str, Any] | None]
) -> str | None:
    if line.run not in owners:
        owners[line.run] = read.get_run(store, line.run)
    if owners[line.run] is None:
        return f"run: no run {line.run!r} in this store"
    if mode == "pairwise" and line.baseline_id is None:
        return "baseline_id: a pairwise label needs the sample it was compared with"
    for field, sid in (("sample_id", line.sample_id), ("baseline_id", line.baseline_id)):
        if sid is not None and read.get_sample(store, line.run, sid) is None:
            return f"{field}: no sample {sid!r} in run {line.run!r}"
    return None


# -- calibration --------------------------------------------------------------------------------


def stored_records(store: Store, rubric: Rubric) -> list[LabelRecord]:
    """The rubric's stored labels as calibration records: one per sample (and baseline),
    each criterion's first label (the oldest, when several people labelled it)."""
    from .judge.calibrate import LabelRecord

    items: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    names = {c.name for c in rubric.criteria}
    for row in read.label_export_rows(store, rubric.name):
        if row["criterion"] not in names or row["completion"] is None:
            continue  # a criterion since removed, or a sample since deleted
        if rubric.mode == "pairwise" and row["baseline"] is None:
            continue
        key = (row["run"], row["sample_id"], row["baseline_id"])
        item = items.setdefault(key, {"row": row, "label": {}})
        item["label"].setdefault(row["criterion"], label_of(row["value"], rubric.mode))
    return [
        LabelRecord(
            prompt=item["row"]["prompt"],
            completion=item["row"]["completion"],
            reference=item["row"]["reference"],
            baseline=item["row"]["baseline"],
            label=item["label"],
        )
        for item in items.values()
    ]

