"""``judgeserve rescore``: score a run's stored samples again, with the scorers named.

Samples scored before a scorer could run (a memorization index built after the run
started, a rubric fixed, a judge that was down) never get that scorer's scores by
themselves. :func:`queue_rescore` puts the run's stored samples (a range of steps, or
all) back on the sample stream, marked ``rescore`` and limited to the scorers asked
for (``only``, as a retry is); the worker replaces those scorers' stored scores with the
new ones and recomputes the touched checkpoints' aggregates and set-level metrics.
Running it twice adds no rows: scores are keyed by sample and scorer. A checkpoint whose
alert rules already ran is not evaluated again (alerts run once per checkpoint).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import read
from .exceptions import ConfigError
from .store import Store
from .stream import Queue

__all__ = ["parse_steps", "Rescore", "queue_rescore", "wait_processed"]

PAGE = 500  # samples read and queued per round trip
_STEPS = re.compile(r"^\s*(\d*)\s*(?::\s*(\d*)\s*)?$")


def parse_steps(text: str | None) -> tuple[int | None, int | None]:
    """``"A:B"`` (both inclusive), ``"A:"``, ``":B"`` or ``"A"`` (one step); None: all."""
    if text is None or not text.strip():
        return None, None
    m = _STEPS.match(text)
    if m is None or (m.group(1) == "" and (m.group(2) or "") == ""):
        raise ConfigError(f"--steps {text!r}: give A:B (inclusive), A:, :B or one step A")
    first = int(m.group(1)) if m.group(1) else None
    if m.group(2) is None:  # no colon: one step
        return first, first
    last = int(m.group(2)) if m.group(2) else None
    if first is not None and last is not None and last < first:
        raise ConfigError(f"--steps {text!r}: the last step is before the first")
    return first, last


@dataclass
class Rescore:
    """What :func:`queue_rescore` queued: how many samples, and their stream entries."""

    run: str
    total: int
    queued: int = 0
    entries: list[str] = field(default_factory=list)


def _payload(row: dict[str, Any], scorers: Sequence[str] | None) -> dict[str, Any]:
    sample = {
        k: row[k]
        for k in ("run", "id", "step", "checkpoint", "prompt", "completion", "tags")
    }
    for k in ("reference", "probe_id"):
        if row.get(k) is not None:
            sample[k] = row[k]
    sample["created"] = row["created"].isoformat()
    sample["rescore"] = True
    if scorers:
        sample["only"] = list(scorers)
    return sample


def queue_rescore(
    store: Store,
    queue: Queue,
    run: str,
    *,
    steps: tuple[int | None, int | None] = (None, None),
    scorers: Sequence[str] | None = None,
    max_backlog: int | None = None,
    progress: Callable[[Rescore], None] | None = None,
) -> Rescore:
    """Queue the run's stored samples in ``steps`` for ``scorers`` (None: every scorer),
    a page at a time, waiting while the stream's backlog is over ``max_backlog``."""
    first, last = steps
    job = Rescore(run, read.count_run_samples(store, run, first, last))
    after: tuple[int, str] | None = None
    while True:
        page = read.run_samples(store, run, first, last, after=after, limit=PAGE)
        if not page:
            break
        if max_backlog is not None:
            while queue.backlog() + len(page) > max_backlog:
                time.sleep(1.0)  # the workers catch up; the API's own samples go first
        job.entries += queue.add([_payload(r, scorers) for r in page])
        job.queued += len(page)
        after = (int(page[-1]["step"]), str(page[-1]["id"]))
        if progress is not None:
            progress(job)
    return job


def wait_processed(
    queue: Queue,
    entries: list[str],
    *,
    timeout: float | None = None,
    progress: Callable[[int], None] | None = None,
    poll_s: float = 1.0,
) -> int:
    """Wait until the workers processed ``entries`` (or ``timeout``); returns how many
    are still waiting. ``progress`` gets the number processed so far."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = list(entries)
    while True:
        waiting = queue.still_queued(waiting)
        if progress is not None:
            progress(len(entries) - len(waiting))
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            return len(waiting)
        time.sleep(poll_s)
