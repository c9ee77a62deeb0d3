"""Rebuild ``loops.jsonl``, the evaluation set of ``repetition.loop``.

    python tests/data/build_loop_set.py [--data ../shared/data]

Three sources, one JSON object per line (``id``, ``label`` loop/clean, ``kind``,
``source``, ``split`` dev/test, ``text``):

* Real MT-Bench answers of 32 chat models, labelled by hand in ``loop_labels.tsv``
  (``loop``, ``clean`` or ``ambiguous``; ambiguous ones are left out of the set). The
  candidates were every turn whose 4-gram repetition exceeds 0.3 or that the first loop
  detector flagged: the place both loops and their look-alikes live.
* Structured answers (lists, code, tables) of the four strongest models that are not
  candidates: ordinary clean answers, the false alarms that matter most.
* Texts written and generated in ``loop_synth.py``: loops of the kinds real data lacks
  (punctuation-only units, songs sung again with one word swapped, tables of contents
  restarting with new numbers) and their clean look-alikes.

``split`` halves the set by a hash of the id: thresholds are calibrated on ``dev`` and
the figures reported on both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loop_synth import clean, loops  # noqa: E402

STRONG = ["gpt-4", "claude-v1", "gpt-3.5-turbo", "claude-instant-v1"]
STRUCTURED = re.compile(r"^\s*(\d+[.)]|[-*•]|\|)\s|^```", re.MULTILINE)
STRONG_PER_MODEL = 40


def split_of(key: str) -> str:
    return "dev" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "test"


def turns(data: Path) -> dict[str, str]:
    out = {}
    for path in sorted((data / "mt_bench" / "model_answer").glob("*.jsonl")):
        for line in path.open():
            d = json.loads(line)
            for k, turn in enumerate(d["choices"][0]["turns"]):
                out[f"{path.stem}/{d['question_id']}/{k}"] = turn
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "loops.jsonl")
    args = parser.parse_args()
    texts = turns(args.data)
    labels = {}
    for line in (HERE / "loop_labels.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, label, *_ = line.split("\t")
            labels[key] = label
    rows = []
    for key, label in sorted(labels.items()):
        if label == "ambiguous":
            continue
        kind = "real_loop" if label == "loop" else "real_lookalike"
        rows.append(
            {
                "id": f"mt_bench:{key}",
                "label": label,
                "kind": kind,
                "source": f"mt_bench:{key.split('/')[0]}",
                "text": texts[key],
            }
        )
    for model in STRONG:
        keys = sorted(
            k
            for k in texts
            if k.startswith(model + "/") and k not in labels and STRUCTURED.search(texts[k])
        )
        step = max(1, len(keys) // STRONG_PER_MODEL)
        for key in keys[::step][:STRONG_PER_MODEL]:
            rows.append(
                {
                    "id": f"mt_bench:{key}",
                    "label": "clean",
                    "kind": "real_structured",
                    "source": f"mt_bench:{model}",
                    "text": texts[key],
                }
            )
    for label, items in (("loop", loops()), ("clean", clean())):
        for n, (kind, text) in enumerate(items):
            rows.append(
                {
                    "id": f"written:{kind}:{n}",
                    "label": label,
                    "kind": kind,
                    "source": "written",
                    "text": text,
                }
            )
    with args.out.open("w") as f:
        for row in rows:
            row["split"] = split_of(row["id"])
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_loop = sum(r["label"] == "loop" for r in rows)
    print(f"{len(rows)} texts: {n_loop} loops, {len(rows) - n_loop} clean -> {args.out}")


if __name__ == "__main__":
    main()
