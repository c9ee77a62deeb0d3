"""``/deadletter``: what judgeserve gave up on, with why, and a way to requeue it: samples
whose scoring failed on every try, and checkpoint jobs that could not be generated (a
folder deleted by ``save_total_limit``, an unusable adapter, a generator down too long)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ... import read
from ...auth import check_run, may_read
from ...exceptions import QueueError, StoreError
from ...store import Store
from ...stream import Queue, StreamName
from ..login import viewer
from ..templating import Urls, render

log = logging.getLogger(__name__)
router = APIRouter()
SHOWN = 500
EntryId = Annotated[str, Path(pattern=r"^\d+-\d+$")]


@router.get("/deadletter", response_class=HTMLResponse)
def deadletter_page(request: Request) -> HTMLResponse:
    who = viewer(request)
    error: str | None = None

    def visible(run: str) -> bool:
        return may_read(request, who, run)

    try:
        items = read.deadletters(request.app.state.queue, SHOWN, visible)
        jobs = read.deadletters(request.app.state.queue, SHOWN, visible, stream="checkpoints")
    except QueueError as e:
        items, jobs, error = [], [], str(e)
    for item in items + jobs:
        item["first_line"] = (item["error"].splitlines() or [""])[0]
    return render(
        request,
        "deadletter.html",
        {"title": "Dead letters", "items": items, "jobs": jobs, "error": error},
    )


def _requeue(request: Request, entry_id: str, stream: StreamName) -> dict[str, Any]:
    queue: Queue = request.app.state.queue
    found = queue.deadletter(entry_id, stream=stream)
    if found is None:
        raise HTTPException(404, f"no dead letter {entry_id}")
    check_run(request, viewer(request), str(found["payload"].get("run")), write=True)
    queue.requeue_deadletters([entry_id], stream=stream)
    return dict(found["payload"])


@router.post("/deadletter/{entry_id}/requeue")
def requeue(request: Request, entry_id: EntryId) -> Response:
    _requeue(request, entry_id, "samples")
    return RedirectResponse(Urls(request.scope.get("root_path", "")).deadletter(), status_code=303)


@router.post("/deadletter/checkpoints/{entry_id}/requeue")
def requeue_job(request: Request, entry_id: EntryId) -> Response:
    job = _requeue(request, entry_id, "checkpoints")
    store: Store = request.app.state.store
    run, step = job.get("run"), job.get("step")
    if isinstance(run, str) and isinstance(step, int):  # an invalid job has no row
        try:  # the run page shows it waiting again, not failed
            store.update_checkpoint_job(run, step, "queued", reason=None)
        except StoreError as e:  # requeued all the same; the worker writes the next state
            log.warning("state of requeued job %s@%d not saved: %s", run, step, e)
    return RedirectResponse(Urls(request.scope.get("root_path", "")).deadletter(), status_code=303)
