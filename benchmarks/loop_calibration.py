"""Calibrate the loop flag's thresholds on the dev half of ``tests/data/loops.jsonl``.

    .venv/bin/python benchmarks/loop_calibration.py [--max-false-alarms 0.01]

For every text the exact-repeat analysis and the near-periodic candidates are computed
once; then every combination of thresholds in the grid below is scored on the dev half:
recall on loops, false alarms on clean texts. Printed: the combinations with the best dev
recall among those within the false-alarm budget, with their held-out (test) figures, and
the wordless-loop thresholds between the longest clean punctuation-only repeat and the
shortest looping one. The defaults of ``NearLoopRule`` and ``RepetitionScorer`` are the
first row, rounded; docs/detectors.md quotes the result.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from judgeserve.detectors._near_periodic import Candidate, NearLoopRule, candidates, text_classes
from judgeserve.detectors.repetition import RepetitionScorer, analyse

REPO = Path(__file__).resolve().parents[1]

GRID: dict[str, list[float]] = {
    "min_word_share": [0.2, 0.3, 0.4],
    "max_data_share": [0.02, 0.05, 0.1],
    "min_covered": [40, 60, 80],
    "many_repeats": [5.0, 6.0, 8.0],
    "few_repeats": [3.5, 4.0, 4.5],
    "few_repeats_coverage": [0.9, 0.95],
    "block_covered": [250, 300, 400],
    "block_repeats": [2.2, 2.5],
}
# +1 where a higher value flags less; ties in dev recall go to the strictest combination.
STRICTER = {"max_data_share": -1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", type=Path, default=REPO / "tests" / "data" / "loops.jsonl")
    parser.add_argument("--max-false-alarms", type=float, default=0.01)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.set.open()]
    exact = RepetitionScorer(near=None)
    items: list[tuple[dict[str, str], bool, list[Candidate], tuple[int, float]]] = []
    for row in rows:
        classes = text_classes(row["text"])
        flagged = exact.loop(row["text"]) is not None
        # The longest wordless periodic span, for the wordless thresholds.
        wordless = (0, 0.0)

        def keep(s: int, u: int, e: int, word: np.ndarray = classes.word) -> bool:
            nonlocal wordless
            if not word[s:u].any() and e - s > wordless[0]:
                wordless = (e - s, (e - s) / (u - s))
            return False

        analyse(classes.ids, loop_ok=keep)
        items.append((row, flagged, candidates(classes), wordless))

    def rates(rule: NearLoopRule, split: str | None) -> tuple[float, float]:
        sel = [it for it in items if split is None or it[0]["split"] == split]
        hit = [it[1] or any(rule(c) for c in it[2]) for it in sel]
        loops = [h for it, h in zip(sel, hit, strict=True) if it[0]["label"] == "loop"]
        clean = [h for it, h in zip(sel, hit, strict=True) if it[0]["label"] == "clean"]
        return sum(loops) / len(loops), sum(clean) / len(clean)

    results = []
    for values in itertools.product(*GRID.values()):
        rule = replace(NearLoopRule(), **dict(zip(GRID, values, strict=True)))
        recall, fa = rates(rule, "dev")
        if fa <= args.max_false_alarms:
            results.append((recall, -fa, values, rule))

    def strictness(values: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(STRICTER.get(k, 1) * v for k, v in zip(GRID, values, strict=True))

    results.sort(key=lambda r: (r[0], r[1], strictness(r[2])), reverse=True)
    print("dev recall  dev FA  test recall  test FA  " + "  ".join(GRID))
    for recall, fa, values, rule in results[:10]:
        t_recall, t_fa = rates(rule, "test")
        print(f"{recall:10.3f}  {-fa:6.3f}  {t_recall:11.3f}  {t_fa:7.3f}  {values}")
    default = NearLoopRule()
    for split in ("dev", "test", None):
        recall, fa = rates(default, split)
        print(f"defaults on {split or 'all'}: recall {recall:.3f}, false alarms {fa:.3f}")
    clean_max = max((it[3] for it in items if it[0]["label"] == "clean"), default=(0, 0.0))
    loop_min = min(
        (it[3] for it in items if it[0]["label"] == "loop" and it[3][0] >= 100), default=(0, 0.0)
    )
    print(f"wordless: longest clean span {clean_max[0]} tokens ({clean_max[1]:.1f} repeats)")
    print(
        f"wordless: shortest looping span of 100+ tokens {loop_min[0]} ({loop_min[1]:.1f} repeats)"
    )


if __name__ == "__main__":
    main()
