"""The pages, one module per page type; every route goes through ``require_viewer``.

==========================================  ===========================================
``/``                                       runs (:mod:`.runs`)
``/runs/{run}``                             one run: charts, steps, alerts (:mod:`.run`)
``/runs/{run}/steps/{step}``                one checkpoint's samples (:mod:`.step`)
``/runs/{run}/samples/{sample_id}``         one sample, highlighted (:mod:`.sample`)
``/runs/{run}/compare?a=&b=``               two checkpoints side by side (:mod:`.compare`)
``/compare?runs=a,b``                       runs' metrics overlaid (:mod:`.overlay`)
``/alerts``                                 alerts, open and resolved (:mod:`.alerts`)
``/rubrics``                                the rubrics the judge can load (:mod:`.rubrics`)
``/rubrics/{rubric}``                       labels and the judge's agreement with them (:mod:`.rubric`)
``/rubrics/{rubric}/label``                 label judged samples, one key each (:mod:`.label`)
``/deadletter``                             samples whose scoring kept failing (:mod:`.deadletter`)
``/live``                                   server-sent events (:mod:`judgeserve.web.live`)
==========================================  ===========================================
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .. import live
from ..login import require_viewer
from . import alerts, compare, deadletter, label, overlay, rubric, rubrics, run, runs, sample, step

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_viewer)], include_in_schema=False)
for _module in (
    runs, run, step, sample, compare, overlay, alerts, rubrics, rubric, label, deadletter, live
):
    router.include_router(_module.router)
