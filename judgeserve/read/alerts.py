"""Alerts, by run and project, and the live stamp pages poll."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from ..schema import Alert
from ..store import (
    aggregates,
    alerts,
    plain,
    runs,
)
from ._base import _alert_where, _project_runs, _reads

__all__ = ["list_alerts", "count_alerts", "alert_run", "alerts_after", "live_stamp"]

# -- alerts -------------------------------------------------------------------------------


@_reads
def list_alerts(
    conn: Connection,
    run: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
    project: str | None = None,
) -> list[Alert]:
    """Alerts, newest first: of one run or all, by state, of one project's runs."""
    q = (
        select(alerts)
        .where(*_alert_where(run, state, project))
        .order_by(alerts.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [Alert.model_validate(plain(r)) for r in conn.execute(q).mappings()]


@_reads
def count_alerts(
    conn: Connection, run: str | None = None, state: str | None = None, project: str | None = None
) -> int:
    q = select(func.count()).select_from(alerts).where(*_alert_where(run, state, project))
    return int(conn.execute(q).scalar_one())


@_reads
def alert_run(conn: Connection, alert_id: int) -> str | None:
    """The run an alert belongs to, or None when there is no such alert."""
    row = conn.execute(select(alerts.c.run).where(alerts.c.id == alert_id)).first()
    return str(row.run) if row else None


@_reads
def alerts_after(
    conn: Connection, run: str | None, after_id: int, limit: int = 20, project: str | None = None
) -> list[dict[str, Any]]:
    """Alerts newer than ``after_id``, oldest first (what a live page has not seen)."""
    q = (
        select(
            alerts.c.id,
            alerts.c.run,
            alerts.c.step,
            alerts.c.rule,
            alerts.c.severity,
            alerts.c.message,
        )
        .where(and_(alerts.c.id > after_id, *_alert_where(run, None, project)))
        .order_by(alerts.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


@_reads
def live_stamp(conn: Connection, run: str | None, project: str | None = None) -> str:
    """A string that changes whenever a step, a score or an alert a page shows changes.

    For one run it also covers the aggregates of its last step, which the worker writes
    after the samples (one primary-key lookup); for all runs, the runs' last update.
    """
    if run is None:
        updated = conn.execute(
            select(func.max(runs.c.updated)).where(*_project_runs(project))
        ).scalar()
        part = str(updated)
    else:
        row = conn.execute(
            select(runs.c.updated, runs.c.last_step).where(runs.c.name == run)
        ).first()
        agg = None
        if row is not None:
            agg = conn.execute(
                select(func.max(aggregates.c.updated)).where(
                    and_(aggregates.c.run == run, aggregates.c.step == row.last_step)
                )
            ).scalar()
        part = f"{row.updated if row else None}/{agg}"
    last_alert = conn.execute(
        select(func.max(alerts.c.id)).where(*_alert_where(run, None, project))
    ).scalar()
    open_alerts = conn.execute(
        select(func.count()).select_from(alerts).where(*_alert_where(run, "open", project))
    ).scalar()
    return f"{part}|{last_alert or 0}|{open_alerts or 0}"
