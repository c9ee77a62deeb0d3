"""What judging a run cost: judge time, tokens, prompts asked and answered by the cache.

Read off ``judge_costs``, which the worker keeps per step and rubric (summed from the
cost each judge score records; :class:`judgeserve.judge.verdicts.Cost`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ..store import judge_costs
from ._base import _reads

__all__ = ["COST_FIELDS", "judge_cost"]

COST_FIELDS = ("scores", "judge_calls", "cache_hits", "judge_s", "prompt_tokens", "generated_tokens")


def _row(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: values.get(k) for k in COST_FIELDS}
    out["judge_s"] = round(float(out["judge_s"] or 0.0), 6)
    for k in ("scores", "judge_calls", "cache_hits"):
        out[k] = int(out[k] or 0)
    for k in ("prompt_tokens", "generated_tokens"):
        out[k] = None if out[k] is None else int(out[k])
    hits: int = out["cache_hits"]
    asked: int = out["judge_calls"] + hits
    out["cache_hit_rate"] = round(hits / asked, 4) if asked else None
    return out


def _sums() -> list[Any]:
    c = judge_costs.c
    return [func.sum(getattr(c, k)).label(k) for k in COST_FIELDS]


@_reads
def judge_cost(conn: Connection, run: str, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """The run's judge cost: ``total`` and per ``rubrics`` over the whole run, and per
    step, newest first (``steps``, ``limit``/``offset``; ``n_steps`` in all). Each holds
    ``scores``, ``judge_calls`` (prompts asked), ``cache_hits`` (prompts the cache
    answered), ``cache_hit_rate``, ``judge_s``, ``prompt_tokens`` and
    ``generated_tokens`` (None when the judge backend does not count tokens)."""
    c = judge_costs.c
    by_rubric = {
        r.rubric: _row(dict(r))
        for r in conn.execute(
            select(c.rubric, *_sums()).where(c.run == run).group_by(c.rubric).order_by(c.rubric)
        ).mappings()
    }
    total = conn.execute(select(*_sums()).where(c.run == run)).mappings().one()
    n_steps = conn.execute(
        select(func.count(func.distinct(c.step))).where(c.run == run)
    ).scalar_one()
    steps = [
        {"step": int(r.step), **_row(dict(r))}
        for r in conn.execute(
            select(c.step, *_sums())
            .where(c.run == run)
            .group_by(c.step)
            .order_by(c.step.desc())
            .limit(limit)
            .offset(offset)
        ).mappings()
    ]
    return {
        "run": run,
        "total": _row(dict(total)),
        "rubrics": by_rubric,
        "n_steps": int(n_steps),
        "steps": steps,
    }
