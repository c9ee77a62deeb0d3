"""``/deadletter``: samples whose scoring failed on every try, with the error; requeue them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ... import read
from ...auth import check_run, may_read
from ...exceptions import QueueError
from ...stream import Queue
from ..login import viewer
from ..templating import Urls, render

router = APIRouter()
SHOWN = 500


@router.get("/deadletter", response_class=HTMLResponse)
def deadletter_page(request: Request) -> HTMLResponse:
    who = viewer(request)
    error: str | None = None
    try:
        items = read.deadletters(
            request.app.state.queue, SHOWN, lambda run: may_read(request, who, run)
        )
    except QueueError as e:
        items, error = [], str(e)
    for item in items:
        item["first_line"] = (item["error"].splitlines() or [""])[0]
    return render(request, "deadletter.html", {"title": "Dead letters", "items": items, "error": error})


@router.post("/deadletter/{entry_id}/requeue")
def requeue(request: Request, entry_id: Annotated[str, Path(pattern=r"^\d+-\d+$")]) -> Response:
    queue: Queue = request.app.state.queue
    found = queue.deadletter(entry_id)
    if found is None:
        raise HTTPException(404, f"no dead letter {entry_id}")
    check_run(request, viewer(request), str(found["payload"].get("run")), write=True)
    queue.requeue_deadletters([entry_id])
    return RedirectResponse(Urls(request.scope.get("root_path", "")).deadletter(), status_code=303)
