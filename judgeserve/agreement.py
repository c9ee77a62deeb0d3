"""How well a judge agrees with people, and people with each other: pure statistics.

Every figure comes as an :class:`Estimate`: the value on all pairs, a percentile-bootstrap
95 % interval (fixed seed: the same pairs always give the same interval) and n. Rates
(exact agreement, within ±1, accuracy, the position-bias rate) are means of 0/1 values and
take :func:`judgeserve.aggregates.aggregate`'s exact binomial bootstrap; Cohen's kappa and
Spearman's rho resample the pairs through :func:`judgeserve.aggregates.resample_indices`
(bounded memory, fewer resamples past a budget) and are computed for a whole chunk of
resamples at once.

* single rubrics (:func:`single_agreement`): the judge's probability-weighted score is
  rounded to the nearest level for exact / within ±1 / quadratic-weighted kappa; Spearman
  takes the unrounded score.
* pairwise rubrics (:func:`pairwise_agreement`): outcomes ``win``/``loss``/``tie`` of the
  candidate against the baseline; accuracy with ties (a tie is an answer) and without.
* :func:`labeller_agreement`: two people on the same items, the ceiling a judge can reach.
* :func:`position_bias`: share of pairwise verdicts that flip when the order is swapped.
* :func:`length_bias`: Spearman of score with completion length, for judge and people.
* :func:`rubric_agreement`: all of the above for one rubric's labels, per criterion and per
  judge version (:class:`judgeserve.judge.version.JudgeVersion`), as the rubric page shows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .aggregates import RESAMPLES, SEED, aggregate, resample_indices

__all__ = [
    "Estimate",
    "rate",
    "cohen_kappa",
    "spearman",
    "kappa_estimate",
    "spearman_estimate",
    "nearest_level",
    "single_agreement",
    "pairwise_agreement",
    "labeller_agreement",
    "position_bias",
    "length_bias",
    "rubric_agreement",
    "PAIR_OUTCOMES",
]

PAIR_OUTCOMES = ("win", "loss", "tie")
Rows = npt.NDArray[np.float64]
Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap 95 % interval (None where undefined) and n."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NONE = Estimate(None, None, None, 0)


def rate(flags: Sequence[bool]) -> Estimate:
    """Share of true values, with the bootstrap interval of a mean of 0/1 values."""
    a = aggregate([bool(f) for f in flags])
    return Estimate(a.mean, a.ci_low, a.ci_high, a.n)


def nearest_level(value: float, levels: Sequence[int]) -> int:
    """The scale level closest to a weighted score (the lower one on an exact tie)."""
    return min(sorted(levels), key=lambda level: abs(level - value))


# -- kappa ----------------------------------------------------------------------------------


def _weights(k: int, weights: str | None) -> Rows:
    i, j = np.indices((k, k))
    if weights == "quadratic":
        return np.asarray((i - j) ** 2 / max(k - 1, 1) ** 2, dtype=np.float64)
    return np.asarray(i != j, dtype=np.float64)


def _kappa_rows(a: Index, b: Index, idx: Index, k: int, w: Rows) -> Rows:
    """Kappa of each row of ``idx`` (a resample of the pairs ``a``, ``b`` of level codes)."""
    rows, n = idx.shape
    cells = a[idx] * k + b[idx] + (np.arange(rows) * k * k)[:, None]
    observed = np.bincount(cells.ravel(), minlength=rows * k * k).reshape(rows, k, k) / n
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :]
    num = (w * observed).sum(axis=(1, 2))
    den = (w * expected).sum(axis=(1, 2))
    out = np.full(rows, np.nan)
    ok = den > 0  # both raters on one level: kappa is undefined, not 0 or 1
    out[ok] = 1.0 - num[ok] / den[ok]
    return out


def _codes(values: Sequence[int], levels: Sequence[int]) -> Index:
    index = {level: i for i, level in enumerate(levels)}
    return np.array([index[v] for v in values], dtype=np.int64)


def cohen_kappa(
    a: Sequence[int], b: Sequence[int], levels: Sequence[int], weights: str | None = None
) -> float | None:
    """Cohen's kappa over ``levels``; ``weights='quadratic'`` penalises far misses more.
    None when undefined (no pairs, or both raters used a single level)."""
    if not a:
        return None
    k = len(levels)
    value = _kappa_rows(
        _codes(a, levels), _codes(b, levels), np.arange(len(a))[None, :], k, _weights(k, weights)
    )[0]
    return None if math.isnan(value) else float(value)


# -- Spearman -------------------------------------------------------------------------------


def _spearman_rows(x: Rows, y: Rows, idx: Index) -> Rows:
    from scipy.stats import rankdata

    rx = rankdata(x[idx], axis=1)
    ry = rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    out = np.full(len(idx), np.nan)
    ok = den > 0  # a constant side: the correlation is undefined
    out[ok] = (rx * ry).sum(axis=1)[ok] / den[ok]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho, or None when undefined (fewer than 3 pairs, or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(x, y).statistic
    return None if np.isnan(rho) else float(rho)


# -- bootstrap of a paired statistic --------------------------------------------------------


def _interval(
    value: float | None,
    n: int,
    rows: Callable[[Index], Rows],
    resamples: int,
    seed: int,
) -> Estimate:
    if value is None or n < 2:
        return Estimate(value, None, None, n)
    rng = np.random.default_rng(seed)
    stats = np.concatenate([rows(idx) for idx in resample_indices(n, resamples, rng)])
    finite = stats[np.isfinite(stats)]
    # Most resamples undefined (a few pairs, nearly constant): no honest interval.
    if len(finite) < len(stats) / 2:
        return Estimate(value, None, None, n)
    low, high = (float(q) for q in np.quantile(finite, [0.025, 0.975]))
    return Estimate(value, low, high, n)


def kappa_estimate(
    a: Sequence[int],
    b: Sequence[int],
    levels: Sequence[int],
    weights: str | None = "quadratic",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """Cohen's kappa of paired levels with its bootstrap interval (pairs resampled)."""
    if not a:
        return NONE
    k = len(levels)
    ca, cb, w = _codes(a, levels), _codes(b, levels), _weights(k, weights)
    return _interval(
        cohen_kappa(a, b, levels, weights),
        len(a),
        lambda idx: _kappa_rows(ca, cb, idx, k, w),
        resamples,
        seed,
    )


