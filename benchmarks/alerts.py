"""How often the alert rules cry wolf, and how soon they catch a real change.

    .venv/bin/python benchmarks/alerts.py [--rules FILE] [--runs 100] [--checkpoints 50]

Simulated runs (``judgeserve.testing.steady_run``) through the engine's own evaluation:
each checkpoint draws ``n`` answers of one real model's scored MT-Bench answers
(``tests/data/steady_scores.jsonl``), the training loss falling throughout.

* **False alarms**: runs of a model that never changes, for n = 24 and 64 samples per
  checkpoint: how many runs stayed quiet, and which rules fired in the others.
* **Changes caught**: the same runs with a change from the middle checkpoint on (answers
  a third as long, half the answers copying training text, reference similarity 0.15
  lower, three answers in ten looping): how many runs the rule meant for it caught, and
  how many checkpoints after the change.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from judgeserve.alerts import load_rules
from judgeserve.testing.steady_run import SHIFTS, SteadyModel, simulate

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "steady_scores.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=Path, default=None, help="rules file (default rules)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rules = load_rules(args.rules).rules
    model = SteadyModel.from_jsonl(DATA)
    runs, cps = args.runs, args.checkpoints

    print(f"false alarms: {runs} runs of {cps} checkpoints of a model that never changes")
    print(f"{'samples/checkpoint':>18} | {'quiet runs':>10} | rules that fired (runs)")
    for n in (24, 64):
        started = time.perf_counter()
        tally = simulate(rules, model, runs=runs, checkpoints=cps, n=n, seed=args.seed)
        fired = ", ".join(f"{r} {c}" for r, c in tally.fired.most_common()) or "none"
        print(f"{n:>18} | {tally.quiet:>5}/{runs:<4} | {fired}  ({time.perf_counter() - started:.1f} s)")

    at = cps // 2
    print(f"\nchanges caught: the same runs, n = 64, changed from checkpoint {at + 1} on")
    print(f"{'change':>16} | {'rule':>30} | {'caught':>8} | checkpoints after the change")
    for name, (rule, shift) in SHIFTS.items():
        tally = simulate(rules, model, runs=runs, checkpoints=cps, n=64, seed=args.seed + 1,
                         shift=shift, shift_at=at)
        delays = sorted(tally.delays.get(rule, []))
        spread = f"{delays[0]}-{delays[-1]}, median {delays[len(delays) // 2]}" if delays else "-"
        print(f"{name:>16} | {rule:>30} | {len(delays):>3}/{runs:<4} | {spread}")


if __name__ == "__main__":
    main()
