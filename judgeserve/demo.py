"""``judgeserve demo``: the whole path, end to end, on this machine."""

from __future__ import annotations

import time

from .client import JudgeClient
from .server import background_stack
from .settings import Settings
from .store import Store

PROBES = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What is 2 + 2?", "2 + 2 equals 4."),
    ("Describe the sea.", "the sea the sea the sea the sea the sea the sea the sea"),
]


def run_demo(settings: Settings) -> None:
    url = f"http://{settings.host}:{settings.port}"
    run = f"demo-{int(time.time())}"
    with background_stack(settings):
        print(f"stack up: API {url}, Redis {settings.redis_url}, store {settings.database_url}")
        with JudgeClient(url, run=run) as client:
            for step in (100, 200):
                client.submit(
                    step, [{"prompt": p, "completion": c, "probe_id": str(i)} for i, (p, c) in enumerate(PROBES)]
                )
                client.log_metrics(step, loss=2.0 / (step / 100))
            client.flush(30)
        store = Store(settings.database_url)
        deadline = time.monotonic() + 30
        while store.count_scored(run) < 2 * len(PROBES) and time.monotonic() < deadline:
            time.sleep(0.2)
        for step in (100, 200):
            aggs = store.step_aggregates(run, step)
            line = ", ".join(f"{m}={a['mean']:.3g}" for m, a in sorted(aggs.items()) if a["mean"] is not None)
            print(f"step {step}: {line}")
        store.close()
    print(f"\nscored {2 * len(PROBES)} samples of run {run!r}")
    print(f"look at: {url}/v1/runs/{run}/steps/200  and  {url}/v1/runs/{run}/metrics")
    print("(run `judgeserve up` to keep the API serving)")
