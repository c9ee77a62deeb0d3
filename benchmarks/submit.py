"""Cost of ``JudgeClient.submit`` on the trainer's thread, beside a loop that does no eval.

Wall time includes being preempted by other processes on a busy machine; the thread's
CPU time does not, so both are printed.

Each step of the "training loop" does a fixed amount of numpy work (a stand-in for a
step); the same loop runs without judgeserve and with a submit of 64 samples of ~200
tokens every step, side by side in one run.
"""

from __future__ import annotations

import os

# The stand-in training step runs on one core: with 2 cores, a 2-thread matmul beside the
# API server and the delivery agent oversubscribes the machine, and the wall-clock p99 then
# measures preemption by those processes rather than submit() (a GPU trainer leaves its CPU
# mostly idle). Set before numpy loads its BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile
import time

import numpy as np
from _stack import api_process, pct, table, text

from judgeserve import JudgeClient

STEPS = 400
BATCH = 64


def train_step(a: np.ndarray) -> None:
    for _ in range(3):
        a @ a


def main() -> None:
    a = np.random.default_rng(0).standard_normal((256, 256))
    batch = [{"prompt": text(20, i), "completion": text(200, i)} for i in range(BATCH)]
    with api_process() as url:
        client = JudgeClient(url, run="bench-submit", spool_dir=tempfile.mkdtemp())
        for _ in range(20):  # warm up the sender thread and the connection
            client.submit(0, batch)
        client.flush(30)
        loop_plain: list[float] = []
        loop_eval: list[float] = []
        costs: list[float] = []
        cpu: list[float] = []
        for step in range(STEPS):
            t0 = time.perf_counter()
            train_step(a)
            loop_plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            train_step(a)
            t1 = time.perf_counter()
            c1 = time.thread_time()
            client.submit(step, batch)
            cpu.append(time.thread_time() - c1)
            t2 = time.perf_counter()
            loop_eval.append(t2 - t0)
            costs.append(t2 - t1)
        assert client.flush(60), "not everything was delivered"
        client.close()
    plain, evald = float(np.median(loop_plain)), float(np.median(loop_eval))
    table([
        ("measure", "value", "target"),
        ("submit() p50 per 64-sample batch", f"{pct(costs, 0.5) * 1e3:.3f} ms", ""),
        ("submit() p99 per 64-sample batch", f"{pct(costs, 0.99) * 1e3:.3f} ms", "< 1 ms"),
        ("submit() CPU time p50 (thread)", f"{pct(cpu, 0.5) * 1e3:.3f} ms", ""),
        ("submit() CPU time p99 (thread)", f"{pct(cpu, 0.99) * 1e3:.3f} ms", "< 1 ms"),
        ("loop step without eval (median)", f"{plain * 1e3:.2f} ms", ""),
        ("loop step with submit (median)", f"{evald * 1e3:.2f} ms", ""),
        ("ratio with/without", f"{evald / plain:.3f}x", ""),
    ])


if __name__ == "__main__":
    main()
