"""What choosing a checkpoint reads: a run's checkpoints ranked, two checkpoints compared.

The statistics are :mod:`judgeserve.ranking`'s (pure); these reads fetch what they need and
hand it over, so the JSON API, the web view, the CLI and the demo give the same answers.

Samples are paired by ``probe_id`` and draw: the ``decoding`` tag the probe runner and the
generator set (``greedy``, ``sampled-0`` ...), else the k-th sample of the probe by id.
Samples without a probe id cannot be paired and are left out; two checkpoints of which
either has none, or whose probe sets differ (ids, or a prompt under the same id), are
:class:`~judgeserve.exceptions.NotComparableError` (the API's 422).

A judge metric whose scores carry a pairwise ``outcome`` is a verdict against a baseline
(1 win, 0.5 tie, 0 loss), not a level: it gets win rates, and never enters the score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from ..exceptions import NotComparableError
from ..ranking import Quality, Ranking, RankInput, compare_sides, rank, win_rate
from ..ranking.paired import Key
from ..store import aggregates, checkpoints, flags, run_metrics, samples, scores
from ._base import _reads
from .judging import step_judge_versions

__all__ = [
    "CheckpointRef",
    "parse_checkpoint",
    "checkpoint_steps",
    "rank_input",
    "ranking",
    "best",
    "compare_checkpoints",
    "compare_pairs",
    "probe_side",
    "ProbeSide",
]

_REF = re.compile(r"^(?:([A-Za-z0-9][A-Za-z0-9._-]{0,127})@)?(\d{1,16})$")
PAIRWISE_KEY = "outcome"  # in a pairwise rubric's score details (judge/scorer.py)
FLAG = "flag."  # a checkpoint flag as a metric, as alert rules name it
SHOWN_PROBES = 10  # probe ids named in a "not the same probe set" message


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as people name it: ``RUN@STEP``."""

    run: str
    step: int

    def __str__(self) -> str:
        return f"{self.run}@{self.step}"


def parse_checkpoint(text: str, run: str | None = None) -> CheckpointRef:
    """``RUN@STEP``, or ``STEP`` of ``run``; ValueError says what is wrong."""
    match = _REF.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not RUN@STEP (e.g. my-run@400)")
    name = match.group(1) or run
    if name is None:
        raise ValueError(f"{text!r} names no run: write RUN@STEP")
    return CheckpointRef(name, int(match.group(2)))


# -- ranking ------------------------------------------------------------------------------


@_reads
def checkpoint_steps(conn: Connection, run: str) -> list[int]:
    """Steps of the run that have aggregates (its scored checkpoints), in order."""
    q = select(aggregates.c.step).where(aggregates.c.run == run).distinct().order_by(aggregates.c.step)
    return [int(s) for s in conn.execute(q).scalars()]


def _pairwise(conn: Connection, run: str, metrics: Sequence[str]) -> set[str]:
    """The judge metrics among ``metrics`` whose scores are pairwise verdicts."""
    out = set()
    for metric in metrics:
        if not metric.startswith("judge."):
            continue
        details = conn.execute(
            select(scores.c.details)
            .where(and_(scores.c.run == run, scores.c.scorer == metric))
            .limit(1)
        ).scalar()
        if isinstance(details, dict) and PAIRWISE_KEY in details:
            out.add(metric)
    return out


