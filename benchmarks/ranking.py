"""Choosing a checkpoint: how long `best` and `compare` take on a large run, and how often
the statistics are wrong on checkpoints that do not differ.

    .venv/bin/python benchmarks/ranking.py [--checkpoints 50] [--probes 500] [--database URL]

* **Speed**: a run of 50 checkpoints x 500 probes (one greedy draw each; five per-sample
  metrics and a set-level one, 150k scores) is written into a fresh store (SQLite in a
  temporary folder unless ``--database``), then ``read.best`` (what ``GET
  /v1/runs/{run}/best`` and ``judgeserve best`` run), split into its reads and its
  statistics, and ``read.compare_checkpoints`` of two checkpoints are timed (median of 5,
  warm), as a share of the 1 s the issue allows ``best``, and side by side with
  ``read.metric_series`` (the aggregates the run page's charts read).
* **Errors on identical checkpoints** (pure statistics, no store): runs of checkpoints
  drawn from one model, per probe a level plus each checkpoint's own noise: how often a
  checkpoint is told apart from the best (the band's error), and how often the paired CI
  of two of them misses 0 (the comparison's).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from judgeserve import read
from judgeserve.ranking import RankInput, compare_sides, default_quality, parse_quality, rank
from judgeserve.store import Store
from judgeserve.testing.checkpoints import write_checkpoint

RUN = "bench-rank"


def timed(fn: Callable[[], Any], repeat: int = 5) -> float:
    fn()  # warm: imports, the database's page cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def seed(store: Store, checkpoints: int, probes: int) -> float:
    rng = np.random.default_rng(0)
    names = [f"p{i:04d}" for i in range(probes)]
    level = rng.uniform(0.3, 0.6, probes)
    started = time.perf_counter()
    for k in range(checkpoints):
        step = 100 * (k + 1)
        lift = 0.3 * min(k, 20) / 20
        write_checkpoint(store, RUN, step, names, {
            "reference.semscore": level + lift + rng.normal(0, 0.05, probes),
            "judge.helpfulness.overall": np.clip(np.round(2 + 3 * (level + lift) + rng.normal(0, 0.5, probes)), 1, 5),
            "repetition.loop": rng.random(probes) < 0.01,
            "memorization.memorized": rng.random(probes) < (0.0 if k < 30 else 0.1),
            "length.tokens": rng.integers(10, 60, probes),
        }, set_level={"diversity.unique_ratio": 0.9}, loss=3.0 / (1 + k))
    return time.perf_counter() - started


def speed(url: str | None, checkpoints: int, probes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        seconds = seed(store, checkpoints, probes)
        quality = default_quality()
        print(f"{checkpoints} checkpoints x {probes} probes ({store.dialect}), "
              f"written in {seconds:.1f} s")
        best = read.best(store, RUN, quality)
        inp = read.rank_input(store, RUN, quality)
        a = read.CheckpointRef(RUN, 100 * (checkpoints // 2))
        b = read.CheckpointRef(RUN, 100 * checkpoints)
        rows = [
            ("read.metric_series (run page charts)", timed(lambda: read.metric_series(store, RUN))),
            ("read.best (GET /v1/runs/{run}/best)", timed(lambda: read.best(store, RUN, quality))),
            ("  of which the reads (rank_input)", timed(lambda: read.rank_input(store, RUN, quality))),
            ("  of which the statistics (rank)", timed(lambda: rank(inp, quality))),
            ("read.compare_checkpoints (two)", timed(lambda: read.compare_checkpoints(store, a, b, quality))),
        ]
        base = rows[0][1]
        print(f"{'what':>40} | {'median s':>9} | {'/ 1 s budget':>12} | {'/ charts read':>13}")
        for name, t in rows:
            print(f"{name:>40} | {t:>9.3f} | {t:>12.2f} | {t / base:>13.0f}")
        told = ", ".join(map(str, best["indistinguishable"][:8]))
        print(f"best: step {best['best']['step']} (score {best['best']['score']:.3f}); cannot be "
              f"told apart: {told}{' ...' if len(best['indistinguishable']) > 8 else ''}")
        store.drop()
        store.close()


def errors(runs: int) -> None:
    one = parse_quality("metrics:\n  - metric: score\n    better: higher\n")
    print(f"\nidentical checkpoints, {runs} runs each (expected at most 5 %)")
    print(f"{'checkpoints x probes':>22} | {'told apart from the best':>24} | {'paired CI misses 0':>18}")
    for k, p in ((3, 100), (10, 24), (10, 100), (10, 500), (30, 100)):
        told = missed = 0
        for seed_ in range(runs):
            rng = np.random.default_rng(seed_)
            values = rng.normal(size=p) + rng.normal(0, 1, (k, p))
            r = rank(RankInput(list(range(k)), [str(j) for j in range(p)], {"score": values},
                               {s: {} for s in range(k)}), one)
            told += len(r.band) < k - 1
            side = [{"score": {(str(j), "g"): float(values[i, j]) for j in range(p)}} for i in (0, 1)]
            (d,) = compare_sides(side[0], side[1])
            missed += not (d.ci_low is not None and d.ci_high is not None and d.ci_low <= 0 <= d.ci_high)
        print(f"{f'{k} x {p}':>22} | {100 * told / runs:>23.1f}% | {100 * missed / runs:>17.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--runs", type=int, default=200, help="runs per row of the error table")
    args = parser.parse_args()
    speed(args.database, args.checkpoints, args.probes)
    errors(args.runs)


if __name__ == "__main__":
    main()
