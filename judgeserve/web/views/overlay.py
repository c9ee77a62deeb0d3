"""``/compare?runs=a,b``: two or more runs' metrics drawn on one axis, one chart per metric.

Runs are aligned by step, or by tokens seen (``x=tokens``) when the trainer logged them
(``train.num_input_tokens_seen``, which the Hugging Face Trainer logs with
``include_num_input_tokens_seen``): a run's checkpoint at step s is drawn at the tokens
seen by then (interpolated between the trainer's logs). The chart data is
``/compare/charts.json`` with the same parameters (``charts.overlay_payload``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ... import read
from ...auth import check_run
from ...schema import RUN_NAME_PATTERN
from ..charts import overlay_payload
from ..login import viewer
from ..templating import render

__all__ = ["router", "MAX_RUNS"]

router = APIRouter()
MAX_RUNS = 8
Runs = Annotated[str, Query(max_length=MAX_RUNS * 130, description="Run names, comma-separated.")]
Axis = Annotated[str, Query(pattern="^(step|tokens)$")]


def _runs(request: Request, runs: str) -> tuple[list[str], str | None]:
    """The named runs the viewer may see, or what is wrong with the list."""
    names = [n.strip() for n in runs.split(",") if n.strip()]
    if not names:
        return [], "Name two or more runs: /compare?runs=a,b"
    if len(names) > MAX_RUNS:
        return [], f"At most {MAX_RUNS} runs at once."
    for name in names:
        if not re.fullmatch(RUN_NAME_PATTERN, name):
            return [], f"{name!r} is not a run name."
        try:
            check_run(request, viewer(request), name, write=False)
        except HTTPException as e:
            return [], f"{name}: {e.detail}"
    return list(dict.fromkeys(names)), None


def _series(request: Request, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    missing = []
    series = {}
    with read.connect(request.app.state.store) as conn:
        for name in names:
            if read.get_run(conn, name) is None:
                missing.append(name)
            else:
                series[name] = read.metric_series(conn, name)
    return series, missing


@router.get("/compare", response_class=HTMLResponse)
def overlay_page(request: Request, runs: Runs = "", x: Axis = "step") -> HTMLResponse:
    names, error = _runs(request, runs)
    missing: list[str] = []
    if names:
        _, missing = _series(request, names)
        if missing:
            error = "No run named " + ", ".join(repr(m) for m in missing) + "."
    urls_runs = ",".join(names)
    return render(
        request, "overlay.html",
        {"title": "compare runs", "names": names, "runs": runs, "x": x, "error": error,
         "runs_param": urls_runs},
        status_code=404 if missing else (422 if error else 200),
    )


@router.get("/compare/charts.json")
def overlay_charts(request: Request, runs: Runs = "", x: Axis = "step") -> Response:
    names, error = _runs(request, runs)
    if error:
        return JSONResponse({"detail": error}, status_code=422)
    series, missing = _series(request, names)
    if missing:
        return JSONResponse({"detail": f"run {missing[0]!r} not found"}, status_code=404)
    return JSONResponse(overlay_payload(series, x), headers={"Cache-Control": "no-store"})
