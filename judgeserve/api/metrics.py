"""``GET /metrics``: Prometheus text of the whole fleet, whichever API process is scraped.

Nothing here is an in-process counter that another process would miss. Each scrape reads:

* the counters and histograms every process adds to Redis (:mod:`judgeserve.telemetry`):
  samples scored by scorer, judge calls, tokens and latency, verdict cache hits, dead
  letters, and the API's own requests by route and status (this process's pending counts
  are sent first, so a scrape always includes itself);
* gauges read live from Redis: the backlog of each stream and the age of its oldest
  pending entry, dead letters waiting, and the verdict cache's size and hit rate.

A scrape when Redis is unreachable answers 503 (a failed scrape: Prometheus's ``up`` is 0)
rather than zeros that would read as "idle". With auth on, ``/metrics`` wants a token like
every route but ``/healthz`` (Prometheus sends it: ``authorization`` in the scrape config).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, get_args

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Caller
from ..exceptions import QueueError
from ..keys import Keys, StreamName
from ..telemetry import SHARED, Telemetry, read_shared

__all__ = ["router", "FleetCollector", "RequestMetrics", "EXPORTED", "registry_for"]

router = APIRouter()

FLUSH_EVERY_S = 1.0  # the API sends its request counts to Redis at most this often

# Gauges read live at each scrape (the counters and histograms are telemetry.SHARED).
GAUGES: dict[str, str] = {
    "judgeserve_queue_backlog": "Entries still owed on a stream: waiting, being scored, or "
    "waiting to be retried.",
    "judgeserve_queue_oldest_pending_age_seconds": "Age of the oldest entry on a stream not "
    "yet done (0 when none is).",
    "judgeserve_deadletters": "Dead letters waiting on a stream (requeue or inspect them).",
    "judgeserve_judge_cache_entries": "Verdicts held in the verdict cache.",
    "judgeserve_judge_cache_hit_ratio": "Share of judge prompts answered by the verdict cache "
    "since Redis was created (hits / (hits + misses)); absent before the first prompt.",
}

# Every metric name /metrics exposes, as written in PromQL (counters with their _total).
EXPORTED: frozenset[str] = frozenset(
    {*GAUGES}
    | {
        f"{name}{suffix}"
        for name, d in SHARED.items()
        for suffix in (("_bucket", "_sum", "_count") if d.kind == "histogram" else ("",))
    }
)


def _oldest_age(entry_id: Any, now: float) -> float:
    # A stream id is "<milliseconds since the epoch>-<sequence>": the entry's arrival time.
    ms = int((entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)).split("-")[0])
    return max(0.0, now - ms / 1000)


class FleetCollector(Collector):
    """Collects judgeserve's metrics from Redis at each scrape (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def collect(self) -> Iterator[Metric]:
        try:
            shared = read_shared(self.redis, self.keys)
            live = self._live()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise QueueError(f"Redis unreachable, no metrics: {e}") from e
        yield from _shared_families(shared)
        yield from live
        hits = _total(shared, "judgeserve_judge_cache_hits_total")
        misses = _total(shared, "judgeserve_judge_cache_misses_total")
        if hits + misses:
            ratio = GaugeMetricFamily(
                "judgeserve_judge_cache_hit_ratio", GAUGES["judgeserve_judge_cache_hit_ratio"]
            )
            ratio.add_metric([], hits / (hits + misses))
            yield ratio

    def _live(self) -> list[Metric]:
        streams: tuple[StreamName, ...] = get_args(StreamName)
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            key, dead_key, retry_key = self.keys.of(stream)
            pipe.xlen(key)
            pipe.zcard(retry_key)
            pipe.xrange(key, count=1)
            pipe.xlen(dead_key)
        pipe.zcard(self.keys.verdicts_lru)
        answers: list[Any] = pipe.execute()
        now = time.time()
        backlog, age, dead = (
            GaugeMetricFamily(name, GAUGES[name], labels=["stream"])
            for name in (
                "judgeserve_queue_backlog",
                "judgeserve_queue_oldest_pending_age_seconds",
                "judgeserve_deadletters",
            )
        )
        for i, stream in enumerate(streams):
            n, retries, first, dead_n = answers[4 * i : 4 * i + 4]
            backlog.add_metric([stream], int(n) + int(retries))
            age.add_metric([stream], _oldest_age(first[0][0], now) if first else 0.0)
            dead.add_metric([stream], int(dead_n))
        cache = GaugeMetricFamily(
            "judgeserve_judge_cache_entries", GAUGES["judgeserve_judge_cache_entries"]
        )
        cache.add_metric([], int(answers[-1]))
        return [backlog, age, dead, cache]


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _total(shared: Series, name: str) -> float:
    return sum(v for (n, _), v in shared.items() if n == name)


def _shared_families(shared: Series) -> Iterator[Metric]:
    """The counters and histograms of :data:`~judgeserve.telemetry.SHARED` found in Redis
    (a family with no series yet is still described, so dashboards find its name)."""
    for name, d in SHARED.items():
        labels = list(d.labels)
        if d.kind == "counter":
            found = {
                tuple(dict(pairs).get(k, "") for k in labels): value
                for (n, pairs), value in shared.items()
                if n == name
            }
            # Series whose labels are known in advance start at 0 rather than appear with
            # the first event: rate() and alerts then see the first one too.
            if not labels:
                found.setdefault((), 0.0)
            elif labels == ["stream"]:
                for stream in get_args(StreamName):
                    found.setdefault((stream,), 0.0)
            counter = CounterMetricFamily(name, d.help, labels=labels)
            for key in sorted(found):
                counter.add_metric(list(key), found[key])
            yield counter
            continue
        hist = HistogramMetricFamily(name, d.help, labels=labels)
        per: defaultdict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
        sums: dict[tuple[str, ...], float] = {}
        for (n, pairs), value in shared.items():
            got = dict(pairs)
            key = tuple(got.get(k, "") for k in labels)
            if n == f"{name}_bucket":
                bound = math.inf if got["le"] == "+Inf" else float(got["le"])
                per[key][bound] = per[key].get(bound, 0.0) + value
            elif n == f"{name}_sum":
                sums[key] = value
        for key in sorted(per):
            # Redis holds each bucket's own count; Prometheus wants them cumulative.
            running, buckets = 0.0, []
            for bound in (*d.buckets, math.inf):
                running += per[key].get(bound, 0.0)
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), running))
            hist.add_metric(list(key), buckets, sums.get(key, 0.0))
        yield hist


def registry_for(client: redis.Redis, keys: Keys) -> CollectorRegistry:
    """A registry of judgeserve's metrics only: a process's own (GC, memory) would describe
    whichever API process happened to be scraped, not the service."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, keys))
    return registry


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(request: Request, _who: Caller) -> Response:
    """Prometheus text exposition of the fleet's metrics (see the README's Metrics)."""
    state = request.app.state
    state.telemetry.flush()
    return Response(generate_latest(state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Counts every HTTP request by method, route template and status into Redis
    (``judgeserve_http_requests_total``): a route's template, never its path, so one run
    name cannot make a series of its own."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry
        self._flushed = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes everything is a 500 to the client

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or (
                "/static" if str(scope.get("path", "")).startswith("/static/") else "unmatched"
            )
            self.telemetry.inc(
                "judgeserve_http_requests_total",
                method=str(scope.get("method", "")),
                route=path,
                status=str(status),
            )
            now = time.monotonic()
            if now - self._flushed >= FLUSH_EVERY_S:
                self._flushed = now
                # Off the event loop: a slow Redis must not hold up other requests.
                await asyncio.to_thread(self.telemetry.flush)
