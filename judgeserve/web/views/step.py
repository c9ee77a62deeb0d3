"""``/runs/{run}/steps/{step}``: a checkpoint's samples, sortable by any score and filtered.

Query parameters (all bookmarkable): ``sort`` (a scorer, ``id`` or ``probe``), ``order``
(``asc``/``desc``), ``flagged=1`` (samples with at least one flag), ``probe``,
``detector`` (samples flagged by that scorer family or scorer) and ``page``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from ...schema import RUN_NAME_PATTERN
from .. import queries as q
from ..charts import family_of
from ..paging import PageParam, Pager
from ..templating import not_found, render

router = APIRouter()
RunPath = Annotated[str, Path(pattern=RUN_NAME_PATTERN)]
StepPath = Annotated[int, Path(ge=0, le=2**53)]
Text = Annotated[str | None, Query(max_length=256)]
PER_PAGE = 50


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
    with q.read(q.engine_of(request)) as conn:
        found = q.get_run(conn, run)
        if found is None:
            return not_found(request, f"No run named {run!r}.")
        scorers = q.step_scorers(conn, run, step)
        names = {s for s, _ in scorers}
        if sort not in names | {"id", "probe"}:
            sort = None
        detectors = sorted({s.split(".", 1)[0] for s, is_bool in scorers if is_bool}
                           | {s for s, is_bool in scorers if is_bool})
        f = q.StepFilter(
            flagged=flagged,
            probe=probe or None,
            detector=detector if detector in detectors else None,
            sort=sort,
            descending=order == "desc",
        )
        everything = q.count_step_samples(conn, run, step, q.StepFilter())
        aggregates = q.step_aggregates(conn, run, step)
        if everything == 0 and not aggregates:
            return not_found(request, f"Run {run!r} has no samples at step {step}.")
        total = q.count_step_samples(conn, run, step, f)
        rows = q.step_samples(conn, run, step, f, PER_PAGE, pager.offset)
        by_id = q.scores_for(conn, run, [r["id"] for r in rows])
        for r in rows:
            r["scores"] = by_id.get(r["id"], {})
            r["flags"] = sorted(k for k, v in r["scores"].items() if v["is_bool"] and v["value"])
        prev_step, next_step = q.step_neighbours(conn, run, step)
        context = {
            "title": f"{run} · step {step}",
            "run": found,
            "step": step,
            "rows": rows,
            "scorers": scorers,
            "detectors": detectors,
            "probes": q.step_probes(conn, run, step),
            "filter": f,
            "order": order,
            "everything": everything,
            "aggregates": aggregates,
            "aggregate_groups": _by_family(aggregates),
            "flags": q.step_flags(conn, run, step),
            "prev_step": prev_step,
            "next_step": next_step,
            "pager": pager.done(len(rows), total),
            "live_run": run,
            "live_since": q.live_stamp(conn, run),
        }
    return render(request, "step.html", context)
