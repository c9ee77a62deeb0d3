"""What the run page draws: a headline chart, metrics grouped into one chart per family
and unit, the trainer's numbers; runs overlaid; sparklines.

The **headline** chart comes first: the training loss against the few signals that
matter — the quality score of the run's ranking, judge scores (else reference
similarity), the memorized share, the loop share, diversity — each on its own scale
(a 0.02 loop share and a 4.1 judge score both fill the height; the legend reads the
values), alert markers, the best checkpoint and the band that cannot be told apart
from it.

Below it a **family** is the scorer family (``length``, ``repetition``, ``memorization``,
``diversity``, ...); judge scores are one family per rubric (``judge.<rubric>``), one
series per criterion, and one series per judge version where the judge changed during
the run (a marker where it did: scores of different judges are never averaged into one
line, :mod:`judgeserve.drift`). One unit per axis: a family whose metrics have different units
(shares 0-1 and token counts) is drawn as one chart per unit. Every family chart also
carries the trainer's loss (``train.loss``) on a second axis over the same steps. The
trainer's counters (flos, runtime, epoch, ...) are hidden until clicked in the legend.
The browser (``static/charts.js``, uPlot) aligns the series on steps and draws CI bands.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ranking import Ranking

__all__ = [
    "family_of", "unit_of", "headline_metrics", "chart_payload", "split_judge_versions",
    "overlay_payload", "sparkline",
    "LOSS", "TOKENS_SEEN",
]

TRAIN = "train."  # the trainer's own metrics (loss, learning rate) in a metric series
LOSS = "train.loss"
# Families drawn first, in this order; the rest follow alphabetically.
FAMILY_ORDER = ("judge", "reference", "memorization", "repetition", "diversity", "truncation", "length")
SHARE = "0-1"
# Units of metrics that are not shares; the rest are shares when their values lie in 0-1.
UNITS = {
    "length.tokens": "tokens",
    "length.chars": "characters",
    "memorization.longest_span": "tokens",
    "reference.chrf": "chrF (0-100)",
    "diversity.self_bleu": "BLEU (0-100)",
    "diversity.vendi": "effective answers",
}
# Trainer numbers that are counters, not signals: drawn hidden (one click shows them).
COUNTER = re.compile(r"flos|runtime|per_second|tokens_seen|^train\.epoch$|^train\.train_loss$")
TOKENS_SEEN = "train.num_input_tokens_seen"
# The headline's signals, in order: judge scores (else reference similarity), memorized
# share, loop share, diversity.
HEADLINE_JUDGE = 3
HEADLINE_ONE_OF = (
    ("memorization.memorized",),
    ("repetition.loop",),
    ("diversity.unique_ratio", "diversity.distinct2", "diversity.embedding_cosine"),
)


def family_of(metric: str) -> str:
    """``judge.helpfulness.clarity`` → ``judge.helpfulness``; ``repetition.loop`` → ``repetition``."""
    parts = metric.split(".")
    if parts[0] == "judge" and len(parts) >= 3:
        return ".".join(parts[:2])
    return parts[0] if len(parts) > 1 else "other"


def unit_of(metric: str, means: Sequence[float | None] = ()) -> str:
    """The unit a metric is drawn in: a known one, a judge's rubric level, a share (0-1)
    when every value lies there, else 'value'."""
    if metric in UNITS:
        return UNITS[metric]
    if metric.startswith("judge."):
        return "rubric level"
    finite = [m for m in means if m is not None and math.isfinite(m)]
    return SHARE if all(0.0 <= m <= 1.0 for m in finite) else "value"


def headline_metrics(metrics: Sequence[str]) -> list[str]:
    """The few signals the headline chart draws, of the metrics a run has."""
    names = sorted(m for m in metrics if not m.startswith(TRAIN))
    judge = [m for m in names if m.startswith("judge.")][:HEADLINE_JUDGE]
    out = judge or [m for m in ("reference.semscore",) if m in names]
    for choices in HEADLINE_ONE_OF:
        found = next((c for c in choices if c in names), None)
        if found:
            out.append(found)
    return out


def _family_key(name: str) -> tuple[int, str]:
    head = name.split(".", 1)[0]
    return (FAMILY_ORDER.index(head) if head in FAMILY_ORDER else len(FAMILY_ORDER), name)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None  # JSON has no NaN


def _ranking_part(ranking: Ranking | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The best checkpoint and its band, and the quality score per checkpoint."""
    if ranking is None:
        return None, {"steps": [], "value": []}
    scored = [c for c in ranking.checkpoints if c.score is not None]
    score = {"steps": [c.step for c in scored], "value": [_num(c.score) for c in scored]}
    best = None
    if ranking.best is not None:
        best = {"step": ranking.best, "band": ranking.band}
    return best, score


