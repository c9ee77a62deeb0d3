"""Judged samples written as the judge scorer writes them, for the labelling tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from judgeserve.schema import Sample, Score
from judgeserve.store import Store


def judge_details(prompt_hash: str = "ph-one", model: str = "toy-judge", **extra: object) -> dict[str, object]:
    """The details a judge score carries, its judge version among them."""
    return {
        "method": "logprobs",
        "rubric": "helpfulness",
        "rubric_version": "1",
        "judge_backend": "transformers",
        "judge_model": model,
        "prompt_hash": prompt_hash,
        **extra,
    }


def seed_judged(
    store: Store,
    run: str,
    steps: Sequence[int],
    per_step: int,
    value: Callable[[int, int], float | None],
    *,
    rubric: str = "helpfulness",
    criteria: Sequence[str] = ("helpfulness",),
    mass: Callable[[int, int], float] = lambda step, i: 0.95,
    prompt_hash: str = "ph-one",
    project: str | None = None,
) -> list[str]:
    """``per_step`` samples at each step, each judged ``value(step, i)`` on every criterion;
    returns the sample ids (``<run>-s<step>-<i>``)."""
    ids = []
    if project is not None:
        store.claim_run(run, project)  # as the API does for a token's first write
    with store.begin() as conn:
        store.upsert_run(conn, run, max(steps), [rubric])
        for step in steps:
            items = [
                Sample(run=run, step=step, id=f"{run}-s{step}-{i}", prompt=f"Question {i}?",
                       completion=f"Answer {i} at step {step}. " + "more " * i,
                       reference=f"Reference {i}", probe_id=f"p{i}")
                for i in range(per_step)
            ]
            store.save_samples(conn, items)
            for i, s in enumerate(items):
                ids.append(s.id)
                store.save_scores(conn, run, step, s.id, [
                    Score(scorer=f"judge.{rubric}.{c}", value=value(step, i),
                          details=judge_details(prompt_hash, rubric=rubric,
                                                label_mass=mass(step, i)),
                          version="1")
                    for c in criteria
                ])
    return ids
