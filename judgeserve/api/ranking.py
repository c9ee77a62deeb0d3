"""The /v1 routes that choose a checkpoint: a run's best, and two checkpoints compared.

``GET /v1/runs/{run}/best`` ranks the run's checkpoints by the quality definition
(``JUDGESERVE_QUALITY``, else the shipped one); ``GET /v1/compare?a=RUN@STEP&b=RUN@STEP``
compares two checkpoints probe by probe (two runs need the same probe set: a 422 says why
they cannot be compared). Both read through :mod:`judgeserve.read.compare`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from .. import read
from ..auth import Caller, ReadRun, check_run
from ..exceptions import ConfigError, NotComparableError
from ..ranking import Quality, load_quality

__all__ = ["router"]

router = APIRouter(tags=["choose"])
Ref = Annotated[str, Query(max_length=160, description="A checkpoint: RUN@STEP.")]


def quality(request: Request) -> Quality:
    """The server's quality definition; a broken file is the server's fault (500 saying so)."""
    try:
        return load_quality(request.app.state.settings.quality)
    except ConfigError as e:
        raise HTTPException(500, f"the server's quality file is invalid: {e}") from None


def _invalid(field: str, msg: str) -> RequestValidationError:
    # The same 422 shape as a parameter that fails its schema, naming the field.
    return RequestValidationError([{"loc": ["query", field], "msg": msg, "type": "value_error"}])


@router.get("/v1/runs/{run}/best")
def get_best(run: ReadRun, request: Request) -> dict[str, Any]:
    """The best checkpoint by quality: its score with CI, the checkpoints that cannot be
    told apart from it, every checkpoint's score and the gates that disqualified it, and
    the checkpoint with the lowest training loss."""
    q = quality(request)
    with read.connect(request.app.state.store) as conn:
        if read.get_run(conn, run) is None:
            raise HTTPException(404, f"run {run!r} not found")
        return read.best(conn, run, q)


@router.get("/v1/compare")
def compare(a: Ref, b: Ref, request: Request, who: Caller) -> dict[str, Any]:
    """Checkpoint ``b`` against ``a``, probe by probe: per metric the mean change with a
    bootstrap CI and a Wilcoxon p (Holm over metrics); pairwise rubrics' win rates."""
    try:
        ref_a = read.parse_checkpoint(a)
    except ValueError as e:
        raise _invalid("a", str(e)) from None
    try:
        ref_b = read.parse_checkpoint(b, run=ref_a.run)  # a bare STEP is of a's run
    except ValueError as e:
        raise _invalid("b", str(e)) from None
    q = quality(request)
    with read.connect(request.app.state.store) as conn:
        for name, ref in (("a", ref_a), ("b", ref_b)):
            check_run(request, who, ref.run, write=False)
            if read.get_run(conn, ref.run) is None:
                raise HTTPException(404, f"{name}: run {ref.run!r} not found")
            if read.count_step_samples(conn, ref.run, ref.step) == 0:
                raise HTTPException(404, f"{name}: run {ref.run!r} has no samples at step {ref.step}")
        try:
            return read.compare_checkpoints(conn, ref_a, ref_b, q)
        except NotComparableError as e:
            raise _invalid(e.field, e.message) from None
