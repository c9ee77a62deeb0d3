"""Ranking chat models by the embedded reference judge, against a public leaderboard.

    .venv/bin/python benchmarks/reference_ranking.py [--data ../shared/data] [--reference gpt-4]

MT-Bench answers of 32 models (80 questions x 2 turns): one strong model's answers are
the references, every other model is a "checkpoint" whose samples are scored like the
worker scores them, and the per-model means are ranked against the MT-Bench scores of the
LMSYS leaderboard (2023-06-22). Printed: Spearman's rho with a 95% bootstrap interval
(resampling questions, 2,000 draws) for the plain ``reference.semscore`` mean and for
the combined ``reference.score`` (length control and degenerate-output penalties), plus
the ablations in between.

MiniLM embeds ~34 texts/s on this 2-core machine, so embeddings are cached on disk
(``~/.cache/judgeserve/mt_bench_minilm.npz``, keyed by a hash of the text): the first run
embeds ~5,100 texts, later runs take seconds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "judgeserve" / "mt_bench_minilm.npz"

Answers = dict[str, dict[tuple[int, int], str]]  # model -> (question, turn) -> text


def load_answers(data: Path) -> Answers:
    out: Answers = {}
    for path in sorted((data / "mt_bench" / "model_answer").glob("*.jsonl")):
        turns = {}
        for line in path.open():
            d = json.loads(line)
            for k, text in enumerate(d["choices"][0]["turns"]):
                turns[(d["question_id"], k)] = text
        out[path.stem] = turns
    return out


def load_leaderboard(data: Path) -> dict[str, float]:
    with (data / "mt_bench" / "leaderboard_mtbench_arena_20230622.csv").open() as f:
        return {
            row["answer_file_model"]: float(row["mt_bench_score"])
            for row in csv.DictReader(f)
            if row["mt_bench_score"]
        }


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def embeddings(texts: list[str]) -> dict[str, npt.NDArray[np.float32]]:
    """MiniLM vectors by text hash, computed once and kept in :data:`CACHE`."""
    cached: dict[str, npt.NDArray[np.float32]] = {}
    if CACHE.exists():
        with np.load(CACHE) as z:
            cached = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    todo = sorted({_key(t): t for t in texts if _key(t) not in cached}.items())
    if todo:
        from judgeserve.detectors._embeddings import embed

        print(f"embedding {len(todo)} texts (cached in {CACHE}) ...", flush=True)
        for start in range(0, len(todo), 256):
            chunk = todo[start : start + 256]
            vectors = embed([t for _, t in chunk])
            cached.update(zip([k for k, _ in chunk], vectors, strict=True))
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            np.savez(CACHE, keys=np.array(list(cached)), vectors=np.stack(list(cached.values())))
            print(f"  {min(start + 256, len(todo))}/{len(todo)}", flush=True)
    return cached


def lc_intercepts(
    scores: npt.NDArray[np.float64], ratios: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per row (model): the intercept of ``scores ~ tanh(ratios / std)`` (``length_controlled``)."""
    spread = ratios.std(axis=1, keepdims=True)
    t = np.tanh(ratios / np.where(spread > 1e-9, spread, 1.0))
    tc = t - t.mean(axis=1, keepdims=True)
    var = (tc**2).sum(axis=1)
    slope = np.where(
        var > 0,
        (tc * (scores - scores.mean(axis=1, keepdims=True))).sum(axis=1)
        / np.where(var > 0, var, 1.0),
        0.0,
    )
    return scores.mean(axis=1) - slope * t.mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--reference", default="gpt-4")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--embed-only", action="store_true")
    args = parser.parse_args()
    answers = load_answers(args.data)
    vectors = embeddings([t for turns in answers.values() for t in turns.values()])
    if args.embed_only:
        return
    from judgeserve.detectors.length_control import length_controlled
    from judgeserve.detectors.reference import degenerate

    board = load_leaderboard(args.data)
    refs = answers[args.reference]
    items = sorted(refs)
    models = sorted(m for m in answers if m != args.reference and m in board)
    sem = np.array(
        [
            [float(vectors[_key(answers[m][k])] @ vectors[_key(refs[k])]) for k in items]
            for m in models
        ]
    )
    bad = np.array([[degenerate(answers[m][k]) is not None for k in items] for m in models])
    ratio = np.array(
        [
            [np.log((len(answers[m][k].split()) + 1) / (len(refs[k].split()) + 1)) for k in items]
            for m in models
        ]
    )
    combined = np.where(bad, 0.0, sem)
    # The scorer's own function gives the same intercepts as the vectorized bootstrap one.
    check = [length_controlled(combined[i], ratio[i])[0] for i in range(len(models))]
    assert np.allclose(check, lc_intercepts(combined, ratio))
    target = np.array([board[m] for m in models])
    variants = {
        "reference.semscore mean (plain)": lambda idx: sem[:, idx].mean(axis=1),
        "semscore, length-controlled": lambda idx: lc_intercepts(sem[:, idx], ratio[:, idx]),
        "reference.score mean (loops, empty -> 0)": lambda idx: combined[:, idx].mean(axis=1),
        "reference_lc.score (both)": lambda idx: lc_intercepts(combined[:, idx], ratio[:, idx]),
    }
    questions = sorted({q for q, _ in items})
    by_question = {q: [i for i, (qq, _) in enumerate(items) if qq == q] for q in questions}
    rng = np.random.default_rng(0)
    draws = [
        np.concatenate([by_question[q] for q in rng.choice(questions, len(questions))])
        for _ in range(args.draws)
    ]
    everything = np.arange(len(items))
    print(
        f"{len(models)} models ranked against the LMSYS MT-Bench score (2023-06-22), "
        f"{args.reference} answers as references, {len(items)} answers each; "
        f"95% interval: {args.draws} bootstrap draws of the {len(questions)} questions"
    )
    print(
        f"degenerate answers (loop or empty): {bad.mean():.1%} overall, "
        f"most in {models[int(bad.mean(axis=1).argmax())]} ({bad.mean(axis=1).max():.0%})"
    )
    print("| score per model | Spearman rho | 95% CI |")
    print("|---|---|---|")
    for label, fn in variants.items():
        rho = spearmanr(fn(everything), target).statistic
        boot = np.array([spearmanr(fn(idx), target).statistic for idx in draws])
        low, high = np.percentile(boot, [2.5, 97.5])
        print(f"| {label} | {rho:.3f} | {low:.3f} - {high:.3f} |")
    diff = np.array(
        [
            spearmanr(variants["reference_lc.score (both)"](idx), target).statistic
            - spearmanr(variants["reference.semscore mean (plain)"](idx), target).statistic
            for idx in draws
        ]
    )
    print(
        f"reference_lc.score minus plain semscore: rho {diff.mean():+.3f}, "
        f"95% CI {np.percentile(diff, 2.5):+.3f} to {np.percentile(diff, 97.5):+.3f}"
    )


if __name__ == "__main__":
    main()
