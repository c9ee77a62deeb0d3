"""Rebuild ``steady_scores.jsonl``: what the detectors say about one real model's answers.

    python tests/data/build_steady_scores.py [--data ../shared/data] [--model vicuna-13b-v1.3]

One JSON object per MT-Bench turn (160) of one chat model: its ``id`` and the values the
real per-sample scorers give it — ``length.tokens``, ``repetition.loop``,
``truncation.truncated``, and ``reference.chrf`` / ``reference.semscore`` against GPT-4's
answer to the same turn. The alert false-alarm simulation
(``judgeserve.testing.steady_run``) draws each checkpoint of an unchanging model from
these rows, so its per-sample distributions, and how the metrics go together, are a real
model's, not guessed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = (
    "length.tokens",
    "repetition.loop",
    "truncation.truncated",
    "reference.chrf",
    "reference.semscore",
)


def turns(path: Path) -> dict[str, str]:
    out = {}
    for line in path.open(encoding="utf-8"):
        d = json.loads(line)
        for k, turn in enumerate(d["choices"][0]["turns"]):
            out[f"{d['question_id']}/{k}"] = turn
    return out


def main() -> None:
    from judgeserve.detectors.length import LengthScorer
    from judgeserve.detectors.reference import ReferenceScorer
    from judgeserve.detectors.repetition import RepetitionScorer
    from judgeserve.detectors.truncation import TruncationScorer
    from judgeserve.schema import Sample

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--model", default="vicuna-13b-v1.3")
    parser.add_argument("--out", type=Path, default=HERE / "steady_scores.jsonl")
    args = parser.parse_args()
    answers = args.data / "mt_bench" / "model_answer"
    mine, references = turns(answers / f"{args.model}.jsonl"), turns(answers / "gpt-4.jsonl")
    keys = sorted(mine, key=lambda k: tuple(int(x) for x in k.split("/")))
    samples = [
        Sample(run="steady", step=0, id=k.replace("/", "-"), prompt="", completion=mine[k],
               reference=references.get(k))
        for k in keys
    ]
    rows: list[dict[str, object]] = [{"id": f"{args.model}/{k}"} for k in keys]
    for scorer in (LengthScorer(), RepetitionScorer(), TruncationScorer(), ReferenceScorer()):
        for row, scores in zip(rows, scorer.score(samples), strict=True):
            for sc in scores:
                if sc.scorer in METRICS:
                    row[sc.scorer] = round(sc.value, 4) if isinstance(sc.value, float) else sc.value
    with args.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(f"{len(rows)} turns of {args.model} scored into {args.out}")


if __name__ == "__main__":
    main()