def split_judge_versions(
    series: Mapping[str, Sequence[Mapping[str, Any]]], judge: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Sequence[Mapping[str, Any]]], list[dict[str, Any]]]:
    """Judge metrics judged by more than one judge version over the run become one series
    per version, ``<metric> · judge <key>``, never one averaged line; and the steps where a
    version first appears: ``[{"step", "metric", "series", "key", "label"}]``.
    ``judge``: :func:`judgeserve.read.judge_series`."""
    out: dict[str, Sequence[Mapping[str, Any]]] = dict(series)
    changes: list[dict[str, Any]] = []
    for metric, found in judge.items():
        if not found.get("split"):
            continue
        # Steps aggregated before versions were kept per step stay under the plain name.
        covered = {step for v in found["versions"] for step in v["steps"]}
        earlier = [p for p in out.pop(metric, ()) if int(p["step"]) not in covered]
        if earlier:
            out[metric] = earlier
        for v in found["versions"]:
            name = f"{metric} · judge {v['key'][:8] or 'unversioned'}"
            out[name] = [
                {"step": step, "mean": v["mean"][j], "ci_low": v["ci_low"][j],
                 "ci_high": v["ci_high"][j], "n": v["n"][j]}
                for j, step in enumerate(v["steps"])
            ]
            if not v["first"]:
                changes.append({"step": v["first_step"], "metric": metric, "series": name,
                                "key": v["key"], "label": v["label"]})
    return out, changes


def chart_payload(
    series: Mapping[str, Sequence[Mapping[str, Any]]],
    markers: Sequence[Mapping[str, Any]],
    ranking: Ranking | None = None,
    judge: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """JSON for ``charts.js`` from :func:`judgeserve.read.metric_series` (aggregates, and the
    trainer's metrics as ``train.*``), :func:`judgeserve.read.alert_markers` and the run's
    :func:`judgeserve.read.ranking`.

    Columns, not points (flat lists are smaller and faster to encode)::

        {"headline": {"metrics": [...], "score": {"steps", "value"}},
         "best": {"step", "band": [...]} or None,
         "families": [{"name", "unit", "metrics": [{"name", "steps": [...], "mean": [...],
                                                    "lo": [...], "hi": [...]}]}],
         "train": [{"name", "steps": [...], "value": [...], "hidden"}], "alerts": [...],
         "judge_changes": [{"step", "metric", "series", "key", "label"}]}

    ``judge`` (:func:`judgeserve.read.judge_series`) splits judge metrics by judge version
    (:func:`split_judge_versions`).
    """
    series, changes = split_judge_versions(series, judge or {})
    charts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    train: list[dict[str, Any]] = []
    for metric in sorted(series):
        points = series[metric]
        steps = [int(p["step"]) for p in points]
        if metric.startswith(TRAIN):
            train.append({"name": metric, "steps": steps, "value": [_num(p["mean"]) for p in points],
                          "hidden": bool(COUNTER.search(metric))})
            continue
        mean = [_num(p["mean"]) for p in points]
        charts.setdefault((family_of(metric), unit_of(metric, mean)), []).append(
            {
                "name": metric,
                "steps": steps,
                "mean": mean,
                "lo": [_num(p["ci_low"]) for p in points],
                "hi": [_num(p["ci_high"]) for p in points],
            }
        )
    families = []
    for family in sorted({f for f, _ in charts}, key=_family_key):
        # The shares keep the family's name; each other unit gets a chart of its own.
        units = sorted((u for f, u in charts if f == family), key=lambda u: (u != SHARE, u))
        for i, unit in enumerate(units):
            name = family if i == 0 else f"{family} · {unit}"
            families.append({"name": name, "unit": unit, "metrics": charts[(family, unit)]})
    best, score = _ranking_part(ranking)
    return {
        "loss": LOSS,
        "headline": {"metrics": headline_metrics(list(series)), "score": score},
        "best": best,
        "families": families,
        "train": train,
        "alerts": [
            {k: m[k] for k in ("id", "step", "severity", "rule", "state")} for m in markers
        ],
        "judge_changes": changes,
    }


def _tokens_at(points: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]] | None:
    known = [(float(p["step"]), float(p["mean"])) for p in points if p.get("mean") is not None]
    if not known:
        return None
    return [s for s, _ in known], [t for _, t in known]


