"""The /v1 routes of checkpoint mode: a run's probe set, and checkpoints to generate from.

``PUT /v1/runs/{run}/probes`` stores the probe set (probes and decoding settings),
versioned by its content hash; ``POST /v1/runs/{run}/checkpoints`` queues a job on the
checkpoint stream (``<prefix>:checkpoints``) for the generation workers, which complete
the probe set with that checkpoint and append the completions to the sample stream.
The API checks the request, not the folder: the generator may see another filesystem,
and a folder gone by then is the job's error (dead-lettered with the reason).
"""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from .. import read
from ..auth import ReadRun, WriteRun
from ..exceptions import MissingExtraError, require
from ..probes import ProbeSet
from ..schema import CheckpointIn
from ..store import Store

__all__ = ["router"]

router = APIRouter(tags=["checkpoints"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Version = Annotated[str | None, Query(pattern=r"^[0-9a-f]{16}$")]
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _invalid(loc: list[str | int], msg: str) -> RequestValidationError:
    # The same 422 shape as a body that fails its schema, naming the field.
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


@router.put("/v1/runs/{run}/probes")
def set_probes(run: WriteRun, body: ProbeSet, request: Request) -> dict[str, Any]:
    """Store the run's probe set; it becomes the one its next checkpoints are generated
    with. The same content is the same version (re-sending is harmless)."""
    version = body.version()
    content = body.model_dump(mode="json")
    content["completions"] = body.completions
    _store(request).save_probe_set(run, version, content)
    return {
        "run": run,
        "version": version,
        "probes": len(body.probes),
        "completions": body.completions,
    }


@router.get("/v1/runs/{run}/probes")
def get_probes(run: ReadRun, request: Request, version: Version = None) -> dict[str, Any]:
    """The run's current probe set, or the one of ``version``."""
    found = read.probe_set(_store(request), run, version)
    if found is None:
        what = f"version {version} of the probe set" if version else "a probe set"
        raise HTTPException(404, f"run {run!r} has no {what}: PUT /v1/runs/{run}/probes first")
    return found


def _check_url(path: str) -> None:
    """A URL needs fsspec here and a scheme it knows (the generator fetches it)."""
    match = _URL.match(path)
    if match is None or match.group(1).lower() == "file":
        return
    try:
        fsspec: Any = require("fsspec", "fsspec")
    except MissingExtraError as e:
        raise _invalid(["body", "path"], f"checkpoint URLs need fsspec on the server: {e}") from e
    scheme = match.group(1).lower()
    if scheme not in fsspec.available_protocols():
        raise _invalid(["body", "path"], f"no fsspec filesystem for {scheme}:// URLs")


@router.post("/v1/runs/{run}/checkpoints", status_code=202)
async def submit_checkpoint(run: WriteRun, body: CheckpointIn, request: Request) -> dict[str, Any]:
    """Queue a generation job for a saved checkpoint: the run's probe set (current, or
    ``probe_set``) is completed with it and scored like any samples."""
    _check_url(body.path)
    # A job adds a probe set's worth of samples: not while scoring is too far behind (429).
    await request.app.state.backlog.check()
    store = _store(request)
    # The database calls block: off the event loop (the stream append is async).
    found = await run_in_threadpool(read.probe_set, store, run, body.probe_set)
    if found is None:
        if body.probe_set:
            raise _invalid(["body", "probe_set"], f"run {run!r} has no probe set {body.probe_set}")
        raise HTTPException(
            409, f"run {run!r} has no probe set: set one first (client.set_probes, PUT /probes)"
        )
    job = {
        "run": run,
        "step": body.step,
        "path": body.path,
        "kind": body.kind,
        "base_model": body.base_model,
        "probe_set": found["version"],
        "submitted": time.time(),
    }
    # The row first: if the stream refuses (503), the client sends again and nothing
    # was queued twice; a row left "queued" by a failed append is re-queued then.
    await run_in_threadpool(store.queue_checkpoint, run, body.step, job)
    entry = await request.app.state.producer.add_job(json.dumps(job))
    return {"run": run, "step": body.step, "probe_set": found["version"], "job": entry}


@router.get("/v1/runs/{run}/checkpoints")
def list_checkpoints(
    run: ReadRun, request: Request, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Submitted checkpoints, newest first, with their job state (queued, generating,
    retrying, generated, scored, failed with its reason) and which generator made the
    samples."""
    with read.connect(_store(request)) as conn:
        if read.get_run(conn, run) is None:
            raise HTTPException(404, f"run {run!r} not found")
        return {
            "run": run,
            "total": read.count_checkpoint_jobs(conn, run),
            "checkpoints": read.list_checkpoint_jobs(conn, run, limit, offset),
        }


@router.get("/v1/runs/{run}/checkpoints/{step}")
def get_checkpoint(
    run: ReadRun, step: Annotated[int, Path(ge=0, le=2**53)], request: Request
) -> dict[str, Any]:
    found = read.checkpoint_job(_store(request), run, step)
    if found is None:
        raise HTTPException(404, f"no checkpoint submitted at step {step} of run {run!r}")
    return found
