"""``/runs/{run}/steps/{step}``: a checkpoint's samples, sortable by any score and filtered.

Query parameters (all bookmarkable): ``sort`` (a scorer, ``id`` or ``probe``), ``order``
(``asc``/``desc``), ``flagged=1`` (samples with at least one flag), ``probe``,
``detector`` (samples flagged by that scorer family or scorer) and ``page``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from ... import read
from ...schema import RUN_NAME_PATTERN
from ..charts import family_of
from ..paging import PageParam, Pager
from ..spans import by_scorer, flags_of
from ..templating import not_found, render

router = APIRouter()
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN)]
StepPath = Annotated[int, Path(ge=0, le=2**53)]
Text = Annotated[str | None, Query(max_length=256)]
PER_PAGE = 50
PREVIEW_CHARS = 120


def _by_family(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(family_of(r["metric"]), []).append(r)
    return out


@router.get("/runs/{run}/steps/{step}", response_class=HTMLResponse)
def step_page(
    request: Request,
    run: RunPath,
    step: StepPath,
    page: PageParam = 1,
    sort: Text = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    flagged: bool = False,
    probe: Text = None,
    detector: Text = None,
) -> HTMLResponse:
    pager = Pager.start(request, page, PER_PAGE)
    with read.connect(request.app.state.store) as conn:
        found = read.get_run(conn, run)
        if found is None:
            return not_found(request, f"No run named {run!r}.")
        scorers = read.step_scorers(conn, run, step)
        names = {s for s, _ in scorers}
        if sort not in names | {"id", "probe"}:
            sort = None
        detectors = sorted({s.split(".", 1)[0] for s, is_bool in scorers if is_bool}
                           | {s for s, is_bool in scorers if is_bool})
        f = read.StepFilter(
            flagged=flagged,
            probe=probe or None,
            detector=detector if detector in detectors else None,
            sort=sort,
            descending=order == "desc",
        )
        everything = read.count_step_samples(conn, run, step)
        aggregates = [{"metric": m, **a} for m, a in read.step_aggregates(conn, run, step).items()]
        if everything == 0 and not aggregates:
            return not_found(request, f"Run {run!r} has no samples at step {step}.")
        total = read.count_step_samples(conn, run, step, f)
        rows = read.step_samples(conn, run, step, f, PER_PAGE, pager.offset)
        for r in rows:
            r["scores"] = by_scorer(r["scores"])
            r["flags"] = flags_of(r["scores"])
            r["preview"] = r["completion"][:PREVIEW_CHARS]
            r["chars"] = len(r["completion"])
        prev_step, next_step = read.step_neighbours(conn, run, step)
        context = {
            "title": f"{run} · step {step}",
            "run": found,
            "step": step,
            "rows": rows,
            "scorers": scorers,
            "detectors": detectors,
            "probes": read.step_probes(conn, run, step),
            "filter": f,
            "order": order,
            "everything": everything,
            "aggregates": aggregates,
            "aggregate_groups": _by_family(aggregates),
            "flags": read.step_flags(conn, run, step),
            "scorer_status": read.step_scorer_status(conn, run, step),
            "prev_step": prev_step,
            "next_step": next_step,
            "pager": pager.done(len(rows), total),
            "live_run": run,
            "live_since": read.live_stamp(conn, run),
        }
    return render(request, "step.html", context)
