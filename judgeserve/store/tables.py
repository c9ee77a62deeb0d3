"""The tables judgeserve keeps (SQLAlchemy Core), one ``metadata`` for all of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = ["metadata", "plain", "JOB_STATES"]

metadata = MetaData()
JOB_STATES = ("queued", "generating", "retrying", "generated", "failed")


def _utc(dt: datetime | None) -> datetime | None:
    # SQLite drops tzinfo; everything judgeserve writes is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


runs = Table(
    "runs",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("project", String(128), nullable=True),
    Column("rubrics", JSON, nullable=True),
    Column("last_step", BigInteger, nullable=False, default=0),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

samples = Table(
    "samples",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("checkpoint", String(256), nullable=True),
    Column("probe_id", String(256), nullable=True),
    Column("prompt", Text, nullable=False),
    Column("completion", Text, nullable=False),
    Column("reference", Text, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_samples_run_step", "run", "step"),
    Index("ix_samples_run_probe", "run", "probe_id", "step"),
)

scores = Table(
    "scores",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("scorer", String(256), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=True),
    Column("is_bool", Boolean, nullable=False, default=False),
    Column("details", JSON, nullable=False),
    Column("version", String(64), nullable=False),
    Index("ix_scores_run_step", "run", "step", "scorer"),
)

aggregates = Table(
    "aggregates",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("metric", String(256), primary_key=True),
    Column("mean", Float, nullable=True),
    Column("ci_low", Float, nullable=True),
    Column("ci_high", Float, nullable=True),
    Column("n", Integer, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

flags = Table(
    "flags",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
)

# Samples a scorer did not score, per checkpoint, scorer and why (no index, no reference,
# judge not configured, disabled, failed): silence would read as "all is well". Scored
# samples are counted from `scores`; `n` can count a redelivered sample twice, so readers
# cap it at the samples not scored.
scorer_status = Table(
    "scorer_status",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("scorer", String(128), primary_key=True),
    Column("kind", String(16), primary_key=True),  # skipped | failed | disabled
    Column("reason", String(500), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

# When a checkpoint is complete, so that its alert rules run once, on all of its samples:
# `expected` is how many samples it will have (set by whoever knows: the trainer's probe
# runner, the generation worker), `last_sample` when the worker last stored one of them.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("expected", Integer, nullable=True),
    Column("last_sample", DateTime(timezone=True), nullable=True),
    Column("evaluated", DateTime(timezone=True), nullable=True),
    Column("evaluated_n", Integer, nullable=True),
    Index(
        "ix_checkpoints_pending",
        "last_sample",
        sqlite_where=text("evaluated IS NULL"),
        postgresql_where=text("evaluated IS NULL"),
    ),
)

# Checkpoint mode. A run's probe sets, by content hash; the newest `set_at` is current.
probe_sets = Table(
    "probe_sets",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("probes", JSON, nullable=False),
    Column("generation", JSON, nullable=False),
    Column("n_probes", Integer, nullable=False),
    Column("completions", Integer, nullable=False),  # probes x draws
    Column("set_at", DateTime(timezone=True), nullable=False),
    Index("ix_probe_sets_current", "run", "set_at"),
)

# One row per submitted checkpoint: where its generation job stands. `state` is queued,
# generating, generated, retrying or failed (with `reason`); "scored" is read off the
# checkpoints table (its alert rules ran).
checkpoint_jobs = Table(
    "checkpoint_jobs",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("path", Text, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("base_model", Text, nullable=True),
    Column("probe_set", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("generator", JSON, nullable=True),  # GeneratorIdentity of the completions
    Column("samples", Integer, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("load_s", Float, nullable=True),
    Column("generate_s", Float, nullable=True),
    Column("submitted", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
)

# A trainer metric that is NaN or infinite (a diverged loss) is kept as such: ``value`` is
# NULL and ``nonfinite`` says which ('nan', 'inf', '-inf'). Neither SQLite (NaN becomes
# NULL) nor comparisons in SQL or Python treat NaN as a number, so it never goes in one.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("value", Float, nullable=True),
    Column("nonfinite", String(8), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

# Values that describe the whole run rather than a step (a trainer's end-of-run summary:
# train_runtime, total_flos ...): the latest value of each name, never a series.
run_summary = Table(
    "run_summary",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("value", Float, nullable=True),
    Column("nonfinite", String(8), nullable=True),
    Column("updated", DateTime(timezone=True), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(128), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("rule", String(256), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("ix_alerts_run_state", "run", "state"),
    # At most one open alert per rule and run, even with many workers checking at once.
    Index(
        "ux_alerts_open_rule",
        "run",
        "rule",
        unique=True,
        sqlite_where=text("state = 'open'"),
        postgresql_where=text("state = 'open'"),
    ),
)


# What judging cost, per step and rubric: sums of the cost each judge score records in
# its details (judge.verdicts.Cost), recomputed from the scores with the step's aggregates.
judge_costs = Table(
    "judge_costs",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("rubric", String(256), primary_key=True),
    Column("scores", Integer, nullable=False),  # judge scores summed (one per criterion)
    Column("judge_calls", Integer, nullable=False),  # requests sent to the judge
    Column("cache_hits", Integer, nullable=False),  # prompts the verdict cache answered
    Column("judge_s", Float, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=True),  # NULL: the backend does not count
    Column("generated_tokens", BigInteger, nullable=True),
    Column("updated", DateTime(timezone=True), nullable=False),
)


tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("hash", String(64), nullable=False),  # sha256 of the secret; the secret is never kept
    Column("created", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)


# Human labels, one per labeller and item (a sample on one criterion of a rubric): a level,
# or pairwise the outcome against `baseline_id` as judge scores are written (1 win, 0 loss).
labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(128), nullable=False),
    Column("sample_id", String(128), nullable=False),
    Column("rubric", String(64), nullable=False),
    Column("criterion", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("baseline_id", String(128), nullable=True),
    Column("labeller", String(128), nullable=False),
    Column("project", String(128), nullable=True),
    Column("rubric_version", String(64), nullable=True),
    Column("details", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ux_labels_item", "run", "sample_id", "rubric", "criterion", "labeller", unique=True),
    Index("ix_labels_rubric", "rubric", "created"),
)

# Reports of `judgeserve calibrate` (a CalibrationReport as JSON), newest shown per rubric.
calibration_reports = Table(
    "calibration_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rubric", String(64), nullable=False),
    Column("rubric_version", String(64), nullable=False),
    Column("report", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_calibration_reports_rubric", "rubric", "created"),
)

# Reports of `judgeserve judge tune` (a TuneReport as JSON): agreement before and after.
tune_reports = Table(
    "tune_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rubric", String(64), nullable=False),
    Column("rubric_version", String(64), nullable=False),
    Column("report", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_tune_reports_rubric", "rubric", "created"),
)


# Judge versions (judgeserve.judge.version) as the workers first saw them, per judge scorer
# (judge.<rubric>.<criterion>), and the re-scoring of the rubric's labelled items with each
# (drift control, judgeserve.drift): pending -> running -> done | failed.
judge_versions = Table(
    "judge_versions",
    metadata,
    Column("scorer", String(256), primary_key=True),
    Column("key", String(16), primary_key=True),
    Column("rubric", String(64), nullable=False),
    Column("criterion", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("backend", String(64), nullable=False),
    Column("prompt_hash", String(128), nullable=False),
    Column("rubric_version", String(64), nullable=False),
    Column("first_run", String(128), nullable=False),
    Column("first_step", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("rescore_state", String(16), nullable=False),
    Column("rescore_by", String(256), nullable=True),  # the worker that re-scores
    Column("rescored", Integer, nullable=False, default=0),
    Column("rescore_total", Integer, nullable=True),
    Column("rescore_reason", Text, nullable=True),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_judge_versions_rubric", "rubric", "first_seen"),
)

# Verdicts of labelled items by judge versions other than the one in `scores` (drift
# control re-scores them): the run's own scores stay as they were judged.
judge_verdicts = Table(
    "judge_verdicts",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("sample_id", String(128), primary_key=True),
    Column("scorer", String(256), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("value", Float, nullable=True),
    Column("details", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_judge_verdicts_scorer", "scorer", "version"),
)

# A judge criterion's aggregate at one step per judge version: charts draw one series per
# version, and `aggregates` holds the step's main version only (`main`), never a mix.
judge_aggregates = Table(
    "judge_aggregates",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("metric", String(256), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("mean", Float, nullable=True),
    Column("ci_low", Float, nullable=True),
    Column("ci_high", Float, nullable=True),
    Column("n", Integer, nullable=False),
    Column("main", Boolean, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)


def plain(r: Any) -> dict[str, Any]:
    """A result row as a dict, its times in UTC (SQLite drops the zone)."""
    d = dict(r)
    for k in (
        "created", "updated", "resolved_at", "last_sample", "evaluated", "set_at",
        "submitted", "started", "finished", "first_seen",
    ):
        if k in d:
            d[k] = _utc(d[k])
    return d
