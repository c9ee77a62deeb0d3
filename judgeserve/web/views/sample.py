"""``/runs/{run}/samples/{sample_id}``: one sample with its flagged spans, judge verdicts and
a diff against the same probe's completion at the previous checkpoint."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from ... import read
from ...schema import RUN_NAME_PATTERN
from ..spans import by_scorer, flags_of, segments, spans_of
from ..templating import not_found, render
from ..textdiff import word_diff

router = APIRouter()
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN)]


def _distribution(details: dict[str, Any]) -> list[tuple[str, float]]:
    """A judge's ``{"distribution": {"1": p, ...}}`` as sorted (label, probability) pairs."""
    raw = details.get("distribution")
    if not isinstance(raw, dict):
        return []
    out = []
    for label, p in raw.items():
        if isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p):
            out.append((str(label), min(1.0, max(0.0, float(p)))))
    return sorted(out, key=lambda lp: (len(lp[0]), lp[0]))[:50]


def judge_verdicts(scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for scorer in sorted(s for s in scores if s.startswith("judge.")):
        details = scores[scorer]["details"]
        _, rubric, criterion = [*scorer.split(".", 2), "", ""][:3]
        rationale = details.get("rationale")
        out.append(
            {
                "scorer": scorer,
                "rubric": rubric,
                "criterion": criterion or rubric,
                "value": scores[scorer]["value"],
                "distribution": _distribution(details),
                "rationale": rationale if isinstance(rationale, str) else None,
            }
        )
    return out


@router.get("/runs/{run}/samples/{sample_id:path}", response_class=HTMLResponse)
def sample_page(request: Request, run: RunPath, sample_id: str) -> HTMLResponse:
    with read.connect(request.app.state.store) as conn:
        sample = read.get_sample(conn, run, sample_id)
        if sample is None:
            return not_found(request, f"No sample {sample_id!r} in run {run!r}.")
        scores = by_scorer(sample["scores"])
        previous = None
        if sample["probe_id"] is not None:
            probe = sample["probe_id"]
            previous = read.previous_samples(conn, run, sample["step"], [probe]).get(probe)
        stamp = read.live_stamp(conn, run)
    completion: str = sample["completion"]
    spans = spans_of(scores, len(completion))
    context = {
        "title": f"{run} · {sample_id}",
        "run": run,
        "sample": sample,
        "segments": segments(completion, spans),
        "spans": spans,
        "span_scorers": sorted({s.scorer for s in spans}),
        "flags": flags_of(scores),
        "judge": judge_verdicts(scores),
        "other_scores": {k: v for k, v in sorted(scores.items()) if not k.startswith("judge.")},
        "previous": previous,
        "diff": word_diff(previous["completion"], completion) if previous else None,
        "live_run": run,
        "live_since": stamp,
    }
    return render(request, "sample.html", context)
