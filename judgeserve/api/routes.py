"""The /v1 routes: submit samples and metrics, read runs, steps, samples, metrics, alerts."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from .. import read
from ..auth import Caller, ReadRun, WriteRun, check_run, may_read
from ..exceptions import Backpressure, QueueError
from ..judge.rubric import RubricCatalog, rubrics_in_tag
from ..liveness import read_heartbeats
from ..schema import Alert, MetricsIn, SampleBatch, SummaryIn
from ..store import Store
from ..stream import AsyncProducer

__all__ = ["router", "BacklogGauge", "rubric_problems"]

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


def rubric_problems(catalog: RubricCatalog, batch: SampleBatch) -> list[dict[str, Any]]:
    """422 errors for every rubric the batch names that the judge could not use: not
    found in the rubric directories, or invalid (the lint error). Accepting them would
    only skip the judge, silently, in a worker's log."""
    errors: list[dict[str, Any]] = []

    def check(name: str, loc: tuple[str | int, ...]) -> None:
        why = catalog.problem(name)
        if why:
            errors.append({"loc": loc, "msg": f"rubric {name!r} cannot be used: {why}",
                           "type": "rubric"})

    for i, name in enumerate(batch.rubrics or []):
        check(name, ("body", "rubrics", i))
    for i, sample in enumerate(batch.samples):
        for name in rubrics_in_tag(sample.tags.get("rubrics")):
            check(name, ("body", "samples", i, "tags", "rubrics"))
    return errors


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("/healthz", tags=["ops"])
async def healthz(request: Request) -> dict[str, Any]:
    """The API answers and Redis with it (else 503); and who is scoring: each live
    worker's last heartbeat, and ``scoring``: ``ok`` when at least one worker is alive and
    none waits for the store or Redis, else what is wrong."""
    producer: AsyncProducer = request.app.state.producer
    redis_ok = await producer.ping()
    if not redis_ok:
        raise HTTPException(503, "redis unreachable")
    try:
        beats = await read_heartbeats(producer.redis, producer.keys)
    except QueueError:
        beats = []
    now = time.time()
    workers = [
        {
            "name": b.get("consumer"),
            "host": b.get("host"),
            "pid": b.get("pid"),
            "state": b.get("state"),
            "detail": b.get("detail", ""),
            "for_s": round(max(0.0, now - float(b.get("since") or now)), 1),
            "seen_s_ago": round(max(0.0, now - float(b.get("at") or now)), 1),
        }
        for b in beats
    ]
    stuck = [w for w in workers if str(w["state"]).startswith("waiting")]
    if not workers:
        scoring = "no live worker: accepted samples wait in Redis until one starts"
    elif stuck and len(stuck) == len(workers):
        scoring = f"stalled: {stuck[0]['state']} ({stuck[0]['detail']})"
    else:
        scoring = "ok"
    return {"status": "ok", "redis": redis_ok, "scoring": scoring, "workers": workers}


@router.post("/v1/runs/{run}/samples", status_code=202, tags=["ingest"])
async def submit_samples(run: WriteRun, batch: SampleBatch, request: Request) -> dict[str, Any]:
    """Queue samples for scoring. Idempotent per sample id: re-sending is harmless."""
    problems = rubric_problems(request.app.state.rubrics, batch)
    if problems:
        raise RequestValidationError(problems)
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


@router.post("/v1/runs/{run}/summary", status_code=202, tags=["ingest"])
def submit_summary(run: WriteRun, body: SummaryIn, request: Request) -> dict[str, Any]:
    """Values of the whole run (a trainer's end-of-run summary), kept apart from the
    series over steps so a run time or a FLOP count never lands on a chart."""
    _store(request).save_summary(run, body.values)
    return {"accepted": len(body.values), "run": run}


@router.get("/v1/runs", tags=["read"])
def list_runs(request: Request, who: Caller, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return {"runs": read.list_runs(_store(request), limit, offset, project=who.project)}


def _run_or_404(source: read.Source, run: str) -> dict[str, Any]:
    found = read.get_run(source, run)
    if found is None:
        raise HTTPException(404, f"run {run!r} not found")
    return found


def active_rubrics(request: Request, found: dict[str, Any]) -> dict[str, Any]:
    """The run's rubrics (or the server's default ones) and whether each can judge."""
    settings = request.app.state.settings
    catalog: RubricCatalog = request.app.state.rubrics
    return catalog.active(found.get("rubrics"), settings.judge_rubrics, settings.judge_url)


@router.get("/v1/runs/{run}", tags=["read"])
def get_run(run: ReadRun, request: Request) -> dict[str, Any]:
    """The run, its ``summary`` values, and under ``judge`` the rubrics that judge it and
    any reason one cannot."""
    with read.connect(_store(request)) as conn:
        found = _run_or_404(conn, run)
        summary = read.run_summary_values(conn, run)
    return {**found, "summary": summary, "judge": active_rubrics(request, found)}


@router.get("/v1/runs/{run}/steps/{step}", tags=["read"])
def get_step(
    run: ReadRun,
    step: Annotated[int, Path(ge=0, le=2**53)],
    request: Request,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """A checkpoint: its samples with scores, aggregates, checkpoint-level flags, and which
    scorers ran on it and why the others did not (``scorers``)."""
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
            "scorers": read.step_scorer_status(conn, run, step),
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
