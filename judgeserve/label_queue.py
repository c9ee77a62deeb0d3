"""Which judged item a person labels next: the most informative first.

Candidates are the judge's scores of a rubric's criteria in the runs the labeller may see
(:func:`judgeserve.read.judged_candidates`, newest steps of the most recently updated
runs), less what the labeller already labelled or skipped. They are ordered by
:func:`rank`:

1. each run's latest checkpoint first (what is being decided now), then the one before...;
2. within that, stratified over the judge's scores: the verdict level (or pairwise outcome)
   with the fewest of the labeller's labels first, then one of each level in turn, so
   labels cover the whole scale and not only the common verdict;
3. within a level, the most uncertain first: low ``label_mass`` (the judge put little
   probability on the scale at all) plus disagreement between the rubric's criteria on
   the same sample (one says 5, another 1). Unparseable verdicts count as most uncertain.

Pure ranking; :func:`next_item` does the two reads. Pairwise items are shown in an order
chosen at random per labeller and item (:func:`pair_order`), stable across reloads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, Literal

from . import read
from .agreement import nearest_level
from .read import Source

if TYPE_CHECKING:
    from .judge.rubric import Rubric

__all__ = ["QueueItem", "item_key", "rank", "next_item", "pair_order", "PairOrder"]

PairOrder = Literal["cb", "bc"]  # candidate first (A), or baseline first


@dataclass(frozen=True)
class QueueItem:
    """One item to label: a sample judged on one criterion."""

    run: str
    sample_id: str
    criterion: str
    step: int
    stratum: str  # the judge's verdict, rounded: a level, win/loss/tie, or "unparseable"
    uncertainty: float
    tier: int  # 0: the run's latest judged checkpoint

    @property
    def key(self) -> str:
        return item_key(self.run, self.sample_id, self.criterion)


def item_key(run: str, sample_id: str, criterion: str) -> str:
    """A short stable name of an item, for skip lists in URLs."""
    return hashlib.sha256(f"{run}\0{sample_id}\0{criterion}".encode()).hexdigest()[:12]


def pair_order(labeller: str, run: str, sample_id: str) -> PairOrder:
    """Which answer is shown as A: random per labeller and item, the same on every load."""
    digest = hashlib.sha256(f"{labeller}\0{run}\0{sample_id}".encode()).digest()
    return "cb" if digest[0] & 1 else "bc"


def _mass(details: Mapping[str, Any]) -> float | None:
    if "label_mass" in details:
        return float(details["label_mass"])
    masses = [o.get("label_mass") for o in details.get("orders") or () if isinstance(o, dict)]
    found = [float(m) for m in masses if m is not None]
    return min(found) if found else None


def _stratum(value: float | None, details: Mapping[str, Any], levels: Sequence[int] | None) -> str:
    if value is None:
        return "unparseable"
    if levels is None:  # pairwise
        return str(details.get("outcome") or "tie")
    return str(nearest_level(value, levels))


def rank(
    candidates: Iterable[Mapping[str, Any]],
    levels: Mapping[str, Sequence[int] | None],
    exclude: set[tuple[str, str, str]] | None = None,
    skip: set[str] | None = None,
) -> list[QueueItem]:
    """Order candidate verdicts (``run, sample_id, step, criterion, value, details``) for
    labelling; ``levels[criterion]`` is its scale (None for pairwise)."""
    exclude, skip = exclude or set(), skip or set()
    rows = [r for r in candidates if r["criterion"] in levels]
    # Disagreement between criteria: the spread of a sample's verdicts, each scaled to 0..1.
    spread: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        lv = levels[r["criterion"]]
        lo, hi = (min(lv), max(lv)) if lv else (0.0, 1.0)
        if r["value"] is not None and hi > lo:
            spread.setdefault((r["run"], r["sample_id"]), []).append((r["value"] - lo) / (hi - lo))
    steps: dict[str, list[int]] = {}
    for r in rows:
        steps.setdefault(r["run"], []).append(int(r["step"]))
    tier_of = {
        (run, step): i
        for run, found in steps.items()
        for i, step in enumerate(sorted(set(found), reverse=True))
    }
    items = []
    done: dict[tuple[int, str], int] = {}  # labels already made, per tier and stratum
    for r in rows:
        key3 = (r["run"], r["sample_id"], r["criterion"])
        details = r["details"] if isinstance(r["details"], dict) else {}
        stratum = _stratum(r["value"], details, levels[r["criterion"]])
        tier = tier_of[(r["run"], int(r["step"]))]
        if key3 in exclude:
            done[(tier, stratum)] = done.get((tier, stratum), 0) + 1
            continue
        if item_key(*key3) in skip:
            continue
        mass = _mass(details)
        values = spread.get((r["run"], r["sample_id"]), [])
        uncertainty = (
            2.0 if r["value"] is None
            else (1.0 - (mass if mass is not None else 1.0)) + (max(values) - min(values) if values else 0.0)
        )
        items.append(
            QueueItem(
                run=r["run"],
                sample_id=r["sample_id"],
                criterion=r["criterion"],
                step=int(r["step"]),
                stratum=stratum,
                uncertainty=uncertainty,
                tier=tier,
            )
        )
    out: list[QueueItem] = []
    for tier in sorted({i.tier for i in items}):
        strata: dict[str, list[QueueItem]] = {}
        for i in items:
            if i.tier == tier:
                strata.setdefault(i.stratum, []).append(i)
        # The stratum with the fewest labels so far comes first, so that labelling one item
        # at a time (the queue is ranked afresh for each) still walks round the verdicts.
        ordered = [
            sorted(group, key=lambda i: (-i.uncertainty, i.run, i.sample_id, i.criterion))
            for _, group in sorted(
                strata.items(), key=lambda kv: (done.get((tier, kv[0]), 0), kv[0])
            )
        ]
        out += [i for row in zip_longest(*ordered) for i in row if i is not None]
    return out


def next_item(
    source: Source,
    rubric: Rubric,
    labeller: str,
    project: str | None = None,
    skip: set[str] | None = None,
) -> tuple[QueueItem | None, int]:
    """The next item the labeller should label, and how many are waiting (bounded by
    the candidates read)."""
    levels: dict[str, Sequence[int] | None] = {
        c.name: None if rubric.mode == "pairwise" else sorted(rubric.scale_of(c.name).levels)
        for c in rubric.criteria
    }
    with read.connect(source) as conn:
        candidates = read.judged_candidates(conn, rubric.name, list(levels), project)
        done = read.labelled_items(conn, rubric.name, labeller, sorted({c["run"] for c in candidates}))
    queue = rank(candidates, levels, done, skip)
    return (queue[0] if queue else None), len(queue)
