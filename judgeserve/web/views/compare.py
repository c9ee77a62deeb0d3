"""``/runs/{run}/compare?a=&b=``: two checkpoints side by side.

First each metric's change ``b - a`` with its 95 % CI and Wilcoxon p (Holm over the
metrics; a significant change is highlighted, green where the quality definition calls
it better), pairwise rubrics' win rates and set-level metrics; then probe by probe the
two completions with a word diff (what ``a`` had and ``b`` lost struck in red, what ``b``
added in green) and their scores, sorted by the largest change of a metric (``sort``,
``order``; by default the most significant metric's). ``a`` and ``b`` are steps of the
run, or ``RUN@STEP`` for a checkpoint of another run with the same probe set.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from ... import read
from ...auth import check_run
from ...exceptions import ConfigError, NotComparableError
from ...ranking import Quality, load_quality
from ...schema import RUN_NAME_PATTERN
from ..login import viewer
from ..paging import PageParam, Pager
from ..templating import not_found, render
from ..textdiff import word_diff

__all__ = ["router", "page_quality"]

router = APIRouter()
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN)]
Ref = Annotated[str | None, Query(max_length=160)]
PER_PAGE = 25


def page_quality(request: Request) -> tuple[Quality | None, str | None]:
    """The server's quality definition, or the error that stops it loading."""
    try:
        return load_quality(request.app.state.settings.quality), None
    except ConfigError as e:
        return None, str(e)


def _defaults(conn: Any, run: str) -> tuple[str | None, str | None]:
    steps = read.checkpoint_steps(conn, run)
    if len(steps) < 2:
        return (str(steps[0]) if steps else None), None
    return str(steps[-2]), str(steps[-1])


def _sides(parts: list[Any]) -> tuple[list[Any], list[Any]]:
    """A word diff as the two columns show it: a's text with its deletions, b's with its
    insertions."""
    return ([p for p in parts if p.op != "insert"], [p for p in parts if p.op != "delete"])


@router.get("/runs/{run}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    run: RunPath,
    a: Ref = None,
    b: Ref = None,
    sort: Annotated[str | None, Query(max_length=256)] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    page: PageParam = 1,
) -> HTMLResponse:
    pager = Pager.start(request, page, PER_PAGE)
    quality, quality_error = page_quality(request)
    context: dict[str, Any] = {
        "title": f"{run} · compare", "a": a, "b": b, "error": quality_error, "result": None,
        "rows": [], "scorers": [], "sort": None, "order": order, "pager": pager.done(0),
        "directions": {}, "ref_a": None, "ref_b": None,
    }
    with read.connect(request.app.state.store) as conn:
        found = read.get_run(conn, run)
        if found is None:
            return not_found(request, f"No run named {run!r}.")
        context["run"] = found
        context["steps"] = read.checkpoint_steps(conn, run)
        if a is None or b is None:
            a, b = a or _defaults(conn, run)[0], b or _defaults(conn, run)[1]
            context.update(a=a, b=b)
        if quality is None or a is None or b is None:
            context["error"] = quality_error or "The run needs two checkpoints to compare."
            return render(request, "compare.html", context, 200 if quality else 500)
        try:
            ref_a = read.parse_checkpoint(a, run=run)
            ref_b = read.parse_checkpoint(b, run=run)
        except ValueError as e:
            context["error"] = str(e)
            return render(request, "compare.html", context, 422)
        for ref in (ref_a, ref_b):
            try:
                check_run(request, viewer(request), ref.run, write=False)
            except HTTPException as e:
                context["error"] = f"{ref}: {e.detail}"
                return render(request, "compare.html", context, e.status_code)
            if read.count_step_samples(conn, ref.run, ref.step) == 0:
                context["error"] = f"{ref} has no samples."
                return render(request, "compare.html", context, 404)
        try:
            result = read.compare_checkpoints(conn, ref_a, ref_b, quality)
        except NotComparableError as e:
            context["error"] = str(e)
            return render(request, "compare.html", context, 422)
        metrics = result["metrics"]
        if sort not in metrics:
            tested = [m for m in metrics if metrics[m]["p_value"] is not None
                      and metrics[m]["delta"]]
            sort = min(tested, key=lambda m: (metrics[m]["p_value"], m)) if tested else None
        rows, total, scorers = read.compare_pairs(
            conn, ref_a, ref_b, sort, order == "desc", PER_PAGE, pager.offset
        )
    for row in rows:
        row["diff"] = word_diff(row["a"]["completion"], row["b"]["completion"])
        row["a_parts"], row["b_parts"] = _sides(row["diff"].parts)
    context.update(
        result=result, rows=rows, scorers=scorers, sort=sort, ref_a=ref_a, ref_b=ref_b,
        pager=pager.done(len(rows), total),
        directions={m: quality.direction(m) for m in scorers},
    )
    return render(request, "compare.html", context)
