"""Counters and histograms every process adds to and the API's ``/metrics`` reads.

Workers run anywhere: threads of ``judgeserve up``, processes, Ray actors on other hosts,
containers. prometheus-client's multiprocess mode shares metrics through files in one
directory, so it only sees processes of one host; the one thing every judgeserve process
already shares is Redis. So a worker adds its counts to one Redis hash
(:attr:`~judgeserve.keys.Keys.metrics`), and whichever API process Prometheus scrapes
reads the whole fleet's totals from it (:mod:`judgeserve.api.metrics`). Counters live as
long as Redis keeps its data (AOF, which judgeserve asks for anyway); a restarted worker
adds to them rather than starting again at zero.

A process counts in memory and sends its increments in one pipelined round trip per
batch (:meth:`Telemetry.flush`); when Redis cannot be reached the increments are kept and
sent with the next flush, so none is lost and nothing that counts ever fails because of it.

Histograms are fixed buckets: ``<name>_bucket`` fields per upper bound (not cumulative in
Redis; the reader accumulates), ``<name>_sum`` and ``<name>_count``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .keys import Keys

if TYPE_CHECKING:
    import redis

    from .settings import Settings

__all__ = [
    "MetricDef",
    "SHARED",
    "LATENCY_BUCKETS",
    "Telemetry",
    "field_name",
    "parse_field",
    "read_shared",
]

log = logging.getLogger(__name__)

# Judge calls take from milliseconds (a toy judge, a cache hit) to a minute (a big model
# on CPU, a slow API).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SEP = "\x1f"  # between a field's name and its labels: never in a metric or label name


@dataclass(frozen=True)
class MetricDef:
    """One metric the workers share through Redis."""

    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Every metric shared through Redis; /metrics exposes these (and only these) from the hash.
SHARED: dict[str, MetricDef] = {
    "judgeserve_http_requests_total": MetricDef(
        "counter",
        "HTTP requests the API answered, by method, route template and status code.",
        ("method", "route", "status"),
    ),
    "judgeserve_samples_scored_total": MetricDef(
        "counter",
        "Samples a scorer gave at least one score to, by scorer (rate() is samples scored/s).",
        ("scorer",),
    ),
    "judgeserve_deadlettered_total": MetricDef(
        "counter", "Entries moved to a dead-letter stream, by stream.", ("stream",)
    ),
    "judgeserve_judge_requests_total": MetricDef(
        "counter", "Calls to a judge backend (each holds one or more prompts).", ("backend",)
    ),
    "judgeserve_judge_prompts_total": MetricDef(
        "counter", "Prompts sent to a judge backend (cache hits are not sent).", ("backend",)
    ),
    "judgeserve_judge_tokens_total": MetricDef(
        "counter",
        "Judge tokens, kind='prompt' (read) or 'generated' (verdict tokens, parsed replies).",
        ("backend", "kind"),
    ),
    "judgeserve_judge_latency_seconds": MetricDef(
        "histogram", "Wall time of one judge backend call.", ("backend",), LATENCY_BUCKETS
    ),
    "judgeserve_judge_cache_hits_total": MetricDef(
        "counter", "Judge prompts answered from the verdict cache (or by a duplicate in the "
        "same call) instead of the judge."
    ),
    "judgeserve_judge_cache_misses_total": MetricDef(
        "counter", "Judge prompts the verdict cache did not hold: sent to the judge."
    ),
    "judgeserve_judge_cache_evictions_total": MetricDef(
        "counter", "Verdicts dropped from the cache to keep it within verdict_cache_size."
    ),
}


def field_name(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The hash field of one series: the name, then ``label=value`` pairs, sorted."""
    parts = [name, *(f"{k}={v}" for k, v in sorted((labels or {}).items()))]
    return SEP.join(parts)


def parse_field(field: str) -> tuple[str, dict[str, str]]:
    """The inverse of :func:`field_name`."""
    name, *pairs = field.split(SEP)
    labels = dict(p.split("=", 1) for p in pairs if "=" in p)
    return name, labels


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class Telemetry:
    """A process's counts, added to the shared Redis hash at each :meth:`flush`."""

    def __init__(self, client: redis.Redis, keys: Keys, *, own_client: bool = False) -> None:
        self.redis = client
        self.key = keys.metrics
        self._own = own_client
        self._pending: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        import redis

        # Timeouts: a partitioned Redis must not hang a worker or a request in a flush.
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        return cls(client, Keys(settings.stream_prefix), own_client=True)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter of :data:`SHARED`."""
        if amount:
            with self._lock:
                self._pending[field_name(name, labels)] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation of a histogram of :data:`SHARED`."""
        bounds = SHARED[name].buckets
        bound = next((b for b in bounds if value <= b), math.inf)
        with self._lock:
            self._pending[field_name(f"{name}_bucket", {**labels, "le": _le(bound)})] += 1
            self._pending[field_name(f"{name}_sum", labels)] += value
            self._pending[field_name(f"{name}_count", labels)] += 1

    def flush(self) -> bool:
        """Send what was counted since the last flush; False (counts kept) if Redis is down."""
        import redis

        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return True
        try:
            pipe = self.redis.pipeline(transaction=False)
            for field, amount in pending.items():
                pipe.hincrbyfloat(self.key, field, amount)
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            with self._lock:
                for field, amount in pending.items():
                    self._pending[field] += amount
            if not self._warned:
                self._warned = True
                log.warning("metrics not sent (kept for the next try): %s", e)
            return False
        self._warned = False
        return True

    def close(self) -> None:
        self.flush()
        if self._own:
            self.redis.close()


def read_shared(client: redis.Redis, keys: Keys) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every series in the shared hash: (name, sorted labels) -> value."""
    raw: Any = client.hgetall(keys.metrics)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for field, value in raw.items():
        name, labels = parse_field(field.decode() if isinstance(field, bytes) else field)
        out[(name, tuple(sorted(labels.items())))] = float(value)
    return out
