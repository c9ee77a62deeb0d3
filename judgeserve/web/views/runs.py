"""``/``: every run, newest first, with its open alerts and a sparkline of its headline metric."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ... import read
from ..charts import sparkline
from ..login import viewer_project
from ..paging import PageParam, Pager
from ..templating import render

router = APIRouter()
PER_PAGE = 50
SPARK_POINTS = 40


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, page: PageParam = 1) -> HTMLResponse:
    pager = Pager.start(request, page, PER_PAGE)
    project = viewer_project(request)
    with read.connect(request.app.state.store) as conn:
        total = read.count_runs(conn, project)
        items = read.list_runs(conn, PER_PAGE, pager.offset, project)
        open_alerts = read.open_alerts_by_run(conn, [r["name"] for r in items])
        for r in items:
            metric, values = read.headline_series(conn, r["name"], SPARK_POINTS)
            r["headline"] = metric
            r["spark"] = sparkline(values)
            r["latest"] = values[-1] if values else None
            r["alerts"] = open_alerts.get(r["name"], {"count": 0, "worst": None})
        stamp = read.live_stamp(conn, None, project)
    return render(
        request,
        "runs.html",
        {
            "title": "Runs",
            "runs": items,
            "pager": pager.done(len(items), total),
            "live_run": None,
            "live_since": stamp,
        },
    )
