"""Live updates: ``GET /live`` is a server-sent event stream of "something changed" events.

Each open page holds one stream, for one run (``?run=``) or for all runs. The stream
polls a stamp every ``POLL_S`` seconds — the run's (or any run's) last update, the
newest alert id and the number of open alerts, three indexed lookups — and when it
changes sends:

* ``event: step``   data ``{"run", "last_step"}`` (or ``{"runs": [...]}``): new samples,
  scores or metrics;
* ``event: alert``  data ``{"alerts": [{"id", "run", "step", "rule", "severity", "message"}]}``:
  new alerts; ``event: alerts`` when only alert states changed (a resolve).

The page (``static/live.js``) then re-reads itself and swaps its ``data-live`` regions;
the run page also re-reads its chart data. Each event's ``id`` is the stamp, so a
reconnecting browser (``Last-Event-ID``) or a page that passes the stamp it was rendered
at (``?since=``) misses nothing between render and connect. A stream ends after
``MAX_STREAM_S`` and the browser reconnects: no connection outlives a server shutdown by
long.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import read
from ..schema import RUN_NAME_PATTERN
from ..store import Store
from .login import viewer_project

__all__ = ["router", "POLL_S", "MAX_STREAM_S", "changes"]

router = APIRouter()
POLL_S = 1.0
MAX_STREAM_S = 30.0
HEARTBEAT_S = 15.0


def _parts(stamp: str) -> tuple[str, int, int]:
    updated, _, rest = stamp.partition("|")
    last_alert, _, open_alerts = rest.partition("|")
    try:
        return updated, int(last_alert or 0), int(open_alerts or 0)
    except ValueError:
        return updated, 0, 0


def changes(before: str, after: str) -> list[str]:
    """Which event kinds a change of stamp calls for: ``step``, ``alert``, ``alerts``."""
    b, a = _parts(before), _parts(after)
    out = []
    if b[0] != a[0]:
        out.append("step")
    if a[1] > b[1]:
        out.append("alert")
    elif a[1:] != b[1:]:
        out.append("alerts")
    return out


def _payload(
    store: Store, run: str | None, kind: str, before: str, project: str | None
) -> dict[str, Any]:
    with read.connect(store) as conn:
        if kind == "alert":
            return {"alerts": read.alerts_after(conn, run, _parts(before)[1], project=project)}
        if kind == "step":
            if run is not None:
                found = read.get_run(conn, run)
                return {"run": run, "last_step": found["last_step"] if found else None}
            return {"runs": [{"run": r["name"], "last_step": r["last_step"]}
                             for r in read.list_runs(conn, 5, 0, project)]}
    return {}


def _event(kind: str, stamp: str, data: dict[str, Any]) -> str:
    body = json.dumps(data, default=str, separators=(",", ":"))
    return f"event: {kind}\nid: {stamp}\ndata: {body}\n\n"


async def _stream(
    request: Request, store: Store, run: str | None, since: str | None, project: str | None
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    stamp = await run_in_threadpool(read.live_stamp, store, run, project)
    seen = since if since is not None else stamp
    yield _event("hello", seen, {"run": run})
    started = beat = time.monotonic()
    while time.monotonic() - started < MAX_STREAM_S:
        if stamp != seen:
            for kind in changes(seen, stamp):
                data = await run_in_threadpool(_payload, store, run, kind, seen, project)
                yield _event(kind, stamp, data)
            seen = stamp
            beat = time.monotonic()
        elif time.monotonic() - beat > HEARTBEAT_S:
            yield ": keep-alive\n\n"
            beat = time.monotonic()
        await asyncio.sleep(POLL_S)
        if await request.is_disconnected():
            return
        stamp = await run_in_threadpool(read.live_stamp, store, run, project)


@router.get("/live")
async def live(
    request: Request,
    run: Annotated[str | None, Query(pattern=RUN_NAME_PATTERN)] = None,
    since: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    """Server-sent events for one run (``?run=``) or all of them."""
    last = request.headers.get("last-event-id") or since
    if last is not None:
        last = last.replace("\r", "").replace("\n", "")[:200]
    return StreamingResponse(
        _stream(request, request.app.state.store, run, last, viewer_project(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
