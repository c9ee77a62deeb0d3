"""``/rubrics/{rubric}/label``: people label judged samples, one key per label.

The page shows one item at a time, the most informative first (:mod:`judgeserve.label_queue`):
the prompt, the completion (pairwise: the completion and the baseline's, as A and B in an
order drawn per labeller and item), the reference, and the criterion's scale. One key
answers (a level's digit; ``a``, ``b`` or ``t`` for pairwise), ``s`` skips, ``u`` undoes
the labeller's last label (``static/label.js``); every key is also a button, and the page
works as plain forms without script. A label is a form post that redirects to the next
item. Posting needs write access to the sample's run (auth on: the token's project, which
the label records, with the optional labeller name the page carries in its URL).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from ... import read
from ...auth import check_run
from ...label_queue import item_key, next_item, pair_order
from ...labels import Labeller, check_label, value_of
from ...schema import RUN_NAME_PATTERN
from ...store import Store
from ..login import viewer, viewer_project
from ..templating import Urls, not_found, render
from .rubrics import find

router = APIRouter()
RubricName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
LabellerParam = Annotated[str, Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
SkipParam = Annotated[str, Query(max_length=13 * 200, pattern=r"^[0-9a-f,]*$")]
MAX_SKIPS = 200
PAIR_KEYS = {"a": "A", "b": "B", "t": "tie"}
_labeller = TypeAdapter(Labeller)


def _skips(text: str) -> list[str]:
    return [k for k in text.split(",") if len(k) == 12][-MAX_SKIPS:]


def _scale(rubric: Any, criterion: str) -> list[dict[str, str]]:
    if rubric.mode == "pairwise":
        return [
            {"key": "a", "value": "a", "text": "A is better"},
            {"key": "b", "value": "b", "text": "B is better"},
            {"key": "t", "value": "t", "text": "tie: as good as each other"},
        ]
    levels = rubric.scale_of(criterion).levels
    return [{"key": str(k), "value": str(k), "text": levels[k]} for k in sorted(levels)]


@router.get("/rubrics/{rubric}/label", response_class=HTMLResponse)
def label_page(
    request: Request,
    rubric: RubricName,
    labeller: LabellerParam = "",
    skip: SkipParam = "",
    run: Annotated[str | None, Query(pattern=RUN_NAME_PATTERN)] = None,
    sample: Annotated[str | None, Query(max_length=128)] = None,
    criterion: Annotated[str | None, Query(max_length=64)] = None,
    saved: Annotated[str | None, Query(max_length=300)] = None,
    note: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    spec = find(request.app.state.settings, rubric)
    if spec is None:
        return not_found(request, f"No rubric named {rubric!r} where the judge looks.")
    labeller = labeller.strip()
    skips = _skips(skip)
    store: Store = request.app.state.store
    project = viewer_project(request)
    found, waiting = next_item(store, spec, labeller, project, set(skips))
    choices: list[tuple[str, str, str]] = []
    if run and sample and criterion and criterion in {c.name for c in spec.criteria}:
        choices.append((run, sample, criterion))  # shown again after an undo
    if found is not None:
        choices.append((found.run, found.sample_id, found.criterion))
    context: dict[str, Any] = {
        "title": f"Label · {spec.name}",
        "rubric": spec,
        "labeller": labeller,
        "skip": ",".join(skips),
        "waiting": waiting,
        "saved": saved,
        "note": note,
        "item": None,
    }
    urls = Urls(request.scope.get("root_path", ""))
    for choice in choices:
        context["item"] = _item(store, spec, labeller, *choice)
        if context["item"] is not None:
            key = item_key(*choice)
            context["item"]["skip_url"] = urls.label(
                spec.name, labeller=labeller, skip=",".join([*skips, key][-MAX_SKIPS:])
            )
            break
    return render(request, "label.html", context)


def _item(store: Store, spec: Any, labeller: str, run: str, sample_id: str, criterion: str) -> dict[str, Any] | None:
    """What the page shows of one item; None when its sample (or pairwise, its baseline:
    the same probe's answer at the checkpoint before) is not there."""
    with read.connect(store) as conn:
        shown = read.get_sample(conn, run, sample_id)
        if shown is None:
            return None
        baseline = None
        if spec.mode == "pairwise":
            probe = shown.get("probe_id")
            if probe is None:
                return None
            baseline = read.previous_samples(conn, run, int(shown["step"]), [str(probe)]).get(str(probe))
            if baseline is None:
                return None
    order = pair_order(labeller, run, sample_id)
    answers = [shown["completion"], baseline["completion"]] if baseline else []
    return {
        "run": run,
        "sample_id": sample_id,
        "criterion": criterion,
        "sample": shown,
        "baseline": baseline,
        "order": order,
        "answers": answers if order == "cb" else answers[::-1],
        "description": next(c.description for c in spec.criteria if c.name == criterion),
        "scale": _scale(spec, criterion),
    }


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _back(request: Request, rubric: str, form: dict[str, str], **query: Any) -> RedirectResponse:
    urls = Urls(request.scope.get("root_path", ""))
    target = urls.label(rubric, labeller=form.get("labeller", ""), skip=form.get("skip", ""), **query)
    return RedirectResponse(target, status_code=303)


def _refuse(request: Request, message: str) -> HTMLResponse:
    return render(request, "404.html", {"title": "Label refused", "message": message}, 422)


@router.post("/rubrics/{rubric}/label")
async def post_label(request: Request, rubric: RubricName) -> Response:
    """Store one label (form fields ``run, sample_id, criterion, value, labeller``; pairwise
    also ``order, baseline_id``) and show the next item. A bad field is a 422 naming it."""
    spec = find(request.app.state.settings, rubric)
    if spec is None:
        return not_found(request, f"No rubric named {rubric!r} where the judge looks.")
    form = _form(await request.body())
    store: Store = request.app.state.store
    run, sample_id, criterion = form.get("run", ""), form.get("sample_id", ""), form.get("criterion", "")
    try:
        labeller = _labeller.validate_python(form.get("labeller", ""))
    except ValidationError:
        return _refuse(request, "labeller: at most 64 characters, no control characters")
    if read.get_run(store, run) is None or read.get_sample(store, run, sample_id) is None:
        return _refuse(request, f"sample_id: no sample {sample_id!r} in run {run!r}")
    check_run(request, viewer(request), run, write=True)
    raw = form.get("value", "").strip().lower()
    baseline_id: str | None = None
    details: dict[str, Any] = {}
    if spec.mode == "pairwise":
        order = form.get("order", "")
        baseline_id = form.get("baseline_id") or None
        if order not in ("cb", "bc") or raw not in PAIR_KEYS:
            return _refuse(request, "value: a, b or t (tie) with order cb or bc")
        if baseline_id is None or read.get_sample(store, run, baseline_id) is None:
            return _refuse(request, f"baseline_id: no sample {baseline_id!r} in run {run!r}")
        chosen = PAIR_KEYS[raw]
        candidate_is_a = order == "cb"
        label: int | str = (
            "tie" if chosen == "tie" else "win" if (chosen == "A") == candidate_is_a else "loss"
        )
        details = {"order": order, "key": chosen}
    else:
        label = int(raw) if raw.isdigit() else raw
    problem = check_label(spec, criterion, label)
    if problem is not None:
        return _refuse(request, problem)
    store.save_labels(
        [
            {
                "run": run,
                "sample_id": sample_id,
                "rubric": spec.name,
                "criterion": criterion,
                "value": value_of(label, spec.mode),
                "baseline_id": baseline_id,
                "labeller": labeller,
                "project": viewer_project(request),
                "rubric_version": spec.version,
                "details": details,
            }
        ]
    )
    shown = details.get("key", label)
    return _back(request, spec.name, form, saved=f"{shown} for {sample_id} ({criterion})")


@router.post("/rubrics/{rubric}/label/undo")
async def undo_label(request: Request, rubric: RubricName) -> Response:
    """Take back the labeller's last label on the rubric and show that item again."""
    form = _form(await request.body())
    try:
        labeller = _labeller.validate_python(form.get("labeller", ""))
    except ValidationError:
        return _refuse(request, "labeller: at most 64 characters, no control characters")
    store: Store = request.app.state.store
    last = read.latest_label(store, rubric, labeller, viewer_project(request))
    if last is None:
        return _back(request, rubric, form, note="nothing to undo")
    check_run(request, viewer(request), last["run"], write=True)
    if not store.delete_label(int(last["id"])):
        raise HTTPException(409, "the label was already taken back")
    return _back(
        request, rubric, form,
        run=last["run"], sample=last["sample_id"], criterion=last["criterion"],
        note=f"took back the label of {last['sample_id']} ({last['criterion']})",
    )
