"""Every Redis key judgeserve writes, derived from one prefix (``JUDGESERVE_STREAM_PREFIX``).

Its own module so that every process that writes Redis names its keys here: the streams
(:mod:`judgeserve.stream`), the judge's verdict cache (:mod:`judgeserve.judge.cache`) and
the metrics the workers share with the API (:mod:`judgeserve.telemetry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Keys", "StreamName"]

StreamName = Literal["samples", "checkpoints"]


@dataclass(frozen=True)
class Keys:
    """Every Redis key judgeserve writes, derived from one prefix."""

    prefix: str = "js"

    @property
    def samples(self) -> str:
        return f"{self.prefix}:samples"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    @property
    def retry(self) -> str:
        # A sorted set: failed scorers of a sample, scored by when to try them again.
        return f"{self.prefix}:retry"

    def worker(self, consumer: str) -> str:
        # A worker's heartbeat (judgeserve.liveness), expiring unless renewed.
        return f"{self.prefix}:worker:{consumer}"

    @property
    def workers(self) -> str:
        """Pattern matching every worker's heartbeat key."""
        return f"{self.prefix}:worker:*"

    @property
    def checkpoints(self) -> str:
        # Checkpoint mode: "checkpoint saved at PATH" jobs for the generation workers.
        return f"{self.prefix}:checkpoints"

    @property
    def checkpoint_deadletter(self) -> str:
        return f"{self.prefix}:checkpoints:deadletter"

    @property
    def verdicts(self) -> str:
        # A hash: verdict cache key -> the judge's verdict (JSON).
        return f"{self.prefix}:verdicts"

    @property
    def verdicts_lru(self) -> str:
        # A sorted set: verdict cache key -> when it was last used; trimmed to the bound.
        return f"{self.prefix}:verdicts:lru"

    @property
    def metrics(self) -> str:
        # A hash: counters and histogram buckets the workers add to and /metrics reads.
        return f"{self.prefix}:metrics"

    def of(self, stream: StreamName) -> tuple[str, str, str]:
        """(stream, dead letters, retries) of the ``samples`` or the ``checkpoints`` stream."""
        if stream == "checkpoints":
            return self.checkpoints, self.checkpoint_deadletter, f"{self.prefix}:checkpoints:retry"
        return self.samples, self.deadletter, self.retry
