"""The process launchers: the API under uvicorn, workers in-process or as Ray actors, and
API + worker together for local use (``judgeserve up``), with a generation worker when a
generator is configured (checkpoint mode).

Workers as Ray actors (``judgeserve worker --ray N``, ``judgeserve generate-worker --ray
N``) scale out on a Ray cluster: each actor is an ordinary
:class:`~judgeserve.worker.Worker` (or
:class:`~judgeserve.generation_worker.GenerationWorker`) in the shared consumer group, so
Redis hands out the work and reclaims what a lost actor held; with several machines the
store must be PostgreSQL (SQLite is one file on one machine). Ray places the actors as
``JUDGESERVE_RAY_ACTOR_OPTIONS`` says (CPUs, custom resources, spread over nodes); an
actor lost with its node is restarted by Ray on another and runs its loop again, first
finishing what it held under its consumer name (unless another worker reclaimed it after
``claim_idle_ms``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

from .app import create_app
from .exceptions import require
from .settings import Settings
from .store import Store
from .worker import Worker

__all__ = [
    "WorkerKind",
    "serve_api",
    "run_stack",
    "background_stack",
    "keep_running",
    "start_actors",
    "actor_namespace",
    "run_ray_workers",
]

log = logging.getLogger(__name__)
# "score": the sample stream's workers; "generate": the checkpoint stream's.
WorkerKind = Literal["score", "generate"]


def serve_api(settings: Settings, store: Store | None = None) -> None:
    """``judgeserve api``: serve until SIGTERM or Ctrl-C, then close and exit 0.

    uvicorn's own handlers re-raise the signal once it has shut down, so a service manager
    saw the API die of SIGTERM after a clean stop; here the signal just ends the serving."""
    app = create_app(settings, store=store)
    server = _Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))

    def _stop(signum: int, frame: object) -> None:
        server.should_exit = True

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        # The calling thread owns the signals (a CLI, or a test).
        pass


@contextmanager
def background_stack(settings: Settings) -> Iterator[Worker]:
    """API + one worker in threads of this process, stopped when the block exits; they
    share one store and one stream client. With ``settings.generator`` set, a generation
    worker runs beside them (checkpoint mode)."""
    store = Store.from_settings(settings)
    worker = Worker(settings, store=store)
    generation: Any = None
    if settings.generator is not None:
        from .generation_worker import GenerationWorker

        generation = GenerationWorker(settings, store=store)
    server = _Server(
        uvicorn.Config(
            create_app(settings, store=store, queue=worker.queue),
            host=settings.host,
            port=settings.port,
            log_level="warning",
        )
    )
    threads = [
        threading.Thread(target=server.run, name="judgeserve-api", daemon=True),
        threading.Thread(target=keep_running, args=(worker,), name="judgeserve-worker", daemon=True),
    ]
    if generation is not None:
        threads.append(
            threading.Thread(target=generation.run, name="judgeserve-generate", daemon=True)
        )
    for t in threads:
        t.start()
    while not server.started:
        if not threads[0].is_alive():
            raise RuntimeError(f"the API could not start on {settings.host}:{settings.port}")
        threading.Event().wait(0.05)
    try:
        yield worker
    finally:
        worker.stop()
        if generation is not None:
            generation.stop()
        server.should_exit = True
        for t in threads:
            t.join(timeout=10)
        worker.close()
        if generation is not None:
            generation.close()
        store.close()


def keep_running(worker: Worker, *, first_delay_s: float = 1.0) -> None:
    """Run ``worker`` until it is stopped, restarting it whenever it dies (an exception
    its own loop did not expect): ``judgeserve up`` must not go on answering 202 with
    nobody scoring. While it is down, ``/healthz`` lists no live worker."""
    delay = first_delay_s
    while not worker.stopped:
        try:
            worker.run()
        except Exception:
            log.exception("the worker died; restarting it in %.0fs", delay)
        else:
            if worker.stopped:
                return
            log.error("the worker stopped on its own; restarting it in %.0fs", delay)
        if worker.wait_stopped(delay):
            return
        delay = min(delay * 2, 30.0)


def run_stack(settings: Settings) -> None:
    """``judgeserve up``: serve until interrupted."""
    stop = threading.Event()
    # SIGTERM (a service manager, `docker stop`) stops it as Ctrl-C does: the worker
    # finishes its batch, the API closes, exit 0. Python's default answer kills the process.
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with background_stack(settings):
            log.info("judgeserve up at http://%s:%d", settings.host, settings.port)
            print(f"judgeserve is up: http://{settings.host}:{settings.port}  (Ctrl-C to stop)")
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- workers as Ray actors ------------------------------------------------------------------


def _actor_class() -> Any:
    ray: Any = require("ray", "judge")

    # max_restarts: an actor lost with its node comes back on another (its __init__ runs
    # again there); run_ray_workers then calls its run() again. No max_task_retries: a
    # retried run() and the driver's new call would be two loops.
    @ray.remote(max_concurrency=4, max_restarts=-1)
    class WorkerActor:
        # max_concurrency: run() holds one slot for its loop, a repeated run() one more
        # (it follows the loop), stop() another.
        __qualname__ = "WorkerActor"  # as `ray list actors` shows it (not "_actor_class.<locals>...")

        def __init__(self, settings: dict[str, Any], name: str, kind: str = "score") -> None:
            self._running = threading.Lock()
            self._ended = threading.Event()
            self.worker: Any
            if kind == "generate":
                from .generation_worker import GenerationWorker

                self.worker = GenerationWorker(Settings(**settings), consumer=name)
            else:
                from .worker import Worker

                self.worker = Worker(Settings(**settings), consumer=name)

        def run(self) -> None:
            if not self._running.acquire(blocking=False):
                # The loop already runs here: the driver lost sight of this actor for a
                # while (ActorUnavailableError) and asked again. Follow that loop.
                self._ended.wait()
                return
            try:
                self.worker.run()
            finally:
                self.worker.close()
                self._ended.set()

        def stop(self) -> None:
            self.worker.stop()

    return WorkerActor


def actor_namespace(settings: Settings) -> str:
    """The Ray namespace of the worker actors: one per stream prefix, so two fleets on
    one cluster, or two judgeserve instances, never clash."""
    return f"judgeserve-{settings.stream_prefix}"


def start_actors(
    settings: Settings, n: int, prefix: str | None = None, kind: WorkerKind = "score"
) -> tuple[list[Any], list[Any]]:
    """Start ``n`` worker actors (scoring, or generation with ``kind="generate"``) on the
    connected Ray cluster, placed as ``settings.ray_actor_options`` says; returns (actors,
    run refs).

    Each actor is named after its consumer name (``ray-worker-0`` ...) in
    :func:`actor_namespace`: ``ray list actors`` shows which is where, and a second fleet
    started under the same names fails at once instead of sharing consumer names (which
    would take each other's pending entries)."""
    cls = _actor_class()
    # Secrets stay out of actor arguments: each process reads its own environment.
    data = settings.model_dump(mode="json", exclude={"judge_api_key"})
    prefix = prefix or ("ray-generator" if kind == "generate" else "ray-worker")
    place = settings.ray_actor_options
    options: dict[str, Any] = {
        "num_cpus": place.num_cpus,
        "num_gpus": place.num_gpus,
        "scheduling_strategy": place.scheduling_strategy,
        "namespace": actor_namespace(settings),
    }
    if place.resources:
        options["resources"] = place.resources
    actors = [
        cls.options(name=f"{prefix}-{i}", **options).remote(data, f"{prefix}-{i}", kind)
        for i in range(n)
    ]
    return actors, [a.run.remote() for a in actors]


def run_ray_workers(
    settings: Settings, n: int, address: str | None = None, kind: WorkerKind = "score"
) -> None:
    """Connect to Ray (``address`` or a local instance), run ``n`` actors until a signal."""
    ray: Any = require("ray", "judge")
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    actors, refs = start_actors(settings, n, kind=kind)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    log.info("%d %s worker actors running on Ray", n, kind)
    while not done.wait(1.0):
        ready, _ = ray.wait(refs, timeout=0)
        for ref in ready:
            i = refs.index(ref)
            try:
                ray.get(ref)  # an actor's loop ended: surface why
            except ray.exceptions.RayActorError as e:
                if e.actor_init_failed:
                    raise  # its __init__ fails (bad settings ...): restarting cannot help
                # Its node (or process) was lost: Ray restarts the actor (max_restarts);
                # its loop starts again there, first finishing what it held.
                log.warning("worker actor %d lost (%s); running its loop again once Ray has "
                            "restarted it", i, type(e).__name__)
                refs[i] = actors[i].run.remote()
    ray.get([a.stop.remote() for a in actors])
    ray.get(refs, timeout=60)
    ray.shutdown()