def spearman_estimate(
    x: Sequence[float], y: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED
) -> Estimate:
    """Spearman's rho with its bootstrap interval (pairs resampled)."""
    fx, fy = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return _interval(
        spearman(list(x), list(y)), len(fx), lambda idx: _spearman_rows(fx, fy, idx), resamples, seed
    )


# -- what the rubric page shows -------------------------------------------------------------


def single_agreement(
    judge: Sequence[float], human: Sequence[int], levels: Sequence[int]
) -> dict[str, Estimate]:
    """Judge (weighted scores) against people (levels) on the same items."""
    levels = sorted(levels)
    judged = [nearest_level(v, levels) for v in judge]
    return {
        "exact": rate([j == h for j, h in zip(judged, human, strict=True)]),
        "within_1": rate([abs(j - h) <= 1 for j, h in zip(judged, human, strict=True)]),
        "kappa_quadratic": kappa_estimate(judged, list(human), levels, "quadratic"),
        "spearman": spearman_estimate(list(judge), [float(h) for h in human]),
    }


def pairwise_agreement(judge: Sequence[str], human: Sequence[str]) -> dict[str, Estimate]:
    """Judge's outcomes against people's on the same pairs (``win``/``loss``/``tie``)."""
    pairs = list(zip(judge, human, strict=True))
    decisive = [(j, h) for j, h in pairs if j != "tie" and h != "tie"]
    return {
        "accuracy_with_ties": rate([j == h for j, h in pairs]),
        "accuracy_without_ties": rate([j == h for j, h in decisive]),
    }


def labeller_agreement(
    first: Sequence[Any], second: Sequence[Any], levels: Sequence[int] | None
) -> dict[str, Estimate]:
    """Two people on the same items: levels (single rubrics) or outcomes (``levels=None``)."""
    if levels is None:
        return {"exact": rate([a == b for a, b in zip(first, second, strict=True)])}
    a, b = [int(v) for v in first], [int(v) for v in second]
    return {
        "exact": rate([x == y for x, y in zip(a, b, strict=True)]),
        "within_1": rate([abs(x - y) <= 1 for x, y in zip(a, b, strict=True)]),
        "kappa_quadratic": kappa_estimate(a, b, sorted(levels), "quadratic"),
    }


def position_bias(consistent: Sequence[bool]) -> Estimate:
    """Share of pairwise verdicts that flip when the two answers swap places."""
    return rate([not c for c in consistent])


def length_bias(
    lengths: Sequence[float], judge: Sequence[float], human: Sequence[float]
) -> dict[str, Estimate]:
    """Spearman of score with length, for the judge and for people on the same items: a
    judge whose correlation is well above people's rewards length itself."""
    return {
        "judge": spearman_estimate(list(lengths), list(judge)),
        "human": spearman_estimate(list(lengths), list(human)),
    }


# -- one rubric, per criterion and judge version --------------------------------------------


def _first_labels(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[Mapping[str, Any]]]:
    # Each item's labels, oldest first (one per labeller: the store keeps one).
    items: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["created"], r["labeller"])):
        items.setdefault((r["run"], r["sample_id"], r["criterion"]), []).append(r)
    return items


def _outcome(value: float) -> str:
    return "win" if value > 0.75 else "loss" if value < 0.25 else "tie"


