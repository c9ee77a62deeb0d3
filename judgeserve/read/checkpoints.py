"""Checkpoint mode: probe sets and checkpoint jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from ..store import (
    checkpoint_jobs,
    checkpoints,
    plain,
    probe_sets,
)
from ._base import _reads

__all__ = ["probe_set", "list_checkpoint_jobs", "count_checkpoint_jobs", "checkpoint_job"]

# -- checkpoint mode ----------------------------------------------------------------------


@_reads
def probe_set(conn: Connection, run: str, version: str | None = None) -> dict[str, Any] | None:
    """The run's current probe set (or the given ``version``): ``{"run", "version",
    "probes", "generation", "completions", "set_at"}``; None when there is none."""
    q = select(probe_sets).where(probe_sets.c.run == run)
    if version is not None:
        q = q.where(probe_sets.c.version == version)
    row = conn.execute(q.order_by(probe_sets.c.set_at.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    out = plain(row)
    del out["n_probes"]
    return out


def _job(row: Any) -> dict[str, Any]:
    out = plain(row)  # "evaluated": when the checkpoint's alert rules ran
    # Scored: the generated samples were scored and the checkpoint's alert rules ran.
    if out["state"] == "generated" and out["evaluated"] is not None:
        out["state"] = "scored"
    return out


def _jobs_query() -> Any:
    return select(checkpoint_jobs, checkpoints.c.evaluated).join(
        checkpoints,
        and_(
            checkpoints.c.run == checkpoint_jobs.c.run, checkpoints.c.step == checkpoint_jobs.c.step
        ),
        isouter=True,
    )


@_reads
def list_checkpoint_jobs(
    conn: Connection, run: str, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The run's submitted checkpoints, newest step first: path, kind, probe set, state
    (queued, generating, retrying, generated, scored, failed), reason, generator
    identity, sample count, timings."""
    q = (
        _jobs_query()
        .where(checkpoint_jobs.c.run == run)
        .order_by(checkpoint_jobs.c.step.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_job(r) for r in conn.execute(q).mappings()]


@_reads
def count_checkpoint_jobs(conn: Connection, run: str) -> int:
    q = select(func.count()).select_from(checkpoint_jobs).where(checkpoint_jobs.c.run == run)
    return int(conn.execute(q).scalar_one())


@_reads
def checkpoint_job(conn: Connection, run: str, step: int) -> dict[str, Any] | None:
    """One submitted checkpoint (as :func:`list_checkpoint_jobs` lists them), or None."""
    q = _jobs_query().where(and_(checkpoint_jobs.c.run == run, checkpoint_jobs.c.step == step))
    row = conn.execute(q).mappings().first()
    return _job(row) if row else None
