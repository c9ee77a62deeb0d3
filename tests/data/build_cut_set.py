"""Rebuild ``cut_endings.jsonl``: answers cut mid-word, and complete answers that look cut.

    python tests/data/build_cut_set.py [--data ../shared/data]

One JSON object per line: ``id``, ``label`` (``cut`` / ``complete``), ``kind``, ``text``.

* ``cut_short`` / ``cut_anywhere``: complete answers of GPT-4, Claude and GPT-3.5 cut
  inside a word, after about ten characters ("Paris is th") or at a random word. The cut
  falls at a random character inside the word, not at a tokenizer's piece boundary, so
  no tokenizer is favoured.
* ``cut_real``: MT-Bench answers that really stopped mid-word at the length limit.
  They and ``complete_rare_word`` were found by the vocabulary test itself (see below).
* ``complete``: the same strong answers, whole.
* ``complete_rare_word``: answers ending without a period on a complete but rare word
  ("photosynthesis", "jargon"): a tokenizer's vocabulary holds neither as a whole word.
* ``complete_name_code``: endings a cut detector must leave alone: names, code, commands,
  addresses, abbreviations.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRONG = ["gpt-4", "claude-v1", "gpt-3.5-turbo", "claude-instant-v1"]
PER_MODEL = 40

# Complete answers that end, without a final period, on a word MiniLM's vocabulary does not
# hold whole: found by scanning every MT-Bench turn that ends on a lowercase word, and read.
# (Selected by the vocabulary test itself, so they are its worst case, not a sample.)
RARE_WORDS = [
    "chatglm-6b/92/1",
    "chatglm-6b/157/0",
    "dolly-v2-12b/157/0",
    "falcon-40b-instruct/84/0",
    "falcon-40b-instruct/87/0",
    "falcon-40b-instruct/148/0",
    "falcon-40b-instruct/157/0",
    "gpt4all-13b-snoozy/122/0",
    "gpt4all-13b-snoozy/126/0",
    "gpt4all-13b-snoozy/153/1",
    "guanaco-33b/95/1",
    "guanaco-33b/131/0",
    "guanaco-33b/157/0",
    "guanaco-65b/143/1",
    "guanaco-65b/160/1",
    "mpt-30b-instruct/83/0",
    "nous-hermes-13b/83/1",
    "nous-hermes-13b/86/1",
    "nous-hermes-13b/124/1",
    "nous-hermes-13b/144/0",
    "rwkv-4-raven-14b/146/1",
    "rwkv-4-raven-14b/152/0",
    "rwkv-4-raven-14b/157/1",
    "stablelm-tuned-alpha-7b/135/0",
    "stablelm-tuned-alpha-7b/147/0",
    "tulu-30b/88/1",
    "wizardlm-13b/125/0",
]
# The same scan's answers that really stop inside a word at the length limit (also
# selected by the test: they show it on real fragments, they are not a detection rate).
REAL_CUTS = [
    "baize-v2-13b/158/1",
    "chatglm-6b/136/1",
    "falcon-40b-instruct/89/0",
    "falcon-40b-instruct/99/0",
    "falcon-40b-instruct/107/1",
    "fastchat-t5-3b/155/1",
    "gpt4all-13b-snoozy/88/1",
    "guanaco-33b/88/1",
    "lima-whole-13b/126/1",
    "lima-whole-13b/145/0",
    "lima-whole-13b/147/1",
    "lima-whole-13b/148/0",
    "llama-13b/158/1",
    "nous-hermes-13b/88/1",
    "oasst-sft-7-llama-30b/93/0",
    "rwkv-4-raven-14b/83/0",
    "rwkv-4-raven-14b/121/1",
    "rwkv-4-raven-14b/153/1",
]
NAMES_CODE = [
    "Best regards,\nAnn",
    "Sincerely,\nZylo Starcaster",
    "Thanks,\nMaría",
    "Yours truly,\nthe support team",
    "Cheers,\nDr. Okafor",
    "Install it with:\n\npip install numpy",
    "Then load it:\n\nimport numpy as np",
    "Commit your work with git commit -am wip",
    "Run the tests: pytest -q",
    "The function returns left_hca if left_hca else right_hca",
    "Call the helper like this: result = compute_total",
    "Set the variable: export PYTHONPATH=src",
    "Open https://example.com/docs/install",
    "Write to support@example.com",
    "See the file src/utils/strings",
    "The answer is x",
    "Let y = 2x + 3, so the slope is m",
    "The capital of France is Paris",
    "My favourite programming languages are Python, Rust and Go",
    "Languages:\n- English\n- Spanish\n- Mandarin",
    "It was a pleasure, see you soon",
    "Let me know what you think",
    "That's all for today, bye",
    "Sounds good to me, ok",
    "Great job, keep it up",
    "The recipe serves four and takes an hour",
    "Use the `--force` flag with care: rm -rf build",
    "The unit is km",
    "Total: 42 kg",
    "It works on macOS and iOS",
]


def mid_word_cut(text: str, rng: random.Random, start: int, end: int) -> int | None:
    """A cut position strictly inside an ASCII-lowercase word of ``text[start:end]``."""
    words = [m for m in re.finditer(r"[a-z]{4,}", text) if start <= m.start() < end]
    if not words:
        return None
    m = rng.choice(words) if end - start > 40 else words[0]
    return rng.randrange(m.start() + 2, m.end())  # at least two letters kept, one lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "cut_endings.jsonl")
    args = parser.parse_args()
    texts = {}
    for path in sorted((args.data / "mt_bench" / "model_answer").glob("*.jsonl")):
        for line in path.open():
            d = json.loads(line)
            for k, turn in enumerate(d["choices"][0]["turns"]):
                texts[f"{path.stem}/{d['question_id']}/{k}"] = turn
    rng = random.Random(14)
    rows = []
    for model in STRONG:
        keys = sorted(k for k in texts if k.startswith(model + "/"))
        for key in rng.sample(keys, PER_MODEL):
            text = texts[key]
            rows.append({"id": key, "label": "complete", "kind": "complete", "text": text})
            for kind, (a, b) in (("cut_short", (6, 30)), ("cut_anywhere", (0, len(text)))):
                cut = mid_word_cut(text, rng, a, b)
                if cut is not None:
                    rows.append(
                        {"id": f"{key}@{cut}", "label": "cut", "kind": kind, "text": text[:cut]}
                    )
    for key in REAL_CUTS:
        rows.append({"id": key, "label": "cut", "kind": "cut_real", "text": texts[key]})
    for key in RARE_WORDS:
        rows.append(
            {"id": key, "label": "complete", "kind": "complete_rare_word", "text": texts[key]}
        )
    for n, text in enumerate(NAMES_CODE):
        rows.append(
            {"id": f"written:{n}", "label": "complete", "kind": "complete_name_code", "text": text}
        )
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} texts -> {args.out}")


if __name__ == "__main__":
    main()