@_reads
def rank_input(conn: Connection, run: str, quality: Quality) -> RankInput:
    """The run's checkpoints as :func:`judgeserve.ranking.rank` takes them: per-probe means
    of the quality's metrics, every aggregate mean (for gates), completeness."""
    means: dict[int, dict[str, float | None]] = {}
    for step, metric, mean in conn.execute(
        select(aggregates.c.step, aggregates.c.metric, aggregates.c.mean).where(
            aggregates.c.run == run
        )
    ):
        means.setdefault(int(step), {})[str(metric)] = None if mean is None else float(mean)
    steps = sorted(means)
    # A gate on a checkpoint flag (flag.diversity.collapse) reads 1 where it was raised and
    # 0 at every other checkpoint, as the alert rules read flags.
    flag_gates = {g.metric for g in quality.gates if g.metric.startswith(FLAG)}
    if flag_gates:
        raised = {
            (int(step), f"{FLAG}{name}")
            for step, name in conn.execute(
                select(flags.c.step, flags.c.name).where(flags.c.run == run)
            )
        }
        for step in steps:
            for gate in flag_gates:
                means[step][gate] = 1.0 if (step, gate) in raised else 0.0
    wanted = sorted({m for row in means.values() for m in row if quality.direction(m)})
    excluded = {m: "pairwise verdicts (against a baseline), not a level" for m in
                _pairwise(conn, run, wanted)}
    wanted = [m for m in wanted if m not in excluded]
    probe_of: dict[str, str] = {
        str(i): str(p)
        for i, p in conn.execute(
            select(samples.c.id, samples.c.probe_id).where(
                and_(samples.c.run == run, samples.c.probe_id.is_not(None))
            )
        )
    }
    probes = sorted(set(probe_of.values()))
    col = {p: j for j, p in enumerate(probes)}
    row = {s: i for i, s in enumerate(steps)}
    sums = {m: np.zeros((len(steps), len(probes))) for m in wanted}
    counts = {m: np.zeros((len(steps), len(probes))) for m in wanted}
    if wanted and probes:
        q = select(scores.c.step, scores.c.scorer, scores.c.sample_id, scores.c.value).where(
            and_(scores.c.run == run, scores.c.scorer.in_(wanted), scores.c.value.is_not(None))
        )
        for step, scorer, sample_id, value in conn.execute(q):
            probe = probe_of.get(sample_id)
            i = row.get(int(step))
            if probe is None or i is None:
                continue
            j = col[probe]
            sums[scorer][i, j] += value
            counts[scorer][i, j] += 1
    values = {}
    for m in wanted:
        if not counts[m].any():
            excluded[m] = "set-level (no per-sample values): usable as a gate"
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            values[m] = np.where(counts[m] > 0, sums[m] / counts[m], np.nan)
    complete = {
        int(s): e is not None
        for s, e in conn.execute(
            select(checkpoints.c.step, checkpoints.c.evaluated).where(checkpoints.c.run == run)
        )
    }
    return RankInput(steps, probes, values, means, complete, excluded)


@_reads
def ranking(conn: Connection, run: str, quality: Quality) -> Ranking:
    """The run's checkpoints ranked by ``quality`` (:func:`judgeserve.ranking.rank`)."""
    return rank(rank_input(conn, run, quality), quality)


def _lowest_loss(conn: Connection, run: str, steps: Sequence[int]) -> dict[str, Any] | None:
    """The checkpoint whose training loss (the last logged at or before it) is lowest."""
    logged = [
        (int(s), float(v))
        for s, v in conn.execute(
            select(run_metrics.c.step, run_metrics.c.value)
            .where(and_(run_metrics.c.run == run, run_metrics.c.name == "loss",
                        run_metrics.c.value.is_not(None)))
            .order_by(run_metrics.c.step)
        )
    ]
    if not logged:
        return None
    at = np.array([s for s, _ in logged])
    found = None
    for step in steps:
        i = int(np.searchsorted(at, step, side="right")) - 1
        if i >= 0 and (found is None or logged[i][1] < found["loss"]):
            found = {"step": step, "loss": logged[i][1], "logged_at": logged[i][0]}
    return found


@_reads
def best(conn: Connection, run: str, quality: Quality) -> dict[str, Any]:
    """``GET /v1/runs/{run}/best``: the best checkpoint with its score's CI, the steps that
    cannot be told apart from it, every checkpoint's score and gates, and the checkpoint
    with the lowest training loss (what loss alone would have picked)."""
    ranked = ranking(conn, run, quality)
    out = {"run": run, **ranked.as_dict()}
    out["lowest_loss"] = _lowest_loss(conn, run, [c.step for c in ranked.checkpoints])
    return out


# -- two checkpoints ----------------------------------------------------------------------


@dataclass
class ProbeSide:
    """One checkpoint's samples keyed by (probe, draw): ids, prompts, score values."""

    ref: CheckpointRef
    ids: dict[Key, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)  # probe -> prompt
    values: dict[str, dict[Key, float]] = field(default_factory=dict)  # scorer -> key -> value
    unpaired: int = 0  # samples without a probe id


@_reads
def probe_side(conn: Connection, ref: CheckpointRef) -> ProbeSide:
    """A checkpoint's samples and per-sample scores by (probe, draw)."""
    side = ProbeSide(ref)
    draw = samples.c.tags["decoding"].as_string()
    q = (
        select(samples.c.id, samples.c.probe_id, samples.c.prompt, draw)
        .where(and_(samples.c.run == ref.run, samples.c.step == ref.step))
        .order_by(samples.c.id)
    )
    key_of: dict[str, Key] = {}
    for sid, probe, prompt, decoding in conn.execute(q):
        if probe is None:
            side.unpaired += 1
            continue
        key: Key = (str(probe), str(decoding or ""))
        k = 1
        while key in side.ids:  # no draw tag: the k-th sample of the probe, by id
            key = (str(probe), f"{decoding or ''}#{k}")
            k += 1
        side.ids[key] = str(sid)
        key_of[str(sid)] = key
        side.prompts.setdefault(str(probe), str(prompt))
    q2 = select(scores.c.sample_id, scores.c.scorer, scores.c.value).where(
        and_(scores.c.run == ref.run, scores.c.step == ref.step, scores.c.value.is_not(None))
    )
    for sid, scorer, value in conn.execute(q2):
        found = key_of.get(str(sid))
        if found is not None:
            side.values.setdefault(str(scorer), {})[found] = float(value)
    return side