def _judge_outcome(details: Mapping[str, Any] | None, value: float | None) -> str | None:
    if value is None:
        return None
    found = (details or {}).get("outcome")
    return str(found) if found in PAIR_OUTCOMES else _outcome(value)


def rubric_agreement(
    rows: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Mapping[str, Any]],
    levels: Mapping[str, Sequence[int] | None],
    rescored: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Everything the rubric page shows about its labels, per criterion.

    ``rows``: labels with their judge verdict (:func:`judgeserve.read.labels_with_verdicts`);
    ``verdicts``: judge scores of the rubric, labelled or not (for the position-bias rate);
    ``levels[criterion]``: its scale, or None for a pairwise rubric. An item's first label
    is the people's answer the judge is measured against; its second (another labeller)
    measures people against each other. Verdicts the judge could not give are counted as
    ``unparseable``, not as disagreement. ``rescored``: verdicts of labelled items by other
    judge versions (:func:`judgeserve.read.labelled_verdicts`: ``run, sample_id,
    criterion, value, details``), each measured as a version of its own.
    """
    from .judge.version import JudgeVersion

    items = _first_labels(rows)
    again: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for v in rescored:
        again.setdefault((v["run"], v["sample_id"], v["criterion"]), []).append(v)
    out: dict[str, Any] = {
        "labels": len(rows),
        "items": len(items),
        "labellers": len({r["labeller"] for r in rows}),
        "criteria": {},
    }
    for criterion, lv in levels.items():
        mine = {k: v for k, v in items.items() if k[2] == criterion}
        groups: dict[JudgeVersion | None, list[Mapping[str, Any]]] = {}
        for key, labelled in mine.items():
            first = labelled[0]
            # The item's verdict in the run, then the same item re-scored by other versions.
            found: dict[JudgeVersion | None, Mapping[str, Any]] = {
                JudgeVersion.of(first["judge_details"]): first
            }
            for v in again.get(key, ()):
                version = JudgeVersion.of(v["details"])
                if version is not None and version not in found:
                    found[version] = {**first, "judge_value": v["value"], "judge_details": v["details"]}
            if len(found) > 1:
                found.pop(None, None)  # judged after all, by a version re-scoring it
            for version, row in found.items():
                groups.setdefault(version, []).append(row)
        flips: dict[JudgeVersion, list[bool]] = {}
        if lv is None:  # pairwise: every verdict of the criterion, labelled or not
            for v in verdicts:
                version = JudgeVersion.of(v["details"])
                if v["criterion"] == criterion and version is not None and v["value"] is not None:
                    flips.setdefault(version, []).append(bool(v["details"].get("consistent", True)))
        versions = [
            _version_agreement(version, group, lv, flips.get(version, []))
            for version, group in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            if version is not None
        ]
        pairs = [v for v in mine.values() if len(v) >= 2]
        people = (
            labeller_agreement(
                [p[0]["value"] if lv else _outcome(p[0]["value"]) for p in pairs],
                [p[1]["value"] if lv else _outcome(p[1]["value"]) for p in pairs],
                lv,
            )
            if pairs
            else {}
        )
        out["criteria"][criterion] = {
            "labelled": len(mine),
            "unjudged": len(groups.get(None, [])),
            "versions": versions,
            "labellers": {"items": len(pairs), **{k: e.as_dict() for k, e in people.items()}},
        }
    return out


def _version_agreement(
    version: Any,
    group: Sequence[Mapping[str, Any]],
    levels: Sequence[int] | None,
    consistent: Sequence[bool],
) -> dict[str, Any]:
    judged = [r for r in group if r["judge_value"] is not None]
    if levels is None:
        metrics = pairwise_agreement(
            [_judge_outcome(r["judge_details"], r["judge_value"]) or "tie" for r in judged],
            [_outcome(r["value"]) for r in judged],
        )
        # Pairwise: does the judge prefer the longer of the two answers more than people do?
        sized = [r for r in judged if r["length"] is not None and r["baseline_length"] is not None]
        lengths = [float(r["length"] - r["baseline_length"]) for r in sized]
    else:
        metrics = single_agreement(
            [float(r["judge_value"]) for r in judged], [int(r["value"]) for r in judged], levels
        )
        sized = [r for r in judged if r["length"] is not None]
        lengths = [float(r["length"]) for r in sized]
    bias = length_bias(
        lengths, [float(r["judge_value"]) for r in sized], [float(r["value"]) for r in sized]
    )
    out = {
        "version": version.as_dict(),
        "n": len(judged),
        "unparseable": len(group) - len(judged),
        "metrics": {k: e.as_dict() for k, e in metrics.items()},
        "length_bias": {k: e.as_dict() for k, e in bias.items()},
    }
    if levels is None:
        out["position_bias"] = position_bias(consistent).as_dict()
    return out
