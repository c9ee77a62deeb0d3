"""Workers as Ray actors: ``judgeserve worker --ray N`` scales out on a Ray cluster.

Each actor is an ordinary :class:`~judgeserve.worker.Worker` in the shared consumer group,
so Redis hands out the work and reclaims what a lost actor held; with several machines
the store must be PostgreSQL (SQLite is one file on one machine).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from .exceptions import require
from .settings import Settings

__all__ = ["start_actors", "run_ray_workers"]

log = logging.getLogger(__name__)


def _actor_class() -> Any:
    ray: Any = require("ray", "judge")

    @ray.remote(num_cpus=0.5, max_concurrency=2, max_restarts=-1)
    class WorkerActor:
        # max_concurrency=2: run() holds one slot for its loop, stop() takes the other.
        def __init__(self, settings: dict[str, Any], name: str) -> None:
            from .worker import Worker

            self.worker = Worker(Settings(**settings), consumer=name)

        def run(self) -> None:
            try:
                self.worker.run()
            finally:
                self.worker.close()

        def stop(self) -> None:
            self.worker.stop()

    return WorkerActor


def start_actors(settings: Settings, n: int, prefix: str = "ray-worker") -> tuple[list[Any], list[Any]]:
    """Start ``n`` worker actors on the connected Ray cluster; returns (actors, run refs)."""
    cls = _actor_class()
    data = settings.model_dump(mode="json")
    actors = [cls.remote(data, f"{prefix}-{i}") for i in range(n)]
    return actors, [a.run.remote() for a in actors]


def run_ray_workers(settings: Settings, n: int, address: str | None = None) -> None:
    """Connect to Ray (``address`` or a local instance), run ``n`` actors until a signal."""
    ray: Any = require("ray", "judge")
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    actors, refs = start_actors(settings, n)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    log.info("%d worker actors running on Ray", n)
    while not done.wait(1.0):
        ready, _ = ray.wait(refs, timeout=0)
        if ready:
            ray.get(ready)  # an actor's loop ended: surface why
    ray.get([a.stop.remote() for a in actors])
    ray.get(refs, timeout=60)
    ray.shutdown()