def _check_comparable(a: ProbeSide, b: ProbeSide) -> None:
    for name, side in (("a", a), ("b", b)):
        if not side.ids:
            what = (f"its {side.unpaired} samples have no probe_id" if side.unpaired
                    else "it has no samples")
            raise NotComparableError(
                name, f"{side.ref} cannot be compared probe by probe: {what} (samples are "
                "paired by probe_id; the callbacks and checkpoint mode set it)"
            )
    only_a = sorted(set(a.prompts) - set(b.prompts))
    only_b = sorted(set(b.prompts) - set(a.prompts))
    if only_a or only_b:
        field_, side, other, extra = ("b", b, a, only_a) if only_a else ("a", a, b, only_b)
        shown = ", ".join(extra[:SHOWN_PROBES]) + (" ..." if len(extra) > SHOWN_PROBES else "")
        raise NotComparableError(
            field_, f"not the same probe set: {other.ref} has {len(other.prompts)} probes, "
            f"{side.ref} has {len(side.prompts)}; {len(extra)} of {other.ref}'s are not at "
            f"{side.ref} ({shown})" + (" — still being scored?" if a.ref.run == b.ref.run else "")
        )
    differ = sorted(p for p in a.prompts if a.prompts[p] != b.prompts[p])
    if differ:
        shown = ", ".join(differ[:SHOWN_PROBES]) + (" ..." if len(differ) > SHOWN_PROBES else "")
        raise NotComparableError(
            "b", f"not the same probe set: {len(differ)} probe(s) have another prompt at "
            f"{b.ref} than at {a.ref} ({shown})"
        )


def _previous_step(conn: Connection, ref: CheckpointRef) -> int | None:
    return conn.execute(
        select(samples.c.step)
        .where(and_(samples.c.run == ref.run, samples.c.step < ref.step))
        .order_by(samples.c.step.desc())
        .limit(1)
    ).scalar()


def _side_info(conn: Connection, side: ProbeSide) -> dict[str, Any]:
    evaluated = conn.execute(
        select(checkpoints.c.evaluated).where(
            and_(checkpoints.c.run == side.ref.run, checkpoints.c.step == side.ref.step)
        )
    ).first()
    return {
        "run": side.ref.run,
        "step": side.ref.step,
        "probes": len(side.prompts),
        "samples": len(side.ids) + side.unpaired,
        "unpaired": side.unpaired,
        "complete": evaluated is not None and evaluated[0] is not None,
    }


