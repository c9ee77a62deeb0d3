"""``/deadletter``: samples whose scoring failed on every try, with the error; requeue them."""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...api.security import check_run
from ...settings import Settings
from ...stream import Keys, Queue, read_deadletters
from ..auth import viewer
from ..templating import Urls, render

router = APIRouter()
SHOWN = 500


def _visible(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        try:
            check_run(request, viewer(request), str(item["payload"].get("run")), write=False)
        except HTTPException:
            continue  # another project's sample
        out.append(item)
    return out


@router.get("/deadletter", response_class=HTMLResponse)
def deadletter_page(request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    client = redis.Redis.from_url(settings.redis_url)
    error: str | None = None
    try:
        items = _visible(request, read_deadletters(client, Keys(settings.stream_prefix), SHOWN))
    except redis.ConnectionError as e:
        items, error = [], f"Redis unreachable: {e}"
    finally:
        client.close()
    for item in items:
        item["first_line"] = (item["error"].splitlines() or [""])[0]
    return render(request, "deadletter.html", {"title": "Dead letters", "items": items, "error": error})


@router.post("/deadletter/{entry_id}/requeue")
def requeue(request: Request, entry_id: Annotated[str, Path(pattern=r"^\d+-\d+$")]) -> Response:
    settings: Settings = request.app.state.settings
    queue = Queue(settings.redis_url, prefix=settings.stream_prefix, group=settings.consumer_group)
    try:
        found = [d for d in queue.deadletters(100_000) if d["id"] == entry_id]
        if not found:
            raise HTTPException(404, f"no dead letter {entry_id}")
        check_run(request, viewer(request), str(found[0]["payload"].get("run")), write=True)
        queue.requeue_deadletters([entry_id])
    finally:
        queue.close()
    return RedirectResponse(Urls(request.scope.get("root_path", "")).deadletter(), status_code=303)