def _interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """``ys`` at ``x`` on the line through (xs, ys), xs ascending; None outside them."""
    if x < xs[0] or x > xs[-1]:
        return None
    i = bisect.bisect_left(xs, x)
    if xs[i] == x:
        return ys[i]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def overlay_payload(
    runs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], x: str = "step"
) -> dict[str, Any]:
    """JSON for ``compare.js``: every metric of the runs (the loss first, then by family),
    one series per run, its x the step or (``x="tokens"``) the tokens seen by then::

        {"x", "runs": [...], "notes": [...],
         "metrics": [{"name", "unit", "series": [{"run", "label", "version", "x": [...],
                                                  "mean": [...]}]}]}

    A judge metric whose judge version changed during a run is one line per version
    (``label`` names it; ``version`` counts from 0 in the order they appeared).
    """
    notes = []
    tokens = {}
    if x == "tokens":
        for run, series in runs.items():
            found = _tokens_at(series.get(TOKENS_SEEN, ()))
            if found is None:
                notes.append(f"{run} logged no tokens seen ({TOKENS_SEEN}): drawn by step")
            else:
                tokens[run] = found
    names = sorted({m for series in runs.values() for m in series if not COUNTER.search(m)},
                   key=lambda m: (m != LOSS, *_family_key(family_of(m)), m))
    metrics = []
    for metric in names:
        lines = []
        means: list[float | None] = []
        for run, series in runs.items():
            points = series.get(metric)
            if not points:
                continue
            xs: list[float | None] = [float(p["step"]) for p in points]
            if run in tokens:
                xs = [_interpolate(float(p["step"]), *tokens[run]) for p in points]
            mean = [_num(p["mean"]) for p in points]
            # A run whose judge changed: a line per judge version, never one through both.
            versions = list(dict.fromkeys(p.get("judge_version") for p in points))
            for n, version in enumerate(versions):
                keep = [
                    i for i, v in enumerate(xs)
                    if v is not None and points[i].get("judge_version") == version
                ]
                label = run if len(versions) == 1 else f"{run} · judge {(version or 'unversioned')[:8]}"
                lines.append({"run": run, "label": label, "version": n,
                              "x": [xs[i] for i in keep], "mean": [mean[i] for i in keep]})
            means += mean
        unit = metric[len(TRAIN):] if metric.startswith(TRAIN) else unit_of(metric, means)
        metrics.append({"name": metric, "unit": unit, "series": lines})
    return {"x": x, "runs": list(runs), "notes": notes, "metrics": metrics}


def sparkline(values: Sequence[float], width: int = 120, height: int = 28) -> str:
    """SVG polyline ``points`` (numbers only) of ``values`` scaled into the box."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    if hi == lo:  # a flat line sits in the middle
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    n = len(finite)
    step = width / (n - 1) if n > 1 else 0.0
    pad = 2
    pts = []
    for i, v in enumerate(finite):
        x = i * step if n > 1 else width / 2
        y = pad + (height - 2 * pad) * (1 - (v - lo) / span)
        pts.append(f"{x:.1f},{y:.1f}")
    return " ".join(pts)
