"""Server time per web page for a run of 2,000 steps x 64 samples (128,000 samples).

Seeding, two ways (``--seed``):

* ``api`` (default): a real API process and a real worker process; every step's 64
  samples are POSTed to ``/v1/runs/{run}/samples`` and the loss to ``/metrics``, and the
  worker scores them. The worker runs the cheap per-sample detectors only (length,
  repetition, truncation): the model-backed scorers (reference, diversity, memorization,
  judge) would take hours for 128k samples on a 2-core machine, and they add rows of the
  same shape (one score per sample, one aggregate per step).
* ``store``: the same rows written straight through the store's methods (a few minutes
  faster), for a quick look.

Then each page is fetched ``--repeat`` times from the API process on loopback; the
request's wall time there is the server's time plus well under a millisecond. Reported
as p50 / p95; the target is < 300 ms per page. ``--keep DIR`` keeps the database, and a
later run with the same DIR measures again without seeding.

    python benchmarks/web.py [--steps 2000] [--per-step 64] [--seed api|store] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _stack import auth_headers, judgeserve_processes, pct, table

RUN = "bench-web"
WORDS = [
    "the", "model", "answers", "every", "question", "with", "a", "fluent", "confident",
    "paragraph", "about", "training", "data", "loss", "curves", "checkpoints", "morning",
]
CHEAP_ONLY = ["reference", "diversity", "memorization", "judge"]


def completion(rng: random.Random, step: int) -> str:
    n = rng.randint(20, 60)
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.1 + 0.3 * step / 2000:  # loops grow as training goes on
        words += ["morning"] * rng.randint(6, 12)
    return " ".join(words)


def processes(db: str, redis_db: int, worker: bool) -> AbstractContextManager[str]:
    env = {
        "JUDGESERVE_DATABASE_URL": db,
        "JUDGESERVE_DISABLED_SCORERS": json.dumps(CHEAP_ONLY),
        "JUDGESERVE_WORKER_BATCH": "512",
        "JUDGESERVE_MAX_BACKLOG": "10000000",
    }
    return judgeserve_processes("api", env, workers=int(worker), redis_db=redis_db)


def seed_api(url: str, steps: int, per_step: int, db: str) -> None:
    from judgeserve import read
    from judgeserve.store import Store

    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=60, headers=auth_headers()) as http:
        for step in range(steps):
            batch = [
                {"id": f"{step}-{i}", "prompt": f"probe {i}", "completion": completion(rng, step),
                 "probe_id": f"p{i}", "reference": "a reference answer"}
                for i in range(per_step)
            ]
            r = http.post(f"/v1/runs/{RUN}/samples", json={"step": step, "samples": batch,
                                                           "checkpoint": f"ckpt-{step}"})
            r.raise_for_status()
            http.post(f"/v1/runs/{RUN}/metrics",
                      json={"step": step, "values": {"loss": 6.0 / (1 + step / 100)}}).raise_for_status()
            if step % 200 == 0:
                print(f"  posted step {step}", flush=True)
    store = Store(db)
    total = steps * per_step
    last = -1
    while True:
        done = read.count_scored(store, RUN)
        if done != last:
            print(f"  scored {done:,} / {total:,}", flush=True)
            last = done
        if done >= total and read.step_aggregates(store, RUN, steps - 1):
            break
        time.sleep(5)
    store.close()


def seed_store(steps: int, per_step: int, db: str) -> None:
    from judgeserve.aggregates import aggregate
    from judgeserve.schema import Sample, Score
    from judgeserve.store import Store

    rng = random.Random(0)
    store = Store(db)
    for step in range(steps):
        with store.begin() as conn:
            store.upsert_run(conn, RUN, step)
            items = [Sample(run=RUN, step=step, id=f"{step}-{i}", prompt=f"probe {i}",
                            completion=completion(rng, step), probe_id=f"p{i}",
                            checkpoint=f"ckpt-{step}") for i in range(per_step)]
            store.save_samples(conn, items)
            values: dict[str, list[float]] = {}
            for s in items:
                n = len(s.completion.split())
                loop = s.completion.endswith("morning morning")
                scores = [Score(scorer="length.tokens", value=float(n)),
                          Score(scorer="repetition.rep4", value=rng.random() / 2),
                          Score(scorer="repetition.loop", value=loop,
                                details={"spans": [[len(s.completion) - 30, len(s.completion)]]}
                                if loop else {})]
                store.save_scores(conn, RUN, step, s.id, scores)
                for sc in scores:
                    values.setdefault(sc.scorer, []).append(float(sc.value or 0))
            store.save_aggregates(conn, RUN, step, {m: aggregate(v) for m, v in values.items()})
        store.save_metrics(RUN, step, {"loss": 6.0 / (1 + step / 100)})
        if step % 200 == 0:
            print(f"  stored step {step}", flush=True)
    store.close()


def add_alerts(db: str, steps: int) -> None:
    from judgeserve.schema import Alert
    from judgeserve.store import Store

    store = Store(db)
    for k in range(200):
        step = k * steps // 200
        # One open alert per rule and run: older ones are resolved, as an operator would.
        store.add_alert(Alert(run=RUN, step=step, rule="bench.loop_rate", severity="warning",
                              state="open" if k == 199 else "resolved",
                              message=f"loop rate up at {step}",
                              evidence={"sample_ids": [f"{step}-{i}" for i in range(5)]}))
    store.close()


def measure(url: str, steps: int, per_step: int, repeat: int) -> list[tuple[str, str, str]]:
    mid = steps // 2
    pages = [
        ("runs list", "/"),
        ("run page (newest steps)", f"/runs/{RUN}"),
        ("run page, steps page 20", f"/runs/{RUN}?page=20"),
        ("run chart data (all steps)", f"/runs/{RUN}/charts.json"),
        ("run chart data (live, last step)", f"/runs/{RUN}/charts.json?from_step={steps - 1}"),
        ("step page", f"/runs/{RUN}/steps/{mid}"),
        ("step page sorted by a score", f"/runs/{RUN}/steps/{mid}?sort=length.tokens&order=desc"),
        ("step page, flagged only", f"/runs/{RUN}/steps/{mid}?flagged=1"),
        ("step page, one probe", f"/runs/{RUN}/steps/{mid}?probe=p3"),
        ("sample page (with diff)", f"/runs/{RUN}/samples/{mid}-{per_step // 2}"),
        ("alerts", "/alerts?state=all"),
        ("alerts, page 3", "/alerts?state=all&page=3"),
        ("step selector (goto)", f"/runs/{RUN}/goto?step={mid}"),
    ]
    rows = [("page", "p50", "p95")]
    with httpx.Client(base_url=url, timeout=60, headers=auth_headers()) as http:
        for name, path in pages:
            times = []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                r = http.get(path, follow_redirects=False)
                times.append(time.perf_counter() - t0)
                assert r.status_code in (200, 303), (path, r.status_code, r.text[:200])
            times = times[1:]  # the first warms the caches
            rows.append((name, f"{pct(times, 0.5) * 1e3:.0f} ms", f"{pct(times, 0.95) * 1e3:.0f} ms"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--per-step", type=int, default=64)
    ap.add_argument("--seed", choices=("api", "store"), default="api")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--redis-db", type=int, default=12)
    ap.add_argument("--keep", type=Path, help="keep (or reuse) the database in this folder")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="judgeserve-bench-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "web.db"
    db = f"sqlite:///{path}"
    fresh = not path.exists()
    try:
        t0 = time.perf_counter()
        with processes(db, args.redis_db, worker=fresh and args.seed == "api") as url:
            if fresh:
                print(f"seeding {args.steps:,} steps x {args.per_step} samples via {args.seed}")
                if args.seed == "api":
                    seed_api(url, args.steps, args.per_step, db)
                else:
                    seed_store(args.steps, args.per_step, db)
                add_alerts(db, args.steps)
                print(f"seeded in {time.perf_counter() - t0:.0f} s "
                      f"({path.stat().st_size / 2**20:.0f} MiB SQLite)")
            rows = measure(url, args.steps, args.per_step, args.repeat)
        print(f"\nserver time per page, {args.steps:,} steps x {args.per_step} samples, SQLite, "
              f"{args.repeat} requests each (target < 300 ms):\n")
        table(rows)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
