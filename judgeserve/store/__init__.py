"""The store: the engine and every write judgeserve makes (tables in :mod:`.tables`).

SQLite (one file) by default; PostgreSQL by URL when several workers write at once.
Writes are idempotent: a re-delivered sample or score replaces nothing and adds no row.
What the API and the web view read goes through :mod:`judgeserve.read`; the few reads
here are the worker's own (a checkpoint's values and samples, the alert engine's
history), which nothing else makes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Table,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..exceptions import StoreError, StoreUnavailable
from ..schema import Aggregate, Alert, Sample, Score
from .judging import RESCORE_STATES, JudgeWrites
from .tables import (
    JOB_STATES,
    aggregates,
    alerts,
    calibration_reports,
    checkpoint_jobs,
    checkpoints,
    flags,
    judge_aggregates,
    judge_costs,
    judge_verdicts,
    judge_versions,
    labels,
    metadata,
    plain,
    probe_sets,
    run_metrics,
    run_summary,
    runs,
    samples,
    scorer_status,
    scores,
    tokens,
    tune_reports,
)

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "Store",
    "metadata",
    "plain",
    "store_error",
    "nonfinite_name",
    "JOB_STATES",
    "RESCORE_STATES",
    "SQLITE_BUSY_S",
    # the tables, for the read path and the tests
    "aggregates",
    "alerts",
    "calibration_reports",
    "checkpoint_jobs",
    "checkpoints",
    "flags",
    "judge_aggregates",
    "judge_verdicts",
    "judge_versions",
    "judge_costs",
    "labels",
    "probe_sets",
    "run_metrics",
    "run_summary",
    "runs",
    "samples",
    "scorer_status",
    "scores",
    "tokens",
    "tune_reports",
]

log = logging.getLogger(__name__)


# How long a SQLite write waits for another writer's lock before it fails (and the worker
# holds its batch and tries again).
SQLITE_BUSY_S = 30.0


# A step's judge cost before its first judge score is summed in (see judge_costs).
_NO_COST: dict[str, Any] = {
    "scores": 0,
    "judge_calls": 0,
    "cache_hits": 0,
    "judge_s": 0.0,
    "prompt_tokens": None,
    "generated_tokens": None,
}


def _now() -> datetime:
    return datetime.now(UTC)


# Errors that mean "the database cannot be reached now" (down, restarting, a dropped
# connection, a locked SQLite file, a full pool): the same statement may succeed later.
_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def store_error(e: Exception) -> StoreError:
    """The judgeserve error for a database error: :class:`StoreUnavailable` when trying
    again later may work, else :class:`StoreError` (the data was refused)."""
    if isinstance(e, _UNAVAILABLE):
        return StoreUnavailable(f"database unavailable: {e}")
    return StoreError(f"database refused the write: {type(e).__name__}: {e}")


def nonfinite_name(value: float | None) -> str | None:
    """'nan', 'inf' or '-inf' for a value that is not a finite number (None counts as NaN:
    JSON encoders write NaN as null); None for a finite one."""
    if value is None or math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


class Store(JudgeWrites):
    """judgeserve's database: its engine and its writes (reads: :mod:`judgeserve.read`)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_S}
        else:
            kwargs["pool_pre_ping"] = True
            if url.startswith("postgresql") and "connect_timeout" not in url:
                # A partitioned server must not hang a worker forever on connect.
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (SQLAlchemyError, ImportError, ValueError) as e:
            raise StoreError(f"cannot open database {url!r}: {e}") from e
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if create:
            self.create()

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store of ``JUDGESERVE_DATABASE_URL``; build one per process and pass it down."""
        return cls(settings.database_url)

    def create(self) -> None:
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as e:
            raise store_error(e) from e

    def drop(self) -> None:
        metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, committed when the block exits. Errors become
        :class:`StoreUnavailable` (try later) or :class:`StoreError` (data refused, e.g. a
        string the driver cannot encode)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise store_error(e) from e
        except UnicodeError as e:  # sqlite3 raises it unwrapped for text it cannot encode
            raise store_error(e) from e

    def _insert(self, table: Table) -> Any:
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)

    # -- writes ----------------------------------------------------------------------------

    def upsert_run(
        self, conn: Connection, name: str, step: int, rubrics: list[str] | None = None
    ) -> None:
        now = _now()
        ins = self._insert(runs).values(
            name=name, rubrics=rubrics, last_step=step, created=now, updated=now
        )
        set_: dict[str, Any] = {
            "updated": now,
            "last_step": func.max(runs.c.last_step, step)
            if self.dialect == "sqlite"
            else func.greatest(runs.c.last_step, step),
        }
        if rubrics is not None:
            set_["rubrics"] = rubrics
        conn.execute(ins.on_conflict_do_update(index_elements=["name"], set_=set_))

    def save_samples(self, conn: Connection, items: Sequence[Sample]) -> None:
        if not items:
            return
        rows = [
            {
                "run": s.run,
                "id": s.id,
                "step": s.step,
                "checkpoint": s.checkpoint,
                "probe_id": s.probe_id,
                "prompt": s.prompt,
                "completion": s.completion,
                "reference": s.reference,
                "tags": s.tags,
                "created": s.created,
            }
            for s in items
        ]
        conn.execute(self._insert(samples).on_conflict_do_nothing(), rows)

    def save_scores(
        self, conn: Connection, run: str, step: int, sample_id: str, items: Iterable[Score]
    ) -> None:
        self.save_batch_scores(conn, [(run, step, sample_id, items)])

    def save_batch_scores(
        self,
        conn: Connection,
        batch: Iterable[tuple[str, int, str, Iterable[Score]]],
        *,
        replace: bool = False,
    ) -> None:
        """Scores of many samples, ``(run, step, sample id, scores)`` each, in one statement.

        A score already stored is kept (a redelivered sample changes nothing), unless
        ``replace``: a sample rescored on purpose (``judgeserve rescore``) gets the new one.
        """
        rows = [
            {
                "run": run,
                "sample_id": sample_id,
                "scorer": sc.scorer,
                "step": step,
                # NaN is no value (SQLite stores it as NULL anyway, PostgreSQL would average it).
                "value": None
                if sc.value is None or not math.isfinite(sc.value)
                else float(sc.value),
                "is_bool": isinstance(sc.value, bool),
                "details": sc.details,
                "version": sc.version,
            }
            for run, step, sample_id, items in batch
            for sc in items
        ]
        if not rows:
            return
        ins = self._insert(scores)
        if replace:
            # A labelled item's old judge verdict stays measurable (drift control).
            judged = {
                (str(r["run"]), str(r["sample_id"]))
                for r in rows
                if str(r["scorer"]).startswith("judge.")
            }
            self.keep_replaced_verdicts(conn, sorted(judged))
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run", "sample_id", "scorer"],
                    set_={k: ins.excluded[k] for k in ("value", "is_bool", "details", "version")},
                ),
                rows,
            )
        else:
            # A re-delivered sample is re-scored; keeping the first verdict keeps rows stable.
            conn.execute(ins.on_conflict_do_nothing(), rows)

    def save_aggregates(
        self, conn: Connection, run: str, step: int, values: dict[str, Aggregate]
    ) -> None:
        if not values:
            return
        now = _now()
        rows = [
            {"run": run, "step": step, "metric": m, **a.model_dump(), "updated": now}
            for m, a in values.items()
        ]
        ins = self._insert(aggregates)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run", "step", "metric"],
                set_={k: ins.excluded[k] for k in ("mean", "ci_low", "ci_high", "n", "updated")},
                # A recompute that saw fewer samples (a worker behind another one, a partial
                # checkpoint finishing late) must not replace a fuller aggregate.
                where=ins.excluded.n >= aggregates.c.n,
            ),
            rows,
        )

    def save_judge_costs(self, conn: Connection, run: str, step: int) -> None:
        """Recompute a step's judge cost per rubric from its judge scores' details."""
        d = scores.c.details
        q = (
            select(
                scores.c.scorer,
                func.count(),
                func.sum(d["judge_calls"].as_integer()),
                func.sum(d["cache_hits"].as_integer()),
                func.sum(d["judge_s"].as_float()),
                func.sum(d["prompt_tokens"].as_integer()),
                func.sum(d["generated_tokens"].as_integer()),
            )
            .where(
                and_(scores.c.run == run, scores.c.step == step, scores.c.scorer.like("judge.%"))
            )
            .group_by(scores.c.scorer)
        )
        per: dict[str, dict[str, Any]] = {}
        for scorer, n, calls, hits, secs, ptok, gtok in conn.execute(q):
            row = per.setdefault(scorer.split(".")[1], dict(_NO_COST))
            row["scores"] += n
            row["judge_calls"] += calls or 0
            row["cache_hits"] += hits or 0
            row["judge_s"] += secs or 0.0
            for key, value in (("prompt_tokens", ptok), ("generated_tokens", gtok)):
                if value is not None:
                    row[key] = (row[key] or 0) + int(value)
        if not per:
            return
        now = _now()
        rows = [{"run": run, "step": step, "rubric": r, **v, "updated": now} for r, v in per.items()]
        ins = self._insert(judge_costs)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run", "step", "rubric"],
                set_={k: ins.excluded[k] for k in (*_NO_COST, "updated")},
                # A worker that saw fewer of the step's scores must not replace a fuller sum.
                where=ins.excluded.scores >= judge_costs.c.scores,
            ),
            rows,
        )

    def touch_checkpoints(
        self, conn: Connection, expected: Mapping[tuple[str, int], int | None]
    ) -> None:
        """Samples of these ``(run, step)`` checkpoints were just stored; each maps to the
        number of samples its sender said it will have (None: not said)."""
        if not expected:
            return
        now = _now()
        ins = self._insert(checkpoints)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run", "step"],
                set_={
                    "last_sample": now,
                    "expected": func.coalesce(ins.excluded.expected, checkpoints.c.expected),
                },
            ),
            [
                {"run": run, "step": step, "expected": n, "last_sample": now}
                for (run, step), n in sorted(expected.items())
            ],
        )

    def set_expected(self, run: str, step: int, n: int) -> None:
        """Say how many samples checkpoint ``step`` of ``run`` will have (probe set x draws):
        its alert rules then run as soon as that many are stored, not after an idle wait."""
        ins = self._insert(checkpoints).values(run=run, step=step, expected=n)
        with self.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(index_elements=["run", "step"], set_={"expected": n})
            )

    def mark_evaluated(self, run: str, step: int) -> None:
        """The checkpoint's alert rules ran (on the samples it has now): not again."""
        stored = (
            select(func.count())
            .where(and_(samples.c.run == run, samples.c.step == step))
            .scalar_subquery()
        )
        now = _now()
        with self.begin() as conn:
            conn.execute(
                update(checkpoints)
                .where(and_(checkpoints.c.run == run, checkpoints.c.step == step))
                .values(evaluated=now, evaluated_n=stored)
            )
            # A live run page re-reads itself (a checkpoint job there turns "scored").
            conn.execute(update(runs).where(runs.c.name == run).values(updated=now))

    def save_flags(self, conn: Connection, run: str, step: int, items: Iterable[Any]) -> None:
        conn.execute(flags.delete().where(and_(flags.c.run == run, flags.c.step == step)))
        rows = [
            {
                "run": run,
                "step": step,
                "name": f.name,
                "severity": f.severity,
                "message": f.message,
                "details": f.details,
            }
            for f in items
        ]
        if rows:
            conn.execute(flags.insert(), rows)

    def save_scorer_status(
        self,
        conn: Connection,
        counts: Mapping[tuple[str, int, str, str, str], int],
        replace: Iterable[tuple[str, int, str]] = (),
    ) -> None:
        """Add samples not scored, ``(run, step, scorer, kind, reason) -> n``; first drop
        the rows of each ``(run, step, scorer)`` in ``replace`` (set scorers: the status
        of their last recompute)."""
        for run, step, scorer in replace:
            conn.execute(
                scorer_status.delete().where(
                    and_(
                        scorer_status.c.run == run,
                        scorer_status.c.step == step,
                        scorer_status.c.scorer == scorer,
                    )
                )
            )
        merged: dict[tuple[str, int, str, str, str], int] = {}
        for (run, step, scorer, kind, reason), n in counts.items():
            key = (run, step, scorer, kind, reason[:500])  # the column's width
            merged[key] = merged.get(key, 0) + n
        if not merged:
            return
        now = _now()
        ins = self._insert(scorer_status)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["run", "step", "scorer", "kind", "reason"],
                set_={"n": scorer_status.c.n + ins.excluded.n, "updated": now},
            ),
            [
                {"run": run, "step": step, "scorer": scorer, "kind": kind,
                 "reason": reason, "n": n, "updated": now}
                for (run, step, scorer, kind, reason), n in sorted(merged.items())
            ],
        )

    def save_metrics(self, run: str, step: int, values: Mapping[str, float | None]) -> None:
        """Trainer metrics of one step; NaN, ±inf (and None, meaning NaN) are kept as such."""
        now = _now()
        rows = []
        for k, v in values.items():
            bad = nonfinite_name(v)
            rows.append(
                {"run": run, "step": step, "name": k, "value": None if bad else v,
                 "nonfinite": bad, "created": now}
            )
        with self.begin() as conn:
            self.upsert_run(conn, run, step)
            ins = self._insert(run_metrics)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run", "step", "name"],
                    set_={
                        "value": ins.excluded.value,
                        "nonfinite": ins.excluded.nonfinite,
                        "created": now,
                    },
                ),
                rows,
            )

    def save_summary(self, run: str, values: Mapping[str, float | None]) -> None:
        """Values of the whole run (a trainer's end-of-run summary); a name sent again
        replaces its value. Non-finite values are kept as such, as in :meth:`save_metrics`."""
        now = _now()
        rows = []
        for k, v in values.items():
            bad = nonfinite_name(v)
            rows.append({"run": run, "name": k, "value": None if bad else v,
                         "nonfinite": bad, "updated": now})
        with self.begin() as conn:
            self.upsert_run(conn, run, 0)
            ins = self._insert(run_summary)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run", "name"],
                    set_={k: ins.excluded[k] for k in ("value", "nonfinite", "updated")},
                ),
                rows,
            )

    # -- checkpoint mode -------------------------------------------------------------------

    def save_probe_set(self, run: str, version: str, content: Mapping[str, Any]) -> None:
        """Store a probe set (``ProbeSet.model_dump(mode="json")``) as ``run``'s current
        one; the same content again only makes it current again."""
        now = _now()
        ins = self._insert(probe_sets).values(
            run=run,
            version=version,
            probes=content["probes"],
            generation=content["generation"],
            n_probes=len(content["probes"]),
            completions=int(content["completions"]),
            set_at=now,
        )
        with self.begin() as conn:
            self.upsert_run(conn, run, 0)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run", "version"], set_={"set_at": now}
                )
            )

    def queue_checkpoint(self, run: str, step: int, job: Mapping[str, Any]) -> None:
        """A checkpoint job was queued: (re)start its row at ``queued``."""
        values = self._job_row(job)
        ins = self._insert(checkpoint_jobs).values(run=run, step=step, **values)
        with self.begin() as conn:
            self.upsert_run(conn, run, step)
            conn.execute(ins.on_conflict_do_update(index_elements=["run", "step"], set_=values))

    @staticmethod
    def _job_row(job: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "path": job["path"],
            "kind": job["kind"],
            "base_model": job.get("base_model"),
            "probe_set": job["probe_set"],
            "state": "queued",
            "reason": None,
            "generator": None,
            "samples": None,
            "attempts": 0,
            "load_s": None,
            "generate_s": None,
            "submitted": _now(),
            "started": None,
            "finished": None,
        }

    def update_checkpoint_job(
        self,
        run: str,
        step: int,
        state: str,
        *,
        job: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> None:
        """Move a checkpoint job to ``state`` (one of :data:`JOB_STATES`) with more columns
        (``reason``, ``generator``, ``samples``, timings); ``attempts`` counts each start.
        With ``job`` (its payload), a row the API could not write is made first."""
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        now = _now()
        set_: dict[str, Any] = {"state": state, **values}
        if state == "generating":
            set_["started"] = now
            set_["attempts"] = checkpoint_jobs.c.attempts + 1
        if state in ("generated", "failed"):
            set_["finished"] = now
        with self.begin() as conn:
            if job is not None:
                ins = self._insert(checkpoint_jobs).values(run=run, step=step, **self._job_row(job))
                conn.execute(ins.on_conflict_do_nothing())
            conn.execute(
                update(checkpoint_jobs)
                .where(and_(checkpoint_jobs.c.run == run, checkpoint_jobs.c.step == step))
                .values(**set_)
            )
            # A live run page re-reads itself when the run's `updated` moves.
            conn.execute(update(runs).where(runs.c.name == run).values(updated=now))

    def add_alert(self, alert: Alert) -> int | None:
        """Insert an alert; None when its rule already has an open alert on the run."""
        ins = self._insert(alerts).values(**alert.model_dump(exclude={"id"}))
        if alert.state == "open":
            ins = ins.on_conflict_do_nothing(
                index_elements=["run", "rule"], index_where=text("state = 'open'")
            )
        with self.begin() as conn:
            res = conn.execute(ins)
            # Nothing inserted: SQLite says rowcount 0 (its lastrowid is stale), and
            # PostgreSQL returns no key row.
            key: Any = res.inserted_primary_key
            if res.rowcount == 0 or key is None or key[0] is None:
                return None
            return int(key[0])

    def resolve_alert(self, alert_id: int) -> bool:
        with self.begin() as conn:
            res = conn.execute(
                update(alerts)
                .where(and_(alerts.c.id == alert_id, alerts.c.state == "open"))
                .values(state="resolved", resolved_at=_now())
            )
            return bool(res.rowcount)

    def add_token(self, token_id: str, project: str, name: str, secret_hash: str) -> None:
        with self.begin() as conn:
            conn.execute(
                tokens.insert().values(
                    id=token_id, project=project, name=name, hash=secret_hash,
                    created=_now(), revoked=False,
                )
            )

    def revoke_token(self, token_id: str) -> bool:
        with self.begin() as conn:
            res = conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
            return bool(res.rowcount)

    def claim_run(self, run: str, project: str) -> str | None:
        """Register ``run`` for ``project`` unless it exists; returns the run's owner."""
        now = _now()
        with self.begin() as conn:
            ins = self._insert(runs).values(
                name=run, project=project, last_step=0, created=now, updated=now
            )
            conn.execute(ins.on_conflict_do_nothing())
            row = conn.execute(select(runs.c.project).where(runs.c.name == run)).first()
        return row.project if row else None

    # -- human labels ------------------------------------------------------------------------

    def save_labels(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store labels (columns of ``labels``); a labeller's new label of an item replaces
        their old one, so importing the same file twice changes nothing."""
        if not rows:
            return
        ins = self._insert(labels)
        keys = ("value", "baseline_id", "project", "rubric_version", "details", "created")
        with self.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run", "sample_id", "rubric", "criterion", "labeller"],
                    set_={k: ins.excluded[k] for k in keys},
                ),
                [{"details": {}, "created": _now(), **r} for r in rows],
            )

    def delete_label(self, label_id: int) -> bool:
        with self.begin() as conn:
            return bool(conn.execute(labels.delete().where(labels.c.id == label_id)).rowcount)

    def save_calibration(self, report: Mapping[str, Any]) -> None:
        """Keep a calibration report (``CalibrationReport.model_dump(mode="json")``)."""
        row = {"rubric": report["rubric"], "rubric_version": str(report["rubric_version"])}
        with self.begin() as conn:
            conn.execute(calibration_reports.insert().values(**row, report=dict(report), created=_now()))

    def save_tune_report(self, report: Mapping[str, Any]) -> None:
        """Keep a tune report (``TuneReport.model_dump(mode="json")``)."""
        row = {"rubric": report["rubric"], "rubric_version": str(report["rubric_version"])}
        with self.begin() as conn:
            conn.execute(tune_reports.insert().values(**row, report=dict(report), created=_now()))

    # -- the worker's reads ------------------------------------------------------------------

    def all_step_samples(self, run: str, step: int) -> list[Sample]:
        """Every sample of a checkpoint, for set-level scorers."""
        q = select(samples).where(and_(samples.c.run == run, samples.c.step == step))
        with self.begin() as conn:
            return [Sample.model_validate(plain(r)) for r in conn.execute(q).mappings()]

    def step_score_values(self, run: str, step: int) -> dict[str, list[float]]:
        """Per-sample values of every numeric scorer at one step, for aggregates."""
        q = select(scores.c.scorer, scores.c.value).where(
            and_(scores.c.run == run, scores.c.step == step, scores.c.value.is_not(None))
        )
        out: dict[str, list[float]] = {}
        with self.begin() as conn:
            for scorer, value in conn.execute(q):
                out.setdefault(scorer, []).append(float(value))
        return out

    # -- the alert engine's reads (the worker's checkpoint hook) --------------------------------------------------------------------

    def latest_alerts(self, run: str) -> dict[str, Alert]:
        """The most recent alert of each rule on a run (for de-duplication)."""
        q = select(alerts).where(alerts.c.run == run).order_by(alerts.c.id)
        with self.begin() as conn:
            return {r["rule"]: Alert.model_validate(plain(r)) for r in conn.execute(q).mappings()}

    def run_flags(self, run: str) -> dict[str, list[int]]:
        """Steps at which each checkpoint flag was raised."""
        q = select(flags.c.name, flags.c.step).where(flags.c.run == run).order_by(flags.c.step)
        out: dict[str, list[int]] = {}
        with self.begin() as conn:
            for name, step in conn.execute(q):
                out.setdefault(name, []).append(int(step))
        return out

    def complete_checkpoints(self, idle_s: float, limit: int = 100) -> list[tuple[str, int]]:
        """Checkpoints not yet evaluated that are complete: as many samples stored as
        expected, or none stored for ``idle_s`` seconds. Oldest first."""
        stored = (
            select(func.count())
            .where(and_(samples.c.run == checkpoints.c.run, samples.c.step == checkpoints.c.step))
            .scalar_subquery()
        )
        quiet_since = _now() - timedelta(seconds=idle_s)
        q = (
            select(checkpoints.c.run, checkpoints.c.step)
            .where(
                and_(
                    checkpoints.c.evaluated.is_(None),
                    checkpoints.c.last_sample.is_not(None),
                    or_(
                        checkpoints.c.last_sample <= quiet_since,
                        and_(checkpoints.c.expected.is_not(None), stored >= checkpoints.c.expected),
                    ),
                )
            )
            .order_by(checkpoints.c.last_sample)
            .limit(limit)
        )
        with self.begin() as conn:
            return [(str(r), int(s)) for r, s in conn.execute(q)]

    def step_score_ids(self, run: str, step: int, scorer: str) -> list[tuple[str, float]]:
        """``(sample id, value)`` of one scorer at one step: evidence for alerts. Values of
        boolean scorers (``repetition.loop``) come back as bools."""
        q = select(scores.c.sample_id, scores.c.value, scores.c.is_bool).where(
            and_(
                scores.c.run == run,
                scores.c.step == step,
                scores.c.scorer == scorer,
                scores.c.value.is_not(None),
            )
        )
        with self.begin() as conn:
            return [(str(i), bool(v) if b else float(v)) for i, v, b in conn.execute(q)]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout rides out short write locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
    cur.close()
