"""Scored checkpoints written straight into a store, for the tests and benchmarks of
ranking and comparison: samples with probe ids and draws, their per-sample scores, the
checkpoint's aggregates (as the worker computes them) and, if given, the training loss.

The values are planted, so a test knows the answer (which checkpoint is better, by how
much); the store, the reads and the statistics are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from ..aggregates import aggregate
from ..schema import Aggregate, Sample, Score
from ..store import Store

__all__ = ["write_checkpoint", "BOOLEAN"]

BOOLEAN = {"repetition.loop", "truncation.truncated", "memorization.memorized"}


def write_checkpoint(
    store: Store,
    run: str,
    step: int,
    probes: Sequence[str],
    values: Mapping[str, Sequence[float] | np.ndarray],
    *,
    draws: Sequence[str] = ("greedy",),
    completion: Callable[[str, str], str] | None = None,
    prompt: Callable[[str], str] | None = None,
    set_level: Mapping[str, float] | None = None,
    details: Mapping[str, dict[str, object]] | None = None,
    loss: float | None = None,
    evaluated: bool = True,
    with_aggregates: bool = True,
) -> list[str]:
    """Write one checkpoint: ``values[metric]`` has one value per probe, or per probe and
    draw (shape probes x draws); metrics in :data:`BOOLEAN` are stored as flags.
    ``details`` are stored with every score of a metric (a pairwise verdict's ``outcome``).
    Returns the sample ids."""
    completion = completion or (lambda p, d: f"Answer to {p} ({d}) at step {step}.")
    prompt = prompt or (lambda p: f"Question {p}?")
    now = datetime.now(UTC)
    items: list[Sample] = []
    keys: list[tuple[str, str, str]] = []
    for probe in probes:
        for draw in draws:
            sid = f"s{step}-{probe}-{draw}"
            keys.append((sid, probe, draw))
            items.append(Sample(
                id=sid, run=run, step=step, checkpoint=f"checkpoint-{step}", probe_id=probe,
                prompt=prompt(probe), completion=completion(probe, draw),
                tags={"decoding": draw}, created=now,
            ))
    arrays = {m: np.asarray(v, dtype=np.float64).reshape(len(probes), -1) for m, v in values.items()}
    batch = []
    per_sample: dict[str, list[float]] = {m: [] for m in arrays}
    for k, (sid, _probe, _draw) in enumerate(keys):
        i, j = divmod(k, len(draws))
        row = []
        for metric, arr in arrays.items():
            v = float(arr[i, min(j, arr.shape[1] - 1)])  # one column: every draw the same
            per_sample[metric].append(v)
            value: float | bool = bool(v) if metric in BOOLEAN else v
            row.append(Score(scorer=metric, value=value, details=dict((details or {}).get(metric, {}))))
        batch.append((run, step, sid, row))
    aggs: dict[str, Aggregate] = {}
    if with_aggregates:
        aggs = {m: aggregate(v) for m, v in per_sample.items()}
        for m, v in (set_level or {}).items():
            aggs[m] = Aggregate(mean=v, ci_low=None, ci_high=None, n=1)
    with store.begin() as conn:
        store.upsert_run(conn, run, step)
        store.save_samples(conn, items)
        store.save_batch_scores(conn, batch)
        store.save_aggregates(conn, run, step, aggs)
    if loss is not None:
        store.save_metrics(run, step, {"loss": loss})
    store.set_expected(run, step, len(items))
    if evaluated:
        store.mark_evaluated(run, step)
    return [k[0] for k in keys]
