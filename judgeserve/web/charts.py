"""What the run page draws: metrics grouped into one chart per family, and sparklines.

A family is the scorer family (``length``, ``repetition``, ``memorization``,
``diversity``, ...); judge scores are one family per rubric (``judge.<rubric>``), one
series per criterion. Every chart also carries the trainer's loss (``train.loss``) on
the same step axis, so quality falling while loss falls shows at a glance. The browser
(``static/charts.js``, uPlot) aligns the series on steps and draws CI bands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["family_of", "chart_payload", "sparkline", "LOSS"]

TRAIN = "train."  # the trainer's own metrics (loss, learning rate) in a metric series
LOSS = "train.loss"
# Families drawn first, in this order; the rest follow alphabetically.
FAMILY_ORDER = ("judge", "reference", "memorization", "repetition", "diversity", "truncation", "length")


def family_of(metric: str) -> str:
    """``judge.helpfulness.clarity`` → ``judge.helpfulness``; ``repetition.loop`` → ``repetition``."""
    parts = metric.split(".")
    if parts[0] == "judge" and len(parts) >= 3:
        return ".".join(parts[:2])
    return parts[0] if len(parts) > 1 else "other"


def _family_key(name: str) -> tuple[int, str]:
    head = name.split(".", 1)[0]
    return (FAMILY_ORDER.index(head) if head in FAMILY_ORDER else len(FAMILY_ORDER), name)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None  # JSON has no NaN


def chart_payload(
    series: Mapping[str, Sequence[Mapping[str, Any]]], markers: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """JSON for ``charts.js`` from :func:`judgeserve.read.metric_series` (aggregates, and the
    trainer's metrics as ``train.*``) and :func:`judgeserve.read.alert_markers`.

    Columns, not points (flat lists are smaller and faster to encode)::

        {"families": [{"name", "metrics": [{"name", "steps": [...], "mean": [...],
                                            "lo": [...], "hi": [...]}]}],
         "train": [{"name", "steps": [...], "value": [...]}], "alerts": [...]}
    """
    families: dict[str, list[dict[str, Any]]] = {}
    train: list[dict[str, Any]] = []
    for metric in sorted(series):
        points = series[metric]
        steps = [int(p["step"]) for p in points]
        if metric.startswith(TRAIN):
            train.append({"name": metric, "steps": steps, "value": [_num(p["mean"]) for p in points]})
            continue
        families.setdefault(family_of(metric), []).append(
            {
                "name": metric,
                "steps": steps,
                "mean": [_num(p["mean"]) for p in points],
                "lo": [_num(p["ci_low"]) for p in points],
                "hi": [_num(p["ci_high"]) for p in points],
            }
        )
    return {
        "loss": LOSS,
        "families": [
            {"name": name, "metrics": families[name]} for name in sorted(families, key=_family_key)
        ],
        "train": train,
        "alerts": [
            {k: m[k] for k in ("id", "step", "severity", "rule", "state")} for m in markers
        ],
    }


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