@_reads
def compare_checkpoints(
    conn: Connection, a: CheckpointRef, b: CheckpointRef, quality: Quality
) -> dict[str, Any]:
    """``GET /v1/compare``: every per-sample metric of ``b`` against ``a``, paired by probe
    and draw (mean difference ``b - a``, bootstrap CI, Wilcoxon p, Holm over metrics);
    pairwise rubrics' win rates per side; set-level metrics' two values; per judge metric
    the judge versions that scored each side (``judge_versions``: ``{"a", "b", "same"}``,
    version keys). Raises :class:`NotComparableError` when the probe sets differ."""
    side_a, side_b = probe_side(conn, a), probe_side(conn, b)
    _check_comparable(side_a, side_b)
    pairwise = _pairwise(conn, a.run, list(side_a.values)) | _pairwise(
        conn, b.run, list(side_b.values)
    )
    levels_a = {m: v for m, v in side_a.values.items() if m not in pairwise}
    levels_b = {m: v for m, v in side_b.values.items() if m not in pairwise}
    metrics = set(levels_a) | set(levels_b)
    deltas = compare_sides(
        levels_a, levels_b, quality.confidence, {m: quality.direction(m) for m in metrics}
    )
    win_rates: dict[str, dict[str, Any]] = {}
    for metric in sorted(pairwise):
        entry: dict[str, Any] = {}
        for name, side in (("a", side_a), ("b", side_b)):
            if metric in side.values:
                w = win_rate(side.values[metric], quality.confidence)
                entry[name] = {
                    "mean": w.mean, "ci_low": w.ci_low, "ci_high": w.ci_high, "n": w.n,
                    "baseline_step": _previous_step(conn, side.ref),
                }
        # B's verdicts were given against A itself when A is B's previous checkpoint.
        if "b" in entry and a.run == b.run and entry["b"]["baseline_step"] == a.step:
            entry["b_against_a"] = True
        win_rates[metric] = entry
    per_sample = set(side_a.values) | set(side_b.values)
    set_level: dict[str, dict[str, float | None]] = {}
    aggs = {name: _aggregate_means(conn, ref) for name, ref in (("a", a), ("b", b))}
    for metric in sorted((set(aggs["a"]) & set(aggs["b"])) - per_sample):
        va, vb = aggs["a"][metric], aggs["b"][metric]
        set_level[metric] = {
            "a": va, "b": vb, "delta": None if va is None or vb is None else vb - va
        }
    n_probes = len(side_a.prompts)
    # A judge metric judged by different judge versions at a and b measures the judges'
    # difference as much as the checkpoints': say so (drift control).
    judges = {name: step_judge_versions(conn, ref.run, ref.step) for name, ref in (("a", a), ("b", b))}
    judge_versions: dict[str, dict[str, Any]] = {}
    for metric in sorted(m for m in metrics | set(pairwise) if m.startswith("judge.")):
        keys = {
            name: sorted(
                v["judge_version"]["key"]
                for v in [found, *found.get("other_versions", [])]
                if v.get("judge_version")
            )
            for name in ("a", "b")
            if (found := judges[name].get(metric)) is not None
        }
        if keys:
            judge_versions[metric] = {**keys, "same": keys.get("a") == keys.get("b")}
    return {
        "a": _side_info(conn, side_a),
        "b": _side_info(conn, side_b),
        "paired_by": "probe_id and draw (tags.decoding)",
        "probes": n_probes,
        "confidence": quality.confidence,
        "metrics": {d.metric: d.as_dict() for d in deltas},
        "win_rates": win_rates,
        "set_level": set_level,
        "judge_versions": judge_versions,
    }


def _aggregate_means(conn: Connection, ref: CheckpointRef) -> dict[str, float | None]:
    q = select(aggregates.c.metric, aggregates.c.mean).where(
        and_(aggregates.c.run == ref.run, aggregates.c.step == ref.step)
    )
    return {str(m): None if v is None else float(v) for m, v in conn.execute(q)}


@_reads
def compare_pairs(
    conn: Connection,
    a: CheckpointRef,
    b: CheckpointRef,
    sort: str | None = None,
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Probe by probe, the two completions of each (probe, draw) both checkpoints have, with
    every score on both sides and its change ``b - a``: ``(rows, total, scorers)``.

    ``sort``: a scorer (by the size of its change, largest first unless not
    ``descending``; pairs without it last), or None (by probe and draw)."""
    side_a, side_b = probe_side(conn, a), probe_side(conn, b)
    _check_comparable(side_a, side_b)
    keys = sorted(set(side_a.ids) & set(side_b.ids))
    scorers = sorted(set(side_a.values) | set(side_b.values))
    if sort in scorers:
        va, vb = side_a.values.get(sort, {}), side_b.values.get(sort, {})
        known = [k for k in keys if k in va and k in vb]
        known.sort(key=lambda k: abs(vb[k] - va[k]), reverse=descending)
        keys = known + [k for k in keys if k not in va or k not in vb]
    total = len(keys)
    page = keys[offset : offset + limit]
    ids = [side_a.ids[k] for k in page] + [side_b.ids[k] for k in page]
    text: dict[tuple[str, str], str] = {}
    if page:
        for run in {a.run, b.run}:
            q = select(samples.c.id, samples.c.completion).where(
                and_(samples.c.run == run, samples.c.id.in_(ids))
            )
            text.update({(run, str(i)): str(c) for i, c in conn.execute(q)})
    rows = []
    for k in page:
        row: dict[str, Any] = {"probe": k[0], "draw": k[1], "prompt": side_a.prompts[k[0]]}
        for name, side in (("a", side_a), ("b", side_b)):
            sid = side.ids[k]
            row[name] = {
                "id": sid,
                "completion": text.get((side.ref.run, sid), ""),
                "scores": {s: side.values[s][k] for s in scorers if k in side.values.get(s, {})},
            }
        row["deltas"] = {
            s: row["b"]["scores"][s] - row["a"]["scores"][s]
            for s in scorers
            if s in row["a"]["scores"] and s in row["b"]["scores"]
        }
        rows.append(row)
    return rows, total, scorers
