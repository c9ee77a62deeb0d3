"""Judge calls the verdict cache saves on a collapsed checkpoint, with the toy judge.

    .venv/bin/python benchmarks/cache.py [--n 64] [--redis redis://127.0.0.1:6379/0]

A collapsed checkpoint answers its 64 probes with a few distinct completions. Without the
cache every sample is a judge prompt (what judgeserve did before: one prompt per sample
and criterion); with it, each distinct (judge version, rendered prompt) is asked once, and
the next step saying the same things asks nothing. Measured side by side on one machine,
same backend (transformers, the toy judge) and the shared Redis cache the workers use:

* prompts sent to the judge and wall time, without and with the cache, per number of
  distinct completions (1, 4, 8, and 64: a healthy checkpoint, where the cache can only
  cost its lookups);
* the next step with the same answers (every verdict from Redis).

Ratios: judge calls saved (prompts without / with) and wall time (without / with).
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from _stack import table

from judgeserve.judge.backends.transformers import TransformersBackend
from judgeserve.judge.cache import RedisVerdictCache
from judgeserve.judge.verdicts import Item, Judge
from judgeserve.keys import Keys
from judgeserve.testing.toy_judge import BAD, GOOD, cached_toy_judge, toy_rubric, toy_text


def checkpoint(n: int, distinct: int, seed: int = 5) -> list[Item]:
    rng = random.Random(seed)
    answers = [toy_text(rng, GOOD if k % 2 else BAD, words=40) for k in range(distinct)]
    question = "Answer the probe."
    return [Item(prompt=question, completion=answers[i % distinct]) for i in range(n)]


def side_by_side(
    repeat: int, runs: dict[str, Callable[[], Any]], before: dict[str, Callable[[], Any]]
) -> dict[str, float]:
    """Best wall time of each run, the runs interleaved per round: on a shared machine a
    burst of load then hits every variant alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            before.get(name, lambda: None)()
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="samples in the checkpoint")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the cache")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    backend = TransformersBackend(str(cached_toy_judge()), batch_size=16)
    rubric = toy_rubric()
    client = redis.Redis.from_url(args.redis)
    # A prefix of its own: nothing else's keys are read or dropped.
    cache = RedisVerdictCache(client, Keys(f"bench-{uuid.uuid4().hex[:8]}"), max_entries=100_000)
    uncached = Judge(backend)
    cached = Judge(backend, cache=cache)
    rows = [("measure", "value", "note")]
    try:
        uncached.score(rubric, checkpoint(16, 16))  # warm-up: allocations, kernels
        for distinct in (1, 4, 8, args.n):
            items = checkpoint(args.n, distinct)
            prompts = [
                uncached.builder.render(rubric, "marker", prompt=i.prompt, completion=i.completion)
                for i in items
            ]
            cache.clear()
            cached.take_stats()
            t = side_by_side(
                args.repeat,
                {
                    # Without the cache: every sample is a prompt, as judged before it.
                    "without": lambda ps=prompts: backend.label_probs(ps),
                    "with": lambda it=items: cached.score(rubric, it),
                    # The next step saying the same things: the cache holds every answer.
                    "next": lambda it=items: cached.score(rubric, it),
                },
                {"with": cache.clear},
            )
            asked = cached.take_stats().prompts // args.repeat  # "next" asks none
            cached.score(rubric, items)
            cached.take_stats()
            cached.score(rubric, items)
            asked_next = cached.take_stats().prompts
            cache.clear()
            t_without, t_with, t_next = t["without"], t["with"], t["next"]
            label = f"{args.n} samples, {distinct} distinct"
            rows += [
                (f"{label}: judge prompts without / with cache", f"{args.n} / {asked}",
                 f"{args.n / max(asked, 1):.0f}x fewer judge calls" if asked < args.n
                 else "as many: nothing to share, the cache costs its lookups"),
                (f"{label}: wall time without / with cache",
                 f"{t_without * 1000:.0f} / {t_with * 1000:.0f} ms",
                 f"{t_without / t_with:.1f}x"),
                (f"{label}: next step, same answers", f"{asked_next} prompts, "
                 f"{t_next * 1000:.0f} ms", f"{t_without / t_next:.0f}x faster than uncached"),
            ]
            print(f"  {label}: {args.n} -> {asked} prompts", flush=True)
    finally:
        cache.clear()
        client.close()
        backend.close()
    table(rows)


if __name__ == "__main__":
    main()
