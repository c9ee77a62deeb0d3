"""``/rubrics``: the rubric files the judge can load, validated, with calibration results.

Rubrics are looked up where the judge looks: the configured rubric directory
(``rubric_dir`` / ``rubric_dirs`` settings when the judge defines them, else
``./rubrics``) and the rubrics shipped in the package. Each file is validated with the
judge's loader (``judgeserve.judge.rubric.load_rubric``) when it is installed; an invalid
file is listed with its error.

Calibration results are the reports ``judgeserve judge calibrate`` writes
(``*.calibration.json``, a ``CalibrationReport``): every such file in the rubric
directories, or in a ``calibration/`` folder inside them, is matched to its rubric by the
report's ``rubric`` field; the newest is shown, marked when it measured another version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ...exceptions import JudgeserveError
from ...settings import Settings
from ..templating import render

router = APIRouter()
MAX_FILES = 200
MAX_TEXT = 20_000


def rubric_dirs(settings: Settings) -> list[Path]:
    """Directories to list, configured first, without duplicates (``rubrics`` may be a link)."""
    configured: Any = getattr(settings, "rubric_dirs", None) or getattr(settings, "rubric_dir", None)
    if configured is None:
        configured = ["rubrics"]
    elif isinstance(configured, (str, Path)):
        configured = [configured]
    dirs = [Path(d) for d in configured]
    try:
        from ...judge.rubric import BUILTIN_RUBRIC_DIR

        dirs.append(BUILTIN_RUBRIC_DIR)
    except ImportError:
        pass
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _files(dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return out[:MAX_FILES]


def calibrations(dirs: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """The newest calibration report per rubric name found in ``dirs`` (and ``calibration/``)."""
    found: dict[str, dict[str, Any]] = {}
    files: list[Path] = []
    for d in dirs:
        for folder in (d, d / "calibration"):
            if folder.is_dir():
                files += sorted(folder.glob("*.calibration.json"))
    for path in files[:MAX_FILES]:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or not isinstance(report.get("rubric"), str):
            continue
        report["file"] = str(path)
        current = found.get(report["rubric"])
        if current is None or str(report.get("created", "")) > str(current.get("created", "")):
            found[report["rubric"]] = report
    return found


def describe(path: Path, reports: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the page shows of one rubric file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        text = ""
        error: str | None = f"cannot read: {e.strerror or e}"
    else:
        error = None
    entry: dict[str, Any] = {
        "path": str(path),
        "file": path.name,
        "text": text[:MAX_TEXT],
        "rubric": None,
        "error": error,
        "calibration": None,
    }
    if error is not None:
        return entry
    try:
        from ...judge.rubric import parse_rubric
    except ImportError:
        return entry  # the judge is not installed: the file is listed as text
    try:
        rubric = parse_rubric(text, source=path.name)
    except JudgeserveError as e:
        entry["error"] = str(e)
        return entry
    try:
        entry["rubric"] = _summary(rubric)
    except (AttributeError, TypeError) as e:  # the judge's model changed shape: show the file
        entry["error"] = f"cannot summarise: {e}"
        return entry
    report = (reports or {}).get(entry["rubric"]["name"])
    if report is not None:
        criteria = report.get("criteria")
        entry["calibration"] = {
            "file": report["file"],
            "n": report.get("n"),
            "judge": f"{report.get('judge_backend', '?')}:{report.get('judge_model', '?')}",
            "created": report.get("created"),
            "version": report.get("rubric_version"),
            "stale": str(report.get("rubric_version")) != str(entry["rubric"]["version"]),
            "criteria": criteria if isinstance(criteria, dict) else {},
        }
    return entry


def _summary(rubric: Any) -> dict[str, Any]:
    return {
        "name": rubric.name,
        "version": rubric.version,
        "description": rubric.description,
        "mode": rubric.mode,
        "reference": rubric.reference,
        "judge": rubric.judge.backend + (f" · {rubric.judge.model}" if rubric.judge.model else ""),
        "sample_rate": rubric.sample_rate,
        "anchors": len(rubric.anchors),
        "criteria": [
            {
                "name": c.name,
                "description": c.description,
                "levels": sorted((c.scale or rubric.scale).levels.items())
                if (c.scale or rubric.scale) is not None
                else [("A / B / tie", "pairwise verdict: which answer is better")],
            }
            for c in rubric.criteria
        ],
    }


@router.get("/rubrics", response_class=HTMLResponse)
def rubrics_page(request: Request) -> HTMLResponse:
    dirs = rubric_dirs(request.app.state.settings)
    reports = calibrations(dirs)
    return render(
        request,
        "rubrics.html",
        {
            "title": "Rubrics",
            "dirs": [str(d) for d in dirs],
            "rubrics": [describe(p, reports) for p in _files(dirs)],
            "live_run": None,
            "live_since": None,
        },
    )
