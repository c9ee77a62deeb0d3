"""``/rubrics``: the rubric files the judge can load, validated, with calibration results.

Rubrics are looked up where the judge looks: the configured rubric directory
(``rubric_dir`` / ``rubric_dirs`` settings when the judge defines them, else
``./rubrics``) and the rubrics shipped in the package. Each file is validated with the
judge's loader (``judgeserve.judge.rubric.load_rubric``) when it is installed; an invalid
file is listed with its error.

The raw YAML is shown with its secrets redacted (:func:`redact`): values of keys named like
credentials (``api_key``, ``token``, ``password``, an ``Authorization`` header...), wherever
and however they are written, and passwords inside URLs. Keys belong in the environment
(``JUDGESERVE_JUDGE_API_KEY``), not in rubric files, but a file that has one must not
show it to every viewer.

Each rubric links to its own page (:mod:`.rubric`: labels, agreement with people per judge
version, calibration reports) and shows how many labels it has and its newest calibration
report: the reports ``judgeserve calibrate`` keeps in the store, marked when they measured
another version of the rubric than the file's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ... import read
from ...exceptions import JudgeserveError
from ...settings import Settings
from ..login import viewer_project
from ..templating import render

router = APIRouter()
MAX_FILES = 200
MAX_TEXT = 20_000
REDACTED = "<redacted>"
# A key holding a credential: api_key, apikey, access_token, client_secret, password,
# Authorization... but not max_tokens (a count).
_SECRET_KEY = r"(?:[\w.-]*[_.-])?(?:api_?key|key|token|secret|password|passwd|credentials?|authorization|bearer|cookie)"
_SECRET_LINE = re.compile(
    rf"""^(?P<head>\s*(?:-\s+)?["']?{_SECRET_KEY}["']?\s*:[ \t]*)(?P<value>[^\s#].*?)?[ \t]*(?:#.*)?$""",
    re.IGNORECASE | re.MULTILINE,
)
_SECRET_FLOW = re.compile(rf"""(?P<head>[{{,]\s*["']?{_SECRET_KEY}["']?\s*:\s*)(?P<value>[^,}}\n]+)""", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.IGNORECASE)
_SECRET_NAME = re.compile(rf"{_SECRET_KEY}", re.IGNORECASE)


def _secret_values(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and _SECRET_NAME.fullmatch(key):
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    yield str(value)
                elif isinstance(value, (dict, list)):
                    yield from _leaves(value)
            else:
                yield from _secret_values(value)
    elif isinstance(data, list):
        for item in data:
            yield from _secret_values(item)


def _leaves(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _leaves(value)
    elif isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    elif isinstance(data, (str, int, float)) and not isinstance(data, bool):
        yield str(data)


def redact(text: str) -> str:
    """``text`` (rubric YAML) with every credential replaced by ``<redacted>``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    # Values found by parsing cover every way YAML can write them (block scalars, quotes,
    # anchors); the patterns cover files that do not parse.
    found = {ln.strip() for value in _secret_values(data) for ln in value.splitlines()}
    for value in sorted(found, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    text = _SECRET_LINE.sub(
        lambda m: m["head"] + REDACTED if m["value"] and m["value"][0] not in "|>" else m[0], text
    )
    text = _SECRET_FLOW.sub(lambda m: m["head"] + REDACTED, text)
    return _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED + "@", text)


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
        "text": redact(text)[:MAX_TEXT],
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
        entry["calibration"] = calibration_summary(report, entry["rubric"]["version"])
    return entry


def calibration_summary(report: dict[str, Any], version: Any) -> dict[str, Any]:
    """What a page shows of a stored ``CalibrationReport``; ``stale`` when it measured
    another rubric version than ``version``."""
    criteria = report.get("criteria")
    return {
        "source": report.get("source") or report.get("labels_file") or "",
        "n": report.get("n"),
        "judge": f"{report.get('judge_backend', '?')}:{report.get('judge_model', '?')}",
        "created": report.get("created"),
        "version": report.get("rubric_version"),
        "stale": str(report.get("rubric_version")) != str(version),
        "criteria": criteria if isinstance(criteria, dict) else {},
    }


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


def find(settings: Settings, name: str) -> Any:
    """The rubric named ``name`` where the judge finds it (a ``Rubric``), or None when there
    is none or it does not load; the judge's loader is needed."""
    try:
        from ...judge.rubric import rubric_by_name
    except ImportError:
        return None
    try:
        return rubric_by_name(name, rubric_dirs(settings))
    except JudgeserveError:
        return None


@router.get("/rubrics", response_class=HTMLResponse)
def rubrics_page(request: Request) -> HTMLResponse:
    dirs = rubric_dirs(request.app.state.settings)
    with read.connect(request.app.state.store) as conn:
        reports = read.latest_calibrations(conn)
        counts = read.label_counts(conn, viewer_project(request))
    return render(
        request,
        "rubrics.html",
        {
            "title": "Rubrics",
            "dirs": [str(d) for d in dirs],
            "rubrics": [describe(p, reports) for p in _files(dirs)],
            "counts": counts,
        },
    )
