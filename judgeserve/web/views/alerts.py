"""``/alerts``: open and resolved alerts with links to their evidence; resolve from the page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ... import read
from ...auth import check_run
from ...schema import RUN_NAME_PATTERN
from ...store import Store
from ..login import viewer, viewer_project
from ..paging import PageParam, Pager
from ..templating import Urls, render

router = APIRouter()
PER_PAGE = 50
EVIDENCE_LINKS = 20
State = Annotated[str, Query(pattern="^(open|resolved|all)$")]


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    state: State = "open",
    run: Annotated[str | None, Query(pattern=RUN_NAME_PATTERN)] = None,
    page: PageParam = 1,
) -> HTMLResponse:
    pager = Pager.start(request, page, PER_PAGE)
    which = None if state == "all" else state
    project = viewer_project(request)
    with read.connect(request.app.state.store) as conn:
        total = read.count_alerts(conn, run, which, project)
        found = read.list_alerts(conn, run, which, PER_PAGE, pager.offset, project)
        counts = {s: read.count_alerts(conn, run, s, project) for s in ("open", "resolved")}
        stamp = read.live_stamp(conn, run, project)
    items = [a.model_dump() for a in found]
    for a in items:
        evidence = a["evidence"]
        ids = evidence.get("sample_ids")
        ids = [str(i) for i in ids] if isinstance(ids, list) else []
        a["sample_ids"] = ids[:EVIDENCE_LINKS]
        a["more_samples"] = max(0, len(ids) - EVIDENCE_LINKS)
        a["other_evidence"] = {k: v for k, v in evidence.items() if k != "sample_ids"}
    return render(
        request,
        "alerts.html",
        {
            "title": "Alerts",
            "alerts": items,
            "state": state,
            "run_filter": run,
            "counts": counts,
            "pager": pager.done(len(items), total),
            "live_run": run,
            "live_since": stamp,
        },
    )


@router.post("/alerts/{alert_id}/resolve")
def resolve(
    request: Request,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    state: State = "open",
) -> Response:
    """Resolve from the page: a form post (redirects back to ``?state=``) or a fetch asking
    for JSON. The form carries nothing in its body, so no form parser is needed."""
    store: Store = request.app.state.store
    run = read.alert_run(store, alert_id)
    if run is not None:
        check_run(request, viewer(request), run, write=True)
    done = store.resolve_alert(alert_id)
    if "application/json" in request.headers.get("accept", ""):
        if not done:
            return JSONResponse({"detail": f"no open alert {alert_id}"}, status_code=404)
        return JSONResponse({"id": alert_id, "state": "resolved"})
    urls = Urls(request.scope.get("root_path", ""))
    return RedirectResponse(urls.alerts(state=state), status_code=303)
