"""Which scorers ran on a checkpoint's samples, and why the others did not.

A scorer that cannot run (no memorization index, no reference, no judge configured,
disabled, failing) leaves no score; read alone, the step would look clean. The worker
records each scorer's ``skip_reason`` and failures per run, step and scorer
(:data:`judgeserve.store.scorer_status`); this module sets them beside what was scored.

Scored samples are counted from the scores themselves; a scorer family is the part of
a score's name before the first dot (``memorization.memorized`` → ``memorization``). The
recorded counts of samples not scored are capped at the samples that really lack a
score, so a reason recorded before an index was built, or a failure that a retry
repaired, is not shown once the samples are scored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from ..store import aggregates, samples, scorer_status, scores
from ._base import _reads

__all__ = ["step_scorer_status", "NOT_RUN_WORDS"]

# How a summary names samples not scored, by why.
NOT_RUN_WORDS = {"skipped": "not checked", "failed": "failed", "disabled": "not run"}
NO_REASON = "gave no score (the scorer said no reason)"


def _family(column: Any, dialect: str) -> ColumnElement[str]:
    """The part of ``column`` before its first dot, in SQL."""
    if dialect == "postgresql":
        return func.split_part(column, ".", 1)
    return func.substr(column, 1, func.instr(column + ".", ".") - 1)


@_reads
def step_scorer_status(conn: Connection, run: str, step: int) -> list[dict[str, Any]]:
    """Each scorer family seen at this step: ``{"scorer", "state", "samples", "scored",
    "not_scored": [{"kind", "reason", "samples"}], "summary"}``.

    ``state`` is ``ran`` (every sample scored), ``partial`` or ``not run``; ``kind`` is
    ``skipped`` (the scorer said why), ``failed`` (it raised: the error) or
    ``disabled``; ``summary`` is the line shown to users, e.g. "memorization: not
    checked — no index for run R (...)". Set scorers (``diversity``) score the step's
    samples together: all of them or none.
    """
    at = and_(scores.c.run == run, scores.c.step == step)
    total = int(
        conn.execute(
            select(func.count()).where(and_(samples.c.run == run, samples.c.step == step))
        ).scalar_one()
    )
    dialect = conn.dialect.name
    fam = _family(scores.c.scorer, dialect)
    scored = {
        f: int(n)
        for f, n in conn.execute(
            select(fam, func.count(func.distinct(scores.c.sample_id))).where(at).group_by(fam)
        )
    }
    agg_fam = _family(aggregates.c.metric, dialect)
    set_ran = {
        f
        for (f,) in conn.execute(
            select(agg_fam)
            .where(and_(aggregates.c.run == run, aggregates.c.step == step))
            .group_by(agg_fam)
        )
    } - set(scored)
    recorded: dict[str, list[tuple[str, str, int]]] = {}
    q = select(
        scorer_status.c.scorer, scorer_status.c.kind, scorer_status.c.reason, scorer_status.c.n
    ).where(and_(scorer_status.c.run == run, scorer_status.c.step == step))
    for scorer, kind, reason, n in conn.execute(q):
        recorded.setdefault(scorer, []).append((kind, reason, int(n)))
    out = []
    for name in sorted(set(scored) | set_ran | set(recorded)):
        # A set scorer's rows are its last recompute's: they outrank older metrics.
        done = scored.get(name, total if name in set_ran and name not in recorded else 0)
        out.append(_status(name, total, done, recorded.get(name, [])))
    return out


def _status(
    name: str, total: int, done: int, recorded: list[tuple[str, str, int]]
) -> dict[str, Any]:
    left = max(total - done, 0)
    missing = []
    # Most common first; counts capped at what is really unscored (see the module doc).
    for kind, reason, n in sorted(recorded, key=lambda r: (-r[2], r[0], r[1])):
        shown = min(n, left)
        if shown:
            missing.append({"kind": kind, "reason": reason, "samples": shown})
            left -= shown
    if left:
        missing.append({"kind": "skipped", "reason": NO_REASON, "samples": left})
    state = "ran" if not missing else "not run" if done == 0 else "partial"
    return {
        "scorer": name,
        "state": state,
        "samples": total,
        "scored": done,
        "not_scored": missing,
        "summary": _summary(name, total, done, missing),
    }


def _summary(name: str, total: int, done: int, missing: list[dict[str, Any]]) -> str:
    if not missing:
        return f"{name}: ran on all {total} samples"
    parts = []
    for m in missing:
        words = f"{NOT_RUN_WORDS.get(m['kind'], m['kind'])} — {m['reason']}"
        parts.append(words if done == 0 and len(missing) == 1 else f"{m['samples']} {words}")
    head = f"{name}: " if done == 0 else f"{name}: ran on {done} of {total} samples; "
    return head + "; ".join(parts)
