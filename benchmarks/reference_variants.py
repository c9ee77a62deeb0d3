"""Can the reference judge rank chat models closer to the leaderboard? Variants, measured.

    .venv/bin/python benchmarks/reference_variants.py [--data ../shared/data] [--draws 2000]

Same data and embeddings as ``reference_ranking.py`` (MT-Bench answers of 32 models,
MiniLM vectors cached in ``~/.cache/judgeserve/mt_bench_minilm.npz``). Every variant is
chosen in advance for a reason, none is fitted to the leaderboard, and all are measured
on one set of models: those with a leaderboard score, less the three whose answers serve
as references (GPT-4, Claude-v1, GPT-3.5-turbo), so the same models are ranked by all.
Printed per variant: Spearman's rho against the LMSYS MT-Bench score, its 95% interval
(bootstrap over questions, both turns of a question drawn together), and the paired
difference to the baseline (``reference.score`` mean, GPT-4's answers as references)
with its interval: a variant is a win only when that interval excludes 0.

The variants:

* per-question normalisation: question difficulty dominates raw SemScore (an open
  writing task scores ~0.5 for every model, a factual one ~0.9), so each answer's score
  is standardised across the models ranked (z-score per question), or replaced by its
  rank among them (Borda count). Needs a population of models or checkpoints answering
  the same probes.
* a ceiling per question without a population: the score divided by how close two strong
  models' answers are to each other on that question (what "as good as a strong model"
  means there).
* several strong models' answers as references: the mean (or max) cosine to GPT-4's,
  Claude-v1's and GPT-3.5's answers.
* first turns only (against both MT-Bench turns, the default).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from reference_ranking import REPO, _key, embeddings, lc_intercepts, load_answers, load_leaderboard
from scipy.stats import rankdata, spearmanr

REFERENCES = ("gpt-4", "claude-v1", "gpt-3.5-turbo")
F64 = npt.NDArray[np.float64]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    from judgeserve.detectors.reference import degenerate

    answers = load_answers(args.data)
    vectors = embeddings([t for turns in answers.values() for t in turns.values()])
    board = load_leaderboard(args.data)
    items = sorted(answers[REFERENCES[0]])
    models = sorted(m for m in answers if m in board and m not in REFERENCES)

    def vec(model: str) -> npt.NDArray[np.float32]:
        return np.stack([vectors[_key(answers[model][k])] for k in items])

    mine = np.stack([vec(m) for m in models])  # models x items x 384
    cos = {r: np.einsum("mid,id->mi", mine, vec(r)) for r in REFERENCES}
    bad = np.array([[degenerate(answers[m][k]) is not None for k in items] for m in models])
    words = np.array([[len(answers[m][k].split()) for k in items] for m in models])
    ref_words = np.array([len(answers["gpt-4"][k].split()) for k in items])
    ratio = np.log((words + 1) / (ref_words + 1))
    # How close two strong answers are to each other: the question's ceiling.
    ceiling = np.einsum("id,id->i", vec("gpt-4"), vec("claude-v1"))

    def zero(x: F64) -> F64:
        return np.where(bad, 0.0, x)

    base = zero(cos["gpt-4"])
    multi = zero(np.mean([cos[r] for r in REFERENCES], axis=0))
    best_of = zero(np.max([cos[r] for r in REFERENCES], axis=0))
    first = np.array([turn == 0 for _, turn in items])

    def z(x: F64, idx: npt.NDArray[np.int64]) -> F64:
        sub = x[:, idx]
        sd = sub.std(axis=0, keepdims=True)
        scaled = (sub - sub.mean(axis=0, keepdims=True)) / np.where(sd > 1e-9, sd, 1.0)
        return np.asarray(scaled.mean(1), dtype=np.float64)

    def borda(x: F64, idx: npt.NDArray[np.int64]) -> F64:
        return np.asarray(rankdata(x[:, idx], axis=0).mean(axis=1), dtype=np.float64)

    variants: dict[str, Callable[[npt.NDArray[np.int64]], F64]] = {
        "baseline: reference.score mean, GPT-4 refs": lambda i: base[:, i].mean(1),
        "plain semscore mean (no degenerate -> 0)": lambda i: cos["gpt-4"][:, i].mean(1),
        "reference_lc.score, GPT-4 refs": lambda i: lc_intercepts(base[:, i], ratio[:, i]),
        "per-question z-score, GPT-4 refs": lambda i: z(base, i),
        "per-question rank (Borda), GPT-4 refs": lambda i: borda(base, i),
        "score / question ceiling (GPT-4 vs Claude)": lambda i: (base[:, i] / ceiling[i]).mean(1),
        "mean cosine to 3 references": lambda i: multi[:, i].mean(1),
        "max cosine to 3 references": lambda i: best_of[:, i].mean(1),
        "3 references + per-question z-score": lambda i: z(multi, i),
        "3 references + length control": lambda i: lc_intercepts(multi[:, i], ratio[:, i]),
        "first turns only, GPT-4 refs": lambda i: base[:, i[first[i]]].mean(1),
    }
    target = np.array([board[m] for m in models])
    questions = sorted({q for q, _ in items})
    by_q = {q: [i for i, (qq, _) in enumerate(items) if qq == q] for q in questions}
    rng = np.random.default_rng(0)
    draws = [
        np.array(np.concatenate([by_q[q] for q in rng.choice(questions, len(questions))]))
        for _ in range(args.draws)
    ]
    everything = np.arange(len(items))

    def rho(fn: Callable[[npt.NDArray[np.int64]], F64], idx: npt.NDArray[np.int64]) -> float:
        return float(spearmanr(fn(idx), target).statistic)

    print(
        f"{len(models)} models (leaderboard less the references {', '.join(REFERENCES)}), "
        f"{len(items)} answers each; 95% intervals from {args.draws} bootstrap draws of the "
        f"{len(questions)} questions"
    )
    print("| score per model | rho | 95% CI | rho - baseline | 95% CI |")
    print("|---|---|---|---|---|")
    baseline = next(iter(variants.values()))
    base_boot = np.array([rho(baseline, idx) for idx in draws])
    for label, fn in variants.items():
        boot = np.array([rho(fn, idx) for idx in draws])
        low, high = np.percentile(boot, [2.5, 97.5])
        d = boot - base_boot
        dl, dh = np.percentile(d, [2.5, 97.5])
        print(
            f"| {label} | {rho(fn, everything):.3f} | {low:.3f} - {high:.3f} | "
            f"{rho(fn, everything) - rho(baseline, everything):+.3f} | {dl:+.3f} to {dh:+.3f} |"
        )


if __name__ == "__main__":
    main()
