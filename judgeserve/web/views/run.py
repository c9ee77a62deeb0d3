"""``/runs/{run}``: the best checkpoint, the headline chart, one chart per metric family and
unit next to the loss, alert markers, steps by page (the best and its band marked)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ... import read
from ...schema import RUN_NAME_PATTERN
from ..charts import chart_payload
from ..paging import PageParam, Pager
from ..templating import Urls, not_found, render
from .compare import page_quality

router = APIRouter()
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN)]
PER_PAGE = 50
ALERTS_SHOWN = 10
CHECKPOINTS_SHOWN = 20  # the newest submitted checkpoints (all: GET /v1/runs/{run}/checkpoints)
COST_STEPS_SHOWN = 10  # the newest steps' judge cost (all: GET /v1/runs/{run}/costs)


@router.get("/runs/{run}", response_class=HTMLResponse)
def run_page(request: Request, run: RunPath, page: PageParam = 1) -> HTMLResponse:
    pager = Pager.start(request, page, PER_PAGE)
    with read.connect(request.app.state.store) as conn:
        found = read.get_run(conn, run)
        if found is None:
            return not_found(request, f"No run named {run!r}.")
        steps = read.run_steps(conn, run, PER_PAGE, pager.offset)
        flagged = read.flagged_counts(conn, run, [s["step"] for s in steps])
        for s in steps:
            s["flagged"] = flagged.get(s["step"], 0)
        open_alerts = read.list_alerts(conn, run, "open", ALERTS_SHOWN, 0)
        n_open = read.count_alerts(conn, run, "open")
        jobs = read.list_checkpoint_jobs(conn, run, CHECKPOINTS_SHOWN, 0)
        n_jobs = read.count_checkpoint_jobs(conn, run) if jobs else 0
        stamp = read.live_stamp(conn, run)
        nonfinite = read.nonfinite_metrics(conn, run)
        cost = read.judge_cost(conn, run, limit=COST_STEPS_SHOWN)
        # Which scorers ran at the newest step, and why the others did not.
        newest = steps[:1] if pager.offset == 0 else read.run_steps(conn, run, 1, 0)
        status_step = newest[0]["step"] if newest else None
        status = read.step_scorer_status(conn, run, newest[0]["step"]) if newest else []
        summary = read.run_summary_values(conn, run)
        quality, quality_error = page_quality(request)
        best = read.best(conn, run, quality) if quality is not None else None
    verdicts = _verdicts(best)
    for s in steps:
        s["verdict"] = verdicts.get(s["step"])
    settings = request.app.state.settings
    judge = request.app.state.rubrics.active(
        found.get("rubrics"), settings.judge_rubrics, settings.judge_url
    )
    return render(
        request,
        "run.html",
        {
            "title": run,
            "run": found,
            "steps": steps,
            "pager": pager.done(len(steps)),
            "open_alerts": open_alerts,
            "n_open": n_open,
            "nonfinite": nonfinite,
            "judge": judge,
            "summary": summary,
            "jobs": jobs,
            "n_jobs": n_jobs,
            "scorer_status": status,
            "status_step": status_step,
            "live_run": run,
            "live_since": stamp,
            "cost": cost,
            "best": best,
            "quality_error": quality_error,
        },
    )


def _verdicts(best: dict[str, Any] | None) -> dict[int, str]:
    """Each checkpoint's place in the ranking, as the steps table tags it."""
    out: dict[int, str] = {}
    for c in (best or {}).get("checkpoints", []):
        if c["best"]:
            out[c["step"]] = "best"
        elif c["indistinguishable"]:
            out[c["step"]] = "band"
        elif c["disqualified"]:
            out[c["step"]] = "disqualified"
    return out


@router.get("/runs/{run}/charts.json")
def run_charts(
    request: Request, run: RunPath, from_step: Annotated[int, Query(ge=0, le=2**53)] = 0
) -> Response:
    """The run page's chart data (``charts.chart_payload``); ``from_step`` for live updates."""
    with read.connect(request.app.state.store) as conn:
        if read.get_run(conn, run) is None:
            return JSONResponse({"detail": f"run {run!r} not found"}, status_code=404)
        quality, _ = page_quality(request)
        payload: dict[str, Any] = chart_payload(
            read.metric_series(conn, run, from_step), read.alert_markers(conn, run),
            read.ranking(conn, run, quality) if quality is not None else None,
            read.judge_series(conn, run, from_step),
        )
    payload["run"] = run
    payload["from_step"] = from_step
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


@router.get("/runs/{run}/goto")
def goto_step(
    request: Request, run: RunPath, step: Annotated[int, Query(ge=0, le=2**53)]
) -> Response:
    """The step selector: the step page of the nearest step that has samples."""
    nearest = read.nearest_step(request.app.state.store, run, step)
    if nearest is None:
        return not_found(request, f"Run {run!r} has no samples.")
    urls = Urls(request.scope.get("root_path", ""))
    return RedirectResponse(urls.step(run, nearest), status_code=303)
