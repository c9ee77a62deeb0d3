"""The /v1 routes: submit samples and metrics, read runs, steps, samples, metrics, alerts."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from .. import read
from ..auth import Caller, ReadRun, WriteRun, check_run, may_read
from ..exceptions import Backpressure
from ..schema import Alert, MetricsIn, SampleBatch
from ..store import Store
from ..stream import AsyncProducer

__all__ = ["router", "BacklogGauge"]

router = APIRouter()
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


class BacklogGauge:
    """Reads the stream length at most every 0.5 s, so the check costs nothing per request."""

    def __init__(self, producer: AsyncProducer, bound: int) -> None:
        self.producer = producer
        self.bound = bound
        self._value = 0
        self._at = 0.0

    async def check(self) -> None:
        now = time.monotonic()
        if now - self._at > 0.5:
            self._value = await self.producer.backlog()
            self._at = now
        if self._value >= self.bound:
            raise Backpressure(self._value, self.bound)

    def add(self, n: int) -> None:
        self._value += n


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("/healthz", tags=["ops"])
async def healthz(request: Request) -> dict[str, Any]:
    redis_ok = await request.app.state.producer.ping()
    if not redis_ok:
        raise HTTPException(503, "redis unreachable")
    return {"status": "ok", "redis": redis_ok}


@router.post("/v1/runs/{run}/samples", status_code=202, tags=["ingest"])
async def submit_samples(run: WriteRun, batch: SampleBatch, request: Request) -> dict[str, Any]:
    """Queue samples for scoring. Idempotent per sample id: re-sending is harmless."""
    gauge: BacklogGauge = request.app.state.backlog
    await gauge.check()
    head = {"run": run, "step": batch.step, "checkpoint": batch.checkpoint}
    if batch.rubrics is not None:
        head["rubrics"] = batch.rubrics
    if batch.expected is not None:
        head["expected"] = batch.expected
    created = time.time()
    payloads = [
        json.dumps({**head, **s.model_dump(exclude_defaults=True), "created": created})
        for s in batch.samples
    ]
    await request.app.state.producer.add(payloads)
    gauge.add(len(payloads))
    return {"accepted": len(payloads), "run": run, "step": batch.step}


@router.post("/v1/runs/{run}/metrics", status_code=202, tags=["ingest"])
def submit_metrics(run: WriteRun, body: MetricsIn, request: Request) -> dict[str, Any]:
    """Trainer-side numbers (loss, learning rate) to draw next to quality."""
    _store(request).save_metrics(run, body.step, body.values)
    return {"accepted": len(body.values), "run": run, "step": body.step}


@router.get("/v1/runs", tags=["read"])
def list_runs(request: Request, who: Caller, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return {"runs": read.list_runs(_store(request), limit, offset, project=who.project)}


def _run_or_404(source: read.Source, run: str) -> dict[str, Any]:
    found = read.get_run(source, run)
    if found is None:
        raise HTTPException(404, f"run {run!r} not found")
    return found


@router.get("/v1/runs/{run}", tags=["read"])
def get_run(run: ReadRun, request: Request) -> dict[str, Any]:
    return _run_or_404(_store(request), run)


@router.get("/v1/runs/{run}/steps/{step}", tags=["read"])
def get_step(
    run: ReadRun,
    step: Annotated[int, Path(ge=0, le=2**53)],
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """A checkpoint: its samples with scores, aggregates and checkpoint-level flags."""
    with read.connect(_store(request)) as conn:
        _run_or_404(conn, run)
        return {
            "run": run,
            "step": step,
            "total": read.count_step_samples(conn, run, step),
            "samples": read.step_samples(conn, run, step, limit=limit, offset=offset),
            "aggregates": read.step_aggregates(conn, run, step),
            "flags": read.step_flags(conn, run, step),
            "evaluation": read.step_evaluation(conn, run, step),
        }


@router.get("/v1/runs/{run}/samples/{sample_id}", tags=["read"])
def get_sample(run: ReadRun, sample_id: str, request: Request) -> dict[str, Any]:
    found = read.get_sample(_store(request), run, sample_id)
    if found is None:
        raise HTTPException(404, f"sample {sample_id!r} not found in run {run!r}")
    return found


@router.get("/v1/runs/{run}/metrics", tags=["read"])
def get_metrics(run: ReadRun, request: Request) -> dict[str, Any]:
    """Every metric's series over steps: detector aggregates and trainer metrics."""
    with read.connect(_store(request)) as conn:
        _run_or_404(conn, run)
        return {"run": run, "metrics": read.metric_series(conn, run)}


@router.get("/v1/runs/{run}/costs", tags=["read"])
def get_costs(run: ReadRun, request: Request, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    """What judging the run cost: judge seconds, prompt and generated tokens, prompts asked
    and answered by the verdict cache; over the run, per rubric, and per step (newest first)."""
    with read.connect(_store(request)) as conn:
        _run_or_404(conn, run)
        return read.judge_cost(conn, run, limit=limit, offset=offset)


@router.get("/v1/runs/{run}/alerts", tags=["alerts"])
def get_alerts(
    run: ReadRun,
    request: Request,
    state: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, list[Alert]]:
    return {"alerts": read.list_alerts(_store(request), run, state, limit, offset)}


@router.get("/v1/deadletter", tags=["ops"])
def list_deadletters(request: Request, who: Caller, limit: Limit = 100) -> dict[str, Any]:
    """Samples whose scoring failed on every delivery, with the last error
    (``deadletters``); checkpoint jobs that could not be generated, with the reason
    (``checkpoints``)."""
    queue = request.app.state.queue

    def visible(run: str) -> bool:
        return may_read(request, who, run)

    return {
        "deadletters": read.deadletters(queue, limit, visible),
        "checkpoints": read.deadletters(queue, limit, visible, stream="checkpoints"),
    }


@router.post("/v1/alerts/{alert_id}/resolve", tags=["alerts"])
def resolve_alert(
    alert_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, who: Caller
) -> dict[str, Any]:
    run = read.alert_run(_store(request), alert_id)
    if run is None:
        raise HTTPException(404, f"no alert {alert_id}")
    check_run(request, who, run, write=True)
    if not _store(request).resolve_alert(alert_id):
        raise HTTPException(404, f"no open alert {alert_id}")
    return {"id": alert_id, "state": "resolved"}
