"""The JSON API (``/v1``): validates what trainers send, queues it, serves what was scored.

Reads go through :mod:`judgeserve.read`, who may call through :mod:`judgeserve.auth`;
:func:`judgeserve.app.create_app` composes this router with the web view's.
:mod:`.routes` has samples, metrics, runs, steps and alerts; :mod:`.checkpoints` the
probe sets and checkpoints of checkpoint mode; :mod:`.ranking` a run's best checkpoint and
two checkpoints compared; :mod:`.metrics` the Prometheus ``/metrics`` and the middleware
that counts requests for it.
"""

from fastapi import APIRouter

from . import checkpoints, metrics, ranking, routes
from .metrics import RequestMetrics, registry_for
from .routes import BacklogGauge

__all__ = ["router", "BacklogGauge", "RequestMetrics", "registry_for"]

router = APIRouter()
router.include_router(routes.router)
router.include_router(checkpoints.router)
router.include_router(ranking.router)
router.include_router(metrics.router)
