"""The one read path: every read the JSON API and the web view make, once.

The API routes (``api/``) and the pages (``web/views/``) call these same functions; a
page adds only presentation (datasette's one ``data()`` feeding JSON and HTML). The
store (:mod:`judgeserve.store`) owns the tables, the engine and the writes.

Every function takes a :class:`~sqlalchemy.engine.Connection` first, so a page makes
all its reads on one connection (``with connect(store) as conn: ...``); a
:class:`~judgeserve.store.Store` or an ``Engine`` works too, for a single read on a
connection of its own. Database errors become :class:`StoreUnavailable` (HTTP 503, in
one place) or :class:`StoreError`. Every list is bounded (``LIMIT``) and walks an index
the store has, so a page costs the same for a run of ten steps as for one of thousands
and 100k+ samples.

Dead letters (samples' and checkpoint jobs') live in Redis, not the database:
:func:`deadletters` reads them through the process's :class:`~judgeserve.stream.Queue`.

One module per subject (:mod:`.runs`, :mod:`.steps`, :mod:`.scorers`: which scorers ran
and why the others did not, :mod:`.alerts`, :mod:`.checkpoints`, :mod:`.costs`: what
judging cost, :mod:`.ops`, :mod:`.labels`: human labels and calibration reports,
:mod:`.judging`: judge versions (drift control), :mod:`.compare`: choosing a
checkpoint, a run's checkpoints ranked by quality and two compared probe by probe, the
statistics from :mod:`judgeserve.ranking`); import the names from ``judgeserve.read``. A
new subject gets a module of its own here.
"""

from __future__ import annotations

from ._base import HEADLINE_PREFERENCE, SEVERITY_RANK, Source, connect
from .alerts import alert_run, alerts_after, count_alerts, list_alerts, live_stamp
from .checkpoints import checkpoint_job, count_checkpoint_jobs, list_checkpoint_jobs, probe_set
from .compare import (
    CheckpointRef,
    ProbeSide,
    best,
    checkpoint_steps,
    compare_checkpoints,
    compare_pairs,
    parse_checkpoint,
    probe_side,
    rank_input,
    ranking,
)
from .costs import judge_cost
from .judging import (
    judge_series,
    labelled_verdicts,
    main_judge_versions,
    rubric_versions,
    step_judge_versions,
    version_dict,
)
from .labels import (
    MAX_LABEL_ROWS,
    judged_candidates,
    label_counts,
    label_export_rows,
    labelled_items,
    labels_with_verdicts,
    latest_calibrations,
    latest_label,
    list_calibrations,
    list_tunes,
)
from .ops import deadletters, list_tokens, token
from .runs import (
    alert_markers,
    count_run_samples,
    count_runs,
    flagged_counts,
    get_run,
    headline_series,
    list_runs,
    metric_series,
    nearest_step,
    nonfinite_metrics,
    open_alerts_by_run,
    run_samples,
    run_steps,
    run_summary_values,
    step_neighbours,
)
from .scorers import step_scorer_status
from .steps import (
    StepFilter,
    count_scored,
    count_step_samples,
    get_sample,
    previous_samples,
    scores_for,
    step_aggregates,
    step_evaluation,
    step_flags,
    step_probes,
    step_samples,
    step_scorers,
)

__all__ = [
    "SEVERITY_RANK",
    "HEADLINE_PREFERENCE",
    "Source",
    "StepFilter",
    "connect",
    # runs
    "list_runs",
    "count_runs",
    "get_run",
    "open_alerts_by_run",
    "headline_series",
    "run_steps",
    "flagged_counts",
    "step_neighbours",
    "nearest_step",
    "metric_series",
    "nonfinite_metrics",
    "run_summary_values",
    "run_samples",
    "count_run_samples",
    "alert_markers",
    # one step
    "step_scorers",
    "step_probes",
    "step_samples",
    "count_step_samples",
    "scores_for",
    "step_aggregates",
    "step_evaluation",
    "step_flags",
    "step_scorer_status",
    # samples
    "get_sample",
    "previous_samples",
    "count_scored",
    # alerts
    "list_alerts",
    "count_alerts",
    "alert_run",
    "alerts_after",
    "live_stamp",
    # checkpoint mode
    "probe_set",
    "list_checkpoint_jobs",
    "count_checkpoint_jobs",
    "checkpoint_job",
    # judge cost
    "judge_cost",
    # choosing a checkpoint
    "CheckpointRef",
    "ProbeSide",
    "parse_checkpoint",
    "checkpoint_steps",
    "rank_input",
    "ranking",
    "best",
    "compare_checkpoints",
    "compare_pairs",
    "probe_side",
    # tokens, dead letters
    "token",
    "list_tokens",
    "deadletters",
    # human labels, calibration and tune reports
    "MAX_LABEL_ROWS",
    "judged_candidates",
    "labelled_items",
    "latest_label",
    "label_counts",
    "labels_with_verdicts",
    "label_export_rows",
    "list_calibrations",
    "latest_calibrations",
    "list_tunes",
    # judge versions: drift control
    "rubric_versions",
    "labelled_verdicts",
    "judge_series",
    "step_judge_versions",
    "main_judge_versions",
    "version_dict",
]
